"""Generated RAF-DB, AffectNet and labelled-folder layouts: photographs with a face in them.

:func:`ferdata.sample.write_sample` calls these writers. Each draws faces
(:mod:`ferdata.faces`) into photos of varied size and saves them as JPEG files exactly
where the dataset keeps them (FORMATS.md), records every face's truth under the id the
reader will give it, and plants the defects later stages must find: a RAF-DB image that
is a copy of a FER2013 face, AffectNet rows that name no expression (codes 8-10), and a
stray ``Thumbs.db`` in the folder source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ferdata.conditions import occlusion, photo_pose, shown
from ferdata.faces import Expression, FaceTruth, Pose, Subject, render_faces
from ferdata.sources.affectnet import NOT_EXPRESSIONS
from ferdata.taxonomy import CLASSES_7, SOURCE_LABELS

#: RAF-DB basic's class counts (train, test), by its label code 1..7.
RAFDB_COUNTS = {"1": (1290, 329), "2": (281, 74), "3": (717, 160), "4": (4772, 1185),
                "5": (1982, 478), "6": (705, 162), "7": (2524, 680)}
#: AffectNet's manually annotated training rows per expression code 0..10.
AFFECTNET_COUNTS = (74874, 134415, 25459, 14090, 6378, 3803, 24882, 3750, 33088, 11645, 82414)
#: Typical (valence, arousal) of each AffectNet expression code 0..7.
AFFECT = ((0.0, 0.0), (0.7, 0.35), (-0.6, -0.2), (0.2, 0.7), (-0.5, 0.7), (-0.6, 0.4), (-0.5, 0.6),
          (-0.4, 0.3))
#: The generated folder source: its name, and its class folders (a vocabulary of its own).
FOLDER_NAME = "lab-photos"
FOLDER_CLASSES = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happiness": "happy",
                  "sadness": "sad", "surprise": "surprise", "neutral": "neutral", "contempt": "contempt"}
#: The labels map its params entry needs: the folders not named after a class.
FOLDER_LABELS = {folder: label for folder, label in FOLDER_CLASSES.items() if folder != label}


@dataclass
class PhotoLayout:
    """What one writer wrote: samples per class and the defects it planted."""

    counts: dict[str, int]
    defects: dict[str, list] = field(default_factory=dict)


def _face(rng: np.random.Generator, expression: Expression, size: tuple[int, int],
          subject: Subject | None = None, pose: Pose | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One face in a photo of ``size`` (W, H): where ``pose`` says, or anywhere, turned, lit
    and covered as real photos are (:mod:`ferdata.conditions`). Returns image, landmarks."""
    cover = None
    if pose is None:
        pose, cover = photo_pose(rng, size), [occlusion(rng)]
    images, points = render_faces([subject or Subject.random(rng)], [expression], [pose], size, rng, cover)
    return images[0], points[0]


def _expression(rng: np.random.Generator, name: str) -> Expression:
    """A person's take on a class's expression: its strength, its lean toward a confusable
    class and its favoured side vary (:func:`ferdata.conditions.shown`)."""
    return shown(rng, name, strong=(0.7, 1.1)).expression(rng)


def _save_jpeg(path: Path, gray: np.ndarray, quality: int = 90, exact: bool = False) -> None:
    """A colour JPEG with a faint warm cast; ``exact`` stores the grey levels unchanged at
    the highest quality and full colour resolution, so the file decodes back to within one
    grey level."""
    if exact:
        rgb = np.repeat(gray[..., None], 3, axis=-1)
    else:
        g = gray.astype(np.float32)
        rgb = np.clip(np.rint(np.stack([g * 1.03, g, g * 0.95], -1)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format="JPEG", quality=100 if exact else quality,
                              subsampling=0 if exact else 2)


def _photo_size(rng: np.random.Generator, low: int, high: int) -> tuple[int, int]:
    return int(rng.integers(low, high)), int(rng.integers(low, high))


def _plan(total: int, weights: list[int] | tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """``total`` class indices in proportion to ``weights`` (largest remainder), shuffled."""
    w = np.asarray(weights, dtype=np.float64)
    exact = total * w / w.sum()
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]] += 1
    return rng.permutation(np.repeat(np.arange(len(w)), counts))


# ---------------------------------------------------------------- RAF-DB

