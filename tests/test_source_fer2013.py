"""The FER2013 reader: its three releases, its bulk parser, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferdata.sources import fer2013
from ferdata.sources.base import MissingSourceError, SourceBatch, content_hash
from ferdata.sources.fer2013 import FER2013
from ferdata.taxonomy import CLASSES_7, SOURCE_LABELS

USAGES = ("Training", "PublicTest", "PrivateTest")
SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


def make_rows(n: int, seed: int = 0) -> list[tuple[str, np.ndarray, str]]:
    """n rows of (emotion code, 48x48 image, Usage); images span 0..255, including both ends."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        image = rng.integers(0, 256, size=(48, 48), dtype=np.uint8)
        image[0, :3] = (0, 255, 9)
        rows.append((str(i % 7), image, USAGES[i % 3]))
    return rows


def pixel_text(image: np.ndarray) -> str:
    return " ".join(map(str, image.ravel().tolist()))


def csv_lines(rows, header: str = "emotion,pixels,Usage") -> list[str]:
    """The lines of a fer2013.csv (or icml_face_data.csv, by header) holding these rows."""
    names = [name.strip().lower() for name in header.split(",")]
    lines = [header]
    for emotion, image, usage in rows:
        values = {"emotion": emotion, "pixels": pixel_text(image), "usage": usage}
        lines.append(",".join(values[name] for name in names))
    return lines


def write_csv(root: Path, lines: list[str], name: str = "fer2013.csv", newline: str = "\n",
              bom: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + (newline.join(lines) + newline).encode())
    return path


def read(root: Path) -> SourceBatch:
    reader = FER2013(root)
    reader.check()
    return reader.read()


def read_batch(root: Path, lines: list[str], **kwargs) -> SourceBatch:
    write_csv(root, lines, **kwargs)
    return read(root)


def image_of(batch: SourceBatch, record) -> np.ndarray:
    return batch.pixels[record.pixels_row]


def assert_accounted(batch: SourceBatch) -> None:
    assert batch.seen == len(batch.records) + len(batch.rejects)


def test_csv_rows_round_trip_exactly(tmp_path):
    rows = make_rows(12)
    write_csv(tmp_path, csv_lines(rows))
    batch = read(tmp_path)
    assert batch.rejects == [] and batch.seen == 12
    assert batch.pixels.shape == (12, 48, 48) and batch.pixels.dtype == np.uint8
    for i, (record, (emotion, image, usage)) in enumerate(zip(batch.records, rows)):
        assert record.sample_id == f"fer2013-{i:06d}"
        assert record.native_label == emotion
        assert record.split == SPLITS[usage]
        assert record.source_file == "fer2013.csv"
        assert record.source_line == i + 2
        assert (record.width, record.height) == (48, 48)
        np.testing.assert_array_equal(image_of(batch, record), image)
        assert record.content_hash == content_hash(image)


def test_usage_maps_to_splits_and_labels_are_source_codes(tmp_path):
    write_csv(tmp_path, csv_lines(make_rows(9)))
    batch = read(tmp_path)
    assert [r.split for r in batch.records] == ["train", "val", "test"] * 3
    assert all(r.native_label in SOURCE_LABELS["fer2013"] for r in batch.records)


