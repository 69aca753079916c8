"""AffectNet: two CSVs of labelled, boxed and landmarked images.

=============================================  ============================================
path under ``raw/affectnet/``                  role
=============================================  ============================================
``training.csv``                               rows of the train split
``validation.csv``                             rows of the test split (AffectNet has no
                                               public test set; ingest's ``val_from_train``
                                               draws val from the training rows)
``Manually_Annotated_Images/689/737d….jpg``    images, named by ``subDirectory_filePath``
=============================================  ============================================

Columns: ``subDirectory_filePath, face_x, face_y, face_width, face_height,
facial_landmarks, expression, valence, arousal``. ``facial_landmarks`` holds 68 points
as ``x;y;x;y…`` in image pixels. Expression codes: 0 neutral, 1 happy, 2 sad, 3 surprise,
4 fear, 5 disgust, 6 angry, 7 contempt (kept or dropped by ``ingest.taxonomy``), 8 none,
9 uncertain, 10 no face. The box and landmarks travel to the align stage as
:class:`Given`; valence and arousal (-1..1; -2 means not rated) become manifest columns.

Every data row is one item (``seen`` = records + rejects): a record; dropped
``expression_none`` (8), ``expression_uncertain`` (9) or ``not_a_face`` (10); or rejected
``malformed_row``, ``bad_file_name``, ``unknown_label`` (not 0..10), ``bad_box`` (not four
numbers, or an empty box), ``bad_landmarks`` (not 136 numbers), ``bad_affect`` (valence
or arousal not a number in -1..1 or -2), ``duplicate_sample_id``, ``missing_image``,
``unreadable_image`` or ``box_outside_image`` (less than half the box inside the image). A
CSV whose header lacks a column is one rejected ``missing_header`` item.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import PurePosixPath

import numpy as np

from ferdata.sources.base import (
    POINTS, BadItem, Given, ImageToRead, Item, ItemSource, MissingSourceError, RawRecord, unmeasured,
)
from ferdata.taxonomy import SOURCE_LABELS

IMAGES = "Manually_Annotated_Images"
#: The CSVs, in reading order, and the split their rows belong to.
CSV_SPLITS = {"training.csv": "train", "validation.csv": "test"}
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
           "facial_landmarks", "expression", "valence", "arousal")
#: Expression codes that name no expression: dropped, with these reasons.
NOT_EXPRESSIONS = {"8": "expression_none", "9": "expression_uncertain", "10": "not_a_face"}
NOT_RATED = -2.0  # valence / arousal of a row without affect ratings


class AffectNet(ItemSource):
    """Reads AffectNet's training.csv and validation.csv and the images they name."""

    name = "affectnet"
    homepage = "http://mohammadmahoor.com/affectnet/ (by agreement, for academic research)"

    def check(self) -> None:
        expected = [*CSV_SPLITS, IMAGES]
        missing = [str(self.root / p) for p in expected if not (self.root / p).exists()]
        if missing:
            raise MissingSourceError(f"affectnet: missing {' and '.join(missing)}; "
                                     f"get AffectNet from {self.homepage}")

    def items(self) -> Iterator[Item]:
        """Every data row of both CSVs: a record with its Given, or a reject; a CSV whose
        header lacks a column is one reject."""
        taken: set[str] = set()
        for file_name, split in CSV_SPLITS.items():
            with (self.root / file_name).open(newline="", encoding="utf-8-sig", errors="replace") as fh:
                rows = csv.reader(fh)
                header = [name.strip() for name in next(rows, [])]
                missing = [c for c in COLUMNS if c not in header]
                if missing:
                    yield BadItem("missing_header", f"the header lacks {', '.join(missing)}; "
                                                    f"expected {','.join(COLUMNS)}").reject(self.name, f"{file_name}:1")
                    continue
                position = [header.index(c) for c in COLUMNS]
                for fields in rows:
                    if not any(f.strip() for f in fields):
                        continue
                    line = rows.line_num
                    try:
                        record, given = self._record(fields, position, len(header), split,
                                                     f"{file_name}:{line}", line, taken)
                    except BadItem as bad:
                        yield bad.reject(self.name, f"{file_name}:{line}")
                    else:
                        taken.add(record.sample_id)
                        yield record, given

    def _record(self, fields: list[str], position: list[int], width: int, split: str, location: str,
                line: int, taken: set[str]) -> tuple[RawRecord, Given]:
        """One data row as a record (its image measured later) and its box and landmarks, or
        :class:`BadItem`."""
        if len(fields) != width:
            raise BadItem("malformed_row", f"expected {width} comma-separated fields, found {len(fields)}")
        path, x, y, w, h, marks, code, valence, arousal = (fields[i].strip() for i in position)
        parts = PurePosixPath(path).parts
        if not parts or PurePosixPath(path).is_absolute() or ".." in parts:
            raise BadItem("bad_file_name", f"subDirectory_filePath {path!r} is not a path under {IMAGES}/")
        sample_id = f"{self.name}-{'_'.join(PurePosixPath(path).with_suffix('').parts)}"
        if code in NOT_EXPRESSIONS:
            raise BadItem(NOT_EXPRESSIONS[code], f"expression {code}: not an expression; not used", sample_id,
                          kind="dropped")
        if code not in SOURCE_LABELS[self.name]:
            raise BadItem("unknown_label", f"expression {code!r} is not one of 0..10", sample_id)
        box = _box(x, y, w, h, sample_id)
        landmarks = _landmarks(marks, sample_id)
        affect = [_affect(name, text, sample_id) for name, text in (("valence", valence), ("arousal", arousal))]
        if sample_id in taken:
            raise BadItem("duplicate_sample_id", f"{path} is listed more than once", sample_id)
        image = ImageToRead(str(self.root / IMAGES / path), f"{IMAGES}/{path}", location, box)
        record = unmeasured(image, sample_id=sample_id, native_label=code, source_file=f"{IMAGES}/{path}",
                            split=split, source_line=line, valence=affect[0], arousal=affect[1])
        return record, Given(box=box, landmarks=landmarks)


