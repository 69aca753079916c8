"""Labelled image folders: a params entry, not code, makes a source (README, "Your data")."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import assert_balanced, read_measured, rejects_at
from PIL import Image

from ferdata.ingest import IngestParams, run_ingest
from ferdata.params import section
from ferdata.sources.base import MissingSourceError
from ferdata.sources.folder import LabelledFolder, walk_files

LABELS = {"anger": "angry", "happiness": "happy"}


def write_images(root: Path, *files: str) -> None:
    for i, file in enumerate(files):
        path = root / file
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((60, 80), 30 + 7 * i, np.uint8)).save(path)


def test_class_folders_are_mapped_and_splits_csv_gives_splits(tmp_path):
    write_images(tmp_path, "anger/IMG_0001.jpg", "happiness/IMG_0002.png", "neutral/IMG_0003.jpg",
                 "happiness/2019/IMG_0004.jpg")
    (tmp_path / "splits.csv").write_text("file,split\nanger/IMG_0001.jpg,test\nhappiness/IMG_0002.png,val\n")
    batch = read_measured(LabelledFolder(tmp_path, name="lab-photos", labels=LABELS))
    assert sorted((r.sample_id, r.native_label, r.split) for r in batch.records) == [
        ("lab-photos-anger_IMG_0001", "anger", "test"),
        ("lab-photos-happiness_2019_IMG_0004", "happiness", None),
        ("lab-photos-happiness_IMG_0002", "happiness", "val"),
        ("lab-photos-neutral_IMG_0003", "neutral", None)]
    assert batch.labels["anger"] == "angry" and batch.labels["neutral"] == "neutral"
    assert batch.rejects == [] and batch.seen == 4


def test_bad_files_and_splits_lines_are_recorded_while_the_rest_is_read(tmp_path):
    write_images(tmp_path, "anger/IMG_0001.jpg", "joy/IMG_0002.jpg", "IMG_0003.jpg", "anger/IMG_0004.jpg",
                 "anger/IMG_0004.png", "happiness/IMG_0005.jpg")
    (tmp_path / "anger" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (tmp_path / "anger" / "IMG_0006.jpg").write_bytes(b"")
    (tmp_path / "splits.csv").write_text("file,split\nanger/IMG_0001.jpg,train\nanger/IMG_0009.jpg,test\n"
                                         "happiness/IMG_0005.jpg,holdout\nanger/IMG_0004.jpg\n")
    batch = read_measured(LabelledFolder(tmp_path, name="mine", labels=LABELS))
    assert sorted(r.sample_id for r in batch.records) == ["mine-anger_IMG_0001", "mine-anger_IMG_0004"]
    assert rejects_at(batch) == {
        "joy/IMG_0002.jpg": ("rejected", "unknown_label"),
        "IMG_0003.jpg": ("rejected", "no_class_folder"),
        "anger/IMG_0004.png": ("rejected", "duplicate_sample_id"),
        "anger/Thumbs.db": ("dropped", "not_an_image"),
        "anger/IMG_0006.jpg": ("rejected", "unreadable_image"),
        "splits.csv:3": ("rejected", "missing_image"),
        "splits.csv:4": ("rejected", "unknown_split"),
        "splits.csv:5": ("rejected", "malformed_row"),
    }
    unknown = next(r for r in batch.rejects if r.reason == "unknown_label")
    assert "'joy'" in unknown.message and "ingest.folders.mine.labels" in unknown.message
    unknown_split = next(r for r in batch.rejects if r.reason == "unknown_split")
    assert unknown_split.sample_id == "mine-happiness_IMG_0005"
    assert_balanced(batch)


def test_a_splits_csv_without_its_header_is_one_reject(tmp_path):
    write_images(tmp_path, "anger/IMG_0001.jpg")
    (tmp_path / "splits.csv").write_text("anger/IMG_0001.jpg,test\n")
    batch = read_measured(LabelledFolder(tmp_path, name="mine", labels=LABELS))
    assert rejects_at(batch) == {"splits.csv:1": ("rejected", "missing_header")}
    assert [r.split for r in batch.records] == [None]
    assert_balanced(batch)


def test_a_label_map_naming_no_class_is_refused(tmp_path):
    with pytest.raises(ValueError, match="ingest.folders.mine.labels.*joy.*happy-ish"):
        LabelledFolder(tmp_path, name="mine", labels={"joy": "happy-ish"})
    with pytest.raises(MissingSourceError, match=str(tmp_path / "absent")):
        LabelledFolder(tmp_path / "absent", name="mine").check()


def test_two_folder_sources_from_params_alone(tmp_path):
    raw = tmp_path / "raw"
    write_images(raw / "studio", "anger/a.jpg", "happiness/b.jpg")
    write_images(raw / "webcam", "sad/c.jpg", "contempt/d.jpg")
    params = section({"seed": 3, "ingest": {
        "sources": ["studio", "webcam"], "val_from_train": {},
        "folders": {"studio": {"labels": LABELS}, "webcam": {}}}}, "ingest", IngestParams)
    result = run_ingest(params, raw, tmp_path / "interim")
    assert result.accounts["studio"].classes == {"angry": 1, "happy": 1}
    assert result.accounts["webcam"].classes == {"sad": 1}
    assert result.accounts["webcam"].dropped == {"not_in_taxonomy": 1}
    manifest = pq.read_table(tmp_path / "interim" / "manifest.parquet").to_pandas()
    assert sorted(manifest.sample_id) == ["studio-anger_a", "studio-happiness_b", "webcam-sad_c"]


@pytest.mark.parametrize("folders, message", [
    ({"fer2013": {}}, "fer2013 is a built-in source"),
    ({"studio": {"label": {}}}, r"\[ingest\].folders.studio:.*label"),
])
def test_bad_folder_entries_are_refused_by_key(tmp_path, folders, message):
    name = next(iter(folders))
    params = IngestParams(sources=[name], folders=folders)
    with pytest.raises(ValueError, match=message):
        run_ingest(params, tmp_path, tmp_path / "interim")


def test_a_folder_read_a_few_files_at_a_time_gives_the_same_files_in_path_order(tmp_path, monkeypatch):
    root = tmp_path / "raw" / "mine"
    write_images(root, "anger/b.jpg", "anger/a-b/c.jpg", "anger/a.b.jpg", "anger/a.b.png", "anger/a/z.jpg",
                 "anger/B.jpg", "happiness/.hidden/d.jpg", "happiness/e.png", "sad/f.jpg", "sad/g.jpg")
    (root / "sad" / "h.jpg").symlink_to(root / "sad" / "f.jpg")
    (root / "sad" / "linked").symlink_to(root / "anger", target_is_directory=True)  # not followed
    (root / "joy").mkdir()
    (root / "joy" / "x.jpg").write_bytes(b"")
    (root / "splits.csv").write_text("file,split\nsad/f.jpg,test\nsad/missing.jpg,val\nanger/b.jpg,holdout\n")
    reader = LabelledFolder(root, name="mine", labels=LABELS)
    walked = list(walk_files(root))
    assert walked == sorted(p for p in root.rglob("*") if p.is_file())  # as listed whole and sorted
    assert [r.source_file for r in reader.read().records] == [
        p.relative_to(root).as_posix() for p in walked
        if p.name not in ("splits.csv", "x.jpg", "b.jpg", "a.b.png")]  # rejected, below

    params = IngestParams(sources=["mine"], val_from_train={}, folders={"mine": {"labels": LABELS}})
    run_ingest(params, tmp_path / "raw", tmp_path / "whole")
    monkeypatch.setattr(LabelledFolder, "part_rows", 2)
    parts = list(reader.read_parts())
    assert len(parts) > 3 and all(p.labels == reader.labels for p in parts)
    run_ingest(params, tmp_path / "raw", tmp_path / "parts")
    written = sorted(p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole").rglob("*") if p.is_file())
    assert {"manifest.parquet/part-00000.parquet", "rejects.parquet"} <= set(map(str, written))
    for rel in written:
        assert (tmp_path / "parts" / rel).read_bytes() == (tmp_path / "whole" / rel).read_bytes(), rel
    reasons = pq.read_table(tmp_path / "parts" / "rejects.parquet")["reason"].to_pylist()
    assert sorted(reasons) == ["duplicate_sample_id", "missing_image", "unknown_label", "unknown_split"]
