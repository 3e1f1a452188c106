"""Render one keypoint object (vislaw.data.object_templates) into a picture, with its SPair annotation.

Visibility is decided by the pixels, not by geometry alone: every part is also drawn into a label
map, and a keypoint counts as visible only when its rounded pixel lies in the image and still
shows its own part (not a part drawn over it, nor the occluder). So an annotated keypoint is
always a pixel of the part it names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from vislaw.data.object_templates import SPAIR_KPS_SLOTS, ObjectTemplate

OCCLUDER_LABEL = 255
MIN_VISIBLE_KEYPOINTS = 3
MAX_ATTEMPTS = 50


@dataclass(frozen=True)
class Placement:
    """Template -> pixel map: ``x' = cx + scale * (-x if mirror else x)``, ``y' = cy + scale*y``."""

    scale: float
    center: tuple[float, float]
    mirror: bool

    def apply(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        sign = -1.0 if self.mirror else 1.0
        return np.stack(
            [
                self.center[0] + self.scale * sign * xy[..., 0],
                self.center[1] + self.scale * xy[..., 1],
            ],
            axis=-1,
        )

    def to_json(self) -> dict:
        return {
            "scale": round(self.scale, 6),
            "center": [round(self.center[0], 6), round(self.center[1], 6)],
            "mirror": int(self.mirror),
        }


@dataclass
class RenderedObject:
    image: Image.Image
    kps: dict[str, list[int] | None]
    bndbox: list[int]
    truncated: int
    occluded: int
    placement: Placement

    @property
    def n_visible(self) -> int:
        return sum(v is not None for v in self.kps.values())


def textured_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Smooth random colour field plus pixel noise: a background with texture, not a flat fill
    that would make the object trivially separable."""
    coarse = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR))
    noisy = smooth.astype(np.float64) + rng.normal(0.0, 10.0, size=(height, width, 3))
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _extent(template: ObjectTemplate) -> tuple[float, float]:
    pts = np.array([p for part in template.parts for p in part.polygon])
    return float(np.abs(pts[:, 0]).max()), float(np.abs(pts[:, 1]).max())


def sample_placement(
    rng: np.random.Generator, template: ObjectTemplate, width: int, height: int
) -> Placement:
    """Random scale and position; one image in five pushes the object partly out of frame."""
    half_w, half_h = _extent(template)
    scale = rng.uniform(0.30, 0.46) * min(width, height)
    lo_x, hi_x = scale * half_w, width - 1 - scale * half_w
    lo_y, hi_y = scale * half_h, height - 1 - scale * half_h
    cx = rng.uniform(lo_x, hi_x) if hi_x > lo_x else width / 2
    cy = rng.uniform(lo_y, hi_y) if hi_y > lo_y else height / 2
    if rng.random() < 0.2:  # truncation: 10-30% of the object's width or height outside
        side = int(rng.integers(4))
        out = rng.uniform(0.10, 0.30)
        if side == 0:
            cx = scale * half_w * (1 - 2 * out)
        elif side == 1:
            cx = width - 1 - scale * half_w * (1 - 2 * out)
        elif side == 2:
            cy = scale * half_h * (1 - 2 * out)
        else:
            cy = height - 1 - scale * half_h * (1 - 2 * out)
    return Placement(float(scale), (float(cx), float(cy)), bool(rng.random() < 0.5))


def render_object(
    template: ObjectTemplate,
    placement: Placement,
    width: int,
    height: int,
    rng: np.random.Generator,
) -> RenderedObject:
    """Draw background, parts (back to front), maybe an occluder; read keypoints off the labels."""
    canvas = Image.fromarray(textured_background(rng, width, height))
    labels = Image.new("L", (width, height), 0)
    draw, draw_labels = ImageDraw.Draw(canvas), ImageDraw.Draw(labels)
    all_points = []
    for index, part in enumerate(template.parts):
        pts = placement.apply(np.array(part.polygon))
        all_points.append(pts)
        poly = [tuple(p) for p in pts.tolist()]
        draw.polygon(poly, fill=part.color)
        draw_labels.polygon(poly, fill=index + 1)
    object_mask = np.asarray(labels) > 0

    occluded = 0
    if rng.random() < 0.25:  # an occluder of random colour over part of the object
        kp_pixels = placement.apply(np.array([k.xy for k in template.keypoints]))
        anchor = kp_pixels[int(rng.integers(len(kp_pixels)))]
        w, h = (rng.uniform(0.25, 0.45, size=2) * 2 * placement.scale).tolist()
        x0, y0 = anchor[0] - w * rng.uniform(0.2, 0.8), anchor[1] - h * rng.uniform(0.2, 0.8)
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=color)
        draw_labels.rectangle([x0, y0, x0 + w, y0 + h], fill=OCCLUDER_LABEL)
        label_array = np.asarray(labels)
        occluded = int(bool(np.any(object_mask & (label_array == OCCLUDER_LABEL))))
    label_array = np.asarray(labels)

    pixels = np.asarray(canvas).astype(np.float64) + rng.normal(0.0, 3.0, size=(height, width, 3))
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))

    kps: dict[str, list[int] | None] = {str(i): None for i in range(SPAIR_KPS_SLOTS)}
    for kp in template.keypoints:
        x, y = placement.apply(np.array(kp.xy)).tolist()
        px, py = math.floor(x + 0.5), math.floor(y + 0.5)
        inside = 0 <= px < width and 0 <= py < height
        if inside and label_array[py, px] == template.part_index(kp.part) + 1:
            kp_id = template.partner(kp.id) if placement.mirror else kp.id
            kps[str(kp_id)] = [px, py]

    pts = np.concatenate(all_points)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    truncated = int(bool(lo[0] < 0 or lo[1] < 0 or hi[0] > width - 1 or hi[1] > height - 1))
    bndbox = [
        max(0, math.floor(lo[0])),
        max(0, math.floor(lo[1])),
        min(width - 1, math.ceil(hi[0])),
        min(height - 1, math.ceil(hi[1])),
    ]
    return RenderedObject(image, kps, bndbox, truncated, occluded, placement)


def generate_object_image(
    template: ObjectTemplate, rng: np.random.Generator, base_size: int
) -> RenderedObject:
    """A random-size picture of the object with at least three visible keypoints.

    Sizes vary (0.75-1.25 x ``base_size`` per side), so aspect ratios differ as in SPair."""
    width = max(32, round(base_size * rng.uniform(0.75, 1.25)))
    height = max(32, round(base_size * rng.uniform(0.75, 1.25)))
    for _ in range(MAX_ATTEMPTS):
        placement = sample_placement(rng, template, width, height)
        rendered = render_object(template, placement, width, height, rng)
        if rendered.n_visible >= MIN_VISIBLE_KEYPOINTS:
            return rendered
    raise RuntimeError(
        f"could not place a {template.category} with {MIN_VISIBLE_KEYPOINTS} visible keypoints "
        f"in {MAX_ATTEMPTS} tries at {width}x{height}; increase data.synthetic.image_size"
    )
