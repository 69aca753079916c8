"""A face whose two FER2013 rows carry different labels: the build drops both copies, the
review shows them side by side, and relabelling the wrong copy in the App brings the face
back at the next build, once."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import yaml
from fiftyone_fixture import fo  # noqa: F401
from PIL import Image
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.sample import write_sample

PARAMS = str(Path(__file__).parent.parent / "params.yaml")
CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def _build(root: Path) -> tuple[set[str], dict[str, str]]:
    _ok(["build", "--sources", "fer2013", "--params", PARAMS, "--root", str(root)])
    kept = set(pq.read_table(root / "processed" / "dataset" / "manifest.parquet")["sample_id"].to_pylist())
    dropped = pq.read_table(root / "processed" / "dataset" / "dropped.parquet").to_pylist()
    return kept, {r["sample_id"]: r["reason"] for r in dropped}


def _plant_conflict(csv: Path) -> tuple[list[str], str, str]:
    """Give one Training row another row's pixels under its own label: ids, right and wrong label."""
    lines = csv.read_text().splitlines()
    training = [i for i, line in enumerate(lines) if line.endswith(",Training")]
    other = training[0]
    first = next(i for i in training[1:] if lines[i].split(",")[0] != lines[other].split(",")[0])
    emotion, pixels, _ = lines[first].split(",")
    wrong = lines[other].split(",")[0]
    lines[other] = f"{wrong},{pixels},Training"
    csv.write_text("\n".join(lines) + "\n")
    return [f"fer2013-{other - 1:06d}", f"fer2013-{first - 1:06d}"], CLASSES[int(emotion)], CLASSES[int(wrong)]


def test_a_conflict_relabelled_in_the_review_comes_back(fo, tmp_path):  # noqa: F811
    write_sample(tmp_path / "raw", fer2013_rows=60, ckplus_subjects=1, jaffe_subjects=1, rafdb_images=0,
                 affectnet_rows=0, folder_images=0, seed=4)
    ids, right, wrong = _plant_conflict(tmp_path / "raw" / "fer2013" / "fer2013.csv")
    kept, dropped = _build(tmp_path)
    assert {dropped[i] for i in ids} == {"label_conflict"} and not kept & set(ids)

    quick = tmp_path / "params.yaml"  # a one-epoch model, for the review's second opinion
    params = yaml.safe_load(Path(PARAMS).read_text())
    params["train"]["epochs"] = 1
    quick.write_text(yaml.safe_dump(params))
    for stage in ("balance", "train"):
        _ok([stage, "--params", str(quick), "--root", str(tmp_path)])

    output = _ok(["review", "--params", PARAMS, "--root", str(tmp_path), "--no-launch", "--name", "conflict"])
    assert "; 2 dropped as label conflicts)" in " ".join(output.split())  # rich wraps long lines
    dataset = fo.load_dataset("conflict")
    view = dataset.load_saved_view("label-conflicts")
    assert sorted(view.values("sample_id")) == sorted(ids)
    assert sorted(view.values("ground_truth.label")) == sorted([right, wrong])
    assert len(set(view.values("dup_group"))) == 1 and view.count_sample_tags() == {"dropped": 2}
    faces = [Image.open(path) for path in view.values("filepath")]
    assert all(face.size == (48, 48) for face in faces) and faces[0].tobytes() == faces[1].tobytes()
    assert not dataset.load_saved_view("source-fer2013").match_tags("dropped")
    assert set(view.values("predictions.label")) <= set(CLASSES) and None not in view.values("predictions.label")
    assert all(len(logits) == len(CLASSES) for logits in view.values("predictions.logits"))

    copy = view.match({"sample_id": ids[0]}).first()
    copy.tags.append(f"relabel:{right}")
    copy.save()
    _ok(["review", "export", "--params", PARAMS, "--root", str(tmp_path), "--name", "conflict"])
    assert f"{ids[0]},relabel,{right}," in (tmp_path / "corrections.csv").read_text()

    kept, dropped = _build(tmp_path)
    assert ids[0] in kept and dropped[ids[1]] == "duplicate"
    dataset.delete()
