"""Image files of a dataset: where an item's relative path may point, and reading it as RGB.

Both are used by the readers (vislaw.data.llava, vislaw.features) and by the ``check_data`` rule
(vislaw.data.check), so a dataset the check passes is one the readers accept.

- A relative image path may not leave its image folder (an absolute path, a ``..`` part, or a
  symlink resolving outside it): a JSON from elsewhere must not make a job read arbitrary files.
- 16-bit greyscale images (PNG ``I;16``, TIFF ``I``) are scaled to 8 bit (value / 257, rounded),
  not clipped: Pillow's plain ``convert("RGB")`` maps every value above 255 to white.
- Other modes go through ``convert("RGB")`` as LLaVA does (alpha is dropped, palettes expanded).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class DataError(ValueError):
    """A bad data item; the message names the file and the item."""


def image_path(folder: str | Path, relative: str, *, source: str | Path, item: str) -> Path:
    """``folder / relative``, refusing a path that escapes ``folder``.

    ``source`` (the JSON naming the image) and ``item`` (its id) go into the message.
    """
    rel = PurePosixPath(str(relative).replace("\\", "/"))
    if not str(relative) or rel.is_absolute() or ".." in rel.parts:
        raise DataError(
            f"{source}: item {item}: image path {relative!r} escapes its folder {folder} "
            "(absolute or '..')"
        )
    folder = Path(folder)
    path = folder / rel
    if path.is_symlink() or any(p.is_symlink() for p in path.parents if folder in p.parents):
        inside = folder.resolve()
        if inside != path.resolve() and inside not in path.resolve().parents:
            raise DataError(
                f"{source}: item {item}: image path {relative!r} is a link out of {folder}"
            )
    return path


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of an open image; 16-bit greyscale is scaled to 8 bit instead of clipped."""
    from PIL import Image

    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"mode {image.mode} values outside 0..65535: not a 16-bit image")
        grey = np.rint(values / 257.0).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    return image.convert("RGB")


def read_rgb(path: str | Path, item: str | None = None) -> Image.Image:
    """Open an image file as RGB (see :func:`to_rgb`); a missing or unreadable file raises an
    error naming it (and the item, when given)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    who = f"item {item}: " if item is not None else ""
    if not path.is_file():
        raise FileNotFoundError(f"{who}image not found: {path}")
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise OSError(f"{who}cannot read image {path}: {err}") from err
