"""CK+ (extended Cohn-Kanade): labelled frame sequences -> peak frames plus neutral onsets.

======================================================  ==================================
path under ``raw/ckplus/``                              role
======================================================  ==================================
``cohn-kanade-images/S005/001/S005_001_00000001.png``   frames, read
``Emotion/S005/001/S005_001_00000011_emotion.txt``      the sequence's label 0..7, read
``Landmarks/S005/001/S005_001_00000001_landmarks.txt``  68 ``x y`` points, optional
======================================================  ==================================

The account (``seen`` = records + rejects; each reject stands for one item):

* each frame chosen for use is an item: a record, or rejected ``unreadable_image``;
* a sequence whose frames are not used is one item: dropped ``unlabelled_sequence``, or
  rejected ``bad_emotion_file``, ``unknown_label`` (code outside 0..7) or ``no_frames``;
* a labelled sequence with fewer frames than ``peak_frames`` uses all of them as peak
  frames (none as neutral) and adds one rejected ``too_few_frames`` item standing for the
  missing ones. Otherwise peak frames win and the neutral onset takes what is left,
  never reusing a frame, so a short sequence may give fewer neutral frames silently;
* each file that is neither a frame nor a label is one item: dropped ``not_an_image`` /
  ``not_an_emotion_file`` (``.DS_Store`` included), or rejected ``bad_file_name`` /
  ``duplicate_frame`` (an image whose name does not fit its folder).

Frames between the neutral onset and the peak are not items.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np

from ferdata.images import IMAGE_SUFFIXES
from ferdata.manifest import Reject
from ferdata.sources.base import (ImageToRead, MissingSourceError, Progress, RawRecord, Source, SourceBatch,
                                  unmeasured)
from ferdata.taxonomy import SOURCE_LABELS

FRAMES, EMOTION, LANDMARKS = "cohn-kanade-images", "Emotion", "Landmarks"
FRAME_NAME = re.compile(r"([^_]+)_([^_]+)_(\d+)")  # S005_001_00000011
NEUTRAL = "0"


class CKPlus(Source):
    """The last ``peak_frames`` frames of each labelled sequence with its label, and its
    first ``neutral_frames`` frames as neutral (``"0"``)."""

    name = "ckplus"
    homepage = "https://www.jeffcohn.net/Resources/ (after signing the CK+ agreement)"

    def __init__(self, root: Path, peak_frames: int = 3, neutral_frames: int = 1) -> None:
        super().__init__(root)
        for key, value in (("peak_frames", peak_frames), ("neutral_frames", neutral_frames)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"ingest.ckplus.{key} must be a whole number >= 0, got {value!r}")
        self.peak_frames, self.neutral_frames = peak_frames, neutral_frames

    def check(self) -> None:
        missing = [str(self.root / d) for d in (FRAMES, EMOTION) if not (self.root / d).is_dir()]
        if missing:
            raise MissingSourceError(f"ckplus: missing {' and '.join(missing)}; get CK+ from {self.homepage}")

    def read(self, progress: Progress | None = None) -> SourceBatch:
        batch = SourceBatch()
        frame_files = self._scan(FRAMES, _is_image, "not_an_image", batch.rejects)
        label_files = self._scan(EMOTION, _is_label, "not_an_emotion_file", batch.rejects)
        for key in sorted(frame_files.keys() | label_files.keys()):
            frames = self._frames(frame_files.get(key, []), key, batch.rejects)
            folder = self.root / (FRAMES if key in frame_files else EMOTION) / key[0] / key[1]
            for item in self._read_sequence(key, frames, label_files.get(key, []), folder):
                (batch.records if isinstance(item, RawRecord) else batch.rejects).append(item)
            if progress:
                progress(1)
        batch.seen = len(batch.records) + len(batch.rejects)
        return batch

    def _read_sequence(self, key: tuple[str, str], frames: dict[int, Path], labels: list[Path],
                       folder: Path) -> list[RawRecord | Reject]:
        """A sequence's chosen frames as records, and rejects for what is wrong with it."""
        if not labels:
            return [self._reject(folder, "unlabelled_sequence", "no emotion file; not used", "dropped")]
        try:
            if len(labels) > 1:
                raise _LabelError(1, "bad_emotion_file", f"{len(labels)} emotion files in this folder")
            code = _read_code(labels[0])
        except _LabelError as exc:
            return [self._reject(labels[0], exc.reason, f"{exc}; sequence not used", line=exc.line)]
        if not frames:
            return [self._reject(labels[0], "no_frames", f"no frames in {FRAMES}/{key[0]}/{key[1]}")]
        numbers = sorted(frames)
        peak = numbers[max(len(numbers) - self.peak_frames, 0):]
        neutral = numbers[:len(numbers) - len(peak)][:self.neutral_frames]
        items: list[RawRecord | Reject] = []
        if len(numbers) < self.peak_frames:
            items.append(self._reject(folder, "too_few_frames", f"{len(numbers)} frames, {self.peak_frames} "
                                      "peak frames wanted: all used as peak, none as neutral"))
        for number in neutral + peak:
            items.append(self._frame(frames[number], NEUTRAL if number in neutral else code, key, number))
        return items

    def _frame(self, path: Path, label: str, key: tuple[str, str], number: int) -> RawRecord:
        """One chosen frame; ingest decodes it later to check, measure and hash it."""
        return unmeasured(ImageToRead(str(path), None, self._rel(path)), sample_id=f"ckplus-{path.stem}",
                          native_label=label, source_file=self._rel(path), subject=key[0], sequence=key[1],
                          frame=number)

    def _scan(self, tree: str, keep: Callable[[Path], bool], stray: str,
              rejects: list[Reject]) -> dict[tuple[str, str], list[Path]]:
        """``(subject, sequence) -> files kept`` in ``tree/S005/001/``; every other file is dropped."""
        found: dict[tuple[str, str], list[Path]] = {}
        for subject in _entries(self.root / tree):
            for folder in _entries(subject) if subject.is_dir() else [subject]:
                files = _entries(folder)
                strays = [p for p in files if not keep(p)] if folder.is_dir() else [folder]
                rejects.extend(self._reject(p, stray, "stray file; ignored", "dropped") for p in strays)
                if folder.is_dir():
                    found[(subject.name, folder.name)] = [p for p in files if keep(p)]
        return found

    def _frames(self, paths: list[Path], key: tuple[str, str], rejects: list[Reject]) -> dict[int, Path]:
        """Image files by frame number; a name that does not fit its folder is rejected."""
        frames: dict[int, Path] = {}
        for path in paths:
            match = FRAME_NAME.fullmatch(path.stem)
            if not match or (match[1], match[2]) != key:
                rejects.append(self._reject(path, "bad_file_name",
                                            f"expected a name like {key[0]}_{key[1]}_00000001.png"))
            elif int(match[3]) in frames:
                rejects.append(self._reject(path, "duplicate_frame",
                                            f"same frame number as {frames[int(match[3])].name}"))
            else:
                frames[int(match[3])] = path
        return frames

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _reject(self, path: Path, reason: str, message: str, kind: str = "rejected",
                sample_id: str | None = None, line: int | None = None) -> Reject:
        location = self._rel(path) + (f":{line}" if line else "")
        return Reject(self.name, location, reason, message, kind=kind, sample_id=sample_id)