def write_rafdb(folder: Path, rng: np.random.Generator, images: int, faces: dict[str, FaceTruth | None],
                fer_copy: tuple[str, np.ndarray, int]) -> PhotoLayout:
    """``EmoLabel/list_patition_label.txt``, ``Image/original/`` photos and ``Image/aligned/``
    100x100 faces, in RAF-DB's class and split proportions.

    ``fer_copy`` (FER2013 sample id, its 48x48 face, its class index) is planted as the
    first train image: a FER2013 test face that is also in RAF-DB's train split.
    """
    codes = sorted(RAFDB_COUNTS)
    n_test = max(1, round(images * 0.2))
    plan = [("train", c) for c in _plan(images - n_test, [RAFDB_COUNTS[c][0] for c in codes], rng)]
    plan += [("test", c) for c in _plan(n_test, [RAFDB_COUNTS[c][1] for c in codes], rng)]
    code_of = {name: code for code, name in SOURCE_LABELS["raf-db"].items()}
    copy_id, copy_face, copy_class = fer_copy
    plan[0] = ("train", codes.index(code_of[CLASSES_7[copy_class]]))
    lines, counts, numbers = [], dict.fromkeys(CLASSES_7, 0), {"train": 0, "test": 0}
    for k, (split, c) in enumerate(plan):
        numbers[split] += 1
        stem = f"{split}_{numbers[split]:05d}" if split == "train" else f"{split}_{numbers[split]:04d}"
        label = SOURCE_LABELS["raf-db"][codes[c]]
        if k == 0:  # train_00001
            original = copy_face
            aligned = np.asarray(Image.fromarray(copy_face).resize((100, 100), Image.BICUBIC))
            faces[f"raf-db-{stem}"] = None
        else:
            person, expression = Subject.random(rng), _expression(rng, label)
            original, points = _face(rng, expression, _photo_size(rng, 220, 520), person)
            aligned, _ = _face(rng, expression, (100, 100), person, Pose(center=(50, 45), scale=28, noise=1.5))
            faces[f"raf-db-{stem}"] = FaceTruth.from_landmarks(points)
        _save_jpeg(folder / "Image" / "original" / f"{stem}.jpg", original, exact=k == 0)
        _save_jpeg(folder / "Image" / "aligned" / f"{stem}_aligned.jpg", aligned)
        lines.append(f"{stem}.jpg {codes[c]}\n")
        counts[label] += 1
    (folder / "EmoLabel").mkdir(parents=True)
    (folder / "EmoLabel" / "list_patition_label.txt").write_text("".join(sorted(lines)))
    return PhotoLayout(counts, {"cross_source_duplicates": [[copy_id, "raf-db-train_00001"]]})


# ---------------------------------------------------------------- AffectNet

def write_affectnet(folder: Path, rng: np.random.Generator, rows: int,
                    faces: dict[str, FaceTruth | None]) -> PhotoLayout:
    """``training.csv``, ``validation.csv`` and ``Manually_Annotated_Images/<n>/<hash>.jpg``.

    Training rows follow AffectNet's code proportions, so about a third are codes 8-10
    (none, uncertain, no face: a photo without a face); validation rows are balanced over
    codes 0-7. Boxes are square, placed as a face detector would (with some jitter), and the
    landmarks are the drawing's own points with annotation noise.
    """
    n_val = max(8, rows // 5)
    splits = [("training.csv", c) for c in _plan(rows - n_val, AFFECTNET_COUNTS, rng)]
    splits += [("validation.csv", c) for c in _plan(n_val, [1] * 8, rng)]
    header = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,"
              "valence,arousal\n")
    lines: dict[str, list[str]] = {"training.csv": [header], "validation.csv": [header]}
    counts: dict[str, int] = {}
    not_expressions = []
    for csv_name, code in splits:
        path = f"{int(rng.integers(1, 1000))}/{rng.bytes(28).hex()}.jpg"
        size = _photo_size(rng, 300, 640)
        if code == 10:
            image, points = _no_face(rng, size), None
        else:
            name = SOURCE_LABELS["affectnet"].get(str(code)) or str(rng.choice(CLASSES_7))
            image, points = _face(rng, _expression(rng, name).scaled(0.4 if code == 8 else 1.0), size)
        _save_jpeg(folder / "Manually_Annotated_Images" / path, image)
        sample_id = "affectnet-" + path.removesuffix(".jpg").replace("/", "_")
        faces[sample_id] = FaceTruth.from_landmarks(points) if points is not None else None
        lines[csv_name].append(_affectnet_row(rng, path, code, points, size))
        label = SOURCE_LABELS["affectnet"].get(str(code)) or NOT_EXPRESSIONS[str(code)]
        counts[label] = counts.get(label, 0) + 1
        if str(code) in NOT_EXPRESSIONS:
            not_expressions.append(sample_id)
    for csv_name, text in lines.items():
        (folder / csv_name).write_text("".join(text))
    return PhotoLayout(counts, {"affectnet_not_expressions": not_expressions})


