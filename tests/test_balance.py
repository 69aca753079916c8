"""The balance stage: train split only, class targets met, synthetic faces that are
interpolations of real neighbours, augmented copies traceable to their parents, clear
parameter errors, and identical output for the same seed."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from helpers import synthetic_dataset
from PIL import Image
from sklearn.neighbors import NearestNeighbors

from ferdata.augment import Transform, apply_transform
from ferdata.balance import BalanceParams, run_balance
from ferdata.balance_memory import GB, ResampleSize
from ferdata.export import write_png
from ferdata.manifest import BALANCED_SCHEMA, array_to_pixels, pixels_to_array, read_table, write_table
from ferdata.params import ParamsError, section
from ferdata.taxonomy import CLASSES_7

TRAIN = [40, 8, 20, 60, 30, 25, 35]


def _write_dataset(root: Path, table: pa.Table) -> Path:
    """A dataset folder as the split stage leaves it: manifest plus every PNG."""
    images = pixels_to_array(table["pixels"])
    for rel, image in zip(table["path"].to_pylist(), images):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_png(root / rel, image)
    write_table(table, root / "manifest.parquet")
    return root


def _overlapping(table: pa.Table, seed: int) -> pa.Table:
    """The same rows with noise faces, so that every class has other classes' faces nearby."""
    noise = np.random.default_rng(seed).normal(128, 40, (table.num_rows, 48, 48))
    pixels = array_to_pixels(np.clip(noise, 0, 255).astype(np.uint8))
    return table.set_column(table.schema.get_field_index("pixels"), "pixels", pixels)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    table = synthetic_dataset({"train": TRAIN, "val": [5] * 7, "test": [4] * 7}, seed=1)
    return _write_dataset(tmp_path_factory.mktemp("dataset"), table)


@pytest.fixture(scope="module")
def noisy_dataset(tmp_path_factory) -> Path:
    table = _overlapping(synthetic_dataset({"train": [30, 12, 20, 45, 25, 20, 25]}, seed=2), seed=3)
    return _write_dataset(tmp_path_factory.mktemp("noisy"), table)


@pytest.fixture(scope="module")
def smote_run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("smote") / "balanced"
    return run_balance(BalanceParams(method="smote", seed=7), dataset, out), out


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _manifest(out: Path) -> list[dict]:
    return read_table(out / "manifest.parquet").to_pylist()


def _real_by_class(dataset: Path) -> dict[str, np.ndarray]:
    table = read_table(dataset / "manifest.parquet")
    images = pixels_to_array(table["pixels"])
    return {c: images[[i for i, (s, lab) in enumerate(zip(table["split"].to_pylist(), table["label"].to_pylist()))
                       if s == "train" and lab == c]].astype(np.float32) for c in CLASSES_7}


def _pixels(row: dict) -> np.ndarray:
    return np.frombuffer(row["pixels"], np.uint8).reshape(48, 48)


def _counts(rows: list[dict]) -> dict[str, int]:
    return {c: sum(r["label"] == c for r in rows) for c in CLASSES_7}


def _assert_interpolations(rows: list[dict], real: dict[str, np.ndarray], k: int) -> None:
    """Each row lies within its class's per-pixel range, and (up to rounding) on the segment
    between a real face of its class and one of that face's k nearest same-class faces."""
    for c, faces in real.items():
        mine = [r for r in rows if r["label"] == c]
        if not mine:
            continue
        flat = faces.reshape(len(faces), -1)
        neighbours = NearestNeighbors(n_neighbors=k + 1).fit(flat).kneighbors(flat, return_distance=False)[:, 1:]
        start = np.repeat(flat, k, axis=0)
        step = flat[neighbours.ravel()] - start
        lo, hi = faces.min(axis=0), faces.max(axis=0)
        for r in mine:
            x = _pixels(r).astype(np.float32)
            assert (x >= lo).all() and (x <= hi).all(), r["sample_id"]
            t = np.clip(((x.ravel() - start) * step).sum(1) / np.maximum((step ** 2).sum(1), 1e-9), 0, 1)
            gap = np.linalg.norm(x.ravel() - start - t[:, None] * step, axis=1).min()
            assert gap <= 0.5 * 48 + 0.5, (r["sample_id"], gap)  # at most 0.5 grey level per pixel


