"""The generated sample: exact raw layouts, determinism, planted defects and wrong labels,
FER+ votes that follow the faces, and faces that dlib's real detector and landmark model
find where the generator drew them, turned, lit and covered as real photos are."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dlib
import face_recognition_models
import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ferdata.conditions import CONFUSABLE
from ferdata.faces import EXPRESSIONS, PEAKS, Occlusion, Pose, Subject, draw_face, render_faces
from ferdata.ferplus import majority_labels, read_ferplus
from ferdata.images import decode_gray
from ferdata.oof_model import hog_features
from ferdata.sample import FER2013_COUNTS, JAFFE_SUBJECTS, LABEL_ERRORS, fer2013_plan, write_sample
from ferdata.taxonomy import CLASSES_7, SOURCE_LABELS

FLOAT = r"-?\d\.\d{7}e[+-]\d{2}"  # CK+ writes floats as 2.4045593e+02
SMALL = dict(fer2013_rows=700, ckplus_subjects=3, jaffe_subjects=2, seed=7)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("sample")
    return out, write_sample(out, **SMALL)


@pytest.fixture(scope="module")
def truth(sample) -> dict:
    return json.loads((sample[0] / "sample_truth.json").read_text())


def read_fer(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lines = (root / "fer2013" / "fer2013.csv").read_text().splitlines()
    assert lines[0] == "emotion,pixels,Usage"
    rows = [line.split(",") for line in lines[1:]]
    assert all(len(r) == 3 for r in rows)
    labels = np.array([int(r[0]) for r in rows])
    pixels = np.array([[int(v) for v in r[1].split(" ")] for r in rows])
    return labels, pixels, np.array([r[2] for r in rows])


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_writes_identical_bytes(sample, tmp_path):
    root, _ = sample
    write_sample(tmp_path / "again", **SMALL)
    first, second = files(root), files(tmp_path / "again")
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []
    tiny = dict(fer2013_rows=30, ckplus_subjects=1, jaffe_subjects=1, rafdb_images=0, affectnet_rows=0,
                folder_images=0)
    write_sample(tmp_path / "seed1", seed=1, **tiny)
    write_sample(tmp_path / "seed2", seed=2, **tiny)
    csv = "fer2013/fer2013.csv"
    assert (tmp_path / "seed1" / csv).read_bytes() != (tmp_path / "seed2" / csv).read_bytes()


def test_fer2013_csv_is_in_the_real_format(sample):
    root, info = sample
    labels, pixels, usage = read_fer(root)
    assert pixels.shape == (700, 48 * 48) and pixels.min() >= 0 and pixels.max() <= 255
    # Training rows first, then PublicTest, then PrivateTest, about 80/10/10
    assert list(dict.fromkeys(usage)) == ["Training", "PublicTest", "PrivateTest"]
    assert [int((usage == u).sum()) for u in ("Training", "PublicTest", "PrivateTest")] == [560, 70, 70]
    counts = np.bincount(labels, minlength=7)
    assert counts.argmin() == 1 and counts.argmax() == 3  # disgust rare, happy common, as in FER2013
    assert info.counts["fer2013"] == dict(zip(("angry", "disgust", "fear", "happy", "sad", "surprise",
                                               "neutral"), counts.tolist()))


def test_full_fer2013_plan_has_the_real_counts_per_usage():
    usage, labels = fer2013_plan(35887, np.random.default_rng(0))
    assert len(labels) == 35887
    for name, expected in FER2013_COUNTS.items():
        assert tuple(np.bincount(labels[np.array(usage) == name], minlength=7)) == expected


def test_ckplus_layout_names_and_text_formats(sample):
    root, info = sample
    ck = root / "ckplus"
    frames = sorted((ck / "cohn-kanade-images").glob("*/*/*.png"))
    assert len(frames) == info.ckplus_frames > 0
    modes = set()
    for seq_dir in sorted({f.parent for f in frames}):
        subject, seq = seq_dir.parent.name, seq_dir.name
        assert re.fullmatch(r"S\d{3}", subject) and re.fullmatch(r"\d{3}", seq)
        names = sorted(p.name for p in seq_dir.glob("*.png"))
        assert names == [f"{subject}_{seq}_{k:08d}.png" for k in range(1, len(names) + 1)]
        assert 6 <= len(names) <= 12
        for name in names:
            marks = (ck / "Landmarks" / subject / seq / name.replace(".png", "_landmarks.txt")).read_text()
            lines = marks.split("\n")
            assert len(lines) == 69 and lines[-1] == ""
            assert all(re.fullmatch(rf"   {FLOAT}   {FLOAT}", line) for line in lines[:68])
        emotion = list((ck / "Emotion" / subject / seq).iterdir())
        if emotion:
            assert [p.name for p in emotion] == [names[-1].replace(".png", "_emotion.txt")]
            assert re.fullmatch(r"   [1-7]\.0000000e\+00\n", emotion[0].read_text())
        with Image.open(seq_dir / names[0]) as img:
            assert img.size in ((640, 490), (640, 480))
            modes.add(img.mode)
    assert modes == {"L", "RGB"}
    sequences = list((ck / "Emotion").glob("*/*"))
    labelled = [d for d in sequences if any(d.iterdir())]
    assert len(labelled) == sum(info.counts["ckplus"].values())
    assert len(sequences) - len(labelled) == info.ckplus_unlabelled >= 1
    assert info.defects["stray_files"] and (root / info.defects["stray_files"][0]).name == ".DS_Store"


def test_jaffe_names_images_and_readme(sample):
    root, info = sample
    jaffe = root / "jaffe"
    names = sorted(p.name for p in jaffe.iterdir())
    assert "README" in names
    tiffs = [n for n in names if n != "README"]
    pattern = re.compile(r"(%s)\.(AN|DI|FE|HA|NE|SA|SU)[1-3]\.(\d+)\.tiff" % "|".join(JAFFE_SUBJECTS))
    numbers = [int(pattern.fullmatch(n).group(3)) for n in tiffs]
    assert len(set(numbers)) == len(numbers) and max(numbers) <= 219
    assert {n.split(".")[0] for n in tiffs} == {"KA", "KL"}
    assert len(tiffs) == 2 * 7 * 3 == sum(info.counts["jaffe"].values())
    modes = set()
    for name in tiffs:
        with Image.open(jaffe / name) as img:
            assert img.size == (256, 256)
            modes.add(img.mode)
            if img.mode == "P":  # a grey palette: converting to L keeps the grey levels
                assert np.array_equal(decode_gray(jaffe / name), np.asarray(img))
    assert modes == {"L", "P"}


def test_planted_fer2013_defects_are_where_the_truth_says(sample, truth):
    root, _ = sample
    labels, pixels, usage = read_fer(root)
    defects = truth["defects"]

    def row(sample_id: str) -> int:
        return int(sample_id.split("-")[1])

    exact = [(row(a), row(b)) for a, b in defects["exact_duplicates"]]
    assert sorted(usage[b] for _, b in exact) == ["PrivateTest", "PublicTest"]
    for a, b in exact:
        assert usage[a] == "Training" and np.array_equal(pixels[a], pixels[b]) and labels[a] == labels[b]
    (a, b), = [(row(a), row(b)) for a, b in defects["near_duplicates"]]
    assert usage[a] == "Training" and usage[b] != "Training"
    diff = np.abs(pixels[a] - pixels[b])
    assert 0 < diff.mean() <= 2 and diff.max() <= 2
    (blank,) = [row(s) for s in defects["blank"]]
    assert len(set(pixels[blank])) == 1 and truth["faces"][defects["blank"][0]] is None
    # no other row is a copy of another
    assert len({p.tobytes() for p in pixels}) == len(pixels) - 2


def test_planted_wrong_labels_are_recorded_and_mostly_confusable(sample, truth):
    root, _ = sample
    labels, _, usage = read_fer(root)
    errors = truth["label_errors"]
    rows = {int(sid.split("-")[1]): entry for sid, entry in errors.items()}
    assert len(rows) == round(LABEL_ERRORS * (usage == "Training").sum())
    assert {usage[row] for row in rows} == {"Training"}
    for row, entry in rows.items():
        assert CLASSES_7[labels[row]] == entry["label"] != entry["expression"]
    confusable = sum(CONFUSABLE[e["label"]] == e["expression"] for e in errors.values())
    assert confusable >= 0.5 * len(errors)  # most wrong labels name the class the face is confused with
    defects = truth["defects"]
    planted = {sid for pair in defects["exact_duplicates"] + defects["near_duplicates"] for sid in pair}
    assert not planted & set(errors) and not set(defects["blank"]) & set(errors)
    # the written labels keep FER2013's class counts per Usage
    planned_usage, planned = fer2013_plan(700, np.random.default_rng(0))
    for name in ("Training", "PublicTest", "PrivateTest"):
        assert np.array_equal(np.bincount(labels[usage == name], minlength=7),
                              np.bincount(planned[np.array(planned_usage) == name], minlength=7))


def test_ferplus_votes_follow_the_face_not_its_wrong_label(sample, truth):
    root, _ = sample
    labels, _, _ = read_fer(root)
    majority = majority_labels(read_ferplus(root / "ferplus" / "fer2013new.csv"))
    errors = {int(sid.split("-")[1]): entry for sid, entry in truth["label_errors"].items()}
    says_expression = sum(majority[row] == e["expression"] for row, e in errors.items())
    says_label = sum(majority[row] == e["label"] for row, e in errors.items())
    print(f"FER+ majority on {len(errors)} wrong labels: the face's expression {says_expression}, "
          f"the wrong label {says_label}")
    assert says_expression >= 2 * says_label and says_expression >= 0.5 * len(errors)
    clean = [row for row in range(len(labels)) if row not in errors and majority[row] is not None]
    agree = np.mean([majority[row] == CLASSES_7[labels[row]] for row in clean])
    assert agree >= 0.9  # where FER+ has a majority, it names a correct label


def test_truth_covers_every_sample_with_reader_ids(sample, truth):
    root, info = sample
    ids = set(truth["faces"])
    frames = {"ckplus-" + p.stem for p in (root / "ckplus" / "cohn-kanade-images").glob("*/*/*.png")}
    jaffe = {"jaffe-" + p.name.removesuffix(".tiff") for p in (root / "jaffe").glob("*.tiff")}
    fer = {f"fer2013-{i:06d}" for i in range(700)}
    rafdb = {"raf-db-" + p.stem for p in (root / "raf-db" / "Image" / "original").glob("*.jpg")}
    affectnet = {"affectnet-" + p.parent.name + "_" + p.stem
                 for p in (root / "affectnet" / "Manually_Annotated_Images").glob("*/*.jpg")}
    folder = {f"lab-photos-{p.parent.name}_{p.stem}" for p in (root / "lab-photos").glob("*/*.jpg")}
    assert ids == fer | frames | jaffe | rafdb | affectnet | folder
    # the eye centres are the means of the landmark file's eye points
    some = sorted(frames)[5]
    subject, seq, _ = some.removeprefix("ckplus-").split("_")
    marks = np.loadtxt(root / "ckplus" / "Landmarks" / subject / seq / f"{some[7:]}_landmarks.txt")
    assert marks.shape == (68, 2)
    np.testing.assert_allclose(truth["faces"][some]["left_eye"], marks[36:42].mean(0), atol=0.01)
    np.testing.assert_allclose(truth["faces"][some]["right_eye"], marks[42:48].mean(0), atol=0.01)


def test_dlib_finds_the_drawn_faces_and_their_eyes(sample, truth):
    root, _ = sample
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    frames = sorted((root / "ckplus" / "cohn-kanade-images").glob("*/*/*.png"))[::4][:12]
    images = {"ckplus-" + p.stem: p for p in frames}
    images |= {"jaffe-" + p.stem: p for p in sorted((root / "jaffe").glob("*.tiff"))[::5][:8]}
    originals = sorted((root / "raf-db" / "Image" / "original").glob("*.jpg"))[:9]
    images |= {"raf-db-" + p.stem: p for p in originals if p.stem != "train_00001"}  # that one is a FER2013 face
    photos = sorted((root / "lab-photos").glob("*/*.jpg"))[:8]
    images |= {f"lab-photos-{p.parent.name}_{p.stem}": p for p in photos}
    found, errors = 0, []
    for sid, path in images.items():
        img = decode_gray(path)
        boxes = detector(img, 0)
        if len(boxes) != 1:
            continue
        found += 1
        shape = predictor(img, boxes[0])
        pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=float)
        t = truth["faces"][sid]
        left, right = np.array(t["left_eye"]), np.array(t["right_eye"])
        iod = np.linalg.norm(right - left)
        errors.append((np.linalg.norm(pts[36:42].mean(0) - left) + np.linalg.norm(pts[42:48].mean(0) - right))
                      / 2 / iod)
    assert found >= 0.9 * len(images)
    assert np.mean(errors) < 0.1


def test_turned_lit_and_covered_faces_are_drawn_where_their_truth_says():
    rng = np.random.default_rng(5)
    looks = [dict(yaw_deg=25), dict(yaw_deg=-25), dict(pitch_deg=18), dict(pitch_deg=-18),
             dict(yaw_deg=-15, pitch_deg=10, angle_deg=20, light=0.5, light_deg=30),
             dict(yaw_deg=12, gamma=1.6, light=0.4, light_deg=200)]
    covers = [Occlusion(), Occlusion(glasses=0.3), Occlusion(strand=0.2, strand_x=0.9),
              Occlusion(hand=1.0, hand_x=0.1, hand_y=1.7), Occlusion(), Occlusion(glasses=0.8)]
    poses = [Pose(center=(128, 130), scale=60, noise=1.0, **look) for look in looks]
    people = [Subject.random(rng) for _ in looks]
    images, points = render_faces(people, [PEAKS["happy"]] * len(looks), poses, (256, 256), rng, covers)
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    errors = []
    for image, truth in zip(images, points):
        boxes = detector(image, 0)
        assert len(boxes) == 1
        fit = np.array([(p.x, p.y) for p in predictor(image, boxes[0]).parts()], dtype=float)
        iod = np.linalg.norm(truth[42:48].mean(0) - truth[36:42].mean(0))
        errors.append(max(np.linalg.norm(fit[a:a + 6].mean(0) - truth[a:a + 6].mean(0)) for a in (36, 42)) / iod)
    assert max(errors) < 0.15 and np.mean(errors) < 0.08
    # a turned head: the nose tip moves toward the side the face turns to, against the jaw
    nose_offset = [(pts[30, 0] - (pts[0, 0] + pts[16, 0]) / 2) / 60 for pts in points[:2]]
    assert nose_offset[0] < -0.05 < 0.05 < nose_offset[1]


def test_fer2013_classes_are_learnable_but_not_separable(sample):
    labels, pixels, usage = read_fer(sample[0])
    features = hog_features(pixels.reshape(-1, 48, 48).astype(np.uint8))
    train = usage == "Training"
    scaler = StandardScaler().fit(features[train])
    with threadpool_limits(1):  # BLAS threads only contend on a small problem
        model = LogisticRegression(C=0.003, max_iter=500).fit(scaler.transform(features[train]), labels[train])
    accuracy = (model.predict(scaler.transform(features[~train])) == labels[~train]).mean()
    # chance is about 0.25 (the majority class); pose, light, occluders, weak expressions and
    # wrong labels keep a linear model on the raw crops far from a perfect score
    assert 0.35 < accuracy < 0.8


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_draw_face_truth_follows_pose(expression):
    rng = np.random.default_rng(3)
    img, truth = draw_face(expression, rng, size=(256, 256), center=(120, 140), scale=60,
                           angle_deg=10, noise=0)
    left, right = np.array(truth.left_eye), np.array(truth.right_eye)
    assert truth.interocular == pytest.approx(60, rel=0.01)
    assert np.degrees(np.arctan2(*(right - left)[::-1])) == pytest.approx(10, abs=0.5)
    # the eyes are drawn where the truth says: each centre is darker than the face below it
    mouth = np.array(truth.mouth)
    cheek = (left + mouth) / 2

    def grey(point: np.ndarray) -> int:
        return int(img[int(round(point[1])), int(round(point[0]))])

    for eye in (left, right):
        assert grey(eye) < grey(cheek) - 40


def test_rafdb_layout_names_splits_and_images(sample):
    root, info = sample
    lines = (root / "raf-db" / "EmoLabel" / "list_patition_label.txt").read_text().splitlines()
    assert all(re.fullmatch(r"(train_\d{5}|test_\d{4})\.jpg [1-7]", line) for line in lines)
    assert len(lines) == 60 == sum(info.counts["raf-db"].values())
    assert sum(line.startswith("test_") for line in lines) == 12  # RAF-DB's 80/20
    assert max(info.counts["raf-db"], key=info.counts["raf-db"].get) == "happy"
    for line in lines[::7]:
        stem = line.split(".")[0]
        with Image.open(root / "raf-db" / "Image" / "original" / f"{stem}.jpg") as img:
            assert img.format == "JPEG" and img.mode == "RGB"
        with Image.open(root / "raf-db" / "Image" / "aligned" / f"{stem}_aligned.jpg") as img:
            assert img.format == "JPEG" and img.mode == "RGB" and img.size == (100, 100)


def test_a_fer2013_test_face_is_copied_into_rafdb_train(sample, truth):
    root, _ = sample
    [(fer_id, raf_id)] = truth["defects"]["cross_source_duplicates"]
    labels, pixels, usage = read_fer(root)
    row = int(fer_id.split("-")[1])
    assert usage[row] == "PrivateTest" and raf_id == "raf-db-train_00001"
    copy = decode_gray(root / "raf-db" / "Image" / "original" / "train_00001.jpg").astype(int)
    assert np.abs(copy.ravel() - pixels[row]).max() <= 1
    label_file = root / "raf-db" / "EmoLabel" / "list_patition_label.txt"
    raf_code = label_file.read_text().split("train_00001.jpg ")[1][0]
    assert SOURCE_LABELS["raf-db"][raf_code] == CLASSES_7[labels[row]]


def test_affectnet_csvs_boxes_landmarks_and_codes(sample):
    root, info = sample
    header = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,"
              "valence,arousal")
    rows = {}
    for name in ("training.csv", "validation.csv"):
        lines = (root / "affectnet" / name).read_text().splitlines()
        assert lines[0] == header
        rows[name] = [line.split(",") for line in lines[1:]]
    assert {r[6] for r in rows["validation.csv"]} == {str(c) for c in range(8)}
    assert {"8", "9", "10"} <= {r[6] for r in rows["training.csv"]}
    for r in rows["training.csv"] + rows["validation.csv"]:
        assert re.fullmatch(r"\d+/[0-9a-f]{56}\.jpg", r[0])
        with Image.open(root / "affectnet" / "Manually_Annotated_Images" / r[0]) as img:
            width, height = img.size
        if r[6] == "10":
            assert r[5] == "" and r[7:] == ["-2.000000", "-2.000000"]
            continue
        x, y, w, h = map(int, r[1:5])
        assert w == h > 0 and x >= -w // 4 and y >= -h // 4 and x + w <= width * 1.25 and y + h <= height * 1.25
        marks = np.array(r[5].split(";"), dtype=float).reshape(68, 2)
        assert (marks[:, 0] > x - w / 2).all() and (marks[:, 0] < x + 1.5 * w).all()
        assert all(-1 <= float(v) <= 1 for v in r[7:])
    assert len(rows["training.csv"]) + len(rows["validation.csv"]) == sum(info.counts["affectnet"].values())


def test_labelled_folder_layout(sample):
    root, info = sample
    folder = root / "lab-photos"
    images = sorted(p.relative_to(folder).as_posix() for p in folder.glob("*/*.jpg"))
    assert {p.split("/")[0] for p in images} == {"anger", "disgust", "fear", "happiness", "sadness",
                                                 "surprise", "neutral", "contempt"}
    assert all(re.fullmatch(r"[a-z]+/IMG_\d{4}\.jpg", p) for p in images)
    lines = (folder / "splits.csv").read_text().splitlines()
    assert lines[0] == "file,split" and sorted(line.split(",")[0] for line in lines[1:]) == images
    assert {line.split(",")[1] for line in lines[1:]} == {"train", "val", "test"}
    assert len(images) == 40 == sum(info.counts["lab-photos"].values())
    assert [Path(p).name for p in info.defects["stray_files"]] == [".DS_Store", "Thumbs.db"]


def test_refuses_to_overwrite_and_checks_arguments(tmp_path):
    (tmp_path / "fer2013").mkdir()
    (tmp_path / "fer2013" / "fer2013.csv").write_text("precious")
    with pytest.raises(FileExistsError, match="fer2013"):
        write_sample(tmp_path, **SMALL)
    assert (tmp_path / "fer2013" / "fer2013.csv").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fer2013"]
    with pytest.raises(ValueError, match="jaffe_subjects"):
        write_sample(tmp_path / "x", jaffe_subjects=11)
    with pytest.raises(ValueError, match="fer2013_rows"):
        write_sample(tmp_path / "x", fer2013_rows=10)
    with pytest.raises(ValueError, match="affectnet"):
        write_sample(tmp_path / "x", affectnet_rows=5)
