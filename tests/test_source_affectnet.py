"""The AffectNet reader on small generated copies of its layout (FORMATS.md)."""

from pathlib import Path

import numpy as np
import pytest
from helpers import assert_balanced, read_measured, rejects_at
from PIL import Image

from ferdata.ingest import count_accepted, to_manifest
from ferdata.source_rows import compact
from ferdata.sources.affectnet import AffectNet
from ferdata.sources.base import MissingSourceError
from ferdata.taxonomy import Taxonomy

HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,"
          "valence,arousal")
POINTS = np.stack([np.linspace(40, 160, 68), np.linspace(50, 150, 68)], axis=1).round(2)
MARKS = ";".join(f"{v:.2f}" for v in POINTS.ravel())


def row(path: str, expression: str = "1", box: str = "30,40,140,140", marks: str = MARKS,
        affect: str = "0.5,-0.25") -> str:
    return f"{path},{box},{marks},{expression},{affect}"


def write_affectnet(root: Path, training: list[str], validation: list[str] = (),
                    images: tuple[str, ...] = ()) -> None:
    """The two CSVs, and a 200x200 image at each path in ``images``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "training.csv").write_text("\n".join([HEADER, *training]) + "\n")
    (root / "validation.csv").write_text("\n".join([HEADER, *validation]) + "\n")
    (root / "Manually_Annotated_Images").mkdir(exist_ok=True)
    for i, path in enumerate(images):
        file = root / "Manually_Annotated_Images" / path
        file.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((200, 200, 3), 40 + i, np.uint8)).save(file)


def test_rows_give_ids_splits_affect_and_what_align_needs(tmp_path):
    write_affectnet(tmp_path, [row("689/737db2.jpg", "3"), row("12/ab9f.jpg", "0", affect="-2,-2")],
                    [row("5/ffe0.jpg", "6")], images=("689/737db2.jpg", "12/ab9f.jpg", "5/ffe0.jpg"))
    batch = read_measured(AffectNet(tmp_path))
    records = {r.sample_id: r for r in batch.records}
    assert sorted((sid, r.native_label, r.split) for sid, r in records.items()) == [
        ("affectnet-12_ab9f", "0", "train"), ("affectnet-5_ffe0", "6", "test"),
        ("affectnet-689_737db2", "3", "train")]
    r = records["affectnet-689_737db2"]
    assert (r.source_file, r.source_line, r.width, r.height) == (
        "Manually_Annotated_Images/689/737db2.jpg", 2, 200, 200)
    assert (r.valence, r.arousal) == (0.5, -0.25)
    assert (records["affectnet-12_ab9f"].valence, records["affectnet-12_ab9f"].arousal) == (None, None)
    given = batch.given[r.sample_id]
    assert given.box == (30.0, 40.0, 170.0, 180.0) and not given.prealigned
    np.testing.assert_allclose(given.landmarks, POINTS, atol=1e-4)
    assert batch.rejects == [] and batch.seen == 3


def test_codes_8_to_10_are_dropped_and_contempt_follows_the_taxonomy(tmp_path):
    codes = [str(c) for c in range(11)]
    files = tuple(f"1/{c}.jpg" for c in codes)
    write_affectnet(tmp_path, [row(file, c) for file, c in zip(files, codes)], images=files)
    batch = read_measured(AffectNet(tmp_path))
    assert rejects_at(batch) == {"training.csv:10": ("dropped", "expression_none"),
                                 "training.csv:11": ("dropped", "expression_uncertain"),
                                 "training.csv:12": ("dropped", "not_a_face")}
    for size, accepted in ((7, 7), (8, 8)):
        taxonomy = Taxonomy.of_size(size)
        table, _, accounts = to_manifest({"affectnet": compact(batch)}, taxonomy)
        count_accepted(table, accounts, taxonomy)
        assert accounts["affectnet"].accepted == accepted and accounts["affectnet"].balanced
    labels = dict(zip(table["native_label"].to_pylist(), table["label"].to_pylist()))
    assert labels == {"0": "neutral", "1": "happy", "2": "sad", "3": "surprise", "4": "fear",
                      "5": "disgust", "6": "angry", "7": "contempt"}


def test_every_bad_row_is_recorded_while_the_rest_is_read(tmp_path):
    good = ("1/ok.jpg", "1/11.jpg", "1/lm1.jpg", "1/lm2.jpg", "1/lm3.jpg", "1/out.jpg", "1/box.jpg",
            "1/neg.jpg", "1/va.jpg", "1/short.jpg")
    write_affectnet(tmp_path, [
        row("1/ok.jpg"),                                       # line 2
        row("1/11.jpg", "11"),                                 # code out of range
        row("1/lm1.jpg", marks=MARKS.rsplit(";", 2)[0]),       # 67 points
        row("1/lm2.jpg", marks=MARKS.replace("40.00", "4o.00", 1)),  # not a number
        row("1/lm3.jpg", marks=""),                            # no landmarks at all
        row("1/gone.jpg"),                                     # image missing
        row("1/out.jpg", box="150,160,120,120"),               # box mostly outside the 200x200 image
        row("1/box.jpg", box="30,40,wide,140"),                # box not numbers
        row("1/neg.jpg", box="30,40,0,140"),                   # empty box
        row("1/va.jpg", affect="1.5,0.1"),                     # valence out of range
        "1/short.jpg,30,40,140",                               # too few fields
        row("1/ok.jpg"),                                       # listed twice
        row("../escape.jpg"),                                  # not under the image folder
    ], images=good)
    batch = read_measured(AffectNet(tmp_path))
    assert [r.sample_id for r in batch.records] == ["affectnet-1_ok"]
    assert rejects_at(batch) == {
        "training.csv:3": ("rejected", "unknown_label"),
        "training.csv:4": ("rejected", "bad_landmarks"),
        "training.csv:5": ("rejected", "bad_landmarks"),
        "training.csv:6": ("rejected", "bad_landmarks"),
        "training.csv:7": ("rejected", "missing_image"),
        "training.csv:8": ("rejected", "box_outside_image"),
        "training.csv:9": ("rejected", "bad_box"),
        "training.csv:10": ("rejected", "bad_box"),
        "training.csv:11": ("rejected", "bad_affect"),
        "training.csv:12": ("rejected", "malformed_row"),
        "training.csv:13": ("rejected", "duplicate_sample_id"),
        "training.csv:14": ("rejected", "bad_file_name"),
    }
    messages = {r.location: r.message for r in batch.rejects}
    assert "134 numbers; expected 136" in messages["training.csv:4"]
    assert "'4o.00'" in messages["training.csv:5"]
    assert messages["training.csv:7"] == "image Manually_Annotated_Images/1/gone.jpg not found"
    assert "200x200" in messages["training.csv:8"]
    assert_balanced(batch)


def test_a_csv_without_the_columns_is_one_reject_and_the_other_is_read(tmp_path):
    write_affectnet(tmp_path, [], [row("1/a.jpg")], images=("1/a.jpg",))
    (tmp_path / "training.csv").write_text("path,expression\n1/a.jpg,1\n")
    batch = read_measured(AffectNet(tmp_path))
    assert rejects_at(batch) == {"training.csv:1": ("rejected", "missing_header")}
    assert "face_x" in batch.rejects[0].message
    assert [r.split for r in batch.records] == ["test"]
    assert_balanced(batch)


def test_check_names_the_missing_files(tmp_path):
    with pytest.raises(MissingSourceError, match="training.csv.*validation.csv.*Manually_Annotated_Images"):
        AffectNet(tmp_path).check()
    write_affectnet(tmp_path, [])
    AffectNet(tmp_path).check()
