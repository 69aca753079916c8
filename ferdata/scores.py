"""Classification scores of predictions against labels: accuracy, macro recall, per-class
recall / precision / F1 and support, confusion matrices, and the same per source."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (C, C): row = actual class, column = predicted class."""
    flat = np.asarray(y_true, np.int64) * n_classes + np.asarray(y_pred, np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's ``zero_division=0``)."""
    return np.divide(num, den, out=np.zeros(len(num), dtype=np.float64), where=den > 0)


def _per_class(classes: Sequence[str], values: np.ndarray) -> dict[str, float]:
    return {c: float(v) for c, v in zip(classes, values)}


def class_scores(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, macro recall (balanced accuracy: over classes present), macro precision and
    F1 (over all classes), per-class recall / precision / F1 / support, confusion matrices.

    Undefined ratios (no support, no predictions) are 0, as in scikit-learn's
    ``classification_report(..., zero_division=0)``.
    """
    cm = confusion(y_true, y_pred, len(classes))
    support, predicted, hits = cm.sum(axis=1), cm.sum(axis=0), np.diag(cm)
    recall, precision = _ratio(hits, support), _ratio(hits, predicted)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = support > 0
    normalized = cm / np.maximum(support, 1)[:, None]
    return {
        "count": int(cm.sum()),
        "accuracy": float(hits.sum() / max(cm.sum(), 1)),
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_precision": float(precision.mean()),
        "macro_f1": float(f1.mean()),
        "recall": _per_class(classes, recall),
        "precision": _per_class(classes, precision),
        "f1": _per_class(classes, f1),
        "support": {c: int(v) for c, v in zip(classes, support)},
        "confusion": {"counts": cm.tolist(), "normalized": np.round(normalized, 6).tolist()},
    }


def source_scores(y_true: np.ndarray, y_pred: np.ndarray, sources: Sequence[str],
                  classes: Sequence[str], order: Sequence[str]) -> dict[str, dict]:
    """Per source in ``order`` that has rows here: count, accuracy, macro recall, and recall
    and support of each class the source has samples of."""
    sources = np.asarray(sources, dtype=object)
    out = {}
    for name in order:
        rows = sources == name
        if not rows.any():
            continue
        scores = class_scores(y_true[rows], y_pred[rows], classes)
        present = [c for c in classes if scores["support"][c] > 0]
        out[name] = {
            "count": scores["count"], "accuracy": scores["accuracy"], "macro_recall": scores["macro_recall"],
            "recall": {c: scores["recall"][c] for c in present},
            "support": {c: scores["support"][c] for c in present},
        }
    return out
