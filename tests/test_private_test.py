"""`ferdata evaluate` also scores every FER2013 PrivateTest row as published, the faces the
build left out of its test split among them, so its figure compares with other work's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from sklearn.metrics import balanced_accuracy_score
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.evaluate import EvaluateParams
from ferdata.test_time import predict
from ferdata.manifest import pixels_to_array
from ferdata.sample import write_sample
from ferdata.train import load_model

PARAMS = Path(__file__).parent.parent / "params.yaml"
runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def _plant_test_conflict(csv: Path) -> list[str]:
    """Give one PrivateTest row another's pixels under a different label: the split stage
    drops both copies from the test split. Their ids."""
    lines = csv.read_text().splitlines()
    private = [i for i, line in enumerate(lines) if line.endswith(",PrivateTest")]
    first = private[0]
    other = next(i for i in private[1:] if lines[i].split(",")[0] != lines[first].split(",")[0])
    lines[other] = f"{lines[other].split(',')[0]},{lines[first].split(',')[1]},PrivateTest"
    csv.write_text("\n".join(lines) + "\n")
    return [f"fer2013-{first - 1:06d}", f"fer2013-{other - 1:06d}"]


def test_every_private_test_row_is_scored_with_the_ones_the_build_left_out(tmp_path):
    write_sample(tmp_path / "raw", fer2013_rows=60, ckplus_subjects=1, jaffe_subjects=1, rafdb_images=0,
                 affectnet_rows=0, folder_images=0, seed=5)
    planted = _plant_test_conflict(tmp_path / "raw" / "fer2013" / "fer2013.csv")
    params = yaml.safe_load(PARAMS.read_text())
    params["train"]["epochs"] = 1
    quick = tmp_path / "params.yaml"
    quick.write_text(yaml.safe_dump(params))
    root = ["--params", str(quick), "--root", str(tmp_path)]
    _ok(["build", "--sources", "fer2013", *root])
    for stage in ("balance", "train"):
        _ok([stage, *root])
    output = " ".join(_ok(["evaluate", *root]).split())  # rich wraps long lines

    processed = tmp_path / "processed"
    interim = pq.read_table(processed / "interim" / "manifest.parquet")
    published = interim.filter(pc.and_(pc.equal(interim["source"], "fer2013"), pc.equal(interim["split"], "test")))
    dataset = pq.read_table(processed / "dataset" / "manifest.parquet")
    kept = set(dataset.filter(pc.equal(dataset["split"], "test"))["sample_id"].to_pylist())
    ids = published["sample_id"].to_pylist()
    left_out = [sid for sid in ids if sid not in kept]
    assert set(planted) <= set(left_out)

    scores = json.loads((tmp_path / "metrics" / "eval.json").read_text())["fer2013_private_test"]
    assert (scores["faces"], scores["outside_test_split"]) == (len(ids), len(left_out))
    assert f"({len(ids)} faces, {len(left_out)} of them left out of the test split" in output

    # The kept faces' answers are predictions.parquet's; the left-out ones are answered from
    # their aligned pixels, with the same model and test-time flip.
    predictions = pq.read_table(processed / "predictions.parquet").to_pylist()
    predicted = {row["sample_id"]: row["predicted"] for row in predictions if row["split"] == "test"}
    aligned = pq.read_table(processed / "aligned" / "aligned.parquet")
    aligned = aligned.filter(pc.is_in(aligned["sample_id"], pc.cast(left_out, aligned["sample_id"].type)))
    net, _ = load_model(tmp_path / "models")
    _, probabilities = predict(net, pixels_to_array(aligned["pixels"]), EvaluateParams(**params["evaluate"]).views)
    predicted.update(zip(aligned["sample_id"].to_pylist(), probabilities.argmax(axis=1).tolist()))
    assert scores["answered"] == len(predicted) == len(ids)

    truth = np.array(published["label_index"].to_pylist())
    guesses = np.array([predicted[sid] for sid in ids])
    assert scores["accuracy"] == np.mean(guesses == truth)
    assert abs(scores["macro_recall"] - balanced_accuracy_score(truth, guesses)) < 1e-9

    # Each face's answer is kept, so that `ferdata compare --private-test` can pair two runs.
    answers = pq.read_table(processed / "fer2013_private_test.parquet")
    assert answers["sample_id"].to_pylist() == ids
    assert answers["predicted"].to_pylist() == guesses.tolist()
    assert answers["correct"].to_pylist() == (guesses == truth).tolist()
    same = runner.invoke(app, ["compare", str(tmp_path), str(tmp_path), "--private-test"])
    assert same.exit_code == 0, same.output
    assert f"compare: {len(ids)} FER2013 PrivateTest (as published) faces" in " ".join(same.output.split())
