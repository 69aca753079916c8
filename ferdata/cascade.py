"""dlib's shape predictor, read from its file and evaluated for many faces at once.

The model is dlib's own file (``face-recognition-models``' 68-point predictor): a cascade
of 15 levels, each of 500 regression trees of depth 4 over 500 pixel-difference features
(Kazemi and Sullivan, 2014). :class:`BatchPredictor` runs the same cascade as
``dlib::shape_predictor`` — features sampled at the nearest pixel, split tests, leaf
updates — for a stack of faces, in compiled loops (:mod:`ferdata.cascade_kernel`), and can
sample a face's pixels through a transform instead of from a rendered image
(``benchmarks/bench_align.py`` times it against dlib's one-face call). Points come out
unrounded (dlib rounds them to whole pixels), and they agree with dlib's to within that rounding (``tests/test_cascade.py``).

Reading the file's 16 million serialised floats takes about 20 s, so the arrays are kept
in the user's cache directory (``$XDG_CACHE_HOME/ferdata``, else ``~/.cache/ferdata``),
keyed by the model file's size and modification time.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import warnings
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

import numpy as np

from ferdata.cascade_kernel import fit_faces


class DlibReader:
    """dlib's serialisation: integers as a control byte (size | 0x80 if negative) and
    little-endian bytes; a float as two such integers, mantissa and base-2 exponent."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = memoryview(data), 0

    def integer(self) -> int:
        control = self.data[self.pos]
        size = control & 0x0F
        value = int.from_bytes(self.data[self.pos + 1:self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if control & 0x80 else value

    def floats(self, count: int) -> list[float]:
        data, pos, from_bytes, ldexp = self.data, self.pos, int.from_bytes, math.ldexp
        out = [0.0] * count
        for k in range(count):
            control = data[pos]
            end = pos + 1 + (control & 0x0F)
            mantissa = from_bytes(data[pos + 1:end], "little")
            pos = end
            sign = -1 if control & 0x80 else 1
            control = data[pos]
            end = pos + 1 + (control & 0x0F)
            exponent = from_bytes(data[pos + 1:end], "little")
            pos = end
            out[k] = ldexp(sign * mantissa, -exponent if control & 0x80 else exponent)
        self.pos = pos
        return out

    def matrix(self) -> list[float]:
        rows, cols = abs(self.integer()), abs(self.integer())  # newer dlib writes them negated
        return self.floats(rows * cols)


@dataclass(frozen=True)
class CascadeArrays:
    """The model as arrays: L levels, T trees per level, S splits per tree, F features."""

    initial: np.ndarray  # (P, 2) float32, the mean shape in box units (box = unit square)
    anchors: np.ndarray  # (L, F) int: the landmark each feature pixel hangs from
    deltas: np.ndarray  # (L, F, 2) float32: its offset from that landmark, in mean-shape units
    split_a: np.ndarray  # (L, T * S) int: first feature of each split
    split_b: np.ndarray  # (L, T * S) int: second feature
    thresholds: np.ndarray  # (L, T * S) float32: go left when a - b > threshold
    leaves: np.ndarray  # (L, T * (S + 1), 2P) float32: each leaf's shape update


def read_model(path: Path) -> CascadeArrays:
    """Parse a dlib ``shape_predictor`` file (serialisation version 1) into arrays."""
    reader = DlibReader(Path(path).read_bytes())
    version = reader.integer()
    if version != 1:
        raise ValueError(f"{path}: not a dlib shape predictor (version {version})")
    initial = reader.matrix()
    splits, leaves = [], []
    for _level in range(reader.integer()):
        level_splits, level_leaves = [], []
        for _tree in range(reader.integer()):
            for _split in range(reader.integer()):
                a, b = reader.integer(), reader.integer()
                level_splits.append((a, b, reader.floats(1)[0]))
            level_leaves.extend(reader.matrix() for _leaf in range(reader.integer()))
        splits.append(level_splits)
        leaves.append(level_leaves)
    anchors = [[reader.integer() for _ in range(reader.integer())] for _ in range(reader.integer())]
    deltas = [[reader.floats(2) for _ in range(reader.integer())] for _ in range(reader.integer())]
    table = np.array(splits)  # (L, T * S, 3)
    return CascadeArrays(
        initial=np.array(initial, np.float32).reshape(-1, 2),
        anchors=np.array(anchors, np.intp), deltas=np.array(deltas, np.float32),
        split_a=table[..., 0].astype(np.intp), split_b=table[..., 1].astype(np.intp),
        thresholds=table[..., 2].astype(np.float32), leaves=np.array(leaves, np.float32))


def cache_dir() -> Path:
    """Where parsed models are kept: ``$XDG_CACHE_HOME/ferdata`` or ``~/.cache/ferdata``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ferdata"


def load_arrays(path: Path) -> CascadeArrays:
    """The model's arrays, from the cache when the file is unchanged, else parsed and cached."""
    path = Path(path).resolve()
    stat = path.stat()
    key = hashlib.sha1(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    cached = cache_dir() / f"{path.stem}-{key}.npz"
    if cached.exists():
        with np.load(cached) as data:
            return CascadeArrays(**{f.name: data[f.name] for f in fields(CascadeArrays)})
    arrays = read_model(path)
    partial = cached.with_name(f"{cached.stem}.{os.getpid()}.tmp.npz")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(partial, **{f.name: getattr(arrays, f.name) for f in fields(CascadeArrays)})
        partial.replace(cached)  # atomic: concurrent readers see the whole file or none
    except OSError as exc:  # a read-only home: parse again next time
        warnings.warn(f"could not cache the parsed model in {cached.parent}: {exc}", stacklevel=2)
        with contextlib.suppress(OSError):
            partial.unlink()
    return arrays


class BatchPredictor:
    """Evaluates a dlib shape-predictor cascade for a stack of same-sized grayscale images."""

    def __init__(self, arrays: CascadeArrays) -> None:
        self.arrays = arrays
        trees = arrays.leaves.shape[1] - arrays.split_a.shape[1]
        self.depth = int(math.log2(arrays.leaves.shape[1] // trees))

    @classmethod
    def from_file(cls, path: Path) -> "BatchPredictor":
        return cls(load_arrays(path))

    def __call__(self, images: np.ndarray, boxes: np.ndarray, levels: int | None = None) -> np.ndarray:
        """Landmarks (N, P, 2) in pixels for images (N, H, W) uint8 and boxes (N, 4) of whole
        pixels (left, top, right, bottom), the rectangle dlib's predictor is started from.
        ``levels`` runs only the cascade's first levels (a coarser, cheaper fit)."""
        count, height, width = np.shape(images)
        identity = np.broadcast_to(np.eye(2, 3), (count, 2, 3))
        return self.on_canvases(images, identity, (height, width), 0.0, boxes, levels=levels)

    def on_canvases(self, images: np.ndarray, to_image: np.ndarray, canvas_size: tuple[int, int], pad: float,
                    boxes: np.ndarray, mirrored: bool = False, levels: int | None = None) -> np.ndarray:
        """Landmarks (N, P, 2) in canvas pixels, fitted on each image (N, h, w) seen through its
        canvas -> image map (N, 2, 3) on a canvas of (height, width), edges repeated ``pad``
        pixels beyond the image, and mirrored left to right if asked
        (:func:`ferdata.cascade_kernel.fit_faces`)."""
        a = self.arrays
        boxes = np.asarray(boxes, np.float64)
        shapes = fit_faces(np.ascontiguousarray(images, np.uint8), np.ascontiguousarray(to_image, np.float64),
                           (int(canvas_size[0]), int(canvas_size[1])), float(pad), bool(mirrored), boxes,
                           len(a.leaves) if levels is None else int(levels), a.initial, a.anchors, a.deltas,
                           a.split_a, a.split_b, a.thresholds, a.leaves, self.depth)
        return _to_pixels(shapes.astype(np.float64), boxes)


def _to_pixels(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Points (N, P, 2) in box units (the box is the unit square) to pixels, per face."""
    left, top = boxes[:, 0], boxes[:, 1]
    width, height = boxes[:, 2] - left, boxes[:, 3] - top
    return np.stack([left[:, None] + points[..., 0] * width[:, None],
                     top[:, None] + points[..., 1] * height[:, None]], axis=-1)


@lru_cache(maxsize=2)
def batch_predictor(path: Path) -> BatchPredictor:
    """One predictor per model file and process."""
    return BatchPredictor.from_file(path)
