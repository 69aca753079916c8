"""Label-issue ranking on generated data with wrong labels planted (by ``ferdata sample``, or
flipped here), measured against the planted truth and against FER+ votes."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ferdata.issue_precision import planted_precision, precision_at_ranks, precision_table, read_planted
from ferdata.label_issues import (LabelIssuesParams, choose_flagged, excluded_ids, label_issues_table,
                                  run_label_issues)
from ferdata.manifest import DATASET_SCHEMA, array_to_pixels
from ferdata.params import ParamsError
from ferdata.sample import write_sample
from ferdata.sources.fer2013 import read_csv
from ferdata.taxonomy import CLASSES_7
from helpers import synthetic_dataset

FLIP_RATE = 0.10


def flip_labels(labels: np.ndarray, candidates: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``FLIP_RATE`` of the candidate rows moved to another class at random; returns (labels, rows)."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(candidates, int(round(FLIP_RATE * len(candidates))), replace=False))
    noisy = labels.copy()
    noisy[rows] = (labels[rows] + rng.integers(1, len(CLASSES_7), len(rows))) % len(CLASSES_7)
    return noisy, rows


def dataset_table(ids: list[str], labels: np.ndarray, splits: list[str], images: np.ndarray) -> pa.Table:
    """A dataset manifest (DATASET_SCHEMA) of FER2013 samples."""
    no_pixels = DATASET_SCHEMA.remove(DATASET_SCHEMA.get_field_index("pixels"))
    table = pa.Table.from_pylist([
        dict(sample_id=sid, source="fer2013", label=CLASSES_7[k], label_index=int(k), native_label=str(k),
             split=split, source_file="fer2013.csv", width=48, height=48, content_hash=f"{i:040x}",
             align_status="passthrough", origin="real")
        for i, (sid, k, split) in enumerate(zip(ids, labels, splits))], schema=no_pixels)
    return table.add_column(DATASET_SCHEMA.get_field_index("pixels"), DATASET_SCHEMA.field("pixels"),
                            array_to_pixels(images))


def ranked(out_dir) -> pa.Table:
    return pq.read_table(out_dir / "label_issues.parquet")


def precision_recall(out_dir, flipped_ids: set[str]) -> tuple[float, float, set[str]]:
    issues = ranked(out_dir)
    flagged = set(issues.filter(issues["is_label_issue"])["sample_id"].to_pylist())
    hits = len(flagged & flipped_ids)
    return hits / max(len(flagged), 1), hits / len(flipped_ids), flagged


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Drawn FER2013-style faces (ferdata.sample: posed, lit and covered as real crops are,
    with 6% of the train labels planted wrong) read back by the FER2013 reader, with the
    sample's FER+ votes and truth."""
    root = tmp_path_factory.mktemp("faces")
    write_sample(root / "raw", fer2013_rows=1200, ckplus_subjects=1, jaffe_subjects=1, rafdb_images=0,
                 affectnet_rows=0, folder_images=0, seed=3)
    batch = read_csv(root / "raw" / "fer2013" / "fer2013.csv", lambda n: None)
    ids, splits = [r.sample_id for r in batch.records], [r.split for r in batch.records]
    labels = np.array([int(r.native_label) for r in batch.records])
    (root / "dataset").mkdir()
    pq.write_table(dataset_table(ids, labels, splits, batch.pixels), root / "dataset" / "manifest.parquet")
    truth = json.loads((root / "raw" / "sample_truth.json").read_text())
    train = {sid for sid, split in zip(ids, splits) if split == "train"}
    return root, set(truth["label_errors"]) & train, len(train)


def run_on_faces(root, params, out_dir, **paths):
    return run_label_issues(params, root / "dataset", out_dir, ferplus_csv=root / "raw" / "ferplus" / "fer2013new.csv",
                            truth_json=root / "raw" / "sample_truth.json", **paths)


