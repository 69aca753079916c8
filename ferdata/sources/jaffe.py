"""JAFFE (Japanese Female Facial Expression): one folder of TIFFs whose names hold the labels.

==========================================  =============================================
path under ``raw/jaffe/``                   role
==========================================  =============================================
``KA.AN1.39.tiff`` (``.tif``, upper case)   subject KA, expression AN, pose 1, number 39
``jaffe/KA.AN1.39.tiff``                    the same, when unpacked into one subfolder
``README``, semantic-ratings text           not images: dropped ``not_an_image``
==========================================  =============================================

The images are read from ``raw/jaffe/`` itself when it holds any TIFF, else from its one
subfolder that does (other subfolders are not looked into). Every file directly in
``raw/jaffe/`` and in that subfolder is one item (``seen`` = records + rejects): a record,
or dropped ``not_an_image`` (any file that is not a TIFF, hidden files included), or
rejected ``bad_file_name``, ``unknown_label`` (expression code not in AN DI FE HA NE SA SU),
``duplicate_sample_id`` (the same name twice, e.g. ``.tif`` and ``.tiff``) or
``unreadable_image``. Palette-mode and RGB TIFFs are converted to grayscale.
"""

from __future__ import annotations

import re
from pathlib import Path

from ferdata.manifest import Reject
from ferdata.sources.base import (ImageToRead, MissingSourceError, Progress, RawRecord, Source, SourceBatch,
                                  unmeasured)
from ferdata.taxonomy import SOURCE_LABELS

TIFF_SUFFIXES = (".tif", ".tiff")
FILE_NAME = re.compile(r"([A-Z]{2})\.([A-Z]{2})(\d*)\.(\d+)", re.IGNORECASE)  # KA.AN1.39


class JAFFE(Source):
    """Reads JAFFE: subject and expression from each TIFF's name."""

    name = "jaffe"
    homepage = "https://zenodo.org/record/3451524 (given on request for non-commercial research)"

    def check(self) -> None:
        self._image_folder()

    def read(self, progress: Progress | None = None) -> SourceBatch:
        batch = SourceBatch()
        folder = self._image_folder()
        paths = _files(self.root) + (_files(folder) if folder != self.root else [])
        ids: dict[str, str] = {}
        for path in paths:
            item = self._read_file(path, ids)
            (batch.records if isinstance(item, RawRecord) else batch.rejects).append(item)
            if progress:
                progress(1)
        batch.seen = len(batch.records) + len(batch.rejects)
        return batch

    def _read_file(self, path: Path, ids: dict[str, str]) -> RawRecord | Reject:
        """One file as a record, or as the reject saying why it is none; ``ids`` records ids taken."""
        location = path.relative_to(self.root).as_posix()
        if not _is_tiff(path):
            return Reject(self.name, location, "not_an_image", "not a TIFF image; ignored", kind="dropped")
        match = FILE_NAME.fullmatch(path.stem)
        if not match:
            return Reject(self.name, location, "bad_file_name",
                          "expected a name like KA.AN1.39.tiff (subject.expression pose.number)")
        subject, code = match[1].upper(), match[2].upper()
        sample_id = f"jaffe-{subject}.{code}{match[3]}.{match[4]}"
        if code not in SOURCE_LABELS["jaffe"]:
            known = " ".join(SOURCE_LABELS["jaffe"])
            return Reject(self.name, location, "unknown_label", f"expression {code!r} is not one of {known}",
                          sample_id=sample_id)
        if sample_id in ids:
            return Reject(self.name, location, "duplicate_sample_id", f"same sample id as {ids[sample_id]}",
                          sample_id=sample_id)
        ids[sample_id] = location
        return unmeasured(ImageToRead(str(path), None, location), sample_id=sample_id, native_label=code,
                          source_file=location, subject=subject)

    def _image_folder(self) -> Path:
        """The root when it holds TIFFs, else its one subfolder that does."""
        if any(_is_tiff(p) for p in _files(self.root)):
            return self.root
        subfolders = sorted(p for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
        found = [d for d in subfolders if any(_is_tiff(p) for p in _files(d))]
        if not found:
            raise MissingSourceError(f"jaffe: no TIFF images in {self.root} or a subfolder of it; "
                                     f"get JAFFE from {self.homepage} and unpack it there")
        if len(found) > 1:
            raise ValueError(f"jaffe: TIFF images in several subfolders of {self.root} "
                             f"({', '.join(d.name for d in found)}); keep one")
        return found[0]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def _is_tiff(path: Path) -> bool:
    return not path.name.startswith(".") and path.suffix.lower() in TIFF_SUFFIXES
