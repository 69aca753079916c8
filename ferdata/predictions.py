"""The rows of a predictions file: one model's answer for each face, with its label.

``processed/predictions.parquet`` (the evaluate stage's val and test splits) answers every
row. ``processed/fer2013_private_test.parquet`` (every FER2013 PrivateTest row as
published) may hold faces the model could not answer, having no aligned pixels for them:
their prediction columns are null and ``correct`` is false. ``processed/ablation/
predictions.parquet`` holds each ablation arm's and seed's answers, its class names in the
file's metadata (:func:`with_classes`).
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import pyarrow as pa

PREDICTIONS_SCHEMA = pa.schema([
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("label", pa.string(), nullable=False),
    pa.field("label_index", pa.int16(), nullable=False),
    pa.field("predicted", pa.int16(), nullable=False),  # predicted label index
    pa.field("predicted_label", pa.string(), nullable=False),
    pa.field("confidence", pa.float32(), nullable=False),  # probability of the predicted class
    pa.field("correct", pa.bool_(), nullable=False),
    pa.field("probabilities", pa.list_(pa.float32()), nullable=False),  # softmax, class order
    pa.field("logits", pa.list_(pa.float32()), nullable=False),  # the dense layer before softmax
])
ANSWER_FIELDS = ("predicted", "predicted_label", "confidence", "probabilities", "logits")
# The same columns, where a face without an answer has nulls in the answer's fields.
PARTIAL_PREDICTIONS_SCHEMA = pa.schema([f.with_nullable(f.name in ANSWER_FIELDS) for f in PREDICTIONS_SCHEMA])
CLASSES_KEY = b"ferdata.classes"  # schema metadata: the class names by index, as JSON


def with_classes(table: pa.Table, classes: Sequence[str]) -> pa.Table:
    """``table`` carrying the class names of its label and prediction indexes in its metadata."""
    return table.replace_schema_metadata({**(table.schema.metadata or {}), CLASSES_KEY: json.dumps(list(classes))})


def classes_of(table: pa.Table) -> tuple[str, ...] | None:
    """The class names :func:`with_classes` stored in ``table``; None when it holds none."""
    stored = (table.schema.metadata or {}).get(CLASSES_KEY)
    return None if stored is None else tuple(json.loads(stored))


def _rows_as_lists(matrix: np.ndarray, answered: np.ndarray | None = None) -> pa.ListArray:
    """An (N, C) float array as N lists of C float32 values; null where not ``answered``."""
    offsets = np.arange(0, matrix.size + 1, matrix.shape[1], dtype=np.int32)
    mask = None if answered is None else pa.array(~answered)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(matrix.ravel(), pa.float32()), mask=mask)


def predictions_table(rows: pa.Table, classes: Sequence[str], logits: np.ndarray,
                      probabilities: np.ndarray, answered: np.ndarray | None = None) -> pa.Table:
    """The predictions rows (:data:`PREDICTIONS_SCHEMA`) for the manifest ``rows``
    (sample_id, split, source, label, label_index). With ``answered``, a boolean mask, the
    other rows get null answers and count as wrong (:data:`PARTIAL_PREDICTIONS_SCHEMA`)."""
    predicted = probabilities.argmax(axis=1)
    truth = rows["label_index"].to_numpy(zero_copy_only=False)
    unanswered = None if answered is None else ~answered
    return pa.table({
        "sample_id": rows["sample_id"], "split": rows["split"], "source": rows["source"],
        "label": rows["label"], "label_index": rows["label_index"],
        "predicted": pa.array(predicted, pa.int16(), mask=unanswered),
        "predicted_label": pa.array([classes[k] for k in predicted], pa.string(), mask=unanswered),
        "confidence": pa.array(probabilities.max(axis=1), pa.float32(), mask=unanswered),
        "correct": pa.array((predicted == truth) & (True if answered is None else answered), pa.bool_()),
        "probabilities": _rows_as_lists(probabilities, answered), "logits": _rows_as_lists(logits, answered),
    }).cast(PREDICTIONS_SCHEMA if answered is None else PARTIAL_PREDICTIONS_SCHEMA)
