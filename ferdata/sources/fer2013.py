"""FER2013 reader: the Kaggle CSV (either header variant) or its image-folder release.

A CSV is parsed in bulk: the file is memory-mapped, rows and fields are located with
``find`` (memchr speed), and the pixel digits of a few rows at a time become values through
numpy arithmetic over their whole run of text. A row the bulk parser cannot vouch for is
re-read by a precise per-row parser, which either accepts it or says exactly what is wrong,
so speed never costs a message.
"""

from __future__ import annotations

import csv
import mmap
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ferdata.images import IMAGE_SUFFIXES, ImageDecodeError, decode_gray
from ferdata.manifest import IMAGE_SIZE, Reject
from ferdata.sources.base import (
    MissingSourceError, Progress, RawRecord, Source, SourceBatch, content_hash,
)
from ferdata.sources.fer2013_splits import USAGE_SPLITS
from ferdata.sources.ferplus_folders import has_ferplus_folders, read_ferplus_layout
from ferdata.taxonomy import CLASSES_7, SOURCE_LABELS

#: The releases accepted under ``raw/fer2013/``, looked for in this order; the first found is read.
RELEASES: dict[str, str] = {
    "fer2013.csv": "CSV with header emotion,pixels,Usage",
    "icml_face_data.csv": "CSV with header emotion, Usage, pixels",
    "FER2013Train/, FER2013Valid/, FER2013Test/": "FER+'s folders of fer%07d.png with label.csv (votes)",
    "train/, test/": "image folders <train|test>/<class>/<Training|PublicTest|PrivateTest>_<id>.png|jpg",
}
CSV_FILES = ("fer2013.csv", "icml_face_data.csv")
IMAGE_FOLDERS = ("train", "test")

#: The split of an image-folder file whose name carries no Usage prefix: its top folder's.
FOLDER_SPLITS = {"train": "train", "test": "test"}
#: Native labels: emotion codes in the CSV, class names as image-folder names.
EMOTION_CODES = frozenset(k for k in SOURCE_LABELS["fer2013"] if k.isdigit())
CLASS_FOLDERS = frozenset(CLASSES_7)
#: Columns a CSV header must name (case and surrounding spaces ignored), in FER2013's order.
COLUMNS = ("emotion", "pixels", "usage")

N_PIXELS = IMAGE_SIZE * IMAGE_SIZE
#: Rows parsed per numpy pass: about 130 kB of text. Temporaries this small are recycled by the
#: allocator; chunks of a few hundred kB or more get fresh memory each time, and its page
#: faults cost more than the arithmetic (measured: 0.9 s vs 2.5 s CPU for the full file).
ROWS_PER_CHUNK = 16
SPACE, CR = 0x20, 0x0D
BOM = b"\xef\xbb\xbf"
PAD = 2  # blanks around a chunk's text: every number has non-digits on both sides
_PIXEL_TOKEN = re.compile(r"-?[0-9]+")
#: A CSV's content: memory-mapped (bytes.find and slicing work alike), or b"" for an empty file.
FileBytes = mmap.mmap | bytes


class FER2013(Source):
    """FER2013 from ``raw/fer2013/``: ``fer2013.csv``, ``icml_face_data.csv`` or image folders."""

    name = "fer2013"
    homepage = (
        "https://www.kaggle.com/c/"
        "challenges-in-representation-learning-facial-expression-recognition-challenge"
    )

    def release(self) -> Path | None:
        """The CSV file, or the root of the image folders, that will be read; None if absent."""
        for name in CSV_FILES:
            if (self.root / name).is_file():
                return self.root / name
        if self.has_ferplus_folders() or any((self.root / folder).is_dir() for folder in IMAGE_FOLDERS):
            return self.root
        return None

    def has_ferplus_folders(self) -> bool:
        """Whether FER+'s folder layout is what will be read (no CSV release beside it)."""
        return not any((self.root / name).is_file() for name in CSV_FILES) and has_ferplus_folders(self.root)

    def check(self) -> None:
        if self.release() is None:
            expected = "; ".join(f"{self.root / name} ({what})" for name, what in RELEASES.items())
            raise MissingSourceError(
                f"FER2013 not found. Expected one of: {expected}. Download it from {self.homepage}"
            )

    def read(self, progress: Progress | None = None) -> SourceBatch:
        self.check()
        found = self.release()
        advance = progress or (lambda n: None)
        if found.is_file():
            return read_csv(found, advance)
        if self.has_ferplus_folders():
            return read_ferplus_layout(self.root, advance)
        return read_image_folders(self.root, advance)


