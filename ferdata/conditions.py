"""What makes a generated face hard to read, drawn at random in proportions like real photos.

Real crops are not drawn faces looking straight at a studio camera: heads turn and tilt,
light comes from one side, exposure and focus miss, hands, glasses and hair cover parts
of the face, and many expressions are weak or halfway to another class. This module draws
those conditions for :mod:`ferdata.sample` and :mod:`ferdata.sample_photos`: a
:class:`~ferdata.faces.Pose`, an :class:`~ferdata.faces.Occlusion` and a :class:`Shown`
expression per face. Every draw comes from the caller's generator, so the same seed gives
the same faces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ferdata.faces import PEAKS, Expression, Occlusion, Pose

#: The class each expression is most often mistaken for, by annotators and by models.
CONFUSABLE = {"sad": "neutral", "neutral": "sad", "fear": "surprise", "surprise": "fear",
              "angry": "disgust", "disgust": "angry", "happy": "neutral", "contempt": "happy"}
#: How far a face of each class leans toward its confusable class at most (0: not at all,
#: 0.5: halfway). Fear and disgust are the least distinct, as in FER2013.
MAX_LEAN = {"angry": 0.35, "disgust": 0.5, "fear": 0.5, "happy": 0.15, "sad": 0.35, "surprise": 0.3,
            "neutral": 0.3, "contempt": 0.3}
#: Share of faces whose expression is weak (intensity 0.15-0.45 of the peak): near neutral.
WEAK_SHARE = 0.25


@dataclass(frozen=True)
class Shown:
    """The expression a face shows: its class, how strongly (0: neutral face, 1: the class's
    peak), and the share of the way it leans toward the class it is confused with."""

    name: str
    intensity: float
    lean: float

    @property
    def partner(self) -> str:
        return CONFUSABLE[self.name]

    def expression(self, rng: np.random.Generator) -> Expression:
        """This expression as a person makes it (:func:`jittered`)."""
        mixed = PEAKS[self.name].toward(PEAKS[self.partner], self.lean)
        return jittered(mixed, rng, self.intensity)


def shown(rng: np.random.Generator, name: str, strong: tuple[float, float] = (0.5, 1.1)) -> Shown:
    """A face of class ``name``: a weak expression (:data:`WEAK_SHARE`) or a strong one in
    ``strong``, leaning up to :data:`MAX_LEAN` toward its confusable class."""
    weak = rng.random() < WEAK_SHARE
    intensity = rng.uniform(0.15, 0.45) if weak else rng.uniform(*strong)
    return Shown(name, round(float(intensity), 3), round(float(rng.uniform(0, MAX_LEAN[name])), 3))


def jittered(peak: Expression, rng: np.random.Generator, intensity: float) -> Expression:
    """A person's rendition of an expression: scaled, with small jitter, either side."""
    values = vars(peak.scaled(intensity)).copy()
    curve, raise_, inner, eye, width = rng.normal(0, 1, 5).tolist()
    values.update(
        side=1.0 if rng.random() < 0.5 else -1.0, mouth_curve=values["mouth_curve"] + 0.015 * curve,
        brow_raise=values["brow_raise"] + 0.012 * raise_, brow_inner=values["brow_inner"] + 0.012 * inner,
        eye_open=values["eye_open"] * (1 + 0.05 * eye),
        mouth_width=values["mouth_width"] * (1 + 0.03 * width))
    return Expression(**values)


def _camera(rng: np.random.Generator) -> dict[str, float]:
    """Exposure, side light, focus and grain: usually fair, one face in five poor."""
    poor = rng.random() < 0.2
    return dict(
        brightness=float(rng.uniform(-35, 30)), contrast=float(rng.uniform(0.65, 1.25)),
        light=float(rng.uniform(0.15, 0.6)) if rng.random() < 0.4 else 0.0,
        light_deg=float(rng.uniform(0, 360)), gamma=float(np.clip(np.exp(rng.normal(0, 0.22)), 0.6, 1.7)),
        noise=float(rng.uniform(3.5, 8) if poor else rng.uniform(1, 3.5)),
        blur=round(float(rng.uniform(0.9, 1.5) if poor else rng.uniform(0.4, 0.9)), 1))


def _head(rng: np.random.Generator, tilted: float) -> dict[str, float]:
    """Roll, yaw and pitch in degrees: mostly near frontal; a ``tilted`` share rolled 12-30 degrees."""
    roll = float(np.clip(rng.normal(0, 5), -12, 12))
    if rng.random() < tilted:
        roll = float(rng.choice([-1, 1]) * rng.uniform(12, 30))
    return dict(angle_deg=roll, yaw_deg=float(np.clip(rng.normal(0, 10), -28, 28)),
                pitch_deg=float(np.clip(rng.normal(0, 7), -20, 20)))


def crop_pose(rng: np.random.Generator) -> Pose:
    """A FER2013-style 48x48 crop: the face fills the frame, off centre in one crop in seven,
    rolled strongly in one in four."""
    offset = rng.uniform(-3.5, 3.5, 2) if rng.random() < 0.15 else np.zeros(2)
    centre = (24 + rng.normal(0, 1.2) + offset[0], 23.5 + rng.normal(0, 1.2) + offset[1])
    return Pose(center=(float(centre[0]), float(centre[1])), scale=float(rng.uniform(14, 20.5)),
                **_head(rng, tilted=0.25), **_camera(rng))


def photo_pose(rng: np.random.Generator, size: tuple[int, int]) -> Pose:
    """A face somewhere in a photo of ``size`` (W, H), 12-20% of its shorter side between the eyes."""
    width, height = size
    scale = rng.uniform(0.12, 0.2) * min(size)
    margin = 2.2 * scale
    camera = _camera(rng)
    camera["blur"] = round(camera["blur"] * scale / 17, 1)  # as soft as a 48x48 crop's, at this size
    return Pose(center=(float(rng.uniform(margin, width - margin)), float(rng.uniform(margin, height - margin))),
                scale=float(scale), **_head(rng, tilted=0.1), **camera)


def occlusion(rng: np.random.Generator) -> Occlusion:
    """Glasses on 7% of faces, a hand in front of 5% (over the mouth or a cheek), a strand of
    hair across 8%; the rest uncovered."""
    glasses = float(rng.uniform(0.1, 0.9)) if rng.random() < 0.07 else 0.0
    hand: dict[str, float] = {}
    if rng.random() < 0.05:
        if rng.random() < 0.6:  # over the mouth and chin
            hand = dict(hand=1.0, hand_x=float(rng.normal(0, 0.3)), hand_y=float(rng.uniform(1.3, 1.9)),
                        hand_angle=float(rng.normal(0, 20)))
        else:  # against a cheek
            side = float(rng.choice([-1, 1]))
            hand = dict(hand=1.0, hand_x=side * float(rng.uniform(0.8, 1.1)), hand_y=float(rng.uniform(0.7, 1.2)),
                        hand_angle=side * float(rng.uniform(15, 45)))
    strand = {}
    if rng.random() < 0.08:
        strand = dict(strand=float(rng.uniform(0.12, 0.3)), strand_x=float(rng.uniform(-0.7, 0.7)),
                      strand_slope=float(rng.uniform(-0.4, 0.4)))
    return Occlusion(glasses=glasses, **hand, **strand)


def is_clear(pose: Pose, cover: Occlusion) -> bool:
    """Whether a face is seen plainly: nothing covers it, the camera was fair (sharp, little
    grain) and the head is rolled 12 degrees at most."""
    return cover == Occlusion() and pose.blur < 0.9 and pose.noise < 3.5 and abs(pose.angle_deg) <= 12