def test_many_chunks_with_bad_rows_at_chunk_edges(tmp_path, monkeypatch):
    """Bad rows first, last and either side of a chunk boundary spoil nothing around them."""
    monkeypatch.setattr(fer2013, "ROWS_PER_CHUNK", 8)
    rows = make_rows(40, seed=1)
    lines = csv_lines(rows)
    bad_rows = {0: "bad_pixel_count", 7: "pixel_out_of_range", 8: "bad_pixel_value",
                9: "bad_pixel_value", 23: "bad_pixel_count", 39: "pixel_out_of_range"}
    for row, reason in bad_rows.items():
        emotion, image, usage = rows[row]
        values = [str(v) for v in image.ravel().tolist()]
        if reason == "bad_pixel_count":
            values.pop()
        else:
            values[3] = "300" if reason == "pixel_out_of_range" else "1.5"
        lines[row + 1] = f"{emotion},{' '.join(values)},{usage}"
    write_csv(tmp_path, lines)
    batch = read(tmp_path)
    assert {r.location: r.reason for r in batch.rejects} == {
        f"fer2013.csv:{row + 2}": reason for row, reason in bad_rows.items()}
    good = [i for i in range(40) if i not in bad_rows]
    assert [r.sample_id for r in batch.records] == [f"fer2013-{i:06d}" for i in good]
    for record, i in zip(batch.records, good):
        np.testing.assert_array_equal(image_of(batch, record), rows[i][1])
    assert_accounted(batch)


def _spoil(line: str, case: str) -> str:
    emotion, pixels, usage = line.split(",")
    values = pixels.split(" ")
    if case == "too_few_pixels":
        return f"{emotion},{' '.join(values[:-1])},{usage}"
    if case == "non_integer_pixel":
        values[100] = "12a"
        return f"{emotion},{' '.join(values)},{usage}"
    if case in ("pixel_256", "pixel_1000", "pixel_negative"):
        values[5] = {"pixel_256": "256", "pixel_1000": "1000", "pixel_negative": "-5"}[case]
        return f"{emotion},{' '.join(values)},{usage}"
    if case == "unknown_emotion":
        return f"7,{pixels},{usage}"
    if case == "unknown_usage":
        return f"{emotion},{pixels},Validation"
    if case == "extra_field":
        return f"{emotion},{pixels},{usage},extra"
    if case == "missing_field":
        return f"{emotion},{pixels}"
    raise ValueError(case)


@pytest.mark.parametrize("case, reason, words", [
    ("too_few_pixels", "bad_pixel_count", "2303"),
    ("non_integer_pixel", "bad_pixel_value", "'12a'"),
    ("pixel_256", "pixel_out_of_range", "256"),
    ("pixel_1000", "pixel_out_of_range", "1000"),
    ("pixel_negative", "pixel_out_of_range", "-5"),
    ("unknown_emotion", "unknown_label", "'7'"),
    ("unknown_usage", "unknown_usage", "'Validation'"),
    ("extra_field", "malformed_row", "found 4"),
    ("missing_field", "malformed_row", "found 2"),
])
def test_a_bad_row_is_rejected_with_its_line_and_the_rest_kept(tmp_path, case, reason, words):
    rows = make_rows(6)
    lines = csv_lines(rows)
    lines[4] = _spoil(lines[4], case)  # data row 3, line 5
    write_csv(tmp_path, lines)
    batch = read(tmp_path)
    [reject] = batch.rejects
    assert (reject.source, reject.location, reject.reason) == ("fer2013", "fer2013.csv:5", reason)
    assert words in reject.message
    assert reject.sample_id == "fer2013-000003"
    assert [r.sample_id for r in batch.records] == [f"fer2013-{i:06d}" for i in (0, 1, 2, 4, 5)]
    for record, i in zip(batch.records, (0, 1, 2, 4, 5)):
        np.testing.assert_array_equal(image_of(batch, record), rows[i][1])
    assert batch.seen == 6
    assert_accounted(batch)


def test_rows_the_bulk_parser_declines_are_still_read_exactly(tmp_path):
    """Doubled spaces, tabs, quotes and a spaced emotion are valid CSV: the precise parser reads them."""
    rows = make_rows(5)
    lines = csv_lines(rows)
    emotion, pixels, usage = lines[1].split(",")
    lines[1] = f"{emotion},{pixels.replace(' ', '  ', 50)},{usage}"
    emotion, pixels, usage = lines[2].split(",")
    lines[2] = f"{emotion},{pixels.replace(' ', chr(9), 3)},{usage}"
    emotion, pixels, usage = lines[3].split(",")
    lines[3] = f'"{emotion}","{pixels}","{usage}"'
    emotion, pixels, usage = lines[4].split(",")
    lines[4] = f" {emotion} , {pixels} , {usage} "
    write_csv(tmp_path, lines)
    batch = read(tmp_path)
    assert batch.rejects == []
    for record, (emotion, image, usage) in zip(batch.records, rows):
        assert (record.native_label, record.split) == (emotion, SPLITS[usage])
        np.testing.assert_array_equal(image_of(batch, record), image)