class _BadItem(Exception):
    """An input item that cannot become a sample: a reason code and a message for people."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message

    def reject(self, location: str, sample_id: str | None = None) -> Reject:
        return Reject(FER2013.name, location, self.reason, self.message, sample_id=sample_id)


# --- the CSV releases -------------------------------------------------------------------


@dataclass(frozen=True)
class _Columns:
    """Where the header puts each required column, and how many columns a row has."""

    emotion: int
    pixels: int
    usage: int
    count: int


@dataclass
class _Rows:
    """The data rows of a CSV, located but not yet parsed, in file order.

    ``emotion`` or ``split`` is None where the quick look failed (and then ``pixel_start`` may
    be -1); such rows, and rows whose pixels do not parse in bulk, go to the precise parser.
    """

    line: list[int] = field(default_factory=list)  # 1-based line number
    start: list[int] = field(default_factory=list)  # byte offsets of the line, without CR LF
    stop: list[int] = field(default_factory=list)
    pixel_start: list[int] = field(default_factory=list)  # the pixel field, spaces and quotes trimmed
    pixel_stop: list[int] = field(default_factory=list)
    emotion: list[str | None] = field(default_factory=list)
    split: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.line)

    def quick(self) -> np.ndarray:
        """Indexes of the rows whose emotion, Usage and pixel field were all found."""
        found = [e is not None and s is not None for e, s in zip(self.emotion, self.split)]
        return np.flatnonzero(np.array(found, dtype=bool))


def read_csv(path: Path, progress: Progress) -> SourceBatch:
    """Read a FER2013 CSV: every data row becomes a record or a reject."""
    data = _map(path)
    try:
        columns, body = _read_header(data)
    except _BadItem as bad:
        location = path.name if bad.reason == "empty_file" else f"{path.name}:1"
        return SourceBatch(rejects=[bad.reject(location)], seen=1)
    rows = _locate_rows(data, body, columns)
    quick = rows.quick()
    bulk = np.empty((len(quick), N_PIXELS), dtype=np.uint8)
    parsed = _parse_pixel_fields(
        np.frombuffer(data, dtype=np.uint8),
        np.array(rows.pixel_start, dtype=np.int64)[quick],
        np.array(rows.pixel_stop, dtype=np.int64)[quick],
        bulk, progress,
    )
    progress(len(rows) - len(quick))  # the rows left to the precise parser: few, and quick
    if not parsed.all():
        quick, bulk = quick[parsed], bulk[parsed]
    return _assemble(data, path.name, rows, columns, quick, bulk)


def _map(path: Path) -> FileBytes:
    """A file's bytes, mapped read-only rather than copied; unmapped once nothing refers to them."""
    if path.stat().st_size == 0:
        return b""  # an empty file cannot be mapped
    with path.open("rb") as file:
        return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)


def _read_header(data: FileBytes) -> tuple[_Columns, int]:
    """The header's column positions and the byte offset of the line after it."""
    pos = len(BOM) if data[:len(BOM)] == BOM else 0
    end = data.find(b"\n", pos)
    end = len(data) if end < 0 else end
    line = data[pos:end].decode("utf-8", errors="replace").strip()
    if not line:
        if not data[pos:].strip():
            raise _BadItem("empty_file", "the file is empty: no header and no data rows")
        raise _BadItem("missing_header", "line 1 is blank; expected the header emotion,pixels,Usage")
    names = [name.strip().strip('"').strip().lower() for name in next(csv.reader([line]))]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        if names[0].isdigit():
            raise _BadItem("missing_header", "no header row: line 1 holds data; expected the header "
                                             "emotion,pixels,Usage before the data rows")
        raise _BadItem("missing_header", f"the header {line[:80]!r} lacks the column(s) "
                                         f"{', '.join(missing)}; expected emotion,pixels,Usage")
    columns = _Columns(*(names.index(c) for c in COLUMNS), count=len(names))
    return columns, end + 1