def test_only_train_is_balanced_and_the_dataset_folder_is_untouched(dataset, tmp_path):
    before = _tree(dataset)
    for method in ("smote", "augment", "random_under"):
        out = tmp_path / method
        run_balance(BalanceParams(method=method), dataset, out)
        rows = _manifest(out)
        assert {r["split"] for r in rows} == {"train"}
        assert sorted(p.name for p in out.iterdir()) == [
            "augment.json", "balance.json", "class_weights.json", "counts.png", "manifest.parquet", "train"]
        assert sorted(str(p.relative_to(out)) for p in (out / "train").rglob("*.png")) == sorted(
            r["path"] for r in rows)
    assert _tree(dataset) == before
    dataset_rows = read_table(dataset / "manifest.parquet").to_pylist()
    eval_ids = {r["sample_id"] for r in dataset_rows if r["split"] != "train"}
    train_ids = {r["sample_id"] for r in dataset_rows if r["split"] == "train"}
    rows = _manifest(tmp_path / "smote")
    assert not eval_ids & {r["sample_id"] for r in rows}
    assert {r["sample_id"] for r in rows if r["origin"] == "real"} == train_ids


def test_smote_auto_gives_every_class_the_majority_count(smote_run, dataset):
    result, out = smote_run
    rows = _manifest(out)
    assert _counts(rows) == {c: 60 for c in CLASSES_7} == result.after
    assert result.before == dict(zip(CLASSES_7, TRAIN))
    assert read_table(out / "manifest.parquet").schema == BALANCED_SCHEMA
    synthetic = [r for r in rows if r["origin"] != "real"]
    assert len(synthetic) == 7 * 60 - sum(TRAIN)
    assert all(r["origin"] == "smote" and r["source"] == "synthetic" and r["parent_id"] is None
               and r["transform"] is None and r["method"] == "smote" and r["seed"] == 7 for r in synthetic)
    assert [r["sample_id"] for r in synthetic if r["label"] == "disgust"][:2] == [
        "smote-disgust-000001", "smote-disgust-000002"]
    for r in synthetic[::25]:
        png = np.asarray(Image.open(out / r["path"]))
        assert png.dtype == np.uint8 and png.shape == (48, 48)
        assert np.array_equal(png, _pixels(r))


def test_smote_faces_interpolate_between_real_same_class_neighbours(smote_run, dataset):
    rows = _manifest(smote_run[1])
    _assert_interpolations([r for r in rows if r["origin"] == "smote"], _real_by_class(dataset), k=5)


def test_pca_feature_space_makes_faces_of_their_own_class(dataset, tmp_path):
    run_balance(BalanceParams(method="smote", feature_space="pca", pca_components=20), dataset, tmp_path / "b")
    rows = _manifest(tmp_path / "b")
    assert _counts(rows) == {c: 60 for c in CLASSES_7}
    means = np.stack([faces.mean(axis=0).ravel() for faces in _real_by_class(dataset).values()])
    for r in rows:
        if r["origin"] == "smote":
            nearest = np.linalg.norm(means - _pixels(r).astype(np.float32).ravel(), axis=1).argmin()
            assert CLASSES_7[nearest] == r["label"], r["sample_id"]


@pytest.mark.parametrize("method", ["adasyn", "borderline_smote"])
def test_adasyn_and_borderline_smote_interpolate_near_other_classes(method, noisy_dataset, tmp_path):
    result = run_balance(BalanceParams(method=method, k_neighbors=3), noisy_dataset, tmp_path / "b")
    rows = _manifest(tmp_path / "b")
    synthetic = [r for r in rows if r["origin"] != "real"]
    assert synthetic and {r["origin"] for r in synthetic} == {method}
    assert "happy" not in {r["label"] for r in synthetic}  # the majority gets no new faces
    # near the target: ADASYN rounds each face's share of the new faces (at most 1/2 off per face)
    assert all(result.after[c] <= 45 + result.before[c] / 2 for c in CLASSES_7)
    _assert_interpolations(synthetic, _real_by_class(noisy_dataset), k=3)
    report = json.loads((tmp_path / "b" / "balance.json").read_text())
    assert report["after"] == result.after and report["targets"]["disgust"] == 45


