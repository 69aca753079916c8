"""The manifest's Arrow schemas and its Parquet read / write, plus the rejects table.

Every stage reads and writes the same columns, growing them as it goes:

* ingest writes :data:`INGEST_SCHEMA`: one row per accepted raw sample;
* align adds :data:`ALIGN_FIELDS` and the 48x48 ``pixels``;
* split adds :data:`SPLIT_FIELDS` (final split, fold, duplicates, output path);
* balance adds rows whose ``origin`` is not ``real``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

IMAGE_SIZE = 48
PIXELS_TYPE = pa.binary(IMAGE_SIZE * IMAGE_SIZE)

INGEST_SCHEMA = pa.schema([
    pa.field("sample_id", pa.string(), nullable=False),  # fer2013-000123, ckplus-S005_001_00000011
    pa.field("source", pa.string(), nullable=False),  # registered source name
    pa.field("label", pa.string(), nullable=False),  # canonical class name
    pa.field("label_index", pa.int16(), nullable=False),  # position in the taxonomy
    pa.field("native_label", pa.string(), nullable=False),  # the label as the source spells it
    pa.field("split", pa.string()),  # train / val / test where the source defines one
    pa.field("subject", pa.string()),  # person id (CK+ S005, JAFFE KA); null for FER2013
    pa.field("sequence", pa.string()),  # CK+ sequence (001)
    pa.field("frame", pa.int32()),  # CK+ frame number
    pa.field("source_file", pa.string(), nullable=False),  # path relative to the source's raw root
    pa.field("source_line", pa.int64()),  # 1-based line in source_file (header = line 1)
    pa.field("pixels_row", pa.int64()),  # row in pixels/<source>.npy; null: decode source_file
    pa.field("width", pa.int32(), nullable=False),
    pa.field("height", pa.int32(), nullable=False),
    pa.field("content_hash", pa.string(), nullable=False),  # sha1 of the decoded 8-bit pixels
    pa.field("soft_label", pa.list_(pa.float32())),  # FER+ vote shares per class, when chosen
    pa.field("valence", pa.float32()),  # AffectNet's ratings, -1..1; null where not rated
    pa.field("arousal", pa.float32()),
])
#: The FER+ soft label: vote shares over the taxonomy's classes (null where absent).
SOFT_LABEL_FIELD = INGEST_SCHEMA.field("soft_label")

ALIGN_FIELDS = [
    pa.field("align_status", pa.string(), nullable=False),  # aligned, no_face, multiple_faces, unstable_fit, passthrough
    pa.field("faces_detected", pa.int16()),
    pa.field("eye_angle", pa.float32()),  # eye-line angle before alignment, degrees
    pa.field("interocular", pa.float32()),  # eye-centre distance before alignment, source pixels
    pa.field("fit_residual", pa.float32()),  # landmark residual against the mean shape
    pa.field("fit_disagreement", pa.float32()),  # landmarks of the face vs of its mirror image
    pa.field("pixels", PIXELS_TYPE, nullable=False),  # the aligned 48x48 grayscale face
]

SPLIT_FIELDS = [
    pa.field("fold", pa.int16()),  # subject-disjoint fold for CK+ / JAFFE protocols
    pa.field("dup_group", pa.int64()),  # duplicate group id, null when unique
    pa.field("phash", pa.string()),  # perceptual hash of the aligned face
    pa.field("path", pa.string()),  # output PNG relative to the dataset directory
    pa.field("origin", pa.string(), nullable=False),  # real, smote, adasyn, augment, ...
]

REJECTS_SCHEMA = pa.schema([
    pa.field("source", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),  # rejected (bad input) or dropped (policy)
    pa.field("location", pa.string(), nullable=False),  # file:line or a path
    pa.field("reason", pa.string(), nullable=False),  # short code, e.g. bad_pixel_count
    pa.field("message", pa.string(), nullable=False),  # what a person needs to fix it
    pa.field("sample_id", pa.string()),  # when the item got as far as having an id
])


@dataclass(frozen=True)
class Reject:
    """One input item that did not become a sample, and why."""

    source: str
    location: str
    reason: str
    message: str
    kind: str = "rejected"
    sample_id: str | None = None

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


def rejects_table(rejects: list[Reject]) -> pa.Table:
    """The rejects as an Arrow table in :data:`REJECTS_SCHEMA`."""
    return pa.Table.from_pylist([asdict(r) for r in rejects], schema=REJECTS_SCHEMA)


def write_table(table: pa.Table, path: Path) -> None:
    """Write a table to Parquet atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # hidden: a folder of shards is read without it
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)


