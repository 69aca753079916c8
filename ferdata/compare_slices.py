"""A comparison cut by an alignment quality field: on which faces two models differ.

``ferdata compare --by FIELD`` cuts the compared faces into ``--bins`` bins of about equal
size by a field the align stage records for every face (processed/aligned/aligned.parquet
of A's pipeline folder): ``interocular`` (the face's size in its source frame, before
alignment), ``eye_angle`` (its tilt, by magnitude), ``fit_residual`` or
``fit_disagreement``. Each bin is compared as the whole is, and each class's share of the
ingested training rows in the same bin is set beside its share of the bin's faces and of
each model's answers: a class whose share moves from bin to bin is one a model trained on
unaligned pixels can learn to guess from the framing alone, and alignment takes that cue
away. Faces without the field (not aligned, or not in the folder) form a bin of their own.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferdata.compare import Answers, compare, compared_faces
from ferdata.layout import Layout
from ferdata.manifest import read_table

FIELDS = ("interocular", "eye_angle", "fit_residual", "fit_disagreement")


@dataclass(frozen=True)
class Slice:
    """The faces of one bin, and the class mix of the training rows that fall in it."""

    name: str  # e.g. "interocular 15.5–17.1"
    faces: frozenset[str]
    train_rows: int
    train_share: dict[str, float]  # class -> its share of the training rows in the bin


def check_cut(field: str, bins: int) -> None:
    """A clear error for a field the align stage does not record, or fewer than 2 bins."""
    if field not in FIELDS:
        raise ValueError(f"--by {field}: not an alignment field (one of {', '.join(FIELDS)})")
    if bins < 2:
        raise ValueError(f"--bins {bins}: cut into 2 bins or more")


def _field_values(folder: Path, field: str) -> tuple[list[str], np.ndarray, list[str | None], list[str]]:
    """Sample ids, ``field`` (NaN where missing; eye_angle by magnitude), split and label of
    every row the align stage wrote in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: --by reads the align stage's fields from A's pipeline folder; give A as a folder")
    path = Layout(folder).aligned / "aligned.parquet"
    table = read_table(path).select(["sample_id", field, "split", "label"])
    values = table[field].to_numpy(zero_copy_only=False).astype(np.float64)
    values = np.abs(values) if field == "eye_angle" else values
    return table["sample_id"].to_pylist(), values, table["split"].to_pylist(), table["label"].to_pylist()


def _bin_names(field: str, edges: np.ndarray) -> list[str]:
    """``interocular < 15.5``, ``interocular 15.5–17.1``, …, ``interocular ≥ 20``."""
    inner = [f"{e:.3g}" for e in edges]
    if not inner:  # every face has the same value
        return [f"any {field}"]
    return ([f"{field} < {inner[0]}"] + [f"{field} {lo}–{hi}" for lo, hi in zip(inner, inner[1:])]
            + [f"{field} ≥ {inner[-1]}"])


def slices(folder: Path, field: str, bins: int, faces: list[str], classes: tuple[str, ...]) -> list[Slice]:
    """``faces`` cut into ``bins`` bins of about equal size by ``field`` (quantile edges over
    those faces), each with the class shares of the training rows between the same edges."""
    check_cut(field, bins)
    ids, values, splits, labels = _field_values(folder, field)
    value_of = dict(zip(ids, values))
    face_values = np.array([value_of.get(sid, np.nan) for sid in faces])
    known = face_values[~np.isnan(face_values)]
    if len(known) == 0:
        raise ValueError(f"{Layout(folder).aligned / 'aligned.parquet'}: none of the compared faces has a {field}")
    edges = np.unique(np.quantile(known, np.linspace(0, 1, bins + 1)[1:-1]))
    names = _bin_names(field, edges)

    def bin_of(v: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(v), len(names), np.searchsorted(edges, v, side="right"))

    face_bins = bin_of(face_values)
    is_train = np.array([s == "train" for s in splits], bool)
    train_bins, train_labels = bin_of(values[is_train]), np.array(labels, object)[is_train]
    face_ids = np.array(faces, object)
    result = []
    for k, name in enumerate(names + [f"no {field}"]):
        members = frozenset(face_ids[face_bins == k])
        if not members:
            continue
        counts = Counter(train_labels[train_bins == k])
        total = sum(counts.values())
        shares = {c: counts[c] / total for c in classes} if total else {}
        result.append(Slice(name=name, faces=members, train_rows=total, train_share=shares))
    return result


def compare_by(folder: Path, field: str, bins: int, a: Answers, b: Answers, resamples: int, seed: int,
               leave_out: set[str] | None) -> list[tuple[Slice, dict]]:
    """Each slice of the faces A and B are compared on, with its own comparison report."""
    cut = slices(folder, field, bins, compared_faces(a, b, leave_out), a.classes)
    return [(piece, compare(a, b, resamples, seed, leave_out, only=piece.faces)) for piece in cut]


def slices_json(field: str, reports: list[tuple[Slice, dict]]) -> dict:
    """The slices and their reports, for ``--json``."""
    return {"field": field, "bins": [{"name": piece.name, "train_rows": piece.train_rows,
                                      "train_share": piece.train_share, "report": report}
                                     for piece, report in reports]}
