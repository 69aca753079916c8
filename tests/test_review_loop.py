"""The annotators' loop through the real commands: build, review, tag in FiftyOne as the App
would, export corrections.csv, rebuild — labels changed and excluded faces gone, in the
manifest and in the class folders."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from fiftyone_fixture import fo  # noqa: F401
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.sample import write_sample

PARAMS = str(Path(__file__).parent.parent / "params.yaml")
runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_tags_become_corrections_that_the_next_build_applies(fo, tmp_path):  # noqa: F811
    root = tmp_path / "project"
    write_sample(root / "raw", fer2013_rows=300, ckplus_subjects=3, jaffe_subjects=4, seed=1)
    (root / "corrections.csv").write_text("sample_id,action,new_label,when\n")
    build = ["build", "--params", PARAMS, "--root", str(root)]
    _ok(build)
    _ok(["review", "--params", PARAMS, "--root", str(root), "--no-launch", "--name", "loop"])

    dataset = fo.load_dataset("loop")
    happy = dataset.match({"ground_truth.label": "happy", "split": "train"}).first()
    fear = dataset.match({"ground_truth.label": "fear", "split": "test"}).first()
    relabelled, excluded = happy["sample_id"], fear["sample_id"]
    happy.tags.append("relabel:surprise")
    happy.save()
    fear.tags.extend(["exclude", "reviewed"])
    fear.save()
    _ok(["review", "export", "--params", PARAMS, "--root", str(root), "--name", "loop"])
    lines = (root / "corrections.csv").read_text().splitlines()
    assert [line.split(",")[:3] for line in lines[1:]] == sorted(
        [[relabelled, "relabel", "surprise"], [excluded, "exclude", ""]])

    output = _ok(build)
    assert "1 relabelled, 1 excluded" in output
    manifest = pq.read_table(root / "processed" / "dataset" / "manifest.parquet").to_pandas().set_index("sample_id")
    assert manifest.loc[relabelled, "label"] == "surprise" and excluded not in manifest.index
    folders = root / "processed" / "dataset"
    assert (folders / "train" / "surprise" / f"{relabelled}.png").exists()
    assert not list(folders.glob(f"*/happy/{relabelled}.png"))
    assert not list(folders.glob(f"*/*/{excluded}.png"))
    dataset.delete()
