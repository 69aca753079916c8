"""What a source reader is: it finds its files under a raw root and yields raw samples."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from ferdata.images import ImageDecodeError, decode_gray
from ferdata.manifest import Reject

#: Called with the number of items just processed, to advance a progress bar.
Progress = Callable[[int], None]
#: Landmarks a source may give per face: dlib's 68-point scheme.
POINTS = 68


class MissingSourceError(FileNotFoundError):
    """A source named on the command line has no files where they are expected."""


@dataclass(frozen=True)
class ImageToRead:
    """An image a reader names but leaves to ingest to decode and hash, many at a time
    (:func:`measure_images`): its path, its name in messages (None: the message alone),
    where a reject points, and a face box that must lie mostly inside it."""

    path: str
    shown_as: str | None
    location: str
    box: tuple[float, float, float, float] | None = None


@dataclass
class RawRecord:
    """One accepted raw sample, before its label is mapped to the taxonomy.

    A record whose ``image`` is set is not measured yet: ingest fills ``width``, ``height``
    and ``content_hash`` from the decoded image, or turns the record into a reject.
    """

    sample_id: str
    native_label: str
    source_file: str  # relative to the source's root
    width: int
    height: int
    content_hash: str
    split: str | None = None
    subject: str | None = None
    sequence: str | None = None
    frame: int | None = None
    source_line: int | None = None
    pixels_row: int | None = None  # row in SourceBatch.pixels, when decoded at ingest
    valence: float | None = None  # AffectNet's affect ratings, -1..1
    arousal: float | None = None
    image: ImageToRead | None = None  # the image still to decode and hash


def unmeasured(image: ImageToRead, **fields: object) -> RawRecord:
    """A record whose size and content hash ingest measures later from ``image``."""
    return RawRecord(width=0, height=0, content_hash="", image=image, **fields)  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class Given:
    """What a source tells about a face besides its pixels, in the image's pixels: a face box
    (left, top, right, bottom), 68 landmarks (68, 2), or that the image is an aligned face."""

    box: tuple[float, float, float, float] | None = None
    landmarks: np.ndarray | None = None
    prealigned: bool = False


@dataclass
class SourceBatch:
    """All a source read: its records, decoded pixels (if any), rejects and the count seen."""

    records: list[RawRecord] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    seen: int = 0
    pixels: np.ndarray | None = None  # (N, 48, 48) uint8, indexed by RawRecord.pixels_row
    given: dict[str, Given] = field(default_factory=dict)  # sample id -> box, landmarks, pre-aligned
    labels: dict[str, str] | None = None  # native label -> class, when not taxonomy.SOURCE_LABELS'


class Source(ABC):
    """Base class of a raw dataset reader; subclasses set ``name`` and implement two methods.

    ``root`` is the source's own folder (``raw/<name>/``). Options come from the
    ``ingest.<name>`` section of params.yaml as keyword arguments.
    """

    name: ClassVar[str]
    #: where to obtain the dataset, for error messages and raw/README.md
    homepage: ClassVar[str] = ""

    def __init__(self, root: Path, **options: object) -> None:
        self.root = Path(root)
        if options:
            raise TypeError(f"{self.name}: unknown options {sorted(options)}")

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`MissingSourceError` naming the expected path if the files are absent."""

    @abstractmethod
    def read(self, progress: Progress | None = None) -> SourceBatch:
        """Read every sample; bad items become rejects, never exceptions."""

    def read_parts(self, progress: Progress | None = None) -> Iterator[SourceBatch]:
        """Every sample, a part at a time, so that ingest holds one part's records as Python
        objects; here one part, :meth:`read` (a source that can be large is an :class:`ItemSource`)."""
        yield self.read(progress)


#: What an :class:`ItemSource` makes of one input item: a record (with what the source gives
#: about its face, if anything), or a reject.
Item = Reject | tuple[RawRecord, Given | None]


