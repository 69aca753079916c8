"""The ablation's arms: what each trains and validates on, and how it sees the test faces.

Every arm is read from what the pipeline already wrote under ``processed/`` (nothing is
ingested or aligned again); only the balance stage runs again, into a temporary folder, for
the two arms that balance. The arms add one step each:

* ``raw``: FER2013's Training rows as ingested, their own 48x48 pixels: no alignment, no dedup;
* ``aligned``: the same rows as the align stage left them (aligned, or the fallback crop);
* ``aligned+dedup``: the FER2013 train rows the split stage kept (copies, leaks and copies whose labels disagree removed);
* ``build``: the balance stage's output: every source's train rows, balanced by ``balance.method``;
* ``build+clean``: the same, with the label-issues stage's flagged faces left out.

Every arm is tested on all of FER2013's PrivateTest rows as ingested
(:class:`ferdata.test_faces.TestFaces`), in its own pixels (raw for ``raw``, aligned for the
others). A test face the align stage dropped has no aligned pixels: the arm cannot answer
for it and it counts as wrong. Every arm validates (for the plateau schedule and early
stopping, when set) on all of FER2013's PublicTest rows, in its own pixels, so the arms
differ only in what they train on; the ablation scores every arm on those val faces too,
by the test faces' rule, so that a choice between arms is made on val.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ferdata.balance import BalanceParams, run_balance
from ferdata.images import decode_gray
from ferdata.label_issues import flagged_ids
from ferdata.layout import Layout
from ferdata.manifest import IMAGE_SIZE, pixels_to_array, read_table
from ferdata.resample import centre_crop
from ferdata.test_faces import (TEST_SOURCE, aligned_test_pixels, label_indexes, source_rows, test_faces,
                                known_train_copies)

ARMS: tuple[str, ...] = ("raw", "aligned", "aligned+dedup", "build", "build+clean")


@dataclass
class Faces:
    """Labelled 48x48 faces: ids, (N, 48, 48) uint8 images and label indexes; ``made`` of
    them were made by the balance stage (the others are real faces)."""

    ids: list[str]
    images: np.ndarray
    labels: np.ndarray
    made: int = 0

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class ArmData:
    """One arm's train and val faces, and its pixels of each test face (``test_present``
    False where the arm has none: that face counts as wrong)."""

    name: str
    train: Faces
    val: Faces
    test_images: np.ndarray
    test_present: np.ndarray


class ArmSources:
    """The pipeline's outputs the arms are read from (``layout``), each read once."""

    def __init__(self, layout: Layout, classes: Sequence[str], balance: BalanceParams) -> None:
        self.layout, self.classes, self.balance = layout, tuple(classes), balance
        self.interim_path = layout.interim / "manifest.parquet"
        self.aligned_path = layout.aligned / "aligned.parquet"
        self.dataset_path = layout.dataset / "manifest.parquet"
        interim = read_table(self.interim_path)
        self.interim = interim.filter(pc.equal(interim["source"], TEST_SOURCE))
        aligned = read_table(self.aligned_path)
        self.aligned = aligned.filter(pc.equal(aligned["source"], TEST_SOURCE))
        copies = known_train_copies(layout.dataset / "dedup.json")
        test = test_faces(self.interim, self.interim_path, self.classes, copies)
        if test is None:
            raise ValueError(f"{self.interim_path}: no FER2013 PrivateTest (test) rows; the ablation tests "
                             f"every arm on them, so ingest fer2013")
        self.test = test
        self.val = test_faces(self.interim, self.interim_path, self.classes, copies, "val")

    def check(self, arms: Sequence[str]) -> None:
        """Fail before any training if an arm's input is missing (FileNotFoundError naming it)."""
        if {"aligned+dedup", "build", "build+clean"} & set(arms) and not self.dataset_path.exists():
            raise FileNotFoundError(f"{self.dataset_path}: not found; run the split stage first")
        if "build+clean" in arms:
            flagged_ids(self.layout.label_issues)

    def arm(self, name: str) -> ArmData:
        """The named arm's faces (see the module docstring)."""
        if name == "raw":
            train, val = (self._raw(source_rows(self.interim, TEST_SOURCE, s)) for s in ("train", "val"))
            test = self._raw(source_rows(self.interim, TEST_SOURCE, "test"))
            return ArmData(name, train, val, test.images, np.ones(len(test), bool))
        val = self._faces(source_rows(self.aligned, TEST_SOURCE, "val"), self.aligned_path)
        if name == "aligned":
            train = self._faces(source_rows(self.aligned, TEST_SOURCE, "train"), self.aligned_path)
        elif name == "aligned+dedup":
            dataset = read_table(self.dataset_path)
            train = self._faces(source_rows(dataset, TEST_SOURCE, "train"), self.dataset_path)
        elif name in ("build", "build+clean"):
            exclude = flagged_ids(self.layout.label_issues) if name == "build+clean" else set()
            train = self._balanced(exclude)
        else:
            raise ValueError(f"unknown arm {name!r}; known: {', '.join(ARMS)}")
        images, present = aligned_test_pixels(self.aligned, self.test.ids)
        return ArmData(name, train, val, images, present)

    def _raw(self, rows: pa.Table) -> Faces:
        """Rows of the ingest manifest with their pixels as ingested (48x48 for FER2013)."""
        pixel_rows = rows["pixels_row"].to_pylist()
        if any(row is not None for row in pixel_rows):
            pixels = np.load(self.layout.interim / "pixels" / f"{TEST_SOURCE}.npy", mmap_mode="r")
        images = np.empty((rows.num_rows, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        for i, (row, file) in enumerate(zip(pixel_rows, rows["source_file"].to_pylist())):
            image = pixels[row] if row is not None else decode_gray(self.layout.raw / TEST_SOURCE / file)
            images[i] = image if image.shape == (IMAGE_SIZE, IMAGE_SIZE) else centre_crop(image)
        return Faces(rows["sample_id"].to_pylist(), images, label_indexes(rows, self.classes, self.interim_path))

    def _faces(self, rows: pa.Table, path: Path) -> Faces:
        return Faces(rows["sample_id"].to_pylist(), pixels_to_array(rows["pixels"]),
                     label_indexes(rows, self.classes, path))

    def _balanced(self, exclude: set[str]) -> Faces:
        """The balance stage's train rows, run again into a temporary folder."""
        with tempfile.TemporaryDirectory(prefix=".ablate-balance-", dir=self.layout.processed) as tmp:
            run_balance(self.balance, self.layout.dataset, Path(tmp) / "balanced", self.classes, exclude=exclude)
            path = Path(tmp) / "balanced" / "manifest.parquet"
            table = read_table(path).sort_by("sample_id")
            faces = self._faces(table, path)
            faces.made = int(pc.sum(pc.not_equal(table["origin"], "real")).as_py() or 0)
            return faces