def _locate_rows(data: FileBytes, pos: int, columns: _Columns) -> _Rows:
    """Find each data line (from line 2, at byte ``pos``), its pixel field, emotion and split.

    Blank lines are not data rows and are skipped (line numbers still count them).
    """
    rows = _Rows()
    line = 2
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        stop = end - 1 if end > pos and data[end - 1] == CR else end
        if not _is_blank(data, pos, stop):
            bounds = _field_bounds(data, pos, stop, columns)
            rows.line.append(line)
            rows.start.append(pos)
            rows.stop.append(stop)
            if bounds is None:
                rows.pixel_start.append(-1)
                rows.pixel_stop.append(-1)
                rows.emotion.append(None)
                rows.split.append(None)
            else:
                pixel_start, pixel_stop = _trim(data, *bounds[columns.pixels])
                rows.pixel_start.append(pixel_start)
                rows.pixel_stop.append(pixel_stop)
                emotion = data[slice(*bounds[columns.emotion])].strip().decode("ascii", "replace")
                usage = data[slice(*bounds[columns.usage])].strip().decode("ascii", "replace")
                rows.emotion.append(emotion if emotion in EMOTION_CODES else None)
                rows.split.append(USAGE_SPLITS.get(usage))
        pos = end + 1
        line += 1
    return rows


def _is_blank(data: FileBytes, start: int, stop: int) -> bool:
    """Whether a line holds nothing but whitespace (looked at closely only if it starts with some)."""
    return start == stop or (data[start] in b" \t\r\f\v" and not data[start:stop].strip())


def _field_bounds(
    data: FileBytes, start: int, stop: int, columns: _Columns
) -> list[tuple[int, int]] | None:
    """Byte bounds of each field, found from both ends so the long pixel field is never scanned.

    A stray comma inside the pixel field stays in it and fails the bulk parse; None when the
    line has too few commas.
    """
    head, left = [], start
    for _ in range(columns.pixels):
        comma = data.find(b",", left, stop)
        if comma < 0:
            return None
        head.append((left, comma))
        left = comma + 1
    tail, right = [], stop
    for _ in range(columns.count - 1 - columns.pixels):
        comma = data.rfind(b",", left, right)
        if comma < 0:
            return None
        tail.append((comma + 1, right))
        right = comma
    return head + [(left, right)] + tail[::-1]


def _trim(data: FileBytes, start: int, stop: int) -> tuple[int, int]:
    """A field's bounds without surrounding spaces and one pair of enclosing double quotes."""
    while start < stop and data[start] == SPACE:
        start += 1
    while stop > start and data[stop - 1] == SPACE:
        stop -= 1
    if stop - start >= 2 and data[start] == data[stop - 1] == ord('"'):
        return _trim(data, start + 1, stop - 1)
    return start, stop


def _parse_pixel_fields(
    text: np.ndarray, starts: np.ndarray, stops: np.ndarray, out: np.ndarray, progress: Progress
) -> np.ndarray:
    """Parse pixel fields ``text[starts[i]:stops[i]]`` into ``out[i]``, a chunk of rows at a time.

    Returns which rows parsed cleanly: exactly 2,304 integers 0..255 separated by spaces.
    """
    ok = np.zeros(len(starts), dtype=bool)
    for first in range(0, len(starts), ROWS_PER_CHUNK):
        last = min(first + ROWS_PER_CHUNK, len(starts))
        ok[first:last] = _parse_chunk(text, starts[first:last], stops[first:last], out[first:last])
        progress(last - first)
    return ok


