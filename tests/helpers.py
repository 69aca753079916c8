"""Small generated datasets in the manifest's schemas, for stage tests that start mid-pipeline."""

from __future__ import annotations

import struct
import zlib
from collections import Counter

import numpy as np
import pyarrow as pa

from ferdata.executor import ExecutorParams, LocalExecutor
from ferdata.ingest import measure_records
from ferdata.manifest import DATASET_SCHEMA, array_to_pixels
from ferdata.sources.base import Source, SourceBatch
from ferdata.taxonomy import CLASSES_7


def class_pattern(label_index: int, rng: np.random.Generator) -> np.ndarray:
    """A 48x48 face-sized image whose class is learnable: a bar whose angle and row code it."""
    img = rng.normal(90, 12, size=(48, 48))
    angle = np.pi * label_index / len(CLASSES_7)
    yy, xx = np.mgrid[0:48, 0:48] - 23.5
    dist = np.abs(np.cos(angle) * yy - np.sin(angle) * xx)
    img[dist < 3.0] += 110
    img[4 + 5 * label_index: 7 + 5 * label_index, 2:8] = 250
    return np.clip(img, 0, 255).astype(np.uint8)


def synthetic_dataset(counts: dict[str, list[int]], seed: int = 0,
                      sources: tuple[str, ...] = ("fer2013", "ckplus", "jaffe")) -> pa.Table:
    """A dataset manifest: ``counts[split][k]`` real samples of class k, ``sources`` taking turns
    (CK+ and JAFFE rows have subjects).

    Example: ``synthetic_dataset({"train": [40, 5, 20, 60, 30, 25, 35], "val": [5] * 7})``.
    """
    rng = np.random.default_rng(seed)
    rows, images = [], []
    for split, per_class in counts.items():
        for k, n in enumerate(per_class):
            for _ in range(n):
                i = len(rows)
                source = sources[i % len(sources)]
                sid = f"{source}-{i:06d}"
                label = CLASSES_7[k]
                images.append(class_pattern(k, rng))
                rows.append(dict(
                    sample_id=sid, source=source, label=label, label_index=k, native_label=str(k),
                    split=split, subject=f"S{i % 5:03d}" if source in ("ckplus", "jaffe") else None,
                    sequence=None, frame=None, source_file=f"{source}/file", source_line=None,
                    pixels_row=None, width=48, height=48, content_hash=f"{i:040x}",
                    align_status="aligned", faces_detected=1, eye_angle=0.0, interocular=20.0,
                    fit_residual=0.01, fit_disagreement=0.02, fold=i % 10, dup_group=None, phash=f"{i:016x}",
                    path=f"{split}/{label}/{sid}.png", origin="real",
                ))
    table = pa.Table.from_pylist(rows, schema=DATASET_SCHEMA.remove(DATASET_SCHEMA.get_field_index("pixels")))
    pixels = array_to_pixels(np.stack(images)) if images else pa.array([], DATASET_SCHEMA.field("pixels").type)
    return table.add_column(DATASET_SCHEMA.get_field_index("pixels"), DATASET_SCHEMA.field("pixels"), pixels)


def read_measured(reader: Source) -> SourceBatch:
    """A reader's batch as ingest sees it: every image decoded and hashed (in this process)."""
    batch = reader.read()
    measure_records(reader.name, batch, LocalExecutor(ExecutorParams(workers=1)))
    return batch


def rejects_at(batch) -> dict[str, tuple[str, str]]:
    """A source batch's rejects as ``location -> (kind, reason)``."""
    return {r.location: (r.kind, r.reason) for r in batch.rejects}


def assert_balanced(batch) -> None:
    """Every item a source saw became a record, a reject or a drop."""
    kinds = Counter(r.kind for r in batch.rejects)
    assert set(kinds) <= {"rejected", "dropped"}
    assert batch.seen == len(batch.records) + kinds["rejected"] + kinds["dropped"]


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height 8-bit grey pixels, with one tiny data chunk:
    a decompression bomb as Pillow sees it, without the memory to make a real one."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))
