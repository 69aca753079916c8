"""Label-issue detection on generated data with labels flipped on purpose."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ferdata.ferplus import COLUMNS, EMOTION_CLASSES, VOTE_COLUMNS
from ferdata.label_issues import (
    LabelIssuesParams, excluded_ids, ferplus_comparison, label_issues_table, run_label_issues,
)
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


def write_votes(path, true_labels: np.ndarray) -> None:
    """A fer2013new.csv whose annotators agree with the true (unflipped) class: 8 votes of 10."""
    column = {name: col for col, name in EMOTION_CLASSES.items()}
    lines = [",".join(COLUMNS)]
    for row, k in enumerate(true_labels):
        votes = dict.fromkeys(VOTE_COLUMNS, 0) | {"neutral": 2}
        votes[column[CLASSES_7[k]]] += 8
        lines.append(",".join(["Training", f"fer{row:07d}.png", *map(str, votes.values())]))
    path.write_text("\n".join(lines) + "\n")


def precision_recall(out_dir, flipped_ids: set[str]) -> tuple[float, float, set[str]]:
    issues = pq.read_table(out_dir / "label_issues.parquet")
    flagged = set(issues.filter(issues["is_label_issue"])["sample_id"].to_pylist())
    hits = len(flagged & flipped_ids)
    return hits / max(len(flagged), 1), hits / len(flipped_ids), flagged


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Drawn FER2013-style faces (ferdata.sample) read back by the FER2013 reader."""
    root = tmp_path_factory.mktemp("faces")
    write_sample(root / "raw", fer2013_rows=1200, ckplus_subjects=1, jaffe_subjects=1, seed=3)
    batch = read_csv(root / "raw" / "fer2013" / "fer2013.csv", lambda n: None)
    labels = np.array([int(r.native_label) for r in batch.records])
    return root, [r.sample_id for r in batch.records], labels, [r.split for r in batch.records], batch.pixels


def test_hog_detection_on_flipped_faces_beats_random_flagging(faces, capsys):
    root, ids, labels, splits, images = faces
    train = np.flatnonzero(np.array(splits) == "train")
    noisy, rows = flip_labels(labels, train, seed=0)
    (root / "dataset").mkdir(exist_ok=True)
    pq.write_table(dataset_table(ids, noisy, splits, images), root / "dataset" / "manifest.parquet")
    write_votes(root / "fer2013new.csv", labels)

    result = run_label_issues(LabelIssuesParams(), root / "dataset", root / "issues",
                              ferplus_csv=root / "fer2013new.csv")
    flipped = {ids[i] for i in rows}
    precision, recall, flagged = precision_recall(root / "issues", flipped)
    with capsys.disabled():
        print(f"\nlabel issues, HOG + logistic regression, {len(train)} drawn faces, {len(rows)} flipped "
              f"({FLIP_RATE:.0%}): flagged {len(flagged)}, precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= 3 * FLIP_RATE
    assert recall >= 0.5
    assert result.samples == len(train) and result.flagged == len(flagged)

    # The FER+ votes name the true classes, so FER+ disagreement is exactly the flips.
    fp = json.loads((root / "issues" / "label_issues.json").read_text())["ferplus"]
    assert fp["samples_with_majority"] == len(train)
    assert fp["flagged"]["disagree_rate"] == pytest.approx(precision, abs=1e-6)
    assert fp["recall"] == pytest.approx(recall, abs=1e-6)
    assert fp["base_rate"] == pytest.approx(len(rows) / len(train), abs=1e-6)
    assert fp["unflagged"]["disagree_rate"] < fp["flagged"]["disagree_rate"]


def test_pca_features_output_table_determinism_and_exclusion(tmp_path):
    table = synthetic_dataset({"train": [60, 12, 60, 90, 70, 50, 70], "val": [5] * 7}, seed=4)
    labels = np.array(table["label_index"].to_pylist())
    train = np.flatnonzero(np.array(table["split"].to_pylist()) == "train")
    noisy, rows = flip_labels(labels, train, seed=1)
    table = table.set_column(2, DATASET_SCHEMA.field("label"), pa.array([CLASSES_7[k] for k in noisy]))
    table = table.set_column(3, DATASET_SCHEMA.field("label_index"), pa.array(noisy, pa.int16()))
    (tmp_path / "dataset").mkdir()
    pq.write_table(table, tmp_path / "dataset" / "manifest.parquet")

    params = LabelIssuesParams(features="pca", pca_components=30, c=0.03, folds=4, seed=7)
    run_label_issues(params, tmp_path / "dataset", tmp_path / "a")
    params.exclude_from_train = True
    result = run_label_issues(params, tmp_path / "dataset", tmp_path / "b")
    ids = table["sample_id"].to_pylist()
    precision, recall, flagged = precision_recall(tmp_path / "b", {ids[i] for i in rows})
    print(f"label issues, PCA, synthetic patterns: precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= 3 * FLIP_RATE and recall >= 0.5

    a, b = (pq.read_table(tmp_path / d / "label_issues.parquet") for d in "ab")
    assert a.equals(b)  # same inputs and seed, same output
    assert a.num_rows == len(train) and set(a["sample_id"].to_pylist()) == {ids[i] for i in train}
    ranks = a["rank"].to_pylist()
    k = len(flagged)
    assert ranks[:k] == list(range(1, k + 1)) and all(r is None for r in ranks[k:])
    assert a["is_label_issue"].to_pylist() == [True] * k + [False] * (len(ranks) - k)
    confidence = a["self_confidence"].to_pylist()
    assert confidence[:k] == sorted(confidence[:k])  # ranked by self-confidence, lowest first
    assert a.column("ferplus_majority").null_count == a.num_rows

    report = json.loads((tmp_path / "b" / "label_issues.json").read_text())
    assert sum(c["flagged"] for c in report["classes"].values()) == report["flagged"] == k
    assert sum(c["samples"] for c in report["classes"].values()) == len(train)
    assert report["ferplus"] is None
    assert excluded_ids(tmp_path / "b") == flagged and result.excluded == k
    assert excluded_ids(tmp_path / "a") == set()
    with pytest.raises(FileNotFoundError, match="run the label-issues stage first"):
        excluded_ids(tmp_path / "never")
    assert "flagged" in label_issues_table(result).title


def test_ferplus_comparison_counts():
    issues = pa.table({
        "is_label_issue": [True, True, True, False, False, False, False, False],
        "label": ["sad", "fear", "happy", "happy", "sad", "neutral", "angry", "fear"],
        "ferplus_majority": ["neutral", "fear", None, "happy", "neutral", "neutral", "angry", None],
    })
    found = ferplus_comparison(issues)
    assert found["samples_with_majority"] == 6
    assert found["flagged"] == {"samples": 2, "disagree": 1, "disagree_rate": 0.5}
    assert found["unflagged"] == {"samples": 4, "disagree": 1, "disagree_rate": 0.25}
    assert found["base_rate"] == pytest.approx(2 / 6, abs=1e-6)
    assert found["recall"] == 0.5 and found["lift"] == pytest.approx(1.5)


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
    assert result.ferplus["samples_with_majority"] == len(fer)
    assert result.ferplus["base_rate"] == pytest.approx(sum(1 for i in fer if i % 2 == 0) / len(fer), abs=1e-6)


def test_bad_params_are_named():
    with pytest.raises(ParamsError, match=r"\[label_issues\]\.features: 'cnn'; expected one of hog, pca"):
        LabelIssuesParams(features="cnn").check()
    with pytest.raises(ParamsError, match=r"\[label_issues\]\.folds"):
        LabelIssuesParams(folds=1).check()
