"""`ferdata compare`: two evaluate runs' predictions paired by sample id, on files whose
right and wrong answers are set face by face, so every score and difference is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.compare import compare, read_answers, read_arm
from ferdata.compare_slices import slices
from ferdata.layout import Layout
from ferdata.manifest import write_table
from ferdata.predictions import predictions_table, with_classes
from ferdata.taxonomy import CLASSES_7

N = 700


def _labels(n: int = N) -> np.ndarray:
    return np.random.default_rng(0).choice(7, size=n, p=[0.14, 0.02, 0.14, 0.25, 0.17, 0.11, 0.17])


def _write(path: Path, labels: np.ndarray, right: np.ndarray, ids: list[str] | None = None,
           split: str = "test", answered: np.ndarray | None = None) -> Path:
    """A predictions.parquet whose model answers face i right where ``right[i]``, else the next
    class; with ``answered``, no answer at all where it is false."""
    ids = ids or [f"fer2013-{i:05d}" for i in range(len(labels))]
    predicted = np.where(right, labels, (labels + 1) % 7)
    logits = np.eye(7, dtype=np.float32)[predicted] * 4
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    rows = pa.table({"sample_id": ids, "split": [split] * len(ids), "source": ["fer2013"] * len(ids),
                     "label": [CLASSES_7[k] for k in labels], "label_index": pa.array(labels, pa.int16())})
    write_table(predictions_table(rows, CLASSES_7, logits, probabilities, answered), path)
    return path


def _recall(labels: np.ndarray, right: np.ndarray, k: int) -> float:
    return right[labels == k].mean()


def test_the_same_answers_differ_by_exactly_nothing(tmp_path):
    labels = _labels()
    right = np.random.default_rng(1).random(N) < 0.6
    a = _write(tmp_path / "a.parquet", labels, right)
    report = compare(read_answers(a, "test"), read_answers(a, "test"), resamples=300)
    diff = report["difference"]
    assert (diff["accuracy"]["mean"], diff["accuracy"]["low"], diff["accuracy"]["high"]) == (0, 0, 0)
    assert report["scores"]["a"]["accuracy"] == pytest.approx(right.mean())
    assert report["left_out"] == {"only_in_a": 0, "only_in_b": 0, "label_differs": 0}


def test_a_model_right_on_more_faces_is_ahead_by_that_share_with_an_interval_above_zero(tmp_path):
    """B is right wherever A is, and on 40 more faces, all of them fear or disgust."""
    labels = _labels()
    rng = np.random.default_rng(2)
    right_a = rng.random(N) < 0.6
    gains = np.flatnonzero(~right_a & np.isin(labels, [1, 2]))[:40]
    right_b = right_a.copy()
    right_b[gains] = True
    report = compare(read_answers(_write(tmp_path / "b.parquet", labels, right_b), "test"),
                     read_answers(_write(tmp_path / "a.parquet", labels, right_a), "test"), resamples=500)
    diff = report["difference"]
    assert diff["accuracy"]["mean"] == pytest.approx(40 / N)
    assert 0 < diff["accuracy"]["low"] < 40 / N < diff["accuracy"]["high"]
    for k in (1, 2):
        expected = _recall(labels, right_b, k) - _recall(labels, right_a, k)
        assert expected > 0 and diff["recall"][CLASSES_7[k]]["mean"] == pytest.approx(expected)
    assert diff["recall"]["happy"]["mean"] == 0  # no gain there, and no interval around it
    assert report["support"]["disgust"] == int((labels == 1).sum())


def test_faces_in_one_file_only_or_labelled_differently_are_left_out_and_counted(tmp_path):
    labels = _labels()
    right = np.random.default_rng(3).random(N) < 0.6
    ids = [f"fer2013-{i:05d}" for i in range(N)]
    a = _write(tmp_path / "a.parquet", labels, right, ids)
    relabelled = labels.copy()
    relabelled[:5] = (labels[:5] + 3) % 7  # a corrected label in B's build
    b_ids = ids[:650] + [f"raf-db-{i}" for i in range(20)]  # B lacks 50 of A's faces, has 20 others
    b_labels = np.concatenate([relabelled[:650], labels[:20]])
    b = _write(tmp_path / "b.parquet", b_labels, np.concatenate([right[:650], right[:20]]), b_ids)
    report = compare(read_answers(a, "test"), read_answers(b, "test"), resamples=200)
    assert report["left_out"] == {"only_in_a": 50, "only_in_b": 20, "label_differs": 5}
    assert report["faces"] == 645
    assert report["scores"]["a"]["accuracy"] == pytest.approx(right[5:650].mean())


def test_a_class_the_compared_split_lacks_keeps_its_name_from_the_other_splits(tmp_path):
    labels = _labels()
    labels[labels == 1] = 0  # no disgust among the test faces, and none answered there
    right = (np.random.default_rng(5).random(N) < 0.6) | (labels == 0)  # a wrong answer to angry is disgust
    val_labels = np.arange(70) % 7
    tables = [pq.read_table(_write(tmp_path / f"{split}.parquet", y, ok, split=split))
              for split, y, ok in (("test", labels, right), ("val", val_labels, np.ones(70, bool)))]
    both = tmp_path / "both.parquet"
    write_table(pa.concat_tables(tables), both)
    report = compare(read_answers(both, "test"), read_answers(both, "test"), resamples=100)
    assert report["classes"] == list(CLASSES_7)
    assert report["support"]["disgust"] == 0 and report["scores"]["a"]["recall"]["disgust"] is None


@pytest.mark.parametrize("problem, message", [
    ("missing", "no predictions (run `ferdata evaluate`"),
    ("columns", "not a predictions file of `ferdata evaluate` (no column"),
    ("split", "no predictions for split 'test'"),
])
def test_unusable_inputs_are_refused_naming_the_file(tmp_path, problem, message):
    path = tmp_path / "p.parquet"
    if problem == "columns":
        write_table(pa.table({"sample_id": ["x"], "split": ["test"]}), path)
    elif problem == "split":
        _write(path, _labels(20), np.ones(20, bool), split="val")
    with pytest.raises((FileNotFoundError, ValueError), match="p.parquet") as error:
        read_answers(path, "test")
    assert message in str(error.value)


def test_the_command_compares_two_pipeline_folders_and_strict_fails_on_left_out_faces(tmp_path):
    root = tmp_path / ("pipelines-" * 8)  # paths wider than the 80-column terminal
    labels = _labels()
    rng = np.random.default_rng(4)
    right_a, right_b = rng.random(N) < 0.7, rng.random(N) < 0.5
    ids = [f"fer2013-{i:05d}" for i in range(N)]
    for name, right, kept in (("a", right_a, N), ("b", right_b, N - 1)):
        predictions = Layout(root / name).predictions
        predictions.parent.mkdir(parents=True)
        _write(predictions, labels[:kept], right[:kept], ids[:kept])
    out = root / "compare.json"
    runner = CliRunner()
    result = runner.invoke(app, ["compare", str(root / "a"), str(root / "b"), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "macro recall" in result.output and "recall disgust" in result.output
    lines = result.output.splitlines()  # long paths whole, each on its own line
    assert f"comparison: {out}" in lines
    for side in ("a", "b"):
        assert f"{side.upper()}: {Layout(root / side).predictions} (split test)" in lines
    report = json.loads(out.read_text())
    assert report["faces"] == N - 1 and report["left_out"]["only_in_a"] == 1
    assert report["difference"]["accuracy"]["mean"] == pytest.approx(right_a[:-1].mean() - right_b[:-1].mean())
    assert runner.invoke(app, ["compare", str(root / "a"), str(root / "b"), "--strict"]).exit_code == 1
    missing = runner.invoke(app, ["compare", str(root / "a"), str(root / "c")])
    assert missing.exit_code == 2 and "predictions.parquet: no predictions" in missing.output


def test_on_the_published_private_test_a_face_without_pixels_counts_as_wrong(tmp_path):
    """A's align stage had no pixels for 30 faces, which A could not answer: they are paired
    and count against A alone, as eval.json's fer2013_private_test counts them."""
    labels = _labels()
    right = np.random.default_rng(6).random(N) < 0.6
    answered_a = np.arange(N) >= 30
    for name, answered in (("a", answered_a), ("b", np.ones(N, bool))):
        path = Layout(tmp_path / name).private_test_predictions
        path.parent.mkdir(parents=True)
        _write(path, labels, right, answered=answered)
    assert pq.read_table(Layout(tmp_path / "a").private_test_predictions)["predicted"].null_count == 30

    out = tmp_path / "compare.json"
    runner = CliRunner()
    folders = [str(tmp_path / "a"), str(tmp_path / "b")]
    result = runner.invoke(app, ["compare", *folders, "--private-test", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["faces"] == N and not any(report["left_out"].values())
    assert report["scores"]["a"]["accuracy"] == pytest.approx((right & answered_a).mean())
    assert report["scores"]["b"]["accuracy"] == pytest.approx(right.mean())
    assert report["difference"]["accuracy"]["mean"] == pytest.approx(-right[:30].sum() / N)
    answered = np.where(right, labels, (labels + 1) % 7)  # what _write makes each face's answer
    for k, c in enumerate(CLASSES_7):  # the 30 faces A did not answer count in no class
        assert report["answered"]["a"][c] == pytest.approx(((answered == k) & answered_a).mean())
        assert report["answered"]["b"][c] == pytest.approx((answered == k).mean())
    assert sum(report["answered"]["a"].values()) == pytest.approx(1 - 30 / N)
    assert report["classes"] == list(CLASSES_7)
    assert runner.invoke(app, ["compare", *folders, "--private-test", "--split", "val"]).exit_code == 2
    without = runner.invoke(app, ["compare", *folders])  # these folders hold no predictions.parquet
    assert without.exit_code == 2 and "predictions.parquet: no predictions" in without.output


def _write_ablation(path: Path, labels: np.ndarray, right: dict[tuple[str, int], np.ndarray]) -> Path:
    """An ablation predictions file (as `ferdata ablate` writes it) whose arm, with seed, answers
    face i right where ``right[arm, seed][i]``, else the next class."""
    ids = [f"fer2013-{i:05d}" for i in range(len(labels))]
    tables = [pa.table({"split": ["test"] * len(ids), "arm": [arm] * len(ids),
                        "seed": pa.array([seed] * len(ids), pa.int64()),
                        "sample_id": ids, "label_index": pa.array(labels, pa.int16()),
                        "predicted": pa.array(np.where(ok, labels, (labels + 1) % 7), pa.int16()),
                        "correct": pa.array(ok)})
              for (arm, seed), ok in right.items()]
    write_table(with_classes(pa.concat_tables(tables), CLASSES_7), path)
    return path


def test_an_ablation_file_of_an_earlier_ferdata_or_without_val_answers_is_refused_naming_it(tmp_path):
    path = _write_ablation(tmp_path / "ablation.parquet", _labels(), {("raw", 42): np.ones(N, bool)})
    with pytest.raises(ValueError, match="ablation.parquet: no answers on split 'val'"):
        read_arm(path, "raw", "val")
    earlier = tmp_path / "earlier.parquet"
    write_table(pq.read_table(path).drop_columns(["split"]), earlier)
    with pytest.raises(ValueError, match=r"earlier.parquet: .*no column split; .*run `ferdata ablate` again"):
        read_arm(earlier, "raw")


def test_ablation_arms_pair_seed_by_seed_or_one_seed_against_a_pipeline(tmp_path):
    """Two arms run with seeds 42 and 43 are paired seed by seed and averaged; an arm set
    against one evaluate run must name one seed, and is then paired on PrivateTest."""
    labels = _labels()
    rng = np.random.default_rng(8)
    right = {(arm, seed): rng.random(N) < p for arm, p in (("raw", 0.5), ("build", 0.7)) for seed in (42, 43)}
    ablation = Layout(tmp_path / "abl").ablation_predictions
    ablation.parent.mkdir(parents=True)
    _write_ablation(ablation, labels, right)
    pipeline = Layout(tmp_path / "pipe").private_test_predictions
    pipeline.parent.mkdir(parents=True)
    _write(pipeline, labels, right["raw", 43])
    out, runner = tmp_path / "compare.json", CliRunner()

    result = runner.invoke(app, ["compare", str(tmp_path / "abl"), str(ablation), "--arm-a", "build",
                                 "--arm-b", "raw", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    gains = [right["build", s].mean() - right["raw", s].mean() for s in (42, 43)]
    assert report["repeats"] == 2 and report["difference"]["accuracy"]["mean"] == pytest.approx(np.mean(gains))
    assert report["scores"]["a"]["accuracy"] == pytest.approx((right["build", 42].mean() + right["build", 43].mean()) / 2)
    assert "means over 2 seeds" in " ".join(result.output.split())

    mixed = runner.invoke(app, ["compare", str(tmp_path / "abl"), str(tmp_path / "pipe"), "--arm-a", "build"])
    assert mixed.exit_code == 2 and "pick one seed" in mixed.output
    result = runner.invoke(app, ["compare", str(tmp_path / "abl"), str(tmp_path / "pipe"), "--arm-a", "raw@43",
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["faces"] == N and report["difference"]["accuracy"]["mean"] == pytest.approx(0.0)
    assert report["difference"]["accuracy"]["low"] == report["difference"]["accuracy"]["high"] == 0.0


def _write_aligned(folder: Path, test_ids: list[str], test_labels: np.ndarray, field: str,
                   test_values: np.ndarray, train: list[tuple[str, float]]) -> None:
    """The align stage's fields of ``folder``: test faces with ``field`` (NaN: not recorded)
    and training rows as (label, value)."""
    ids = test_ids + [f"fer2013-train-{i:05d}" for i in range(len(train))]
    values = [None if np.isnan(v) else float(v) for v in test_values] + [v for _, v in train]
    write_table(pa.table({"sample_id": ids, field: pa.array(values, pa.float32()),
                          "split": ["test"] * len(test_ids) + ["train"] * len(train),
                          "label": [CLASSES_7[k] for k in test_labels] + [lab for lab, _ in train]}),
                Layout(folder).aligned / "aligned.parquet")


def test_by_a_field_each_bin_is_compared_alone_beside_the_training_rows_class_mix(tmp_path):
    """Raw pixels right only on the faces framed large, aligned faces right on all: cut by
    interocular distance, the small faces' bin shows the whole gap and the large faces' bin
    none, each beside its own training rows' class shares; faces without the field get a bin."""
    labels = _labels()
    interocular = np.random.default_rng(3).uniform(10, 25, N)
    interocular[:40] = np.nan  # faces the align stage did not measure
    large = np.nan_to_num(interocular) >= np.nanmedian(interocular)
    right = {("aligned", 42): np.ones(N, bool), ("raw", 42): large}
    folder = tmp_path / "abl"
    ablation = Layout(folder).ablation_predictions
    ablation.parent.mkdir(parents=True)
    _write_ablation(ablation, labels, right)
    train = [("angry", 11.0)] * 30 + [("happy", 11.0)] * 10 + [("happy", 24.0)] * 40
    _write_aligned(folder, [f"fer2013-{i:05d}" for i in range(N)], labels, "interocular", interocular, train)
    out = tmp_path / "by.json"

    result = CliRunner().invoke(app, ["compare", str(folder), str(folder), "--arm-a", "aligned", "--arm-b", "raw",
                                      "--by", "interocular", "--bins", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    small_bin, large_bin, unmeasured = json.loads(out.read_text())["slices"]["bins"]
    assert small_bin["name"].startswith("interocular <") and unmeasured["name"] == "no interocular"
    assert small_bin["report"]["faces"] + large_bin["report"]["faces"] == N - 40 == int((~np.isnan(interocular)).sum())
    assert small_bin["report"]["difference"]["accuracy"]["mean"] == pytest.approx(1.0)
    assert large_bin["report"]["difference"]["accuracy"]["mean"] == pytest.approx(0.0)
    assert unmeasured["report"]["faces"] == 40 and unmeasured["train_rows"] == 0
    assert small_bin["train_rows"] == 40 and small_bin["train_share"]["angry"] == pytest.approx(0.75)
    assert large_bin["train_share"]["happy"] == pytest.approx(1.0)
    assert "train share" in result.output
    # the lean each model has in a bin: raw, wrong on every small face, answers each one the next class
    small = ~large & ~np.isnan(interocular)
    for k, c in enumerate(CLASSES_7):
        assert small_bin["report"]["answered"]["a"][c] == pytest.approx((labels[small] == k).mean())
        assert small_bin["report"]["answered"]["b"][c] == pytest.approx((labels[small] == (k - 1) % 7).mean())
    assert "B answers" in result.output


def test_by_eye_angle_bins_tilt_by_its_magnitude(tmp_path):
    """A face tilted 20° either way lands in the same bin, apart from the upright faces."""
    labels = np.zeros(4, np.int64)
    ids = [f"fer2013-{i:05d}" for i in range(4)]
    _write_aligned(tmp_path, ids, labels, "eye_angle", np.array([-20.0, 20.0, 1.0, -1.0]), [])
    upright, tilted = slices(tmp_path, "eye_angle", 2, ids, CLASSES_7)
    assert upright.faces == {ids[2], ids[3]} and tilted.faces == {ids[0], ids[1]}


@pytest.mark.parametrize("args, message", [
    (["--by", "brightness"], "not an alignment field"),
    (["--by", "interocular", "--bins", "1"], "2 bins or more"),
])
def test_by_refuses_an_unknown_field_or_a_single_bin(tmp_path, args, message):
    labels = _labels()
    path = _write(Layout(tmp_path / "a").predictions, labels, np.ones(N, bool))
    _write_aligned(tmp_path / "a", [f"fer2013-{i:05d}" for i in range(N)], labels, "interocular",
                   np.full(N, 17.0), [])
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "a"), str(path), *args])
    assert result.exit_code == 2 and message in " ".join(result.output.split())
