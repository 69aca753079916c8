"""The train and evaluate stages on small generated datasets (real Keras, baseline model)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from sklearn.metrics import balanced_accuracy_score, classification_report, confusion_matrix

from ferdata.evaluate import EvaluateParams, run_evaluate
from ferdata.evaluate_report import per_class_table
from ferdata.scores import class_scores, source_scores
from ferdata.test_time import TestTimeViews, predict
from ferdata.manifest import pixels_to_array, write_table
from ferdata.model import build_model, embed
from ferdata.taxonomy import CLASSES_7
from ferdata.params import ParamsError
from ferdata.train import (TrainParams, cosine_rate, kept_row, labelled_images, load_model, make_loss,
                           read_class_weights, run_train, split_rows)
from helpers import class_pattern, synthetic_dataset

import keras  # noqa: E402  (after ferdata.model has chosen the TensorFlow backend)

# Unequal classes, so a class-order mix-up anywhere cannot hide behind symmetry.
TRAIN_COUNTS = [40, 18, 30, 50, 35, 25, 45]
FAST = dict(model="baseline", epochs=6, batch_size=32, optimizer="sgd", learning_rate=0.01, schedule="plateau",
            plateau_patience=2, early_stopping_patience=3)
MISLABELLED = 14  # test rows (of 84) given another class's label, so the confusion matrix has errors


def _balanced_manifest(train: pa.Table) -> pa.Table:
    """The train rows with the balance stage's extra fields (real rows: no parent, no transform)."""
    n = train.num_rows
    return (train.append_column("method", pa.array(["class_weights"] * n))
            .append_column("seed", pa.array([0] * n, pa.int64()))
            .append_column("parent_id", pa.nulls(n, pa.string()))
            .append_column("transform", pa.nulls(n, pa.string())))


def _relabel(table: pa.Table, split: str, n: int) -> pa.Table:
    """Move ``n`` rows of ``split`` (every 6th) to the next class, label and index together."""
    rows = [i for i, s in enumerate(table["split"].to_pylist()) if s == split][::6][:n]
    index = table["label_index"].to_pylist()
    for i in rows:
        index[i] = (index[i] + 1) % len(CLASSES_7)
    labels = [CLASSES_7[k] for k in index]
    table = table.set_column(table.schema.get_field_index("label_index"), "label_index",
                             pa.array(index, pa.int16()))
    return table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels))


