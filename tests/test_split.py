"""Split assignment: official FER2013 splits kept, CK+ / JAFFE split and folded by subject."""

from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest
from split_helpers import aligned_table, decisions, distinct_images, fer_rows, row, subject_rows, write_aligned

from ferdata.params import ParamsError, section
from ferdata.shards import FaceFile, Shards, write_sharded
from ferdata.split import SplitParams, assign_splits, group_quotas, run_split


def _sides(rows, source, values):
    """subject -> the set of values (splits or folds) its rows received."""
    seen = defaultdict(set)
    for r, v in zip(rows, values):
        if r["source"] == source:
            seen[r["subject"]].add(v)
    return seen


@pytest.mark.parametrize("seed", [0, 1, 7, 42, 1234])
def test_no_subject_on_two_sides_and_folds_are_subject_disjoint(seed):
    rows = subject_rows("ckplus", 60, 8, seed=seed) + subject_rows("jaffe", 10, 21, seed=seed + 1)
    params = SplitParams(seed=seed)
    result = assign_splits(decisions(rows), params, 7)
    for source, n_subjects in (("ckplus", 60), ("jaffe", 10)):
        splits = _sides(rows, source, result.split)
        assert len(splits) == n_subjects
        assert all(len(s) == 1 for s in splits.values()), f"{source}: a subject on two sides"
        folds = _sides(rows, source, result.fold)
        assert all(len(f) == 1 for f in folds.values()), f"{source}: a subject in two folds"
        assert sorted({next(iter(f)) for f in folds.values()}) == list(range(10))
    # fractions are of subjects: 60 -> 48 / 6 / 6, JAFFE's 10 -> 8 / 1 / 1
    assert {s: len(v) for s, v in result.subjects["ckplus"].items()} == {"train": 48, "val": 6, "test": 6}
    assert {s: len(v) for s, v in result.subjects["jaffe"].items()} == {"train": 8, "val": 1, "test": 1}


def test_subject_split_is_stratified_by_class():
    """Subjects whose rows lean to different classes still give each side its share of each class."""
    rng = np.random.default_rng(3)
    rows = []
    for s in range(100):
        favourite = s % 7
        for j in range(int(rng.integers(4, 14))):
            k = favourite if rng.random() < 0.7 else int(rng.integers(0, 7))
            rows.append(row(f"ckplus-S{s:03d}_{j:02d}", "ckplus", k, subject=f"S{s:03d}"))
    result = assign_splits(decisions(rows), SplitParams(seed=5), 7)
    labels = np.array([r["label_index"] for r in rows])
    splits = np.array(result.split)
    for k in range(7):
        share = (splits[labels == k] == "train").mean()
        assert 0.76 <= share <= 0.84, f"class {k}: {share:.2f} of its samples in train"
        assert (splits[labels == k] == "val").any() and (splits[labels == k] == "test").any()


def test_same_seed_same_assignment_other_seed_differs():
    rows = subject_rows("ckplus", 40, 5)
    first = assign_splits(decisions(rows), SplitParams(seed=11), 7)
    again = assign_splits(decisions(rows), SplitParams(seed=11), 7)
    other = assign_splits(decisions(rows), SplitParams(seed=12), 7)
    assert first.split == again.split and first.fold == again.fold
    assert first.split != other.split


def test_train_mode_puts_a_source_in_train_and_still_folds_it():
    rows = subject_rows("ckplus", 20, 4) + subject_rows("jaffe", 10, 6)
    result = assign_splits(decisions(rows), SplitParams(auxiliary_mode={"jaffe": "train"}), 7)
    jaffe = [s for r, s in zip(rows, result.split) if r["source"] == "jaffe"]
    ckplus = {s for r, s in zip(rows, result.split) if r["source"] == "ckplus"}
    assert set(jaffe) == {"train"} and len(jaffe) == 60
    assert ckplus == {"train", "val", "test"}
    folds = _sides(rows, "jaffe", result.fold)
    assert all(len(f) == 1 for f in folds.values()) and len({next(iter(f)) for f in folds.values()}) == 10
    assert result.modes == {"ckplus": "split", "jaffe": "train"}


