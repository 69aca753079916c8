"""The compiled resampler against Pillow's bilinear transform, which it replaces."""

import math

import numpy as np
import pytest
from PIL import Image

from ferdata.geometry import homogeneous
from ferdata.resample import render, warp


def pillow_render(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Pillow's bilinear affine transform of the image padded by half its size (edges repeated)."""
    pad = max(image.shape) // 2
    padded = Image.fromarray(np.pad(image, pad, mode="edge"))
    a, b, c, d, e, f = np.linalg.inv(homogeneous(matrix))[:2].ravel()
    shift = pad + 0.5  # Pillow samples pixel centres in half-pixel coordinates
    coefficients = (a, b, c + shift - 0.5 * (a + b), d, e, f + shift - 0.5 * (d + e))
    return np.asarray(padded.transform((size, size), Image.AFFINE, coefficients, resample=Image.BILINEAR))


def _random_map(rng: np.random.Generator) -> np.ndarray:
    angle, scale = rng.uniform(-0.5, 0.5), rng.uniform(0.5, 4.0)
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([[c, -s, rng.uniform(-20, 20)], [s, c, rng.uniform(-20, 20)]])


@pytest.mark.parametrize("shape, size", [((48, 48), 48), ((48, 48), 192), ((61, 37), 96)])
def test_render_gives_pillows_pixels(shape, size):
    rng = np.random.default_rng(size)
    for _ in range(20):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        matrix = _random_map(rng)  # turned, scaled and shifted: parts of the frame fall off the padding
        ours, pillows = render(image, matrix, size), pillow_render(image, matrix, size)
        assert ours.dtype == np.uint8 and ours.shape == (size, size)
        assert np.array_equal(ours, pillows)


def test_warp_shrinking_a_large_face_box_averages_first():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (480, 480), dtype=np.uint8)
    matrix = np.array([[0.1, 0.0, 0.0], [0.0, 0.1, 0.0]])  # 480 px -> 48 px
    out = warp(image, matrix, 48)
    # box-averaged noise is smooth; point-sampled noise would keep the image's full spread
    assert out.std() < image.std() / 4
