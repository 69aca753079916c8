"""Generated data in every source's raw layout, for tests and the demo.

The real datasets are licensed and cannot ship with the project, so :func:`write_sample`
draws faces (:mod:`ferdata.faces`) and writes them exactly as each dataset is
distributed (see FORMATS.md), with a few planted defects for later stages to find. This
module writes FER2013, CK+, JAFFE and FER+; :mod:`ferdata.sample_photos` writes RAF-DB,
AffectNet and a labelled folder. FER2013 and the photo layouts are hard the way real
photos are (:mod:`ferdata.conditions`: pose, light, occluders, blur, weak and in-between
expressions), and a share of FER2013's Training rows carry a wrong label, mostly the
class confusable with the face's expression; CK+ and JAFFE stay studio-clean, as they are.
``sample_truth.json`` records what only the generator knows: every face's true eye and
mouth centres (keyed by the sample id the readers give), the planted defects and wrong
labels, and the expressions of the unlabelled CK+ sequences.

Every file is a pure function of the arguments: the same seed writes identical bytes.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from rich.table import Table

from ferdata.conditions import CONFUSABLE, Shown, crop_pose, is_clear, jittered, occlusion, shown
from ferdata.faces import PEAKS, FaceTruth, Occlusion, Pose, Subject, render_faces
from ferdata.progress import progress_bar
from ferdata.sample_photos import FOLDER_NAME, write_affectnet, write_folder, write_rafdb
from ferdata.taxonomy import CLASSES_7, SOURCE_LABELS

USAGES = ("Training", "PublicTest", "PrivateTest")
#: Real FER2013 class counts per Usage, in class index order.
FER2013_COUNTS: dict[str, tuple[int, ...]] = {
    "Training": (3995, 436, 4097, 7215, 4830, 3171, 4965),
    "PublicTest": (467, 56, 496, 895, 653, 415, 607),
    "PrivateTest": (491, 55, 528, 879, 594, 416, 626),
}
FER2013_FULL_ROWS = 35887
#: CK+ emotion codes a sequence can end in (0, neutral, only labels first frames).
CKPLUS_CODES = (1, 2, 3, 4, 5, 6, 7)
JAFFE_SUBJECTS = ("KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM")
JAFFE_CODES = ("AN", "DI", "FE", "HA", "NE", "SA", "SU")
JAFFE_LAST_NUMBER = 219
SOURCES = ("fer2013", "ckplus", "jaffe", "raf-db", "affectnet", FOLDER_NAME)
#: What a count in the summary stands for, per source.
UNITS = ("rows", "labelled seqs", "images", "images", "rows", "images")
#: fer2013new.csv's vote columns, and the canonical class each emotion column stands for.
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                   "contempt", "unknown", "NF")
FERPLUS_CLASS = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
                 "sad": "sadness", "surprise": "surprise", "neutral": "neutral"}
#: Share of FER2013 Training rows written with a wrong label, unless the caller says otherwise.
LABEL_ERRORS = 0.06
#: Share of the wrong labels that name the class confusable with the face's expression.
CONFUSED_SHARE = 0.7
_CHUNK = 64  # faces rendered per batch: small arrays stay in cache


@dataclass
class SampleInfo:
    """What :func:`write_sample` wrote: counts per source and class, defects, paths."""

    root: Path
    counts: dict[str, dict[str, int]]  # source -> class -> FER rows / CK+ labelled sequences / images / rows
    fer2013_usage: dict[str, int]
    ckplus_sequences: int
    ckplus_unlabelled: int
    ckplus_frames: int
    defects: dict[str, list] = field(default_factory=dict)

    @property
    def paths(self) -> dict[str, Path]:
        return {
            "fer2013": self.root / "fer2013" / "fer2013.csv",
            "ckplus": self.root / "ckplus",
            "jaffe": self.root / "jaffe",
            "raf-db": self.root / "raf-db",
            "affectnet": self.root / "affectnet",
            FOLDER_NAME: self.root / FOLDER_NAME,
            "truth": self.root / "sample_truth.json",
        }

    def summary(self) -> Table:
        """A one-screen table: samples per class and source, then the planted defects."""
        table = Table(title=f"generated sample in {self.root}")
        table.add_column("class")
        sources = [(s, unit) for s, unit in zip(SOURCES, UNITS) if s in self.counts]
        for source, unit in sources:
            table.add_column(f"{source}\n{unit}", justify="right")
        extra = sorted({k for counts in self.counts.values() for k in counts} - set(CLASSES_7 + ("contempt",)))
        for name in CLASSES_7 + ("contempt",) + tuple(extra):
            table.add_row(name, *(str(self.counts[s].get(name, 0)) for s, _ in sources))
        table.add_row("total", *(str(sum(self.counts[s].values())) for s, _ in sources))
        usage = ", ".join(f"{u} {n}" for u, n in self.fer2013_usage.items())
        planted = "; ".join(f"{k} {len(v)}" for k, v in self.defects.items())
        table.caption = (f"FER2013 Usage: {usage}.\nCK+: {self.ckplus_sequences} sequences "
                         f"({self.ckplus_unlabelled} unlabelled), {self.ckplus_frames} frames.\n"
                         f"Planted defects (see sample_truth.json): {planted}.")
        return table


def write_sample(
    out: Path, *, fer2013_rows: int = 700, ckplus_subjects: int = 12, jaffe_subjects: int = 4,
    rafdb_images: int = 60, affectnet_rows: int = 60, folder_images: int = 40,
    seed: int = 0, full_fer2013: bool = False, label_errors: float = LABEL_ERRORS,
) -> SampleInfo:
    """Write ``out/fer2013/``, ``out/ckplus/``, ``out/jaffe/``, ``out/ferplus/`` (FER+ votes
    for the FER2013 rows), ``out/raf-db/``, ``out/affectnet/``, ``out/lab-photos/`` (a
    labelled image folder) and ``out/sample_truth.json``. A count of 0 leaves that
    layout out.

    ``full_fer2013`` writes all 35,887 rows (FER2013's exact per-Usage class counts)
    instead of ``fer2013_rows``; any row count keeps FER2013's proportions. ``label_errors``
    is the share of FER2013 Training rows whose label is not the expression drawn (listed
    in ``sample_truth.json`` → ``label_errors``; the FER+ votes follow the face, not the
    label). Existing outputs are never overwritten: choose an empty folder.
    Everything is written to a temporary folder inside ``out`` and renamed into place.
    """
    out = Path(out)
    if not full_fer2013 and fer2013_rows < 30:
        raise ValueError(f"fer2013_rows must be at least 30 (three per split), not {fer2013_rows}")
    if not 1 <= ckplus_subjects <= 150:
        raise ValueError(f"ckplus_subjects must be 1..150, not {ckplus_subjects}")
    if not 1 <= jaffe_subjects <= len(JAFFE_SUBJECTS):
        raise ValueError(f"jaffe_subjects must be 1..{len(JAFFE_SUBJECTS)}, not {jaffe_subjects}")
    if not 0 <= label_errors <= 0.5:
        raise ValueError(f"label_errors must be a share of the Training rows, 0..0.5, not {label_errors}")
    photos = {"raf-db": rafdb_images, "affectnet": affectnet_rows, FOLDER_NAME: folder_images}
    bad = {name: n for name, n in photos.items() if n < 0 or 0 < n < 10}
    if bad:
        raise ValueError(f"{', '.join(bad)}: 0 (none) or at least 10 images or rows, not {bad}")
    targets = [out / name for name in (*SOURCES, "ferplus", "sample_truth.json") if photos.get(name) != 0]
    existing = [str(t) for t in targets if t.exists()]
    if existing:
        raise FileExistsError(f"{', '.join(existing)}: already exist; write the sample to an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    fer_rng, ck_rng, jaffe_rng = (np.random.default_rng([seed, k]) for k in range(3))
    tmp = Path(tempfile.mkdtemp(prefix=".sample-", dir=out))
    try:
        faces: dict[str, FaceTruth | None] = {}
        fer = _write_fer2013(tmp / "fer2013", fer_rng, FER2013_FULL_ROWS if full_fer2013 else fer2013_rows,
                             label_errors, faces)
        ck = _write_ckplus(tmp / "ckplus", ck_rng, ckplus_subjects, faces)
        jaffe_counts = _write_jaffe(tmp / "jaffe", jaffe_rng, jaffe_subjects, faces)
        _write_ferplus(tmp / "ferplus", np.random.default_rng([seed, 3]), fer.shown, fer.usages)
        counts = {"fer2013": fer.counts, "ckplus": ck.counts, "jaffe": jaffe_counts}
        defects = {**fer.defects, "stray_files": ck.stray_files}
        rng = {name: np.random.default_rng([seed, k]) for k, name in enumerate(photos, start=4)}
        layouts = {}
        if rafdb_images:
            layouts["raf-db"] = write_rafdb(tmp / "raf-db", rng["raf-db"], rafdb_images, faces,
                                            _fer_copy(fer, rng["raf-db"]))
        if affectnet_rows:
            layouts["affectnet"] = write_affectnet(tmp / "affectnet", rng["affectnet"], affectnet_rows, faces)
        if folder_images:
            layouts[FOLDER_NAME] = write_folder(tmp / FOLDER_NAME, rng[FOLDER_NAME], folder_images, faces)
        for name, layout in layouts.items():
            counts[name] = layout.counts
            for key, found in layout.defects.items():
                defects[key] = defects.get(key, []) + found
        info = SampleInfo(
            root=out, counts=counts,
            fer2013_usage=fer.usage, ckplus_sequences=ck.sequences,
            ckplus_unlabelled=len(ck.unlabelled), ckplus_frames=ck.frames, defects=defects)
        header = {"seed": seed, "counts": info.counts, "defects": info.defects,
                  "label_errors": fer.label_errors, "ckplus_unlabelled": ck.unlabelled}
        _write_truth(tmp / "sample_truth.json", header, faces)
        for target in targets:
            (tmp / target.name).rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def _truth_entry(truth: FaceTruth | None) -> dict | None:
    if truth is None:
        return None
    return {"left_eye": [round(v, 2) for v in truth.left_eye],
            "right_eye": [round(v, 2) for v in truth.right_eye],
            "mouth": [round(v, 2) for v in truth.mouth]}


def _write_truth(path: Path, header: dict, faces: dict[str, FaceTruth | None]) -> None:
    """JSON with one line per header entry and per face: readable, and quick to write."""
    entries = [f"{json.dumps(key)}: {json.dumps(value)}" for key, value in header.items()]
    rows = ",\n".join(f"{json.dumps(sid)}: {json.dumps(_truth_entry(t))}" for sid, t in faces.items())
    entries.append('"faces": {\n' + rows + "\n}")
    path.write_text("{\n" + ",\n".join(entries) + "\n}\n")


# ---------------------------------------------------------------- faces

def _apportion(total: int, weights: tuple[int, ...] | list[float]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` (largest remainder), summing exactly."""
    w = np.asarray(weights, dtype=np.float64)
    exact = total * w / w.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


# ---------------------------------------------------------------- FER2013

@dataclass
class _FerResult:
    counts: dict[str, int]
    usage: dict[str, int]
    defects: dict[str, list]
    labels: np.ndarray  # as written
    usages: list[str]
    images: np.ndarray
    shown: list[Shown | None]  # the expression each row's face shows; None: blank
    clear: np.ndarray  # per row: the face is seen plainly (ferdata.conditions.is_clear)
    label_errors: dict[str, dict[str, str]]  # sample id -> the label written, the expression drawn


def _fer_copy(fer: _FerResult, rng: np.random.Generator) -> tuple[str, np.ndarray, int]:
    """A PrivateTest face no other defect involves, to plant in another source: id, image, class.

    The face is a clear one where there is one: the copy is a JPEG, and a blurred or
    covered face's copy can align a little differently from its original, enough to pass
    the split stage's pixel check for near copies unnoticed.
    """
    pairs = fer.defects["exact_duplicates"] + fer.defects["near_duplicates"]
    planted = set(fer.defects["blank"]) | {sid for pair in pairs for sid in pair}
    rows = [r for r, usage in enumerate(fer.usages) if usage == "PrivateTest" and _fer_id(r) not in planted]
    rows = [r for r in rows if fer.clear[r]] or rows
    row = rows[int(rng.integers(len(rows)))]
    return _fer_id(row), fer.images[row], int(fer.labels[row])


def fer2013_plan(rows: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """Usage and label of every row, in FER2013's proportions (35,887 rows: its exact counts).

    Training rows come first, then PublicTest, then PrivateTest, as in fer2013.csv.
    """
    usage_rows = _apportion(rows, [sum(FER2013_COUNTS[u]) for u in USAGES])
    usages, labels = [], []
    for usage, n in zip(USAGES, usage_rows):
        block = np.repeat(np.arange(len(CLASSES_7)), _apportion(n, FER2013_COUNTS[usage]))
        labels.append(rng.permutation(block))
        usages += [usage] * n
    return usages, np.concatenate(labels)


def _fer_face(rng: np.random.Generator, drawn: int) -> tuple[Subject, Shown, Pose, Occlusion]:
    """A FER2013-style crop of a face showing class ``drawn``: it fills the 48x48 frame, and
    pose, light, camera, occluders and the expression's strength vary (:mod:`ferdata.conditions`)."""
    return Subject.random(rng), shown(rng, CLASSES_7[drawn]), crop_pose(rng), occlusion(rng)


def _plan_label_errors(labels: np.ndarray, usages: list[str], share: float,
                       rng: np.random.Generator) -> np.ndarray:
    """The class each row's face shows: its label, except on ``share`` of the Training rows.

    There the face shows the class confusable with the label (:data:`CONFUSED_SHARE` of
    them: a sad face labelled neutral) or another class at random. The labels, and so the
    per-Usage class counts, stay as planned.
    """
    drawn = labels.copy()
    train = np.flatnonzero(np.array(usages) == "Training")
    for row in np.sort(rng.choice(train, int(round(share * len(train))), replace=False)):
        label = int(labels[row])
        others = [k for k in range(len(CLASSES_7)) if k != label]
        confusable = CLASSES_7.index(CONFUSABLE[CLASSES_7[label]])
        drawn[row] = confusable if rng.random() < CONFUSED_SHARE else others[int(rng.integers(len(others)))]
    return drawn


def _plant_fer_defects(images: np.ndarray, labels: np.ndarray, usages: list[str],
                       truths: list[FaceTruth | None], shown_rows: list[Shown | None], mislabelled: np.ndarray,
                       rng: np.random.Generator) -> dict[str, list]:
    """Copy Training faces into the test splits (exact and near), blank one Training row.

    A copy takes a row of the same class, so the per-Usage class counts stay as planned;
    rows with a wrong label take no part, so no copy carries one into the test splits.
    """
    usage = np.array(usages)
    is_train = usage == "Training"
    free = ~mislabelled

    def pick(candidates: np.ndarray) -> int:
        candidates = np.flatnonzero(candidates & free)
        row = int(candidates[rng.integers(len(candidates))])
        free[row] = False
        return row

    def copy_into(split: str) -> tuple[int, int]:
        sourced = np.isin(labels, labels[is_train & free])
        target = pick((usage == split) & sourced)
        source = pick(is_train & (labels == labels[target]))
        truths[target], shown_rows[target] = truths[source], shown_rows[source]
        return source, target

    defects: dict[str, list] = {"exact_duplicates": [], "near_duplicates": [], "blank": []}
    for split in ("PublicTest", "PrivateTest"):
        source, target = copy_into(split)
        images[target] = images[source]
        defects["exact_duplicates"].append([_fer_id(source), _fer_id(target)])
    source, target = copy_into("PublicTest")
    near = images[source].astype(np.int16) + 1
    near += (rng.random(near.shape) < 0.05) * rng.choice([-1, 1], size=near.shape)
    images[target] = np.clip(near, 0, 255).astype(np.uint8)
    defects["near_duplicates"].append([_fer_id(source), _fer_id(target)])
    blank = pick(is_train)
    images[blank] = int(rng.integers(0, 256))
    truths[blank] = shown_rows[blank] = None
    defects["blank"].append(_fer_id(blank))
    return defects


def _fer_id(row: int) -> str:
    return f"fer2013-{row:06d}"


def _write_fer2013(folder: Path, rng: np.random.Generator, rows: int, label_errors: float,
                   faces: dict[str, FaceTruth | None]) -> _FerResult:
    """fer2013.csv: header ``emotion,pixels,Usage``, one 48x48 face per row."""
    usages, labels = fer2013_plan(rows, rng)
    drawn = _plan_label_errors(labels, usages, label_errors, rng)
    n = len(labels)
    images = np.empty((n, 48, 48), np.uint8)
    truths: list[FaceTruth | None] = []
    shown_rows: list[Shown | None] = []
    clear = np.zeros(n, bool)
    with progress_bar("sample fer2013", n) as advance:
        for start in range(0, n, _CHUNK):
            people, shows, poses, covers = zip(*(_fer_face(rng, int(k)) for k in drawn[start:start + _CHUNK]))
            expressions = [show.expression(rng) for show in shows]
            imgs, points = render_faces(list(people), expressions, list(poses), (48, 48), rng, list(covers))
            images[start:start + len(imgs)] = imgs
            truths += [FaceTruth.from_landmarks(p) for p in points]
            shown_rows += shows
            clear[start:start + len(imgs)] = [is_clear(pose, cover) for pose, cover in zip(poses, covers)]
            advance(len(imgs))
    mislabelled = drawn != labels
    defects = _plant_fer_defects(images, labels, usages, truths, shown_rows, mislabelled, rng)
    folder.mkdir(parents=True)
    words = np.array([str(i) for i in range(256)], dtype=object)
    with open(folder / "fer2013.csv", "w", newline="\n") as fh:
        fh.write("emotion,pixels,Usage\n")
        for label, image, usage in zip(labels, images, usages):
            fh.write(f"{label},{' '.join(words[image.ravel()])},{usage}\n")
    for row, truth in enumerate(truths):
        faces[_fer_id(row)] = truth
    errors = {_fer_id(row): {"label": CLASSES_7[labels[row]], "expression": CLASSES_7[drawn[row]]}
              for row in np.flatnonzero(mislabelled).tolist()}
    return _FerResult(
        counts={c: int((labels == k).sum()) for k, c in enumerate(CLASSES_7)},
        usage={u: usages.count(u) for u in USAGES}, defects=defects, labels=labels, usages=usages, images=images,
        shown=shown_rows, clear=clear, label_errors=errors)


def _votes(rng: np.random.Generator, face: Shown | None) -> dict[str, int]:
    """Ten annotators' votes on a face: not-a-face for a blank row; otherwise most for the class
    it shows, some for its confusable class as far as it leans there, some for neutral when
    the expression is weak, and now and then a stray vote."""
    votes = dict.fromkeys(FERPLUS_COLUMNS, 0)
    if face is None:
        votes["NF"] = 10
        return votes
    partner = 0.9 * face.lean
    neutral = 0.0 if face.name == "neutral" else 0.6 * max(0.0, 0.55 - face.intensity)
    others = [c for c in CLASSES_7 if c not in (face.name, face.partner, "neutral")]
    stray = 0.03
    names = [face.name, face.partner, "neutral", *others]
    shares = [1 - partner - neutral - stray, partner, neutral] + [stray / len(others)] * len(others)
    for name, count in zip(names, rng.multinomial(10, shares).tolist()):
        votes[FERPLUS_CLASS[name]] += count
    return votes


def _write_ferplus(folder: Path, rng: np.random.Generator, shown_rows: list[Shown | None],
                   usages: list[str]) -> None:
    """fer2013new.csv: ten annotators' votes per fer2013.csv row, as FER+ distributes them.

    The votes follow the face (:func:`_votes`), not the label fer2013.csv gives it, so they
    mostly name the true expression of a row with a wrong label; about one row in 200 has
    no image name, as in the real file.
    """
    folder.mkdir(parents=True)
    with open(folder / "fer2013new.csv", "w", newline="\n") as fh:
        fh.write("Usage,Image name," + ",".join(FERPLUS_COLUMNS) + "\n")
        for row, (face, usage) in enumerate(zip(shown_rows, usages)):
            votes = _votes(rng, face)
            image = "" if rng.random() < 1 / 200 else f"fer{row:07d}.png"
            fh.write(f"{usage},{image}," + ",".join(str(votes[c]) for c in FERPLUS_COLUMNS) + "\n")


# ---------------------------------------------------------------- CK+

@dataclass
class _CkResult:
    counts: dict[str, int]
    sequences: int
    frames: int
    unlabelled: dict[str, str]  # "S005_002" -> the expression drawn
    stray_files: list[str]


def _save_png(path: Path, image: np.ndarray, rgb: bool) -> None:
    """A grayscale PNG, or for an RGB subject a faintly warm colour one."""
    if rgb:
        g = image.astype(np.float32)
        image = np.clip(np.rint(np.stack([g * 1.04, g, g * 0.93], -1)), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(path, format="PNG", compress_level=1)


@dataclass
class _CkSubject:
    sid: str
    person: Subject
    size: tuple[int, int]
    rgb: bool
    noise: float
    sequences: list[tuple[str, int]]  # (sequence number, CK+ emotion code)


def _ckplus_plan(rng: np.random.Generator, subjects: int) -> list[_CkSubject]:
    """Subjects with sparse ids (S005, S010, ...), each with 2-3 sequences of distinct emotions."""
    rgb = set(rng.choice(subjects, size=max(1, subjects // 6), replace=False).tolist())
    small = set(rng.choice(subjects, size=subjects // 6, replace=False).tolist())
    plan, number = [], 5
    for index in range(subjects):
        chosen = rng.choice(CKPLUS_CODES, size=int(rng.integers(2, 4)), replace=False)
        seqs = np.cumsum(rng.integers(1, 3, size=len(chosen)))
        plan.append(_CkSubject(
            sid=f"S{number:03d}", person=Subject.random(rng),
            size=(640, 480) if index in small else (640, 490), rgb=index in rgb,
            noise=rng.uniform(0.2, 0.8), sequences=[(f"{q:03d}", int(c)) for q, c in zip(seqs, chosen)]))
        number += int(rng.integers(1, 7))
    return plan


def _render_sequence(subject: _CkSubject, code: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """6-9 frames morphing from the neutral face to the peak; the head holds still."""
    n = int(rng.integers(6, 10))
    peak = jittered(PEAKS[SOURCE_LABELS["ckplus"][str(code)]], rng, rng.uniform(0.85, 1.1))
    t = np.linspace(0.0, 1.0, n)
    intensity = t * t * (3 - 2 * t)
    pose = Pose(center=(320 + rng.normal(0, 15), subject.size[1] / 2 + rng.normal(0, 12)),
                scale=rng.uniform(72, 95), angle_deg=rng.normal(0, 3), brightness=rng.uniform(-20, 20),
                noise=subject.noise, blur=0.8)
    expressions = [peak.scaled(float(i)) for i in intensity]
    return render_faces([subject.person] * n, expressions, [pose] * n, subject.size, rng)


def _write_ckplus(folder: Path, rng: np.random.Generator, subjects: int,
                  faces: dict[str, FaceTruth | None]) -> _CkResult:
    """cohn-kanade-images/, Emotion/ and Landmarks/ trees: sequences from neutral to peak.

    About a fifth of the sequences (at least one) have an empty Emotion folder.
    """
    names = SOURCE_LABELS["ckplus"]
    plan = _ckplus_plan(rng, subjects)
    all_seqs = [(s.sid, q) for s in plan for q, _ in s.sequences]
    picks = rng.choice(len(all_seqs), size=max(1, round(0.2 * len(all_seqs))), replace=False)
    unlabelled_keys = {all_seqs[i] for i in picks.tolist()}
    counts = {names[str(c)]: 0 for c in CKPLUS_CODES}
    unlabelled: dict[str, str] = {}
    frames = 0
    images_dir = folder / "cohn-kanade-images"
    with progress_bar("sample ckplus", subjects) as advance:
        for subject in plan:
            for seq, code in subject.sequences:
                imgs, points = _render_sequence(subject, code, rng)
                dirs = [folder / tree / subject.sid / seq
                        for tree in ("cohn-kanade-images", "Landmarks", "Emotion")]
                for d in dirs:
                    d.mkdir(parents=True)
                stems = [f"{subject.sid}_{seq}_{k + 1:08d}" for k in range(len(imgs))]
                for stem, img, pts in zip(stems, imgs, points):
                    _save_png(dirs[0] / f"{stem}.png", img, subject.rgb)
                    (dirs[1] / f"{stem}_landmarks.txt").write_text(
                        "".join(f"   {x:.7e}   {y:.7e}\n" for x, y in pts))
                    faces[f"ckplus-{stem}"] = FaceTruth.from_landmarks(pts)
                if (subject.sid, seq) in unlabelled_keys:
                    unlabelled[f"{subject.sid}_{seq}"] = names[str(code)]
                else:
                    (dirs[2] / f"{stems[-1]}_emotion.txt").write_text(f"   {float(code):.7e}\n")
                    counts[names[str(code)]] += 1
                frames += len(imgs)
            advance(1)
    stray = images_dir / plan[0].sid / ".DS_Store"
    stray.write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(58))
    return _CkResult(counts, len(all_seqs), frames, unlabelled, [str(stray.relative_to(folder.parent))])


# ---------------------------------------------------------------- JAFFE

_JAFFE_README = """\
Generated stand-in for the JAFFE distribution (ferdata sample): 256x256 grayscale TIFF
images named SUBJECT.EXPRESSIONpose.number.tiff, expressions AN DI FE HA NE SA SU.
These drawn faces are not the JAFFE images, which are available from their authors.
"""


def _save_tiff(path: Path, image: np.ndarray, palette: bool) -> None:
    """An uncompressed 8-bit TIFF; ``palette`` stores it in P mode with a grey palette."""
    if palette:
        img = Image.frombytes("P", (image.shape[1], image.shape[0]), image.tobytes())
        img.putpalette([v for i in range(256) for v in (i, i, i)])
    else:
        img = Image.fromarray(image)
    img.save(path, format="TIFF")


def _write_jaffe(folder: Path, rng: np.random.Generator, subjects: int,
                 faces: dict[str, FaceTruth | None]) -> dict[str, int]:
    """One flat folder of ``KA.AN1.39.tiff`` images, three per expression, and a README."""
    folder.mkdir(parents=True)
    (folder / "README").write_text(_JAFFE_README)
    names = SOURCE_LABELS["jaffe"]
    counts = {names[c]: 0 for c in JAFFE_CODES}
    plan = [(expr, pose) for expr in JAFFE_CODES for pose in (1, 2, 3)]
    total = subjects * len(plan)
    palette = set(rng.choice(total, size=max(1, total // 25), replace=False).tolist())
    number = done = 0
    for code in JAFFE_SUBJECTS[:subjects]:
        person = Subject.random(rng)
        expressions = [jittered(PEAKS[names[e]], rng, rng.uniform(0.8, 1.1)) for e, _ in plan]
        poses = [Pose(center=(128 + rng.normal(0, 4), 134 + rng.normal(0, 4)), scale=rng.uniform(52, 64),
                      angle_deg=rng.normal(0, 3), brightness=rng.uniform(-15, 15), noise=rng.uniform(1, 2.5))
                 for _ in plan]
        imgs, points = render_faces([person] * len(plan), expressions, poses, (256, 256), rng)
        for (expr, pose), img, pts in zip(plan, imgs, points):
            # image numbers run up to 219 with gaps, as in JAFFE
            gap = rng.random() < 0.03 and number + 2 + (total - done - 1) <= JAFFE_LAST_NUMBER
            number += 1 + int(gap)
            stem = f"{code}.{expr}{pose}.{number}"
            _save_tiff(folder / f"{stem}.tiff", img, palette=done in palette)
            faces[f"jaffe-{stem}"] = FaceTruth.from_landmarks(pts)
            counts[names[expr]] += 1
            done += 1
    return counts
