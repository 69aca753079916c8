"""The JAFFE reader on small generated copies of its layout (FORMATS.md)."""

from pathlib import Path

import numpy as np
import pytest
from helpers import assert_balanced, read_measured, rejects_at
from PIL import Image

from ferdata.sources.base import MissingSourceError, content_hash
from ferdata.sources.jaffe import JAFFE


def face(value: int) -> np.ndarray:
    """A 48x64 grayscale image whose pixels identify it."""
    img = np.full((48, 64), value, dtype=np.uint8)
    img[5:15, 20:40] = 255 - value
    return img


def write_tiff(folder: Path, name: str, value: int = 100, mode: str = "L") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(face(value))
    path = folder / name
    (img if mode == "L" else img.convert(mode)).save(path)
    return path


def write_palette_tiff(folder: Path, name: str, indices: np.ndarray) -> Path:
    """A palette-mode TIFF whose grey palette maps index i to 255 - i."""
    img = Image.frombytes("P", indices.shape[::-1], indices.tobytes())
    img.putpalette([255 - i for i in range(256) for _ in range(3)])
    path = folder / name
    img.save(path)
    with Image.open(path) as check:
        assert check.mode == "P"
    return path


def test_names_give_subject_label_and_sample_id(tmp_path):
    write_tiff(tmp_path, "KA.AN1.39.tiff", 39)
    write_tiff(tmp_path, "KL.SU2.163.tif", 163)
    write_tiff(tmp_path, "YM.NE3.51.TIFF", 51)
    write_tiff(tmp_path, "tm.ha1.181.tiff", 181)
    batch = read_measured(JAFFE(tmp_path))
    records = {r.sample_id: r for r in batch.records}
    assert sorted((sid, r.subject, r.native_label) for sid, r in records.items()) == [
        ("jaffe-KA.AN1.39", "KA", "AN"), ("jaffe-KL.SU2.163", "KL", "SU"),
        ("jaffe-TM.HA1.181", "TM", "HA"), ("jaffe-YM.NE3.51", "YM", "NE")]
    r = records["jaffe-KA.AN1.39"]
    assert (r.source_file, r.width, r.height, r.pixels_row, r.sequence, r.frame) == (
        "KA.AN1.39.tiff", 64, 48, None, None, None)
    assert r.content_hash == content_hash(face(39))
    assert batch.rejects == [] and batch.seen == 4


def test_palette_and_rgb_tiffs_become_grayscale(tmp_path):
    indices = np.arange(48 * 64, dtype=np.uint32).reshape(48, 64).astype(np.uint8)
    write_palette_tiff(tmp_path, "KM.DI1.20.tiff", indices)
    write_tiff(tmp_path, "KR.FE1.70.tiff", 70, mode="RGB")
    records = {r.sample_id: r for r in read_measured(JAFFE(tmp_path)).records}
    assert records["jaffe-KM.DI1.20"].content_hash == content_hash(255 - indices)
    assert records["jaffe-KR.FE1.70"].content_hash == content_hash(face(70))


def test_images_may_sit_in_one_subfolder(tmp_path):
    write_tiff(tmp_path / "jaffe", "KA.AN1.39.tiff")
    (tmp_path / "README").write_text("The JAFFE images\n")
    batch = read_measured(JAFFE(tmp_path))
    assert [r.source_file for r in batch.records] == ["jaffe/KA.AN1.39.tiff"]
    assert rejects_at(batch) == {"README": ("dropped", "not_an_image")}
    assert_balanced(batch)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_every_bad_file_is_recorded_while_the_rest_is_read(tmp_path):
    write_tiff(tmp_path, "KA.AN1.39.tiff")
    write_tiff(tmp_path, "NA.SA1.100.tiff")
    (tmp_path / "README.txt").write_text("readme\n")
    (tmp_path / "semantic_ratings.txt").write_text("PIC AN DI\n1 2.9 1.8\n")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    write_tiff(tmp_path, "KA.XX1.40.tiff")
    write_tiff(tmp_path, "portrait.tiff")
    (tmp_path / "KA.HA1.29.tiff").write_bytes(b"")
    (tmp_path / "KA.HA1.30.tiff").write_bytes(b"II*\0 not really a tiff")
    write_tiff(tmp_path, "KA.AN1.39.tif")
    batch = read_measured(JAFFE(tmp_path))
    assert sorted(r.sample_id for r in batch.records) == ["jaffe-KA.AN1.39", "jaffe-NA.SA1.100"]
    assert rejects_at(batch) == {
        "README.txt": ("dropped", "not_an_image"),
        "semantic_ratings.txt": ("dropped", "not_an_image"),
        ".DS_Store": ("dropped", "not_an_image"),
        "KA.XX1.40.tiff": ("rejected", "unknown_label"),
        "portrait.tiff": ("rejected", "bad_file_name"),
        "KA.HA1.29.tiff": ("rejected", "unreadable_image"),
        "KA.HA1.30.tiff": ("rejected", "unreadable_image"),
        "KA.AN1.39.tiff": ("rejected", "duplicate_sample_id"),
    }
    unreadable = next(r for r in batch.rejects if r.location == "KA.HA1.29.tiff")
    assert unreadable.sample_id == "jaffe-KA.HA1.29" and "0 bytes" in str(unreadable)
    assert batch.seen == 10
    assert_balanced(batch)


def test_reading_twice_gives_identical_batches(tmp_path):
    for i, name in enumerate(["UY.SU1.200.tiff", "KA.AN1.39.tiff", "MK.FE2.131.tiff"]):
        write_tiff(tmp_path, name, 10 * i)
    first, second = read_measured(JAFFE(tmp_path)), read_measured(JAFFE(tmp_path))
    assert first.records == second.records
    assert [r.subject for r in first.records] == ["KA", "MK", "UY"]


def test_check_names_the_folder_without_tiffs(tmp_path):
    with pytest.raises(MissingSourceError, match=str(tmp_path / "absent")):
        JAFFE(tmp_path / "absent").check()
    (tmp_path / "README").write_text("no images here\n")
    with pytest.raises(MissingSourceError, match=str(tmp_path)):
        JAFFE(tmp_path).check()
    write_tiff(tmp_path / "jaffe", "KA.AN1.39.tiff")
    JAFFE(tmp_path).check()


def test_two_image_subfolders_are_refused(tmp_path):
    write_tiff(tmp_path / "copy1", "KA.AN1.39.tiff")
    write_tiff(tmp_path / "copy2", "KA.AN1.39.tiff")
    with pytest.raises(ValueError, match="copy1, copy2"):
        JAFFE(tmp_path).check()


def test_jaffe_takes_no_options(tmp_path):
    with pytest.raises(TypeError, match="pose"):
        JAFFE(tmp_path, pose=1)
