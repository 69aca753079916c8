"""Landmark fits that check themselves: refit on an upright canvas, and on its mirror image.

dlib's 68-point cascade starts from an upright mean face, so it fits a tilted or off-centre
face worse than an upright one, and nothing in its output says when it went wrong. Here a
first estimate (a detector box, or a coarse fit inside a pre-cropped frame) places the face;
the face is then resampled upright at the canonical scale (a *canvas*, ``factor`` times the
output size) and fitted again, once as it is and once mirrored. On a good fit the two agree:
the mirrored fit, flipped back, lands on the same points. Their mean is the landmark
estimate, and their disagreement (mean point distance over the inter-ocular distance) is
the fit's own measure of failure, independent of the expression: a wide-open mouth is far
from the mean shape but fits the same both ways round. Fits that disagree are refined once
more from their mean (``retries``), which recovers most strongly rolled faces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ferdata.geometry import homogeneous, levelling_similarity
from ferdata.landmarks import Box, LandmarkModel, anchor_points, enlarge_box

#: Point i of a face is point MIRRORED[i] of its mirror image (dlib's 68-point scheme).
MIRRORED = np.array(
    [*range(16, -1, -1), *range(26, 21, -1), *range(21, 16, -1), 27, 28, 29, 30, 35, 34, 33, 32, 31,
     45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
     54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65])
#: Cascade levels of the coarse first fit of a pre-cropped frame (of the model's 15): enough
#: to place the face for the canvas, at a fifth of a full fit's cost.
COARSE_LEVELS = 3


def similarity_to(points: np.ndarray, anchors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The 2x3 similarity taking a face's eye and mouth centres onto ``anchors``: the eye line
    level, scale and shift by weighted least squares over the three centres."""
    return levelling_similarity(anchor_points(points), anchors, weights)


@dataclass
class Refined:
    """Landmarks from the mean of the canvas fit and its mirror, and how far the two disagree."""

    points: np.ndarray  # (N, 68, 2) source pixels
    disagreement: np.ndarray  # (N,) mean point distance / inter-ocular distance


class CanvasFitter:
    """Refits faces on an upright canvas placed by a first estimate, and on its mirror."""

    def __init__(self, model: LandmarkModel, anchors: np.ndarray, weights: np.ndarray, box: Box,
                 size: int, factor: int, batched: bool) -> None:
        self.model, self.anchors, self.weights = model, anchors, weights
        self.size, self.factor, self.batched = size, factor, batched
        self.canvas_box = enlarge_box(box, factor)  # where the canonical face's box falls on the canvas
        self.to_canvas = np.array([[factor, 0.0, (factor - 1) / 2], [0.0, factor, (factor - 1) / 2], [0, 0, 1]])

    def refine(self, images: list[np.ndarray], estimates: np.ndarray) -> Refined:
        """Fit each image on the canvas its estimate (N, 68, 2) places, as is and mirrored."""
        side = self.size * self.factor
        to_canvas = [self.to_canvas @ homogeneous(similarity_to(p, self.anchors, self.weights)) for p in estimates]
        back = np.stack([np.linalg.inv(m)[:2] for m in to_canvas])  # canvas -> source
        direct = self.model.fit_canvases(images, back, side, self.canvas_box, batched=self.batched)
        mirror = self.model.fit_canvases(images, back, side, self.canvas_box, mirrored=True,
                                         batched=self.batched)[:, MIRRORED]
        mirror[..., 0] = side - 1 - mirror[..., 0]
        mean = (direct + mirror) / 2
        gap = np.linalg.norm(direct - mirror, axis=-1).mean(axis=1)
        eyes = np.stack([anchor_points(p)[:2] for p in mean])
        interocular = np.linalg.norm(eyes[:, 1] - eyes[:, 0], axis=1)
        return Refined(_through(back, mean), gap / np.maximum(interocular, 1e-9))


def _through(matrices: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Each face's points (N, P, 2) through its own 2x3 matrix (N, 2, 3)."""
    return np.einsum("nij,npj->npi", matrices[:, :, :2], points) + matrices[:, None, :, 2]
