"""Duplicates and leakage: hashes, groups, policies, blank images, and the dedup report."""

import json
from collections import defaultdict
from itertools import combinations

import numpy as np
import pyarrow.parquet as pq
import pytest
from split_helpers import aligned_table, distinct_images, fer_rows, subject_rows, write_aligned

from ferdata import dedup
from ferdata.faces import PEAKS, Pose, Subject, render_faces
from ferdata.split import SplitParams, run_split
from ferdata.taxonomy import CLASSES_7


def _near_copy(img: np.ndarray, seed: int) -> np.ndarray:
    """The same picture one level brighter with slight noise."""
    noise = np.random.default_rng(seed).normal(0, 2, img.shape).round()
    return np.clip(img.astype(int) + 1 + noise, 0, 255).astype(np.uint8)


def test_phash_survives_brightness_and_noise_but_separates_different_pictures():
    images = distinct_images(300, seed=4)
    hashes = dedup.phash(images)
    copies = dedup.phash(np.stack([_near_copy(img, i) for i, img in enumerate(images[:50])]))
    assert dedup.hamming(hashes[:50], copies).max() <= 4
    i, j = np.triu_indices(len(images), k=1)
    assert dedup.hamming(hashes[i], hashes[j]).min() > 4


@pytest.mark.parametrize("threshold", [0, 3, 6, 10])
def test_banded_search_finds_exactly_the_brute_force_pairs(threshold):
    rng = np.random.default_rng(threshold)
    base = rng.integers(0, 2**63, size=120, dtype=np.uint64)
    flips = [b ^ np.uint64(sum(1 << int(p) for p in rng.choice(64, size=int(rng.integers(0, 12)), replace=False)))
             for b in base[:80]]
    hashes = np.unique(np.concatenate([base, np.array(flips, dtype=np.uint64)]))
    expected = {(a, b) for a, b in combinations(range(len(hashes)), 2)
                if dedup.hamming(hashes[a:a + 1], hashes[b:b + 1])[0] <= threshold}
    assert {tuple(p) for p in dedup.near_pairs(hashes, threshold).tolist()} == expected