def read_table(path: Path, filters: list[tuple] | None = None) -> pa.Table:
    """Read a manifest or rejects table (one file, or a folder of shards as one table), or the
    rows that pass ``filters`` (pyarrow's, e.g. ``[("split", "==", "train")]``), naming the
    path when it is missing."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; run the stage that writes it first")
    return pq.read_table(path, filters=filters)


def pixels_to_array(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The ``pixels`` column as an (N, 48, 48) uint8 array, without a per-row copy."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = []
    for chunk in chunks:
        chunk = chunk.cast(PIXELS_TYPE)
        data = chunk.buffers()[1]
        arr = np.frombuffer(data, dtype=np.uint8, count=len(chunk) * IMAGE_SIZE * IMAGE_SIZE,
                            offset=chunk.offset * IMAGE_SIZE * IMAGE_SIZE)
        parts.append(arr.reshape(-1, IMAGE_SIZE, IMAGE_SIZE))
    if not parts:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    return np.concatenate(parts) if len(parts) > 1 else parts[0].copy()


def array_to_pixels(images: np.ndarray) -> pa.Array:
    """An (N, 48, 48) uint8 array as a ``pixels`` column."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    n = images.shape[0]
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"expected (N, {IMAGE_SIZE}, {IMAGE_SIZE}) images, got {images.shape}")
    return pa.FixedSizeBinaryArray.from_buffers(PIXELS_TYPE, n, [None, pa.py_buffer(images.tobytes())])


def check_labels(table: pa.Table, classes: tuple[str, ...] | list[str], path: Path, hint: str = "") -> None:
    """Refuse rows whose label is outside ``classes`` or whose label_index disagrees with it."""
    pairs = table.select(["label", "label_index"]).group_by(["label", "label_index"]).aggregate([])
    bad = sorted({(lab, int(k)) for lab, k in zip(pairs["label"].to_pylist(), pairs["label_index"].to_pylist())
                  if lab not in classes or list(classes).index(lab) != k})
    if bad:
        raise ValueError(f"{path}: labels not in the {len(classes)}-class taxonomy {list(classes)} "
                         f"(or a wrong label_index): {bad[:10]}{hint}")


def _extend(schema: pa.Schema, fields: list[pa.Field]) -> pa.Schema:
    for f in fields:
        schema = schema.append(f)
    return schema


#: processed/aligned/aligned.parquet: every ingested sample with its aligned face.
ALIGNED_SCHEMA = _extend(INGEST_SCHEMA, ALIGN_FIELDS)
#: processed/dataset/manifest.parquet: the kept samples, ``split`` final, ``path`` set.
DATASET_SCHEMA = _extend(ALIGNED_SCHEMA, SPLIT_FIELDS)

BALANCE_FIELDS = [
    pa.field("method", pa.string(), nullable=False),  # the balance run's method (the same on every row)
    pa.field("seed", pa.int64(), nullable=False),  # the balance run's seed
    pa.field("parent_id", pa.string()),  # the real face a copy was made from (augment, random_over)
    pa.field("transform", pa.string()),  # JSON of the flip / rotation / zoom / shift applied, if any
]

#: processed/balanced/manifest.parquet: the train rows after balancing, real and generated.
BALANCED_SCHEMA = _extend(DATASET_SCHEMA, BALANCE_FIELDS)

#: FER+ vote shares over the taxonomy's classes (in class index order, summing to 1);
#: set by ``ingest.labels: ferplus-probability`` for FER2013 rows, null everywhere else.
