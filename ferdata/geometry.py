"""Similarity and affine transforms of 2-D points: fitting, applying, inverting."""

from __future__ import annotations

import numpy as np

_AS_COMPLEX = np.array([1, 1j])


def _normalised(weights: np.ndarray | None, count: int) -> np.ndarray:
    """Point weights summing to 1 (equal weights when none are given)."""
    return np.full(count, 1 / count) if weights is None else np.asarray(weights, np.float64) / np.sum(weights)


def similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The 2x3 similarity matrix minimising the weighted squared distance from src to dst."""
    w = _normalised(weights, len(src))
    z, t = src @ _AS_COMPLEX, dst @ _AS_COMPLEX  # points as complex numbers x + iy
    zc, tc = w @ z, w @ t
    wz = w * np.conj(z - zc)
    c = (wz @ (t - tc)) / (wz @ (z - zc)).real  # rotation and scale as one complex factor
    shift = tc - c * zc
    return np.array([[c.real, -c.imag, shift.real], [c.imag, c.real, shift.imag]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (N, 2) through a 2x3 affine matrix."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def homogeneous(matrix: np.ndarray) -> np.ndarray:
    """A 2x3 affine matrix as 3x3."""
    return np.vstack([matrix, [0.0, 0.0, 1.0]])


def invert(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine matrix."""
    linear = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear, -linear @ matrix[:, 2:]])


def levelling_similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The 2x3 similarity that turns the line src[0] -> src[1] parallel to dst[0] -> dst[1]
    and, with that rotation, fits scale and shift by weighted least squares over all points."""
    w = _normalised(weights, len(src))
    z, t = src @ _AS_COMPLEX, dst @ _AS_COMPLEX
    turn = (t[1] - t[0]) / (z[1] - z[0])
    turn /= abs(turn)  # rotation only
    zc, tc = w @ z, w @ t
    rotated = turn * (z - zc)
    scale = (w @ (np.conj(rotated) * (t - tc))).real / (w @ np.abs(rotated) ** 2)
    c = scale * turn
    shift = tc - c * zc
    return np.array([[c.real, -c.imag, shift.real], [c.imag, c.real, shift.imag]])