def affectnet_faces(folder: Path, rng: np.random.Generator, count: int, prefix: str, size: int = 96,
                    batch: int = 256) -> list[str]:
    """``count`` small AffectNet photos, each a face filling most of a ``size`` x ``size``
    JPEG (codes 0-6, a person and pose of its own), written to
    ``Manually_Annotated_Images/<prefix>/``; returns their CSV lines (box, landmarks, affect)
    in writing order. Drawn a batch at a time: benchmarks make hundreds of thousands."""
    lines = []
    for start in range(0, count, batch):
        n = min(batch, count - start)
        codes = rng.integers(0, 7, size=n)
        expressions = [_expression(rng, SOURCE_LABELS["affectnet"][str(c)]) for c in codes]
        poses = [Pose(center=(size / 2 + rng.normal(0, size / 40), size * 0.47 + rng.normal(0, size / 40)),
                      scale=rng.uniform(0.22, 0.27) * size, angle_deg=float(np.clip(rng.normal(0, 5), -12, 12)),
                      brightness=rng.uniform(-25, 25), contrast=rng.uniform(0.8, 1.15), noise=rng.uniform(1, 3))
                 for _ in range(n)]
        images, points = render_faces([Subject.random(rng) for _ in range(n)], expressions, poses, (size, size), rng)
        for k, (code, image, marks) in enumerate(zip(codes, images, points)):
            path = f"{prefix}/{start + k:06d}{rng.bytes(8).hex()}.jpg"
            _save_jpeg(folder / "Manually_Annotated_Images" / path, image)
            lines.append(_affectnet_row(rng, path, int(code), marks, (size, size)))
    return lines


def _no_face(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A photo of no face: a lit gradient with blobs and grain."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = 90 + 60 * np.sin(x / rng.uniform(20, 60)) * np.cos(y / rng.uniform(20, 60)) + 0.1 * x
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _affectnet_row(rng: np.random.Generator, path: str, code: int, points: np.ndarray | None,
                   size: tuple[int, int]) -> str:
    """One CSV line: box and landmarks where there is a face, affect ratings where rated."""
    if points is None:
        box, marks, affect = (0, 0, size[0], size[1]), "", (-2.0, -2.0)
    else:
        left, right = points[36:42].mean(0), points[42:48].mean(0)
        side = 2.43 * np.linalg.norm(right - left) * rng.uniform(0.95, 1.08)  # dlib's box: 2.43 IODs
        centre = (left + right) / 2 + rng.normal(0, 0.03 * side, 2)
        box = (int(round(centre[0] - side / 2)), int(round(centre[1] - 0.315 * side)), int(round(side)),
               int(round(side)))
        noisy = points + rng.normal(0, 0.02 * np.linalg.norm(right - left), points.shape)
        marks = ";".join(f"{v:.2f}" for v in noisy.ravel())
        typical = AFFECT[code] if code < len(AFFECT) else (0.0, 0.0)
        affect = tuple(float(np.clip(v + rng.normal(0, 0.15), -1, 1)) for v in typical)
    return (f"{path},{box[0]},{box[1]},{box[2]},{box[3]},{marks},{code},"
            f"{affect[0]:.6f},{affect[1]:.6f}\n")


# ---------------------------------------------------------------- a labelled folder

def write_folder(folder: Path, rng: np.random.Generator, images: int,
                 faces: dict[str, FaceTruth | None]) -> PhotoLayout:
    """``<class>/IMG_0001.jpg`` photos in class folders named in words of their own, a
    ``splits.csv`` (about 70/15/15 per class) and a stray ``Thumbs.db``."""
    folders = list(FOLDER_CLASSES)
    plan = _plan(images, [3] * 7 + [1], rng)
    counts = dict.fromkeys(FOLDER_CLASSES.values(), 0)
    split_lines = ["file,split\n"]
    for number, k in enumerate(plan, 1):
        file = f"{folders[k]}/IMG_{number:04d}.jpg"
        image, points = _face(rng, _expression(rng, FOLDER_CLASSES[folders[k]]), (400, 300))
        _save_jpeg(folder / file, image, quality=85)
        faces[f"{FOLDER_NAME}-{file.removesuffix('.jpg').replace('/', '_')}"] = FaceTruth.from_landmarks(points)
        split = "train" if rng.random() < 0.7 else str(rng.choice(["val", "test"]))
        split_lines.append(f"{file},{split}\n")
        counts[FOLDER_CLASSES[folders[k]]] += 1
    (folder / "splits.csv").write_text("".join(split_lines))
    stray = folder / folders[int(plan[0])] / "Thumbs.db"
    stray.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(56))
    return PhotoLayout(counts, {"stray_files": [stray.relative_to(folder.parent).as_posix()]})
