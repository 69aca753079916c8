"""The align stage: dlib landmarks -> a similarity warp to a canonical 48x48 face, with quality fields.

Per image (:class:`Aligner`):

* a first estimate places the face: frames larger than ``detect_above`` px (CK+, JAFFE) go
  through the HOG face detector (the largest face scoring at least ``detect_threshold``;
  when it finds none, once more on the frame doubled) and dlib's 68-point fit in its box;
  smaller frames, and every frame of a ``precropped`` source (FER2013's face crops, on which
  the detector misses about 30%, at 48 px or enlarged), get a coarse fit inside the whole
  frame, enlarged to about ``upscale`` times 48 px, from the box the canonical layout
  implies (pre-cropped faces are framed about as that layout is);
* the face is refitted on an upright canvas at the canonical scale, as is and mirrored
  (:mod:`ferdata.face_fit`); their mean is the landmark estimate, their disagreement the
  fit's own measure of failure (``fit_disagreement``, inter-ocular units). A fit above
  ``disagreement_threshold`` is refined up to ``retries`` times more from that mean. With
  ``batched_fit`` the fits of a chunk run together (:mod:`ferdata.cascade`: the same model,
  less than half dlib's CPU per face);
  A face box the source gives (AffectNet) replaces detection; with ``use_source_landmarks``
  the landmarks it gives (AffectNet, CK+) are warped with instead of dlib's, which are still
  fitted to measure the two;
* a similarity transform puts the eye line level and fits scale and shift by weighted
  least squares over the two eye centres and the mouth centre (``mouth_weight``); the
  output is sampled bilinearly, borders replicate the edge pixels;
* quality: eye-line angle (degrees, positive when the image-right eye is lower) and
  inter-ocular distance (source pixels) before alignment; ``fit_disagreement``; and the
  fit residual, the RMS distance of the 68 points from the mean shape after the best
  similarity fit (inter-ocular units): it grows with pose and expression, so it is
  recorded, not judged.

The canonical layout is dlib's own mean shape (read from the predictor file), scaled so
its jaw spans the output width less ``margin`` on each side, eye line at ``eye_line``.
The defaults approximate FER2013's framing, so CK+ and JAFFE faces come out like it.

Statuses: ``aligned``; ``multiple_faces`` (only with ``flag_multiple_faces``: the largest
face is still aligned); ``no_face`` (no detection, or a frame with almost no contrast);
``unstable_fit`` (the fit and its mirror disagree beyond ``disagreement_threshold`` after
the retries); ``passthrough`` (a source listed in ``passthrough``, or, unless ``realign``, an image
the source already aligned, such as RAF-DB's ``aligned/`` faces: not aligned at all, centred
crop). The failures are handled per source by ``on_failure``: ``drop`` removes the
row (recorded as dropped, with its reason and id) and ``keep`` keeps it with its failure
status and the centred square crop resized to 48x48 (for a 48x48 frame, the frame itself).
"""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.table import Table

from ferdata.executor import Executor, task_size, using
from ferdata.geometry import apply, similarity
from ferdata.given import GivenReader
from ferdata.images import ImageDecodeError, decode_gray
from ferdata.face_fit import COARSE_LEVELS, CanvasFitter, similarity_to
from ferdata.landmarks import Box, LandmarkModel, anchor_points, eye_centres
from ferdata.manifest import (ALIGN_FIELDS, ALIGNED_SCHEMA, IMAGE_SIZE, INGEST_SCHEMA, Reject,
                              array_to_pixels, rejects_table, write_table)
from ferdata.params import ParamsError
from ferdata.progress import progress_bar
from ferdata.resample import centre_crop, warp
from ferdata.shards import Shards, ShardWriter
from ferdata.sources.base import Given

ALIGNED, NO_FACE, MULTIPLE_FACES, UNSTABLE_FIT, PASSTHROUGH = (
    "aligned", "no_face", "multiple_faces", "unstable_fit", "passthrough")
