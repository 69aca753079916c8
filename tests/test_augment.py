"""Geometric augmentation: each transform does what its name says, copies are reproducible
from their recorded transform, borders repeat the edge, and the online export names them."""

import json

import numpy as np
import pytest

from ferdata.augment import (
    AugmentParams, Transform, apply_transform, augment_images, draw_transform, online_config,
)
from ferdata.params import ParamsError, section
from helpers import class_pattern


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return class_pattern(2, np.random.default_rng(0))


def test_identity_leaves_the_face_unchanged(face):
    assert np.array_equal(apply_transform(face, Transform()), face)


def test_flip_mirrors_left_right(face):
    assert np.array_equal(apply_transform(face, Transform(flip=True)), face[:, ::-1])


def test_positive_rotation_turns_counter_clockwise(face):
    assert np.array_equal(apply_transform(face, Transform(rotation_deg=90.0)), np.rot90(face))


def test_shift_moves_right_and_down_repeating_the_edge(face):
    out = apply_transform(face, Transform(shift_x=2 / 48, shift_y=3 / 48))
    assert np.array_equal(out[3:, 2:], face[:-3, :-2])
    assert np.array_equal(out[3:, :2], np.repeat(face[:-3, :1], 2, axis=1))  # left edge repeated
    assert np.array_equal(out[:3, 2:], np.repeat(face[:1, :-2], 3, axis=0))  # top edge repeated


def test_zoom_enlarges_about_the_centre():
    square = np.zeros((48, 48), np.uint8)
    square[20:28, 20:28] = 255
    out = apply_transform(square, Transform(zoom=2.0))
    assert (out > 127).sum() == pytest.approx(4 * 64, rel=0.15)
    assert out[23, 23] == 255 and out[8, 8] == 0


def test_corners_are_filled_from_the_edges_not_black():
    flat = np.full((48, 48), 200, np.uint8)
    out = apply_transform(flat, Transform(rotation_deg=9.0, zoom=0.9, shift_x=0.1, shift_y=-0.1))
    assert np.array_equal(out, flat)


def test_drawn_transforms_stay_within_the_parameters_and_repeat_with_the_seed():
    params = AugmentParams(flip=True, rotation_deg=10, zoom=0.1, shift=0.1)
    drawn = [draw_transform(params, np.random.default_rng(5)) for _ in range(2)]
    assert drawn[0] == drawn[1]
    many = [draw_transform(params, np.random.default_rng(s)) for s in range(200)]
    assert all(abs(t.rotation_deg) <= 10 and 0.9 <= t.zoom <= 1.1 for t in many)
    assert all(abs(t.shift_x) <= 0.1 and abs(t.shift_y) <= 0.1 for t in many)
    assert 60 < sum(t.flip for t in many) < 140


def test_switched_off_transforms_are_never_drawn(face):
    params = AugmentParams(flip=False, rotation_deg=0, zoom=0, shift=0)
    images = np.stack([face] * 5)
    out, transforms = augment_images(images, params, np.random.default_rng(1))
    assert all(t == Transform() for t in transforms)
    assert np.array_equal(out, images)


def test_recorded_json_rebuilds_each_copy_exactly(face):
    images = np.stack([face, face[::-1], 255 - face])
    out, transforms = augment_images(images, AugmentParams(), np.random.default_rng(3))
    for image, copy, t in zip(images, out, transforms):
        assert not np.array_equal(copy, image)
        assert np.array_equal(apply_transform(image, Transform.from_json(t.to_json())), copy)


def test_params_section_is_checked():
    with pytest.raises(ParamsError, match=r"augment\]: unknown keys \['rotate'\]"):
        AugmentParams.from_dict({"rotate": 10})
    with pytest.raises(ParamsError, match=r"augment\]\.zoom"):
        AugmentParams(zoom=1.5)
    with pytest.raises(ParamsError, match=r"augment\]\.flip"):
        AugmentParams(flip="yes")
    assert section({"augment": {"rotation_deg": 5}}, "augment", AugmentParams).rotation_deg == 5.0


def test_online_config_names_the_parameters_and_the_layer_that_applies_them():
    config = json.loads(json.dumps(online_config(AugmentParams(rotation_deg=5))))
    assert {k: config[k] for k in ("flip", "rotation_deg", "zoom", "shift")} == {
        "flip": True, "rotation_deg": 5.0, "zoom": 0.1, "shift": 0.1}
    assert config["layer"] == "ferdata.augment_layer.FaceAugmentation"