"""dlib's HOG face detector and 68-point landmark predictor, and the predictor's mean shape.

The models ship in the ``face-recognition-models`` package; nothing is downloaded.
Landmarks follow dlib's 68-point scheme (iBUG 300-W): 36-41 the eye on the image's
left, 42-47 the eye on the image's right, 48-67 the mouth.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
MOUTH = slice(48, 68)


def predictor_path() -> Path:
    """The 68-point predictor file of the installed ``face-recognition-models`` package."""
    import face_recognition_models

    return Path(face_recognition_models.pose_predictor_model_location())


def _read_packed_int(data: bytes, pos: int) -> tuple[int, int]:
    """One integer in dlib's serialisation: a byte (size | 0x80 if negative), then little-endian bytes."""
    control = data[pos]
    size = control & 0x0F
    value = int.from_bytes(data[pos + 1: pos + 1 + size], "little")
    return (-value if control & 0x80 else value), pos + 1 + size


@lru_cache(maxsize=4)
def mean_shape(path: Path | None = None) -> np.ndarray:
    """The predictor's own mean shape: (68, 2) points in detector-box units (box = unit square).

    It is the cascade's starting shape, the average training shape normalised to the face
    detector's box, stored first in the model file (version, then a 136x1 float matrix whose
    floats are serialised as mantissa and base-2 exponent).
    """
    path = Path(path or predictor_path())
    with path.open("rb") as fh:
        data = fh.read(4096)
    version, pos = _read_packed_int(data, 0)
    rows, pos = _read_packed_int(data, pos)
    cols, pos = _read_packed_int(data, pos)
    if version != 1 or abs(rows) != 136 or abs(cols) != 1:
        raise ValueError(f"{path}: not a 68-point dlib shape predictor "
                         f"(version {version}, initial shape {abs(rows)}x{abs(cols)})")
    values = []
    for _ in range(136):
        mantissa, pos = _read_packed_int(data, pos)
        exponent, pos = _read_packed_int(data, pos)
        values.append(mantissa * 2.0 ** exponent)
    return np.array(values).reshape(68, 2)


def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean of each eye's six points: (image-left eye, image-right eye)."""
    return points[LEFT_EYE].mean(axis=0), points[RIGHT_EYE].mean(axis=0)


def mouth_centre(points: np.ndarray) -> np.ndarray:
    """The mean of the 20 mouth points."""
    return points[MOUTH].mean(axis=0)


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
        shape = self.predictor(image, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def fit_magnified(self, image: np.ndarray, box: Box, factor: int) -> np.ndarray:
        """Fit on the image enlarged ``factor`` times (bilinear); points in the original's pixels.

        dlib returns whole-pixel points and samples single pixels, so a small face is fitted
        more finely on an enlarged copy.
        """
        if factor == 1:
            return self.fit(image, box)
        h, w = image.shape
        big = np.asarray(Image.fromarray(image).resize((w * factor, h * factor), Image.BILINEAR))
        # pixel centres: original x sits at (x + 0.5) * factor - 0.5 in the enlarged image
        up = lambda v: (v + 0.5) * factor - 0.5  # noqa: E731
        points = self.fit(big, Box(up(box.left), up(box.top), up(box.right), up(box.bottom)))
        return (points + 0.5) / factor - 0.5

