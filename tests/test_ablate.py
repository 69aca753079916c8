"""`ferdata ablate` on a small generated build: every arm, each trained with the same recipe
(the baseline model, two epochs) and scored on the same FER2013 PrivateTest faces."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from ferdata.ablate import AblateParams
from ferdata.ablation_report import ablation_figure
from ferdata.ablation_runs import PACKAGE, training_code
from ferdata.arms import ARMS, ArmSources
from ferdata.balance import BalanceParams
from ferdata.cli import app
from ferdata.ferplus import fer2013_row, majority_labels, read_ferplus
from ferdata.label_issues import flagged_ids
from ferdata.layout import Layout
from ferdata.params import ParamsError
from ferdata.sample import write_sample
from ferdata.taxonomy import CLASSES_7

MAIN_PARAMS = Path(__file__).parent.parent / "params.yaml"
FLIP_EVERY = 6  # every 6th FER2013 Training row gets another class's label, so label issues flags faces


def _fast_params(path: Path) -> None:
    """The main params.yaml with a recipe small data trains in seconds."""
    params = yaml.safe_load(MAIN_PARAMS.read_text())
    params["ingest"]["sources"] = ["fer2013", "jaffe"]
    params["train"].update(model="baseline", batch_size=32)
    params["balance"]["method"] = "smote"  # so that the build arms train on faces balancing made
    params["label_issues"].update(features="hog", budget=0.1)
    params["ablate"].update(epochs=2, resamples=500)
    path.write_text(yaml.safe_dump(params))


def _plant(csv: Path) -> None:
    """In fer2013.csv: give every FLIP_EVERY-th Training row the next class's label, copy
    the first PrivateTest face, with its label, over the second (a copy within test, which the
    build keeps once), and a Training face over the third (a copy the raw arm trains on)."""
    lines = csv.read_text().splitlines()
    training = [i for i, line in enumerate(lines) if line.endswith(",Training")]
    for i in training[::FLIP_EVERY]:
        emotion, rest = lines[i].split(",", 1)
        lines[i] = f"{(int(emotion) + 1) % 7},{rest}"
    first, second, third = [i for i, line in enumerate(lines) if line.endswith(",PrivateTest")][:3]
    lines[second] = f"{lines[first].rsplit(',', 1)[0]},PrivateTest"
    lines[third] = f"{lines[training[1]].rsplit(',', 1)[0]},PrivateTest"
    csv.write_text("\n".join(lines) + "\n")


def _move_ferplus_votes(csv: Path, rows: int = 5) -> None:
    """In fer2013new.csv: shift the first ``rows`` PrivateTest rows' emotion votes one column
    on (neutral's to happiness, ...), so that FER+ disagrees with their FER2013 labels."""
    lines = csv.read_text().splitlines()
    private = [i for i, line in enumerate(lines) if line.startswith("PrivateTest,")][:rows]
    for i in private:
        fields = lines[i].split(",")
        emotions = fields[2:10]  # neutral .. contempt
        fields[2:10] = emotions[-1:] + emotions[:-1]
        lines[i] = ",".join(fields)
    csv.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def ablated(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate")
    write_sample(root / "raw", fer2013_rows=300, ckplus_subjects=1, jaffe_subjects=3, rafdb_images=0,
                 affectnet_rows=0, folder_images=0, seed=3)
    _plant(root / "raw" / "fer2013" / "fer2013.csv")
    _move_ferplus_votes(root / "raw" / "ferplus" / "fer2013new.csv")
    _fast_params(root / "params.yaml")
    runner, common = CliRunner(), ["--params", str(root / "params.yaml"), "--root", str(root)]
    for command in (["build"], ["label-issues"], ["ablate"]):
        result = runner.invoke(app, command + common)
        assert result.exit_code == 0, result.output
        if command == ["label-issues"]:  # the ranked file's path whole, to copy from a log
            ranked = root / "processed" / "label_issues" / "label_issues.parquet"
            assert f"every training sample, ranked: {ranked}\n" in result.output
    report = json.loads((root / "metrics" / "ablation.json").read_text())
    return root, report, result.output


def _ingested_ids(root: Path, split: str = "test") -> set[str]:
    interim = pq.read_table(root / "processed" / "interim" / "manifest.parquet")
    rows = interim.filter(pc.and_(pc.equal(interim["source"], "fer2013"), pc.equal(interim["split"], split)))
    return set(rows["sample_id"].to_pylist())


def _predictions(root: Path, split: str = "test"):
    """The ablation's answers on one split's faces, as a DataFrame."""
    predictions = pq.read_table(root / "processed" / "ablation" / "predictions.parquet").to_pandas()
    return predictions[predictions.split == split]


def test_every_arm_is_scored_on_every_ingested_privatetest_face(ablated):
    root, report, _ = ablated
    expected = _ingested_ids(root)
    dataset = pq.read_table(root / "processed" / "dataset" / "manifest.parquet")
    kept_test = set(dataset.filter(pc.equal(dataset["split"], "test"))["sample_id"].to_pylist())
    dropped = pq.read_table(root / "processed" / "dataset" / "dropped.parquet").to_pylist()
    reasons = {r["sample_id"]: r["reason"] for r in dropped}
    # the build keeps one of the two planted test copies, and drops a test face whose train
    # copy's label was flipped; the ablation scores them all
    assert sorted(reasons[i] for i in expected - kept_test) == ["duplicate", "label_conflict"]
    predictions = _predictions(root)
    assert list(report["arms"]) == list(ARMS)
    for arm, rows in predictions.groupby("arm"):
        assert set(rows.sample_id) == expected and len(rows) == len(expected), arm
    assert report["test"]["faces"] == len(expected)


def test_reported_scores_are_those_of_the_predictions(ablated):
    root, report, output = ablated
    predictions = _predictions(root)
    for arm, rows in predictions.groupby("arm"):
        entry = report["arms"][arm]
        assert entry["accuracy"] == pytest.approx(rows.correct.mean(), abs=1e-6)
        recall = rows.groupby("label_index").correct.mean()
        assert entry["macro_recall"] == pytest.approx(recall.mean(), abs=1e-6)
        for k, value in recall.items():
            assert entry["recall"][CLASSES_7[k]] == pytest.approx(value, abs=1e-6)
        assert (rows.correct == (rows.predicted == rows.label_index)).all()
        difference = entry["difference_from_raw"]
        if arm == "raw":
            assert difference is None
            continue
        raw = report["arms"]["raw"]
        gain = entry["macro_recall"] - raw["macro_recall"]
        assert difference["macro_recall"]["mean"] == pytest.approx(gain, abs=1e-5)
        for key in ("accuracy", "macro_recall"):
            assert difference[key]["low"] <= difference[key]["mean"] <= difference[key]["high"]
        assert f"│ {arm} " in output
    printed = " ".join(output.split())
    train_faces = ", ".join(f"{arm} {entry['train_faces']:,}" for arm, entry in report["arms"].items())
    assert f"train faces: {train_faces}; test faces answered:" in printed
    assert (root / "processed" / "ablation" / "ablation.png").stat().st_size > 10_000


def test_scores_without_the_test_faces_copied_in_train_are_reported(ablated):
    root, report, output = ablated
    groups = json.loads((root / "processed" / "dataset" / "dedup.json").read_text())["groups"]
    copied = {m["sample_id"] for g in groups if any(m["split"] == "train" for m in g["members"])
              for m in g["members"] if m["split"] == "test"}
    assert copied and report["test"]["copied_in_train"] == len(copied)  # the planted Training face at least
    predictions = _predictions(root)
    unseen = predictions[~predictions.sample_id.isin(copied)]
    for arm, rows in unseen.groupby("arm"):
        entry = report["arms"][arm]["without_train_copies"]
        assert entry["faces"] == len(rows) == report["test"]["faces"] - len(copied)
        assert entry["accuracy"] == pytest.approx(rows.correct.mean(), abs=1e-6)
        assert entry["macro_recall"] == pytest.approx(rows.groupby("label_index").correct.mean().mean(), abs=1e-6)
        assert (entry["difference_from_raw"] is None) == (arm == "raw")
    assert "test faces without a copy among the training rows" in output


def test_the_figure_plots_each_splits_differences_on_all_faces_and_without_the_train_copies(ablated):
    _, report, _ = ablated
    figure = ablation_figure(report)
    assert [ax.get_title() for ax in figure.axes] == ["FER2013 PrivateTest faces", "FER2013 PublicTest (val) faces"]
    for ax, split in zip(figure.axes, ("test", "val")):
        faces = report[split]
        arms = {name: arm if split == "test" else arm["val"] for name, arm in report["arms"].items() if name != "raw"}
        series = [(f"all {faces['faces']:,}", [arm for arm in arms.values()])]
        if faces["copied_in_train"]:
            series.append((f"{faces['faces'] - faces['copied_in_train']:,} without a copy in train",
                           [arm["without_train_copies"] for arm in arms.values()]))
        assert [text.get_text() for text in ax.get_legend().get_texts()] == [label for label, _ in series]
        plotted = sorted(text.get_text() for text in ax.texts)
        assert plotted == sorted(f"{entry['difference_from_raw']['macro_recall']['mean'] * 100:+.1f}"
                                 for _, entries in series for entry in entries)


def test_with_ferplus_votes_every_arm_is_also_scored_against_the_ferplus_majority(ablated):
    root, report, output = ablated
    votes = read_ferplus(root / "raw" / "ferplus" / "fer2013new.csv")
    majority = majority_labels(votes)
    predictions = _predictions(root)
    predictions["ferplus"] = [majority[fer2013_row(i)] for i in predictions.sample_id]
    voted = predictions[predictions.ferplus.isin(CLASSES_7)].copy()
    voted["ferplus_index"] = [CLASSES_7.index(c) for c in voted.ferplus]
    voted["right"] = voted.predicted == voted.ferplus_index
    raw_rows = voted[voted.arm == "raw"]
    assert 0 < len(raw_rows) <= report["test"]["faces"] and report["test"]["ferplus_majority"] == len(raw_rows)
    assert (raw_rows.ferplus_index != raw_rows.label_index).any()  # FER+ moves some test labels
    for arm, rows in voted.groupby("arm"):
        entry = report["arms"][arm]["against_ferplus"]
        assert entry["faces"] == len(rows)
        assert entry["accuracy"] == pytest.approx(rows.right.mean(), abs=1e-6)
        assert entry["macro_recall"] == pytest.approx(rows.groupby("ferplus_index").right.mean().mean(), abs=1e-6)
        assert (entry["difference_from_raw"] is None) == (arm == "raw")
    assert "test faces with a FER+ majority" in output


def test_every_arm_is_also_scored_on_every_ingested_publictest_face(ablated):
    """The val faces arms are chosen on: FER2013's PublicTest as ingested, by the test faces'
    rule (a face the align stage dropped counts as wrong), with raw as the reference."""
    root, report, output = ablated
    expected = _ingested_ids(root, "val")
    aligned = pq.read_table(root / "processed" / "aligned" / "aligned.parquet").to_pandas()
    aligned_val = set(aligned[(aligned.source == "fer2013") & (aligned.split == "val")].sample_id)
    assert report["val"]["faces"] == len(expected) and report["val"]["split"] == "val"
    predictions = _predictions(root, "val")
    for arm, rows in predictions.groupby("arm"):
        entry = report["arms"][arm]["val"]
        assert set(rows.sample_id) == expected and len(rows) == len(expected), arm
        answered = rows.predicted.notna()
        assert entry["faces_answered"] == answered.sum()
        assert set(rows.sample_id[answered]) == (expected if arm == "raw" else expected & aligned_val)
        assert not rows.correct[~answered].any()
        assert entry["accuracy"] == pytest.approx(rows.correct.mean(), abs=1e-6)
        assert entry["macro_recall"] == pytest.approx(rows.groupby("label_index").correct.mean().mean(), abs=1e-6)
        assert (entry["difference_from_raw"] is None) == (arm == "raw")
        if arm != "raw":
            gain = entry["macro_recall"] - report["arms"]["raw"]["val"]["macro_recall"]
            assert entry["difference_from_raw"]["macro_recall"]["mean"] == pytest.approx(gain, abs=1e-5)
    assert "ablate, val:" in output and "FER2013 PublicTest (val) faces" in output


def test_compare_pairs_two_arms_on_val_as_the_ablation_does(ablated):
    root, report, _ = ablated
    out = root / "compare-val.json"
    result = CliRunner().invoke(app, ["compare", str(root), str(root), "--arm-a", "aligned", "--arm-b", "raw",
                                      "--split", "val", "--resamples", "500",
                                      "--seed", str(report["params"]["seed"]), "--json", str(out)])
    assert result.exit_code == 0, result.output
    compared = json.loads(out.read_text())
    expected = report["arms"]["aligned"]["val"]["difference_from_raw"]
    assert compared["faces"] == report["val"]["faces"]
    for key in ("accuracy", "macro_recall"):
        for bound in ("mean", "low", "high"):
            assert compared["difference"][key][bound] == pytest.approx(expected[key][bound], abs=1e-9), (key, bound)


@pytest.fixture(scope="module")
def sources(ablated):
    root = ablated[0]
    return root, ArmSources(Layout(root), CLASSES_7, BalanceParams(method="smote"))


def test_the_raw_arm_uses_the_pixels_as_ingested_and_the_others_aligned_ones(sources):
    root, arms = sources
    interim = pq.read_table(root / "processed" / "interim" / "manifest.parquet").to_pandas().set_index("sample_id")
    ingested = np.load(root / "processed" / "interim" / "pixels" / "fer2013.npy")
    raw, aligned = arms.arm("raw"), arms.arm("aligned")
    assert raw.train.ids == aligned.train.ids
    assert np.array_equal(raw.train.images, ingested[interim.loc[raw.train.ids, "pixels_row"].to_numpy(int)])
    assert np.array_equal(raw.test_images, ingested[interim.loc[arms.test.ids, "pixels_row"].to_numpy(int)])
    table = pq.read_table(root / "processed" / "aligned" / "aligned.parquet").to_pandas().set_index("sample_id")
    assert np.array_equal(aligned.train.images, np.stack(
        [np.frombuffer(b, np.uint8).reshape(48, 48) for b in table.loc[aligned.train.ids, "pixels"]]))
    changed = np.abs(raw.train.images.astype(int) - aligned.train.images).mean(axis=(1, 2)) > 2
    assert changed.mean() > 0.9  # alignment moved nearly every face


def test_each_arm_adds_its_step(sources):
    root, arms = sources
    truth = json.loads((root / "raw" / "sample_truth.json").read_text())["defects"]
    aligned, dedup = arms.arm("aligned"), arms.arm("aligned+dedup")
    build, clean = arms.arm("build"), arms.arm("build+clean")
    train_copies = {pair[0] for pair in truth["exact_duplicates"] + truth["near_duplicates"]}
    assert train_copies <= set(aligned.train.ids) and not train_copies & set(dedup.train.ids)
    assert set(dedup.train.ids) < set(aligned.train.ids)
    assert {i.split("-")[0] for i in build.train.ids} >= {"fer2013", "jaffe", "smote"}
    assert build.train.made > 0  # the balance method (smote) made faces
    flagged = flagged_ids(root / "processed" / "label_issues")
    assert flagged, "the flipped labels are flagged"
    real = [len(arm.train) - arm.train.made for arm in (build, clean)]
    assert real[1] == real[0] - len(flagged) and not flagged & set(clean.train.ids)
    for arm in (aligned, dedup, build, clean):
        assert arm.test_present.all() and np.array_equal(arm.test_images, aligned.test_images)


def test_a_test_face_the_align_stage_dropped_counts_as_wrong(sources):
    arms = ArmSources(Layout(sources[0]), CLASSES_7, BalanceParams())
    dropped = arms.test.ids[0]
    arms.aligned = arms.aligned.filter(pc.not_equal(arms.aligned["sample_id"], dropped))
    arm = arms.arm("aligned")
    assert not arm.test_present[0] and arm.test_present[1:].all()
    assert len(arm.test_present) == len(arms.test.ids)


def test_a_missing_input_stops_the_ablation_before_any_training(sources, tmp_path):
    root = sources[0]
    layout = Layout(tmp_path, processed_dir=tmp_path / "processed")
    for name in ("interim", "aligned", "dataset"):
        (tmp_path / "processed" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "processed" / name).symlink_to(root / "processed" / name)
    arms = ArmSources(layout, CLASSES_7, BalanceParams())
    arms.check(["raw", "build"])
    with pytest.raises(FileNotFoundError, match="label_issues.parquet: not found; run the label-issues stage"):
        arms.check(["raw", "build+clean"])


def test_arms_must_include_raw_and_be_known(ablated):
    root = ablated[0]
    for arms, message in (("aligned,build", "raw"), ("raw,cleaned", "distinct arms")):
        result = CliRunner().invoke(app, ["ablate", "--params", str(root / "params.yaml"), "--root", str(root),
                                          "--arms", arms])
        assert result.exit_code == 2 and message in result.output


def test_compare_pairs_two_arms_as_the_ablation_does(ablated):
    """`ferdata compare --arm-a build --arm-b raw` on the pipeline folder gives ablation.json's
    scores and difference from raw, interval included; an unknown arm or seed is refused."""
    root, report, _ = ablated
    out = root / "compare.json"
    runner, folders = CliRunner(), [str(root), str(root)]
    result = runner.invoke(app, ["compare", *folders, "--arm-a", "build", "--arm-b", "raw@42", "--resamples", "500",
                                 "--seed", str(report["params"]["seed"]), "--json", str(out)])
    assert result.exit_code == 0, result.output
    compared = json.loads(out.read_text())
    assert compared["faces"] == report["test"]["faces"] and compared["classes"] == report["classes"]
    for side, arm in (("a", "build"), ("b", "raw")):
        assert compared["scores"][side]["accuracy"] == pytest.approx(report["arms"][arm]["accuracy"], abs=1e-6)
        assert compared["scores"][side]["macro_recall"] == pytest.approx(report["arms"][arm]["macro_recall"], abs=1e-6)
    expected = report["arms"]["build"]["difference_from_raw"]
    for key in ("accuracy", "macro_recall"):
        for bound in ("mean", "low", "high"):
            assert compared["difference"][key][bound] == pytest.approx(expected[key][bound], abs=1e-9), (key, bound)
    unknown_arm = runner.invoke(app, ["compare", *folders, "--arm-a", "nope", "--arm-b", "raw"])
    assert unknown_arm.exit_code == 2 and "no arm 'nope'" in unknown_arm.output
    unknown_seed = runner.invoke(app, ["compare", *folders, "--arm-a", "build@7", "--arm-b", "raw"])
    assert unknown_seed.exit_code == 2 and "has no seed '7'" in unknown_seed.output
    assert runner.invoke(app, ["compare", *folders, "--arm-a", "build", "--split", "train"]).exit_code == 2


def _copy_of(ablated, tmp_path: Path) -> Path:
    """A copy of the ablated folder, its kept runs included, for a test to change."""
    root = tmp_path / "copy"
    shutil.copytree(ablated[0], root, symlinks=True)
    return root


def _ablate_again(root: Path, *options: str) -> tuple[dict, str]:
    """`ferdata ablate` in ``root``: its ablation.json and its output."""
    result = CliRunner().invoke(app, ["ablate", "--params", str(root / "params.yaml"), "--root", str(root), *options])
    assert result.exit_code == 0, result.output
    return json.loads((root / "metrics" / "ablation.json").read_text()), result.output


def test_a_second_ablation_reuses_every_kept_run_and_reports_the_same(ablated, tmp_path):
    _, first, _ = ablated
    assert first["runs"]["trained"] == len(ARMS) and first["runs"]["reused"] == 0
    root = _copy_of(ablated, tmp_path)
    again, output = _ablate_again(root)
    assert again["runs"]["trained"] == 0 and again["runs"]["reused"] == len(ARMS)
    assert "0 trained, 5 reused" in output
    assert "ablate run 5 of 5: build+clean seed 42" in output  # where a long run is, in a log
    for name, arm in again["arms"].items():
        kept = first["arms"][name]
        assert arm["repeats"][0]["reused"] and arm["repeats"][0]["run"] == kept["repeats"][0]["run"]
        for key in ("accuracy", "macro_recall", "recall", "difference_from_raw", "train_faces"):
            assert arm[key] == kept[key], (name, key)
    assert len(list((root / "processed" / "ablation_runs").glob("*.json"))) == len(ARMS)


def test_the_report_scores_the_kept_runs_answers(ablated, tmp_path):
    """A kept run's answers are what the next ablation scores: here every face answered 'happy'."""
    root = _copy_of(ablated, tmp_path)
    key = ablated[1]["arms"]["raw"]["repeats"][0]["run"]
    kept_path = root / "processed" / "ablation_runs" / f"{key}.json"
    kept = json.loads(kept_path.read_text())
    happy = CLASSES_7.index("happy")
    kept["predicted"] = [happy] * len(kept["predicted"])
    kept["val_predicted"] = [happy] * len(kept["val_predicted"])
    kept_path.write_text(json.dumps(kept))
    report, _ = _ablate_again(root, "--arms", "raw,aligned")
    raw = report["arms"]["raw"]
    assert raw["repeats"][0]["reused"]
    for scores, faces in ((raw, report["test"]), (raw["val"], report["val"])):
        assert scores["recall"]["happy"] == 1.0 and scores["recall"]["sad"] == 0.0
        assert scores["accuracy"] == pytest.approx(faces["support"]["happy"] / faces["faces"], abs=1e-6)


def test_another_recipe_or_retrain_trains_again(ablated, tmp_path):
    root = _copy_of(ablated, tmp_path)
    shorter, _ = _ablate_again(root, "--arms", "raw,aligned", "--epochs", "1")
    assert shorter["runs"]["trained"] == 2 and shorter["runs"]["reused"] == 0
    assert shorter["arms"]["raw"]["repeats"][0]["epochs_run"] == 1
    assert len(list((root / "processed" / "ablation_runs").glob("*.json"))) == len(ARMS) + 2  # both recipes kept
    retrained, _ = _ablate_again(root, "--arms", "raw,aligned", "--retrain")
    assert retrained["runs"]["trained"] == 2 and retrained["runs"]["reused"] == 0
    for name, arm in retrained["arms"].items():  # the first recipe's keys, and (deterministic) its answers
        first = ablated[1]["arms"][name]
        assert arm["repeats"][0]["run"] == first["repeats"][0]["run"]
        assert arm["accuracy"] == first["accuracy"] and arm["recall"] == first["recall"]


def test_an_unusable_kept_run_is_named_and_trained_again(ablated, tmp_path):
    root = _copy_of(ablated, tmp_path)
    key = ablated[1]["arms"]["aligned"]["repeats"][0]["run"]
    kept_path = root / "processed" / "ablation_runs" / f"{key}.json"
    kept_path.write_text('{"arm": "aligned", "predicted": [1, 2')
    raw_path = root / "processed" / "ablation_runs" / f"{ablated[1]['arms']['raw']['repeats'][0]['run']}.json"
    without_val = json.loads(raw_path.read_text())
    del without_val["val_predicted"]  # as a run kept before the val faces were scored
    raw_path.write_text(json.dumps(without_val))
    report, output = _ablate_again(root, "--arms", "raw,aligned")
    assert report["runs"]["trained"] == 2 and report["runs"]["reused"] == 0
    assert not report["arms"]["aligned"]["repeats"][0]["reused"]
    assert f"kept run not used: {kept_path}: not readable JSON" in output.replace("\n", "")
    assert f"kept run not used: {raw_path}: missing ['val_predicted']" in output.replace("\n", "")
    assert len(report["runs"]["unusable"]) == 2
    assert len(json.loads(kept_path.read_text())["predicted"]) == report["test"]["faces"]  # kept anew
    assert len(json.loads(raw_path.read_text())["val_predicted"]) == report["val"]["faces"]


def test_seeds_trained_in_another_folder_with_seed_are_reused_by_repeats(ablated, tmp_path):
    """`--seed 43` seeds training only (build's SMOTE set stays the params' seed's), so its
    runs, copied into the folder holding seed 42's, make `--repeats 2` train nothing."""
    elsewhere = shutil.copytree(ablated[0], tmp_path / "elsewhere", symlinks=True,
                                ignore=shutil.ignore_patterns("ablation_runs"))
    second, _ = _ablate_again(elsewhere, "--arms", "raw,build", "--seed", "43")
    assert second["params"]["seeds"] == [43] and second["runs"]["trained"] == 2
    assert second["arms"]["build"]["train_faces"] == ablated[1]["arms"]["build"]["train_faces"]
    root = _copy_of(ablated, tmp_path)
    for kept in (elsewhere / "processed" / "ablation_runs").glob("*.json"):
        shutil.copy(kept, root / "processed" / "ablation_runs")
    pooled, output = _ablate_again(root, "--arms", "raw,build", "--repeats", "2")
    assert pooled["runs"]["trained"] == 0 and pooled["runs"]["reused"] == 4
    for name in ("raw", "build"):
        first, other = pooled["arms"][name]["repeats"]
        assert (first["seed"], other["seed"]) == (42, 43)
        assert first["run"] == ablated[1]["arms"][name]["repeats"][0]["run"]
        assert other["run"] == second["arms"][name]["repeats"][0]["run"]
        assert other["accuracy"] == second["arms"][name]["accuracy"]


def test_editing_the_report_keeps_the_runs_and_editing_training_does_not(tmp_path):
    """A kept run's key covers the code that trains and predicts, not the ablation's or the
    evaluate stage's reports."""
    package = tmp_path / "ferdata"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    before = training_code(package)

    def edited(module: str) -> bytes:
        path = package / f"{module}.py"
        source = path.read_text()
        path.write_text(source + "# edited\n")
        code = training_code.__wrapped__(package)
        path.write_text(source)
        return code

    for module in ("ablate", "ablation_report", "evaluate", "evaluate_report", "scores"):
        assert edited(module) == before, module
    for module in ("arm_training", "train", "model", "test_time"):
        assert edited(module) != before, module


def test_retrain_must_be_true_or_false():
    with pytest.raises(ParamsError, match=r"ablate\]\.retrain: true or false"):
        AblateParams(retrain="yes")


def test_arms_that_train_on_the_same_faces_share_one_run(tmp_path):
    """FER2013 alone, balance none: `build` trains on exactly the faces `aligned+dedup` does,
    so the ablation trains that run once and scores it for both arms."""
    write_sample(tmp_path / "raw", fer2013_rows=200, ckplus_subjects=1, jaffe_subjects=1, rafdb_images=0,
                 affectnet_rows=0, folder_images=0, seed=5)
    params = yaml.safe_load(MAIN_PARAMS.read_text())
    params["ingest"]["sources"] = ["fer2013"]
    params["balance"]["method"] = "none"
    params["train"].update(model="baseline", batch_size=32)
    params["ablate"].update(epochs=1, resamples=200)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    build = CliRunner().invoke(app, ["build", "--params", str(tmp_path / "params.yaml"), "--root", str(tmp_path)])
    assert build.exit_code == 0, build.output
    report, _ = _ablate_again(tmp_path, "--arms", "raw,aligned+dedup,build")
    assert report["runs"]["trained"] == 2 and report["runs"]["reused"] == 1
    shared, build_arm = report["arms"]["aligned+dedup"], report["arms"]["build"]
    assert build_arm["repeats"][0]["reused"] and build_arm["repeats"][0]["run"] == shared["repeats"][0]["run"]
    assert build_arm["recall"] == shared["recall"] and build_arm["train_faces"] == shared["train_faces"]


def test_compare_without_train_copies_scores_as_the_ablation_does(ablated, tmp_path):
    """`ferdata compare --without-train-copies` on two arms gives ablation.json's
    without_train_copies scores and interval; it needs PrivateTest and pipeline folders."""
    root, report, _ = ablated
    out, runner = tmp_path / "compare.json", CliRunner()
    result = runner.invoke(app, ["compare", str(root), str(root), "--arm-a", "build", "--arm-b", "raw",
                                 "--without-train-copies", "--resamples", "500", "--seed", str(report["params"]["seed"]),
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    compared = json.loads(out.read_text())
    copies = report["test"]["copied_in_train"]
    assert compared["train_copies_left_out"] == copies > 0 and not any(compared["left_out"].values())
    expected = report["arms"]["build"]["without_train_copies"]
    assert compared["faces"] == expected["faces"] == report["test"]["faces"] - copies
    for side, arm in (("a", "build"), ("b", "raw")):
        scores = report["arms"][arm]["without_train_copies"]
        assert compared["scores"][side]["accuracy"] == pytest.approx(scores["accuracy"], abs=1e-6)
        assert compared["scores"][side]["macro_recall"] == pytest.approx(scores["macro_recall"], abs=1e-6)
    for key in ("accuracy", "macro_recall"):
        for bound in ("mean", "low", "high"):
            assert compared["difference"][key][bound] == pytest.approx(expected["difference_from_raw"][key][bound],
                                                                       abs=1e-9), (key, bound)
    on_a_split = runner.invoke(app, ["compare", str(root), str(root), "--without-train-copies"])
    assert on_a_split.exit_code == 2 and "--without-train-copies" in on_a_split.output
    a_file = runner.invoke(app, ["compare", str(root / "processed" / "ablation" / "predictions.parquet"), str(root),
                                 "--arm-a", "build", "--arm-b", "raw", "--without-train-copies"])
    assert a_file.exit_code == 2 and "no dedup.json" in a_file.output
