"""How a trained model answers: its logits averaged over test-time views of each face (the
face, its mirror image, the face shifted a few pixels each way).

The ablation's run key hashes this module (not the evaluate stage's reports), so only a
change to how the model answers retrains kept runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ferdata import model as model_lib

import keras  # noqa: E402  (after ferdata.model has chosen the TensorFlow backend)

MAX_TTA_SHIFT = 12  # a quarter of the 48-pixel face


@dataclass(frozen=True)
class TestTimeViews:
    """Which views of each face a prediction averages the logits of: the face itself, its
    mirror image (``flip``), and the face moved ``shift`` pixels each way (each mirrored too
    with ``flip``)."""

    flip: bool = False
    shift: int = 0

    def of(self, batch: np.ndarray) -> Iterator[np.ndarray]:
        """The views of a (N, 48, 48, 1) batch, one at a time; borders repeat the edge pixels,
        as the training augmentation's shifts fill them."""
        faces = [batch, batch[:, :, ::-1]] if self.flip else [batch]
        for face in faces:
            yield face
            if self.shift:
                s, size = self.shift, face.shape[1]
                padded = np.pad(face, ((0, 0), (s, s), (s, s), (0, 0)), mode="edge")
                for dy, dx in ((-s, 0), (s, 0), (0, -s), (0, s)):
                    yield padded[:, s + dy:s + dy + size, s + dx:s + dx + size]


def shift_beyond_training(views: TestTimeViews, trained_shift: float) -> str | None:
    """A warning when the test-time shifts move faces further than training's online shift
    (``trained_shift`` pixels) ever did; None when they do not."""
    if views.shift <= trained_shift:
        return None
    return (f"evaluate.tta_shift moves faces {views.shift} px, beyond the training's online shift "
            f"({trained_shift:.1f} px): views the model never saw can cost accuracy; compare on val "
            f"(benchmarks/tta_views.py) or set evaluate.tta_shift: 0")


def predict(net: keras.Model, images: np.ndarray, views: TestTimeViews = TestTimeViews(),
            batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Logits and probabilities (N, C) float32 for (N, 48, 48[, 1]) images in 0..255.

    The logits are the mean over the test-time ``views`` of each image, and the
    probabilities their softmax.
    """
    heads = model_lib.heads(net)
    all_logits = [model_lib.predict_batches(heads, view, batch_size)[1]
                  for view in views.of(model_lib.as_batch(images))]
    logits = np.mean(all_logits, axis=0)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(logits, np.float32), np.asarray(shifted / shifted.sum(axis=1, keepdims=True), np.float32)
