"""The cascade's inner loops, compiled (Numba): one face at a time, pixels sampled on demand.

A face is fitted on a *canvas*: a view of its image through an affine map (canvas pixel to
image pixel), optionally mirrored left to right. A feature pixel of the canvas is computed
only when the cascade asks for it, bilinearly from the image, with the image's edges
repeated up to ``pad`` pixels beyond it and black further out. This is the pixel a rendered
canvas (:func:`ferdata.resample.render`) would hold, without rendering the other thousands
of pixels no feature falls on. The identity map gives the image itself: dlib's own sampling.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _canvas_pixel(image: np.ndarray, to_image: np.ndarray, x: float, y: float, pad: float) -> float:
    """The canvas pixel (x, y): bilinear in the image, edges repeated within ``pad``, else 0."""
    height, width = image.shape
    sx = to_image[0, 0] * x + to_image[0, 1] * y + to_image[0, 2]
    sy = to_image[1, 0] * x + to_image[1, 1] * y + to_image[1, 2]
    if not (-pad - 0.5 <= sx < width + pad - 0.5 and -pad - 0.5 <= sy < height + pad - 0.5):
        return 0.0
    x0, y0 = math.floor(sx), math.floor(sy)
    dx, dy = sx - x0, sy - y0
    left, right = min(max(x0, 0), width - 1), min(max(x0 + 1, 0), width - 1)
    top, bottom = min(max(y0, 0), height - 1), min(max(y0 + 1, 0), height - 1)
    upper = image[top, left] + (image[top, right] - np.float64(image[top, left])) * dx
    lower = image[bottom, left] + (image[bottom, right] - np.float64(image[bottom, left])) * dx
    return math.floor(upper + (lower - upper) * dy)  # a rendered canvas holds whole grey levels (truncated)


@njit(cache=True, nogil=True)
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
    count = images.shape[0]
    points = initial.shape[0]
    features = deltas.shape[1]
    trees = leaves.shape[1] // 2 ** depth
    splits_per_tree = 2 ** depth - 1
    canvas_height, canvas_width = canvas_size
    reference = initial.astype(np.float64)
    ref_x, ref_y = reference[:, 0] - reference[:, 0].mean(), reference[:, 1] - reference[:, 1].mean()
    ref_norm = (ref_x * ref_x + ref_y * ref_y).sum()
    shapes = np.empty((count, 2 * points), np.float32)  # box units, x0, y0, x1, y1, ...: a leaf's layout
    shapes[:] = initial.ravel()
    values = np.empty(features, np.float32)
    update = np.empty(2 * points, np.float32)
    for level in range(levels):  # level by level: one level's leaves stay in cache across faces
        for n in range(count):
            shape = shapes[n]
            left, top = boxes[n, 0], boxes[n, 1]
            box_width, box_height = boxes[n, 2] - left, boxes[n, 3] - top
            turn_re, turn_im = _turn(shape, ref_x, ref_y, ref_norm)
            for f in range(features):
                dx, dy = np.float64(deltas[level, f, 0]), np.float64(deltas[level, f, 1])
                anchor = anchors[level, f]
                px = turn_re * dx - turn_im * dy + shape[2 * anchor]
                py = turn_im * dx + turn_re * dy + shape[2 * anchor + 1]
                x = math.floor(left + px * box_width + 0.5)
                y = math.floor(top + py * box_height + 0.5)
                if 0 <= x < canvas_width and 0 <= y < canvas_height:
                    source_x = canvas_width - 1 - x if mirrored else x
                    values[f] = _canvas_pixel(images[n], to_image[n], source_x, y, pad)
                else:
                    values[f] = 0.0
            update[:] = 0.0
            for tree in range(trees):
                start = tree * splits_per_tree
                node = 0
                for _ in range(depth):
                    at = start + node
                    go_right = values[split_a[level, at]] - values[split_b[level, at]] <= thresholds[level, at]
                    node = 2 * node + 1 + go_right
                leaf = leaves[level, tree * 2 ** depth + node - splits_per_tree]
                for k in range(2 * points):  # contiguous: vectorised
                    update[k] += leaf[k]
            shape += update
    return shapes.reshape(count, points, 2)