def test_hog_ranking_finds_planted_wrong_labels_and_measures_itself(faces, tmp_path, capsys):
    root, planted, n_train = faces
    base = len(planted) / n_train
    params = LabelIssuesParams(features="hog", folds=5, budget=0.2)
    result = run_on_faces(root, params, tmp_path / "issues", metrics_path=tmp_path / "metrics" / "label_issues.json")
    precision, recall, flagged = precision_recall(tmp_path / "issues", planted)
    with capsys.disabled():
        print(f"\nlabel issues, HOG + logistic regression, {n_train} drawn faces, {len(planted)} planted wrong "
              f"({base:.1%}): flagged {len(flagged)}, precision {precision:.3f}, recall {recall:.3f}; precision "
              f"top 5% {result.planted['at_rank']['top_5%']['precision']:.3f}")
    assert precision >= 2 * base and recall >= 0.3
    assert result.flagged == len(flagged) == min(round(0.2 * n_train), result.estimated_issues)

    # the report's table against the planted truth is the one computed here from the ranking
    report = json.loads((tmp_path / "issues" / "label_issues.json").read_text())
    found = report["planted"]
    assert found == result.planted and found["faces"] == n_train and found["wrong"] == len(planted)
    assert found["base_rate"] == pytest.approx(base, abs=1e-6)
    assert found["at_rank"]["budget"]["precision"] == pytest.approx(precision, abs=1e-6)
    assert found["recall_at_budget"] == pytest.approx(recall, abs=1e-6)
    top = ranked(tmp_path / "issues")["sample_id"].to_pylist()[:round(0.05 * n_train)]
    assert found["at_rank"]["top_5%"]["wrong"] == len(set(top) & planted)
    # FER+ votes follow the faces, so they disagree with the planted labels above their base rate
    fp = report["ferplus"]
    assert fp["faces"] <= n_train and fp["at_rank"]["budget"]["precision"] > fp["base_rate"]
    metrics = json.loads((tmp_path / "metrics" / "label_issues.json").read_text())
    assert metrics["planted"]["top_5%"]["precision"] == found["at_rank"]["top_5%"]["precision"]
    assert metrics["ferplus"]["base_rate"] == fp["base_rate"] and metrics["flagged"] == len(flagged)
    assert "planted wrong" in str([c.header for c in precision_table(found, result.budget).columns])


def test_cnn_ranking_puts_planted_wrong_labels_first(faces, tmp_path, capsys):
    root, planted, n_train = faces
    base = len(planted) / n_train
    params = LabelIssuesParams(features="cnn", folds=3, epochs=8, batch_size=32, budget=0.05)
    result = run_on_faces(root, params, tmp_path / "issues")
    precision, recall, flagged = precision_recall(tmp_path / "issues", planted)
    top = result.planted["at_rank"]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("label issues fold")]
    assert len(lines) == 3 * 8  # a line per fold and epoch: no terminal under pytest
    assert lines[0].startswith("label issues fold 1/3 epoch 1/8  loss ") and " eta " in lines[0]
    assert lines[-1].startswith("label issues fold 3/3 epoch 8/8  loss ") and " eta " not in lines[-1]
    with capsys.disabled():
        print(f"\nlabel issues, CNN, {n_train} drawn faces, {len(planted)} planted wrong ({base:.1%}): out-of-fold "
              f"accuracy {result.oof_accuracy:.3f}; precision top 5% {top['top_5%']['precision']:.3f}, "
              f"top 10% {top['top_10%']['precision']:.3f}; flagged {len(flagged)} (budget 5%), "
              f"{recall:.1%} of the planted; FER+ top 5% {result.ferplus['at_rank']['top_5%']['precision']:.3f} "
              f"(base {result.ferplus['base_rate']:.3f})")
    assert len(flagged) <= round(0.05 * n_train)
    assert top["top_5%"]["precision"] >= 3 * base
    assert top["top_10%"]["precision"] >= 2.5 * base
    assert precision == pytest.approx(top["budget"]["precision"], abs=1e-6)


def test_planted_precision_counts_only_faces_the_truth_covers(tmp_path):
    # 40 faces in rank order: the truth covers the first 30; it planted 4 wrong labels, one since corrected
    truth = {"faces": {f"fer2013-{i:06d}": None for i in range(30)},
             "label_errors": {f"fer2013-{i:06d}": {"label": "sad", "expression": "neutral"} for i in (0, 2, 3, 20)}}
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    issues = pa.table({"sample_id": [f"fer2013-{i:06d}" for i in range(40)],
                       "label": ["neutral" if i == 3 else "sad" for i in range(40)],
                       "is_label_issue": [i < 5 for i in range(40)]})
    found = planted_precision(issues, read_planted(tmp_path / "truth.json"))
    assert found["faces"] == 30 and found["wrong"] == 3 and found["base_rate"] == pytest.approx(0.1)
    assert found["at_rank"]["budget"] == {"faces": 5, "wrong": 2, "precision": 0.4, "lift": pytest.approx(4.0)}
    assert found["at_rank"]["top_10%"] == {"faces": 3, "wrong": 2, "precision": pytest.approx(2 / 3, abs=1e-6),
                                           "lift": pytest.approx(20 / 3, abs=1e-3)}
    assert found["recall_at_budget"] == pytest.approx(2 / 3, abs=1e-6)
    (tmp_path / "clean.json").write_text(json.dumps({"faces": truth["faces"], "label_errors": {}}))
    assert read_planted(tmp_path / "clean.json") is None
    (tmp_path / "other.json").write_text(json.dumps({**truth, "faces": {"affectnet-1": None}}))
    assert planted_precision(issues, read_planted(tmp_path / "other.json")) is None  # covers none of them
    (tmp_path / "bad.json").write_text('{"faces": [')
    with pytest.raises(ValueError, match=r"bad\.json: not a generated sample's truth file"):
        read_planted(tmp_path / "bad.json")


