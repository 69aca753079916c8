"""The FiftyOne review dataset: fields, brain runs that find a mislabelled face, saved views, rebuilds."""

import math

import numpy as np
import pyarrow as pa
import pytest
from fiftyone_fixture import fo, predictions_table, relabel, set_column, write_dataset_dir  # noqa: F401
from helpers import synthetic_dataset

from ferdata.label_issues import LabelIssuesParams, run_label_issues
from ferdata.manifest import read_table, write_table
from ferdata.review import SIMILARITY_KEY, build_review_dataset, confused_pairs_of, review_table
from ferdata.taxonomy import CLASSES_7

SOURCES = ("fer2013", "ckplus", "jaffe", "raf-db", "affectnet")
MISLABELLED = "raf-db-000013"  # really angry (class 0), labelled happy in the manifest


def _with_quality_issues(table: pa.Table) -> pa.Table:
    """Two alignment failures and one duplicate pair, as the align and split stages mark them."""
    status = table["align_status"].to_pylist()
    status[3], status[40] = "no_face", "unstable_fit"
    dup = [None] * table.num_rows
    dup[5] = dup[60] = 7
    return set_column(set_column(table, "align_status", status), "dup_group", dup)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("review")
    table = _with_quality_issues(synthetic_dataset({"train": [30] * 7, "val": [6] * 7, "test": [6] * 7},
                                                   sources=SOURCES))
    preds = predictions_table(table, true_labels={MISLABELLED: "angry"})
    table = relabel(table, MISLABELLED, "happy")
    write_dataset_dir(table, root / "dataset")
    write_table(preds, root / "predictions.parquet")
    return root, table, preds


@pytest.fixture(scope="module")
def dataset(fo, inputs):  # noqa: F811
    root, _, _ = inputs
    return build_review_dataset("review-test", root / "dataset", root / "predictions.parquet")


def test_every_field_is_filled_from_manifest_and_predictions(dataset, inputs):
    _, table, preds = inputs
    assert len(dataset) == table.num_rows
    schema = dataset.get_field_schema()
    for name in ("ground_truth", "predictions", "sample_id", "source", "subject", "split", "origin",
                 "align_status", "eye_angle", "interocular", "fit_residual", "dup_group",
                 "brightness", "contrast", "mistakenness", "hardness", "uniqueness"):
        assert name in schema, name
    row = table.slice(17, 1).to_pylist()[0]
    sample = dataset.match({"sample_id": row["sample_id"]}).first()
    pixels = np.frombuffer(row["pixels"], np.uint8).astype(float)
    pred = preds.filter(pa.compute.equal(preds["sample_id"], row["sample_id"])).to_pylist()[0]
    assert sample.ground_truth.label == row["label"]
    assert sample.predictions.label == pred["predicted_label"]
    assert sample.predictions.confidence == pytest.approx(pred["confidence"])
    assert np.allclose(sample.predictions.logits, pred["logits"])
    assert sample.tags == [row["split"]]
    assert (sample.source, sample.subject, sample.origin) == (row["source"], row["subject"], "real")
    assert sample.brightness == pytest.approx(pixels.mean())
    assert sample.contrast == pytest.approx(pixels.std())
    assert sample.filepath.endswith(row["path"])
    assert set(dataset.list_brain_runs()) == {"mistakenness", "hardness", "uniqueness", SIMILARITY_KEY}


def test_mislabelled_face_ranks_in_top_five_percent_of_mistakenness(dataset):
    ranked = dataset.sort_by("mistakenness", reverse=True).values("sample_id")
    assert ranked.index(MISLABELLED) < math.ceil(0.05 * len(ranked))
    assert MISLABELLED in dataset.load_saved_view("likely-mislabeled").values("sample_id")


def test_likely_mislabeled_view_follows_the_label_issue_ranking(fo, inputs, tmp_path):  # noqa: F811
    root, table, _ = inputs
    params = LabelIssuesParams(features="pca", pca_components=20, folds=3, budget=10)
    run_label_issues(params, root / "dataset", tmp_path / "label_issues")
    issues = read_table(tmp_path / "label_issues" / "label_issues.parquet")
    flagged = issues.filter(issues["is_label_issue"])["sample_id"].to_pylist()
    assert 1 <= len(flagged) <= 10 and MISLABELLED in flagged

    dataset = build_review_dataset("review-ranked", root / "dataset", root / "predictions.parquet",
                                   label_issues_path=tmp_path / "label_issues" / "label_issues.parquet")
    view = dataset.load_saved_view("likely-mislabeled")
    assert view.values("sample_id") == flagged  # the flagged samples, most likely wrong first
    assert view.values("label_issue_rank") == list(range(1, len(flagged) + 1))
    sample = dataset.match({"sample_id": MISLABELLED}).first()
    assert sample.label_issue and sample.suggested_label == "angry"
    ranked = dataset.exists("label_issue_rank")
    assert sorted(ranked.values("sample_id")) == sorted(issues["sample_id"].to_pylist())  # every train sample
    assert set(ranked.values("split")) == {"train"}