FAILURES = (NO_FACE, MULTIPLE_FACES, UNSTABLE_FIT)
UNREADABLE = "unreadable_image"


@dataclass
class AlignParams:
    """The ``align:`` section of params.yaml."""

    upsample: int = 0  # HOG detector: times the frame is doubled before detection
    detect_threshold: float = 0.3  # HOG detector: lowest score counted as a face
    detect_above: int = 100  # frames whose longer side exceeds this (px) use the detector
    upscale: int = 4  # faces are fitted enlarged this many times (pre-cropped frames, the canvas)
    batched_fit: bool = True  # fit a chunk of faces at once (same model, ferdata.cascade)
    margin: float = 0.08  # gap between the mean face's jaw and each side, fraction of width
    eye_line: float = 0.38  # height of the canonical eye line, fraction of the output
    mouth_weight: float = 0.5  # weight of the mouth centre against each eye centre (1)
    equalize: bool = False  # histogram-equalise the 48x48 output
    min_contrast: float = 2.0  # frames whose pixel std is below this are no_face
    disagreement_threshold: float = 0.06  # fit vs mirrored fit (inter-ocular units) above: unstable_fit
    retries: int = 1  # refinements more for fits above the threshold, each from the last mean
    flag_multiple_faces: bool = False  # status multiple_faces when the detector finds several
    on_failure: dict = field(default_factory=lambda: {"fer2013": "keep", "ckplus": "drop", "jaffe": "drop",
                                                      "raf-db": "drop", "affectnet": "drop"})
    passthrough: list = field(default_factory=list)  # sources not aligned at all
    precropped: list = field(default_factory=lambda: ["fer2013"])  # sources of face crops at any size: no detector
    use_source_landmarks: bool = False  # warp with the landmarks a source gives (AffectNet, CK+)
    realign: bool = False  # align images a source already aligned (RAF-DB's aligned/) again
    chunk_size: int = 256  # most rows per task (fewer when that leaves a worker idle)

    def __post_init__(self) -> None:
        bad = {s: p for s, p in self.on_failure.items() if p not in ("keep", "drop")}
        if bad:
            raise ParamsError(f"params.yaml [align].on_failure: expected keep or drop, got {bad}")
        checks = [("upsample", self.upsample >= 0), ("upscale", self.upscale >= 1),
                  ("margin", 0 <= self.margin < 0.5), ("eye_line", 0 < self.eye_line < 1),
                  ("mouth_weight", self.mouth_weight >= 0),
                  ("disagreement_threshold", self.disagreement_threshold > 0),
                  ("retries", self.retries >= 0),
                  ("chunk_size", self.chunk_size >= 1)]
        for name, ok in checks:
            if not ok:
                raise ParamsError(f"params.yaml [align].{name}: out of range ({getattr(self, name)!r})")

    def policy(self, source: str) -> str:
        """What a failure of ``source`` gets: keep (the default) or drop."""
        return self.on_failure.get(source, "keep")


# ---------------------------------------------------------------- geometry


def equalize(image: np.ndarray) -> np.ndarray:
    """Histogram equalisation of an 8-bit image (a constant image is returned unchanged)."""
    hist = np.bincount(image.ravel(), minlength=256)
    cdf = hist.cumsum()
    lowest = cdf[np.flatnonzero(hist)[0]]
    if cdf[-1] == lowest:
        return image.copy()
    lut = np.clip(np.rint((cdf - lowest) * 255.0 / (cdf[-1] - lowest)), 0, 255).astype(np.uint8)
    return lut[image]