def write_inputs(root: Path, train_counts: list[int], eval_count: int, seed: int = 0,
                 mislabelled: int = 0) -> tuple[Path, Path]:
    """processed/dataset and processed/balanced under ``root`` from generated faces."""
    table = synthetic_dataset({"train": train_counts, "val": [eval_count] * 7, "test": [eval_count] * 7}, seed)
    table = _relabel(table, "test", mislabelled)
    dataset, balanced = root / "dataset", root / "balanced"
    write_table(table, dataset / "manifest.parquet")
    write_table(_balanced_manifest(table.filter(pc.equal(table["split"], "train"))), balanced / "manifest.parquet")
    counts = np.asarray(train_counts, dtype=float)
    weights = counts.sum() / (len(counts) * counts)
    (balanced / "class_weights.json").write_text(json.dumps(
        {"by_index": {str(k): w for k, w in enumerate(weights)},
         "by_name": {c: w for c, w in zip(CLASSES_7, weights)}}))
    # no flip: the generated classes are bars at angles a mirror image would swap
    (balanced / "augment.json").write_text(json.dumps(
        {"flip": False, "rotation_deg": 4.0, "zoom": 0.05, "shift": 0.04}))
    return dataset, balanced


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short training run and its evaluation, shared by the tests below."""
    root = tmp_path_factory.mktemp("train")
    dataset, balanced = write_inputs(root, TRAIN_COUNTS, 12, mislabelled=MISLABELLED)
    params = TrainParams(**FAST, class_weights=True, augment=True)
    result = run_train(params, balanced, dataset, root / "models", root / "metrics")
    evaluation = run_evaluate(EvaluateParams(splits=["val", "test"], tta_flip=False, tta_shift=0),
                              root / "models", dataset,
                              root / "metrics", root / "plots", root / "predictions.parquet")
    return root, result, evaluation


def test_every_class_is_learned_in_the_canonical_order(trained):
    root, result, evaluation = trained
    assert json.loads((root / "models" / "classes.json").read_text())["classes"] == list(CLASSES_7)
    assert evaluation.classes == CLASSES_7
    recall = evaluation.metrics["val"]["recall"]
    assert all(recall[c] > 0.5 for c in CLASSES_7), recall  # chance is 1/7
    # Fresh faces drawn for canonical class k must come out as model output k.
    rng = np.random.default_rng(123)
    images = np.stack([class_pattern(k, rng) for k in range(7) for _ in range(6)])
    net, _ = load_model(root / "models")
    predicted = net.predict(images[..., None].astype(np.float32), verbose=0).argmax(axis=1)
    truth = np.repeat(np.arange(7), 6)
    per_class = [(predicted[truth == k] == k).mean() for k in range(7)]
    assert min(per_class) > 0.5, per_class


def test_train_outputs_history_and_sizes(trained):
    root, result, _ = trained
    report = json.loads((root / "metrics" / "train.json").read_text())
    history = report["history"]
    assert len(history) == result.epochs_run >= 1
    assert [row["epoch"] for row in history] == list(range(1, len(history) + 1))
    assert set(history[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert report["recipe"] == TrainParams(**FAST, class_weights=True, augment=True).recipe()
    assert history[0]["lr"] == FAST["learning_rate"]
    assert report["parameters"] == build_model("baseline", 7).count_params()
    assert report["model_bytes"] == (root / "models" / "model.keras").stat().st_size
    assert report["train_images"] == sum(TRAIN_COUNTS) and report["images_per_second"] > 0
    assert result.kept_val_accuracy == max(row["val_accuracy"] for row in history)


def test_evaluation_agrees_with_scikit_learn(trained):
    root, _, evaluation = trained
    predictions = pq.read_table(root / "predictions.parquet")
    saved = json.loads((root / "metrics" / "eval.json").read_text())
    for split in ("val", "test"):
        rows = predictions.filter(pc.equal(predictions["split"], split))
        y_true, y_pred = rows["label_index"].to_numpy(), rows["predicted"].to_numpy()
        report = classification_report(y_true, y_pred, labels=range(7), target_names=CLASSES_7,
                                       output_dict=True, zero_division=0)
        ours = saved[split]
        assert ours == evaluation.metrics[split]
        assert ours["accuracy"] == pytest.approx(report["accuracy"])
        assert ours["macro_recall"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
        assert ours["macro_f1"] == pytest.approx(report["macro avg"]["f1-score"])
        for c in CLASSES_7:
            assert ours["recall"][c] == pytest.approx(report[c]["recall"])
            assert ours["precision"][c] == pytest.approx(report[c]["precision"])
            assert ours["f1"][c] == pytest.approx(report[c]["f1-score"])
            assert ours["support"][c] == report[c]["support"]
        assert ours["confusion"]["counts"] == confusion_matrix(y_true, y_pred, labels=range(7)).tolist()
        np.testing.assert_allclose(ours["confusion"]["normalized"],
                                   confusion_matrix(y_true, y_pred, labels=range(7), normalize="true"), atol=1e-6)
        # per source: the counts add back up to the split's
        by_source = ours["by_source"]
        assert set(by_source) == {"fer2013", "ckplus", "jaffe"}
        assert sum(s["count"] for s in by_source.values()) == ours["count"] == rows.num_rows
        for c in CLASSES_7:
            assert sum(s["support"].get(c, 0) for s in by_source.values()) == ours["support"][c]
        correct = sum(s["accuracy"] * s["count"] for s in by_source.values())
        assert correct == pytest.approx(ours["accuracy"] * ours["count"])
    # the relabelled test rows show up as errors
    assert saved["test"]["accuracy"] <= 1 - (MISLABELLED - 2) / (12 * 7)
    csv_lines = (root / "plots" / "confusion_test.csv").read_text().splitlines()
    assert csv_lines[0] == "actual,predicted" and len(csv_lines) == 12 * 7 + 1
    assert (root / "plots" / "confusion_test.png").stat().st_size > 0
    assert (root / "plots" / "recall_test.png").stat().st_size > 0


def test_class_scores_match_scikit_learn_with_absent_classes():
    rng = np.random.default_rng(5)
    y_true = rng.choice([0, 1, 2, 3, 5], size=300)  # class 4 and 6 never occur
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.choice([0, 1, 2, 4, 5], size=300))  # 3, 6 never predicted
    ours = class_scores(y_true, y_pred, CLASSES_7)
    report = classification_report(y_true, y_pred, labels=range(7), target_names=CLASSES_7,
                                    output_dict=True, zero_division=0)
    for c in CLASSES_7:
        for key, theirs in (("recall", "recall"), ("precision", "precision"), ("f1", "f1-score")):
            assert ours[key][c] == pytest.approx(report[c][theirs])
    assert ours["macro_precision"] == pytest.approx(report["macro avg"]["precision"])
    assert ours["macro_recall"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert ours["confusion"]["counts"] == confusion_matrix(y_true, y_pred, labels=range(7)).tolist()


def test_the_per_class_table_has_a_recall_column_per_source_only_when_sources_differ():
    rng = np.random.default_rng(6)
    y_true, y_pred = rng.integers(0, 7, 200), rng.integers(0, 7, 200)

    def columns(sources: list[str]) -> list[str]:
        split_metrics = class_scores(y_true, y_pred, CLASSES_7)
        split_metrics["by_source"] = source_scores(y_true, y_pred, sources, CLASSES_7, ["fer2013", "ckplus"])
        return [str(col.header) for col in per_class_table(split_metrics, CLASSES_7, "test").columns]

    assert columns(["fer2013"] * 150 + ["ckplus"] * 50)[-2:] == ["recall fer2013", "recall ckplus"]
    assert columns(["fer2013"] * 200) == ["class", "support", "recall", "precision", "F1"]


def test_saved_model_reloads_with_the_same_predictions(trained):
    root, _, _ = trained
    predictions = pq.read_table(root / "predictions.parquet")
    dataset = pq.read_table(root / "dataset" / "manifest.parquet")
    order = {sid: i for i, sid in enumerate(dataset["sample_id"].to_pylist())}
    images = pixels_to_array(dataset["pixels"])[[order[s] for s in predictions["sample_id"].to_pylist()]]
    net = keras.saving.load_model(root / "models" / "model.keras")
    probabilities = net.predict(images[..., None].astype(np.float32), verbose=0)
    saved = np.asarray(predictions["probabilities"].to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(probabilities, saved, atol=1e-5)
    assert (probabilities.argmax(axis=1) == predictions["predicted"].to_numpy()).all()
    # the logits are the pre-softmax layer: their softmax is the output
    logits = np.asarray(predictions["logits"].to_pylist())
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(axis=1, keepdims=True), saved, atol=1e-5)
    features = embed(net, images[:10])
    assert features.shape == (10, 128) and features.dtype == np.float32


def test_test_time_views_are_the_face_its_mirror_and_four_shifts_of_each():
    face = np.zeros((1, 48, 48, 1), np.float32)
    face[0, 20, 30] = 255
    face[0, 0, :] = 100  # the top row: what a face moved down repeats above it
    views = list(TestTimeViews(flip=True, shift=3).of(face))
    spots = [tuple(np.argwhere(view[0, ..., 0] == 255)[0]) for view in views]
    assert spots == [(20, 30), (23, 30), (17, 30), (20, 33), (20, 27),  # the face, moved down, up, right, left
                     (20, 17), (23, 17), (17, 17), (20, 20), (20, 14)]  # its mirror image, the same
    assert (views[1][0, :4, :, 0] == 100).all() and (views[1][0, 4:, 0, 0] == 0).all()
    assert len(list(TestTimeViews().of(face))) == 1


def test_prediction_averages_the_logits_of_the_test_time_views(trained):
    root, _, _ = trained
    net, _ = load_model(root / "models")
    images = pixels_to_array(pq.read_table(root / "dataset" / "manifest.parquet")["pixels"])[:40, ..., None]
    views = TestTimeViews(flip=True, shift=2)
    logits, probabilities = predict(net, images, views)
    one_by_one = [predict(net, view)[0] for view in views.of(images.astype(np.float32))]
    np.testing.assert_allclose(logits, np.mean(one_by_one, axis=0), atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert (probabilities.argmax(axis=1) == logits.argmax(axis=1)).all()
    with pytest.raises(ParamsError, match=r"evaluate\]\.tta_shift: pixels from 0 to 12, not 30"):
        EvaluateParams(tta_shift=30)
    # batches of 16: two full and a short last one give the answers of one batch of 40
    np.testing.assert_allclose(predict(net, images, views, batch_size=16)[0], logits, atol=1e-5)
    no_faces = predict(net, images[:0], views)
    assert no_faces[0].shape == no_faces[1].shape == (0, len(CLASSES_7))


def test_test_time_shifts_beyond_the_training_shift_are_warned(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ferdata.cli import app
    from ferdata.test_time import shift_beyond_training

    assert shift_beyond_training(TestTimeViews(flip=True, shift=3), trained_shift=4.8) is None
    assert "3 px, beyond the training's online shift (0.0 px)" in shift_beyond_training(TestTimeViews(True, 3), 0.0)
    monkeypatch.chdir(tmp_path)
    outputs = {}
    for name, params in {"default": "", "no shift": "balance: {augment: {shift: 0.0}}\n",
                         "no augmentation": "train: {augment: false}\n"}.items():
        (tmp_path / "params.yaml").write_text("evaluate: {tta_shift: 3}\n" + params)
        outputs[name] = CliRunner().invoke(app, ["evaluate"]).output
    assert outputs["default"].startswith("error: models/model.keras: not found")  # 3 px within 10% of 48
    for name in ("no shift", "no augmentation"):
        assert outputs[name].startswith("warning: evaluate.tta_shift moves faces 3 px"), outputs[name]
        assert "error: models/model.keras: not found" in outputs[name]  # the stage still runs


def test_predicting_after_training_in_one_process_logs_no_tensorflow_error(tmp_path):
    script = (
        "import numpy as np\n"
        "from ferdata.oof_cnn import CnnClassifier\n"
        "rng = np.random.default_rng(0)\n"
        "faces, labels = rng.integers(0, 256, (64, 48, 48), dtype=np.uint8), np.arange(64) % 7\n"
        "model = CnnClassifier(epochs=1, batch_size=32, seed=0).fit(faces, labels)\n"
        "print(model.predict_proba(faces[:50]).shape)\n"  # 50 faces: a short last batch
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("(50, 7)")
    assert [line for line in run.stderr.splitlines() if line.startswith("E0000")] == []


def test_tta_views_benchmark_scores_each_shift_against_the_flip(trained, tmp_path):
    root, _, _ = trained
    (tmp_path / "processed").mkdir()
    (tmp_path / "models").symlink_to(root / "models")
    (tmp_path / "processed" / "dataset").symlink_to(root / "dataset")
    script = Path(__file__).parent.parent / "benchmarks" / "tta_views.py"
    output = subprocess.run([sys.executable, str(script), str(tmp_path), "--shifts", "1", "--resamples", "50"],
                            capture_output=True, text=True, check=True).stdout
    rows = [line.split("│")[1:-1] for line in output.splitlines() if line.startswith("│")]
    assert [(r[0].strip(), r[2].strip()) for r in rows] == [
        ("val", "flip only"), ("val", "flip + 1-px shifts"), ("test", "flip only"), ("test", "flip + 1-px shifts")]
    net, _ = load_model(root / "models")
    dataset = pq.read_table(root / "dataset" / "manifest.parquet")
    val = dataset.filter(pc.equal(dataset["split"], "val"))
    labels = val["label_index"].to_numpy()
    for views, row in ((TestTimeViews(flip=True), rows[0]), (TestTimeViews(flip=True, shift=1), rows[1])):
        predicted = predict(net, pixels_to_array(val["pixels"]), views)[1].argmax(axis=1)
        assert row[3].strip() == f"{np.mean(predicted == labels):.2%}"


def test_same_seed_gives_identical_model_file(tmp_path):
    dataset, balanced = write_inputs(tmp_path, [8] * 7, 3)
    params = TrainParams(**{**FAST, "epochs": 2}, augment=True)
    for run in ("a", "b"):
        run_train(params, balanced, dataset, tmp_path / run / "models", tmp_path / run / "metrics")
    assert (tmp_path / "a/models/model.keras").read_bytes() == (tmp_path / "b/models/model.keras").read_bytes()
    history = [json.loads((tmp_path / run / "metrics/train.json").read_text())["history"] for run in "ab"]
    assert history[0] == history[1]


def test_scoring_val_less_often_leaves_the_weights_as_they_are(tmp_path):
    dataset, balanced = write_inputs(tmp_path, [8] * 7, 3)
    cosine = {**FAST, "epochs": 3, "early_stopping_patience": 0, "schedule": "cosine"}
    for run, every in (("each", 1), ("second", 2)):
        run_train(TrainParams(**cosine, validate_every=every, augment=True), balanced, dataset,
                  tmp_path / run / "models", tmp_path / run / "metrics")
    each, second = (json.loads((tmp_path / run / "metrics/train.json").read_text())["history"]
                    for run in ("each", "second"))
    assert (tmp_path / "each/models/model.keras").read_bytes() == (tmp_path / "second/models/model.keras").read_bytes()
    assert [row["val_accuracy"] is not None for row in second] == [False, True, True]  # the 2nd and the last
    assert [row for row in each if row["epoch"] > 1] == second[1:]
    assert [row["loss"] for row in each] == [row["loss"] for row in second]


def test_val_is_scored_every_epoch_when_it_steers_the_run():
    assert TrainParams(epochs=12, validate_every=5, schedule="cosine").validation_epochs == [5, 10, 12]
    assert TrainParams(epochs=4, validate_every=5, schedule="cosine").validation_epochs == [4]
    assert TrainParams(epochs=4, validate_every=5, schedule="plateau").validation_epochs == [1, 2, 3, 4]
    assert TrainParams(epochs=4, validate_every=5, schedule="cosine",
                       early_stopping_patience=2).validation_epochs == [1, 2, 3, 4]
    with pytest.raises(ParamsError, match=r"train\]\.validate_every: at least 1, not 0"):
        TrainParams(validate_every=0)


def test_label_index_disagreeing_with_the_class_order_is_refused(tmp_path):
    dataset, balanced = write_inputs(tmp_path, [4] * 7, 2)
    table = pq.read_table(balanced / "manifest.parquet")
    alphabetical = sorted(CLASSES_7)  # the order a directory listing would give
    table = table.set_column(table.schema.get_field_index("label_index"), "label_index",
                             pa.array([alphabetical.index(c) for c in table["label"].to_pylist()], pa.int16()))
    write_table(table, balanced / "manifest.parquet")
    with pytest.raises(ValueError, match=r"balanced/manifest\.parquet.*disagree"):
        run_train(TrainParams(**FAST), balanced, dataset, tmp_path / "models", tmp_path / "metrics")
    assert not (tmp_path / "models").exists()


def test_missing_augmentation_parameters_name_the_file(tmp_path):
    dataset, balanced = write_inputs(tmp_path, [4] * 7, 2)
    (balanced / "augment.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"balanced/augment\.json"):
        run_train(TrainParams(**FAST, augment=True), balanced, dataset, tmp_path / "models", tmp_path / "metrics")


def test_class_weights_are_read_from_the_balance_stage_file(tmp_path):
    from ferdata.balance import class_weights

    path = tmp_path / "class_weights.json"
    counts = {"angry": 10, "disgust": 40, "fear": 20, "happy": 40, "sad": 20, "surprise": 20, "neutral": 0}
    path.write_text(json.dumps(class_weights(counts, CLASSES_7)))
    weights = read_class_weights(path, CLASSES_7)
    assert weights[0] == pytest.approx(4 * weights[1]) and weights[2] == pytest.approx(2 * weights[3])
    assert weights[6] == 1.0  # a class absent from train weighs 1
    path.write_text('{"by_index": {"0": 2.0,\n "3": }}')
    with pytest.raises(ValueError, match=r"class_weights\.json:2: not valid JSON"):
        read_class_weights(path, CLASSES_7)
    path.write_text(json.dumps({"by_index": {"9": 1.0}}))
    with pytest.raises(ValueError, match="label indexes"):
        read_class_weights(path, CLASSES_7)


def test_without_a_terminal_training_prints_a_line_per_epoch(tmp_path, capsys):
    dataset, balanced = write_inputs(tmp_path, [10] * 7, 3)
    run_train(TrainParams(model="baseline", epochs=3, batch_size=32, early_stopping_patience=0), balanced,
              dataset, tmp_path / "models", tmp_path / "metrics")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("train epoch")]
    history = json.loads((tmp_path / "metrics" / "train.json").read_text())["history"]
    assert len(lines) == len(history) == 3
    assert [row["val_accuracy"] is not None for row in history] == [False, False, True]  # val after the last
    for line, row in zip(lines, history):
        figures = "  ".join(f"{key} {row[key]:.3f}" for key in ("loss", "accuracy", "val_loss", "val_accuracy")
                            if row[key] is not None)
        eta = r"  eta \d+ s" if row["epoch"] < 3 else ""
        assert re.fullmatch(rf"train epoch {row['epoch']}/3  {figures}  \d+ s{eta}", line), line


def test_cosine_schedule_decays_the_rate_every_epoch_towards_zero(tmp_path):
    dataset, balanced = write_inputs(tmp_path, [6] * 7, 2)
    params = TrainParams(**{**FAST, "epochs": 4, "early_stopping_patience": 0, "schedule": "cosine"})
    run_train(params, balanced, dataset, tmp_path / "models", tmp_path / "metrics")
    rates = [row["lr"] for row in json.loads((tmp_path / "metrics" / "train.json").read_text())["history"]]
    # 0.01 * (1 + cos(pi * epoch / 4)) / 2: the base rate, then 85%, 50% and 15% of it
    assert rates == pytest.approx([0.01, 0.0085355, 0.005, 0.0014645], rel=1e-4)
    assert cosine_rate(4, 4, 0.01) == 0.0
    with pytest.raises(ParamsError, match=r"train\]\.schedule: one of \('cosine', 'plateau'\), not 'step'"):
        TrainParams(schedule="step")


def test_the_recipe_line_names_what_the_run_does_and_nothing_the_schedule_ignores(trained):
    _, result, _ = trained
    assert result.recipe == ("sgd 0.01, weight decay 0.0001, batch 32, halved after 2 epochs without a lower "
                             "val loss, up to 6 epochs, early stopping after 3 epochs without a higher val "
                             "accuracy, class weights, online augmentation")
    cosine = TrainParams(plateau_patience=5, label_smoothing=0.1, class_weights=False).recipe()
    assert cosine == ("adam 0.001, weight decay 0.0001, batch 128, cosine to 0 over 50 epochs, "
                      "label smoothing 0.1, no class weights, online augmentation")
    assert "constant rate, 6 epochs" in TrainParams(schedule="plateau", plateau_patience=0, epochs=6).recipe()
    console = Console(width=300, record=True)
    console.print(result.summary())
    assert f"recipe: {result.recipe}" in console.export_text()


def test_five_layer_has_about_2_4_million_parameters():
    count = build_model("five_layer", 7).count_params()
    print(f"five_layer parameters: {count:,}")
    assert abs(count - 2_400_000) <= 0.03 * 2_400_000  # within 3% of Kim et al.'s 2.4 M


def test_label_smoothing_trains_towards_softened_targets(tmp_path):
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    labels = np.array([0, 1])
    smoothed = np.asarray(make_loss(TrainParams(label_smoothing=0.3))(labels, probabilities))
    targets = np.full((2, 3), 0.1) + 0.7 * np.eye(3)[labels]  # 1 - 0.3 + 0.3/3 on the label, 0.3/3 elsewhere
    assert smoothed == pytest.approx(-(targets * np.log(probabilities)).sum(axis=1), rel=1e-5)  # one loss per face
    assert make_loss(TrainParams()) == "sparse_categorical_crossentropy"  # 0: Keras's own loss, unchanged

    dataset, balanced = write_inputs(tmp_path, [12] * 7, 3)
    images = pixels_to_array(pq.read_table(balanced / "manifest.parquet")["pixels"])[..., None]
    confidence = {}
    for smoothing in (0.0, 0.4):
        params = TrainParams(**{**FAST, "early_stopping_patience": 0, "label_smoothing": smoothing})
        run_train(params, balanced, dataset, tmp_path / f"models-{smoothing}", tmp_path / f"metrics-{smoothing}")
        net, _ = load_model(tmp_path / f"models-{smoothing}")
        confidence[smoothing] = float(net.predict(images, verbose=0).max(axis=1).mean())
    assert confidence[0.4] < confidence[0.0]  # softened targets: less confident answers on the train faces
    with pytest.raises(ParamsError, match=r"train\]\.label_smoothing: from 0 \(none\) to below 1, not 1.0"):
        TrainParams(label_smoothing=1.0)


def _weighted_fit(start_epoch: int, keras_class_weight: bool) -> list[np.ndarray]:
    """A baseline network's weights after two epochs on fixed generated faces (no shuffle, no
    augmentation), class-weighted from ``start_epoch``: by ferdata's ``fit``, or by Keras's own
    ``class_weight`` given to a second ``fit`` call that starts at that epoch."""
    from ferdata.model import fit_batch_norm_window
    from ferdata.train import fit, make_dataset, make_loss, make_optimizer, seed_everything

    table = synthetic_dataset({"train": TRAIN_COUNTS, "val": [3] * 7}, 0)
    x, y = pixels_to_array(table["pixels"])[..., None], np.asarray(table["label_index"].to_numpy(), np.int32)
    n = sum(TRAIN_COUNTS)  # the train rows come first
    train, val = make_dataset(x[:n], y[:n], 32), make_dataset(x[n:], y[n:], 32)
    weights = {k: 10.0 if k == 1 else 0.5 for k in range(7)}  # far from 1, so a missed switch shows
    params = TrainParams(model="baseline", epochs=2, batch_size=32, optimizer="sgd", learning_rate=0.01,
                         schedule="plateau", plateau_patience=0, class_weights_from=(start_epoch - 1) / 2)
    seed_everything(0, True)
    net = build_model("baseline", 7)
    if not keras_class_weight:
        fit(net, train, val, params, weights)
        return net.get_weights()
    fit_batch_norm_window(net, 2 * int(train.cardinality()))  # as ferdata's fit sets it for two epochs
    net.compile(optimizer=make_optimizer(params), loss=make_loss(params), metrics=["accuracy"])
    if start_epoch > 1:
        net.fit(train, validation_data=val, epochs=start_epoch - 1, shuffle=False, verbose=0)
    net.fit(train, validation_data=val, initial_epoch=start_epoch - 1, epochs=2, class_weight=weights,
            shuffle=False, verbose=0)
    return net.get_weights()


def test_class_weights_start_at_their_epoch_as_keras_class_weight_would():
    networks = {}
    for start_epoch in (1, 2):
        networks[start_epoch] = _weighted_fit(start_epoch, False)
        for ours, theirs in zip(networks[start_epoch], _weighted_fit(start_epoch, True)):
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    # the first epoch weighted or not: two different networks, so a missed switch would show
    assert max(np.abs(a - b).max() for a, b in zip(networks[1], networks[2])) > 1e-3


def test_class_weights_from_a_share_of_the_epochs_is_checked_and_stated_in_the_recipe():
    assert TrainParams(epochs=60, class_weights_from=2 / 3).recipe().endswith(
        "class weights from epoch 41, online augmentation")
    assert TrainParams(epochs=30, class_weights_from=2 / 3).class_weights_start == 21
    assert TrainParams(epochs=1, class_weights_from=2 / 3).class_weights_start == 1  # the last epoch at the latest
    assert TrainParams(epochs=60).recipe().endswith(", class weights, online augmentation")
    assert TrainParams(class_weights=False, class_weights_from=0.5).recipe().endswith(
        "no class weights, online augmentation")
    for share in (-0.1, 1, True):
        with pytest.raises(ParamsError, match=rf"class_weights_from: a share of the epochs from 0 to below 1, "
                                              rf"not {share}"):
            TrainParams(class_weights_from=share)


def test_early_stopping_keeps_a_weighted_epoch_when_the_class_weights_are_deferred(tmp_path):
    history = [{"epoch": e, "val_accuracy": a} for e, a in enumerate([0.9, 0.5, 0.6, 0.7], start=1)]
    deferred = TrainParams(epochs=4, early_stopping_patience=2, class_weights_from=0.5)
    assert deferred.watched_from == 3 and kept_row(history, deferred)["epoch"] == 4
    assert kept_row(history, TrainParams(epochs=4, early_stopping_patience=2))["epoch"] == 1
    unweighted = TrainParams(epochs=4, early_stopping_patience=2, class_weights=False, class_weights_from=0.5)
    assert kept_row(history, unweighted)["epoch"] == 1
    # the run: Keras's early stopping restores the epoch kept_row reports, a weighted one
    dataset, balanced = write_inputs(tmp_path, [6] * 7, 2)
    params = TrainParams(**{**FAST, "epochs": 4, "early_stopping_patience": 1, "class_weights_from": 0.5})
    result = run_train(params, balanced, dataset, tmp_path / "models", tmp_path / "metrics")
    assert result.kept_epoch >= 3
    net, _ = load_model(tmp_path / "models")
    report = json.loads((tmp_path / "metrics" / "train.json").read_text())
    path = dataset / "manifest.parquet"
    images, labels = labelled_images(split_rows(pq.read_table(path), "val"), CLASSES_7, path)
    accuracy = float(np.mean(net.predict_on_batch(images.astype("float32")).argmax(axis=1) == labels))
    assert accuracy == pytest.approx(report["history"][result.kept_epoch - 1]["val_accuracy"], abs=1e-6)