def test_clean_rows_never_need_the_precise_parser(tmp_path, monkeypatch):
    """The bulk parser takes every clean row (it is what makes ingest fast); only bad ones fall back."""
    monkeypatch.setattr(fer2013, "ROWS_PER_CHUNK", 4)
    lines = csv_lines(make_rows(11))
    lines[6] = _spoil(lines[6], "pixel_256")
    write_csv(tmp_path, lines)
    precise = []
    parse_row = fer2013._parse_row
    monkeypatch.setattr(fer2013, "_parse_row", lambda line, columns: precise.append(line)
                        or parse_row(line, columns))
    batch = read(tmp_path)
    assert precise == [lines[6].encode()]
    assert len(batch.records) == 10


def test_empty_file_is_one_reject(tmp_path):
    write_csv(tmp_path, [], newline="")
    batch = read(tmp_path)
    [reject] = batch.rejects
    assert (reject.location, reject.reason) == ("fer2013.csv", "empty_file")
    assert batch.records == [] and batch.seen == 1


def test_missing_header_is_one_reject_for_the_file(tmp_path):
    write_csv(tmp_path, csv_lines(make_rows(3))[1:])
    batch = read(tmp_path)
    [reject] = batch.rejects
    assert (reject.location, reject.reason) == ("fer2013.csv:1", "missing_header")
    assert "emotion,pixels,Usage" in reject.message
    assert batch.records == [] and batch.seen == 1


def test_header_without_a_needed_column_is_rejected(tmp_path):
    lines = csv_lines(make_rows(2))
    lines[0] = "emotion,pixels"
    write_csv(tmp_path, lines)
    [reject] = read(tmp_path).rejects
    assert reject.reason == "missing_header" and "usage" in reject.message


def test_header_only_has_no_rows(tmp_path):
    write_csv(tmp_path, ["emotion,pixels,Usage"])
    batch = read(tmp_path)
    assert (batch.seen, batch.records, batch.rejects) == (0, [], [])


@pytest.mark.parametrize("newline, bom", [("\r\n", False), ("\n", True), ("\r\n", True)])
def test_crlf_and_bom_parse_like_lf(tmp_path, newline, bom):
    lines = csv_lines(make_rows(5))
    lines[3] = _spoil(lines[3], "pixel_256")
    plain = read_batch(tmp_path / "lf", lines)
    other = read_batch(tmp_path / "other", lines, newline=newline, bom=bom)
    assert other.records == plain.records
    assert other.rejects == plain.rejects
    np.testing.assert_array_equal(other.pixels, plain.pixels)


def test_last_line_without_newline_and_blank_lines(tmp_path):
    rows = make_rows(4)
    lines = csv_lines(rows)
    lines.insert(3, "")  # a blank line between data rows is skipped
    root = tmp_path / "raw"
    root.mkdir()
    (root / "fer2013.csv").write_text("\n".join(lines))
    batch = read(root)
    assert batch.rejects == [] and batch.seen == 4
    assert [r.source_line for r in batch.records] == [2, 3, 5, 6]
    np.testing.assert_array_equal(batch.pixels, np.stack([image for _, image, _ in rows]))


def test_truncated_last_row_is_rejected(tmp_path):
    lines = csv_lines(make_rows(3))
    lines[-1] = lines[-1][:5000]  # cut mid-pixels, no final newline
    (tmp_path / "fer2013.csv").write_text("\n".join(lines))
    batch = read(tmp_path)
    [reject] = batch.rejects
    assert (reject.location, reject.reason) == ("fer2013.csv:4", "malformed_row")
    assert len(batch.records) == 2


