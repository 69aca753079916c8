"""What a source tells about a face besides its pixels, kept for the align stage.

AffectNet gives a face box and 68 landmarks per image; RAF-DB's ``Image/aligned`` files
are faces its authors already aligned; CK+ has landmark files. Ingest writes the first
two kinds to ``processed/interim/given.parquet`` (only samples that have any); align
reads that file, and CK+'s files, through :class:`GivenReader`, a partition of rows at a
time. Coordinates are the source image's pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ferdata.manifest import read_table
from ferdata.shards import Shards, write_shards
from ferdata.sources import ckplus
from ferdata.sources.base import POINTS, Given

GIVEN_FILE = "given.parquet"

GIVEN_SCHEMA = pa.schema([
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("box", pa.list_(pa.float32(), 4)),  # left, top, right, bottom
    pa.field("landmarks", pa.list_(pa.float32(), 2 * POINTS)),  # x1, y1, x2, y2, ... (dlib's order)
    pa.field("prealigned", pa.bool_(), nullable=False),  # the image is a face the source aligned
])


def given_table(given: dict[str, Given]) -> pa.Table:
    """``given`` as rows of :data:`GIVEN_SCHEMA`, in the dict's order."""
    ids = list(given)
    items = list(given.values())
    boxes = np.array([g.box or (0.0,) * 4 for g in items], dtype=np.float32).reshape(-1, 4)
    points = np.array([np.zeros((POINTS, 2)) if g.landmarks is None else g.landmarks for g in items],
                      dtype=np.float32).reshape(-1, 2 * POINTS)
    columns = [
        pa.array(ids, pa.string()),
        pa.FixedSizeListArray.from_arrays(pa.array(boxes.ravel()), 4,
                                          mask=pa.array([g.box is None for g in items], pa.bool_())),
        pa.FixedSizeListArray.from_arrays(pa.array(points.ravel()), 2 * POINTS,
                                          mask=pa.array([g.landmarks is None for g in items], pa.bool_())),
        pa.array([g.prealigned for g in items], pa.bool_()),
    ]
    return pa.Table.from_arrays(columns, schema=GIVEN_SCHEMA)


#: Rows read back at a time from each spilled part while merging.
MERGE_BATCH = 4096


class GivenSpill:
    """Given rows put aside on disk a part at a time (Arrow IPC files, each part sorted by
    sample id), then merged into given.parquet's shards in sample-id order: memory holds the
    sample ids and a batch of each part, not every face's box and landmarks."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.files: list[Path] = []
        self.ids: list[pa.ChunkedArray] = []

    def add(self, table: pa.Table) -> None:
        """Put aside one part's rows (:data:`GIVEN_SCHEMA`)."""
        if table.num_rows:
            table = table.cast(GIVEN_SCHEMA).take(pc.sort_indices(table["sample_id"]))
            path = self.folder / f"part-{len(self.files):05d}.arrow"
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, GIVEN_SCHEMA) as writer:
                writer.write_table(table, max_chunksize=MERGE_BATCH)
            self.files.append(path)
            self.ids.append(table["sample_id"])

    def write(self, path: Path, partition_size: int, keep: pa.Array | pa.ChunkedArray) -> None:
        """given.parquet at ``path``: the rows whose sample ids are in ``keep``, in sample-id
        order, as shards of ``partition_size`` rows."""
        starts = np.cumsum([0] + [len(part) for part in self.ids])
        every = pa.chunked_array([chunk for part in self.ids for chunk in part.chunks], pa.string())
        order = pc.sort_indices(every).to_numpy().astype(np.int64)
        order = order[pc.is_in(every, keep).to_numpy(zero_copy_only=False)[order]]
        part_of = np.searchsorted(starts, order, side="right") - 1
        cursors = [_Cursor(f) for f in self.files]

        def shards() -> Iterator[pa.Table]:
            for lo in range(0, len(order), partition_size):
                rows, parts = order[lo:lo + partition_size], part_of[lo:lo + partition_size]
                pieces, where, taken = [], np.empty(len(rows), dtype=np.int64), 0
                for p in np.unique(parts):
                    mine = np.flatnonzero(parts == p)
                    pieces.append(cursors[p].take(rows[mine] - starts[p]))
                    where[mine] = np.arange(taken, taken + len(mine))
                    taken += len(mine)
                yield pa.concat_tables(pieces).take(pa.array(where))

        write_shards(shards(), path, GIVEN_SCHEMA)


