"""Any labelled image folder: ``raw/<name>/<class>/<image>``, named and mapped in params.yaml.

==========================================  ===============================================
path under ``raw/<name>/``                  role
==========================================  ===============================================
``anger/IMG_0001.jpg``                      an image of the class the folder names (deeper
                                            subfolders are fine: the top folder is the class)
``splits.csv`` (optional)                   header ``file,split``; ``anger/IMG_0001.jpg,test``
==========================================  ===============================================

A folder source is a params entry, not code::

    ingest:
      sources: [fer2013, lab-photos]
      folders:
        lab-photos:
          labels: {anger: angry, happiness: happy}   # class folder -> class

Folders named after a class (``angry`` ... ``neutral``, ``contempt``) need no entry. Files
that ``splits.csv`` lists get its split; the others get none, and the split stage assigns
them. The sample id is ``<name>-<class folder>_<file stem>`` (deeper folders joined by ``_``).

Every file is one item (``seen`` = records + rejects): a record; dropped ``not_an_image``
(any file that is not an image, hidden files included); or rejected ``unknown_label`` (a
class folder the map does not know), ``no_class_folder`` (an image directly in the root),
``duplicate_sample_id``, ``unreadable_image`` or ``unknown_split`` (its splits.csv line
names a split other than train / val / test; the reject points at that line). A splits.csv
line that is no ``file,split`` pair, or names a file that does not exist, is one rejected
item too (``malformed_row``, ``missing_image``), and so is a splits.csv without the header
``file,split`` (``missing_header``: then no file gets a split from it).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ferdata.images import IMAGE_SUFFIXES
from ferdata.manifest import Reject
from ferdata.sources.base import BadItem, ImageToRead, Item, ItemSource, MissingSourceError, RawRecord, unmeasured
from ferdata.taxonomy import CLASSES_8

SPLITS_FILE = "splits.csv"
SPLITS = ("train", "val", "test")


class LabelledFolder(ItemSource):
    """Reads ``raw/<name>/<class>/<image>``; ``name`` and ``labels`` come from ``ingest.folders``."""

    name = "folder"  # the registry's entry; each folder source reads under its own name

    def __init__(self, root: Path, name: str, labels: dict | None = None) -> None:
        super().__init__(root)
        self.name = name
        labels = dict(labels or {})
        bad = {folder: label for folder, label in labels.items() if label not in CLASSES_8}
        if bad:
            raise ValueError(f"ingest.folders.{name}.labels: {bad} map to no class; "
                             f"classes are {', '.join(CLASSES_8)}")
        self.labels = {c: c for c in CLASSES_8} | {str(folder): label for folder, label in labels.items()}

    def check(self) -> None:
        if not self.root.is_dir():
            raise MissingSourceError(f"{self.name}: no folder {self.root}; put its images in "
                                     f"{self.root}/<class>/ (a folder source named in ingest.folders)")

    def items(self) -> Iterator[Item]:
        """splits.csv's unusable lines, then every file under the root in path order (walked,
        not listed whole): a record, or a reject."""
        listed = yield from self._read_splits()
        taken: set[str] = set()
        for path in walk_files(self.root):
            location = path.relative_to(self.root).as_posix()
            if location == SPLITS_FILE:
                continue
            try:
                record = self._record(path, location, listed.get(location), taken)
            except BadItem as bad:
                where = listed[location].line if bad.reason == "unknown_split" else location
                yield bad.reject(self.name, where)
            else:
                taken.add(record.sample_id)
                yield record, None

    def _record(self, path: Path, location: str, listed: _Listed | None, taken: set[str]) -> RawRecord:
        """One file's record (its image measured later), or :class:`BadItem` saying why it is none."""
        folders = PurePosixPath(location).parts[:-1]
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
            raise BadItem("not_an_image", "not an image file; ignored", kind="dropped")
        if not folders:
            raise BadItem("no_class_folder", f"an image directly in {self.root.name}/; "
                                             "put it in the folder of its class")
        sample_id = f"{self.name}-{'_'.join(PurePosixPath(location).with_suffix('').parts)}"
        if folders[0] not in self.labels:
            raise BadItem("unknown_label", f"class folder {folders[0]!r} is neither a class nor in "
                                           f"ingest.folders.{self.name}.labels", sample_id)
        if listed is not None and listed.split not in SPLITS:
            raise BadItem("unknown_split", f"{location}: split {listed.split!r} is not one of "
                                           f"{', '.join(SPLITS)}", sample_id)
        if sample_id in taken:
            raise BadItem("duplicate_sample_id", f"another file already has the id {sample_id}", sample_id)
        return unmeasured(ImageToRead(str(path), location, location), sample_id=sample_id,
                          native_label=folders[0], source_file=location, split=listed.split if listed else None)

    def _read_splits(self) -> Generator[Reject, None, dict[str, _Listed]]:
        """splits.csv's lines by the file they name (the generator's return value); each line
        that is no ``file,split`` pair, or names no existing file, is yielded as a reject."""
        path = self.root / SPLITS_FILE
        if not path.is_file():
            return {}
        listed: dict[str, _Listed] = {}
        with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
            rows = csv.reader(fh)
            header = [h.strip().lower() for h in next(rows, [])]
            if header != ["file", "split"]:
                yield BadItem("missing_header", f"expected the header file,split, found {','.join(header)!r}; "
                                                "splits.csv not used").reject(self.name, f"{SPLITS_FILE}:1")
                return {}
            for fields in rows:
                if not any(f.strip() for f in fields):
                    continue
                file = fields[0].strip() if len(fields) == 2 else ""
                where = f"{SPLITS_FILE}:{rows.line_num}"
                if not file:
                    yield BadItem("malformed_row", f"expected 'file,split', found {len(fields)} fields"
                                  ).reject(self.name, where)
                elif not (self.root / file).is_file():
                    yield BadItem("missing_image", f"image {file} not found").reject(self.name, where)
                else:
                    listed[file] = _Listed(fields[1].strip(), where)
        return listed


def walk_files(folder: Path) -> Iterator[Path]:
    """The files under ``folder`` (symbolic links to files included, not followed into
    folders), in the order of their sorted paths, one folder listed at a time."""
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False):
            yield from walk_files(Path(entry.path))
        elif entry.is_file():
            yield Path(entry.path)


@dataclass(frozen=True)
class _Listed:
    """A file's splits.csv entry: the split it names and where (``splits.csv:7``)."""

    split: str
    line: str
