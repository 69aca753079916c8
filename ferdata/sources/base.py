"""What a source reader is: it finds its files under a raw root and yields raw samples."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from ferdata.manifest import Reject

#: Called with the number of items just processed, to advance a progress bar.
Progress = Callable[[int], None]


class MissingSourceError(FileNotFoundError):
    """A source named on the command line has no files where they are expected."""


@dataclass
class RawRecord:
    """One accepted raw sample, before its label is mapped to the taxonomy."""

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


@dataclass
class SourceBatch:
    """All a source read: its records, decoded pixels (if any), rejects and the count seen."""

    records: list[RawRecord] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    seen: int = 0
    pixels: np.ndarray | None = None  # (N, 48, 48) uint8, indexed by RawRecord.pixels_row


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


def content_hash(pixels: np.ndarray) -> str:
    """The sha1 of an image's 8-bit pixels and shape: equal images, equal hashes."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    digest = hashlib.sha1(f"{pixels.shape}".encode())
    digest.update(pixels.tobytes())
    return digest.hexdigest()
