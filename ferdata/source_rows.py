"""A source's samples as ingest keeps them: Arrow columns, not a Python object per face.

A reader hands its samples over a part at a time (:meth:`Source.read_parts`). Ingest
measures a part's images, then compacts the part's records here, so that a million faces
cost Arrow's few hundred bytes each rather than a record each (what a part gives about its
faces, boxes and landmarks, goes to disk: :class:`ferdata.given.GivenSpill`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa

from ferdata.manifest import INGEST_SCHEMA, Reject
from ferdata.sources.base import RawRecord, SourceBatch

#: A measured :class:`RawRecord` as a row: the manifest's types for the same names.
RECORD_SCHEMA = pa.schema([INGEST_SCHEMA.field(f.name) for f in fields(RawRecord) if f.name != "image"])


@dataclass
class SourceRows:
    """All one source read: its measured records (:data:`RECORD_SCHEMA`), its rejects, the
    count of items seen, its decoded pixels (if any) and its own label map (if any)."""

    records: pa.Table
    rejects: list[Reject]
    seen: int
    pixels: np.ndarray | None = None
    labels: dict[str, str] | None = None


def records_table(records: list[RawRecord]) -> pa.Table:
    """Measured records as :data:`RECORD_SCHEMA` rows (built column by column: fast)."""
    return pa.table({name: [getattr(r, name) for r in records] for name in RECORD_SCHEMA.names},
                    schema=RECORD_SCHEMA)


def compact(batch: SourceBatch) -> SourceRows:
    """A measured part of a source (no record left with an image to read) as Arrow rows."""
    return SourceRows(records_table(batch.records), batch.rejects, batch.seen, batch.pixels, batch.labels)


def gather(parts: Iterable[SourceRows]) -> SourceRows:
    """One source's parts as one; only a source read in one part may carry decoded pixels,
    whose rows its records index."""
    parts = list(parts)
    with_pixels = [p for p in parts if p.pixels is not None]
    if len(parts) > 1 and with_pixels:
        raise ValueError("a source that decodes pixels at ingest must be read in one part")
    return SourceRows(pa.concat_tables([RECORD_SCHEMA.empty_table()] + [p.records for p in parts]),
                      [r for p in parts for r in p.rejects], sum(p.seen for p in parts),
                      with_pixels[0].pixels if with_pixels else None,
                      next((p.labels for p in parts if p.labels is not None), None))
