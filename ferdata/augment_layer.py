"""Online augmentation during training: flip, rotation, zoom and shift in one resampling.

Keras's ``RandomFlip``, ``RandomRotation``, ``RandomZoom`` and ``RandomTranslation`` each
resample the whole batch, so a face is interpolated three times and its edges repeated three
times. :class:`FaceAugmentation` draws the four transforms per face, composes them into one
affine map and resamples once with TensorFlow's ``ImageProjectiveTransformV3``: less work
per batch (``benchmarks/bench_train.py``, variant ``stage-augment-keras``, prices the
three-layer chain) and less blur. The geometry is :mod:`ferdata.augment`'s, so a face
transformed online looks like the copy the balance stage makes with the same numbers.
Import it through :mod:`ferdata.model`, which chooses the backend and kernels first.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf


class FaceAugmentation(keras.layers.Layer):
    """Per face: mirror left-right with probability 1/2 (``flip``), turn by up to
    ``rotation_deg`` degrees and scale by 1 +- up to ``zoom`` about the centre, then shift by up
    to ``shift`` of the size on each axis; bilinear, edges filled with the nearest pixel.
    Identity outside training."""

    def __init__(self, flip: bool, rotation_deg: float, zoom: float, shift: float, seed: int,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.flip, self.rotation_deg, self.zoom, self.shift = bool(flip), rotation_deg, zoom, shift
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        draws = keras.random.uniform((tf.shape(images)[0], 5), seed=self.generator)
        return self.transform(images, draws)

    def transform(self, images: tf.Tensor, draws: tf.Tensor) -> tf.Tensor:
        """``images`` (N, H, W, C) transformed by ``draws`` (N, 5), uniform in [0, 1): flip,
        rotation, zoom, shift x, shift y, each mapped onto its range as ferdata.augment does."""
        flip, rotation, zoom, shift_x, shift_y = tf.unstack(tf.cast(draws, tf.float32), axis=1)
        matrix = affine_inverse(
            mirror=tf.logical_and(flip < 0.5, self.flip),
            angle=math.radians(self.rotation_deg) * (2.0 * rotation - 1.0),
            scale=1.0 + self.zoom * (2.0 * zoom - 1.0),
            shift_x=self.shift * (2.0 * shift_x - 1.0), shift_y=self.shift * (2.0 * shift_y - 1.0),
            size=images.shape[1])
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=matrix, output_shape=tf.shape(images)[1:3], fill_value=0.0,
            interpolation="BILINEAR", fill_mode="NEAREST")

    def get_config(self) -> dict:
        return {**super().get_config(), "flip": self.flip, "rotation_deg": self.rotation_deg,
                "zoom": self.zoom, "shift": self.shift, "seed": self.seed}


def affine_inverse(mirror: tf.Tensor, angle: tf.Tensor, scale: tf.Tensor, shift_x: tf.Tensor,
                   shift_y: tf.Tensor, size: int) -> tf.Tensor:
    """(N, 8) ``ImageProjectiveTransformV3`` rows taking each output pixel (x, y) to the input
    point it samples: the inverse of mirror, then turn ``angle`` radians counter-clockwise and
    scale about the centre, then shift (fractions of ``size``; x right, y down)."""
    centre = (size - 1) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # where the centre lands after the shift, as (row, col)
    row, col = centre + shift_y * size, centre + shift_x * size
    row_from = [cos, sin, centre - cos * row - sin * col]  # input row = a*y + b*x + c
    sign, col_offset = tf.where(mirror, -1.0, 1.0), centre + sin * row - cos * col
    col_from = [-sign * sin, sign * cos, tf.where(mirror, size - 1.0 - col_offset, col_offset)]  # mirrored last
    zeros = tf.zeros_like(cos)
    # x' = a0 x + a1 y + a2, y' = b0 x + b1 y + b2 (x = col, y = row), no perspective
    return tf.stack([col_from[1], col_from[0], col_from[2], row_from[1], row_from[0], row_from[2], zeros, zeros],
                    axis=1)
