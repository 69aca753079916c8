"""The CK+ reader on small generated copies of its layout (FORMATS.md)."""

from pathlib import Path

import numpy as np
import pytest
from helpers import assert_balanced, png_claiming, read_measured, rejects_at
from PIL import Image

from ferdata.ingest import count_accepted, to_manifest
from ferdata.source_rows import compact
from ferdata.sources.base import MissingSourceError, content_hash
from ferdata.sources.ckplus import CKPlus, landmarks_path, read_landmarks
from ferdata.taxonomy import Taxonomy


def frame(value: int) -> np.ndarray:
    """A 48x64 grayscale frame whose pixels identify it."""
    img = np.full((48, 64), value, dtype=np.uint8)
    img[10:20, 10:30] = 255 - value
    return img


def write_sequence(root: Path, subject: str, seq: str, frames: int, code: str | None,
                   rgb: bool = False) -> None:
    """Frames 1..frames of one sequence, and its emotion file when ``code`` is given."""
    folder = root / "cohn-kanade-images" / subject / seq
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(1, frames + 1):
        img = Image.fromarray(frame(n * 10))
        (img.convert("RGB") if rgb else img).save(folder / f"{subject}_{seq}_{n:08d}.png")
    if code is not None:
        write_emotion(root, subject, seq, frames, code)


def write_emotion(root: Path, subject: str, seq: str, last: int, text: str) -> Path:
    path = root / "Emotion" / subject / seq / f"{subject}_{seq}_{last:08d}_emotion.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def by_id(batch) -> dict:
    return {r.sample_id: r for r in batch.records}


def test_last_peak_frames_get_the_label_and_the_first_frame_is_neutral(tmp_path):
    write_sequence(tmp_path, "S005", "001", 6, "   3.0000000e+00\n")
    batch = read_measured(CKPlus(tmp_path))
    records = by_id(batch)
    chosen = sorted((r.frame, r.native_label) for r in records.values())
    assert chosen == [(1, "0"), (4, "3"), (5, "3"), (6, "3")]
    r = records["ckplus-S005_001_00000006"]
    assert (r.subject, r.sequence, r.frame) == ("S005", "001", 6)
    assert r.source_file == "cohn-kanade-images/S005/001/S005_001_00000006.png"
    assert (r.width, r.height, r.pixels_row) == (64, 48, None)
    assert r.content_hash == content_hash(frame(60))
    assert batch.rejects == [] and batch.seen == 4


def test_frame_counts_come_from_the_options(tmp_path):
    write_sequence(tmp_path, "S005", "001", 10, "7.0000000e+00\n")
    batch = read_measured(CKPlus(tmp_path, peak_frames=2, neutral_frames=3))
    assert sorted((r.frame, r.native_label) for r in batch.records) == [
        (1, "0"), (2, "0"), (3, "0"), (9, "7"), (10, "7")]


def test_frames_are_ordered_by_number_not_by_name(tmp_path):
    write_sequence(tmp_path, "S005", "001", 3, "5.0000000e+00\n")
    folder = tmp_path / "cohn-kanade-images" / "S005" / "001"
    Image.fromarray(frame(200)).save(folder / "S005_001_000000010.png")  # frame 10, sorts before 00000002
    batch = read_measured(CKPlus(tmp_path, peak_frames=1, neutral_frames=1))
    assert sorted((r.frame, r.native_label) for r in batch.records) == [(1, "0"), (10, "5")]


def test_rgb_frames_are_converted_to_gray(tmp_path):
    write_sequence(tmp_path, "S010", "002", 4, "1.0000000e+00\n", rgb=True)
    batch = read_measured(CKPlus(tmp_path))
    assert len(batch.records) == 4
    assert by_id(batch)["ckplus-S010_002_00000004"].content_hash == content_hash(frame(40))


def test_unlabelled_sequences_are_dropped_and_counted(tmp_path):
    write_sequence(tmp_path, "S005", "001", 5, "3.0000000e+00\n")
    write_sequence(tmp_path, "S005", "002", 5, None)
    batch = read_measured(CKPlus(tmp_path))
    assert rejects_at(batch) == {"cohn-kanade-images/S005/002": ("dropped", "unlabelled_sequence")}
    assert {r.sequence for r in batch.records} == {"001"}
    assert_balanced(batch)


