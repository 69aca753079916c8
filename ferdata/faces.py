"""Drawn grayscale faces with known landmarks: the generated data's pictures.

A face is drawn in its own frame: the origin is the midpoint between the eyes, one unit
is the inter-ocular distance (IOD), x points to the image's right and y down. A
:class:`Subject` fixes a person's shape and tones, an :class:`Expression` the muscles
(mouth curve and opening, brows, eyelids, nose wrinkle), a :class:`Pose` where the face
lands in the image and how the camera sees it (position, size, roll, a turned or tipped
head seen in perspective, light, blur, noise) and an :class:`Occlusion` what covers part of
it (glasses, a hand, a strand of hair). The 68 landmarks follow dlib's
order and are points of the drawing itself (jaw on the face outline, brows on the brow
centre lines, eye points on the lid curves, mouth points on the lip curves), so a
detector and landmark fit can be scored against them.

Faces are rendered in batches with numpy (one array axis per face), which keeps the
full-size FER2013 sample fast.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy.ndimage import gaussian_filter

#: Expressions a face can show: the seven canonical classes plus CK+'s contempt.
EXPRESSIONS: tuple[str, ...] = (
    "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt")


@dataclass(frozen=True)
class Expression:
    """Muscle settings of a face; the neutral face is the default of every field."""

    mouth_curve: float = 0.0  # corner lift in IOD: > 0 smile, < 0 frown
    smirk: float = 0.0  # extra lift of one corner (side from ``side``)
    mouth_open: float = 0.0  # gap between the inner lips, IOD
    mouth_width: float = 1.0  # factor on the subject's mouth width
    lip_fullness: float = 1.0  # factor on lip thickness (< 1 pressed)
    upper_lip_raise: float = 0.0  # upper lip pulled up, stronger on ``side``
    teeth: float = 0.0  # 0..1 teeth showing in the mouth opening
    brow_raise: float = 0.0  # whole brows up (IOD)
    brow_inner: float = 0.0  # inner brow ends up (> 0) or down toward the nose (< 0)
    brow_knit: float = 0.0  # inner brow ends drawn together (IOD)
    eye_open: float = 1.0  # factor on the upper lid's height
    lower_lid: float = 1.0  # factor on the lower lid's depth (< 1: raised cheeks)
    nose_wrinkle: float = 0.0  # 0..1 wrinkles across the nose bridge
    fold_depth: float = 0.2  # 0..1 depth of the nose-to-mouth folds
    forehead_lines: float = 0.0  # 0..1 horizontal forehead lines
    side: float = 1.0  # +1 or -1: which side an asymmetric expression favours

    def scaled(self, intensity: float) -> "Expression":
        """This expression at ``intensity`` (0: neutral face, 1: this peak)."""
        values = {name: base + intensity * (vars(self)[name] - base) for name, base in _NEUTRAL.items()}
        return Expression(**values, side=self.side)

    def toward(self, other: "Expression", share: float) -> "Expression":
        """This expression moved ``share`` of the way to ``other``: a face between two classes."""
        values = {name: (1 - share) * vars(self)[name] + share * vars(other)[name] for name in _NEUTRAL}
        return Expression(**values, side=self.side)


_NEUTRAL = {f.name: f.default for f in fields(Expression) if f.name != "side"}


#: The peak expression of each class: the visible differences a model can learn.
PEAKS: dict[str, Expression] = {
    "neutral": Expression(),
    "happy": Expression(mouth_curve=0.17, mouth_open=0.07, mouth_width=1.12, lip_fullness=0.8,
                        teeth=1.0, eye_open=0.8, lower_lid=0.55, fold_depth=1.0),
    "sad": Expression(mouth_curve=-0.11, mouth_width=0.92, brow_inner=0.11, brow_knit=0.02,
                      eye_open=0.8, forehead_lines=0.3),
    "angry": Expression(mouth_curve=-0.03, mouth_width=0.84, lip_fullness=0.4, brow_raise=-0.06,
                        brow_inner=-0.12, brow_knit=0.06, eye_open=0.85, lower_lid=0.75,
                        nose_wrinkle=0.3, fold_depth=0.5),
    "surprise": Expression(mouth_open=0.36, mouth_width=0.68, lip_fullness=0.9, brow_raise=0.15,
                           eye_open=1.5, forehead_lines=1.0),
    "fear": Expression(mouth_curve=-0.04, mouth_open=0.12, mouth_width=1.15, lip_fullness=0.7,
                       teeth=0.8, brow_raise=0.09, brow_inner=0.07, brow_knit=0.04,
                       eye_open=1.45, forehead_lines=0.6, fold_depth=0.5),
    "disgust": Expression(mouth_curve=-0.06, mouth_open=0.05, mouth_width=0.95,
                          upper_lip_raise=0.09, teeth=0.6, brow_raise=-0.05, brow_inner=-0.05,
                          brow_knit=0.03, eye_open=0.7, lower_lid=0.7, nose_wrinkle=1.0,
                          fold_depth=0.9),
    "contempt": Expression(mouth_curve=0.02, smirk=0.11, lip_fullness=0.8, eye_open=0.95,
                           fold_depth=0.4),
}


@dataclass(frozen=True)
class Subject:
    """A person: face shape and grey levels, fixed across their images."""

    jaw_width: float = 1.16  # half face width at eye level, IOD
    chin: float = 1.92  # chin below the eye line
    jaw_square: float = 0.25  # 0: elliptic jaw; higher: squarer
    forehead: float = 1.55  # top of the head above the eye line
    eye_width: float = 0.2  # half eye width
    brow_gap: float = 0.33  # brow height above the eye centre
    brow_thickness: float = 0.08
    nose_length: float = 0.6  # nose tip below the eye line
    nose_width: float = 0.22  # half width of the nostrils
    mouth_y: float = 1.13  # mouth line below the eye line
    mouth_width: float = 0.46  # half mouth width
    lip_thickness: float = 0.09
    skin: float = 185.0  # grey level of lit skin
    background: float = 60.0
    hair: float = 40.0
    fringe: float = 1.05  # hairline above the eye line
    hair_length: float = 0.6  # how far down the sides the hair falls (eye line = 0)

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Subject":
        """A random plausible person; the background is darker than the skin."""
        values = dict(zip(_SUBJECT_RANGES, rng.uniform(*_SUBJECT_BOUNDS).tolist()))
        values["background"] = 20 + values["background"] * (0.55 * values["skin"] - 20)
        return cls(**values)


#: Each random subject field's range; ``background`` is a fraction of its skin-dependent range.
_SUBJECT_RANGES = {
    "jaw_width": (1.07, 1.24), "chin": (1.8, 2.02), "jaw_square": (0.07, 0.41), "forehead": (1.45, 1.7),
    "eye_width": (0.18, 0.215), "brow_gap": (0.3, 0.36), "brow_thickness": (0.065, 0.1),
    "nose_length": (0.55, 0.66), "nose_width": (0.19, 0.24), "mouth_y": (1.08, 1.18),
    "mouth_width": (0.42, 0.5), "lip_thickness": (0.075, 0.11), "skin": (140, 215),
    "background": (0, 1), "hair": (15, 70), "fringe": (0.85, 1.25), "hair_length": (-0.3, 1.4),
}
_SUBJECT_BOUNDS = tuple(np.array(bounds) for bounds in zip(*_SUBJECT_RANGES.values()))


@dataclass(frozen=True)
class Pose:
    """Where a face lands in the image, how the head is turned, and how it is lit and filmed."""

    center: tuple[float, float]  # image position of the face's centre (x, y), pixels
    scale: float  # inter-ocular distance in pixels
    angle_deg: float = 0.0  # roll; positive turns the face clockwise on screen
    yaw_deg: float = 0.0  # head turned toward the image's left (> 0) or right, seen in perspective
    pitch_deg: float = 0.0  # head tipped down (> 0: looking down) or up
    brightness: float = 0.0  # added grey level
    contrast: float = 1.0  # factor on grey levels around mid-grey
    light: float = 0.0  # side light, 0..1: the lit side up to this share brighter, the other as much darker
    light_deg: float = 0.0  # direction the light falls from (0: image left, 90: above)
    gamma: float = 1.0  # exposure curve: > 1 darkens the mid-tones, < 1 brightens them
    noise: float = 2.0  # standard deviation of pixel noise
    blur: float = 0.7  # Gaussian blur sigma in pixels (camera softness)


@dataclass(frozen=True)
class Occlusion:
    """What covers part of a face, in the face frame; every default is: nothing."""

    glasses: float = 0.0  # > 0: glasses, with lenses this dark (0..1)
    hand: float = 0.0  # 1: a hand in front of the face
    hand_x: float = 0.0  # palm centre (IOD, face frame)
    hand_y: float = 1.4
    hand_angle: float = 0.0  # fingers' direction, degrees clockwise from pointing up
    strand: float = 0.0  # > 0: a strand of hair this wide (IOD) falling across the face
    strand_x: float = 0.0  # where it crosses the eye line
    strand_slope: float = 0.3  # sideways run per unit of fall


@dataclass(frozen=True)
class FaceTruth:
    """Where a drawn face's parts are, in image coordinates (x, y).

    ``left_eye`` is the eye on the image's left (dlib points 36-41, the subject's right
    eye), ``right_eye`` the other (42-47); each is the mean of its six landmarks, as a
    landmark fit's eye centre is usually computed. ``mouth`` is the mean of points 48-67.
    """

    left_eye: tuple[float, float]
    right_eye: tuple[float, float]
    mouth: tuple[float, float]
    landmarks: np.ndarray  # (68, 2) float, dlib's 68-point order

    @classmethod
    def from_landmarks(cls, points: np.ndarray) -> "FaceTruth":
        def mean(a: int, b: int) -> tuple[float, float]:
            x, y = points[a:b].mean(axis=0)
            return float(x), float(y)
        return cls(mean(36, 42), mean(42, 48), mean(48, 68), points)

    @property
    def interocular(self) -> float:
        return float(np.hypot(self.right_eye[0] - self.left_eye[0], self.right_eye[1] - self.left_eye[1]))


# ---------------------------------------------------------------- geometry (face frame)

#: The face centre (the point :attr:`Pose.center` places) in the face frame.
FACE_CENTER = (0.0, 0.25)
_BROW_X = np.array([-0.42, -0.28, -0.09, 0.10, 0.29])  # left brow, outer -> inner, from eye centre
_BROW_Y = np.array([-0.61, -0.97, -1.06, -0.97, -0.73])  # times brow_gap
_BROW_INNER_WEIGHT = np.array([0.0, 0.1, 0.35, 0.7, 1.0])
_LID_POWER = 0.8


class _Params:
    """Subjects, expressions and occlusions of a batch as (N,) arrays, by field name."""

    def __init__(self, subjects: list[Subject], expressions: list[Expression],
                 dtype: type = np.float64, occlusions: list[Occlusion] | None = None) -> None:
        occlusions = occlusions or [Occlusion()] * len(subjects)
        for prefix, items in (("", subjects), ("x_", expressions), ("o_", occlusions)):
            columns = np.array([list(vars(i).values()) for i in items], dtype=dtype).T.copy()
            for name, column in zip(vars(items[0]), columns):
                setattr(self, prefix + name, column)


def _jaw_curve(p: _Params, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points of the lower face outline at angles ``t`` (0: image-left ear, pi: right)."""
    c, s = np.cos(t), np.sin(t)
    k = p.jaw_square[:, None]
    # radius where (1 - k) r^2 + k r^4 (c^4 + s^4) = 1, the outline _draw_head fills
    rho = np.sqrt(2.0 / ((1 - k) + np.sqrt((1 - k) ** 2 + 4 * k * (c ** 4 + s ** 4))))
    return -p.jaw_width[:, None] * rho * c, p.chin[:, None] * rho * np.abs(s)


