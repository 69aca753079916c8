"""Sharded Parquet tables: a folder of ``part-00000.parquet``, ``part-00001.parquet`` ...
that pyarrow (``pq.read_table(folder)``) and Dask (``dd.read_parquet(folder)``) read as one table.

Stages write their large tables a partition at a time (:class:`ShardWriter`), so no process
holds a whole dataset's faces, and read them back lazily (:class:`Shards`): a shard at a
time, or chosen rows; :class:`FaceFile` reads any rows' faces. Shard ``k`` holds the rows
of partition ``k`` in row order, so the same rows and partition size give the same files
whoever computed them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ferdata.manifest import IMAGE_SIZE, pixels_to_array, write_table

SHARD_GLOB = "part-*.parquet"
FACE_BYTES = IMAGE_SIZE * IMAGE_SIZE
#: Rows per shard unless params.yaml's ``executor.partition_size`` says otherwise.
PARTITION_SIZE = 4096


def shard_name(index: int) -> str:
    """The file name of shard ``index``: zero-padded, so names sort in row order."""
    return f"part-{index:05d}.parquet"


class ShardWriter:
    """Writes a folder of shards in :data:`schema`, each shard atomically; an empty table is
    one empty shard, so readers always find the schema."""

    def __init__(self, folder: Path, schema: pa.Schema) -> None:
        self.folder, self.schema, self.written = Path(folder), schema, 0
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, index: int, table: pa.Table) -> None:
        """Write ``table`` as shard ``index``."""
        write_table(table.select(self.schema.names).cast(self.schema), self.folder / shard_name(index))
        self.written += 1

    def close(self) -> None:
        if self.written == 0:
            self.write(0, self.schema.empty_table())


def write_shards(tables: Iterable[pa.Table], folder: Path, schema: pa.Schema) -> None:
    """``tables`` as shards 0, 1, ... of ``folder``, replacing what it held (a file or a
    folder) once every shard is written."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    writer = ShardWriter(tmp, schema)
    for k, table in enumerate(tables):
        writer.write(k, table)
    writer.close()
    if folder.is_dir():
        shutil.rmtree(folder)
    elif folder.exists():
        folder.unlink()
    tmp.rename(folder)


def write_sharded(table: pa.Table, folder: Path, partition_size: int, order: pa.Array | None = None) -> None:
    """``table`` as shards of ``partition_size`` consecutive rows (rows in ``order``, when
    given, taken a shard at a time: no second copy of the table), replacing what ``folder``
    held."""
    starts = range(0, table.num_rows, partition_size)
    write_shards((table.slice(start, partition_size) if order is None
                  else table.take(order.slice(start, partition_size)) for start in starts), folder, table.schema)


class Shards:
    """A table stored as one Parquet file or a folder of shards, read a piece at a time."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if self.path.is_file():
            self.files = [self.path]
        elif self.path.is_dir():
            self.files = sorted(self.path.glob(SHARD_GLOB))
        else:
            self.files = []
        if not self.files:
            raise FileNotFoundError(f"{self.path}: not found; run the stage that writes it first")
        counts = [pq.ParquetFile(f).metadata.num_rows for f in self.files]
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def schema(self) -> pa.Schema:
        return pq.read_schema(self.files[0])

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """The whole table (or some of its columns)."""
        return pa.concat_tables([pq.read_table(f, columns=columns) for f in self.files])

    def tables(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """One table per shard, in order."""
        for f in self.files:
            yield pq.read_table(f, columns=columns)

    def batches(self, size: int, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """The rows in order as tables of ``size`` rows (the last may be shorter), whatever the
        shards' own sizes; a shard or two is read at a time."""
        ahead = None
        for table in self.tables(columns):
            ahead = table if ahead is None else pa.concat_tables([ahead, table])
            while ahead.num_rows >= size:
                yield ahead.slice(0, size)
                ahead = ahead.slice(size)
        if ahead is not None and ahead.num_rows:
            yield ahead

    def take(self, rows: np.ndarray, columns: list[str] | None = None) -> pa.Table:
        """Rows by position in the whole table, in the order given; each shard they fall in is
        read once."""
        rows = np.asarray(rows, dtype=np.int64)
        shard = np.searchsorted(self.starts, rows, side="right") - 1
        order = np.argsort(shard, kind="stable")
        by_shard, first = np.unique(shard[order], return_index=True)
        parts = []
        for k, lo, hi in zip(by_shard, first, [*first[1:], len(rows)]):
            local = rows[order[lo:hi]] - self.starts[k]
            parts.append(pq.read_table(self.files[k], columns=columns).take(pa.array(local)))
        if not parts:
            return pq.read_table(self.files[0], columns=columns).slice(0, 0)
        inverse = np.empty(len(rows), dtype=np.int64)
        inverse[order] = np.arange(len(rows))
        return pa.concat_tables(parts).take(pa.array(inverse))


class FaceFile:
    """The ``pixels`` column of sharded rows copied once, in one pass over the shards, into a
    flat file of 48x48 faces, and read back by row: ``faces[[3, 17]]`` reads those two faces
    and nothing else, so any rows can be read in any order, repeatedly, holding only the
    faces asked for. ``order[i]`` is where row ``i`` is stored. A context manager: the file
    is deleted on exit."""

    def __init__(self, shards: Shards, order: np.ndarray, path: Path) -> None:
        self.order, self.path = np.asarray(order, dtype=np.int64), Path(path)
        with open(self.path, "wb") as out:
            for table in shards.tables(["pixels"]):
                out.write(pixels_to_array(table["pixels"]).tobytes())
        self.fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        stored = self.order[np.asarray(rows, dtype=np.int64)]
        faces = np.empty((len(stored), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        for face, position in zip(faces, stored):
            os.preadv(self.fd, [face], int(position) * FACE_BYTES)
        return faces

    def __enter__(self) -> "FaceFile":
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
        self.path.unlink()
