"""Image geometries: the project's letterbox, and the authors' stretch and resize + centre crop.

Under ``protocol: vislaw`` (the default) every family feeds its model a square of ``size``
pixels made by padding the image to a square (centred, padded with the normalisation mean so
padding is zero after normalising, as LLaVA's ``pad`` option does) and resizing. Keypoints use
the same :class:`Letterbox` transform, so the features and the coordinates that index them never
disagree (upstream stretched the image but letterboxed the keypoints).

``protocol: paper`` reproduces what the authors' code fed each family (docs/encoders.md):
``stretch`` (SigLIP, the diffusion towers, and every family for their C score) and ``crop``
(CLIP and DINOv2 through their stock processors: shortest edge to ``resize_to``, centre crop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class Letterbox:
    """Maps original pixel coordinates (x, y) to the square input and back.

    Coordinates are continuous pixels with the origin at the image's top-left corner. ``width``
    and ``height`` may be arrays (e.g. shaped (P, 1) for P images) that broadcast against
    ``xy[..., 0]``, so one object maps the keypoints of many images at once.
    """

    width: int
    height: int
    size: int

    @property
    def scale(self) -> float:
        return self.size / np.maximum(self.width, self.height)

    @property
    def offset(self) -> tuple[float, float]:
        """Padding (x, y) in input pixels on the left/top."""
        side = np.maximum(self.width, self.height)
        # Integer padding, exactly as :func:`letterbox` pastes the image.
        return ((side - self.width) // 2 * self.scale, (side - self.height) // 2 * self.scale)

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        ox, oy = self.offset
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([xy[..., 0] * self.scale + ox, xy[..., 1] * self.scale + oy], axis=-1)

    def to_original(self, xy: np.ndarray) -> np.ndarray:
        ox, oy = self.offset
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([(xy[..., 0] - ox) / self.scale, (xy[..., 1] - oy) / self.scale], axis=-1)

    # ---- the feature grid: (rows, cols) cells tiling the whole input square ----------------------
    def to_grid(self, xy: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
        """Continuous grid coordinates (col, row) of original pixels; cell centres are integers."""
        rows, cols = grid
        xin = self.to_input(xy)
        return np.stack(
            [xin[..., 0] * cols / self.size - 0.5, xin[..., 1] * rows / self.size - 0.5], axis=-1
        )

    def from_grid(self, cr: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
        """Original pixels of continuous grid coordinates (col, row): inverse of :meth:`to_grid`."""
        rows, cols = grid
        cr = np.asarray(cr, dtype=np.float64)
        xin = np.stack(
            [(cr[..., 0] + 0.5) * self.size / cols, (cr[..., 1] + 0.5) * self.size / rows], axis=-1
        )
        return self.to_original(xin)

    def to_cell(self, xy: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
        """Row-major token index (row * cols + col) of the cell holding each point, clipped to
        the grid (a point on the far border belongs to the last cell)."""
        rows, cols = grid
        cr = np.floor(self.to_grid(xy, grid) + 0.5).astype(np.int64)
        col = np.clip(cr[..., 0], 0, cols - 1)
        row = np.clip(cr[..., 1], 0, rows - 1)
        return row * cols + col


GEOMETRIES: tuple[str, ...] = ("letterbox", "stretch", "crop")


def letterbox(
    image: Image.Image, size: int, fill: Sequence[float], truncate_fill: bool = False
) -> Image.Image:
    """Pad to a centred square with ``fill`` (0..1 RGB), then resize to ``size`` (bicubic).

    The fill colour is rounded to 0..255; ``truncate_fill`` truncates it as LLaVA's
    ``expand2square(image, tuple(int(x * 255) for x in mean))`` does (one grey level lower)."""
    image = image.convert("RGB")
    width, height = image.size
    side = max(width, height)
    colour = tuple(int(c * 255) if truncate_fill else int(round(c * 255)) for c in fill)
    canvas = Image.new("RGB", (side, side), colour)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas.resize((size, size), Image.Resampling.BICUBIC)


def stretch(image: Image.Image, size: int) -> Image.Image:
    """Resize to ``size`` x ``size`` ignoring the aspect ratio (bicubic), as the authors' LLaVA
    training (``image_aspect_ratio: square`` with a square-resizing processor) and their C-score
    script (``img.resize((s, s))``) did."""
    return image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)


def resize_crop(image: Image.Image, size: int, resize_to: int) -> Image.Image:
    """Shortest edge to ``resize_to`` (bicubic, the long edge truncated to an integer), then a
    centred ``size`` crop: the stock CLIP (``resize_to == size``) and DINOv2 (256 -> 224)
    processors' geometry."""
    image = image.convert("RGB")
    width, height = image.size
    if width <= height:
        new = (resize_to, int(resize_to * height / width))
    else:
        new = (int(resize_to * width / height), resize_to)
    image = image.resize(new, Image.Resampling.BICUBIC)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def square_image(
    image: Image.Image,
    size: int,
    geometry: str,
    fill: Sequence[float],
    *,
    resize_to: int | None = None,
    truncate_fill: bool = False,
) -> Image.Image:
    """The ``size`` x ``size`` RGB image of one geometry (see :data:`GEOMETRIES`)."""
    if geometry == "letterbox":
        return letterbox(image, size, fill, truncate_fill)
    if geometry == "stretch":
        return stretch(image, size)
    if geometry == "crop":
        return resize_crop(image, size, resize_to or size)
    raise ValueError(f"unknown geometry {geometry!r}; known: {GEOMETRIES}")


def images_to_tensor(
    images: Sequence[Image.Image],
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    geometry: str = "letterbox",
    resize_to: int | None = None,
    truncate_fill: bool = False,
) -> torch.Tensor:
    """Square each image (``geometry``, letterbox by default), scale to [0, 1], normalise with
    ``mean``/``std``: (B, 3, size, size)."""
    arrays = [
        np.asarray(
            square_image(
                im, size, geometry, mean, resize_to=resize_to, truncate_fill=truncate_fill
            ),
            dtype=np.float32,
        )
        / 255.0
        for im in images
    ]
    # Contiguous NCHW, as a processor's tensors are: channels-last strides send convolutions
    # (the VAEs') down another CPU kernel, 1e-5 relative away from the authors' features.
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (batch - mean_t) / std_t
