"""Geometric augmentation of 48x48 faces: horizontal flip, rotation, zoom and shift.

Each copy's :class:`Transform` is drawn from a seeded generator and recorded, so a copy
can always be rebuilt from its parent with :func:`apply_transform`. Borders are filled by
repeating the edge pixels (no black corners) and pixels are interpolated bilinearly.
:func:`online_config` exports the same parameters for augmentation during training, which
:mod:`ferdata.augment_layer` applies with the same geometry.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy import ndimage

from ferdata.manifest import IMAGE_SIZE
from ferdata.params import ParamsError

_DECIMALS = 4  # recorded precision of drawn angles, zooms and shifts


@dataclass
class AugmentParams:
    """The ``balance.augment`` section: each transform's largest amount (0 / false: off)."""

    flip: bool = True  # mirror left-right with probability 1/2
    rotation_deg: float = 10.0  # uniform in [-rotation_deg, +rotation_deg], counter-clockwise positive
    zoom: float = 0.1  # scale factor uniform in [1 - zoom, 1 + zoom]; > 1 enlarges the face
    shift: float = 0.1  # shift uniform in [-shift, +shift] of the image size, on each axis

    def __post_init__(self) -> None:
        where = "params.yaml [balance.augment]"
        if not isinstance(self.flip, bool):
            raise ParamsError(f"{where}.flip: true or false, not {self.flip!r}")
        for name, top in (("rotation_deg", 180.0), ("zoom", 1.0), ("shift", 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < top:
                raise ParamsError(f"{where}.{name}: a number in [0, {top:g}), not {value!r}")
            setattr(self, name, float(value))

    @classmethod
    def from_dict(cls, raw: dict) -> "AugmentParams":
        """Build from a params.yaml mapping, refusing unknown keys."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ParamsError(f"params.yaml [balance.augment]: unknown keys {unknown}; known: {known}")
        return cls(**raw)


@dataclass(frozen=True)
class Transform:
    """One copy's transform: mirror first, then rotate and zoom about the centre, then shift."""

    flip: bool = False
    rotation_deg: float = 0.0  # counter-clockwise as displayed
    zoom: float = 1.0  # scale factor
    shift_x: float = 0.0  # fraction of the width; > 0 moves the face right
    shift_y: float = 0.0  # fraction of the height; > 0 moves the face down

    def to_json(self) -> str:
        """The compact JSON stored in the manifest's ``transform`` column."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Transform":
        return cls(**json.loads(text))


def draw_transform(params: AugmentParams, rng: np.random.Generator) -> Transform:
    """A random transform within ``params``; always draws five numbers, so streams stay aligned."""
    flip, rotation, zoom, shift_x, shift_y = rng.uniform(size=5)
    return Transform(
        flip=bool(params.flip and flip < 0.5),
        rotation_deg=_spread(rotation, params.rotation_deg),
        zoom=round(1.0 + _spread(zoom, params.zoom), _DECIMALS),
        shift_x=_spread(shift_x, params.shift),
        shift_y=_spread(shift_y, params.shift),
    )


def _spread(u: float, top: float) -> float:
    """Map u in [0, 1) to [-top, top), rounded to the recorded precision (never -0.0)."""
    return round(float((2 * u - 1) * top), _DECIMALS) + 0.0


def _inverse_map(t: Transform, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Matrix and offset taking an output (row, col) to the input position it samples."""
    centre = np.full(2, (size - 1) / 2.0)
    angle = np.deg2rad(t.rotation_deg)
    # a counter-clockwise turn on screen, in (row, col) coordinates with rows pointing down
    rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    inverse = rotate.T / t.zoom
    shift = np.array([t.shift_y, t.shift_x]) * size
    matrix, offset = inverse, centre - inverse @ (centre + shift)
    if t.flip:  # the mirror is applied first, so it comes last in the inverse
        mirror = np.array([[1.0, 0.0], [0.0, -1.0]])
        matrix, offset = mirror @ matrix, mirror @ offset + np.array([0.0, size - 1.0])
    return matrix, offset


def apply_transform(image: np.ndarray, t: Transform) -> np.ndarray:
    """``image`` (48x48 uint8) transformed by ``t``: bilinear, edges repeated, rounded to uint8."""
    matrix, offset = _inverse_map(t, image.shape[0])
    out = ndimage.affine_transform(image.astype(np.float32), matrix, offset, order=1, mode="nearest")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def augment_images(images: np.ndarray, params: AugmentParams,
                   rng: np.random.Generator) -> tuple[np.ndarray, list[Transform]]:
    """One augmented copy of each image, and the transform each got."""
    transforms = [draw_transform(params, rng) for _ in range(len(images))]
    out = np.empty_like(images, dtype=np.uint8)
    for k, (image, t) in enumerate(zip(images, transforms)):
        out[k] = apply_transform(image, t)
    return out, transforms


def online_config(params: AugmentParams) -> dict:
    """augment.json: the parameters, and how the train stage applies them to each batch."""
    return {
        **asdict(params),
        "image_size": IMAGE_SIZE,
        "fill_mode": "nearest",
        "interpolation": "bilinear",
        "order": "flip, then rotation and zoom about the centre, then shift",
        "layer": "ferdata.augment_layer.FaceAugmentation",
    }
