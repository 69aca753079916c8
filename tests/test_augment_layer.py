"""Online augmentation: one resampling per face, with the balance stage's geometry, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from ferdata import model as model_lib
from ferdata.augment import AugmentParams, Transform, apply_transform, online_config
from ferdata.train import augmentation_from
from helpers import class_pattern

import tensorflow as tf  # noqa: E402  (after ferdata.model has chosen the TensorFlow backend)


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([class_pattern(k % 7, rng) for k in range(24)])


def _as_transform(draws: np.ndarray, params: AugmentParams) -> Transform:
    """The offline transform that a row of uniform draws stands for."""
    flip, rotation, zoom, shift_x, shift_y = (2 * draws.astype(float) - 1)
    return Transform(flip=params.flip and flip < 0, rotation_deg=rotation * params.rotation_deg,
                     zoom=1 + zoom * params.zoom, shift_x=shift_x * params.shift, shift_y=shift_y * params.shift)


@pytest.mark.parametrize("params", [AugmentParams(), AugmentParams(flip=False, rotation_deg=30, zoom=0.3, shift=0.2)])
def test_each_face_is_transformed_as_the_balance_stage_would_transform_it(faces, params):
    draws = np.random.default_rng(1).uniform(size=(len(faces), 5)).astype("float32")
    layer = model_lib.augmentation(params.flip, params.rotation_deg, params.zoom, params.shift, seed=0)
    online = layer.transform(tf.constant(faces[..., None], tf.float32), tf.constant(draws)).numpy()[..., 0]
    offline = np.stack([apply_transform(face, _as_transform(row, params)) for face, row in zip(faces, draws)])
    difference = np.abs(np.rint(online) - offline)
    assert difference.max() <= 1  # rounding of a value at .5 may go either way
    assert difference.mean() < 0.01
    assert (np.abs(online - faces).mean(axis=(1, 2)) > 1).all()  # every face moved


def test_a_mirror_alone_is_exact(faces):
    layer = model_lib.augmentation(True, 0.0, 0.0, 0.0, seed=0)
    draws = np.tile([[0.2, 0.5, 0.5, 0.5, 0.5], [0.7, 0.5, 0.5, 0.5, 0.5]], (len(faces) // 2, 1)).astype("float32")
    out = layer.transform(tf.constant(faces[..., None], tf.float32), tf.constant(draws)).numpy()[..., 0]
    assert np.array_equal(out[0::2], faces[0::2, :, ::-1])
    assert np.array_equal(out[1::2], faces[1::2])


def test_the_same_seed_gives_the_same_faces_and_inference_leaves_them(faces):
    batch = tf.constant(faces[..., None], tf.float32)
    config = online_config(AugmentParams())
    first, again, other = (augmentation_from(config, seed)(batch, training=True).numpy() for seed in (3, 3, 4))
    assert first.shape == batch.shape
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.array_equal(augmentation_from(config, 3)(batch, training=False).numpy(), batch.numpy())
    turned = np.abs(first[..., 0] - faces).mean(axis=(1, 2))
    assert len(np.unique(np.round(turned, 3))) == len(faces)  # each face drew its own transform