def test_official_split_is_kept_and_has_no_fold():
    rows = fer_rows({"train": [3] * 7, "val": [1] * 7, "test": [2] * 7})
    result = assign_splits(decisions(rows), SplitParams(), 7)
    assert result.split == [r["split"] for r in rows]
    assert set(result.fold) == {None}
    assert result.modes == {"fer2013": "official"}


def test_rows_without_subject_or_split_are_split_one_by_one():
    rows = [row(f"other-{i:03d}", "other", i % 7) for i in range(50)]
    result = assign_splits(decisions(rows), SplitParams(), 7)
    assert [result.split.count(s) for s in ("train", "val", "test")] == [40, 5, 5]


@pytest.mark.parametrize("n, expected", [(10, [8, 1, 1]), (123, [99, 12, 12]), (5, [3, 1, 1]),
                                         (2, [1, 1, 0]), (1, [1, 0, 0]), (0, [0, 0, 0])])
def test_group_quotas_follow_fractions_and_fill_small_sides(n, expected):
    assert group_quotas(n, [0.8, 0.1, 0.1]).tolist() == expected


def test_params_section_defaults_and_bad_values():
    cfg = section({"seed": 9, "split": {"folds": 5}}, "split", SplitParams)
    assert (cfg.seed, cfg.folds, cfg.leak_policy, cfg.subject_fractions) == (9, 5, "keep_eval", [0.8, 0.1, 0.1])
    with pytest.raises(ParamsError, match="subject_fractions"):
        SplitParams(subject_fractions=[0.8, 0.3, 0.1])
    with pytest.raises(ParamsError, match="auxiliary_mode"):
        SplitParams(auxiliary_mode={"jaffe": "test"})
    with pytest.raises(ParamsError, match="leak_policy"):
        SplitParams(leak_policy="keep_both")
    with pytest.raises(ParamsError, match="phash_threshold"):
        SplitParams(phash_threshold=40)


def _run(tmp_path, rows, images=None, **params):
    images = distinct_images(len(rows)) if images is None else images
    write_aligned(tmp_path / "aligned", aligned_table(rows, images))
    result = run_split(SplitParams(**params), tmp_path / "aligned", tmp_path / "dataset")
    manifest = pq.read_table(tmp_path / "dataset" / "manifest.parquet").to_pylist()
    dropped = pq.read_table(tmp_path / "dataset" / "dropped.parquet").to_pylist()
    return result, manifest, dropped


def test_stage_keeps_subjects_whole_and_records_final_split(tmp_path):
    rows = fer_rows({"train": [4] * 7, "val": [1] * 7, "test": [1] * 7}) + subject_rows("ckplus", 30, 5)
    result, manifest, dropped = _run(tmp_path, rows)
    assert dropped == [] and len(manifest) == len(rows)
    sides = defaultdict(set)
    for m in manifest:
        assert m["path"] == f"{m['split']}/{m['label']}/{m['sample_id']}.png" and m["origin"] == "real"
        if m["source"] == "ckplus":
            sides[m["subject"]].add(m["split"])
            assert m["fold"] is not None
        else:
            assert m["fold"] is None
    assert all(len(s) == 1 for s in sides.values())
    assert result.subjects["ckplus"] == {"train": 24, "val": 3, "test": 3}
    assert sum(result.counts["train"].values()) == 28 + sum(
        1 for m in manifest if m["source"] == "ckplus" and m["split"] == "train")


def test_failed_alignment_kept_as_crop_stays(tmp_path):
    rows = fer_rows({"train": [2] * 7, "val": [1] * 7, "test": [1] * 7})
    rows[3]["align_status"] = "no_face"
    _, manifest, dropped = _run(tmp_path, rows)
    assert dropped == []
    assert {m["sample_id"]: m["align_status"] for m in manifest}[rows[3]["sample_id"]] == "no_face"