def test_adasyn_on_classes_without_neighbours_of_another_class_says_so(dataset, tmp_path):
    with pytest.raises(ValueError, match="adasyn.*nothing to weight by"):
        run_balance(BalanceParams(method="adasyn"), dataset, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_random_under_keeps_a_subset_of_real_faces(dataset, tmp_path):
    result = run_balance(BalanceParams(method="random_under"), dataset, tmp_path / "b")
    rows = _manifest(tmp_path / "b")
    assert _counts(rows) == {c: 8 for c in CLASSES_7} == result.after
    real = {r["sample_id"]: r["pixels"] for r in read_table(dataset / "manifest.parquet").to_pylist()}
    assert all(r["origin"] == "real" and real[r["sample_id"]] == r["pixels"] for r in rows)


def test_random_over_duplicates_real_faces_of_the_same_class(dataset, tmp_path):
    run_balance(BalanceParams(method="random_over"), dataset, tmp_path / "b")
    rows = _manifest(tmp_path / "b")
    real = {r["sample_id"]: r for r in rows if r["origin"] == "real"}
    copies = [r for r in rows if r["origin"] == "random_over"]
    assert len(copies) == 7 * 60 - sum(TRAIN)
    for r in copies:
        parent = real[r["parent_id"]]
        assert parent["label"] == r["label"] and parent["pixels"] == r["pixels"] and r["transform"] is None


@pytest.mark.parametrize("params", [BalanceParams(method="augment", seed=3),
                                    BalanceParams(method="random_over", augment_after=True, seed=3)],
                         ids=["augment", "random_over+augment_after"])
def test_augmented_copies_are_rebuilt_by_their_recorded_transform(params, dataset, tmp_path):
    run_balance(params, dataset, tmp_path / "b")
    rows = _manifest(tmp_path / "b")
    real = {r["sample_id"]: r for r in rows if r["origin"] == "real"}
    copies = [r for r in rows if r["origin"] == "augment"]
    assert _counts(rows) == {c: 60 for c in CLASSES_7} and len(copies) == 7 * 60 - sum(TRAIN)
    for r in copies:
        parent = real[r["parent_id"]]
        assert parent["label"] == r["label"] and parent["fold"] == r["fold"]
        rebuilt = apply_transform(_pixels(parent), Transform.from_json(r["transform"]))
        assert np.array_equal(rebuilt, _pixels(r)), r["sample_id"]
        assert r["method"] == params.method


def test_augment_uses_every_parent_of_a_class_evenly(dataset, tmp_path):
    run_balance(BalanceParams(method="augment"), dataset, tmp_path / "b")
    rows = _manifest(tmp_path / "b")
    uses = {r["sample_id"]: 0 for r in rows if r["origin"] == "real" and r["label"] == "disgust"}
    for r in rows:
        if r["origin"] == "augment" and r["label"] == "disgust":
            uses[r["parent_id"]] += 1
    assert sum(uses.values()) == 52 and max(uses.values()) - min(uses.values()) <= 1


def test_share_and_per_class_targets(dataset, tmp_path):
    result = run_balance(BalanceParams(method="smote", sampling_strategy=0.5), dataset, tmp_path / "share")
    assert result.after == {"angry": 40, "disgust": 30, "fear": 30, "happy": 60, "sad": 30,
                            "surprise": 30, "neutral": 35}
    spelled_out = section({"balance": {"sampling_strategy": {"ratio": 0.5}}}, "balance", BalanceParams)
    assert spelled_out.sampling_strategy == 0.5
    result = run_balance(BalanceParams(method="random_over", sampling_strategy={"disgust": 20}),
                         dataset, tmp_path / "dict")
    assert result.after == {**dict(zip(CLASSES_7, TRAIN)), "disgust": 20}


def test_excluded_ids_are_neither_written_nor_used_as_parents(dataset, tmp_path):
    train = [r for r in read_table(dataset / "manifest.parquet").to_pylist() if r["split"] == "train"]
    flagged = set([r["sample_id"] for r in train if r["label"] == "disgust"][:3])
    flagged |= {train[0]["sample_id"], "fer2013-999999"}  # ids that are not train rows change nothing
    result = run_balance(BalanceParams(method="augment"), dataset, tmp_path / "b", exclude=flagged)
    rows = _manifest(tmp_path / "b")
    assert not flagged & {r["sample_id"] for r in rows} and not flagged & {r["parent_id"] for r in rows}
    assert result.before["disgust"] == 5 and result.excluded["disgust"] == 3
    assert _counts(rows) == {c: 60 for c in CLASSES_7}
    report = json.loads((tmp_path / "b" / "balance.json").read_text())
    assert sum(report["excluded"].values()) == 4


def test_class_weights_follow_the_balanced_counts(dataset, tmp_path):
    run_balance(BalanceParams(method="none", class_weight_power=1), dataset, tmp_path / "b")
    weights = json.loads((tmp_path / "b" / "class_weights.json").read_text())
    expected = {c: sum(TRAIN) / (7 * n) for c, n in zip(CLASSES_7, TRAIN)}
    assert weights["by_name"] == pytest.approx(expected)
    assert weights["by_index"] == {str(k): weights["by_name"][c] for k, c in enumerate(CLASSES_7)}
    assert weights["by_name"]["disgust"] > weights["by_name"]["angry"] > weights["by_name"]["happy"]
    report = json.loads((tmp_path / "b" / "balance.json").read_text())
    assert report["before"] == report["after"] == dict(zip(CLASSES_7, TRAIN))
    assert (tmp_path / "b" / "counts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run_balance(BalanceParams(method="smote"), dataset, tmp_path / "s")
    balanced = json.loads((tmp_path / "s" / "class_weights.json").read_text())
    assert balanced["by_name"] == pytest.approx({c: 1.0 for c in CLASSES_7})


def test_class_weight_power_tempers_the_weights_and_keeps_the_mean_face_weight(dataset, tmp_path):
    run_balance(BalanceParams(method="none", class_weight_power=0.5), dataset, tmp_path / "b")
    weights = json.loads((tmp_path / "b" / "class_weights.json").read_text())["by_name"]
    counts = dict(zip(CLASSES_7, TRAIN))
    full = {c: sum(TRAIN) / (7 * n) for c, n in counts.items()}
    # the ratio between two classes' weights is the square root of the full weights' ratio
    assert weights["disgust"] / weights["happy"] == pytest.approx((full["disgust"] / full["happy"]) ** 0.5)
    assert 1 < weights["disgust"] < full["disgust"]
    assert sum(weights[c] * n for c, n in counts.items()) == pytest.approx(sum(TRAIN))
    run_balance(BalanceParams(method="none", class_weight_power=0), dataset, tmp_path / "u")
    unweighted = json.loads((tmp_path / "u" / "class_weights.json").read_text())["by_name"]
    assert unweighted == pytest.approx({c: 1.0 for c in CLASSES_7})


@pytest.mark.parametrize("raw, message", [
    ({"method": "tomek"}, r"\[balance\]\.method: one of .* not 'tomek'"),
    ({"class_weight_power": 2}, r"class_weight_power: a number from 0 to 1, not 2"),
    ({"method": "smote", "sampling_strategy": {"angry": 30}},
     r"target 30 for angry is below its 40 real train faces"),
    ({"method": "random_under", "sampling_strategy": {"angry": 50}}, r"target 50 for angry is above its 40"),
    ({"method": "smote", "k_neighbors": 8}, r"k_neighbors: .* more than 8 real disgust faces; disgust has 8"),
    ({"method": "adasyn", "k_neighbors": 9}, r"k_neighbors: .* disgust has 8"),
    ({"method": "smote", "sampling_strategy": {"angy": 50, "happy": 60}}, r"unknown class names \['angy'\]"),
    ({"method": "smote", "sampling_strategy": {"ratio": 0.5, "angry": 50}}, r"either \{ratio: share\}"),
    ({"method": "smote", "sampling_strategy": "minority"}, r"sampling_strategy: 'auto', a share"),
    ({"method": "smote", "sampling_strategy": 1.5}, r"share of the largest class must lie in \(0, 1\]"),
    ({"method": "none", "augment_after": True}, r"augment_after: .* not 'none'"),
    ({"method": "smote", "feature_space": "pca", "pca_components": 5000}, r"pca_components: at most"),
    ({"augment": {"rotation": 10}}, r"\[balance.augment\]: unknown keys \['rotation'\]"),
])
def test_parameter_errors_are_clear_and_come_before_any_work(raw, message, dataset, tmp_path):
    with pytest.raises(ParamsError, match=message):
        run_balance(section({"seed": 1, "balance": raw}, "balance", BalanceParams), dataset, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_resampling_that_would_not_fit_in_memory_is_refused_first_with_settings_that_fit(dataset, tmp_path):
    real, new = sum(TRAIN), 7 * max(TRAIN) - sum(TRAIN)
    pixels = ResampleSize(real, new).bytes("smote", True)
    pca = ResampleSize(real, new, 10).bytes("smote", True)
    assert pca < pixels
    limit = (pca + pixels) / 2 / GB  # room for the PCA way only
    with pytest.raises(ParamsError, match=rf"method smote would need about .* to make {new} faces from {real} .*"
                                          r"feature_space: pca .*method: none with train.class_weights: true"):
        run_balance(BalanceParams(method="smote", pca_components=10, max_memory_gb=limit), dataset, tmp_path / "b")
    assert not (tmp_path / "b").exists()
    run_balance(BalanceParams(method="smote", feature_space="pca", pca_components=10, max_memory_gb=limit),
                dataset, tmp_path / "b")
    assert len(_manifest(tmp_path / "b")) == 7 * max(TRAIN)


def test_same_seed_same_output_other_seed_other_faces(dataset, tmp_path):
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        params = BalanceParams(method="smote", augment_after=True, seed=seed)
        run_balance(params, dataset, tmp_path / name)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert read_table(tmp_path / "a" / "manifest.parquet") != read_table(tmp_path / "c" / "manifest.parquet")


def test_rerun_replaces_the_previous_output(dataset, tmp_path):
    run_balance(BalanceParams(method="smote"), dataset, tmp_path / "b")
    run_balance(BalanceParams(method="none"), dataset, tmp_path / "b")
    rows = _manifest(tmp_path / "b")
    assert {r["origin"] for r in rows} == {"real"}
    assert len(list((tmp_path / "b" / "train").rglob("*.png"))) == sum(TRAIN)
    assert [p.name for p in tmp_path.iterdir()] == ["b"]
