"""The cascade's inner loops, compiled (Numba): a chunk of faces, pixels sampled on demand.

A face is fitted on a *canvas*: a view of its image through an affine map (canvas pixel to
image pixel), optionally mirrored left to right. A feature pixel of the canvas is computed
only when the cascade asks for it, bilinearly from the image, with the image's edges
repeated up to ``pad`` pixels beyond it and black further out. This is the pixel a rendered
canvas (:func:`ferdata.resample.render`) would hold, without rendering the other thousands
of pixels no feature falls on. The identity map gives the image itself: dlib's own sampling.

Each cascade level runs in two passes over the chunk: every face's feature pixels, then
tree by tree over the faces, so that a tree's splits and leaves stay in the first-level
cache while all faces walk it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Added before truncating to an integer, so that truncation floors every coordinate here.
_FLOOR_SHIFT = 65536.0


@njit(cache=True, nogil=True, inline="always")
def _floor(value: float) -> int:
    """floor(value) for value > -65536, without a call into libm."""
    return int(value + _FLOOR_SHIFT) - int(_FLOOR_SHIFT)


@njit(cache=True, nogil=True, inline="always")
def _bilinear(image: np.ndarray, sx: float, sy: float) -> float:
    """The image at (sx, sy), bilinear, edges repeated; truncated to a whole grey level as a
    rendered canvas holds it."""
    height, width = image.shape
    x0, y0 = _floor(sx), _floor(sy)
    wx, wy = sx - x0, sy - y0
    left, right = min(max(x0, 0), width - 1), min(max(x0 + 1, 0), width - 1)
    top, bottom = min(max(y0, 0), height - 1), min(max(y0 + 1, 0), height - 1)
    top_left, bottom_left = np.float64(image[top, left]), np.float64(image[bottom, left])
    upper = top_left + (image[top, right] - top_left) * wx
    lower = bottom_left + (image[bottom, right] - bottom_left) * wx
    return float(int(upper + (lower - upper) * wy))  # >= 0: truncation is the floor


@njit(cache=True, nogil=True, inline="always")
def _turn(shape: np.ndarray, ref_x: np.ndarray, ref_y: np.ndarray, ref_norm: float) -> tuple[float, float]:
    """The rotation and scale, as one complex factor (re, im), of the least-squares similarity
    taking the centred mean shape (ref_x, ref_y) onto ``shape`` (x0, y0, x1, y1, ...)."""
    points = ref_x.shape[0]
    mean_x, mean_y = 0.0, 0.0
    for k in range(points):
        mean_x += shape[2 * k]
        mean_y += shape[2 * k + 1]
    mean_x, mean_y = mean_x / points, mean_y / points
    re, im = 0.0, 0.0
    for k in range(points):
        x, y = shape[2 * k] - mean_x, shape[2 * k + 1] - mean_y
        re += x * ref_x[k] + y * ref_y[k]
        im += y * ref_x[k] - x * ref_y[k]
    return re / ref_norm, im / ref_norm


@njit(cache=True, nogil=True)
def _sample_features(out: np.ndarray, image: np.ndarray, to_image: np.ndarray, canvas_size: tuple[int, int],
                     pad: float, mirrored: bool, box: np.ndarray, shape: np.ndarray, turn: tuple[float, float],
                     anchors: np.ndarray, deltas: np.ndarray) -> None:
    """One face's feature pixels for one level into ``out`` (F,): each at the nearest canvas
    pixel to its landmark plus its turned offset, 0 off the canvas and beyond the padding."""
    canvas_height, canvas_width = canvas_size
    height, width = image.shape
    m00, m01, m02 = to_image[0, 0], to_image[0, 1], to_image[0, 2]
    m10, m11, m12 = to_image[1, 0], to_image[1, 1], to_image[1, 2]
    if mirrored:  # canvas x -> canvas_width - 1 - x, folded into the map
        m02 += m00 * (canvas_width - 1)
        m12 += m10 * (canvas_width - 1)
        m00, m10 = -m00, -m10
    low_x, high_x, low_y, high_y = -pad - 0.5, width + pad - 0.5, -pad - 0.5, height + pad - 0.5
    left, top = box[0], box[1]
    box_width, box_height = box[2] - left, box[3] - top
    turn_re, turn_im = turn
    for f in range(out.shape[0]):
        dx, dy = np.float64(deltas[f, 0]), np.float64(deltas[f, 1])
        anchor = anchors[f]
        fx = left + (turn_re * dx - turn_im * dy + shape[2 * anchor]) * box_width + 0.5
        fy = top + (turn_im * dx + turn_re * dy + shape[2 * anchor + 1]) * box_height + 0.5
        value = 0.0
        if 0.0 <= fx < canvas_width and 0.0 <= fy < canvas_height:  # the nearest pixel is on the canvas
            x, y = float(int(fx)), float(int(fy))
            sx, sy = m00 * x + m01 * y + m02, m10 * x + m11 * y + m12
            if low_x <= sx < high_x and low_y <= sy < high_y:
                value = _bilinear(image, sx, sy)
        out[f] = value


@njit(cache=True, nogil=True)
def fit_faces(images: np.ndarray, to_image: np.ndarray, canvas_size: tuple[int, int], pad: float,
              mirrored: bool, boxes: np.ndarray, levels: int, initial: np.ndarray, anchors: np.ndarray,
              deltas: np.ndarray, split_a: np.ndarray, split_b: np.ndarray, thresholds: np.ndarray,
              leaves: np.ndarray, depth: int) -> np.ndarray:
    """Each face's points (N, P, 2) in box units after ``levels`` cascade levels.

    images (N, h, w) uint8; to_image (N, 2, 3) canvas -> image pixels; canvas_size (height,
    width); boxes (N, 4) the start rectangle on the canvas (left, top, right, bottom).
    The arithmetic follows dlib: features at the nearest canvas pixel, 0 outside the canvas;
    at node i a tree goes left (2i + 1) when feature a - feature b exceeds the threshold.
    """
    count, points = images.shape[0], initial.shape[0]
    leaves_per_tree = 2 ** depth
    splits_per_tree = leaves_per_tree - 1
    trees = leaves.shape[1] // leaves_per_tree
    reference = initial.astype(np.float64)
    ref_x, ref_y = reference[:, 0] - reference[:, 0].mean(), reference[:, 1] - reference[:, 1].mean()
    ref_norm = (ref_x * ref_x + ref_y * ref_y).sum()
    shapes = np.empty((count, 2 * points), np.float32)  # box units, x0, y0, x1, y1, ...: a leaf's layout
    shapes[:] = initial.ravel()
    values = np.empty((count, deltas.shape[1]), np.float32)
    updates = np.empty((count, 2 * points), np.float32)
    for level in range(levels):
        for n in range(count):
            turn = _turn(shapes[n], ref_x, ref_y, ref_norm)
            _sample_features(values[n], images[n], to_image[n], canvas_size, pad, mirrored, boxes[n], shapes[n],
                             turn, anchors[level], deltas[level])
        updates[:] = 0.0
        for tree in range(trees):
            first = tree * splits_per_tree
            tree_a, tree_b = split_a[level, first:first + splits_per_tree], split_b[level, first:first + splits_per_tree]
            tree_thresholds = thresholds[level, first:first + splits_per_tree]
            tree_leaves = leaves[level, tree * leaves_per_tree:(tree + 1) * leaves_per_tree]
            for n in range(count):
                face = values[n]
                node = 0
                for _ in range(depth):
                    go_right = face[tree_a[node]] - face[tree_b[node]] <= tree_thresholds[node]
                    node = 2 * node + 1 + go_right
                leaf, update = tree_leaves[node - splits_per_tree], updates[n]
                for k in range(2 * points):  # contiguous: vectorised
                    update[k] += leaf[k]
        shapes += updates
    return shapes.reshape(count, points, 2)


@njit(cache=True, nogil=True)
def render_view(image: np.ndarray, to_image: np.ndarray, size: int, pad: float) -> np.ndarray:
    """The size x size canvas (uint8) seen through ``to_image`` (2, 3), canvas -> image pixels:
    every pixel sampled as :func:`fit_faces` samples a feature."""
    height, width = image.shape
    out = np.zeros((size, size), np.uint8)
    low_x, high_x, low_y, high_y = -pad - 0.5, width + pad - 0.5, -pad - 0.5, height + pad - 0.5
    for y in range(size):
        for x in range(size):
            sx = to_image[0, 0] * x + to_image[0, 1] * y + to_image[0, 2]
            sy = to_image[1, 0] * x + to_image[1, 1] * y + to_image[1, 2]
            if low_x <= sx < high_x and low_y <= sy < high_y:
                out[y, x] = np.uint8(_bilinear(image, sx, sy))
    return out
