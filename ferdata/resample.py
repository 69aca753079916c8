"""Resampling images: through affine transforms (bilinear, edges replicated, box-averaged when
shrinking), and the centre crop that stands in for a face the align stage could not align."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from ferdata.cascade_kernel import render_view
from ferdata.geometry import apply, homogeneous, invert
from ferdata.manifest import IMAGE_SIZE


def render(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """``image`` resampled bilinearly into a size x size frame; ``matrix`` maps source to frame
    pixels (integer pixel centres). Outside the image, within half its size, edges repeat;
    further out, black. The same pixels as Pillow's bilinear affine transform of the
    edge-padded image, in compiled loops (:func:`ferdata.cascade_kernel.render_view`)."""
    h, w = image.shape
    to_image = np.ascontiguousarray(invert(matrix)[:2], np.float64)
    return render_view(np.ascontiguousarray(image, np.uint8), to_image, int(size), float(max(h, w) // 2))


def warp(image: np.ndarray, matrix: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Resample ``image`` into a size x size frame; ``matrix`` maps source to output pixels.

    Bilinear, with edge replication outside the image. When the output shrinks the face
    by two or more, the needed region is first box-averaged by that whole factor.
    """
    inverse = invert(matrix)
    factor = int(math.sqrt(abs(np.linalg.det(inverse[:, :2]))))
    if factor < 2:
        return render(image, matrix, size)
    h, w = image.shape
    corners = apply(inverse, np.array([[-1, -1], [size, -1], [-1, size], [size, size]], float))
    x0 = min(max(int(corners[:, 0].min()) - factor, 0), w - 1)
    y0 = min(max(int(corners[:, 1].min()) - factor, 0), h - 1)
    x1 = max(min(int(corners[:, 0].max()) + 2 * factor, w), x0 + 1)
    y1 = max(min(int(corners[:, 1].max()) + 2 * factor, h), y0 + 1)
    reduced = np.asarray(Image.fromarray(image[y0:y1, x0:x1]).reduce(factor))
    # a source pixel x lands at (x - x0 - (factor - 1) / 2) / factor in the reduced image
    from_reduced = np.array([[factor, 0.0, x0 + (factor - 1) / 2], [0.0, factor, y0 + (factor - 1) / 2]])
    return render(reduced, (homogeneous(matrix) @ homogeneous(from_reduced))[:2], size)


def centre_crop(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """The centred square of the image's shorter side, resized (antialiased) to size x size."""
    h, w = image.shape
    side = min(h, w)
    left, top = (w - side) // 2, (h - side) // 2
    if side == size:
        return np.ascontiguousarray(image[top:top + side, left:left + side])
    box = (left, top, left + side, top + side)
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR, box=box))
