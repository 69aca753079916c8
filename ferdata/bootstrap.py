"""A paired bootstrap over test faces: how sure a difference between two models is.

Both models are scored on the same resampled faces (the same indices drawn with
replacement), so what the resampling varies, the faces, varies for both alike and the
interval measures the difference, not the spread of each score. Scores are computed from
per-face correctness and the true labels, so a face a model never predicted counts wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95


@dataclass
class Scores:
    """Accuracy, macro recall and per-class recall; one value (or row) per resample."""

    accuracy: np.ndarray  # (B,)
    macro_recall: np.ndarray  # (B,): mean recall over the classes present in the resample
    recall: np.ndarray  # (B, C): NaN where a class is absent from the resample


def resample_counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) counts: how often each of ``n`` faces is drawn in each resample of ``n``
    faces with replacement. The same array scores every model: that is the pairing."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    offsets = np.arange(resamples)[:, None] * n
    return np.bincount((draws + offsets).ravel(), minlength=resamples * n).reshape(resamples, n)


def scores(counts: np.ndarray, labels: np.ndarray, correct: np.ndarray, n_classes: int) -> Scores:
    """The scores of one model on each resample ``counts`` (R, N) of faces with true
    ``labels`` (N,) and per-face ``correct`` (N,) flags; ``counts`` of ones is the test set itself."""
    counts = np.atleast_2d(counts).astype(np.float64)
    onehot = np.eye(n_classes)[np.asarray(labels)]
    support = counts @ onehot
    hits = counts @ (onehot * np.asarray(correct, dtype=np.float64)[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / support, np.nan)
    return Scores(accuracy=hits.sum(axis=1) / counts.sum(axis=1),
                  macro_recall=np.nanmean(recall, axis=1), recall=recall)


def mean_scores(per_repeat: Sequence[Scores], classes: Sequence[str]) -> dict:
    """Accuracy, macro recall and per-class recall (by class name; None for a class the
    faces lack), each the mean over ``per_repeat``'s unresampled scores, for JSON."""
    recall = np.mean([s.recall[0] for s in per_repeat], axis=0)
    return {"accuracy": float(np.mean([s.accuracy[0] for s in per_repeat])),
            "macro_recall": float(np.mean([s.macro_recall[0] for s in per_repeat])),
            "recall": {c: None if np.isnan(v) else float(v) for c, v in zip(classes, recall)}}


def observed_scores(labels: np.ndarray, correct: np.ndarray, classes: Sequence[str]) -> dict:
    """:func:`mean_scores` of per-face ``correct`` flags on the faces themselves; ``correct``
    (R, N) holds one row per repeat (seed)."""
    ones = np.ones((1, len(labels)))
    return mean_scores([scores(ones, labels, row, len(classes)) for row in np.atleast_2d(correct)], classes)


def interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of ``values`` (NaNs left out)."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail], axis=0)
    return float(low), float(high)


def paired_difference(labels: np.ndarray, correct_a: list[np.ndarray], correct_b: list[np.ndarray],
                      n_classes: int, resamples: int, seed: int, confidence: float = CONFIDENCE) -> dict:
    """Model A minus model B, each trained once per repeat (``correct_a[r]``, ``correct_b[r]``
    from the same seed): accuracy, macro recall and per-class recall, each as its mean over
    the repeats with a ``confidence`` interval.

    Each repeat's difference is resampled over the faces (the same resamples for both
    models and every repeat); the interval is taken over the resampled differences of all
    repeats pooled, so it widens with the spread between seeds as well as between faces.
    """
    if len(correct_a) != len(correct_b) or not correct_a:
        raise ValueError(f"need the same number of repeats (at least one) for both models, "
                         f"not {len(correct_a)} and {len(correct_b)}")
    counts = resample_counts(len(labels), resamples, seed)
    ones = np.ones((1, len(labels)))
    point, pooled = [], []
    for a, b in zip(correct_a, correct_b):
        point.append(_minus(scores(ones, labels, a, n_classes), scores(ones, labels, b, n_classes)))
        pooled.append(_minus(scores(counts, labels, a, n_classes), scores(counts, labels, b, n_classes)))

    def summary(name: str, column: int | None = None) -> dict:
        def pick(s: Scores) -> np.ndarray:
            values = getattr(s, name)
            return values if column is None else values[:, column]
        means = np.concatenate([pick(s) for s in point])
        if np.isnan(means).all():  # a class the test set does not hold
            return {"mean": None, "low": None, "high": None}
        low, high = interval(np.concatenate([pick(s) for s in pooled]), confidence)
        return {"mean": float(np.nanmean(means)), "low": low, "high": high}

    return {"accuracy": summary("accuracy"), "macro_recall": summary("macro_recall"),
            "recall": [summary("recall", k) for k in range(n_classes)], "confidence": confidence,
            "resamples": resamples, "repeats": len(correct_a)}


def _minus(a: Scores, b: Scores) -> Scores:
    return Scores(a.accuracy - b.accuracy, a.macro_recall - b.macro_recall, a.recall - b.recall)
