"""Batch normalisation through TensorFlow's fused kernel.

Keras 3 normalises with separate ops (moments, then scale and shift), which on a CPU makes
several passes over the first convolution's 48x48 feature maps and keeps the cores less
busy; TensorFlow's ``FusedBatchNormV3`` does each direction in one op (oneDNN's on CPU).
Same arithmetic as Keras's layer: the batch's mean and biased variance normalise in
training, and the moving statistics average them with ``momentum``
(``benchmarks/bench_train.py``, variant ``stage-keras-bn``, measures the difference).
Import it through :mod:`ferdata.model`, which chooses the backend and kernels first.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers


@keras.saving.register_keras_serializable(package="ferdata")
class FusedBatchNormalization(layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` over the last axis of 2-D or 4-D float32 inputs,
    computed by ``tf.nn.fused_batch_norm``; any other use falls back to Keras's ops."""

    def _fusable(self, inputs, mask) -> bool:
        rank = len(inputs.shape)
        return (mask is None and rank in (2, 4) and self.axis in (-1, rank - 1) and self.center
                and self.scale and not self.renorm and not self.synchronized
                and inputs.dtype == tf.float32)

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        flat = len(inputs.shape) == 2  # (N, C) normalised as (N, 1, 1, C) images
        images = inputs[:, None, None, :] if flat else inputs
        if training and self.trainable:
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                images, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)
            # The kernel returns the unbiased variance for the moving average; Keras averages
            # the biased one, which also normalised the batch.
            count = tf.cast(tf.size(images) // tf.size(mean), tf.float32)
            variance = variance * (count - 1.0) / count
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum
                                        + variance * (1.0 - self.momentum))
        else:
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                images, self.gamma, self.beta, mean=self.moving_mean, variance=self.moving_variance,
                epsilon=self.epsilon, is_training=False)
        return outputs[:, 0, 0, :] if flat else outputs