class _Cursor:
    """Rows of a spilled part taken at ascending positions, read a batch at a time."""

    def __init__(self, path: Path) -> None:
        self.reader = pa.ipc.open_file(pa.OSFile(str(path)))
        self.batches_read = 0
        self.buffer = GIVEN_SCHEMA.empty_table()
        self.start = 0  # the part's position of the buffer's first row

    def take(self, positions: np.ndarray) -> pa.Table:
        """The rows at ``positions`` (ascending, beyond those taken before)."""
        while self.start + self.buffer.num_rows <= positions[-1]:
            batch = self.reader.get_batch(self.batches_read)
            self.batches_read += 1
            self.buffer = pa.concat_tables([self.buffer, pa.Table.from_batches([batch])])
        out = self.buffer.take(pa.array(positions - self.start))
        passed = int(positions[-1]) + 1 - self.start
        self.buffer, self.start = self.buffer.slice(passed), self.start + passed
        return out


def _as_given(table: pa.Table) -> dict[str, Given]:
    """Rows of :data:`GIVEN_SCHEMA` by sample id."""
    table = table.cast(GIVEN_SCHEMA)
    boxes = table["box"].to_pylist()
    points = table["landmarks"].to_numpy(zero_copy_only=False)
    return {sid: Given(tuple(box) if box is not None else None,
                       None if marks is None else marks.reshape(POINTS, 2), prealigned)
            for sid, box, marks, prealigned in zip(table["sample_id"].to_pylist(), boxes, points,
                                                   table["prealigned"].to_pylist())}


def read_given(path: Path) -> dict[str, Given]:
    """The whole of given.parquet, by sample id; empty when there is none."""
    return _as_given(read_table(path)) if Path(path).exists() else {}


class GivenReader:
    """What sources give about rows asked for in ascending sample-id order, a partition at a
    time: given.parquet is read forward a shard at a time, so memory holds a shard or two,
    whatever the dataset's size."""

    def __init__(self, interim_dir: Path, raw_dir: Path) -> None:
        path = Path(interim_dir) / GIVEN_FILE
        self.shards = Shards(path).tables() if path.exists() else iter(())
        self.raw_dir = Path(raw_dir)
        self.ahead = GIVEN_SCHEMA.empty_table()  # rows read but not asked for yet

    def _read_through(self, last_id: str) -> None:
        """Read shards until one holds an id past ``last_id`` (or none is left)."""
        while self.ahead.num_rows == 0 or self.ahead["sample_id"][-1].as_py() <= last_id:
            table = next(self.shards, None)
            if table is None:
                return
            self.ahead = pa.concat_tables([self.ahead, table.cast(GIVEN_SCHEMA)])

    def rows(self, ids: list[str], sources: list[str]) -> tuple[list[Given | None], list[str]]:
        """Each row's :class:`Given` (None when its source gives nothing), and warnings.

        ``ids`` ascend, and follow those of the previous call. given.parquet supplies
        AffectNet's and RAF-DB's; a CK+ frame's landmarks come from its ``Landmarks/`` file
        when present, and a file that cannot be read is a warning, not an error.
        """
        stored: dict[str, Given] = {}
        if ids:
            self._read_through(ids[-1])
            upto = pc.less_equal(self.ahead["sample_id"], ids[-1])
            wanted = pc.and_(upto, pc.is_in(self.ahead["sample_id"], pa.array(ids, pa.string())))
            stored = _as_given(self.ahead.filter(wanted))
            self.ahead = self.ahead.filter(pc.invert(upto))
        found: list[Given | None] = []
        warnings: list[str] = []
        for sample_id, source in zip(ids, sources):
            given = stored.get(sample_id)
            if given is None and source == ckplus.CKPlus.name:
                try:
                    path = ckplus.landmarks_path(self.raw_dir / source, sample_id)
                    given = Given(landmarks=ckplus.read_landmarks(path)) if path is not None else None
                except (ValueError, OSError) as exc:
                    warnings.append(str(exc))
            found.append(given)
        return found, warnings
