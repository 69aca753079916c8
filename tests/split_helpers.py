"""Aligned manifests (ALIGNED_SCHEMA) with pictures that are all far apart, for the split tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from scipy.ndimage import gaussian_filter

from ferdata.manifest import ALIGNED_SCHEMA, array_to_pixels, write_table
from ferdata.sources.base import content_hash
from ferdata.split import Decisions
from ferdata.taxonomy import CLASSES_7


def distinct_images(n: int, seed: int = 0) -> np.ndarray:
    """``n`` smooth random 48x48 pictures: no two are perceptual near-duplicates."""
    rng = np.random.default_rng(seed)
    fields = gaussian_filter(rng.normal(size=(n, 48, 48)), sigma=(0, 3, 3))
    fields /= fields.reshape(n, -1).std(axis=1)[:, None, None]
    return np.clip(128 + 40 * fields, 0, 255).astype(np.uint8)


def row(sample_id: str, source: str, label_index: int, split: str | None = None,
        subject: str | None = None, sequence: str | None = None) -> dict:
    """One aligned-manifest row without pixels; the content hash is filled in later."""
    return dict(
        sample_id=sample_id, source=source, label=CLASSES_7[label_index], label_index=label_index,
        native_label=str(label_index), split=split, subject=subject, sequence=sequence, frame=None,
        source_file=f"{source}/{sample_id}", source_line=None, pixels_row=None, width=48, height=48,
        content_hash="", align_status="aligned", faces_detected=1, eye_angle=0.0, interocular=20.0,
        fit_residual=0.01, fit_disagreement=0.02,
    )


def decisions(rows: list[dict]) -> Decisions:
    """Rows as the columns the split decisions read."""
    return Decisions.of(pa.Table.from_pylist(rows, schema=ALIGNED_SCHEMA.remove(ALIGNED_SCHEMA.get_field_index("pixels"))))


def aligned_table(rows: list[dict], images: np.ndarray) -> pa.Table:
    """Rows plus their pictures as an ALIGNED_SCHEMA table (content_hash from the pixels)."""
    rows = [dict(r, content_hash=r["content_hash"] or content_hash(img)) for r, img in zip(rows, images)]
    no_pixels = ALIGNED_SCHEMA.remove(ALIGNED_SCHEMA.get_field_index("pixels"))
    table = pa.Table.from_pylist(rows, schema=no_pixels)
    return table.append_column(ALIGNED_SCHEMA.field("pixels"), array_to_pixels(images))


def fer_rows(per_split_class: dict[str, list[int]], start: int = 0) -> list[dict]:
    """FER2013-like rows with official splits: ``per_split_class[split][k]`` rows of class k."""
    rows = []
    for split, counts in per_split_class.items():
        for k, n in enumerate(counts):
            for _ in range(n):
                rows.append(row(f"fer2013-{start + len(rows):06d}", "fer2013", k, split=split))
    return rows


def subject_rows(source: str, subjects: int, per_subject: int, seed: int = 0) -> list[dict]:
    """Rows of a subject-based source (no official split), classes drawn at random per row."""
    rng = np.random.default_rng(seed)
    return [row(f"{source}-S{s:03d}_{j:03d}", source, int(rng.integers(0, 7)), subject=f"S{s:03d}")
            for s in range(subjects) for j in range(per_subject)]


def write_aligned(folder: Path, table: pa.Table) -> Path:
    """Write ``folder/aligned.parquet`` as the align stage does; returns the folder."""
    write_table(table, Path(folder) / "aligned.parquet")
    return Path(folder)