def _box(x: str, y: str, w: str, h: str, sample_id: str) -> tuple[float, float, float, float]:
    """face_x, face_y, face_width, face_height as (left, top, right, bottom)."""
    try:
        left, top, width, height = (float(v) for v in (x, y, w, h))
    except ValueError:
        raise BadItem("bad_box", f"face box ({x}, {y}, {w}, {h}) is not four numbers", sample_id) from None
    if not (width > 0 and height > 0 and np.isfinite([left, top]).all()):
        raise BadItem("bad_box", f"face box has size {w} x {h}; expected a positive width and height",
                      sample_id)
    return left, top, left + width, top + height


def _landmarks(text: str, sample_id: str) -> np.ndarray:
    """``x;y;x;y…`` as (68, 2) float32."""
    values = []
    for value in text.strip().strip(";").split(";"):
        try:
            values.append(float(value))
        except ValueError:
            raise BadItem("bad_landmarks", f"facial_landmarks holds {value.strip()[:20]!r}, not a number",
                          sample_id) from None
    points = np.array(values, dtype=np.float32)
    if len(points) != 2 * POINTS or not np.isfinite(points).all():
        raise BadItem("bad_landmarks", f"facial_landmarks holds {len(points)} numbers; expected "
                                       f"{2 * POINTS} ({POINTS} points as x;y;x;y...)", sample_id)
    return points.reshape(POINTS, 2)


def _affect(name: str, text: str, sample_id: str) -> float | None:
    """A valence or arousal value; None where the row was not rated (-2)."""
    try:
        value = float(text)
    except ValueError:
        raise BadItem("bad_affect", f"{name} {text[:20]!r} is not a number", sample_id) from None
    if value == NOT_RATED:
        return None
    if not -1 <= value <= 1:
        raise BadItem("bad_affect", f"{name} {value} is outside -1..1 (or -2, not rated)", sample_id)
    return value