@dataclass(frozen=True)
class Template:
    """The canonical face in output pixels: dlib's mean shape placed by margin and eye line."""

    points: np.ndarray  # (68, 2)
    box: Box  # where the detector's box falls in the output frame
    size: int = IMAGE_SIZE

    @classmethod
    def from_mean_shape(cls, mean: np.ndarray, margin: float, eye_line: float,
                        size: int = IMAGE_SIZE) -> "Template":
        """Scale the jaw to span the width less the margins, centre it, put the eyes at eye_line."""
        scale = (1 - 2 * margin) * size / np.ptp(mean[:, 0])
        dx = (size - 1) / 2 - scale * (mean[:, 0].min() + mean[:, 0].max()) / 2
        dy = eye_line * size - 0.5 - scale * np.mean(eye_centres(mean), axis=0)[1]
        return cls(mean * scale + [dx, dy], Box(dx, dy, dx + scale, dy + scale), size)

    @property
    def anchors(self) -> np.ndarray:
        """The canonical left eye, right eye and mouth centres, (3, 2)."""
        return anchor_points(self.points)

    @property
    def interocular(self) -> float:
        left, right = eye_centres(self.points)
        return float(np.linalg.norm(right - left))


def fit_residual(points: np.ndarray, reference: np.ndarray) -> float:
    """RMS distance of the 68 points from ``reference`` after the best similarity fit,
    in units of the reference's inter-ocular distance (scale-free)."""
    error = apply(similarity(points, reference), points) - reference
    left, right = eye_centres(reference)
    return math.sqrt(np.vdot(error, error) / len(error)) / math.dist(left, right)


# ---------------------------------------------------------------- one image


@dataclass
class Alignment:
    """One image's aligned face and quality fields; ``matrix`` maps source to output pixels."""

    status: str
    pixels: np.ndarray
    faces_detected: int | None = None
    eye_angle: float | None = None
    interocular: float | None = None
    fit_residual: float | None = None
    fit_disagreement: float | None = None
    landmarks: np.ndarray | None = None
    matrix: np.ndarray | None = None


@lru_cache(maxsize=1)
def load_model() -> LandmarkModel:
    """The dlib models, loaded once per process."""
    return LandmarkModel()


@dataclass
class _Estimate:
    """A face's landmarks so far, and the number of faces the detector saw (None: not run)."""

    points: np.ndarray
    faces: int | None
    disagreement: float = math.inf


