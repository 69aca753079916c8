"""The dataset folder: class directories Keras and FiftyOne read, complete and reproducible."""

from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from fiftyone_fixture import fo  # noqa: F401  (one throwaway FiftyOne database per test process)
from PIL import Image
from split_helpers import aligned_table, distinct_images, fer_rows, subject_rows, write_aligned

from ferdata.manifest import DATASET_SCHEMA, pixels_to_array
from ferdata.split import SplitParams, run_split
from ferdata.taxonomy import CLASSES_7

# val has no "disgust" at all: its folder must still exist
COUNTS = {"train": [12, 3, 9, 15, 10, 8, 11], "val": [2, 0, 3, 4, 2, 2, 3], "test": [3, 1, 2, 4, 3, 2, 3]}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("split")
    rows = fer_rows(COUNTS) + subject_rows("jaffe", 10, 4, seed=2)
    write_aligned(root / "aligned", aligned_table(rows, distinct_images(len(rows), seed=8)))
    result = run_split(SplitParams(), root / "aligned", root / "dataset")
    return root / "dataset", result


def _manifest(folder):
    return pq.read_table(folder / "manifest.parquet")


def _class_counts(manifest, split):
    return Counter(r["label"] for r in manifest.select(["split", "label"]).to_pylist() if r["split"] == split)


def test_every_split_has_a_folder_for_every_class(dataset):
    folder, result = dataset
    for split in ("train", "val", "test"):
        assert sorted(p.name for p in (folder / split).iterdir()) == sorted(CLASSES_7)
    assert list((folder / "val" / "disgust").iterdir()) == []
    assert result.counts["val"]["disgust"] == 0


def test_manifest_and_files_agree(dataset):
    folder, _ = dataset
    manifest = _manifest(folder)
    assert manifest.schema.equals(DATASET_SCHEMA)
    pngs = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.png"))
    assert pngs == sorted(manifest["path"].to_pylist())
    pixels = pixels_to_array(manifest["pixels"])
    for rel, expected in zip(manifest["path"].to_pylist()[:20], pixels):
        with Image.open(folder / rel) as img:
            assert (img.mode, img.size) == ("L", (48, 48))
            np.testing.assert_array_equal(np.asarray(img), expected)


@pytest.mark.parametrize("split", ["train", "val"])
def test_keras_reads_the_class_directories_in_canonical_order(dataset, split):
    import keras

    folder, _ = dataset
    manifest = _manifest(folder)
    ds = keras.utils.image_dataset_from_directory(
        folder / split, class_names=list(CLASSES_7), color_mode="grayscale", image_size=(48, 48),
        shuffle=False, batch_size=32)
    labels = np.concatenate([y.numpy() for _, y in ds])
    images = np.concatenate([x.numpy() for x, _ in ds])
    expected = _class_counts(manifest, split)
    assert Counter(CLASSES_7[k] for k in labels) == expected
    by_path = {str(folder / p): (r, px) for p, r, px in zip(
        manifest["path"].to_pylist(), manifest["label_index"].to_pylist(), pixels_to_array(manifest["pixels"]))}
    for path, label, image in zip(ds.file_paths, labels, images):
        label_index, pixels = by_path[path]
        assert label == label_index
        np.testing.assert_array_equal(image[..., 0], pixels)


def test_fiftyone_reads_each_split_as_a_classification_tree(dataset, fo):
    folder, _ = dataset
    manifest = _manifest(folder)
    for split in ("train", "test"):
        ds = fo.Dataset.from_dir(dataset_dir=str(folder / split),
                                 dataset_type=fo.types.ImageClassificationDirectoryTree)
        try:
            assert not ds.persistent
            assert ds.count_values("ground_truth.label") == dict(_class_counts(manifest, split))
            assert ds.count() == sum(_class_counts(manifest, split).values())
        finally:
            ds.delete()


def test_two_runs_write_identical_bytes(dataset, tmp_path):
    folder, _ = dataset
    run_split(SplitParams(), folder.parent / "aligned", tmp_path / "again")
    first = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    second = {str(p.relative_to(tmp_path / "again")): p.read_bytes()
              for p in sorted((tmp_path / "again").rglob("*")) if p.is_file()}
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_a_rebuild_replaces_the_folder_whole(tmp_path):
    rows = fer_rows({"train": [3] * 7, "val": [1] * 7, "test": [1] * 7})
    write_aligned(tmp_path / "aligned", aligned_table(rows, distinct_images(len(rows))))
    run_split(SplitParams(), tmp_path / "aligned", tmp_path / "dataset")
    (tmp_path / "dataset" / "train" / "happy" / "stale.png").write_bytes(b"old")
    run_split(SplitParams(), tmp_path / "aligned", tmp_path / "dataset")
    assert not (tmp_path / "dataset" / "train" / "happy" / "stale.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aligned", "dataset"]
