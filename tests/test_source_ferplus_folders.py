"""FER2013 as FER+'s folders (FER2013Train|FER2013Valid|FER2013Test with label.csv)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ferdata.ingest import IngestParams, run_ingest
from ferdata.sources.fer2013 import FER2013
from helpers import assert_balanced, class_pattern, rejects_at

# votes in fer2013new.csv's order: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
VOTES = {
    "happy": [0, 9, 1, 0, 0, 0, 0, 0, 0, 0],
    "sad": [2, 0, 0, 7, 1, 0, 0, 0, 0, 0],
    "angry (no majority)": [0, 0, 0, 3, 4, 2, 0, 0, 1, 0],
    "not a face": [0, 0, 0, 0, 0, 0, 0, 0, 2, 8],
}


def write_folder(root: Path, folder: str, lines: list[tuple[str, list[int]]], seed: int = 0) -> None:
    """FER+'s folder: a 48x48 PNG per line and label.csv with name, box and votes."""
    rng = np.random.default_rng(seed)
    (root / folder).mkdir(parents=True, exist_ok=True)
    text = []
    for k, (name, votes) in enumerate(lines):
        Image.fromarray(class_pattern(k % 7, rng)).save(root / folder / name)
        text.append(f'{name},"(0, 0, 48, 48)",' + ",".join(map(str, votes)))
    (root / folder / "label.csv").write_text("\n".join(text) + "\n")


@pytest.fixture()
def layout(tmp_path) -> Path:
    root = tmp_path / "raw" / "fer2013"
    write_folder(root, "FER2013Train", [("fer0000000.png", VOTES["happy"]), ("fer0000001.png", VOTES["sad"]),
                                        ("fer0000002.png", VOTES["angry (no majority)"]),
                                        ("fer0000004.png", VOTES["not a face"])])
    write_folder(root, "FER2013Valid", [("fer0000005.png", VOTES["sad"])], seed=1)
    write_folder(root, "FER2013Test", [("fer0000006.png", VOTES["happy"])], seed=2)
    return root


def test_images_become_samples_named_by_file_with_the_folders_split_and_the_plurality(layout):
    batch = FER2013(layout).read()
    records = {r.sample_id: r for r in batch.records}
    assert {sid: (r.split, r.native_label) for sid, r in records.items()} == {
        "fer2013-fer0000000": ("train", "happy"), "fer2013-fer0000001": ("train", "sad"),
        "fer2013-fer0000002": ("train", "angry"), "fer2013-fer0000005": ("val", "sad"),
        "fer2013-fer0000006": ("test", "happy")}
    first = records["fer2013-fer0000000"]
    assert (first.source_file, first.source_line) == ("FER2013Train/fer0000000.png", 1)
    assert np.array_equal(batch.pixels[first.pixels_row],
                          np.asarray(Image.open(layout / "FER2013Train" / "fer0000000.png")))
    assert rejects_at(batch) == {"FER2013Train/label.csv:4": ("dropped", "ferplus_not_a_face")}
    assert_balanced(batch)


def test_every_bad_line_and_stray_image_is_rejected_by_location(layout):
    train = layout / "FER2013Train"
    with (train / "label.csv").open("a") as fh:
        fh.write('fer0000009.png,"(0, 0, 48, 48)",' + ",".join(map(str, VOTES["happy"])) + "\n")  # no image
        fh.write('fer0000000.png,"(0, 0, 48, 48)",' + ",".join(map(str, VOTES["sad"])) + "\n")  # listed twice
        fh.write('fer0000010.png,"(0, 0, 48, 48)",1,2,three,0,0,0,0,0,0,0\n')
        fh.write("fer0000011.png,0,0,48,48\n")
        fh.write('fer0000012.png,"(0, 0, 48, 48)",' + ",".join(map(str, VOTES["happy"])) + "\n")
        fh.write('fer0000013.png,"(0, 0, 48, 48)",' + ",".join(map(str, VOTES["happy"])) + "\n")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(train / "fer0000012.png")  # not 48x48
    (train / "fer0000013.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(train / "fer0000099.png")  # on no line
    batch = FER2013(layout).read()
    assert rejects_at(batch) == {
        "FER2013Train/label.csv:4": ("dropped", "ferplus_not_a_face"),
        "FER2013Train/label.csv:5": ("rejected", "missing_image"),
        "FER2013Train/label.csv:6": ("rejected", "duplicate_sample_id"),
        "FER2013Train/label.csv:7": ("rejected", "bad_vote"),
        "FER2013Train/label.csv:8": ("rejected", "malformed_row"),
        "FER2013Train/label.csv:9": ("rejected", "unreadable_image"),
        "FER2013Train/label.csv:10": ("rejected", "unreadable_image"),
        "FER2013Train/fer0000099.png": ("rejected", "unlabelled_image"),
    }
    assert len(batch.records) == 5
    assert_balanced(batch)


def test_ingest_takes_the_labels_from_the_folders_votes_without_fer2013new(layout, tmp_path):
    params = IngestParams(sources=["fer2013"], labels="ferplus-majority")
    result = run_ingest(params, layout.parent, tmp_path / "interim")
    manifest = pq.read_table(tmp_path / "interim" / "manifest.parquet").to_pylist()
    assert {r["sample_id"]: (r["split"], r["label"]) for r in manifest} == {
        "fer2013-fer0000000": ("train", "happy"), "fer2013-fer0000001": ("train", "sad"),
        "fer2013-fer0000005": ("val", "sad"), "fer2013-fer0000006": ("test", "happy")}
    account = result.accounts["fer2013"]
    assert account.dropped == {"ferplus_not_a_face": 1, "ferplus_no_majority": 1}
    assert account.balanced


def test_ingest_refuses_fer2013_labels_from_the_folders_and_says_what_to_set(layout, tmp_path):
    with pytest.raises(ValueError, match="ingest.labels to one of ferplus-majority"):
        run_ingest(IngestParams(sources=["fer2013"]), layout.parent, tmp_path / "interim")


def test_a_csv_beside_the_folders_is_read_instead(layout):
    (layout / "fer2013.csv").write_text("emotion,pixels,Usage\n3," + " ".join(["7"] * 2304) + ",Training\n")
    batch = FER2013(layout).read()
    assert [r.sample_id for r in batch.records] == ["fer2013-000000"]