@pytest.mark.parametrize("text, line, reason", [
    ("abc\n", 1, "bad_emotion_file"),
    ("", 1, "bad_emotion_file"),
    ("   3.0000000e+00   4.0000000e+00\n", 1, "bad_emotion_file"),
    ("   3.0000000e+00\n   4.0000000e+00\n", 2, "bad_emotion_file"),
    ("   9.0000000e+00\n", 1, "unknown_label"),
    ("   2.5000000e+00\n", 1, "unknown_label"),
])
def test_a_bad_emotion_file_rejects_its_sequence_only(tmp_path, text, line, reason):
    write_sequence(tmp_path, "S005", "001", 5, "3.0000000e+00\n")
    write_sequence(tmp_path, "S006", "001", 5, None)
    bad = write_emotion(tmp_path, "S006", "001", 5, text)
    batch = read_measured(CKPlus(tmp_path))
    location = f"{bad.relative_to(tmp_path).as_posix()}:{line}"
    assert rejects_at(batch) == {location: ("rejected", reason)}
    assert str(batch.rejects[0]).startswith(f"Emotion/S006/001/S006_001_00000005_emotion.txt:{line}: ")
    assert {r.subject for r in batch.records} == {"S005"} and len(batch.records) == 4
    assert_balanced(batch)


def test_two_emotion_files_for_one_sequence_are_rejected(tmp_path):
    write_sequence(tmp_path, "S005", "001", 5, "3.0000000e+00\n")
    write_emotion(tmp_path, "S005", "001", 4, "4.0000000e+00\n")
    batch = read_measured(CKPlus(tmp_path))
    assert rejects_at(batch) == {
        "Emotion/S005/001/S005_001_00000004_emotion.txt:1": ("rejected", "bad_emotion_file")}
    assert batch.records == [] and batch.seen == 1


def test_a_sequence_shorter_than_the_peak_uses_its_frames_and_records_the_shortfall(tmp_path):
    write_sequence(tmp_path, "S005", "001", 2, "6.0000000e+00\n")
    write_sequence(tmp_path, "S005", "002", 3, "6.0000000e+00\n")  # peak frames win over neutral
    batch = read_measured(CKPlus(tmp_path))
    assert sorted((r.sequence, r.frame, r.native_label) for r in batch.records) == [
        ("001", 1, "6"), ("001", 2, "6"), ("002", 1, "6"), ("002", 2, "6"), ("002", 3, "6")]
    assert rejects_at(batch) == {"cohn-kanade-images/S005/001": ("rejected", "too_few_frames")}
    assert batch.seen == 6
    assert_balanced(batch)


def test_an_emotion_file_without_frames_is_rejected(tmp_path):
    write_sequence(tmp_path, "S005", "001", 4, "3.0000000e+00\n")
    orphan = write_emotion(tmp_path, "S007", "003", 9, "5.0000000e+00\n")
    batch = read_measured(CKPlus(tmp_path))
    assert rejects_at(batch) == {orphan.relative_to(tmp_path).as_posix(): ("rejected", "no_frames")}
    assert_balanced(batch)


def test_stray_files_are_counted_as_dropped_never_as_samples(tmp_path):
    write_sequence(tmp_path, "S005", "001", 5, "3.0000000e+00\n")
    frames = tmp_path / "cohn-kanade-images"
    for junk in (frames / ".DS_Store", frames / "S005" / "Thumbs.db", frames / "S005" / "001" / "notes.txt",
                 frames / "S005" / "001" / ".DS_Store", tmp_path / "Emotion" / "S005" / "001" / ".DS_Store"):
        junk.write_bytes(b"\0junk")
    Image.fromarray(frame(1)).save(frames / "S005" / "001" / "S005_001_copy.png")
    batch = read_measured(CKPlus(tmp_path))
    assert rejects_at(batch) == {
        "cohn-kanade-images/.DS_Store": ("dropped", "not_an_image"),
        "cohn-kanade-images/S005/Thumbs.db": ("dropped", "not_an_image"),
        "cohn-kanade-images/S005/001/notes.txt": ("dropped", "not_an_image"),
        "cohn-kanade-images/S005/001/.DS_Store": ("dropped", "not_an_image"),
        "Emotion/S005/001/.DS_Store": ("dropped", "not_an_emotion_file"),
        "cohn-kanade-images/S005/001/S005_001_copy.png": ("rejected", "bad_file_name"),
    }
    assert sorted(r.frame for r in batch.records) == [1, 3, 4, 5]
    assert_balanced(batch)


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n truncated", png_claiming(30000, 30000)],
                         ids=["empty", "truncated", "decompression-bomb"])