class ItemSource(Source):
    """A source that can be large, read item by item (a CSV row, a label line, a file) and
    handed to ingest :attr:`part_rows` items a part; subclasses implement :meth:`items`."""

    #: Items per part: a part's records are Python objects until ingest compacts them, about
    #: 3 KB a row while a part is read and measured, so about 50 MB a part.
    part_rows: ClassVar[int] = 16_384
    #: native label -> class, when not taxonomy.SOURCE_LABELS' (set per instance)
    labels: dict[str, str] | None = None

    @abstractmethod
    def items(self) -> Iterator[Item]:
        """Every input item in reading order; bad items become rejects, never exceptions."""

    def read(self, progress: Progress | None = None) -> SourceBatch:
        return next(self._parts(progress, None), SourceBatch(labels=self.labels))

    def read_parts(self, progress: Progress | None = None) -> Iterator[SourceBatch]:
        """The items in reading order, :attr:`part_rows` of them a part."""
        return self._parts(progress, self.part_rows)

    def _parts(self, progress: Progress | None, size: int | None) -> Iterator[SourceBatch]:
        """The items in reading order, ``size`` of them a part (None: all in one)."""
        advance = progress or (lambda n: None)
        batch = SourceBatch(labels=self.labels)
        for item in self.items():
            batch.seen += 1
            if isinstance(item, Reject):
                batch.rejects.append(item)
            else:
                record, given = item
                batch.records.append(record)
                if given is not None:
                    batch.given[record.sample_id] = given
            advance(1)
            if batch.seen == size:
                yield batch
                batch = SourceBatch(labels=self.labels)
        if batch.seen:
            yield batch


class BadItem(ValueError):
    """An input item that cannot become a sample: a reason code and a message for people;
    ``kind`` is ``rejected`` (bad input) or ``dropped`` (not a sample by design)."""

    def __init__(self, reason: str, message: str, sample_id: str | None = None,
                 kind: str = "rejected") -> None:
        super().__init__(message)
        self.reason, self.message, self.sample_id, self.kind = reason, message, sample_id, kind

    def of(self, sample_id: str) -> "BadItem":
        """The same problem, attributed to a sample."""
        return BadItem(self.reason, self.message, sample_id, self.kind)

    def reject(self, source: str, location: str) -> Reject:
        return Reject(source, location, self.reason, self.message, self.kind, self.sample_id)


def read_image(path: Path, shown_as: str) -> np.ndarray:
    """An image's grayscale pixels, else :class:`BadItem` (``missing_image``, ``unreadable_image``)
    naming it as ``shown_as`` (its path under the source's root)."""
    if not path.is_file():
        raise BadItem("missing_image", f"image {shown_as} not found")
    try:
        return decode_gray(path)
    except ImageDecodeError as exc:
        raise BadItem("unreadable_image", f"{shown_as}: {exc}") from exc


@dataclass(frozen=True)
class Measured:
    """An image's size and content hash, or the reason (``missing_image``, ``unreadable_image``,
    ``box_outside_image``) and message that reject it."""

    width: int = 0
    height: int = 0
    content_hash: str = ""
    reason: str | None = None
    message: str = ""


def measure_images(images: list[ImageToRead]) -> list[Measured]:
    """Decode, check and hash each image: a task of the executor."""
    found = []
    for image in images:
        try:
            gray = _decode(image)
            if image.box is not None:
                check_box_inside(image.box, gray.shape)
            found.append(Measured(gray.shape[1], gray.shape[0], content_hash(gray)))
        except BadItem as bad:
            found.append(Measured(reason=bad.reason, message=bad.message))
    return found


def _decode(image: ImageToRead) -> np.ndarray:
    if image.shown_as is not None:
        return read_image(Path(image.path), image.shown_as)
    try:
        return decode_gray(Path(image.path))
    except ImageDecodeError as exc:
        raise BadItem("unreadable_image", str(exc)) from exc


def check_box_inside(box: tuple[float, float, float, float], shape: tuple[int, ...]) -> None:
    """Refuse a face box less than half of which lies inside the image (``box_outside_image``)."""
    left, top, right, bottom = box
    height, width = shape[:2]
    inside = max(0.0, min(right, width) - max(left, 0.0)) * max(0.0, min(bottom, height) - max(top, 0.0))
    if inside < 0.5 * (right - left) * (bottom - top):
        raise BadItem("box_outside_image", f"face box ({left:g}, {top:g}, {right:g}, {bottom:g}) lies mostly "
                                           f"outside the {width}x{height} image")


def content_hash(pixels: np.ndarray) -> str:
    """The sha1 of an image's 8-bit pixels and shape: equal images, equal hashes."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    digest = hashlib.sha1(f"{pixels.shape}".encode())
    digest.update(pixels.tobytes())
    return digest.hexdigest()
