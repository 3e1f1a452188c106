"""Rigid keypoint "objects" for the synthetic SPair-71k set: coloured parts with named keypoints.

Each category is one template: polygons in a canonical frame (x right, y down, the object's
half-extent normalised to 1), drawn back to front, and keypoints that each lie inside one part.
Keypoint ids reuse SPair-71k's slot numbers for the same kind of point wherever we know them
(e.g. aeroplane 8/9 are the wing ends, 8 the right one), so that tables of SPair's left/right
partners (the geo-aware C score) hold for the synthetic data too. Names of the points are ours.

A template is rendered under a similarity transform without rotation: ``scale`` (pixels per
template unit), ``center`` and an optional horizontal ``mirror``. A mirrored picture of a
left/right symmetric object is the same object seen from the mirrored viewpoint, so in a mirrored
image each keypoint carries its partner's id (what is drawn as the right wing is then the left
wing). Partner parts share one colour, which keeps that reading true of the pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

Point = tuple[float, float]
RGB = tuple[int, int, int]

SPAIR_KPS_SLOTS = 30
"""Every SPair-71k ImageAnnotation holds keypoint slots "0".."29" (null when absent)."""


@dataclass(frozen=True)
class Part:
    name: str
    color: RGB
    polygon: tuple[Point, ...]


@dataclass(frozen=True)
class Keypoint:
    id: int
    name: str
    part: str
    xy: Point


@dataclass(frozen=True)
class ObjectTemplate:
    """One category's object. ``symmetric_pairs`` lists (right, left) partner ids; a pair may
    name an id that is never drawn in the canonical view (the bird's far eye), which a mirrored
    image then carries."""

    category: str
    parts: tuple[Part, ...]
    keypoints: tuple[Keypoint, ...]
    symmetric_pairs: tuple[tuple[int, int], ...]
    pose: str
    azimuth_id: int
    _partners: dict[int, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        partners: dict[int, int] = {}
        for a, b in self.symmetric_pairs:
            partners[a], partners[b] = b, a
        object.__setattr__(self, "_partners", partners)

    def partner(self, kp_id: int) -> int:
        """The left/right partner of a keypoint id (itself when it lies on the symmetry plane)."""
        return self._partners.get(kp_id, kp_id)

    @property
    def symmetric_groups(self) -> tuple[tuple[int, ...], ...]:
        """The partner pairs as groups (the C score's geo-aware subset reads this name)."""
        return tuple(tuple(pair) for pair in self.symmetric_pairs)

    def part_index(self, name: str) -> int:
        return next(i for i, p in enumerate(self.parts) if p.name == name)

    def part_color(self, kp: Keypoint) -> RGB:
        return self.parts[self.part_index(kp.part)].color

    @property
    def keypoint_ids(self) -> list[int]:
        """Every id an image of this category can carry (drawn ids and their partners)."""
        return sorted({k.id for k in self.keypoints} | {self.partner(k.id) for k in self.keypoints})

    def posed(self, mirror: bool) -> tuple[str, int]:
        """PASCAL-style pose and 8-bin azimuth of the canonical view, or of its mirror image."""
        if not mirror:
            return self.pose, self.azimuth_id
        pose = {"Left": "Right", "Right": "Left"}.get(self.pose, self.pose)
        return pose, (8 - self.azimuth_id) % 8


# ---- polygon helpers (canonical frame) -------------------------------------------------------


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 32) -> tuple[Point, ...]:
    return tuple(
        (cx + rx * math.cos(2 * math.pi * i / n), cy + ry * math.sin(2 * math.pi * i / n))
        for i in range(n)
    )


def rect(x0: float, y0: float, x1: float, y1: float) -> tuple[Point, ...]:
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def bar(p: Point, q: Point, width: float) -> tuple[Point, ...]:
    """A straight bar of ``width`` from p to q (frame tubes, cranks)."""
    dx, dy = q[0] - p[0], q[1] - p[1]
    length = math.hypot(dx, dy)
    nx, ny = -dy / length * width / 2, dx / length * width / 2
    return (
        (p[0] + nx, p[1] + ny),
        (q[0] + nx, q[1] + ny),
        (q[0] - nx, q[1] - ny),
        (p[0] - nx, p[1] - ny),
    )


def mirror_x(points: Iterable[Point]) -> tuple[Point, ...]:
    return tuple((-x, y) for x, y in points)


def shift(points: Iterable[Point], dx: float, dy: float) -> tuple[Point, ...]:
    return tuple((x + dx, y + dy) for x, y in points)


def _build(
    category: str,
    parts: Sequence[tuple[str, RGB, Sequence[Point]]],
    keypoints: Sequence[tuple[int, str, str, Point]],
    symmetric_pairs: Sequence[tuple[int, int]],
    *,
    pose: str,
    azimuth_id: int,
    rotate_deg: float = 0.0,
) -> ObjectTemplate:
    """Rotate the design by the view angle, then centre its box at 0 with half-extent 1.

    The fixed rotation makes the canonical view not mirror-symmetric, so mirrored and unmirrored
    images of a symmetric object differ (a viewpoint change, as in real pairs)."""
    c, s = math.cos(math.radians(rotate_deg)), math.sin(math.radians(rotate_deg))

    def rot(pt: Point) -> Point:
        return (c * pt[0] - s * pt[1], s * pt[0] + c * pt[1])

    rotated = [(n, col, [rot(p) for p in poly]) for n, col, poly in parts]
    xs = [p[0] for _, _, poly in rotated for p in poly]
    ys = [p[1] for _, _, poly in rotated for p in poly]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    half = max(max(xs) - min(xs), max(ys) - min(ys)) / 2

    def norm_rotated(pt: Point) -> Point:
        return (round((pt[0] - cx) / half, 6), round((pt[1] - cy) / half, 6))

    return ObjectTemplate(
        category=category,
        parts=tuple(Part(n, col, tuple(norm_rotated(p) for p in poly)) for n, col, poly in rotated),
        keypoints=tuple(
            Keypoint(i, name, part, norm_rotated(rot(xy))) for i, name, part, xy in keypoints
        ),
        symmetric_pairs=tuple(symmetric_pairs),
        pose=pose,
        azimuth_id=azimuth_id,
    )


# ---- the categories ------------------------------------------------------------------------------


def _aeroplane() -> ObjectTemplate:
    """Seen from above, nose up, turned by the view angle. Even ids are the right-hand side."""
    blue, red, dark, light, yellow = (
        (60, 100, 200),
        (200, 50, 50),
        (50, 50, 60),
        (225, 225, 230),
        (
            240,
            200,
            40,
        ),
    )
    wing = ((0.10, -0.15), (0.95, 0.12), (0.95, 0.32), (0.10, 0.22))
    tail = ((0.06, 0.66), (0.42, 0.78), (0.42, 0.94), (0.06, 0.92))
    engine = ellipse(0.45, 0.05, 0.09, 0.17)
    parts = [
        ("right_wing", blue, wing),
        ("left_wing", blue, mirror_x(wing)),
        ("right_tailplane", red, tail),
        ("left_tailplane", red, mirror_x(tail)),
        ("right_engine", dark, engine),
        ("left_engine", dark, mirror_x(engine)),
        ("fuselage", light, ellipse(0.0, 0.15, 0.13, 0.85)),
        ("nose_cone", yellow, ellipse(0.0, -0.60, 0.08, 0.14)),
    ]
    keypoints = [
        (0, "nose", "nose_cone", (0.0, -0.64)),
        (6, "right_engine_front", "right_engine", (0.45, -0.05)),
        (7, "left_engine_front", "left_engine", (-0.45, -0.05)),
        (8, "right_wing_end", "right_wing", (0.86, 0.21)),
        (9, "left_wing_end", "left_wing", (-0.86, 0.21)),
        (12, "right_wing_root_front", "right_wing", (0.20, -0.05)),
        (13, "left_wing_root_front", "left_wing", (-0.20, -0.05)),
        (16, "right_tailplane_end", "right_tailplane", (0.36, 0.85)),
        (17, "left_tailplane_end", "left_tailplane", (-0.36, 0.85)),
    ]
    pairs = [(6, 7), (8, 9), (12, 13), (16, 17)]
    return _build(
        "aeroplane", parts, keypoints, pairs, pose="Unspecified", azimuth_id=0, rotate_deg=25
    )


def _bicycle() -> ObjectTemplate:
    """Side view, front wheel on the right, so its right side (even ids 2, 9) is the near one."""
    tyre, spokes, hub, frame, seat, grip, pedal = (
        (35, 35, 35),
        (185, 185, 195),
        (110, 110, 125),
        (200, 40, 40),
        (45, 45, 45),
        (60, 160, 80),
        (240, 170, 30),
    )
    back, front, bb, seat_top, head = (
        (-0.62, 0.35),
        (0.62, 0.35),
        (0.0, 0.32),
        (-0.15, -0.28),
        (
            0.45,
            -0.25,
        ),
    )
    stem_top = (0.42, -0.45)
    far_pedal, near_pedal = (-0.16, 0.13), (0.16, 0.51)
    parts = [
        ("far_crank", frame, bar(bb, far_pedal, 0.05)),
        (
            "far_pedal",
            pedal,
            rect(
                far_pedal[0] - 0.08, far_pedal[1] - 0.04, far_pedal[0] + 0.08, far_pedal[1] + 0.04
            ),
        ),
        ("far_grip", grip, rect(0.44, -0.55, 0.60, -0.46)),
        ("back_tyre", tyre, ellipse(*back, 0.36, 0.36)),
        ("back_spokes", spokes, ellipse(*back, 0.29, 0.29)),
        ("front_tyre", tyre, ellipse(*front, 0.36, 0.36)),
        ("front_spokes", spokes, ellipse(*front, 0.29, 0.29)),
        ("seat_tube", frame, bar(bb, seat_top, 0.06)),
        ("down_tube", frame, bar(bb, head, 0.06)),
        ("top_tube", frame, bar(seat_top, head, 0.06)),
        ("seat_stay", frame, bar(seat_top, back, 0.05)),
        ("chain_stay", frame, bar(bb, back, 0.05)),
        ("fork", frame, bar(head, front, 0.05)),
        ("stem", frame, bar(head, stem_top, 0.05)),
        ("seat", seat, rect(-0.30, -0.36, -0.04, -0.28)),
        ("back_hub", hub, ellipse(*back, 0.08, 0.08)),
        ("front_hub", hub, ellipse(*front, 0.08, 0.08)),
        ("near_grip", grip, rect(0.22, -0.50, 0.40, -0.41)),
        ("near_crank", frame, bar(bb, near_pedal, 0.05)),
        (
            "near_pedal",
            pedal,
            rect(
                near_pedal[0] - 0.08,
                near_pedal[1] - 0.04,
                near_pedal[0] + 0.08,
                near_pedal[1] + 0.04,
            ),
        ),
    ]
    keypoints = [
        (0, "front_wheel", "front_hub", front),
        (1, "back_wheel", "back_hub", back),
        (2, "right_handle", "near_grip", (0.29, -0.455)),
        (3, "left_handle", "far_grip", (0.54, -0.505)),
        (9, "right_pedal", "near_pedal", near_pedal),
        (10, "left_pedal", "far_pedal", (far_pedal[0] - 0.02, far_pedal[1])),
    ]
    return _build("bicycle", parts, keypoints, [(2, 3), (9, 10)], pose="Right", azimuth_id=2)


def _bird() -> ObjectTemplate:
    """Side view facing left, so its left side is the near one: the near eye is 8, the far
    eye (7) is hidden and only appears, relabelled, in mirrored images."""
    brown, wing_brown, head_brown, beak, eye, leg, tail = (
        (150, 95, 50),
        (95, 60, 35),
        (170, 110, 60),
        (245, 150, 30),
        (15, 15, 15),
        (230, 120, 60),
        (80, 55, 40),
    )
    wing = ((-0.20, -0.08), (0.30, -0.12), (0.82, 0.10), (0.70, 0.24), (0.25, 0.22), (-0.15, 0.14))
    parts = [
        ("tail", tail, ((0.45, -0.02), (0.98, 0.10), (0.98, 0.26), (0.45, 0.22))),
        ("far_leg", leg, bar((0.22, 0.28), (0.30, 0.75), 0.06)),
        ("far_foot", leg, rect(0.18, 0.72, 0.40, 0.80)),
        ("far_wing", wing_brown, shift(wing, 0.08, -0.16)),
        ("body", brown, ellipse(0.12, 0.08, 0.48, 0.30)),
        ("near_wing", wing_brown, wing),
        ("head", head_brown, ellipse(-0.42, -0.30, 0.22, 0.20)),
        ("beak", beak, ((-0.60, -0.38), (-0.98, -0.28), (-0.60, -0.20))),
        ("near_eye", eye, ellipse(-0.46, -0.34, 0.05, 0.05)),
        ("near_leg", leg, bar((0.0, 0.30), (-0.06, 0.78), 0.06)),
        ("near_foot", leg, rect(-0.20, 0.75, 0.04, 0.83)),
    ]
    keypoints = [
        (0, "beak_tip", "beak", (-0.82, -0.29)),
        (1, "right_wing_end", "far_wing", (0.82, -0.02)),
        (2, "left_wing_end", "near_wing", (0.70, 0.15)),
        (8, "left_eye", "near_eye", (-0.46, -0.34)),
        (10, "right_foot", "far_foot", (0.33, 0.76)),
        (11, "left_foot", "near_foot", (-0.12, 0.79)),
        (16, "tail_end", "tail", (0.92, 0.18)),
    ]
    pairs = [(1, 2), (7, 8), (10, 11)]
    return _build("bird", parts, keypoints, pairs, pose="Left", azimuth_id=6)


def _bottle() -> ObjectTemplate:
    """Frontal and tilted by the view angle; 0, 2, 4, 6, 8 are one side, their partners the
    other."""
    glass, cap, label, base = (40, 140, 80), (200, 50, 50), (235, 225, 190), (25, 90, 50)
    parts = [
        ("shoulder", glass, ((-0.35, -0.10), (-0.12, -0.42), (0.12, -0.42), (0.35, -0.10))),
        ("neck", glass, rect(-0.12, -0.76, 0.12, -0.40)),
        ("cap", cap, rect(-0.15, -0.93, 0.15, -0.74)),
        ("body", glass, rect(-0.35, -0.11, 0.35, 0.86)),
        ("label", label, rect(-0.35, 0.14, 0.35, 0.52)),
        ("base", base, rect(-0.35, 0.84, 0.35, 1.0)),
    ]
    keypoints = [
        (0, "cap_left", "cap", (-0.10, -0.84)),
        (1, "cap_right", "cap", (0.10, -0.84)),
        (2, "neck_left", "neck", (-0.07, -0.58)),
        (3, "neck_right", "neck", (0.07, -0.58)),
        (4, "shoulder_left", "shoulder", (-0.26, -0.15)),
        (5, "shoulder_right", "shoulder", (0.26, -0.15)),
        (6, "body_left", "body", (-0.29, 0.70)),
        (7, "body_right", "body", (0.29, 0.70)),
        (8, "base_left", "base", (-0.29, 0.93)),
        (9, "base_right", "base", (0.29, 0.93)),
    ]
    pairs = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    return _build("bottle", parts, keypoints, pairs, pose="Frontal", azimuth_id=0, rotate_deg=-15)


SPAIR_TEMPLATES: dict[str, ObjectTemplate] = {
    t.category: t for t in (_aeroplane(), _bicycle(), _bird(), _bottle())
}
"""Category -> template. Tests and docs read keypoint ids, part colours and partners here."""