class _LabelError(ValueError):
    def __init__(self, line: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.line, self.reason = line, reason


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def _is_label(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.name.endswith("_emotion.txt")


def _read_code(path: Path) -> str:
    """The label code ("0".."7") an emotion file holds, else :class:`_LabelError`."""
    lines = path.read_text(errors="replace").splitlines()
    tokens = [(n, token) for n, line in enumerate(lines, 1) for token in line.split()]
    if len(tokens) != 1:
        raise _LabelError(tokens[1][0] if tokens else 1, "bad_emotion_file",
                          f"expected one number such as 3.0000000e+00, found {len(tokens)}")
    line, token = tokens[0]
    try:
        value = float(token)
    except ValueError:
        raise _LabelError(line, "bad_emotion_file", f"{token!r} is not a number") from None
    if not value.is_integer() or str(int(value)) not in SOURCE_LABELS["ckplus"]:
        raise _LabelError(line, "unknown_label", f"code {token} is not one of 0..7")
    return str(int(value))


def landmarks_path(root: Path, sample_id: str) -> Path | None:
    """The landmarks file of sample ``ckplus-S005_001_00000011`` under ``root``, or None."""
    match = FRAME_NAME.fullmatch(sample_id.removeprefix("ckplus-"))
    if not sample_id.startswith("ckplus-") or not match:
        raise ValueError(f"{sample_id!r} is not a CK+ sample id like ckplus-S005_001_00000011")
    path = Path(root) / LANDMARKS / match[1] / match[2] / f"{match[0]}_landmarks.txt"
    return path if path.is_file() else None


def read_landmarks(path: Path) -> np.ndarray:
    """A CK+ landmarks file (68 lines of ``x y``) as a (68, 2) float32 array."""
    points = []
    for n, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        if line.strip():
            try:
                x, y = (float(v) for v in line.split())
            except ValueError:
                raise ValueError(f"{path}:{n}: expected two numbers 'x y', got {line.strip()!r}") from None
            points.append((x, y))
    if len(points) != 68:
        raise ValueError(f"{path}: expected 68 points, found {len(points)}")
    return np.asarray(points, dtype=np.float32)