def test_icml_release_reads_like_fer2013_csv(tmp_path):
    rows = make_rows(8)
    plain = read_batch(tmp_path / "a", csv_lines(rows))
    icml = read_batch(tmp_path / "b", csv_lines(rows, header="emotion, Usage, pixels"),
                      name="icml_face_data.csv")
    assert {r.source_file for r in icml.records} == {"icml_face_data.csv"}
    assert [(r.sample_id, r.native_label, r.split, r.content_hash) for r in icml.records] == \
        [(r.sample_id, r.native_label, r.split, r.content_hash) for r in plain.records]
    np.testing.assert_array_equal(icml.pixels, plain.pixels)


def write_image_folders(root: Path, rows) -> list[str]:
    """The rows as the image-folder release: PNGs named <Usage>_<n>; returns the file stems."""
    stems = []
    for n, (emotion, image, usage) in enumerate(rows):
        top = "train" if usage == "Training" else "test"
        folder = root / top / CLASSES_7[int(emotion)]
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{usage}_{1000 + n}"
        Image.fromarray(image, mode="L").save(folder / f"{stem}.png")
        stems.append(stem)
    return stems


def test_image_folders_read_like_the_csv(tmp_path):
    rows = make_rows(14)
    csv_batch = read_batch(tmp_path / "csv", csv_lines(rows))
    stems = write_image_folders(tmp_path / "folders", rows)
    batch = read(tmp_path / "folders")
    assert batch.rejects == [] and batch.seen == 14 and batch.pixels is None
    by_id = {r.sample_id: r for r in batch.records}
    for stem, csv_record in zip(stems, csv_batch.records):
        record = by_id[f"fer2013-{stem}"]
        assert SOURCE_LABELS["fer2013"][record.native_label] == \
            SOURCE_LABELS["fer2013"][csv_record.native_label]
        assert record.split == csv_record.split
        assert record.content_hash == csv_record.content_hash
        assert (record.width, record.height, record.pixels_row) == (48, 48, None)
        assert record.source_file.endswith(f"/{stem}.png")


def test_image_folder_bad_files_are_rejected_by_path(tmp_path):
    rows = make_rows(3)
    write_image_folders(tmp_path, rows)
    (tmp_path / "train" / "angry" / "Training_9.png").write_bytes(b"")
    (tmp_path / "train" / "angry" / "Training_8.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "train" / "angry" / "notes.txt").write_text("hello")
    (tmp_path / "test" / "contempt").mkdir()
    Image.fromarray(rows[0][1]).save(tmp_path / "test" / "contempt" / "PublicTest_7.png")
    Image.fromarray(rows[0][1]).save(tmp_path / "train" / "Training_6.png")
    (tmp_path / "train" / "sad").mkdir()
    Image.fromarray(rows[0][1]).save(tmp_path / "train" / "sad" / "Training_1000.jpg")
    batch = read(tmp_path)
    assert {r.location: r.reason for r in batch.rejects} == {
        "train/angry/Training_9.png": "unreadable_image",
        "train/angry/Training_8.png": "unreadable_image",
        "train/angry/notes.txt": "not_an_image",
        "test/contempt/PublicTest_7.png": "unknown_label",
        "train/Training_6.png": "unknown_label",
        "train/sad/Training_1000.jpg": "duplicate_sample_id",  # train/angry/Training_1000.png
    }
    assert "0 bytes" in next(r for r in batch.rejects if r.location.endswith("_9.png")).message
    assert len(batch.records) == 3
    assert sorted(r.split for r in batch.records) == ["test", "train", "val"]
    assert_accounted(batch)


def test_check_names_the_expected_files(tmp_path):
    with pytest.raises(MissingSourceError) as error:
        FER2013(tmp_path).check()
    assert str(tmp_path / "fer2013.csv") in str(error.value)
    assert str(tmp_path / "icml_face_data.csv") in str(error.value)