def test_saved_views_select_what_their_names_say(dataset, inputs):
    _, table, preds = inputs
    views = dataset.list_saved_views()
    failures = dataset.load_saved_view("alignment-failures")
    assert sorted(failures.values("align_status")) == ["no_face", "unstable_fit"]
    assert dataset.load_saved_view("duplicates").values("dup_group") == [7, 7]
    for source in SOURCES:
        assert set(dataset.load_saved_view(f"source-{source}").values("source")) == {source}
        assert f"slice-sad-{source}" in views
    happy_ck = dataset.load_saved_view("slice-happy-ckplus")
    assert set(zip(happy_ck.values("ground_truth.label"), happy_ck.values("source"))) == {("happy", "ckplus")}
    assert len(happy_ck) == sum(1 for r in table.select(["label", "source"]).to_pylist()
                                if r == {"label": "happy", "source": "ckplus"})
    truth = dict(zip(table["sample_id"].to_pylist(), table["label"].to_pylist()))
    pairs = [(truth[s], p) for s, p in zip(preds["sample_id"].to_pylist(), preds["predicted_label"].to_pylist())]
    (a, b, n), *_ = confused_pairs_of(pairs, CLASSES_7, 3)
    confused = dataset.load_saved_view(f"confused-{a}-{b}")
    assert len(confused) == n
    assert {frozenset(p) for p in zip(confused.values("ground_truth.label"),
                                      confused.values("predictions.label"))} == {frozenset((a, b))}
    assert sum(v.startswith("confused-") for v in views) == 3


def test_similarity_index_finds_faces_of_the_same_class(dataset):
    query = dataset.match({"sample_id": "fer2013-000000"}).first()
    nearest = dataset.sort_by_similarity(query.id, k=6, brain_key=SIMILARITY_KEY)
    labels = dict(zip(nearest.values("sample_id"), nearest.values("ground_truth.label")))
    labels.pop(MISLABELLED, None)  # an angry face labelled happy: near, rightly
    assert set(labels.values()) == {query.ground_truth.label}


def test_confused_pairs_count_both_directions_and_rank_ties_by_class_order():
    pairs = [("sad", "neutral")] * 3 + [("neutral", "sad")] * 2 + [("angry", "fear")] * 5 \
        + [("happy", "surprise")] * 1 + [("happy", "happy")] * 9
    assert confused_pairs_of(pairs, CLASSES_7, 2) == [("angry", "fear", 5), ("sad", "neutral", 5)]


def test_rebuild_replaces_samples_and_keeps_annotator_tags(fo, inputs):  # noqa: F811
    root, table, _ = inputs
    first = build_review_dataset("review-rebuild", root / "dataset", root / "predictions.parquet")
    views = first.list_saved_views()
    sample = first.match({"sample_id": MISLABELLED}).first()
    sample.tags.extend(["relabel:angry", "reviewed"])
    sample.save()
    again = build_review_dataset("review-rebuild", root / "dataset", root / "predictions.parquet")
    assert len(again) == table.num_rows
    assert len(set(again.values("sample_id"))) == table.num_rows
    assert again.match({"sample_id": MISLABELLED}).first().tags == ["train", "relabel:angry", "reviewed"]
    assert [n for n in fo.list_datasets() if n.startswith("review-rebuild")] == ["review-rebuild"]
    assert again.list_saved_views() == views


def test_given_embeddings_and_synthetic_faces(fo, inputs, tmp_path):  # noqa: F811
    root, table, _ = inputs
    train = table.filter(pa.compute.equal(table["split"], "train"))
    smote = synthetic_dataset({"train": [2] * 7}, seed=3)
    ids = [f"smote-{i:06d}" for i in range(smote.num_rows)]
    smote = set_column(smote, "sample_id", ids)
    smote = set_column(smote, "origin", ["smote"] * len(ids))
    smote = set_column(smote, "path", [f"train/{lab}/{i}.png" for lab, i in zip(smote["label"].to_pylist(), ids)])
    write_dataset_dir(pa.concat_tables([train, smote]), tmp_path / "balanced")

    rows = review_table(root / "dataset", tmp_path / "balanced", include_synthetic=True)
    assert rows.num_rows == table.num_rows + smote.num_rows
    onehot = np.eye(7, dtype=np.float32)[rows["label_index"].to_numpy()]
    ds = build_review_dataset("review-synthetic", root / "dataset", None, onehot, tmp_path / "balanced",
                              include_synthetic=True)
    assert sorted(set(ds.values("origin"))) == ["real", "smote"]
    assert "mistakenness" not in ds.list_brain_runs()
    assert "uniqueness" in ds.get_field_schema()

    real_only = build_review_dataset("review-synthetic", root / "dataset", None, None, tmp_path / "balanced")
    assert set(real_only.values("origin")) == {"real"}
    with pytest.raises(ValueError, match="embeddings have 3 rows"):
        build_review_dataset("review-synthetic", root / "dataset", None, onehot[:3])
