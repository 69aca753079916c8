"""RAF-DB (Real-world Affective Faces, basic emotions): one label file, full or aligned images.

==============================================  =========================================
path under ``raw/raf-db/``                      role
==============================================  =========================================
``EmoLabel/list_patition_label.txt`` (sic)      ``train_00001.jpg 5``: image, label 1..7
``Image/original/train_00001.jpg``              full image: read with ``images: original``
``Image/aligned/train_00001_aligned.jpg``       100x100 face aligned by RAF-DB's authors:
                                                read with ``images: aligned``
==============================================  =========================================

The file name's prefix gives the split (``train_`` or ``test_``; RAF-DB has no val).
Labels: 1 surprise, 2 fear, 3 disgust, 4 happy, 5 sad, 6 angry, 7 neutral. Original images
go through ferdata's alignment; aligned ones are marked pre-aligned (:class:`Given`), so
the align stage only resizes them unless ``align.realign`` asks for more.

Every non-blank line of the label file is one item (``seen`` = records + rejects): a
record, or rejected ``malformed_row`` (not ``<name> <label>``), ``bad_file_name`` (no
``train_`` / ``test_`` prefix), ``unknown_label`` (not 1..7), ``duplicate_sample_id``,
``missing_image`` or ``unreadable_image``. Images that no line names are not items.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ferdata.sources.base import (
    BadItem, Given, ImageToRead, Item, ItemSource, MissingSourceError, RawRecord, unmeasured,
)
from ferdata.taxonomy import SOURCE_LABELS

LABEL_FILE = "EmoLabel/list_patition_label.txt"
#: The ``images`` option -> the folder its images are read from.
IMAGE_FOLDERS = {"original": "Image/original", "aligned": "Image/aligned"}
SPLITS = ("train", "test")  # the file-name prefixes, which name the split


class RAFDB(ItemSource):
    """Reads RAF-DB basic: labels and splits from the label file, images from one folder."""

    name = "raf-db"
    homepage = "http://www.whdeng.cn/raf/model1.html (by agreement with its maintainers)"

    def __init__(self, root: Path, images: str = "original") -> None:
        super().__init__(root)
        if images not in IMAGE_FOLDERS:
            raise ValueError(f"ingest.raf-db.images must be one of {', '.join(IMAGE_FOLDERS)}, "
                             f"not {images!r}")
        self.images, self.folder = images, IMAGE_FOLDERS[images]

    def check(self) -> None:
        missing = [str(self.root / p) for p in (LABEL_FILE, self.folder) if not (self.root / p).exists()]
        if missing:
            raise MissingSourceError(f"raf-db: missing {' and '.join(missing)}; "
                                     f"get RAF-DB from {self.homepage}")

    def items(self) -> Iterator[Item]:
        """Every non-blank line of the label file: a record (pre-aligned with ``images:
        aligned``), or a reject."""
        taken: set[str] = set()
        given = Given(prealigned=True) if self.images == "aligned" else None
        with (self.root / LABEL_FILE).open(encoding="utf-8-sig", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = self._record(line.split(), number, taken)
                except BadItem as bad:
                    yield bad.reject(self.name, f"{LABEL_FILE}:{number}")
                else:
                    taken.add(record.sample_id)
                    yield record, given

    def _record(self, fields: list[str], line: int, taken: set[str]) -> RawRecord:
        """The record a label line describes (its image measured later), or :class:`BadItem`
        saying what is wrong with it."""
        if len(fields) != 2:
            raise BadItem("malformed_row", f"expected '<image name> <label>', found {len(fields)} fields")
        name, code = fields
        prefix = name.split("_", 1)[0]
        if prefix not in SPLITS or "/" in name:
            raise BadItem("bad_file_name", f"{name!r}: expected a name like train_00001.jpg or test_0001.jpg")
        sample_id = f"{self.name}-{Path(name).stem}"
        if sample_id in taken:
            raise BadItem("duplicate_sample_id", f"{name} is listed twice", sample_id)
        if code not in SOURCE_LABELS[self.name]:
            raise BadItem("unknown_label", f"label {code!r} is not one of 1..7", sample_id)
        file = self.image_file(name)
        return unmeasured(ImageToRead(str(self.root / file), file, f"{LABEL_FILE}:{line}"), sample_id=sample_id,
                          native_label=code, source_file=file, split=prefix, source_line=line)

    def image_file(self, name: str) -> str:
        """Where the image a label line names is, under the root (``train_00001.jpg`` ->
        ``Image/aligned/train_00001_aligned.jpg`` with ``images: aligned``)."""
        if self.images == "aligned":
            name = f"{Path(name).stem}_aligned{Path(name).suffix}"
        return f"{self.folder}/{name}"
