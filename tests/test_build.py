"""`ferdata build` end to end on generated raw data of five sources: the stages compose, the
defects the generator planted are found by the real detector, aligner and dedup, and
alignment levels the rolled faces, which makes them easier to classify."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.manifest import pixels_to_array
from ferdata.oof_model import hog_features
from ferdata.params import load_params
from ferdata.sample import write_sample

PARAMS = Path(__file__).parent.parent / "params.yaml"
SOURCES = ("fer2013", "ckplus", "jaffe", "raf-db", "affectnet")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("build")
    write_sample(root / "raw", fer2013_rows=300, ckplus_subjects=8, jaffe_subjects=4, rafdb_images=60,
                 affectnet_rows=60, folder_images=0, seed=1)
    result = CliRunner().invoke(app, ["build", "--sources", ",".join(SOURCES), "--params", str(PARAMS),
                                      "--raw-dir", str(root / "raw"), "--out", str(root / "processed")])
    assert result.exit_code == 0, result.output
    truth = json.loads((root / "raw" / "sample_truth.json").read_text())
    return root / "processed", root / "raw", truth, result.output


def _manifest(path: Path):
    return pq.read_table(path).to_pandas()


def test_every_source_is_accounted_for_and_lands_in_one_dataset(built):
    processed, _, _, output = built
    ingest = json.loads((processed / "interim" / "ingest.json").read_text())
    assert list(ingest["sources"]) == list(SOURCES)
    table = output[output.index("ingest: seen = accepted"):output.index("accepted samples per class")]
    assert all(f"│ {name} " in table for name in SOURCES)
    for account in ingest["sources"].values():
        refused = sum(account["rejected"].values()) + sum(account["dropped"].values())
        assert account["seen"] == account["accepted"] + refused
    m = _manifest(processed / "dataset" / "manifest.parquet")
    assert set(m.source) == set(SOURCES)
    assert set(m[m.source.isin(["raf-db", "affectnet"])].split) == {"train", "val", "test"}
    assert m[m.source == "affectnet"].valence.notna().any()


def test_a_fer2013_face_copied_into_rafdb_is_found_across_sources(built):
    processed, _, truth, _ = built
    [(fer_id, raf_id)] = truth["defects"]["cross_source_duplicates"]  # FER2013 PrivateTest, RAF-DB train
    dropped = _manifest(processed / "dataset" / "dropped.parquet").set_index("sample_id").reason
    kept = _manifest(processed / "dataset" / "manifest.parquet").set_index("sample_id")
    assert dropped.get(raf_id) == "leak" and kept.loc[fer_id, "split"] == "test"
    assert kept.loc[fer_id, "dup_group"] >= 0


def test_affectnet_boxes_replace_detection_and_its_landmarks_are_measured(built):
    processed = built[0]
    report = json.loads((processed / "aligned" / "align.json").read_text())
    assert report["sources"]["affectnet"]["statuses"] == {"aligned": report["sources"]["affectnet"]["kept"]}
    assert set(report["landmark_error"]) == {"affectnet", "ckplus"}
    assert report["landmark_error"]["affectnet"]["mean"] < 0.1
    aligned = _manifest(processed / "aligned" / "aligned.parquet")
    assert aligned[aligned.source == "affectnet"].faces_detected.isna().all()
    photos = aligned[(aligned.source == "raf-db") & (aligned.height > 100)]  # not the 48x48 copy
    assert len(photos) and (photos.faces_detected >= 1).all()


def test_planted_cross_split_copies_lose_their_train_copy(built):
    processed, _, truth, _ = built
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


def test_alignment_levels_rolled_fer2013_faces_and_makes_them_easier_to_classify(built):
    processed, _, truth, _ = built
    table = pq.read_table(processed / "aligned" / "aligned.parquet")
    aligned = table.drop_columns(["pixels"]).to_pandas()
    fer = (aligned.source == "fer2013").to_numpy()
    ok = fer & (aligned.align_status == "aligned").to_numpy()
    assert ok.sum() >= 0.95 * (fer.sum() - len(truth["defects"]["blank"]))
    eyes = [truth["faces"][sid] for sid in aligned.sample_id[ok]]
    roll = np.degrees([np.arctan2(f["right_eye"][1] - f["left_eye"][1], f["right_eye"][0] - f["left_eye"][0])
                       for f in eyes])
    assert np.mean(np.abs(roll) > 12) >= 0.15  # many faces come rolled, as in real crops
    residual = np.abs(roll - aligned.eye_angle[ok])
    assert np.median(residual) < 1 and np.mean(residual < 5) >= 0.95  # and the fit finds their eye line

    # the same classifier on the same faces, raw crops against aligned ones
    interim = pq.read_table(processed / "interim" / "manifest.parquet").to_pandas().set_index("sample_id")
    ids = aligned.sample_id[ok]
    raw = np.load(processed / "interim" / "pixels" / "fer2013.npy")[interim.loc[ids, "pixels_row"].astype(int)]
    labels = interim.loc[ids, "label_index"].to_numpy()
    scores = {}
    for name, images in (("raw", raw), ("aligned", pixels_to_array(table["pixels"].filter(ok)))):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.003, max_iter=500))
        with threadpool_limits(1):
            scores[name] = cross_val_score(model, hog_features(images), labels, cv=5).mean()
    print(f"HOG + logistic regression, 5-fold, {len(ids)} FER2013 faces: raw {scores['raw']:.3f}, "
          f"aligned {scores['aligned']:.3f}")
    assert scores["aligned"] >= scores["raw"] + 0.1


def test_default_balance_weights_the_train_split_and_leaves_eval_splits_untouched(built):
    processed = built[0]
    balanced = _manifest(processed / "balanced" / "manifest.parquet")
    dataset = _manifest(processed / "dataset" / "manifest.parquet")
    assert (balanced.origin == "real").all()  # balance.method none: no faces made
    assert set(balanced.sample_id) == set(dataset[dataset.split == "train"].sample_id)
    counts = balanced.label.value_counts()
    weights = json.loads((processed / "balanced" / "class_weights.json").read_text())["by_name"]
    power = load_params(PARAMS)["balance"]["class_weight_power"]
    # (n / (classes x count)) ** power, rescaled so that the average train face weighs 1
    tempered = {label: (len(balanced) / (len(counts) * count)) ** power for label, count in counts.items()}
    scale = len(balanced) / sum(tempered[label] * count for label, count in counts.items())
    for label in counts.index:  # the rarest class weighs most
        assert weights[label] == pytest.approx(tempered[label] * scale, rel=1e-3)
    assert max(weights, key=weights.get) == counts.idxmin()
    assert not set(balanced.sample_id) & set(dataset[dataset.split != "train"].sample_id)
    pngs = sorted((processed / "balanced" / "train").glob("*/*.png"))
    assert len(pngs) == len(balanced) and np.all([p.stat().st_size > 0 for p in pngs])