def _parse_chunk(text: np.ndarray, starts: np.ndarray, stops: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Parse a run of consecutive rows' pixel fields at once; returns which rows are clean."""
    chunk = _chunk_text(text, starts, stops)
    row_starts = starts - starts[0] + PAD
    units = np.subtract(chunk, ord("0"), dtype=np.uint8)
    digit = units < 10
    units *= digit  # every non-digit counts as 0
    token_end = digit[:-1] & ~digit[1:]  # True at the last digit of each number
    tokens = _count_per_row(token_end, row_starts)
    low, hundreds = (np.compress(token_end, part) for part in _numbers_ending_at(units, digit))
    too_big = (hundreds > 2) | ((hundreds == 2) & (low > 55))
    values = hundreds * np.uint8(100) + low  # exact wherever not too_big
    token_starts = np.cumsum(tokens) - tokens
    ok = tokens == N_PIXELS
    ok &= ~_rows_holding(_stray_bytes(chunk, digit), row_starts)
    ok &= ~_rows_holding(_long_numbers(digit), row_starts)
    ok &= ~_rows_holding(np.flatnonzero(too_big), token_starts)
    if ok.all():
        out[:] = values.reshape(-1, N_PIXELS)
    else:
        for row in np.flatnonzero(ok):
            out[row] = values[token_starts[row]:token_starts[row] + N_PIXELS]
    return ok


def _chunk_text(text: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """A copy of the text from the first field's start to the last one's end, with the bytes
    between fields blanked and PAD blanks either side: only the pixel fields remain."""
    base = starts[0] - PAD
    chunk = np.empty(stops[-1] - base + PAD, dtype=np.uint8)
    chunk[:PAD] = SPACE
    chunk[-PAD:] = SPACE
    chunk[PAD:-PAD] = text[starts[0]:stops[-1]]
    for gap_start, gap_stop in zip((stops[:-1] - base).tolist(), (starts[1:] - base).tolist()):
        chunk[gap_start:gap_stop] = SPACE
    return chunk


def _count_per_row(mask: np.ndarray, row_starts: np.ndarray) -> np.ndarray:
    """How many True values each row's stretch of a byte mask holds."""
    bounds = row_starts.tolist() + [len(mask)]
    return np.array([np.count_nonzero(mask[a:b]) for a, b in zip(bounds[:-1], bounds[1:])],
                    dtype=np.int64)


def _numbers_ending_at(units: np.ndarray, digit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a number ending at each byte: its last two digits' value and its hundreds digit.

    ``units`` holds each byte's digit value (0 for non-digits); kept in uint8 for speed.
    """
    low = units[:-1].copy()
    low[1:] += units[:-2] * np.uint8(10)
    hundreds = np.zeros_like(low)
    np.multiply(units[:-3], digit[1:-2], out=hundreds[2:])
    return low, hundreds


def _stray_bytes(chunk: np.ndarray, digit: np.ndarray) -> np.ndarray:
    """Positions of bytes that are neither digits nor spaces (counted first: usually none)."""
    space = chunk == SPACE
    if np.count_nonzero(space) + np.count_nonzero(digit) == len(chunk):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(~(space | digit))


def _long_numbers(digit: np.ndarray) -> np.ndarray:
    """Positions of the fourth digit of numbers with four or more digits."""
    return np.flatnonzero(digit[3:] & digit[2:-1] & digit[1:-2] & digit[:-3]) + 3


def _rows_holding(positions: np.ndarray, row_starts: np.ndarray) -> np.ndarray:
    """A mask over rows: True for each row one of the (sorted) positions falls in."""
    rows = np.zeros(len(row_starts), dtype=bool)
    if len(positions):
        rows[np.searchsorted(row_starts, positions, side="right") - 1] = True
    return rows


def _assemble(
    data: FileBytes, file_name: str, rows: _Rows, columns: _Columns,
    parsed: np.ndarray, bulk: np.ndarray,
) -> SourceBatch:
    """Records for the rows parsed in bulk, and the precise parser's verdict on all others."""
    batch = SourceBatch(seen=len(rows))
    in_bulk = set(parsed.tolist())  # rows whose pixels are in ``bulk``
    accepted: list[tuple[int, str, str]] = []  # (row, emotion code, split) in file order
    slow: dict[int, np.ndarray] = {}
    for row in range(len(rows)):
        if row in in_bulk:
            accepted.append((row, rows.emotion[row], rows.split[row]))
            continue
        try:
            emotion, split, slow[row] = _parse_row(data[rows.start[row]:rows.stop[row]], columns)
        except _BadItem as bad:
            batch.rejects.append(bad.reject(f"{file_name}:{rows.line[row]}", _sample_id(row)))
            continue
        accepted.append((row, emotion, split))
    batch.pixels = _gather_pixels([row for row, _, _ in accepted], bulk, slow)
    batch.records = [
        RawRecord(
            sample_id=_sample_id(row), native_label=emotion, source_file=file_name,
            width=IMAGE_SIZE, height=IMAGE_SIZE, content_hash=content_hash(batch.pixels[k]),
            split=split, source_line=rows.line[row], pixels_row=k,
        )
        for k, (row, emotion, split) in enumerate(accepted)
    ]
    return batch


def _sample_id(row: int) -> str:
    """The stable id of a CSV's 0-based data row."""
    return f"fer2013-{row:06d}"


def _gather_pixels(accepted: list[int], bulk: np.ndarray, slow: dict[int, np.ndarray]) -> np.ndarray:
    """The accepted rows' images, (N, 48, 48) uint8, in file order; ``bulk`` holds the rows
    parsed in bulk (in file order), ``slow`` the others by row."""
    if not slow:
        return bulk.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    images = np.empty((len(accepted), N_PIXELS), dtype=np.uint8)
    from_slow = np.array([row in slow for row in accepted], dtype=bool)
    images[~from_slow] = bulk
    images[from_slow] = np.stack([slow[row] for row in accepted if row in slow])
    return images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)


def _parse_row(line: bytes, columns: _Columns) -> tuple[str, str, np.ndarray]:
    """Parse one CSV line precisely: (emotion code, split, 2,304 pixels) or raise _BadItem."""
    try:
        fields = next(csv.reader([line.decode("utf-8", errors="replace")]), [])
    except csv.Error as exc:
        raise _BadItem("malformed_row", f"not a CSV row ({exc})") from exc
    if len(fields) != columns.count:
        raise _BadItem("malformed_row", f"expected {columns.count} comma-separated fields, "
                                        f"found {len(fields)}")
    emotion = fields[columns.emotion].strip()
    if emotion not in EMOTION_CODES:
        raise _BadItem("unknown_label", f"emotion {emotion!r} is not a FER2013 code "
                                        f"({', '.join(sorted(EMOTION_CODES))})")
    usage = fields[columns.usage].strip()
    if usage not in USAGE_SPLITS:
        raise _BadItem("unknown_usage", f"Usage {usage!r} is not one of {', '.join(USAGE_SPLITS)}")
    return emotion, USAGE_SPLITS[usage], _parse_pixels(fields[columns.pixels])


def _parse_pixels(text: str) -> np.ndarray:
    """2,304 whitespace-separated integers 0..255 as uint8, or raise _BadItem saying which is wrong."""
    tokens = text.split()
    values = []
    for position, token in enumerate(tokens, start=1):
        if not _PIXEL_TOKEN.fullmatch(token):
            raise _BadItem("bad_pixel_value", f"pixel {position} is {token[:20]!r}, not an integer")
        value = int(token)
        if not 0 <= value <= 255:
            raise _BadItem("pixel_out_of_range", f"pixel {position} is {value}, outside 0..255")
        values.append(value)
    if len(values) != N_PIXELS:
        raise _BadItem("bad_pixel_count", f"expected {N_PIXELS} pixel values ({IMAGE_SIZE}x{IMAGE_SIZE}), "
                                          f"found {len(values)}")
    return np.array(values, dtype=np.uint8)


# --- the image-folder release -----------------------------------------------------------


def read_image_folders(root: Path, progress: Progress) -> SourceBatch:
    """Read ``train/<class>/*`` and ``test/<class>/*``: every file becomes a record or a reject."""
    batch = SourceBatch()
    taken: set[str] = set()
    for path in _folder_files(root):
        location = path.relative_to(root).as_posix()
        batch.seen += 1
        try:
            record = _image_record(path, location, taken)
        except _BadItem as bad:
            batch.rejects.append(bad.reject(location))
        else:
            taken.add(record.sample_id)
            batch.records.append(record)
        progress(1)
    return batch


def _folder_files(root: Path) -> list[Path]:
    """Every file under the split folders, in a stable order."""
    return sorted(path for folder in IMAGE_FOLDERS if (root / folder).is_dir()
                  for path in (root / folder).rglob("*") if path.is_file())


def _image_record(path: Path, location: str, taken: set[str]) -> RawRecord:
    """The record of one image file, or raise _BadItem naming what is wrong with it."""
    top, *folders, file_name = PurePosixPath(location).parts
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise _BadItem("not_an_image", f"not an image file (expected {', '.join(IMAGE_SUFFIXES)})")
    if not folders or folders[0] not in CLASS_FOLDERS:
        where = f"class folder {folders[0]!r}" if folders else "a file outside any class folder"
        raise _BadItem("unknown_label", f"{where} is not a FER2013 class; class folders are "
                                        f"{', '.join(CLASSES_7)}")
    try:
        pixels = decode_gray(path)
    except ImageDecodeError as exc:
        raise _BadItem("unreadable_image", str(exc)) from exc
    sample_id = f"fer2013-{path.stem}"
    if sample_id in taken:
        raise _BadItem("duplicate_sample_id", f"another file already has the name {path.stem!r}, "
                                              f"so the id {sample_id!r} is taken")
    return RawRecord(
        sample_id=sample_id, native_label=folders[0], source_file=location,
        width=pixels.shape[1], height=pixels.shape[0], content_hash=content_hash(pixels),
        split=_file_split(file_name, top),
    )


def _file_split(file_name: str, top_folder: str) -> str:
    """The split a file name's Usage prefix names (``PublicTest_123.png``), else its top folder's."""
    return USAGE_SPLITS.get(file_name.split("_", 1)[0], FOLDER_SPLITS[top_folder])
