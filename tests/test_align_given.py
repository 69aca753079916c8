"""Align with what a source gives: AffectNet's face boxes and landmarks, RAF-DB's aligned faces."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from ferdata.align import AlignParams, Aligner, apply, run_align
from ferdata.resample import centre_crop
from ferdata.executor import ExecutorParams, LocalExecutor
from ferdata.faces import draw_face
from ferdata.given import GIVEN_FILE, given_table
from ferdata.manifest import INGEST_SCHEMA, pixels_to_array, read_table, write_table
from ferdata.sources.base import Given

BOX_SIDE_IN_IODS = 2.43  # dlib's detector box is about this many inter-ocular distances wide


def _row(sample_id: str, source: str, source_file: str, size: int) -> dict:
    return dict(sample_id=sample_id, source=source, label="happy", label_index=3, native_label="1",
                split="train", source_file=source_file, width=size, height=size, content_hash="0" * 40)


def _box(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """A detector-like square box around a face's landmarks."""
    left, right = landmarks[36:42].mean(0), landmarks[42:48].mean(0)
    side = BOX_SIDE_IN_IODS * np.linalg.norm(right - left)
    x, y = (left + right) / 2
    return x - side / 2, y - 0.315 * side, x + side / 2, y + 0.685 * side


def _rotated(points: np.ndarray, degrees: float) -> np.ndarray:
    """Points turned about their eyes' midpoint."""
    a = math.radians(degrees)
    centre = (points[36:42].mean(0) + points[42:48].mean(0)) / 2
    turn = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (points - centre) @ turn.T + centre


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """raw/ and interim/: a small face (too small for the detector) given with box and landmarks
    turned 8 degrees off the drawing's; the same image with nothing given; a RAF-DB aligned face."""
    root = tmp_path_factory.mktemp("given")
    raw, interim = root / "raw", root / "interim"
    rng = np.random.default_rng(5)
    small, truth = draw_face("surprise", rng, size=(400, 400), center=(180, 220), scale=22.0, angle_deg=4.0)
    aligned_face, _ = draw_face("sad", rng, size=(100, 100), center=(50, 45), scale=28.0)
    files = {"affectnet/Manually_Annotated_Images/1/a.png": small, "other/happy/a.png": small,
             "raf-db/Image/aligned/train_00001_aligned.png": aligned_face}
    for rel, image in files.items():
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(raw / rel)
    rows = [_row("affectnet-1_a", "affectnet", "Manually_Annotated_Images/1/a.png", 400),
            _row("other-happy_a", "other", "happy/a.png", 400),
            _row("raf-db-train_00001", "raf-db", "Image/aligned/train_00001_aligned.png", 100)]
    write_table(pa.Table.from_pylist(rows, schema=INGEST_SCHEMA), interim / "manifest.parquet")
    turned = _rotated(truth.landmarks, 8.0)
    write_table(given_table({"affectnet-1_a": Given(box=_box(truth.landmarks), landmarks=turned),
                             "raf-db-train_00001": Given(prealigned=True)}), interim / GIVEN_FILE)
    return raw, interim, truth, aligned_face


def _run(stage, tmp_path, **params):
    raw, interim, _, _ = stage
    run_align(AlignParams(on_failure={}, **params), interim, raw, tmp_path, LocalExecutor(ExecutorParams(workers=1)))
    table = read_table(tmp_path / "aligned.parquet")
    rows = {r["sample_id"]: r for r in table.drop_columns(["pixels"]).to_pylist()}
    pixels = dict(zip(table["sample_id"].to_pylist(), pixels_to_array(table["pixels"])))
    return rows, pixels, json.loads((tmp_path / "align.json").read_text())


def test_a_given_box_replaces_detection(stage, tmp_path):
    rows, _, _ = _run(stage, tmp_path)
    searched = rows["other-happy_a"]  # the same small face without a box: found only on the doubled frame
    assert (searched["align_status"], searched["faces_detected"]) == ("aligned", 1)
    given = rows["affectnet-1_a"]
    assert given["align_status"] == "aligned" and given["faces_detected"] is None
    assert given["eye_angle"] == pytest.approx(4.0, abs=2.0)  # dlib's fit from the box: the drawn tilt


def test_source_landmarks_steer_the_warp_only_when_asked_and_are_measured_either_way(stage, tmp_path):
    dlib_rows, _, dlib_report = _run(stage, tmp_path / "dlib")
    own_rows, _, own_report = _run(stage, tmp_path / "own", use_source_landmarks=True)
    assert own_rows["affectnet-1_a"]["eye_angle"] == pytest.approx(12.0, abs=0.01)  # 4 drawn + 8 turned
    assert abs(dlib_rows["affectnet-1_a"]["eye_angle"] - 4.0) < 2.0
    for report in (dlib_report, own_report):
        error = report["landmark_error"]["affectnet"]
        assert error["images"] == 1 and error["mean"] > 0.1  # the given points are 8 degrees off
    assert own_report["landmark_error"] == dlib_report["landmark_error"]
    assert own_report["params"]["use_source_landmarks"] is True


def test_faces_a_source_aligned_are_resized_unless_realign(stage, tmp_path):
    _, _, _, aligned_face = stage
    rows, pixels, _ = _run(stage, tmp_path / "resized")
    assert rows["raf-db-train_00001"]["align_status"] == "passthrough"
    assert np.array_equal(pixels["raf-db-train_00001"], centre_crop(aligned_face))
    rows, pixels, _ = _run(stage, tmp_path / "realigned", realign=True)
    assert rows["raf-db-train_00001"]["align_status"] == "aligned"
    assert not np.array_equal(pixels["raf-db-train_00001"], centre_crop(aligned_face))


def test_aligner_puts_a_boxed_face_s_eyes_on_the_canonical_positions(stage):
    raw, _, truth, _ = stage
    aligner = Aligner(AlignParams())
    image = np.asarray(Image.open(raw / "affectnet/Manually_Annotated_Images/1/a.png"))
    result = aligner.align(image, given=Given(box=_box(truth.landmarks)))
    eyes = apply(result.matrix, np.array([truth.left_eye, truth.right_eye]))
    assert np.max(np.linalg.norm(eyes - aligner.template.anchors[:2], axis=1)) < 1.5  # output pixels
