"""What a source tells about a face besides its pixels, kept for the align stage.

AffectNet gives a face box and 68 landmarks per image; RAF-DB's ``Image/aligned`` files
are faces its authors already aligned; CK+ has landmark files. Ingest writes the first
two kinds to ``processed/interim/given.parquet`` (only samples that have any); align
reads that file, and CK+'s files, through :func:`rows_given`. Coordinates are the source
image's pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ferdata.manifest import read_table, write_table
from ferdata.sources import ckplus
from ferdata.sources.base import POINTS, Given

GIVEN_FILE = "given.parquet"

GIVEN_SCHEMA = pa.schema([
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("box", pa.list_(pa.float32(), 4)),  # left, top, right, bottom
    pa.field("landmarks", pa.list_(pa.float32(), 2 * POINTS)),  # x1, y1, x2, y2, ... (dlib's order)
    pa.field("prealigned", pa.bool_(), nullable=False),  # the image is a face the source aligned
])


def write_given(given: dict[str, Given], path: Path) -> None:
    """``given`` as a Parquet table in :data:`GIVEN_SCHEMA`, sorted by sample id."""
    ids = sorted(given)
    items = [given[i] for i in ids]
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
    write_table(pa.Table.from_arrays(columns, schema=GIVEN_SCHEMA), path)


def read_given(path: Path) -> dict[str, Given]:
    """The table :func:`write_given` wrote, by sample id; empty when there is no such file."""
    if not Path(path).exists():
        return {}
    table = read_table(path).cast(GIVEN_SCHEMA)
    boxes = table["box"].to_pylist()
    points = table["landmarks"].to_numpy(zero_copy_only=False)
    return {sid: Given(tuple(box) if box is not None else None,
                       None if marks is None else marks.reshape(POINTS, 2), prealigned)
            for sid, box, marks, prealigned in zip(table["sample_id"].to_pylist(), boxes, points,
                                                   table["prealigned"].to_pylist())}


def rows_given(ids: list[str], sources: list[str], interim_dir: Path,
               raw_dir: Path) -> tuple[list[Given | None], list[str]]:
    """Each row's :class:`Given` (None when its source gives nothing), and warnings.

    given.parquet supplies AffectNet's and RAF-DB's; a CK+ frame's landmarks come from its
    ``Landmarks/`` file when present, and a file that cannot be read is a warning, not an error.
    """
    stored = read_given(Path(interim_dir) / GIVEN_FILE)
    found: list[Given | None] = []
    warnings: list[str] = []
    for sample_id, source in zip(ids, sources):
        given = stored.get(sample_id)
        if given is None and source == ckplus.CKPlus.name:
            try:
                path = ckplus.landmarks_path(Path(raw_dir) / source, sample_id)
                given = Given(landmarks=ckplus.read_landmarks(path)) if path is not None else None
            except (ValueError, OSError) as exc:
                warnings.append(str(exc))
        found.append(given)
    return found, warnings