class Aligner:
    """Aligns grayscale images with the params' settings."""

    def __init__(self, params: AlignParams, model: LandmarkModel | None = None) -> None:
        self.params = params
        self.model = model or load_model()
        self.template = Template.from_mean_shape(self.model.mean_shape, params.margin, params.eye_line)
        self.anchors = self.template.anchors
        self.weights = np.array([1.0, 1.0, params.mouth_weight])
        self.canvas = CanvasFitter(self.model, self.anchors, self.weights, self.template.box,
                                   self.template.size, params.upscale, params.batched_fit)

    def detects(self, image: np.ndarray, precropped: bool) -> bool:
        """Whether the frame goes through the face detector: it is larger than
        ``detect_above`` and not a face crop."""
        return not precropped and max(image.shape) > self.params.detect_above

    def coarse_factor(self, shape: tuple[int, int]) -> int:
        """How many times a pre-cropped frame is enlarged for its coarse fit: to about
        ``upscale`` times the 48 px output, never shrunk."""
        return max(1, math.ceil(self.params.upscale * self.template.size / max(shape)))

    def start_box(self, shape: tuple[int, int]) -> Box:
        """Where the face of a pre-cropped frame is taken to be: the canonical layout's box."""
        h, w = shape
        sx, sy = w / self.template.size, h / self.template.size
        b = self.template.box
        return Box(b.left * sx, b.top * sy, b.right * sx, b.bottom * sy)

    def align(self, image: np.ndarray, given: Given | None = None, precropped: bool = False) -> Alignment:
        """:meth:`align_many` for one image."""
        return self.align_many([image], [given], [precropped])[0]

    def align_many(self, images: list[np.ndarray], given: list[Given | None] | None = None,
                   precropped: list[bool] | None = None) -> list[Alignment]:
        """Estimate each face (from the box its source gives, if any; ``precropped`` frames
        are face crops, never detected), refine it on an upright canvas and its mirror,
        judge, warp."""
        given = given or [None] * len(images)
        precropped = precropped or [False] * len(images)
        estimates = self._first_estimates(images, given, precropped)
        pending = sorted(estimates)
        for _attempt in range(1 + self.params.retries):
            if not pending:
                break
            refined = self.canvas.refine([images[i] for i in pending],
                                         np.stack([estimates[i].points for i in pending]))
            for i, points, gap in zip(pending, refined.points, refined.disagreement):
                if gap < estimates[i].disagreement:
                    estimates[i] = _Estimate(points, estimates[i].faces, float(gap))
            pending = [i for i in pending if estimates[i].disagreement > self.params.disagreement_threshold]
        return [self._finish(self._judge(image, estimates.get(i), g, cropped))
                for i, (image, g, cropped) in enumerate(zip(images, given, precropped))]

    def _first_estimates(self, images: list[np.ndarray], given: list[Given | None],
                         precropped: list[bool]) -> dict[int, _Estimate]:
        """Landmarks to place each face's canvas: the fit in the box the source gives or the
        detector finds, or a coarse fit of a pre-cropped frame from the canonical box. Frames
        without contrast or face are absent."""
        estimates: dict[int, _Estimate] = {}
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, (image, g, cropped) in enumerate(zip(images, given, precropped)):
            if float(image.std()) < self.params.min_contrast:
                continue
            detects = self.detects(image, cropped)
            if g is not None and g.box is not None:
                box = Box(*g.box)
                points = (self.model.fit(image, box) if detects else self.model.fit_many_magnified(
                    image[None], box, self.params.upscale, batched=self.params.batched_fit)[0])
                estimates[i] = _Estimate(points, None)
                continue
            if not detects:
                by_shape.setdefault(image.shape, []).append(i)
                continue
            boxes = self.model.detect(image, self.params.upsample, self.params.detect_threshold)
            if not boxes:  # small or blurred faces: once more on the frame doubled
                boxes = self.model.detect(image, self.params.upsample + 1, self.params.detect_threshold)
            if boxes:
                estimates[i] = _Estimate(self.model.fit(image, boxes[0]), len(boxes))
        for shape, members in by_shape.items():
            points = self.model.fit_many_magnified(np.stack([images[i] for i in members]), self.start_box(shape),
                                                   self.coarse_factor(shape), COARSE_LEVELS, self.params.batched_fit)
            for i, p in zip(members, points):
                estimates[i] = _Estimate(p, None)
        return estimates

    def _judge(self, image: np.ndarray, estimate: _Estimate | None, given: Given | None,
               precropped: bool) -> Alignment:
        """The status and output of one image from its refined landmarks; with
        ``use_source_landmarks``, from the landmarks its source gives (``landmarks`` stays
        dlib's fit either way, to measure the two against each other)."""
        if estimate is None:
            faces = 0 if self.detects(image, precropped) and float(image.std()) >= self.params.min_contrast else None
            return Alignment(NO_FACE, centre_crop(image), faces_detected=faces)
        fitted = points = estimate.points
        own = given is not None and given.landmarks is not None and self.params.use_source_landmarks
        if own:
            points = np.asarray(given.landmarks, np.float64)
        anchors = anchor_points(points)
        dx, dy = anchors[1] - anchors[0]
        quality = dict(faces_detected=estimate.faces, eye_angle=math.degrees(math.atan2(dy, dx)),
                       interocular=math.hypot(dx, dy), fit_residual=fit_residual(points, self.template.points),
                       fit_disagreement=estimate.disagreement, landmarks=fitted)
        if estimate.disagreement > self.params.disagreement_threshold and not own:
            return Alignment(UNSTABLE_FIT, centre_crop(image), **quality)
        matrix = similarity_to(points, self.anchors, self.weights)
        flagged = estimate.faces is not None and estimate.faces > 1 and self.params.flag_multiple_faces
        return Alignment(MULTIPLE_FACES if flagged else ALIGNED, warp(image, matrix, self.template.size),
                         matrix=matrix, **quality)

    def _finish(self, result: Alignment) -> Alignment:
        if self.params.equalize:
            result.pixels = equalize(result.pixels)
        return result


