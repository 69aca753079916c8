"""The faces the split dropped because their copies disagree, as rows of the review dataset.

With ``split.label_conflicts: drop`` every copy of a duplicate group whose labels differ
leaves the dataset. The review shows those copies side by side (one ``dup_group`` each),
so that an annotator can tag the wrong copy ``relabel:<class>`` and the next build keeps
the face.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ferdata.export import write_png
from ferdata.manifest import pixels_to_array, read_table
from ferdata.shards import Shards

if TYPE_CHECKING:
    import keras

    from ferdata.test_time import TestTimeViews

LABEL_CONFLICT = "label_conflict"


def label_conflict_table(dataset_dir: Path, aligned_dir: Path, images_dir: Path) -> pa.Table | None:
    """The aligned rows of the faces dropped as ``label_conflict``, their PNGs written to
    ``images_dir`` (absolute ``filepath``), with ``dup_group`` and ``drop_reason`` set and
    ``split`` null; None when the build dropped no such face."""
    dataset_dir, images_dir = Path(dataset_dir), Path(images_dir).resolve()
    dropped = read_table(dataset_dir / "dropped.parquet")
    wanted = dropped.filter(pc.equal(dropped["reason"], LABEL_CONFLICT))["sample_id"]
    if not len(wanted):
        return None
    pieces = [t.filter(pc.is_in(t["sample_id"], value_set=wanted.combine_chunks()))
              for t in Shards(Path(aligned_dir) / "aligned.parquet").tables()]
    rows = pa.concat_tables(pieces)
    ids = rows["sample_id"].to_pylist()
    group_of = _conflict_groups(dataset_dir / "dedup.json")
    images_dir.mkdir(parents=True, exist_ok=True)
    for sample_id, pixels in zip(ids, pixels_to_array(rows["pixels"])):
        write_png(images_dir / f"{sample_id}.png", pixels)
    rows = rows.set_column(rows.schema.get_field_index("split"), "split", pa.nulls(len(ids), pa.string()))
    return (rows.append_column("dup_group", pa.array([group_of.get(i) for i in ids], pa.int64()))
                .append_column("origin", pa.array(["real"] * len(ids), pa.string()))
                .append_column("filepath", pa.array([str(images_dir / f"{i}.png") for i in ids], pa.string()))
                .append_column("drop_reason", pa.array([LABEL_CONFLICT] * len(ids), pa.string())))


def _conflict_groups(dedup_json: Path) -> dict[str, int]:
    """``sample_id -> dup_group`` for the members of every label-conflict group."""
    groups = json.loads(Path(dedup_json).read_text())["groups"]
    return {m["sample_id"]: g["dup_group"] for g in groups if g.get(LABEL_CONFLICT) for m in g["members"]}


def conflict_predictions(net: "keras.Model", dropped: pa.Table, classes: Sequence[str],
                         views: TestTimeViews) -> dict[str, dict[str, Any]]:
    """The model's answer for each dropped copy, as ``sample_id -> {predicted_label, confidence,
    logits}`` like predictions.parquet's rows: the model never trained on these faces, so it
    is a second opinion on their labels."""
    from ferdata.test_time import predict

    logits, probabilities = predict(net, pixels_to_array(dropped["pixels"]), views)
    best = probabilities.argmax(axis=1)
    return {sample_id: {"predicted_label": classes[k], "confidence": float(probabilities[i, k]), "logits": logits[i]}
            for i, (sample_id, k) in enumerate(zip(dropped["sample_id"].to_pylist(), best))}
