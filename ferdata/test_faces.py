"""The faces every model is scored on alike: FER2013's PrivateTest rows as ingested.

The evaluate stage scores the trained model on them (:mod:`ferdata.private_test`) and
``ferdata ablate`` scores every arm on them (:mod:`ferdata.arms`), both by id, in aligned
pixels where the align stage kept a face, so that their figures compare. The ablation
also scores its arms on FER2013's PublicTest rows as ingested, the val faces arms are chosen on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ferdata.dedup import copies_of_train_rows
from ferdata.manifest import IMAGE_SIZE, check_labels, pixels_to_array

TEST_SOURCE = "fer2013"


@dataclass
class TestFaces:
    """FER2013's PrivateTest (or PublicTest) rows as ingested, by id, and which of them the
    split stage found a copy of among the training rows (None before the split stage has run)."""

    ids: list[str]
    labels: np.ndarray
    copied_in_train: np.ndarray | None = None


def source_rows(table: pa.Table, source: str, split: str) -> pa.Table:
    """The rows of ``source`` ingested as ``split``, sorted by id."""
    keep = pc.and_(pc.equal(table["source"], source), pc.fill_null(pc.equal(table["split"], split), False))
    return table.filter(keep).sort_by("sample_id")


def label_indexes(table: pa.Table, classes: Sequence[str], path: Path) -> np.ndarray:
    """The rows' label indexes, after checking that ``path`` was built with ``classes``."""
    check_labels(table, tuple(classes), path, "; run the pipeline with the same taxonomy")
    return np.asarray(table["label_index"].to_numpy(zero_copy_only=False), dtype=np.int32)


def known_train_copies(dedup_report: Path) -> set[str] | None:
    """The ids the split stage's ``dedup.json`` puts in one group (an exact or near copy) with a
    row ingested as train; None when there is no report yet."""
    return copies_of_train_rows(dedup_report) if dedup_report.exists() else None


def test_faces(interim: pa.Table, path: Path, classes: Sequence[str], copies: set[str] | None,
               split: str = "test") -> TestFaces | None:
    """FER2013's PrivateTest rows (``split`` "val": its PublicTest rows) of the ingest
    manifest ``interim`` (read from ``path``), sorted by id, each marked if it is among
    ``copies`` (:func:`known_train_copies`; None: not known); None when there are none."""
    test = source_rows(interim, TEST_SOURCE, split)
    if test.num_rows == 0:
        return None
    ids = test["sample_id"].to_pylist()
    copied = None if copies is None else np.array([sample_id in copies for sample_id in ids], bool)
    return TestFaces(ids, label_indexes(test, classes, path), copied)


def aligned_test_pixels(aligned: pa.Table, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The aligned pixels of each FER2013 test face ``ids`` in the align stage's table, and
    whether the align stage kept it (zeros where it did not)."""
    rows = source_rows(aligned, TEST_SOURCE, "test")
    where = {sid: i for i, sid in enumerate(rows["sample_id"].to_pylist())}
    pixels = pixels_to_array(rows["pixels"])
    images = np.zeros((len(ids), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    present = np.array([sid in where for sid in ids], bool)
    for i, sid in enumerate(ids):
        if sid in where:
            images[i] = pixels[where[sid]]
    return images, present