def test_frames_of_one_sequence_are_not_deduplicated_against_each_other(tmp_path):
    rows = [row(f"ckplus-S001_001_{f:08d}", "ckplus", 3, subject="S001", sequence="001") for f in (9, 10, 11)]
    rows += subject_rows("ckplus", 12, 3)
    images = distinct_images(len(rows))
    images[1] = np.clip(images[0].astype(int) + 1, 0, 255)
    images[2] = images[0]
    _, manifest, dropped = _run(tmp_path, rows, images)
    assert dropped == []
    groups = {m["sample_id"]: m["dup_group"] for m in manifest}
    assert groups[rows[0]["sample_id"]] == groups[rows[1]["sample_id"]] == groups[rows[2]["sample_id"]] == 0


def test_unknown_split_value_is_dropped_with_its_location(tmp_path):
    rows = fer_rows({"train": [2] * 7, "val": [1] * 7, "test": [1] * 7})
    rows[0]["split"] = "PublicTest"
    rows[0]["source_line"] = 2
    result, manifest, dropped = _run(tmp_path, rows)
    assert [(d["sample_id"], d["reason"], d["kind"], d["location"]) for d in dropped] == [
        (rows[0]["sample_id"], "unknown_split", "dropped", f"{rows[0]['source_file']}:2")]
    assert len(manifest) == len(rows) - 1 and result.dropped == {"unknown_split": [rows[0]["sample_id"]]}


def test_labels_outside_the_taxonomy_are_refused_naming_the_file(tmp_path):
    rows = fer_rows({"train": [2] * 7})
    rows[0].update(label="contempt", label_index=7)
    write_aligned(tmp_path / "aligned", aligned_table(rows, distinct_images(len(rows))))
    with pytest.raises(ValueError, match=r"aligned\.parquet: labels not in the 7-class taxonomy"):
        run_split(SplitParams(), tmp_path / "aligned", tmp_path / "dataset")
    assert not (tmp_path / "dataset").exists()


@pytest.mark.parametrize("bad_id, message", [
    ("repeat", "sample ids occur more than once"),
    ("fer2013/000001", "sample ids unusable as file names"),
    ("fer2013\\000001", "sample ids unusable as file names"),
    (".hidden", "sample ids unusable as file names"),
    ("", "sample ids unusable as file names"),
])
def test_ids_that_would_clash_or_escape_their_folder_are_refused_naming_the_file(tmp_path, bad_id, message):
    rows = fer_rows({"train": [2] * 7})
    rows[0]["sample_id"] = rows[1]["sample_id"] if bad_id == "repeat" else bad_id
    write_aligned(tmp_path / "aligned", aligned_table(rows, distinct_images(len(rows))))
    with pytest.raises(ValueError, match=rf"aligned\.parquet: {message}"):
        run_split(SplitParams(), tmp_path / "aligned", tmp_path / "dataset")
    assert not (tmp_path / "dataset").exists()


def test_missing_input_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="aligned.parquet"):
        run_split(SplitParams(), tmp_path / "aligned", tmp_path / "dataset")


def test_no_rows_gives_an_empty_dataset_with_every_class_folder(tmp_path):
    result, manifest, dropped = _run(tmp_path, [], np.zeros((0, 48, 48), np.uint8))
    assert manifest == [] and dropped == [] and result.kept == 0
    assert all(len(list((tmp_path / "dataset" / s).iterdir())) == 7 for s in ("train", "val", "test"))


def test_face_file_reads_any_rows_faces_in_any_order_and_deletes_itself(tmp_path):
    images = distinct_images(10)
    table = aligned_table(fer_rows({"train": [2] * 5}), images)
    write_sharded(table, tmp_path / "aligned.parquet", 3)  # shards of 3, 3, 3 and 1 rows
    order = np.array([9, 0, 4, 1, 8, 2, 7, 3, 6, 5])  # row i is stored at order[i]
    with FaceFile(Shards(tmp_path / "aligned.parquet"), order, tmp_path / "faces.u8") as faces:
        rows = np.array([3, 0, 3, 9, 1])
        assert len(faces) == 10
        assert (faces[rows] == images[order[rows]]).all()
        assert faces[np.array([], dtype=np.int64)].shape == (0, 48, 48)
    assert not (tmp_path / "faces.u8").exists()