def _jaw_points(p: _Params) -> np.ndarray:
    """17 jaw landmarks, equally spaced along the drawn outline."""
    t = np.linspace(0.0, np.pi, 200)[None, :].repeat(len(p.chin), 0)
    x, y = _jaw_curve(p, t)
    arc = np.concatenate([np.zeros((len(x), 1)), np.cumsum(np.hypot(np.diff(x), np.diff(y)), 1)], 1)
    at = np.linspace(0.0, 1.0, 17)[None, :] * arc[:, -1:]
    # linear interpolation along each face's outline at the 17 arc lengths
    hi = np.clip((arc[:, None, :] < at[:, :, None]).sum(-1), 1, arc.shape[1] - 1)
    lo = hi - 1
    a0, a1 = np.take_along_axis(arc, lo, 1), np.take_along_axis(arc, hi, 1)
    w = (at - a0) / np.maximum(a1 - a0, 1e-12)
    return np.stack([np.take_along_axis(c, lo, 1) * (1 - w) + np.take_along_axis(c, hi, 1) * w
                     for c in (x, y)], -1)


def _brow_points(p: _Params) -> tuple[np.ndarray, np.ndarray]:
    """(N, 5, 2) left brow (outer -> inner) and right brow (inner -> outer)."""
    w = _BROW_INNER_WEIGHT[None, :]
    x = -0.5 + _BROW_X[None, :] + p.x_brow_knit[:, None] * w
    y = (_BROW_Y[None, :] * p.brow_gap[:, None] - p.x_brow_raise[:, None]
         - p.x_brow_inner[:, None] * w)
    left = np.stack([x, y], -1)
    right = np.stack([-x, y], -1)[:, ::-1]
    return left, right


