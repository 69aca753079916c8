"""`ferdata build` end to end on generated raw data: the stages compose, and the defects the
generator planted are found by the real detector, aligner and dedup."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.sample import write_sample

PARAMS = Path(__file__).parent.parent / "params.yaml"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("build")
    write_sample(root / "raw", fer2013_rows=300, ckplus_subjects=8, jaffe_subjects=4, seed=1)
    result = CliRunner().invoke(app, ["build", "--sources", "fer2013,ckplus,jaffe", "--params", str(PARAMS),
                                      "--raw-dir", str(root / "raw"), "--out", str(root / "processed")])
    assert result.exit_code == 0, result.output
    truth = json.loads((root / "raw" / "sample_truth.json").read_text())
    return root / "processed", root / "raw", truth


def _manifest(path: Path):
    return pq.read_table(path).to_pandas()


def test_planted_cross_split_copies_lose_their_train_copy(built):
    processed, _, truth = built
    kept = set(_manifest(processed / "dataset" / "manifest.parquet").sample_id)
    dropped = _manifest(processed / "dataset" / "dropped.parquet").set_index("sample_id").reason
    for pair in truth["defects"]["exact_duplicates"] + truth["defects"]["near_duplicates"]:
        train_copy, eval_copy = pair  # the generator puts the Training row first
        assert dropped.get(train_copy) == "leak" and eval_copy in kept
    assert dropped.get(truth["defects"]["blank"][0]) == "blank"
    assert set(dropped.index) & set(kept) == set()


def test_no_person_sits_on_two_sides(built):
    m = _manifest(built[0] / "dataset" / "manifest.parquet")
    people = m[m.subject.notna()].groupby("subject").split.nunique()
    assert len(people) > 0 and (people == 1).all()


def test_every_face_is_aligned_and_written_where_the_manifest_says(built):
    processed = built[0]
    m = _manifest(processed / "dataset" / "manifest.parquet")
    assert (m.align_status[m.source != "fer2013"] == "aligned").all()
    on_disk = {p.relative_to(processed / "dataset").as_posix()
               for p in (processed / "dataset").glob("*/*/*.png")}
    assert on_disk == set(m.path)


def test_balanced_train_is_even_and_eval_splits_are_untouched(built):
    processed = built[0]
    balanced = _manifest(processed / "balanced" / "manifest.parquet")
    counts = balanced.label.value_counts()
    assert counts.nunique() == 1 and len(counts) == 7
    dataset = _manifest(processed / "dataset" / "manifest.parquet")
    real = balanced[balanced.origin == "real"]
    assert set(real.sample_id) == set(dataset[dataset.split == "train"].sample_id)
    assert not set(balanced.sample_id) & set(dataset[dataset.split != "train"].sample_id)
    pngs = sorted((processed / "balanced" / "train").glob("*/*.png"))
    assert len(pngs) == len(balanced) and np.all([p.stat().st_size > 0 for p in pngs])