def _drawn_faces(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` drawn 48x48 faces of different people, framed as aligned faces are."""
    poses = [Pose(center=(24 + rng.normal(0, 1), 23.5 + rng.normal(0, 1)), scale=rng.uniform(16, 19),
                  angle_deg=float(rng.normal(0, 4)), brightness=rng.uniform(-20, 20)) for _ in range(n)]
    expressions = [PEAKS[CLASSES_7[k]] for k in rng.integers(0, 7, n)]
    return render_faces([Subject.random(rng) for _ in range(n)], expressions, poses, (48, 48), rng)[0]


@pytest.mark.parametrize("threshold", [4, 8])
def test_banded_search_on_drawn_faces_finds_exactly_the_all_pairs_search(threshold):
    """Drawn faces share their layout, so their pHashes crowd together: many pairs fall within
    the threshold, and the band buckets are far from empty."""
    hashes = np.unique(dedup.phash(_drawn_faces(200, np.random.default_rng(threshold))))
    i, j = np.triu_indices(len(hashes), k=1)
    close = dedup.hamming(hashes[i], hashes[j]) <= threshold
    expected = set(zip(i[close].tolist(), j[close].tolist()))
    assert len(expected) >= 20
    assert {tuple(p) for p in dedup.near_pairs(hashes, threshold).tolist()} == expected


def test_block_bound_never_drops_a_copy_and_spares_most_pixel_checks():
    faces = _drawn_faces(200, np.random.default_rng(5))
    faces = np.concatenate([faces, np.stack([_near_copy(f, k) for k, f in enumerate(faces[:20])])])
    hashes, blocks = dedup.phash(faces), dedup.block_means(faces)
    every = dedup.candidate_pairs(hashes, 8)
    centred = faces.astype(np.float64) - faces.mean(axis=(1, 2), keepdims=True)
    pixel = np.abs(centred[every[:, 0]] - centred[every[:, 1]]).mean(axis=(1, 2))
    assert (dedup.block_distance(blocks, every[:, 0], every[:, 1]) <= pixel + 1e-4).all()

    bounded = dedup.candidate_pairs(hashes, 8, lambda i, j: dedup.block_distance(blocks, i, j) <= 2.0 + 1e-3)
    confirmed = {tuple(p) for p in dedup.similar_pairs(faces, every, 2.0).tolist()}
    assert {tuple(p) for p in dedup.similar_pairs(faces, bounded, 2.0).tolist()} == confirmed
    assert len(confirmed) >= 20 and len(bounded) < len(every) / 5


def test_unrelated_pictures_are_not_grouped():
    images = distinct_images(400, seed=9)
    groups, exact, _ = dedup.duplicate_groups(images, [dedup.pixel_hashes(images)], threshold=4, max_diff=2.0)
    assert (groups == -1).all() and len(exact) == 0


def test_different_pictures_whose_pixel_digests_share_leading_zero_bytes_are_not_grouped():
    images = distinct_images(3000, seed=11)
    digests = dedup.pixel_hashes(images)
    zero_led = images[[i for i, d in enumerate(digests) if d.startswith("00")]]
    assert len(zero_led) >= 2  # about 1 in 256 digests starts with a zero byte
    groups, exact, _ = dedup.duplicate_groups(zero_led, [dedup.pixel_digests(zero_led)], threshold=0, max_diff=0.0)
    assert (groups == -1).all() and len(exact) == 0


def test_groups_join_exact_and_near_copies_and_number_them_by_first_member():
    images = distinct_images(10, seed=2)
    images[7] = images[2]  # exact
    images[9] = _near_copy(images[4], 0)  # near
    groups, exact, _ = dedup.duplicate_groups(images, [dedup.pixel_hashes(images)], threshold=4, max_diff=2.0)
    assert groups.tolist() == [-1, -1, 0, -1, 1, -1, -1, 0, -1, 1]
    assert exact.tolist() == [True, False]


def _fer_with_planted_copies(tmp_path, **params):
    """FER2013 rows: an exact copy train/test, a near copy train/val, a blank in train."""
    rows = fer_rows({"train": [10] * 7, "val": [3] * 7, "test": [3] * 7})
    images = distinct_images(len(rows), seed=1)
    ids = {s: [i for i, r in enumerate(rows) if r["split"] == s] for s in ("train", "val", "test")}
    exact_train, exact_test = ids["train"][0], ids["test"][0]
    near_train, near_val = ids["train"][1], ids["val"][2]  # both angry, as is the exact pair
    blank = ids["train"][2]
    images[exact_train] = images[exact_test]
    images[near_train] = _near_copy(images[near_val], 1)
    images[blank] = 17
    images[blank, 10, 10] = 19
    write_aligned(tmp_path / "aligned", aligned_table(rows, images))
    run_split(SplitParams(**params), tmp_path / "aligned", tmp_path / "dataset")
    planted = {k: rows[i]["sample_id"] for k, i in dict(
        exact_train=exact_train, exact_test=exact_test, near_train=near_train, near_val=near_val,
        blank=blank).items()}
    out = tmp_path / "dataset"
    manifest = {r["sample_id"]: r for r in pq.read_table(out / "manifest.parquet").to_pylist()}
    dropped = {r["sample_id"]: r for r in pq.read_table(out / "dropped.parquet").to_pylist()}
    return planted, manifest, dropped, json.loads((out / "dedup.json").read_text())


def test_cross_split_copies_drop_the_train_copy_by_default(tmp_path):
    planted, manifest, dropped, report = _fer_with_planted_copies(tmp_path)
    assert set(dropped) == {planted["exact_train"], planted["near_train"], planted["blank"]}
    assert dropped[planted["exact_train"]]["reason"] == "leak"
    assert dropped[planted["near_train"]]["reason"] == "leak"
    assert dropped[planted["blank"]]["reason"] == "blank"
    assert all(d["kind"] == "dropped" for d in dropped.values())
    assert planted["exact_test"] in dropped[planted["exact_train"]]["message"]
    assert manifest[planted["exact_test"]]["split"] == "test"
    assert manifest[planted["near_val"]]["split"] == "val"
    assert manifest[planted["exact_test"]]["dup_group"] is not None
    assert sum(1 for m in manifest.values() if m["dup_group"] is not None) == 2
    assert report["groups_found"] == 2 and report["leaks_resolved"] == 2
    assert (report["exact_groups"], report["near_groups"]) == (1, 1)
    assert report["dropped"] == {"blank": [planted["blank"]],
                                 "leak": sorted([planted["exact_train"], planted["near_train"]])}


@pytest.mark.parametrize("policy, kept, gone", [
    ("keep_train", ["exact_train", "near_train"], ["exact_test", "near_val"]),
    ("drop_all", [], ["exact_train", "near_train", "exact_test", "near_val"]),
])
def test_other_leak_policies(tmp_path, policy, kept, gone):
    planted, manifest, dropped, _ = _fer_with_planted_copies(tmp_path, leak_policy=policy)
    assert all(planted[k] in manifest for k in kept)
    assert all(dropped[planted[k]]["reason"] == "leak" for k in gone)


def test_keep_all_keeps_every_side_of_a_leak_and_reports_it_kept(tmp_path):
    planted, manifest, dropped, report = _fer_with_planted_copies(tmp_path, leak_policy="keep_all", blank_std=0.0)
    assert not dropped and all(sid in manifest for sid in planted.values())
    assert (report["leaks_resolved"], report["leaks_kept"]) == (0, 2)
    assert manifest[planted["exact_train"]]["dup_group"] == manifest[planted["exact_test"]]["dup_group"]


def test_blank_threshold_is_a_parameter(tmp_path):
    planted, manifest, dropped, _ = _fer_with_planted_copies(tmp_path, blank_std=0.0)
    assert planted["blank"] in manifest and planted["blank"] not in dropped


@pytest.mark.parametrize("policy, survivors", [("keep_one", 1), ("keep_all", 3)])
def test_copies_within_one_split(tmp_path, policy, survivors):
    rows = fer_rows({"train": [5] * 7, "val": [2] * 7, "test": [2] * 7})
    images = distinct_images(len(rows), seed=3)
    images[4] = images[1]
    images[3] = _near_copy(images[1], 2)
    write_aligned(tmp_path / "aligned", aligned_table(rows, images))
    result = run_split(SplitParams(within_split_duplicates=policy), tmp_path / "aligned", tmp_path / "dataset")
    manifest = {r["sample_id"] for r in pq.read_table(tmp_path / "dataset" / "manifest.parquet").to_pylist()}
    copies = [rows[i]["sample_id"] for i in (1, 3, 4)]
    assert sum(c in manifest for c in copies) == survivors
    if policy == "keep_one":
        assert copies[0] in manifest  # the first id stays
        assert result.dropped == {"duplicate": copies[1:]}
    assert result.leaks_resolved == 0 and result.groups == 1


def test_dedup_never_moves_a_subject(tmp_path):
    """A CK+ frame that copies a FER2013 test image is dropped; no CK+ subject changes side."""
    rows = fer_rows({"train": [4] * 7, "val": [2] * 7, "test": [2] * 7}) + subject_rows("ckplus", 30, 4)
    images = distinct_images(len(rows), seed=5)

    def splits_after(imgs, folder):
        write_aligned(folder / "aligned", aligned_table(rows, imgs))
        # the planted CK+ frame's label may differ from the test face's: keep conflicts, watch the sides
        run_split(SplitParams(seed=3, label_conflicts="keep"), folder / "aligned", folder / "dataset")
        return {r["sample_id"]: r for r in pq.read_table(folder / "dataset" / "manifest.parquet").to_pylist()}

    clean = splits_after(images, tmp_path / "clean")
    ck_train = next(r for r in clean.values() if r["source"] == "ckplus" and r["split"] == "train")["sample_id"]
    fer_test = next(r for r in clean.values() if r["source"] == "fer2013" and r["split"] == "test")["sample_id"]
    planted = images.copy()
    planted[[r["sample_id"] for r in rows].index(ck_train)] = images[[r["sample_id"] for r in rows].index(fer_test)]
    after = splits_after(planted, tmp_path / "planted")
    assert ck_train not in after and fer_test in after
    assert all(after[k]["split"] == clean[k]["split"] and after[k]["fold"] == clean[k]["fold"] for k in after)
    sides = defaultdict(set)
    for r in after.values():
        if r["source"] == "ckplus":
            sides[r["subject"]].add(r["split"])
    assert all(len(s) == 1 for s in sides.values())


def test_bands_share_out_every_bit_once_and_make_smaller_buckets_than_consecutive_bits():
    hashes = np.unique(dedup.phash(_drawn_faces(400, np.random.default_rng(11))))
    chosen = dedup.bands(hashes, 4)
    assert sorted(np.concatenate(chosen).tolist()) == list(range(64))
    consecutive = np.array_split(np.arange(64), 5)

    def pairs_sharing_a_band(bands):
        total = 0
        for band in bands:
            key = sum(((hashes >> np.uint64(bit)) & np.uint64(1)) << np.uint64(k) for k, bit in enumerate(band))
            counts = np.unique(key, return_counts=True)[1]
            total += int((counts * (counts - 1) // 2).sum())
        return total
    assert pairs_sharing_a_band(chosen) < 0.7 * pairs_sharing_a_band(consecutive)  # 2,943 against 6,042


@pytest.mark.parametrize("policy", ["drop", "keep"])
def test_copies_whose_labels_disagree(tmp_path, policy):
    """A face labelled angry in train, disgust in train and angry in test: `drop` removes
    every copy, `keep` resolves it as any other leak; both report the conflict."""
    rows = fer_rows({"train": [5] * 7, "val": [2] * 7, "test": [2] * 7})
    images = distinct_images(len(rows), seed=4)
    angry, disgust, test_angry, agreeing = 1, 7, 49, 4
    assert [rows[i]["label"] for i in (angry, disgust, test_angry)] == ["angry", "disgust", "angry"]
    images[disgust] = images[angry]
    images[test_angry] = _near_copy(images[angry], 3)
    images[agreeing] = images[2]
    write_aligned(tmp_path / "aligned", aligned_table(rows, images))
    result = run_split(SplitParams(label_conflicts=policy), tmp_path / "aligned", tmp_path / "dataset")
    dropped = {r["sample_id"]: r for r in pq.read_table(tmp_path / "dataset" / "dropped.parquet").to_pylist()}
    report = json.loads((tmp_path / "dataset" / "dedup.json").read_text())
    ids = [r["sample_id"] for r in rows]
    conflict = next(g for g in report["groups"] if ids[angry] in {m["sample_id"] for m in g["members"]})
    assert report["label_conflicts"] == 1 and conflict["label_conflict"] and conflict["labels"] == ["angry", "disgust"]
    assert dropped[ids[agreeing]]["reason"] == "duplicate"
    if policy == "drop":
        assert {dropped[ids[i]]["reason"] for i in (angry, disgust, test_angry)} == {"label_conflict"}
        assert "holds the labels angry, disgust" in dropped[ids[test_angry]]["message"]
        assert result.dropped_by_class["train"]["angry"] == {"duplicate": 1, "label_conflict": 1}
        assert result.dropped_by_class["test"] == {"angry": {"label_conflict": 1}}
    else:
        assert ids[test_angry] not in dropped
        assert {dropped[ids[i]]["reason"] for i in (angry, disgust)} == {"leak"}
        assert result.dropped_by_class["test"] == {}


@pytest.mark.parametrize("units, labels, conflict", [
    (["seq-a", "seq-a"], ["neutral", "happy"], False),  # one CK+ sequence: its onset and peak frames
    (["seq-a", "seq-b"], ["happy", "happy"], False),
    (["seq-a", "seq-b"], ["neutral", "happy"], True),
])
def test_a_conflict_needs_different_labels_on_different_units(units, labels, conflict):
    resolution = dedup.resolve_groups(np.zeros(2, dtype=np.int64), ["train", "train"], units, labels,
                                      "keep_eval", "keep_one", "drop")
    assert resolution.conflicting_groups == ([0] if conflict else [])
    assert (set(resolution.drop_reason.values()) == {"label_conflict"}) == conflict
