"""The RAF-DB reader on small generated copies of its layout (FORMATS.md)."""

from pathlib import Path

import numpy as np
import pytest
from helpers import assert_balanced, read_measured, rejects_at
from PIL import Image

from ferdata.ingest import count_accepted, to_manifest
from ferdata.source_rows import compact
from ferdata.images import decode_gray
from ferdata.sources.base import MissingSourceError, content_hash
from ferdata.sources.rafdb import LABEL_FILE, RAFDB
from ferdata.taxonomy import Taxonomy


def photo(value: int, size: tuple[int, int] = (120, 90)) -> np.ndarray:
    """An RGB image whose pixels identify it."""
    img = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    img[10:30, 20:60] = (255 - value, 0, value)
    return img


def write_rafdb(root: Path, lines: list[str], images: dict[str, int] | None = None) -> None:
    """The label file with ``lines``, and for each ``name: value`` an original and an aligned image."""
    (root / "EmoLabel").mkdir(parents=True)
    (root / LABEL_FILE).write_text("".join(f"{line}\n" for line in lines))
    for folder in ("original", "aligned"):
        (root / "Image" / folder).mkdir(parents=True)
    for name, value in (images or {}).items():
        stem = Path(name).stem
        Image.fromarray(photo(value)).save(root / "Image" / "original" / name, quality=95)
        Image.fromarray(photo(value, (100, 100))).save(root / "Image" / "aligned" / f"{stem}_aligned.jpg")


def test_lines_give_ids_labels_splits_and_the_original_images(tmp_path):
    write_rafdb(tmp_path, ["train_00001.jpg 5", "train_00002.jpg 4", "test_0001.jpg 1"],
                {"train_00001.jpg": 10, "train_00002.jpg": 20, "test_0001.jpg": 30})
    batch = read_measured(RAFDB(tmp_path))
    records = {r.sample_id: r for r in batch.records}
    assert sorted((sid, r.native_label, r.split) for sid, r in records.items()) == [
        ("raf-db-test_0001", "1", "test"), ("raf-db-train_00001", "5", "train"),
        ("raf-db-train_00002", "4", "train")]
    r = records["raf-db-train_00001"]
    assert (r.source_file, r.source_line, r.width, r.height) == ("Image/original/train_00001.jpg", 1, 120, 90)
    assert r.content_hash == content_hash(decode_gray(tmp_path / r.source_file))
    assert batch.given == {} and batch.rejects == [] and batch.seen == 3


def test_aligned_images_are_read_and_marked_pre_aligned(tmp_path):
    write_rafdb(tmp_path, ["train_00001.jpg 7"], {"train_00001.jpg": 10})
    batch = read_measured(RAFDB(tmp_path, images="aligned"))
    [record] = batch.records
    assert record.source_file == "Image/aligned/train_00001_aligned.jpg"
    assert (record.width, record.height) == (100, 100)
    given = batch.given[record.sample_id]
    assert given.prealigned and given.box is None and given.landmarks is None


def test_labels_map_to_the_canonical_classes(tmp_path):
    codes = "1234567"
    names = [f"train_0000{c}.jpg" for c in codes]
    write_rafdb(tmp_path, [f"{name} {c}" for name, c in zip(names, codes)],
                {name: 9 * int(c) for name, c in zip(names, codes)})
    taxonomy = Taxonomy.of_size(7)
    table, _, accounts = to_manifest({"raf-db": compact(read_measured(RAFDB(tmp_path)))}, taxonomy)
    count_accepted(table, accounts, taxonomy)
    assert dict(zip(table["native_label"].to_pylist(), table["label"].to_pylist())) == {
        "1": "surprise", "2": "fear", "3": "disgust", "4": "happy", "5": "sad", "6": "angry", "7": "neutral"}
    assert accounts["raf-db"].balanced


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_every_bad_line_is_recorded_while_the_rest_is_read(tmp_path):
    write_rafdb(tmp_path, [
        "train_00001.jpg 5",
        "train_00002.jpg 8",          # label out of range
        "train_00003.jpg",            # no label
        "photo_0001.jpg 4",           # no split prefix
        "train_00004.jpg 3",          # image missing
        "",                           # blank: not an item
        "train_00005.jpg 2",          # image unreadable
        "train_00001.jpg 5",          # listed twice
        "test_0001.jpg x",            # label not a number
    ], {"train_00001.jpg": 10, "train_00002.jpg": 20, "train_00003.jpg": 30, "photo_0001.jpg": 40})
    (tmp_path / "Image" / "original" / "train_00005.jpg").write_bytes(b"\xff\xd8 truncated")
    batch = read_measured(RAFDB(tmp_path))
    assert [r.sample_id for r in batch.records] == ["raf-db-train_00001"]
    assert rejects_at(batch) == {
        f"{LABEL_FILE}:2": ("rejected", "unknown_label"),
        f"{LABEL_FILE}:3": ("rejected", "malformed_row"),
        f"{LABEL_FILE}:4": ("rejected", "bad_file_name"),
        f"{LABEL_FILE}:5": ("rejected", "missing_image"),
        f"{LABEL_FILE}:7": ("rejected", "unreadable_image"),
        f"{LABEL_FILE}:8": ("rejected", "duplicate_sample_id"),
        f"{LABEL_FILE}:9": ("rejected", "unknown_label"),
    }
    missing = next(r for r in batch.rejects if r.reason == "missing_image")
    assert str(missing) == (f"{LABEL_FILE}:5: image Image/original/train_00004.jpg not found")
    assert missing.sample_id == "raf-db-train_00004"
    assert_balanced(batch)


def test_a_missing_aligned_image_is_named_by_its_aligned_path(tmp_path):
    write_rafdb(tmp_path, ["train_00001.jpg 5"], {})
    Image.fromarray(photo(10)).save(tmp_path / "Image" / "original" / "train_00001.jpg")
    batch = read_measured(RAFDB(tmp_path, images="aligned"))
    assert [r.message for r in batch.rejects] == ["image Image/aligned/train_00001_aligned.jpg not found"]


def test_check_names_what_is_missing_and_options_are_checked(tmp_path):
    with pytest.raises(MissingSourceError, match="list_patition_label.txt.*Image/original"):
        RAFDB(tmp_path).check()
    with pytest.raises(ValueError, match="ingest.raf-db.images.*original, aligned"):
        RAFDB(tmp_path, images="cropped")
    with pytest.raises(TypeError, match="image"):
        RAFDB(tmp_path, image="aligned")