def _lids(p: _Params, dx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower lid heights (y offsets from the eye centre) at ``dx`` from it."""
    a = p.eye_width.reshape((-1,) + (1,) * (dx.ndim - 1))
    shape = np.clip(1 - (dx / a) ** 2, 0, None) ** _LID_POWER
    up = 0.085 * p.x_eye_open.reshape(a.shape)
    low = 0.06 * p.x_lower_lid.reshape(a.shape)
    return -up * shape, low * shape


def _eye_points(p: _Params, cx: float) -> np.ndarray:
    """Six landmarks of the eye centred at (cx, 0): outer/inner corner order as dlib's."""
    a = p.eye_width[:, None]
    k = 0.4
    dx = np.concatenate([-a, -k * a, k * a, a, k * a, -k * a], 1)
    up, low = _lids(p, dx)
    y = np.where(np.arange(6)[None, :] < 4, up, low)
    y[:, [0, 3]] = 0.0
    return np.stack([cx + dx, y], -1)


def _mouth(p: _Params):
    """Curves of the mouth: centre line, inner and outer lips, as functions of x."""
    mw = p.mouth_width * p.x_mouth_width
    side = p.x_side
    my = p.mouth_y
    tu = 0.8 * p.lip_thickness * p.x_lip_fullness
    tl = 1.4 * p.lip_thickness * p.x_lip_fullness

    def shaped(arr, x):
        return arr.reshape((-1,) + (1,) * (x.ndim - 1))

    def curves(x: np.ndarray):
        w = shaped(mw, x)
        r = x / w
        bulge = np.sqrt(np.clip(1 - r ** 2, 0, None))
        one_side = np.clip(r * shaped(side, x), 0, None)
        lift = shaped(p.x_mouth_curve, x) * r ** 2 + shaped(p.x_smirk, x) * one_side ** 2
        centre = shaped(my, x) - lift
        half_open = 0.5 * shaped(p.x_mouth_open, x) * bulge
        raise_up = shaped(p.x_upper_lip_raise, x) * bulge * (1 + 0.6 * r * shaped(side, x))
        inner_up = centre - half_open - raise_up
        inner_low = centre + half_open
        outer_up = inner_up - shaped(tu, x) * bulge ** 0.7
        outer_low = inner_low + shaped(tl, x) * bulge ** 0.7
        return centre, inner_up, inner_low, outer_up, outer_low

    return mw, curves


def _mouth_points(p: _Params) -> np.ndarray:
    """Points 48-67: outer lip from the left corner clockwise, then the inner lip."""
    mw, curves = _mouth(p)
    w = mw[:, None]
    fx = np.array([-1.0, -0.6, -0.25, 0.0, 0.25, 0.6, 1.0, 0.6, 0.25, 0.0, -0.25, -0.6,
                   -0.85, -0.25, 0.0, 0.25, 0.85, 0.25, 0.0, -0.25])
    x = fx[None, :] * w
    centre, inner_up, inner_low, outer_up, outer_low = curves(x)
    y = np.empty_like(x)
    y[:, 0] = centre[:, 0]
    y[:, 1:6] = outer_up[:, 1:6]
    y[:, 6] = centre[:, 6]
    y[:, 7:12] = outer_low[:, 7:12]
    y[:, 12] = centre[:, 12]
    y[:, 13:16] = inner_up[:, 13:16]
    y[:, 16] = centre[:, 16]
    y[:, 17:20] = inner_low[:, 17:20]
    return np.stack([x, y], -1)


def _nose_points(p: _Params) -> np.ndarray:
    """Points 27-35: the bridge down to the tip, then the nostril base left to right."""
    n = len(p.nose_length)
    bridge_y = np.stack([np.zeros(n), 0.2 * np.ones(n), 0.4 * np.ones(n), p.nose_length], 1)
    bridge = np.stack([np.zeros((n, 4)), bridge_y], -1)
    fx = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    base_x = fx[None, :] * p.nose_width[:, None]
    base_y = p.nose_length[:, None] + np.array([0.12, 0.17, 0.2, 0.17, 0.12])[None, :]
    return np.concatenate([bridge, np.stack([base_x, base_y], -1)], 1)


def _landmarks(p: _Params) -> np.ndarray:
    """(N, 68, 2) landmarks in the face frame, dlib's order."""
    left_brow, right_brow = _brow_points(p)
    return np.concatenate([
        _jaw_points(p), left_brow, right_brow, _nose_points(p),
        _eye_points(p, -0.5), _eye_points(p, 0.5), _mouth_points(p)], 1)


def _pose_arrays(poses: list[Pose]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cosine, sine, scale (N,) and centre (N, 2) of each pose."""
    angle = np.deg2rad([pose.angle_deg for pose in poses])
    scale = np.array([pose.scale for pose in poses], dtype=np.float64)
    centre = np.array([pose.center for pose in poses], dtype=np.float64).reshape(-1, 2)
    return np.cos(angle), np.sin(angle), scale, centre


#: Distance of the camera from the face's centre (IOD): close, as webcams and phones are.
CAMERA_DISTANCE = 4.0
#: How far the middle of the face stands out from its outline (IOD): a turned head's nose and
#: mouth move against its outline by this times the sine of the turn.
_DOME_HEIGHT = 0.45
_DOME_RADII = (1.2, 1.8)  # half width and half height of the dome, about the face centre


class _HeadTurn:
    """A head turned by its yaw and pitch: a rounded face (:data:`_DOME_HEIGHT`) whose plane
    is seen in perspective from :data:`CAMERA_DISTANCE`. Coordinates are face-frame units
    relative to :data:`FACE_CENTER`; arrays are shaped (N, ...), one face per row."""

    def __init__(self, poses: list[Pose]) -> None:
        yaw = np.deg2rad([pose.yaw_deg for pose in poses])
        pitch = np.deg2rad([pose.pitch_deg for pose in poses])
        cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
        # where the face's x and y axes point in 3-D: columns 1 and 2 of R_yaw @ R_pitch
        r1 = np.stack([cy, np.zeros_like(yaw), -sy], -1)
        r2 = np.stack([sy * sp, cp, cy * sp], -1)
        d = CAMERA_DISTANCE
        self.plane = np.zeros((len(poses), 3, 3))
        self.plane[:, :2, 0], self.plane[:, :2, 1] = d * r1[:, :2], d * r2[:, :2]
        self.plane[:, 2, 0], self.plane[:, 2, 1], self.plane[:, 2, 2] = r1[:, 2], r2[:, 2], d
        self.unplane = np.linalg.inv(self.plane)
        self.shift = _DOME_HEIGHT * np.stack([-sy, sp], -1)  # the dome's top moves against the outline

    @staticmethod
    def of(poses: list[Pose]) -> "_HeadTurn | None":
        """The turn of these poses, or None when every face looks straight at the camera."""
        return _HeadTurn(poses) if any(p.yaw_deg or p.pitch_deg for p in poses) else None

    def _dome(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each point's shift (x, y) for its height on the dome."""
        rx, ry = _DOME_RADII
        height = np.clip(1 - (x / rx) ** 2 - (y / ry) ** 2, 0, None)
        shift = self.shift.reshape((-1,) + (1,) * (x.ndim - 1) + (2,)).astype(x.dtype)
        return shift[..., 0] * height, shift[..., 1] * height

    def forward(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frontal face-frame points -> where the turned head shows them."""
        dx, dy = self._dome(x, y)
        return _homography(self.plane, x + dx, y + dy)

    def backward(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The inverse of :meth:`forward`: the plane exactly, the dome by three fixed-point steps
        (for turns up to 30 degrees each step shrinks the error at least 2.5 times)."""
        u, v = _homography(self.unplane, u, v)
        x, y = u, v
        for _ in range(3):
            dx, dy = self._dome(x, y)
            x, y = u - dx, v - dy
        return x, y


def _homography(h: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Homographies (N, 3, 3) applied to points x, y shaped (N, ...)."""
    def entry(i: int, j: int) -> np.ndarray:
        return h[:, i, j].reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)
    w = entry(2, 0) * x + entry(2, 1) * y + entry(2, 2)
    return ((entry(0, 0) * x + entry(0, 1) * y + entry(0, 2)) / w,
            (entry(1, 0) * x + entry(1, 1) * y + entry(1, 2)) / w)


def to_image(points: np.ndarray, poses: list[Pose]) -> np.ndarray:
    """Face-frame points (N, K, 2) -> image coordinates under each face's pose."""
    cos, sin, scale, centre = (a[:, None] for a in _pose_arrays(poses))
    x, y = points[..., 0] - FACE_CENTER[0], points[..., 1] - FACE_CENTER[1]
    turn = _HeadTurn.of(poses)
    if turn is not None:
        x, y = turn.forward(x, y)
    x, y = x * scale, y * scale
    return np.stack([cos * x - sin * y + centre[..., 0], sin * x + cos * y + centre[..., 1]], -1)


# ---------------------------------------------------------------- rendering

def _soft(d: np.ndarray, edge: np.ndarray) -> np.ndarray:
    """Coverage of a shape from its signed distance (negative inside), edge ~ one pixel."""
    x = d / edge
    np.subtract(0.5, x, out=x)
    return np.clip(x, 0.0, 1.0, out=x)


def _bump(u, v, cx, cy, rx, ry):
    """A smooth bump of height 1 at (cx, cy), zero outside the ellipse of radii (rx, ry)."""
    return np.clip(1.0 - ((u - cx) / rx) ** 2 - ((v - cy) / ry) ** 2, 0.0, None) ** 2


def _segment_distance2(u, v, ax, ay, bx, by):
    """Squared distance from each (u, v) to the segment a-b."""
    dx, dy = bx - ax, by - ay
    pu, pv = u - ax, v - ay
    t = np.clip((pu * dx + pv * dy) / (dx * dx + dy * dy + 1e-12), 0.0, 1.0)
    pu -= t * dx
    pv -= t * dy
    return pu * pu + pv * pv


def _segment_distance(u, v, ax, ay, bx, by):
    return np.sqrt(_segment_distance2(u, v, ax, ay, bx, by))


def _polyline_distance(u, v, pts):
    """Distance to a polyline given as (N, K, 2) points, shaped like ``u``."""
    pts = pts.astype(u.dtype)[:, :, :, None, None]
    d2 = _segment_distance2(u, v, pts[:, 0, 0], pts[:, 0, 1], pts[:, 1, 0], pts[:, 1, 1])
    for k in range(1, pts.shape[1] - 1):
        np.minimum(d2, _segment_distance2(u, v, pts[:, k, 0], pts[:, k, 1],
                                          pts[:, k + 1, 0], pts[:, k + 1, 1]), out=d2)
    return np.sqrt(d2)


def _ellipse_distance(u, v, cx, cy, rx, ry):
    return (np.hypot((u - cx) / rx, (v - cy) / ry) - 1.0) * np.minimum(rx, ry)


def _paint(img, mask, value):
    """Cover ``img`` (in place) with ``value`` where ``mask`` is 1, blending at its edges."""
    img *= 1 - mask
    img += mask * value
    return img


_HAIR_CY, _HAIR_RX = -0.25, 1.18


def _hair_ry(forehead):
    return forehead * 1.02 + 0.1


class _Canvas:
    """A batch of images being drawn, starting as a softly lit background.

    :meth:`region` returns a view of the pixels that any face's box (in face-frame
    units) can touch, with those pixels' face-frame coordinates, so each part is drawn
    only where it can be; :attr:`touched` is the pixel box of everything drawn.
    """

    def __init__(self, p: _Params, poses: list[Pose], width: int, height: int) -> None:
        self.p, self.poses, self.width, self.height = p, poses, width, height
        self._turn = _HeadTurn.of(poses)
        cos, sin, scale, centre = (a.astype(np.float32) for a in _pose_arrays(poses))
        self._rot = (cos[:, None, None], sin[:, None, None], scale[:, None, None],
                     centre[:, 0, None, None], centre[:, 1, None, None])
        xs = np.arange(width, dtype=np.float32)[None, None, :]
        light = 1 + 0.15 * np.tanh(0.3 * (xs - self._rot[3]) / self._rot[2])
        self.img = np.repeat(self.param("background") * light, height, axis=1)
        self.edge = np.float32(1.2) / self._rot[2]  # shape edges about a pixel wide
        self.touched: tuple[int, int, int, int] | None = None

    def region(self, u0, v0, u1, v1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(img view, u, v) over the pixels covering the face-frame box; bounds may be (N,) arrays."""
        n = len(self.poses)
        u0, v0, u1, v1 = (np.broadcast_to(np.asarray(x, float), (n,)) for x in (u0, v0, u1, v1))
        corners = np.stack([np.stack([u0, v0], -1), np.stack([u1, v0], -1),
                            np.stack([u0, v1], -1), np.stack([u1, v1], -1)], 1)
        pix = to_image(corners, self.poses)
        x0, y0 = np.maximum(np.floor(pix.min((0, 1)) - 1).astype(int), 0)
        x1, y1 = np.ceil(pix.max((0, 1)) + 2).astype(int)
        x1, y1 = max(x0, min(x1, self.width)), max(y0, min(y1, self.height))
        if self.touched is None:
            self.touched = (x0, y0, x1, y1)
        else:
            t = self.touched
            self.touched = (min(t[0], x0), min(t[1], y0), max(t[2], x1), max(t[3], y1))
        cos, sin, scale, cx, cy = self._rot
        dx = np.arange(x0, x1, dtype=np.float32)[None, None, :] - cx
        dy = np.arange(y0, y1, dtype=np.float32)[None, :, None] - cy
        # inverse rotation, back to IOD units, then the head turned back to face the camera
        u = (cos * dx + sin * dy) / scale
        v = (cos * dy - sin * dx) / scale
        if self._turn is not None:
            u, v = self._turn.backward(u, v)
        return self.img[:, y0:y1, x0:x1], u + np.float32(FACE_CENTER[0]), v + np.float32(FACE_CENTER[1])

    def param(self, name: str) -> np.ndarray:
        return getattr(self.p, name)[:, None, None]


def _draw_neck(cv: _Canvas) -> None:
    """The neck, from under the jaw down to the frame's edge (a tipped head's, a few face
    heights down: a plane seen in perspective has a horizon)."""
    c, p = cv.param, cv.p
    w = 0.62 * p.jaw_width + 0.05
    far = 1.0 + (cv.width + cv.height) / np.array([pose.scale for pose in cv.poses])
    tip = np.abs(np.sin(np.deg2rad([pose.pitch_deg for pose in cv.poses])))
    far = np.minimum(far, 0.5 * CAMERA_DISTANCE / np.maximum(tip, 1e-6))
    img, u, v = cv.region(-w, 0.9, w, far)
    neck = _soft(np.abs(u) - 0.62 * c("jaw_width"), cv.edge) * _soft(1.0 - v, cv.edge)
    _paint(img, neck, 0.62 * c("skin"))


def _draw_head(cv: _Canvas) -> None:
    """Hair behind the head, the face oval with its shading, and the fringe."""
    c, p, edge = cv.param, cv.p, cv.edge
    skin, hair, W, chin, fh = c("skin"), c("hair"), c("jaw_width"), c("chin"), c("forehead")
    rx = p.jaw_width * _HAIR_RX
    img, u, v = cv.region(-rx, _HAIR_CY - _hair_ry(p.forehead),
                          rx, np.maximum(p.chin, _HAIR_CY + _hair_ry(p.forehead)))
    across = np.abs(u) / W  # 1 at the face's sides
    across2 = across * across
    hair_mask = _soft(_ellipse_distance(u, v, 0.0, _HAIR_CY, W * _HAIR_RX, _hair_ry(fh)), edge)
    hair_mask *= _soft(v - c("hair_length"), 3 * edge)
    neck = _soft(across - 0.62, edge / W) * _soft(1.0 - v, edge)
    _paint(img, hair_mask * (1 - neck), hair)  # the neck is in front of the hair

    # the face: a squarish jaw below the eye line, an ellipse above
    k = c("jaw_square")
    down = np.clip(v, 0, None) / chin
    down2 = down * down
    up = np.clip(v, None, 0) / fh
    below = (1 - k) * (across2 + down2) + k * (across2 * across2 + down2 * down2)
    # level sets scaled to about one face-frame unit of distance at the outline
    level = np.where(v >= 0, (below - 1.0) / (2 + 2 * k), 0.5 * (across2 + up * up - 1.0))
    face_mask = _soft(level * W, edge)
    shade = 1.06 - 0.3 * (across2 + (0.5 * v - 0.175) ** 2)
    shade -= 0.1 * _bump(u, v, 0.0, chin, 0.9 * W, 0.35)  # under-chin shadow
    _paint(img, face_mask, skin * shade)
    fringe_line = -c("fringe") + 0.45 * across2
    # hair over the forehead, also over the face's anti-aliased outline beneath it
    _paint(img, np.maximum(face_mask, hair_mask) * _soft(v - fringe_line, 2 * edge), hair)


def _draw_eyes_and_brows(cv: _Canvas) -> None:
    """Eye sockets, brows, and eyes (sclera between the lids, iris, lash line)."""
    c, p, edge = cv.param, cv.p, cv.edge
    skin, hair, a = c("skin"), c("hair"), c("eye_width")
    for cx, brow in zip((-0.5, 0.5), _brow_points(p)):
        img, u, v = cv.region(cx - 0.55, -0.8, cx + 0.55, 0.3)
        img *= 1 - 0.28 * _bump(u, v, cx, -0.06, 0.5, 0.3)
        d = _polyline_distance(u, v, brow)
        _paint(img, 0.9 * _soft(d - 0.5 * c("brow_thickness"), edge), hair * 0.9 + 0.1 * skin)
        dx = u - cx
        up, low = _lids(p, dx)
        inside = _soft(np.maximum(up - v, v - low), 0.7 * edge) * _soft(np.abs(dx) - a, edge)
        _paint(img, inside, 0.78 * skin + 20)
        iris = _soft(np.hypot(dx, v) - 0.085, edge) * inside
        _paint(img, iris, 0.22 * skin)
        lash = _soft(np.abs(v - up) - 0.022, edge) * _soft(np.abs(dx) - a - 0.02, edge)
        _paint(img, 0.85 * lash, 0.2 * skin)


def _draw_forehead_lines(cv: _Canvas) -> None:
    c, edge = cv.param, cv.edge
    img, u, v = cv.region(-0.7, -1.1, 0.7, -0.45)
    for y0 in (-0.62, -0.78):
        line_y = y0 - c("x_brow_raise") + 0.08 * (u / 0.6) ** 2
        mask = _soft(np.abs(v - line_y) - 0.012, edge) * _soft(np.abs(u) - 0.55, 3 * edge)
        img *= 1 - 0.22 * c("x_forehead_lines") * mask


def _draw_nose(cv: _Canvas) -> None:
    """Side shadows, nostrils, a lit tip, the shadow beneath, and wrinkles (disgust)."""
    c, edge = cv.param, cv.edge
    skin, nl, nw = c("skin"), c("nose_length"), c("nose_width")
    img, u, v = cv.region(-0.42, -0.05, 0.42, 1.1)
    for s in (-1.0, 1.0):
        d = _segment_distance(u, v, s * 0.1, 0.12, s * 0.75 * nw, nl - 0.02)
        img *= 1 - 0.1 * _soft(d - 0.03, 3 * edge)
        nostril = _soft(_ellipse_distance(u, v, s * 0.5 * nw, nl + 0.15, 0.075, 0.035), edge)
        _paint(img, 0.8 * nostril, 0.3 * skin)
    img *= 1 + 0.1 * _bump(u, v, 0.0, nl - 0.04, 0.2, 0.17)
    img *= 1 - 0.12 * _bump(u, v, 0.0, nl + 0.25, 0.35, 0.08)
    for y0 in (0.08, 0.16, 0.24):
        d = np.abs(v - y0 - 0.15 * u ** 2)
        img *= 1 - 0.3 * c("x_nose_wrinkle") * _soft(d - 0.01, edge) * _soft(np.abs(u) - 0.13, edge)


def _draw_mouth(cv: _Canvas) -> None:
    """Nose-to-mouth folds, lips, the line between them, the opening and teeth."""
    c, p, edge = cv.param, cv.p, cv.edge
    skin, nl, nw = c("skin"), c("nose_length"), c("nose_width")
    mw, curves = _mouth(p)
    img, u, v = cv.region(-0.85, 0.6, 0.85, 1.8)
    mwc = mw[:, None, None]
    for s in (-1.0, 1.0):
        depth = c("x_fold_depth") * (1 + 0.5 * s * c("x_side") * (c("x_smirk") > 0.05))
        d = _segment_distance(u, v, s * (nw + 0.08), nl + 0.05,
                              s * (mwc + 0.1), c("mouth_y") - c("x_mouth_curve") + 0.1)
        img *= 1 - 0.2 * depth * _soft(d - 0.018, 2 * edge)
    centre, inner_up, inner_low, outer_up, outer_low = curves(u)
    within = _soft(np.abs(u) - mwc, edge)
    lips = _soft(np.maximum(outer_up - v, v - outer_low), edge) * within
    _paint(img, lips, 0.62 * skin)
    line = _soft(np.abs(v - centre) - 0.012, edge) * within
    _paint(img, line, 0.3 * skin)
    opening = _soft(np.maximum(inner_up - v, v - inner_low), edge) * within
    _paint(img, opening, 0.12 * skin)
    teeth = opening * _soft(v - (inner_up + 0.55 * (inner_low - inner_up)), edge) * c("x_teeth")
    _paint(img, teeth, 0.85 * skin + 25)


def _draw_glasses(cv: _Canvas) -> None:
    """Frames around both eyes, a bridge and the arms to the ears; the lenses darken."""
    c, edge = cv.param, cv.edge
    dark = c("o_glasses")
    worn = (dark > 0).astype(np.float32)
    img, u, v = cv.region(-1.2, -0.3, 1.2, 0.25)
    for cx in (-0.5, 0.5):
        ring = _ellipse_distance(u, v, cx, -0.02, 0.29, 0.2)
        img *= 1 - 0.85 * dark * _soft(ring, edge)
        _paint(img, worn * _soft(np.abs(ring) - 0.025, edge), 25.0)
    bridge = _segment_distance(u, v, -0.21, -0.07, 0.21, -0.07)
    arms = np.minimum(_segment_distance(u, v, -0.79, -0.05, -1.15, -0.02),
                      _segment_distance(u, v, 0.79, -0.05, 1.15, -0.02))
    _paint(img, worn * _soft(np.minimum(bridge, arms) - 0.022, edge), 25.0)


def _draw_hand(cv: _Canvas) -> None:
    """A palm and four fingers in front of the face, outlined by their shadow."""
    c, p, edge = cv.param, cv.p, cv.edge
    hx, hy = p.o_hand_x, p.o_hand_y
    img, u, v = cv.region(hx - 1.3, hy - 1.3, hx + 1.3, hy + 1.3)
    angle = np.deg2rad(c("o_hand_angle"))
    # coordinates along (s) and across (t) the fingers, from the palm's centre
    du, dv = u - c("o_hand_x"), v - c("o_hand_y")
    s, t = np.sin(angle) * du - np.cos(angle) * dv, np.cos(angle) * du + np.sin(angle) * dv
    shape = _ellipse_distance(t, s, 0.0, 0.0, 0.4, 0.46)
    for offset, length in ((-0.27, 0.78), (-0.09, 0.92), (0.09, 0.88), (0.27, 0.7)):
        finger = _segment_distance(t, s, offset, 0.2, offset * 1.1, 0.2 + length) - 0.085
        shape = np.minimum(shape, finger)
    held = c("o_hand")
    _paint(img, held * _soft(shape - 0.03, edge), 0.55 * c("skin"))
    _paint(img, held * _soft(shape, edge), c("skin") * (1.0 - 0.08 * np.clip(s, -1, 1)))


def _draw_strand(cv: _Canvas) -> None:
    """A band of hair falling from the hairline across the face, fading out at its end."""
    c, p, edge = cv.param, cv.p, cv.edge
    img, u, v = cv.region(p.o_strand_x - 1.2, -1.6, p.o_strand_x + 1.2, 1.0)
    slope = c("o_strand_slope")
    across = np.abs(u - c("o_strand_x") - slope * v) / np.sqrt(1 + slope * slope)
    band = _soft(across - 0.5 * c("o_strand"), 2 * edge) * np.clip((0.9 - v) / 0.5, 0, 1)
    _paint(img, (c("o_strand") > 0) * band, c("hair"))


#: Occluders, drawn in front of the face when any face of the batch has one.
_OCCLUDERS = (("o_glasses", _draw_glasses), ("o_hand", _draw_hand), ("o_strand", _draw_strand))


def _light(canvas: _Canvas) -> None:
    """Side light (a gradient of grey levels across the image) and the exposure curve, in place."""
    img, poses = canvas.img, canvas.poses
    strength = np.array([p.light for p in poses], np.float32)
    gamma = np.array([p.gamma for p in poses], np.float32)
    if strength.any():
        _, _, scale, cx, cy = canvas._rot
        direction = np.deg2rad(np.array([p.light_deg for p in poses], np.float32))[:, None, None]
        xs = np.arange(canvas.width, dtype=np.float32)[None, None, :] - cx
        ys = np.arange(canvas.height, dtype=np.float32)[None, :, None] - cy
        along = (np.cos(direction) * xs + np.sin(direction) * ys) / scale  # IOD units
        img *= 1 - strength[:, None, None] * np.tanh(along / 1.2)
    if (gamma != 1).any():
        np.clip(img, 0, 255, out=img)
        img[:] = 255 * (img / 255) ** gamma[:, None, None]


def _finish(canvas: _Canvas, rng: np.random.Generator) -> np.ndarray:
    """Camera effects: side light and exposure, blur (where anything was drawn), contrast and
    brightness, noise, 8-bit quantisation."""
    _light(canvas)
    img, poses = canvas.img, canvas.poses
    sig = np.array([p.blur for p in poses])
    if canvas.touched is not None:
        margin = int(np.ceil(4 * sig.max())) + 1
        x0, y0, x1, y1 = canvas.touched
        window = (slice(max(y0 - margin, 0), y1 + margin), slice(max(x0 - margin, 0), x1 + margin))
        for s in np.unique(sig):
            idx = np.flatnonzero(sig == s)
            img[(idx, *window)] = gaussian_filter(img[(idx, *window)], sigma=(0, s, s), mode="nearest")
    contrast = np.array([p.contrast for p in poses], np.float32)[:, None, None]
    bright = np.array([p.brightness for p in poses], np.float32)[:, None, None]
    noise = np.array([p.noise for p in poses], np.float32)[:, None, None]
    img *= contrast
    img += 128.0 * (1 - contrast) + bright
    grain = rng.standard_normal(img.shape, dtype=np.float32)
    grain *= noise
    img += grain
    return np.clip(np.rint(img, out=img), 0, 255, out=img).astype(np.uint8)


def render_faces(
    subjects: list[Subject], expressions: list[Expression], poses: list[Pose],
    size: tuple[int, int], rng: np.random.Generator, occlusions: list[Occlusion] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw N faces into (N, H, W) uint8 images of ``size`` (W, H); landmarks (N, 68, 2) in pixels.

    ``occlusions`` (default: none) puts glasses, hands or hair in front of faces; the
    landmarks stay the face's own points, covered or not. When every face is the same
    person in the same pose (a CK+ sequence), the parts no expression moves (neck, hair,
    face oval) are drawn once and shared.
    """
    width, height = size
    canvas = _Canvas(_Params(subjects, expressions, np.float32, occlusions), poses, width, height)
    fixed = (_draw_neck, _draw_head)
    if len(poses) > 1 and all(s == subjects[0] for s in subjects) and all(p == poses[0] for p in poses):
        base = _Canvas(_Params(subjects[:1], expressions[:1], np.float32), poses[:1], width, height)
        for draw in fixed:
            draw(base)
        canvas.img[:] = base.img
        canvas.touched = base.touched
    else:
        for draw in fixed:
            draw(canvas)
    for draw in (_draw_eyes_and_brows, _draw_forehead_lines, _draw_nose, _draw_mouth):
        draw(canvas)
    for field_name, draw in _OCCLUDERS:
        if getattr(canvas.p, field_name).any():
            draw(canvas)
    points = to_image(_landmarks(_Params(subjects, expressions)), poses)
    return _finish(canvas, rng), points


def draw_face(
    expression: str | Expression, rng: np.random.Generator, *,
    size: tuple[int, int] = (48, 48), center: tuple[float, float] | None = None,
    scale: float | None = None, angle_deg: float = 0.0, brightness: float = 0.0,
    subject: Subject | None = None, intensity: float = 1.0, noise: float = 2.0,
) -> tuple[np.ndarray, FaceTruth]:
    """One face showing ``expression`` in an (H, W) uint8 image, and where its parts are.

    ``scale`` is the inter-ocular distance in pixels (default: a face filling the frame
    the way FER2013 crops do); ``center`` the face centre (default: the frame centre);
    ``subject`` the person (default: a random one from ``rng``); ``intensity`` scales the
    expression from neutral (0) to its peak (1).
    """
    width, height = size
    if isinstance(expression, str):
        if expression not in PEAKS:
            raise ValueError(f"unknown expression {expression!r}; known: {list(PEAKS)}")
        expression = PEAKS[expression]
    subject = subject or Subject.random(rng)
    pose = Pose(center=center or (width / 2, height / 2),
                scale=scale or 0.37 * min(width, height), angle_deg=angle_deg,
                brightness=brightness, noise=noise)
    images, points = render_faces([subject], [expression.scaled(intensity)], [pose], size, rng)
    return images[0], FaceTruth.from_landmarks(points[0])
