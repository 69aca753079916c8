"""dlib's shape predictor evaluated for many faces at once, with NumPy.

The model is dlib's own file (``face-recognition-models``' 68-point predictor): a cascade
of 15 levels, each of 500 regression trees of depth 4 over 500 pixel-difference features
(Kazemi and Sullivan, 2014). :class:`BatchPredictor` runs the same cascade as
``dlib::shape_predictor`` — features sampled at the nearest pixel, split tests, leaf
updates — for a stack of faces at a time: the tree walks are array lookups across faces
and each level's 500 leaf updates are one sparse matrix product. dlib walks the trees of
one face at a time, and its time goes on memory stalls; the batch spends less than half
of dlib's CPU per face. Points come out unrounded (dlib rounds them to whole pixels), and they
agree with dlib's to within that rounding (``tests/test_cascade.py``).

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
from scipy import sparse


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
        levels, nodes = arrays.split_a.shape
        leaves_per_level = arrays.leaves.shape[1]
        self.trees = leaves_per_level - nodes
        self.depth = int(math.log2(leaves_per_level // self.trees))
        self.splits_per_tree = nodes // self.trees
        self.reference = _complex(arrays.initial)  # (P,)
        self.deltas = _complex(arrays.deltas)  # (L, F)

    @classmethod
    def from_file(cls, path: Path) -> "BatchPredictor":
        return cls(load_arrays(path))

    def __call__(self, images: np.ndarray, boxes: np.ndarray, levels: int | None = None) -> np.ndarray:
        """Landmarks (N, P, 2) in pixels for images (N, H, W) uint8 and boxes (N, 4) of whole
        pixels (left, top, right, bottom), the rectangle dlib's predictor is started from.
        ``levels`` runs only the cascade's first levels (a coarser, cheaper fit)."""
        images = np.ascontiguousarray(images, dtype=np.uint8)
        boxes = np.asarray(boxes, np.float64)
        count = len(images)
        shapes = np.repeat(self.arrays.initial[None], count, axis=0).reshape(count, -1)  # (N, 2P), box units
        # which leaf each tree of each face reached: a sparse 0/1 matrix, one entry per tree
        entries = count * self.trees
        chosen = sparse.csr_matrix((np.ones(entries, np.float32), np.zeros(entries, np.int32),
                                    np.arange(0, entries + 1, self.trees, dtype=np.int32)),
                                   shape=(count, self.arrays.leaves.shape[1]))
        for level in range(len(self.deltas) if levels is None else levels):
            features = self._feature_values(level, images, boxes, shapes)
            chosen.indices[:] = self._reached_leaves(level, features).ravel()
            shapes += chosen @ self.arrays.leaves[level]
        return _to_pixels(shapes.astype(np.float64).reshape(count, -1, 2), boxes)

    def _feature_values(self, level: int, images: np.ndarray, boxes: np.ndarray,
                        shapes: np.ndarray) -> np.ndarray:
        """(N, F) float32: the pixel under each of the level's features, 0 outside the image.

        A feature hangs from a landmark of the current shape at an offset that turns and
        scales with it (the similarity taking the mean shape onto the current one)."""
        count, height, width = images.shape
        current = _complex(shapes.reshape(count, -1, 2))  # (N, P)
        turn = _similarity_factor(self.reference, current)[:, None]
        points = turn * self.deltas[level] + current[:, self.arrays.anchors[level]]  # box units
        left, top = boxes[:, :1], boxes[:, 1:2]
        x = np.floor(left + points.real * (boxes[:, 2:3] - left) + 0.5)  # dlib rounds to whole pixels
        y = np.floor(top + points.imag * (boxes[:, 3:4] - top) + 0.5)
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        at = np.where(inside, y * width + x, 0).astype(np.intp) + np.arange(count)[:, None] * (height * width)
        return np.where(inside, images.ravel().take(at), 0).astype(np.float32)

    def _reached_leaves(self, level: int, features: np.ndarray) -> np.ndarray:
        """(N, T): the leaf each tree reaches, numbered across the level's trees. At node i a
        tree goes left (2i + 1) when feature a - feature b exceeds the threshold, else right."""
        count, per_face = features.shape
        flat, offsets = features.ravel(), np.arange(count)[:, None] * per_face
        first, second = self.arrays.split_a[level], self.arrays.split_b[level]
        thresholds = self.arrays.thresholds[level]
        tree_start = np.arange(self.trees) * self.splits_per_tree
        node = np.zeros((count, self.trees), np.intp)
        for _ in range(self.depth):
            at = tree_start + node
            difference = flat.take(offsets + first.take(at)) - flat.take(offsets + second.take(at))
            node = 2 * node + 1 + (difference <= thresholds.take(at))
        return np.arange(self.trees) * 2 ** self.depth + node - self.splits_per_tree


def _to_pixels(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Points (N, P, 2) in box units (the box is the unit square) to pixels, per face."""
    left, top = boxes[:, 0], boxes[:, 1]
    width, height = boxes[:, 2] - left, boxes[:, 3] - top
    return np.stack([left[:, None] + points[..., 0] * width[:, None],
                     top[:, None] + points[..., 1] * height[:, None]], axis=-1)


def _complex(points: np.ndarray) -> np.ndarray:
    """Points (..., 2) as complex numbers x + iy (...)."""
    return points[..., 0].astype(np.float64) + 1j * points[..., 1]


def _similarity_factor(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Per row of ``current`` (N, P complex), the rotation and scale (one complex factor) of
    the least-squares similarity transform taking ``reference`` (P complex) onto it."""
    centred_ref = reference - reference.mean()
    centred = current - current.mean(axis=1, keepdims=True)
    return (centred * np.conj(centred_ref)).sum(axis=1) / np.vdot(centred_ref, centred_ref).real


@lru_cache(maxsize=2)
def batch_predictor(path: Path) -> BatchPredictor:
    """One predictor per model file and process."""
    return BatchPredictor.from_file(path)
