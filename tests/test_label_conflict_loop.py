"""A face whose two FER2013 rows carry different labels: the build drops both copies, and
a corrections.csv row that relabels the wrong copy brings the face back, once."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.sample import write_sample

PARAMS = Path(__file__).parent.parent / "params.yaml"


def _build(root: Path) -> tuple[set[str], dict[str, str]]:
    result = CliRunner().invoke(app, ["build", "--sources", "fer2013", "--params", str(PARAMS), "--root", str(root)])
    assert result.exit_code == 0, result.output
    kept = set(pq.read_table(root / "processed" / "dataset" / "manifest.parquet")["sample_id"].to_pylist())
    dropped = pq.read_table(root / "processed" / "dataset" / "dropped.parquet").to_pylist()
    return kept, {r["sample_id"]: r["reason"] for r in dropped}


def test_relabelling_one_copy_of_a_conflict_keeps_the_face(tmp_path):
    write_sample(tmp_path / "raw", fer2013_rows=60, ckplus_subjects=1, jaffe_subjects=1, rafdb_images=0,
                 affectnet_rows=0, folder_images=0, seed=4)
    csv = tmp_path / "raw" / "fer2013" / "fer2013.csv"
    lines = csv.read_text().splitlines()
    training = [i for i, line in enumerate(lines) if line.endswith(",Training")]
    other = training[0]
    first = next(i for i in training[1:] if lines[i].split(",")[0] != lines[other].split(",")[0])
    emotion, pixels, _ = lines[first].split(",")
    lines[other] = f"{lines[other].split(',')[0]},{pixels},Training"  # the same face, another label
    csv.write_text("\n".join(lines) + "\n")
    ids = [f"fer2013-{other - 1:06d}", f"fer2013-{first - 1:06d}"]  # data line i is row i - 1

    kept, dropped = _build(tmp_path)
    assert {dropped[i] for i in ids} == {"label_conflict"} and not kept & set(ids)

    label = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")[int(emotion)]
    (tmp_path / "corrections.csv").write_text(
        f"sample_id,action,new_label,when\n{ids[0]},relabel,{label},2026-12-04\n")
    kept, dropped = _build(tmp_path)
    assert ids[0] in kept and dropped[ids[1]] == "duplicate"
