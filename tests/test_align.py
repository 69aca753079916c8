"""The align stage: real dlib landmarks on a real photo and on drawn faces, and the stage's files."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from PIL import Image
from skimage import color, data
from skimage.transform import AffineTransform
from skimage.transform import warp as skimage_warp

from ferdata.align import (AlignParams, Aligner, Template, apply, equalize, fit_residual, run_align,
                           similarity, summary_table, warp)
from ferdata.executor import ExecutorParams, LocalExecutor
from ferdata.faces import EXPRESSIONS, draw_face
from ferdata.landmarks import eye_centres, mean_shape
from ferdata.manifest import ALIGNED_SCHEMA, INGEST_SCHEMA, pixels_to_array, read_table, write_table
from ferdata.params import ParamsError, section
from ferdata.shards import write_sharded


@pytest.fixture(scope="module")
def aligner() -> Aligner:
    return Aligner(AlignParams())


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.rint(color.rgb2gray(data.astronaut()) * 255).astype(np.uint8)


def similarity_about(angle_deg: float, scale: float, centre: tuple[float, float],
                     target: tuple[float, float]) -> np.ndarray:
    """The 2x3 matrix rotating by angle_deg and scaling about ``centre``, which lands on ``target``."""
    a = math.radians(angle_deg)
    linear = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return np.hstack([linear, (np.asarray(target) - linear @ np.asarray(centre))[:, None]])


def embed(image: np.ndarray, matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The image moved by ``matrix`` into a larger canvas, borders edge-filled (scikit-image's warp)."""
    forward = AffineTransform(matrix=np.vstack([matrix, [0, 0, 1]]))
    out = skimage_warp(image.astype(float), forward.inverse, output_shape=shape, mode="edge", order=1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def placed_eyes(aligner: Aligner, result, true_eyes: np.ndarray) -> tuple[float, float]:
    """Where the output transform puts the true eye centres: worst distance to canonical (px), tilt (deg)."""
    assert result.matrix is not None, result.status
    eyes = apply(result.matrix, true_eyes)
    worst = float(np.max(np.linalg.norm(eyes - aligner.template.anchors[:2], axis=1)))
    dx, dy = eyes[1] - eyes[0]
    return worst, abs(math.degrees(math.atan2(dy, dx)))


# ---------------------------------------------------------------- real photo


@pytest.mark.parametrize("angle", [15.0, -15.0])
def test_rotated_scaled_shifted_photo_comes_out_level_with_eyes_on_canonical_positions(aligner, astronaut,
                                                                                       angle):
    # truth: the eyes dlib finds on the unrotated photo, carried by the known transform
    face = aligner.model.detect(astronaut, threshold=1.0)[0]  # the photo's one confident face
    true_eyes = np.array(eye_centres(aligner.model.fit(astronaut, face)))
    move = similarity_about(angle, 1.25, centre=(222.0, 127.0), target=(380.0, 300.0))
    moved = embed(astronaut, move, (620, 760))

    result = aligner.align(moved)

    assert result.status == "aligned"
    assert result.faces_detected >= 1
    worst, tilt = placed_eyes(aligner, result, apply(move, true_eyes))
    assert worst < 1.5
    assert tilt < 2.0
    photo_tilt = math.degrees(math.atan2(*(true_eyes[1] - true_eyes[0])[::-1]))
    assert result.eye_angle == pytest.approx(photo_tilt + angle, abs=2.0)
    assert result.interocular == pytest.approx(1.25 * np.linalg.norm(true_eyes[1] - true_eyes[0]), rel=0.05)
    # the same face, whatever the input's rotation: outputs of the moved and the unmoved photo agree
    upright = aligner.align(embed(astronaut, similarity_about(0.0, 1.0, (222.0, 127.0), (380.0, 300.0)),
                                  (620, 760)))
    difference = np.abs(result.pixels.astype(int) - upright.pixels.astype(int))[6:42, 6:42].mean()
    assert difference < 8.0
    assert np.abs(result.pixels.astype(int) - np.rot90(upright.pixels).astype(int))[6:42, 6:42].mean() > 20.0


def test_blank_and_faceless_frames_get_no_face(aligner, astronaut):
    for image in (np.full((490, 640), 128, np.uint8), np.full((48, 48), 0, np.uint8)):
        result = aligner.align(image)
        assert result.status == "no_face"
        assert result.pixels.shape == (48, 48)
    bricks = aligner.align(data.brick())  # a textured photo without a face: the detector finds none
    assert (bricks.status, bricks.faces_detected) == ("no_face", 0)


# ---------------------------------------------------------------- drawn faces with known eyes


@pytest.mark.parametrize("size, scale, angle", [
    ((48, 48), None, 12.0), ((48, 48), None, -12.0),  # pre-cropped, fitted in the whole frame
    ((640, 490), 110.0, 15.0), ((640, 490), 90.0, -15.0),  # CK+-sized, through the detector
])
def test_drawn_faces_come_out_level_with_eyes_on_canonical_positions(aligner, size, scale, angle):
    rng = np.random.default_rng(7)
    for expression in EXPRESSIONS[:7]:
        image, truth = draw_face(expression, rng, size=size, scale=scale, angle_deg=angle)
        result = aligner.align(image)
        assert result.status == "aligned", expression
        worst, tilt = placed_eyes(aligner, result, np.array([truth.left_eye, truth.right_eye]))
        assert worst < 1.5, expression
        assert tilt < 2.0, expression
        assert result.interocular == pytest.approx(truth.interocular, rel=0.1)
        assert result.faces_detected == (None if size == (48, 48) else 1)


def test_batched_fit_aligns_pre_cropped_faces_as_dlibs_own_predictor_does(aligner):
    rng = np.random.default_rng(11)
    drawn = [draw_face(expression, rng, angle_deg=angle)
             for expression, angle in zip(EXPRESSIONS[:7], (-12, -6, 0, 6, 12, 9, -9))]
    blank = np.full((48, 48), 128, np.uint8)
    batched = aligner.align_many([image for image, _ in drawn] + [blank])
    assert batched[-1].status == "no_face"
    dlib_aligner = Aligner(AlignParams(batched_fit=False))  # dlib's predictor, one face at a time
    for (image, truth), result in zip(drawn, batched):
        one_by_one = dlib_aligner.align(image)
        assert result.status == one_by_one.status == "aligned"
        worst, tilt = placed_eyes(aligner, result, np.array([truth.left_eye, truth.right_eye]))
        assert worst < 1.5 and tilt < 2.0
        # dlib rounds points to whole pixels of the 4x enlarged canvas (a quarter pixel here),
        # and its first estimate is the whole cascade where the batch stops after a few levels
        gap = np.abs(result.landmarks - one_by_one.landmarks)
        assert gap.mean() < 0.15 and gap.max() < 0.75


def test_an_enlarged_face_crop_aligns_like_its_48_px_original_without_the_detector(aligner):
    """FER2013 copies enlarged to 224 px (for ImageNet-sized networks) are still face crops."""
    rng = np.random.default_rng(13)
    for expression, angle in zip(EXPRESSIONS[:4], (-10, -4, 4, 10)):
        image, truth = draw_face(expression, rng, angle_deg=angle)
        enlarged = np.asarray(Image.fromarray(image).resize((224, 224), Image.BICUBIC))
        small, large = aligner.align(image, precropped=True), aligner.align(enlarged, precropped=True)
        assert small.status == large.status == "aligned" and large.faces_detected is None
        eyes = (np.array([truth.left_eye, truth.right_eye]) + 0.5) * 224 / 48 - 0.5
        worst, tilt = placed_eyes(aligner, large, eyes)
        assert worst < 1.5 and tilt < 2.0, expression
        assert np.abs(large.pixels.astype(float) - small.pixels).mean() < 4.0, expression
    assert aligner.align(enlarged).faces_detected == 1  # not a crop: found by the detector


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_fit_its_mirror_image_contradicts_is_unstable_and_kept_unaligned(aligner, seed):
    noise = np.random.default_rng(seed).integers(0, 256, (48, 48), dtype=np.uint8)  # no face to fit
    result = aligner.align(noise)
    assert result.status == "unstable_fit"
    assert result.fit_disagreement > aligner.params.disagreement_threshold
    assert result.matrix is None and np.array_equal(result.pixels, noise)  # the frame as it came


def test_expressive_faces_fit_the_same_both_ways_round(aligner):
    rng = np.random.default_rng(5)
    for expression in EXPRESSIONS[:7]:  # a wide-open mouth or a deep frown: far from the mean shape
        result = aligner.align(draw_face(expression, rng, intensity=1.0)[0])
        assert result.status == "aligned", expression
        assert result.fit_disagreement < 0.05, expression


def test_retries_refine_only_unstable_fits_and_never_make_them_worse():
    rng = np.random.default_rng(9)
    images = [draw_face(e, rng, angle_deg=a)[0] for e, a in zip(EXPRESSIONS[:5], (-30, -10, 0, 20, 40))]
    strict = dict(disagreement_threshold=0.001)  # every fit counts as unstable, so every face is retried
    once = Aligner(AlignParams(retries=0, **strict)).align_many(images)
    twice = Aligner(AlignParams(retries=2, **strict)).align_many(images)
    for first, retried in zip(once, twice):
        assert retried.fit_disagreement <= first.fit_disagreement
    assert any(r.fit_disagreement < f.fit_disagreement for f, r in zip(once, twice))
    relaxed = Aligner(AlignParams(retries=2)).align_many(images)  # stable fits are not refitted
    assert [r.fit_disagreement for r in relaxed] == [f.fit_disagreement for f in once]


def test_a_small_face_the_detector_misses_is_found_on_the_doubled_frame(aligner):
    image, truth = draw_face(EXPRESSIONS[3], np.random.default_rng(4), size=(640, 490), scale=16.0)
    assert aligner.model.detect(image, 0, aligner.params.detect_threshold) == []
    result = aligner.align(image)
    assert (result.status, result.faces_detected) == ("aligned", 1)
    worst, tilt = placed_eyes(aligner, result, np.array([truth.left_eye, truth.right_eye]))
    assert worst < 2.0 and tilt < 3.0


# ---------------------------------------------------------------- geometry


def test_warp_moves_a_point_where_the_matrix_says_and_replicates_edges():
    yy, xx = np.mgrid[0:300, 0:400]
    spot = (200 * np.exp(-((xx - 230.0) ** 2 + (yy - 140.0) ** 2) / (2 * 6.0 ** 2))).astype(np.uint8)
    matrix = similarity_about(20.0, 0.25, centre=(230.0, 140.0), target=(30.0, 18.0))  # shrinks 4x
    out = warp(spot, matrix).astype(float)
    ys, xs = np.mgrid[0:48, 0:48]
    centroid = np.array([(out * xs).sum(), (out * ys).sum()]) / out.sum()
    assert np.linalg.norm(centroid - [30.0, 18.0]) < 0.3
    # shrinking averages fine detail instead of aliasing it: a 1-px checkerboard turns grey
    checker = ((xx + yy) % 2 * 255).astype(np.uint8)
    grey = warp(checker, similarity_about(7.0, 0.25, centre=(200.0, 150.0), target=(23.5, 23.5)))
    assert abs(grey.mean() - 127.5) < 10 and grey.std() < 20
    # a frame mapped mostly outside the image shows replicated edge pixels, never black
    ramp = np.tile(np.linspace(60, 200, 100).astype(np.uint8), (80, 1))
    outside = warp(ramp, similarity_about(0.0, 1.0, centre=(99.0, 40.0), target=(0.0, 24.0)))
    assert outside.min() >= 60
    assert (outside[:, 1:] == 200).all()


def test_similarity_recovers_a_known_transform_and_residual_ignores_pose():
    template = Template.from_mean_shape(mean_shape(), margin=0.08, eye_line=0.38)
    known = similarity_about(-25.0, 3.0, centre=(24.0, 24.0), target=(100.0, 80.0))
    moved = apply(known, template.points)
    assert np.allclose(similarity(template.points, moved), known)
    assert fit_residual(moved, template.points) < 1e-9
    bent = moved.copy()
    bent[48:68, 1] += 0.2 * np.linalg.norm(moved[45] - moved[36])  # mouth dropped a fifth of the eye gap
    assert fit_residual(bent, template.points) > 0.05


def test_template_follows_margin_and_eye_line():
    shape = mean_shape()
    assert shape.shape == (68, 2)
    left, right = eye_centres(shape)
    assert left[1] == pytest.approx(right[1], abs=0.01) and left[0] < 0.5 < right[0]
    wide = Template.from_mean_shape(shape, margin=0.05, eye_line=0.4)
    narrow = Template.from_mean_shape(shape, margin=0.15, eye_line=0.4)
    assert wide.interocular > narrow.interocular
    assert np.ptp(wide.points[:, 0]) == pytest.approx(0.9 * 48)
    assert wide.anchors[:2, 1].mean() == pytest.approx(0.4 * 48 - 0.5)
    assert wide.anchors[:2, 0].mean() == pytest.approx(23.5, abs=0.05)


def test_equalize_spreads_the_histogram_and_keeps_order():
    rng = np.random.default_rng(0)
    image = rng.integers(90, 140, (48, 48)).astype(np.uint8)
    out = equalize(image)
    assert (out.min(), out.max()) == (0, 255)
    order = np.argsort(image.ravel(), kind="stable")
    assert (np.diff(out.ravel()[order].astype(int)) >= 0).all()


def test_params_section_and_validation():
    params = section({"align": {"upsample": 1, "on_failure": {"jaffe": "keep"}, "equalize": True}},
                     "align", AlignParams)
    assert (params.upsample, params.policy("jaffe"), params.policy("ckplus"), params.equalize) == (
        1, "keep", "keep", True)
    assert AlignParams().policy("ckplus") == "drop"
    with pytest.raises(ParamsError, match="on_failure"):
        AlignParams(on_failure={"ckplus": "discard"})
    with pytest.raises(ParamsError, match="margins"):
        section({"align": {"margins": 0.1}}, "align", AlignParams)


# ---------------------------------------------------------------- the stage


def _row(sample_id: str, source: str, source_file: str, width: int, height: int,
         pixels_row: int | None = None, line: int | None = None) -> dict:
    return dict(sample_id=sample_id, source=source, label="happy", label_index=3, native_label="3",
                split=None, subject=None, sequence=None, frame=None, source_file=source_file,
                source_line=line, pixels_row=pixels_row, width=width, height=height, content_hash="0" * 40)


@pytest.fixture(scope="module")
def interim(tmp_path_factory):
    """raw/ and processed/interim/ with FER2013 rows (an npy), CK+ PNG frames and JAFFE TIFFs.

    Failures planted: a blank FER2013 face (kept), a blank CK+ frame (dropped), a missing
    JAFFE file (rejected). One CK+ frame has its Landmarks file (the drawing's true points).
    """
    root = tmp_path_factory.mktemp("align")
    raw, interim_dir = root / "raw", root / "processed" / "interim"
    rng = np.random.default_rng(3)
    rows, fer = [], []
    for i, expression in enumerate(["happy", "sad", "blank", "surprise"]):
        image = np.zeros((48, 48), np.uint8) if expression == "blank" else draw_face(expression, rng)[0]
        fer.append(image)
        rows.append(_row(f"fer2013-{i:06d}", "fer2013", "fer2013.csv", 48, 48, pixels_row=i, line=i + 2))
    (interim_dir / "pixels").mkdir(parents=True)
    np.save(interim_dir / "pixels" / "fer2013.npy", np.stack(fer))
    for frame, expression in [(1, "neutral"), (2, "blank"), (3, "angry")]:
        rel = f"cohn-kanade-images/S005/001/S005_001_{frame:08d}.png"
        if expression == "blank":
            image = np.full((490, 640), 90, np.uint8)
        else:
            image, truth = draw_face(expression, rng, size=(640, 490), scale=100.0, angle_deg=8.0)
        path = raw / "ckplus" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        if frame == 3:
            marks = raw / "ckplus" / "Landmarks" / "S005" / "001" / f"S005_001_{frame:08d}_landmarks.txt"
            marks.parent.mkdir(parents=True)
            marks.write_text("".join(f"   {x:.7e}   {y:.7e}\n" for x, y in truth.landmarks))
        rows.append(_row(f"ckplus-S005_001_{frame:08d}", "ckplus", rel, 640, 490))
    (raw / "jaffe").mkdir(parents=True)
    image, _ = draw_face("fear", rng, size=(256, 256), scale=70.0)
    Image.fromarray(image).save(raw / "jaffe" / "KA.FE1.1.tiff")
    rows.append(_row("jaffe-KA.FE1.1", "jaffe", "KA.FE1.1.tiff", 256, 256))
    rows.append(_row("jaffe-KA.HA1.2", "jaffe", "KA.HA1.2.tiff", 256, 256))  # file missing
    write_table(pa.Table.from_pylist(rows, schema=INGEST_SCHEMA), interim_dir / "manifest.parquet")
    return raw, interim_dir, np.stack(fer)


@pytest.mark.parametrize("precropped, detected", [(["fer2013"], None), ([], 1)])
def test_precropped_sources_are_never_sent_to_the_detector(tmp_path, precropped, detected):
    """A FER2013 image-folder copy enlarged to 224 px: `precropped` names the sources whose
    frames are face crops at any size."""
    image, _ = draw_face("happy", np.random.default_rng(5))
    rel = "train/happy/Training_1.png"
    (tmp_path / "raw" / "fer2013" / rel).parent.mkdir(parents=True)
    Image.fromarray(image).resize((224, 224), Image.BICUBIC).save(tmp_path / "raw" / "fer2013" / rel)
    interim_dir = tmp_path / "interim"
    write_table(pa.Table.from_pylist([_row("fer2013-Training_1", "fer2013", rel, 224, 224)], schema=INGEST_SCHEMA),
                interim_dir / "manifest.parquet")
    run_align(AlignParams(precropped=precropped), interim_dir, tmp_path / "raw", tmp_path / "aligned",
              LocalExecutor(ExecutorParams(workers=1)))
    table = read_table(tmp_path / "aligned" / "aligned.parquet").to_pylist()
    assert [(r["align_status"], r["faces_detected"]) for r in table] == [("aligned", detected)]


def test_stage_writes_aligned_manifest_with_policy_applied(interim, tmp_path):
    raw, interim_dir, fer = interim
    params = AlignParams(on_failure={"fer2013": "keep", "ckplus": "drop", "jaffe": "drop"})
    result = run_align(params, interim_dir, raw, tmp_path / "aligned", LocalExecutor(ExecutorParams(workers=1)))

    table = read_table(tmp_path / "aligned" / "aligned.parquet")
    assert table.schema.equals(ALIGNED_SCHEMA)
    ids = table.column("sample_id").to_pylist()
    assert ids == ["ckplus-S005_001_00000001", "ckplus-S005_001_00000003", "fer2013-000000", "fer2013-000001",
                   "fer2013-000002", "fer2013-000003", "jaffe-KA.FE1.1"]  # in sample-id order
    statuses = dict(zip(ids, table.column("align_status").to_pylist()))
    assert statuses["fer2013-000002"] == "no_face"
    assert all(s == "aligned" for i, s in statuses.items() if i != "fer2013-000002")
    pixels = pixels_to_array(table.column("pixels"))
    assert (pixels[ids.index("fer2013-000002")] == fer[2]).all()  # a kept failure: its own 48x48 frame
    faces = dict(zip(ids, table.column("faces_detected").to_pylist()))
    assert [faces[i] for i in ids if i.startswith("fer2013")] == [None] * 4
    assert [faces[i] for i in ids if not i.startswith("fer2013")] == [1, 1, 1]

    report = json.loads((tmp_path / "aligned" / "align.json").read_text())
    ck = report["sources"]["ckplus"]
    assert ck["statuses"] == {"aligned": 2, "no_face": 1}
    assert (ck["kept"], ck["dropped"], ck["dropped_ids"]) == (2, {"no_face": 1}, ["ckplus-S005_001_00000002"])
    assert report["sources"]["fer2013"]["statuses"] == {"aligned": 3, "no_face": 1}
    jaffe = report["sources"]["jaffe"]
    assert (jaffe["rejected"], jaffe["rejected_ids"]) == ({"unreadable_image": 1}, ["jaffe-KA.HA1.2"])
    assert list(report["landmark_error"]) == ["ckplus"]
    assert report["landmark_error"]["ckplus"]["images"] == 1
    assert report["landmark_error"]["ckplus"]["mean"] < 0.1
    assert report["rows"] == result.rows == 7
    assert summary_table(result).row_count == 3

    rejects = read_table(tmp_path / "aligned" / "rejects.parquet").to_pylist()
    assert {(r["kind"], r["reason"], r["sample_id"]) for r in rejects} == {
        ("dropped", "no_face", "ckplus-S005_001_00000002"),
        ("rejected", "unreadable_image", "jaffe-KA.HA1.2")}
    missing = next(r for r in rejects if r["kind"] == "rejected")
    assert "KA.HA1.2.tiff" in missing["message"] and str(raw) in missing["message"]


def test_stage_keep_policy_passthrough_and_worker_count_do_not_change_bytes(interim, tmp_path):
    raw, interim_dir, _ = interim
    keep_all = dict(on_failure={"fer2013": "keep", "ckplus": "keep", "jaffe": "keep"}, passthrough=["jaffe"])
    run_align(AlignParams(**keep_all), interim_dir, raw, tmp_path / "one", LocalExecutor(ExecutorParams(workers=1)))
    with LocalExecutor(ExecutorParams(workers=2, partition_size=3)) as pool:
        run_align(AlignParams(chunk_size=2, **keep_all), interim_dir, raw, tmp_path / "two", pool)

    one = read_table(tmp_path / "one" / "aligned.parquet")
    assert one.equals(read_table(tmp_path / "two" / "aligned.parquet"))
    assert (tmp_path / "one" / "align.json").read_bytes() == (tmp_path / "two" / "align.json").read_bytes()
    statuses = dict(zip(one.column("sample_id").to_pylist(), one.column("align_status").to_pylist()))
    assert statuses["ckplus-S005_001_00000002"] == "no_face"  # kept this time
    assert statuses["jaffe-KA.FE1.1"] == "passthrough"
    assert len(one) == 8  # all but the unreadable file


def test_a_manifest_in_sample_id_order_is_read_in_shards_and_gives_the_same_bytes(interim, tmp_path):
    """Ingest writes its manifest in sample-id order, in shards: align streams it, re-cut into
    its own partitions, and writes what it writes for the same rows read whole and sorted."""
    raw, interim_dir, _ = interim
    sharded = tmp_path / "interim"
    shutil.copytree(interim_dir, sharded)
    table = read_table(interim_dir / "manifest.parquet")
    (sharded / "manifest.parquet").unlink()
    write_sharded(table, sharded / "manifest.parquet", 2, order=pc.sort_indices(table["sample_id"]))
    assert len(list((sharded / "manifest.parquet").iterdir())) == 5
    with LocalExecutor(ExecutorParams(workers=1, partition_size=4)) as pool:  # 9 rows: 4, 4 and 1
        run_align(AlignParams(), interim_dir, raw, tmp_path / "whole", pool)
        run_align(AlignParams(), sharded, raw, tmp_path / "streamed", pool)

    for name in ("aligned.parquet", "rejects.parquet", "align.json"):
        whole, streamed = tmp_path / "whole" / name, tmp_path / "streamed" / name
        files = sorted(whole.iterdir()) if whole.is_dir() else [whole]
        assert [f.read_bytes() for f in files] == [(streamed / f.relative_to(whole)).read_bytes() for f in files]
    assert len(read_table(tmp_path / "streamed" / "aligned.parquet")) == 7  # a blank CK+ frame dropped, a file missing
