"""The trained model on FER2013's PrivateTest as published: all of its rows, the way other
work scores FER2013, beside the evaluate stage's test split (the rows the build kept).

Each row is answered from its aligned pixels, whatever the split stage did with it (a second
copy of a face, a copy whose labels disagree); a face the align stage dropped has no pixels
and counts as wrong. ``ferdata ablate`` scores every arm on the same faces by the same rule,
so the train stage's model and the ablation's ``build`` arm compare. Each face's answer
goes to ``processed/fer2013_private_test.parquet``, which ``ferdata compare --private-test``
pairs between two runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ferdata import bootstrap
from ferdata.test_faces import TEST_SOURCE, aligned_test_pixels, test_faces, known_train_copies
from ferdata.layout import Layout
from ferdata.manifest import read_table
from ferdata.predictions import PARTIAL_PREDICTIONS_SCHEMA, predictions_table

PRIVATE_TEST = "fer2013_private_test"  # its section of eval.json
Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # (N, 48, 48) uint8 faces -> logits, probabilities
NO_ANSWERS = PARTIAL_PREDICTIONS_SCHEMA.empty_table()  # what the answers file holds with no PrivateTest to score


@dataclass(frozen=True)
class PrivateTestAnswers:
    """The model on every FER2013 PrivateTest row: its scores and each face's answer."""

    scores: dict  # eval.json's fer2013_private_test
    answers: pa.Table  # one row per face, PARTIAL_PREDICTIONS_SCHEMA: null answers where no pixels


def _known_outputs(known: pa.Table, ids: Sequence[str], n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits and probabilities (N, C) of the faces ``ids`` from the predictions rows ``known``,
    and which faces ``known`` holds (the other rows are NaN)."""
    position = dict(zip(known["sample_id"].to_pylist(), range(known.num_rows)))
    rows = np.array([position.get(sid, -1) for sid in ids], np.int64)
    have = rows >= 0
    outputs = []
    for column in ("logits", "probabilities"):
        values = np.full((len(ids), n_classes), np.nan, np.float32)
        taken = pc.list_flatten(known[column].take(pa.array(rows[have])))
        values[have] = taken.to_numpy(zero_copy_only=False).reshape(-1, n_classes)
        outputs.append(values)
    return outputs[0], outputs[1], have


def private_test_answers(predict: Predict, classes: Sequence[str], layout: Layout,
                         dataset_splits: Mapping[str, str], known: pa.Table) -> PrivateTestAnswers | None:
    """Accuracy, macro recall and per-class recall of ``predict`` on every FER2013 PrivateTest
    row ingested under ``layout``, with how many it answered and how many the build left out
    of its test split (``dataset_splits``: the dataset manifest's split of each sample id),
    and every face's answer. ``known`` holds predictions rows the model already gave (the
    evaluate stage's, by sample id); only the other faces go through ``predict``.

    None when there is nothing comparable to score: no FER2013 PrivateTest rows, no aligned
    faces yet, or a PrivateTest row the dataset trains or validates on.
    """
    interim_path = layout.interim / "manifest.parquet"
    aligned_path = layout.aligned / "aligned.parquet"
    if not interim_path.exists() or not aligned_path.exists():
        return None
    rows = [("source", "==", TEST_SOURCE), ("split", "==", "test")]
    test = test_faces(read_table(interim_path, rows), interim_path, classes,
                      known_train_copies(Path(layout.dataset) / "dedup.json"))
    if test is None or any(dataset_splits.get(sid, "test") != "test" for sid in test.ids):
        return None
    images, present = aligned_test_pixels(read_table(aligned_path, rows), test.ids)
    logits, probabilities, have = _known_outputs(known, test.ids, len(classes))
    ask = present & ~have
    if ask.any():
        logits[ask], probabilities[ask] = predict(images[ask])
    answered = have | ask
    n = len(test.ids)
    faces = pa.table({"sample_id": test.ids, "split": ["test"] * n, "source": [TEST_SOURCE] * n,
                      "label": [classes[k] for k in test.labels], "label_index": pa.array(test.labels, pa.int16())})
    answers = predictions_table(faces, classes, logits, probabilities, answered)
    correct = answers["correct"].to_numpy(zero_copy_only=False)
    scores = {
        "faces": n,
        "answered": int(answered.sum()),
        "outside_test_split": sum(sid not in dataset_splits for sid in test.ids),
        **bootstrap.observed_scores(test.labels, correct, classes),
    }
    return PrivateTestAnswers(scores=scores, answers=answers)
