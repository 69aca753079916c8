"""The trained model on FER2013's PrivateTest as published: all of its rows, the way other
work scores FER2013, beside the evaluate stage's test split (the rows the build kept).

Each row is answered from its aligned pixels, whatever the split stage did with it (a second
copy of a face, a copy whose labels disagree); a face the align stage dropped has no pixels
and counts as wrong. ``ferdata ablate`` scores every arm on the same faces by the same rule,
so the train stage's model and the ablation's ``build`` arm compare.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ferdata import bootstrap
from ferdata.arms import TEST_SOURCE, aligned_test_pixels, test_faces
from ferdata.layout import Layout
from ferdata.manifest import read_table

PRIVATE_TEST = "fer2013_private_test"  # its section of eval.json
Predict = Callable[[np.ndarray], np.ndarray]  # (N, 48, 48) uint8 faces -> (N, C) probabilities


def private_test_scores(predict: Predict, classes: Sequence[str], layout: Layout,
                        dataset_splits: Mapping[str, str], predicted: Mapping[str, int]) -> dict | None:
    """Accuracy, macro recall and per-class recall of ``predict`` on every FER2013 PrivateTest
    row ingested under ``layout``, with how many it answered and how many the build left out
    of its test split (``dataset_splits``: the dataset manifest's split of each sample id).
    ``predicted`` holds the class the model already gave some of them (the evaluate stage's
    test split, by sample id); only the others go through ``predict``.

    None when there is nothing comparable to score: no FER2013 PrivateTest rows, no aligned
    faces yet, or a PrivateTest row the dataset trains or validates on.
    """
    interim_path = layout.interim / "manifest.parquet"
    aligned_path = layout.aligned / "aligned.parquet"
    if not interim_path.exists() or not aligned_path.exists():
        return None
    rows = [("source", "==", TEST_SOURCE), ("split", "==", "test")]
    test = test_faces(read_table(interim_path, rows), interim_path, classes, Path(layout.dataset) / "dedup.json")
    if test is None or any(dataset_splits.get(sid, "test") != "test" for sid in test.ids):
        return None
    images, present = aligned_test_pixels(read_table(aligned_path, rows), test.ids)
    guesses = np.array([predicted.get(sid, -1) for sid in test.ids], np.int64)  # -1: not answered yet
    ask = present & (guesses < 0)
    if ask.any():
        guesses[ask] = predict(images[ask]).argmax(axis=1)
    return {
        "faces": len(test.ids),
        "answered": int(present.sum()),
        "outside_test_split": sum(sid not in dataset_splits for sid in test.ids),
        **bootstrap.observed_scores(test.labels, guesses == test.labels, classes),
    }
