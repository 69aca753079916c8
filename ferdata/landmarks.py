"""dlib's HOG face detector and 68-point landmark predictor, and the predictor's mean shape.

The models ship in the ``face-recognition-models`` package; nothing is downloaded.
Landmarks follow dlib's 68-point scheme (iBUG 300-W): 36-41 the eye on the image's
left, 42-47 the eye on the image's right, 48-67 the mouth.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from functools import lru_cache
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

from ferdata.cascade import DlibReader, batch_predictor
from ferdata.geometry import invert
from ferdata.resample import render

LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
MOUTH = slice(48, 68)
_POINT_PUNCTUATION = str.maketrans("(),", "   ")


def predictor_path() -> Path:
    """The 68-point predictor file of the installed ``face-recognition-models`` package."""
    import face_recognition_models

    return Path(face_recognition_models.pose_predictor_model_location())


@lru_cache(maxsize=4)
def mean_shape(path: Path | None = None) -> np.ndarray:
    """The predictor's own mean shape: (68, 2) points in detector-box units (box = unit square).

    It is the cascade's starting shape, the average training shape normalised to the face
    detector's box, stored first in the model file (after the serialisation version).
    """
    path = Path(path or predictor_path())
    with path.open("rb") as fh:
        reader = DlibReader(fh.read(4096))
    version = reader.integer()
    rows, cols = abs(reader.integer()), abs(reader.integer())
    if version != 1 or rows != 136 or cols != 1:
        raise ValueError(f"{path}: not a 68-point dlib shape predictor "
                         f"(version {version}, initial shape {rows}x{cols})")
    return np.array(reader.floats(rows)).reshape(68, 2)


def _averaging_rows(*parts: slice) -> np.ndarray:
    """A (len(parts), 68) matrix whose product with 68 points averages each part's points."""
    rows = np.zeros((len(parts), 68))
    for row, part in zip(rows, parts):
        row[part] = 1.0 / (part.stop - part.start)
    return rows


_EYES_AND_MOUTH = _averaging_rows(LEFT_EYE, RIGHT_EYE, MOUTH)


def anchor_points(points: np.ndarray) -> np.ndarray:
    """Image-left eye centre, image-right eye centre and mouth centre, (3, 2): means of their points."""
    return _EYES_AND_MOUTH @ points


def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean of each eye's six points: (image-left eye, image-right eye)."""
    left, right, _ = anchor_points(points)
    return left, right


@dataclass(frozen=True)
class Box:
    """A detected face: corners in image pixels and the detector's score."""

    left: float
    top: float
    right: float
    bottom: float
    score: float = 0.0

    @property
    def area(self) -> float:
        return (self.right - self.left) * (self.bottom - self.top)


class LandmarkModel:
    """The detector and the 68-point predictor, loaded once (about 1.5 s) and reused."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path or predictor_path())
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(self.path))
        self.mean_shape = mean_shape(self.path)

    def detect(self, image: np.ndarray, upsample: int = 0, threshold: float = 0.0) -> list[Box]:
        """Faces scoring at least ``threshold``, largest first (ties: higher score first)."""
        rects, scores, _ = self.detector.run(image, upsample, threshold)
        boxes = [Box(r.left(), r.top(), r.right(), r.bottom(), s) for r, s in zip(rects, scores)]
        return sorted(boxes, key=lambda b: (-b.area, -b.score))

    def fit(self, image: np.ndarray, box: Box) -> np.ndarray:
        """The 68 landmarks, (68, 2) float pixel coordinates, started from ``box``."""
        rect = dlib.rectangle(*(int(round(v)) for v in (box.left, box.top, box.right, box.bottom)))
        parts = self.predictor(image, rect).parts()
        # "points[(x, y), (x, y), ...]": parsing the text is 4x faster than reading 68 point objects
        text = str(parts)[len("points["):-1].translate(_POINT_PUNCTUATION)
        return np.array(text.split(), dtype=np.float64).reshape(-1, 2)

    def fit_stack(self, images: np.ndarray, box: Box, levels: int | None = None,
                  batched: bool = True) -> np.ndarray:
        """The 68 points of each image of a stack (N, h, w), all started from ``box``: (N, 68, 2).

        ``batched`` evaluates the model for the whole stack at once (:mod:`ferdata.cascade`),
        and then ``levels`` may stop the cascade early for a coarser fit; otherwise dlib fits
        one image at a time with the whole cascade.
        """
        if not batched:
            return np.stack([self.fit(image, box) for image in images]).reshape(-1, 68, 2)
        return batch_predictor(self.path)(images, np.tile(_corners(box), (len(images), 1)), levels)

    def fit_many_magnified(self, images: np.ndarray, box: Box, factor: int, levels: int | None = None,
                           batched: bool = True) -> np.ndarray:
        """:meth:`fit_stack` on the stack enlarged ``factor`` times (bilinear); points in the
        originals' pixels. dlib samples whole pixels, so a small face fits more finely enlarged."""
        if not batched:
            big = np.stack([enlarge(image, factor) for image in images])
            return shrink_points(self.fit_stack(big, enlarge_box(box, factor), levels, batched=False), factor)
        count, height, width = images.shape
        shrink = np.array([[1 / factor, 0.0, (1 / factor - 1) / 2], [0.0, 1 / factor, (1 / factor - 1) / 2]])
        points = batch_predictor(self.path).on_canvases(
            images, np.broadcast_to(shrink, (count, 2, 3)), (height * factor, width * factor), 0.0,
            np.tile(_corners(enlarge_box(box, factor)), (count, 1)), levels=levels)
        return shrink_points(points, factor)

    def fit_canvases(self, images: list[np.ndarray], to_image: np.ndarray, side: int, box: Box,
                     mirrored: bool = False, batched: bool = True) -> np.ndarray:
        """The 68 points (N, 68, 2) of each image seen through its canvas -> image map (N, 2, 3)
        on a side x side canvas (:func:`ferdata.resample.render`: edges repeated half the image's
        size beyond it), mirrored left to right if asked; points in canvas pixels."""
        points = np.empty((len(images), 68, 2))
        if not batched:
            for i, (image, back) in enumerate(zip(images, to_image)):
                canvas = render(image, invert(back), side)
                points[i] = self.fit(np.ascontiguousarray(canvas[:, ::-1]) if mirrored else canvas, box)
            return points
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_shape.setdefault(image.shape, []).append(i)
        corners = _corners(box)
        for (height, width), members in by_shape.items():
            points[members] = batch_predictor(self.path).on_canvases(
                np.stack([images[i] for i in members]), to_image[members], (side, side),
                float(max(height, width) // 2), np.tile(corners, (len(members), 1)), mirrored)
        return points


def _corners(box: Box) -> list[int]:
    """The box's corners as the whole pixels dlib starts from."""
    return [int(round(v)) for v in astuple(box)[:4]]


def enlarge(image: np.ndarray, factor: int) -> np.ndarray:
    """The image ``factor`` times larger, bilinear."""
    h, w = image.shape
    return np.asarray(Image.fromarray(image).resize((w * factor, h * factor), Image.BILINEAR))


def enlarge_box(box: Box, factor: int) -> Box:
    """Where ``box`` falls in the image enlarged ``factor`` times (pixel centres stay centres)."""
    up = lambda v: (v + 0.5) * factor - 0.5  # noqa: E731
    return Box(up(box.left), up(box.top), up(box.right), up(box.bottom), box.score)


def shrink_points(points: np.ndarray, factor: int) -> np.ndarray:
    """Points found in the image enlarged ``factor`` times, in the original's pixels."""
    return (points + 0.5) / factor - 0.5
