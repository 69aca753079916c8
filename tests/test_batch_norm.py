"""The fused batch normalisation layer computes what Keras's own layer computes."""

from __future__ import annotations

import numpy as np
import pytest

from ferdata import model as model_lib
from ferdata.batch_norm import FusedBatchNormalization

import keras  # noqa: E402  (after ferdata.model has chosen the TensorFlow backend)
import tensorflow as tf  # noqa: E402


def _layer_pair(shape: tuple[int, ...], rng: np.random.Generator):
    """Keras's layer and the fused one, with the same non-trivial scale and offset."""
    keras_bn, fused_bn = keras.layers.BatchNormalization(momentum=0.8), FusedBatchNormalization(momentum=0.8)
    gamma = rng.uniform(0.5, 2.0, shape[-1]).astype("float32")
    beta = rng.normal(size=shape[-1]).astype("float32")
    for layer in (keras_bn, fused_bn):
        layer.build(shape)
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
    return keras_bn, fused_bn


@pytest.mark.parametrize("shape", [(16, 12, 12, 8), (32, 24), (2, 3)])
def test_fused_layer_matches_keras_in_training_and_inference(shape):
    rng = np.random.default_rng(0)
    faces = tf.constant((rng.normal(size=shape) * 3 + 1).astype("float32"))
    projection = tf.constant(rng.normal(size=shape).astype("float32"))
    keras_bn, fused_bn = _layer_pair(shape, rng)
    results = []
    for layer in (keras_bn, fused_bn):
        with tf.GradientTape() as tape:
            tape.watch(faces)
            outputs = layer(faces, training=True)
            loss = tf.reduce_sum(outputs * projection)
        grads = tape.gradient(loss, [faces, layer.gamma, layer.beta])
        results.append((outputs.numpy(), [g.numpy() for g in grads], layer.moving_mean.numpy(),
                        layer.moving_variance.numpy(), layer(faces, training=False).numpy()))
    (out_k, grads_k, mean_k, var_k, infer_k), (out_f, grads_f, mean_f, var_f, infer_f) = results
    np.testing.assert_allclose(out_f, out_k, atol=1e-5)
    for fused, plain in zip(grads_f, grads_k):
        np.testing.assert_allclose(fused, plain, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mean_f, mean_k, atol=1e-6)
    np.testing.assert_allclose(var_f, var_k, rtol=1e-5)  # the biased variance, as Keras averages
    assert not np.allclose(var_f, 1.0)  # the moving statistics did move
    np.testing.assert_allclose(infer_f, infer_k, atol=1e-5)


def test_networks_use_the_fused_layer_and_save_with_it(tmp_path):
    net = model_lib.build_model("five_layer", 7)
    norms = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 4 and all(isinstance(layer, FusedBatchNormalization) for layer in norms)
    net.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.get_layer("conv1_bn"), FusedBatchNormalization)
    faces = np.random.default_rng(1).integers(0, 256, (4, 48, 48, 1)).astype("float32")
    np.testing.assert_allclose(loaded.predict(faces, verbose=0), net.predict(faces, verbose=0), atol=1e-6)