def passthrough(image: np.ndarray, equalized: bool) -> Alignment:
    """A source that is not aligned: the centred crop, status passthrough."""
    pixels = centre_crop(image)
    return Alignment(PASSTHROUGH, equalize(pixels) if equalized else pixels)


# ---------------------------------------------------------------- the stage


def landmark_error(points: np.ndarray, truth: np.ndarray) -> float:
    """Mean point distance between two 68-point sets over the truth's inter-ocular distance."""
    left, right = eye_centres(truth)
    return float(np.mean(np.linalg.norm(points - truth, axis=1)) / np.linalg.norm(right - left))


@dataclass
class RowOutcome:
    """What a worker returns for one manifest row (pixels travel separately)."""

    status: str
    faces_detected: int | None = None
    eye_angle: float | None = None
    interocular: float | None = None
    fit_residual: float | None = None
    fit_disagreement: float | None = None
    landmark_error: float | None = None  # dlib's fit against the landmarks the source gives
    message: str | None = None  # why the row could not be read


#: A manifest row as a worker needs it: (sample_id, source, pixels_row, source_file, what its source gives).
Row = tuple[str, str, int | None, str, Given | None]


class ChunkWorker:
    """Aligns chunks of manifest rows (:data:`Row`) in one process."""

    def __init__(self, params: AlignParams, interim_dir: Path, raw_dir: Path) -> None:
        self.aligner = Aligner(params)
        self.params = params
        self.interim_dir, self.raw_dir = Path(interim_dir), Path(raw_dir)
        self.arrays: dict[str, np.ndarray] = {}

    def pixels_of(self, source: str) -> np.ndarray:
        if source not in self.arrays:
            self.arrays[source] = np.load(self.interim_dir / "pixels" / f"{source}.npy", mmap_mode="r")
        return self.arrays[source]

    def image(self, source: str, pixels_row: int | None, source_file: str) -> np.ndarray:
        """The row's image; an unreadable one raises ValueError naming the file (and row)."""
        if pixels_row is None:
            path = self.raw_dir / source / source_file
            try:
                return decode_gray(path)
            except (ImageDecodeError, OSError) as exc:
                raise ValueError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from exc
        array = self.pixels_of(source)
        if not 0 <= pixels_row < len(array):
            raise ValueError(f"{self.interim_dir / 'pixels' / f'{source}.npy'}: no row {pixels_row} "
                             f"(it holds {len(array)})")
        return np.ascontiguousarray(array[pixels_row])

    def __call__(self, chunk: list[Row]) -> tuple[list[RowOutcome], np.ndarray]:
        images: list[np.ndarray | None] = []
        unreadable: dict[int, str] = {}
        for i, (_sample_id, source, pixels_row, source_file, _given) in enumerate(chunk):
            try:
                images.append(self.image(source, pixels_row, source_file))
            except ValueError as exc:
                images.append(None)
                unreadable[i] = str(exc)
        to_align = [i for i, (row, image) in enumerate(zip(chunk, images))
                    if image is not None and not self.only_resized(row)]
        aligned = dict(zip(to_align, self.aligner.align_many(
            [images[i] for i in to_align], [chunk[i][4] for i in to_align],
            [chunk[i][1] in self.params.precropped for i in to_align])))
        outcomes, pixels = [], np.zeros((len(chunk), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        for i, row in enumerate(chunk):
            if i in unreadable:
                outcomes.append(RowOutcome(UNREADABLE, message=unreadable[i]))
                continue
            result = aligned.get(i) or passthrough(images[i], self.params.equalize)
            outcomes.append(outcome(result, row[4]))
            pixels[i] = result.pixels
        return outcomes, pixels

    def only_resized(self, row: Row) -> bool:
        """Whether a row is passed through: its source is listed in ``passthrough``, or its
        image is a face the source already aligned and ``realign`` is off."""
        given = row[4]
        return row[1] in self.params.passthrough or (
            given is not None and given.prealigned and not self.params.realign)


def outcome(result: Alignment, given: Given | None) -> RowOutcome:
    """A row's quality fields, and dlib's error against the landmarks its source gives."""
    found = RowOutcome(result.status, result.faces_detected, result.eye_angle, result.interocular,
                       result.fit_residual, result.fit_disagreement)
    if given is not None and given.landmarks is not None and result.landmarks is not None:
        found.landmark_error = landmark_error(result.landmarks, given.landmarks)
    return found


_WORKERS: dict[tuple, ChunkWorker] = {}


def align_chunk(params: AlignParams, interim_dir: Path, raw_dir: Path,
                chunk: list[Row]) -> tuple[list[RowOutcome], np.ndarray]:
    """Align one chunk of rows (a task of the executor); the worker, with its model, is built
    once per process and settings."""
    key = (repr(params), str(interim_dir), str(raw_dir))
    if key not in _WORKERS:
        _WORKERS.clear()
        _WORKERS[key] = ChunkWorker(params, interim_dir, raw_dir)
    return _WORKERS[key](chunk)


def _chunks(rows: list[Row], size: int) -> Iterator[list[Row]]:
    return (rows[i:i + size] for i in range(0, len(rows), size))


def align_rows(params: AlignParams, rows: list[Row], interim_dir: Path, raw_dir: Path,
               executor: Executor | None = None) -> tuple[list[RowOutcome], np.ndarray]:
    """Align every row (held in memory), in order."""
    outcomes: list[RowOutcome] = []
    pixels = np.empty((len(rows), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    with using(executor) as pool, progress_bar("align", total=len(rows)) as advance:
        size = task_size(len(rows), pool.workers, params.chunk_size)
        tasks = ((params, interim_dir, raw_dir, chunk) for chunk in _chunks(rows, size))
        for chunk_outcomes, chunk_pixels in pool.map(align_chunk, tasks):
            pixels[len(outcomes):len(outcomes) + len(chunk_outcomes)] = chunk_pixels
            outcomes.extend(chunk_outcomes)
            advance(len(chunk_outcomes))
    return outcomes, pixels


@dataclass
class AlignResult:
    """The stage's outcome: statuses per source, what was dropped or rejected, and per source
    dlib's landmark error against the landmarks the source gives."""

    statuses: dict[str, dict[str, int]]
    dropped: list[Reject]
    rejected: list[Reject]
    rows: int
    landmark_error: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _location(source_file: str, line: int | None) -> str:
    return f"{source_file}:{line}" if line is not None else source_file


@dataclass
class _Tally:
    """What the partitions aligned so far add up to."""

    statuses: dict[str, Counter] = field(default_factory=dict)
    dropped: list[Reject] = field(default_factory=list)
    rejected: list[Reject] = field(default_factory=list)
    errors: dict[str, list[np.ndarray]] = field(default_factory=dict)  # per source, a part at a time
    rows: int = 0
    warnings: list[str] = field(default_factory=list)

    def result(self) -> AlignResult:
        lm_error = {source: {"images": len(e), "mean": float(np.mean(e)), "median": float(np.median(e)),
                             "max": float(np.max(e)), "unit": "mean point distance / inter-ocular distance"}
                    for source, e in sorted((s, np.concatenate(parts)) for s, parts in self.errors.items())}
        return AlignResult({s: dict(sorted(c.items())) for s, c in self.statuses.items()}, self.dropped,
                           self.rejected, self.rows, lm_error, self.warnings)


def _partition_tasks(params: AlignParams, parts: Iterable[pa.Table], givens: GivenReader, interim_dir: Path,
                     raw_dir: Path, size: int, due: deque[pa.Table], warnings: list[str]) -> Iterator[tuple]:
    """The align tasks of every partition in order: a partition's rows (and what their sources
    give) are read only when its tasks are due, and the partition is queued on ``due`` then."""
    for part in parts:
        due.append(part)
        cols = {name: part.column(name).to_pylist() for name in ("sample_id", "source", "pixels_row", "source_file")}
        given, found = givens.rows(cols["sample_id"], cols["source"])
        warnings.extend(found)
        rows = list(zip(cols["sample_id"], cols["source"], cols["pixels_row"], cols["source_file"], given))
        for chunk in _chunks(rows, size):
            yield params, interim_dir, raw_dir, chunk


def _manifest_partitions(path: Path, partition_size: int) -> tuple[int, Iterator[pa.Table]]:
    """The ingest manifest's row count, and its rows in sample-id order a partition at a time:
    read a shard at a time when ingest wrote them in that order (as it does), else read whole
    and sorted."""
    shards = Shards(path)
    missing = [name for name in INGEST_SCHEMA.names if name not in shards.schema.names]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    ids = shards.read(["sample_id"])["sample_id"]
    if len(ids) < 2 or pc.all(pc.less(ids[:-1], ids[1:])).as_py():
        parts = (part.cast(INGEST_SCHEMA) for part in shards.batches(partition_size, INGEST_SCHEMA.names))
        return len(shards), parts
    table = shards.read(INGEST_SCHEMA.names).cast(INGEST_SCHEMA).sort_by("sample_id")
    return table.num_rows, (table.slice(start, partition_size) for start in range(0, table.num_rows, partition_size))


def _aligned_partition(part: pa.Table, outcomes: list[RowOutcome], pixels: np.ndarray, params: AlignParams,
                       tally: _Tally) -> pa.Table:
    """One partition's aligned rows (failures dropped by policy, unreadable rows rejected),
    counted into ``tally``."""
    cols = {name: part.column(name).to_pylist() for name in ("sample_id", "source", "source_file", "source_line")}
    keep = np.ones(part.num_rows, dtype=bool)
    errors: dict[str, list[float]] = {}
    for i, (outcome, source) in enumerate(zip(outcomes, cols["source"])):
        location = _location(cols["source_file"][i], cols["source_line"][i])
        if outcome.landmark_error is not None:
            errors.setdefault(source, []).append(outcome.landmark_error)
        if outcome.status == UNREADABLE:
            keep[i] = False
            tally.rejected.append(Reject(source, location, UNREADABLE, outcome.message or "", "rejected",
                                         cols["sample_id"][i]))
            continue
        tally.statuses.setdefault(source, Counter())[outcome.status] += 1
        if outcome.status in FAILURES and params.policy(source) == "drop":
            keep[i] = False
            tally.dropped.append(Reject(source, location, outcome.status,
                                        f"{outcome.status.replace('_', ' ')}; align.on_failure.{source} is drop",
                                        "dropped", cols["sample_id"][i]))
    for source, values in errors.items():
        tally.errors.setdefault(source, []).append(np.array(values, dtype=np.float64))
    kept = [o for o, k in zip(outcomes, keep) if k]
    out = part.filter(pa.array(keep))
    columns = {
        "align_status": [o.status for o in kept],
        "faces_detected": [o.faces_detected for o in kept],
        "eye_angle": [o.eye_angle for o in kept],
        "interocular": [o.interocular for o in kept],
        "fit_residual": [o.fit_residual for o in kept],
        "fit_disagreement": [o.fit_disagreement for o in kept],
    }
    for f in ALIGN_FIELDS:
        values = array_to_pixels(pixels[keep]) if f.name == "pixels" else pa.array(columns[f.name], f.type)
        out = out.append_column(f, values)
    tally.rows += out.num_rows
    return out.cast(ALIGNED_SCHEMA)


def run_align(params: AlignParams, interim_dir: Path, raw_dir: Path, out_dir: Path,
              executor: Executor | None = None) -> AlignResult:
    """Align every ingested sample on ``executor`` (by default a local pool), a partition at a
    time; write aligned.parquet (a shard per partition of sorted sample ids), rejects.parquet
    and align.json into out_dir."""
    interim_dir, raw_dir, out_dir = Path(interim_dir), Path(raw_dir), Path(out_dir)
    tally = _Tally()
    with using(executor) as pool:
        total, parts = _manifest_partitions(interim_dir / "manifest.parquet", pool.partition_size)
        tmp = _fresh_sibling(out_dir, ".tmp")
        writer = ShardWriter(tmp / "aligned.parquet", ALIGNED_SCHEMA)
        due: deque[pa.Table] = deque()
        tasks = _partition_tasks(params, parts, GivenReader(interim_dir, raw_dir), interim_dir, raw_dir,
                                 task_size(total, pool.workers, params.chunk_size), due, tally.warnings)
        outcomes: list[RowOutcome] = []
        pixels: list[np.ndarray] = []
        with progress_bar("align", total=total) as advance:
            for chunk_outcomes, chunk_pixels in pool.map(align_chunk, tasks):
                outcomes.extend(chunk_outcomes)
                pixels.append(chunk_pixels)
                advance(len(chunk_outcomes))
                if len(outcomes) == due[0].num_rows:  # a partition's last chunk
                    part = _aligned_partition(due.popleft(), outcomes, np.concatenate(pixels), params, tally)
                    writer.write(writer.written, part)
                    outcomes, pixels = [], []
    writer.close()
    result = tally.result()
    _write_outputs(tmp, out_dir, result, params)
    return result


def summary_table(result: AlignResult) -> Table:
    """Per source: rows by status, then dropped and rejected by reason; below, dlib's error
    against the landmarks each source gives."""
    caption = "\n".join(f"{source} landmarks vs dlib: mean error {e['mean']:.3f} inter-ocular "
                        f"({e['images']} images)" for source, e in result.landmark_error.items()) or None
    table = Table(title=f"align: {result.rows} rows written", caption=caption)
    statuses = (ALIGNED, *FAILURES, PASSTHROUGH)
    for col in ("source", *statuses, "dropped", "rejected"):
        table.add_column(col, justify="left" if col in ("source", "dropped", "rejected") else "right")
    for source in sorted(set(result.statuses) | {r.source for r in result.rejected}):
        counts = result.statuses.get(source, {})
        by_reason = [Counter(r.reason for r in group if r.source == source)
                     for group in (result.dropped, result.rejected)]
        table.add_row(source, *(str(counts.get(s, 0)) for s in statuses),
                      *(", ".join(f"{k} {n}" for k, n in sorted(c.items())) or "0" for c in by_reason))
    return table


def _report(result: AlignResult, params: AlignParams) -> dict:
    """align.json: per source, statuses seen, the policy, rows kept, dropped and rejected (with ids)."""
    sources = {}
    for source in sorted(set(result.statuses) | {r.source for r in result.rejected}):
        counts = result.statuses.get(source, {})
        drops = [r for r in result.dropped if r.source == source]
        rejects = [r for r in result.rejected if r.source == source]
        sources[source] = {
            "statuses": counts,
            "policy": params.policy(source),
            "kept": sum(counts.values()) - len(drops),
            "dropped": dict(Counter(r.reason for r in drops)),
            "dropped_ids": [r.sample_id for r in drops],
            "rejected": dict(Counter(r.reason for r in rejects)),
            "rejected_ids": [r.sample_id for r in rejects],
        }
    settings = {k: v for k, v in asdict(params).items() if k != "chunk_size"}
    return {"rows": result.rows, "sources": sources, "landmark_error": result.landmark_error,
            "warnings": result.warnings, "params": settings}


def _fresh_sibling(out_dir: Path, suffix: str) -> Path:
    """An empty folder beside ``out_dir`` to assemble the stage's output in."""
    path = out_dir.with_name(out_dir.name + suffix)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _write_outputs(tmp: Path, out_dir: Path, result: AlignResult, params: AlignParams) -> None:
    """Add the rejects and align.json to the assembled folder ``tmp``, then swap it in place of out_dir."""
    write_table(rejects_table(result.dropped + result.rejected), tmp / "rejects.parquet")
    (tmp / "align.json").write_text(json.dumps(_report(result, params), indent=2) + "\n")
    old = out_dir.with_name(out_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