def test_an_unreadable_chosen_frame_is_rejected_and_the_rest_kept(tmp_path, content):
    write_sequence(tmp_path, "S005", "001", 5, "3.0000000e+00\n")
    bad = tmp_path / "cohn-kanade-images" / "S005" / "001" / "S005_001_00000005.png"
    bad.write_bytes(content)
    batch = read_measured(CKPlus(tmp_path))
    [reject] = batch.rejects
    assert (reject.location, reject.reason, reject.sample_id) == (
        "cohn-kanade-images/S005/001/S005_001_00000005.png", "unreadable_image", "ckplus-S005_001_00000005")
    assert sorted(r.frame for r in batch.records) == [1, 3, 4]
    assert_balanced(batch)


def test_the_ingest_account_adds_up_with_contempt_dropped(tmp_path):
    write_sequence(tmp_path, "S005", "001", 6, "2.0000000e+00\n")  # contempt: 1 neutral + 3 peak
    write_sequence(tmp_path, "S005", "002", 6, "5.0000000e+00\n")
    write_sequence(tmp_path, "S006", "001", 6, None)
    write_emotion(tmp_path, "S007", "001", 3, "abc\n")
    (tmp_path / "cohn-kanade-images" / "S005" / "001" / "Thumbs.db").write_bytes(b"\0")
    taxonomy = Taxonomy.of_size(7)
    table, _, accounts = to_manifest({"ckplus": compact(read_measured(CKPlus(tmp_path)))}, taxonomy)
    count_accepted(table, accounts, taxonomy)
    account = accounts["ckplus"]
    assert (account.seen, account.accepted) == (11, 5)
    assert account.rejected == {"bad_emotion_file": 1}
    assert account.dropped == {"not_in_taxonomy": 3, "unlabelled_sequence": 1, "not_an_image": 1}
    assert account.classes == {"happy": 3, "neutral": 2} and account.balanced
    assert table.num_rows == 5


def test_reading_twice_gives_identical_batches(tmp_path):
    for subject in ("S011", "S005", "S010"):
        write_sequence(tmp_path, subject, "001", 5, "4.0000000e+00\n")
    first, second = read_measured(CKPlus(tmp_path)), read_measured(CKPlus(tmp_path))
    assert first.records == second.records
    assert [r.subject for r in first.records][::4] == ["S005", "S010", "S011"]


@pytest.mark.parametrize("options", [{"peak_frames": -1}, {"neutral_frames": 1.5}, {"peak_frames": True}])
def test_bad_options_are_refused_by_name(tmp_path, options):
    with pytest.raises(ValueError, match=next(iter(options))):
        CKPlus(tmp_path, **options)


def test_unknown_options_are_refused(tmp_path):
    with pytest.raises(TypeError, match="peak_frame"):
        CKPlus(tmp_path, peak_frame=3)


def test_check_names_the_missing_folders(tmp_path):
    with pytest.raises(MissingSourceError, match="cohn-kanade-images.*Emotion"):
        CKPlus(tmp_path).check()
    write_sequence(tmp_path, "S005", "001", 3, None)
    with pytest.raises(MissingSourceError, match=str(tmp_path / "Emotion")):
        CKPlus(tmp_path).check()
    write_emotion(tmp_path, "S005", "001", 3, "1.0\n")
    CKPlus(tmp_path).check()


def test_landmarks_are_found_by_sample_id_and_read_as_68_points(tmp_path):
    path = tmp_path / "Landmarks" / "S005" / "001" / "S005_001_00000011_landmarks.txt"
    path.parent.mkdir(parents=True)
    points = np.arange(136, dtype=np.float32).reshape(68, 2) + 0.5
    path.write_text("".join(f"   {x:.7e}   {y:.7e}\n" for x, y in points))
    assert landmarks_path(tmp_path, "ckplus-S005_001_00000011") == path
    assert landmarks_path(tmp_path, "ckplus-S005_001_00000012") is None
    np.testing.assert_array_equal(read_landmarks(path), points)
    with pytest.raises(ValueError, match="not a CK\\+ sample id"):
        landmarks_path(tmp_path, "jaffe-KA.AN1.39")


@pytest.mark.parametrize("lines, message", [
    (["1 2"] * 67, "expected 68 points, found 67"),
    (["1 2"] * 5 + ["1 x"] + ["1 2"] * 62, r":6: expected two numbers"),
    (["1 2"] * 5 + ["1 2 3"] + ["1 2"] * 62, r":6: expected two numbers"),
])
def test_bad_landmark_files_are_named_with_their_line(tmp_path, lines, message):
    path = tmp_path / "S005_001_00000001_landmarks.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=message) as info:
        read_landmarks(path)
    assert str(path) in str(info.value)