def test_every_sample_ranked_top_flagged_within_budget_deterministic_excludable(tmp_path):
    table = synthetic_dataset({"train": [60, 12, 60, 90, 70, 50, 70], "val": [5] * 7}, seed=4)
    labels = np.array(table["label_index"].to_pylist())
    train = np.flatnonzero(np.array(table["split"].to_pylist()) == "train")
    noisy, rows = flip_labels(labels, train, seed=1)
    table = table.set_column(2, DATASET_SCHEMA.field("label"), pa.array([CLASSES_7[k] for k in noisy]))
    table = table.set_column(3, DATASET_SCHEMA.field("label_index"), pa.array(noisy, pa.int16()))
    (tmp_path / "dataset").mkdir()
    pq.write_table(table, tmp_path / "dataset" / "manifest.parquet")
    ids = table["sample_id"].to_pylist()

    params = LabelIssuesParams(features="pca", pca_components=30, c=0.03, folds=4, seed=7, budget=0.2)
    run_label_issues(params, tmp_path / "dataset", tmp_path / "a")
    params.exclude_from_train = True
    result = run_label_issues(params, tmp_path / "dataset", tmp_path / "b")
    precision, recall, flagged = precision_recall(tmp_path / "b", {ids[i] for i in rows})
    print(f"label issues, PCA, synthetic patterns: precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= 3 * FLIP_RATE and recall >= 0.5

    a, b = ranked(tmp_path / "a"), ranked(tmp_path / "b")
    assert a.equals(b)  # same inputs and seed, same output
    assert a.num_rows == len(train) and set(a["sample_id"].to_pylist()) == {ids[i] for i in train}
    k = len(flagged)
    assert a["rank"].to_pylist() == list(range(1, len(train) + 1))  # every sample ranked
    assert a["is_label_issue"].to_pylist() == [True] * k + [False] * (len(train) - k)
    quality = a["label_quality"].to_pylist()
    assert quality == sorted(quality)  # most doubtful first
    assert a.column("ferplus_majority").null_count == a.num_rows and not any(a["ferplus_voted"].to_pylist())

    report = json.loads((tmp_path / "b" / "label_issues.json").read_text())
    assert sum(c["flagged"] for c in report["classes"].values()) == report["flagged"] == k
    assert sum(c["samples"] for c in report["classes"].values()) == len(train)
    assert report["ferplus"] is None
    assert excluded_ids(tmp_path / "b") == flagged and result.excluded == k
    assert excluded_ids(tmp_path / "a") == set()
    with pytest.raises(FileNotFoundError, match="run the label-issues stage first"):
        excluded_ids(tmp_path / "never")
    assert "budget 20%" in label_issues_table(result).title

    # a count budget smaller than the estimate flags exactly that many: the same top of the ranking
    params = LabelIssuesParams(features="pca", pca_components=30, c=0.03, folds=4, seed=7, budget=5)
    small = run_label_issues(params, tmp_path / "dataset", tmp_path / "c")
    c = ranked(tmp_path / "c")
    assert small.flagged == 5 and c["is_label_issue"].to_pylist() == [True] * 5 + [False] * (c.num_rows - 5)
    assert c["sample_id"].to_pylist()[:5] == a["sample_id"].to_pylist()[:5]

    # a class cap: no class has more than 10% of its faces flagged; the ranking is unchanged
    params = LabelIssuesParams(features="pca", pca_components=30, c=0.03, folds=4, seed=7, budget=0.2,
                               max_class_share=0.1)
    capped = run_label_issues(params, tmp_path / "dataset", tmp_path / "d")
    d = ranked(tmp_path / "d")
    assert d.drop(["is_label_issue"]).equals(a.drop(["is_label_issue"]))
    assert any(c["flagged"] > 0.1 * c["samples"] for c in report["classes"].values())  # uncapped, some class is over
    assert all(c["flagged"] <= 0.1 * c["samples"] for c in capped.classes.values())
    assert capped.flagged == k and "at most 10% of a class" in label_issues_table(capped).title
    first_passed_over = d["is_label_issue"].to_pylist().index(False)
    assert any(d["is_label_issue"].to_pylist()[first_passed_over:])  # later faces took its place


def test_class_cap_passes_over_a_full_class_for_the_next_face():
    # rank order: five class-1 faces lead; class 1 has 10 faces, so a 20% cap leaves room for 2
    ranked = np.array([1, 1, 1, 1, 1, 0, 2, 1, 0, 2] + [0] * 10 + [1] * 5 + [2] * 10)
    flags = choose_flagged(ranked, 4, 0.2)
    assert np.flatnonzero(flags).tolist() == [0, 1, 5, 6]
    assert np.flatnonzero(choose_flagged(ranked, 4, None)).tolist() == [0, 1, 2, 3]  # no cap: the top four
    everything = choose_flagged(ranked, len(ranked), 0.2)  # a budget larger than the caps allow
    assert everything.sum() == 2 + 2 + 2 and [int(ranked[everything].tolist().count(k)) for k in range(3)] == [2, 2, 2]
    assert not choose_flagged(ranked, 0, 0.5).any()


def test_precision_at_ranks_counts_faces_ferplus_voted_on_in_rank_order():
    # 200 faces in rank order; FER+ voted on all but every 10th; it disagrees with the first 30
    labels = ["sad"] * 200
    majority = ["neutral"] * 30 + ["sad"] * 160 + [None] * 10
    voted = [i % 10 != 9 for i in range(200)]
    issues = pa.table({"label": labels, "ferplus_majority": majority, "ferplus_voted": voted,
                       "is_label_issue": [i < 20 for i in range(200)]})
    found = precision_at_ranks(issues)
    assert found["faces"] == 180 and found["with_majority"] == 180 - 9
    assert found["disagree"] == 27  # 30 minus the three not voted on
    assert found["base_rate"] == pytest.approx(27 / 180, abs=1e-6)
    top1 = found["at_rank"]["top_1%"]  # 1% of 180 faces: the first 2 voted on
    assert top1 == {"faces": 2, "disagree": 2, "precision": 1.0, "lift": pytest.approx(180 / 27, abs=1e-3)}
    assert found["at_rank"]["top_10%"]["faces"] == 18 and found["at_rank"]["top_10%"]["precision"] == 1.0
    assert found["at_rank"]["budget"] == {"faces": 18, "disagree": 18, "precision": 1.0,
                                          "lift": pytest.approx(180 / 27, abs=1e-3)}
    assert found["recall_at_budget"] == pytest.approx(18 / 27, abs=1e-6)
    assert precision_at_ranks(issues.set_column(2, "ferplus_voted", pa.array([False] * 200))) is None
    rows = precision_table({"reference": "test", **found}, "budget 10%").row_count
    assert rows == 5  # top 1%, 5%, 10%, the budget, the base rate


def test_soft_labels_serve_as_the_ferplus_reference(tmp_path):
    table = synthetic_dataset({"train": [20] * 7}, seed=5)
    shares = [[0.0] * 7 for _ in range(table.num_rows)]
    for i, k in enumerate(table["label_index"].to_pylist()):
        shares[i][k if i % 2 else (k + 1) % 7] = 1.0  # every other sample: FER+ says the next class
    sources = table["source"].to_pylist()
    soft = pa.array([s if src == "fer2013" else None for s, src in zip(shares, sources)], pa.list_(pa.float32()))
    (tmp_path / "dataset").mkdir()
    column = table.schema.get_field_index("soft_label")
    table = table.set_column(column, table.schema.field(column), soft)
    pq.write_table(table, tmp_path / "dataset" / "manifest.parquet")
    result = run_label_issues(LabelIssuesParams(features="pca", pca_components=20, folds=3),
                              tmp_path / "dataset", tmp_path / "out")
    fer = [i for i, src in enumerate(sources) if src == "fer2013"]
    assert result.ferplus["faces"] == len(fer)
    assert result.ferplus["base_rate"] == pytest.approx(sum(1 for i in fer if i % 2 == 0) / len(fer), abs=1e-6)


@pytest.mark.parametrize("change, message", [
    ({"features": "resnet"}, r"\.features: 'resnet'; expected one of cnn, hog, pca"),
    ({"folds": 1}, r"\.folds: 1; expected at least 2"),
    ({"epochs": 0}, r"\.epochs: 0"),
    ({"ranking": "entropy"}, r"\.ranking: 'entropy'; expected one of normalized_margin, self_confidence"),
    ({"budget": 0.0}, r"\.budget: 0\.0; expected a share of train"),
    ({"budget": 1.5}, r"\.budget: 1\.5"),
    ({"budget": 0}, r"\.budget: 0;"),
    ({"budget": True}, r"\.budget: True"),
    ({"budget": "5%"}, r"\.budget: '5%'"),
    ({"max_class_share": 0.0}, r"\.max_class_share: 0\.0; expected a share of a class"),
    ({"max_class_share": 1.5}, r"\.max_class_share: 1\.5"),
    ({"max_class_share": "10%"}, r"\.max_class_share: '10%'"),
])
def test_bad_params_stop_the_stage_before_any_work(tmp_path, change, message):
    params = LabelIssuesParams(**change)
    with pytest.raises(ParamsError, match=r"\[label_issues\]" + message):
        run_label_issues(params, tmp_path / "no-dataset", tmp_path / "out")  # the params fail first
    assert not (tmp_path / "out").exists()
