"""FER2013 as FER+'s folder layout: ``FER2013Train|FER2013Valid|FER2013Test/`` with ``label.csv``.

FER+'s ``generate_training_data.py`` writes one 48x48 PNG per usable fer2013.csv row into
the folder of its Usage, named as FER+'s ``fer2013new.csv`` names it (``fer0000123.png``;
the number is FER+'s image name, which drifts from the fer2013.csv row after the rows FER+
left without an image), and a ``label.csv`` per folder whose lines give each image's ten
annotator votes. This layout carries no FER2013 label: a sample's ``native_label`` is the
FER+ plurality (single votes zeroed), its id is ``fer2013-<file stem>``, its split the
folder's. ``ingest.labels`` then picks the FER+ label mode.

Every label line and every image file is accounted for: images without a line are rejected
``unlabelled_image``, lines without an image ``missing_image``, unreadable lines and images
with their reason; rows whose votes name no single emotion (``NF`` or ``unknown`` on top, a
tie, no votes) are dropped with the FER+ reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ferdata.ferplus import LABEL_FILE, read_ferplus_folders, verdict
from ferdata.images import IMAGE_SUFFIXES, ImageDecodeError, decode_gray
from ferdata.manifest import IMAGE_SIZE, Reject
from ferdata.sources.base import Progress, RawRecord, SourceBatch, content_hash
from ferdata.sources.fer2013_splits import FERPLUS_FOLDERS, USAGE_SPLITS

SOURCE = "fer2013"


def has_ferplus_folders(root: Path) -> bool:
    """Whether ``root`` holds at least one of FER+'s folders with its label.csv."""
    return any((Path(root) / folder / LABEL_FILE).is_file() for folder in FERPLUS_FOLDERS.values())


def read_ferplus_layout(root: Path, progress: Progress) -> SourceBatch:
    """Every label line and image file of FER+'s folders as a record, a reject or a drop."""
    root = Path(root)
    votes = read_ferplus_folders(root)
    files = {folder: {Path(name).stem: name for name in _image_names(root / folder)}
             for folder in FERPLUS_FOLDERS.values()}
    batch = SourceBatch()
    images: list[np.ndarray] = []
    listed: set[str] = set()
    for row, location in enumerate(votes.locations):
        batch.seen += 1
        progress(1)
        folder, sample_id = FERPLUS_FOLDERS[votes.usage[row]], votes.sample_ids[row]
        file_name = files[folder].get(sample_id.removeprefix(f"{SOURCE}-")) if sample_id else None

        def reject(reason: str, message: str, kind: str = "rejected") -> None:
            batch.rejects.append(Reject(SOURCE, location, reason, message, kind=kind, sample_id=sample_id or None))

        if row in votes.unreadable:
            reject(*votes.unreadable[row])
        elif not sample_id:
            reject("missing_image", "the line names no image file")
        elif file_name is None:
            reject("missing_image", f"{folder}/{sample_id.removeprefix(f'{SOURCE}-')}.png: no such image file")
        elif f"{folder}/{file_name}" in listed:
            reject("duplicate_sample_id", f"an earlier line already names {folder}/{file_name}")
        else:
            listed.add(f"{folder}/{file_name}")
            try:
                pixels = _decode_face(root / folder / file_name)
            except ImageDecodeError as exc:
                reject("unreadable_image", f"{folder}/{file_name}: {exc}")
                continue
            found = verdict(votes.votes[row], True, "ferplus-plurality")
            if found.label is None:
                reject(found.reason, found.message, kind="dropped")
                continue
            batch.records.append(RawRecord(
                sample_id=sample_id, native_label=found.label, source_file=f"{folder}/{file_name}",
                width=IMAGE_SIZE, height=IMAGE_SIZE, content_hash=content_hash(pixels),
                split=USAGE_SPLITS[votes.usage[row]], source_line=int(location.rsplit(":", 1)[1]),
                pixels_row=len(images)))
            images.append(pixels)
    for folder, names in files.items():
        for file_name in sorted(names.values()):
            if f"{folder}/{file_name}" not in listed:
                batch.seen += 1
                batch.rejects.append(Reject(SOURCE, f"{folder}/{file_name}", "unlabelled_image",
                                            f"no line of {folder}/{LABEL_FILE} names this image"))
    batch.pixels = np.stack(images) if images else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    return batch


def _image_names(folder: Path) -> list[str]:
    """The image files directly in ``folder`` (none when it is absent)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _decode_face(path: Path) -> np.ndarray:
    """The 48x48 grey face of one image file, or ImageDecodeError saying why not."""
    pixels = decode_gray(path)
    if pixels.shape != (IMAGE_SIZE, IMAGE_SIZE):
        height, width = pixels.shape
        raise ImageDecodeError(f"{width}x{height} pixels; FER+'s images are {IMAGE_SIZE}x{IMAGE_SIZE}")
    return pixels
