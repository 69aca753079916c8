"""The paired bootstrap on synthetic predictions whose true difference is known."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from ferdata.bootstrap import paired_difference, resample_counts, scores

CLASSES = 7


def _labels(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(CLASSES, size=n, p=[0.14, 0.02, 0.14, 0.25, 0.17, 0.11, 0.17])


def test_resamples_draw_every_face_count_n_times_and_repeat_with_the_seed():
    counts = resample_counts(50, 200, seed=1)
    assert counts.shape == (200, 50) and (counts.sum(axis=1) == 50).all()
    assert np.array_equal(counts, resample_counts(50, 200, seed=1))
    assert not np.array_equal(counts, resample_counts(50, 200, seed=2))
    assert 0.3 < (counts == 0).mean() < 0.43  # about 1/e of the faces are left out of a resample


def test_scores_of_the_test_set_itself_match_scikit_learn():
    rng = np.random.default_rng(0)
    labels = _labels(500, rng)
    predicted = np.where(rng.random(500) < 0.6, labels, rng.integers(0, CLASSES, 500))
    found = scores(np.ones((1, 500)), labels, predicted == labels, CLASSES)
    assert found.accuracy[0] == pytest.approx(np.mean(predicted == labels))
    assert found.macro_recall[0] == pytest.approx(balanced_accuracy_score(labels, predicted))


def test_a_strictly_better_model_gets_an_interval_above_zero():
    """B answers right wherever A does, and on 3% more of the faces: a small difference that
    only a paired comparison can tell from the faces' own spread."""
    rng = np.random.default_rng(1)
    labels = _labels(600, rng)
    a = rng.random(600) < 0.6
    b = a | (rng.random(600) < 0.075)
    result = paired_difference(labels, [b], [a], CLASSES, resamples=1000, seed=0)
    gain = b.mean() - a.mean()
    assert 0.02 < gain < 0.05
    assert result["accuracy"]["mean"] == pytest.approx(gain)
    assert 0 < result["accuracy"]["low"] < gain < result["accuracy"]["high"]
    assert result["macro_recall"]["low"] > 0
    # unpaired, the two accuracies' own intervals overlap: the pairing is what separates them
    counts = resample_counts(600, 1000, seed=0)
    own_a, own_b = (np.percentile(scores(counts, labels, x, CLASSES).accuracy, [2.5, 97.5]) for x in (a, b))
    assert own_b[0] < own_a[1]


def test_the_interval_covers_a_known_difference_about_95_times_in_100():
    """Models whose true accuracies differ by 5 points, on 300 fresh test faces each time."""
    rng = np.random.default_rng(2)
    covered = []
    for trial in range(200):
        labels = _labels(300, rng)
        luck = rng.random(300)
        a, b = luck < 0.60, luck < 0.65  # correlated, as two models on the same faces are
        result = paired_difference(labels, [b], [a], CLASSES, resamples=400, seed=trial)
        covered.append(result["accuracy"]["low"] <= 0.05 <= result["accuracy"]["high"])
    assert 0.89 <= np.mean(covered) <= 0.99


def test_repeats_are_averaged_and_their_spread_widens_the_interval():
    rng = np.random.default_rng(3)
    labels = _labels(400, rng)
    a = rng.random(400) < 0.6
    better, worse = a | (rng.random(400) < 0.2), a & (rng.random(400) < 0.9)
    one = paired_difference(labels, [better], [a], CLASSES, resamples=500, seed=0)
    both = paired_difference(labels, [better, worse], [a, a], CLASSES, resamples=500, seed=0)
    assert both["accuracy"]["mean"] == pytest.approx((better.mean() + worse.mean()) / 2 - a.mean())
    assert both["repeats"] == 2
    width = {name: r["accuracy"]["high"] - r["accuracy"]["low"] for name, r in (("one", one), ("both", both))}
    assert width["both"] > 2 * width["one"]


def test_a_class_the_test_set_lacks_has_no_recall_and_no_difference():
    rng = np.random.default_rng(4)
    labels = _labels(300, rng)
    labels[labels == 1] = 0  # no disgust
    a, b = rng.random(300) < 0.5, rng.random(300) < 0.6
    result = paired_difference(labels, [b], [a], CLASSES, resamples=200, seed=0)
    assert result["recall"][1] == {"mean": None, "low": None, "high": None}
    assert all(r["mean"] is not None for k, r in enumerate(result["recall"]) if k != 1)
    assert np.isnan(scores(np.ones((1, 300)), labels, a, CLASSES).recall[0, 1])
