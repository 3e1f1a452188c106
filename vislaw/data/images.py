"""Image files of a dataset: where an item's relative path may point, and reading it as RGB.

Both are used by the readers (vislaw.data.llava, vislaw.features) and by the ``check_data`` rule
(vislaw.data.check), so a dataset the check passes is one the readers accept.

- A relative image path may not leave its image folder (an absolute path, a ``..`` part, or a
  symlink resolving outside it): a JSON from elsewhere must not make a job read arbitrary files.
- 16-bit greyscale images (PNG ``I;16``, TIFF ``I``) are scaled to 8 bit (value / 257, rounded),
  not clipped: Pillow's plain ``convert("RGB")`` maps every value above 255 to white.
- Other modes go through ``convert("RGB")`` as LLaVA does (alpha is dropped, palettes expanded).
- Every read decodes the whole file (:func:`decode_image`): a 0-byte file, a truncated or
  corrupt one, one over ``data.max_image_pixels`` (a decompression bomb: a few KB that decode
  to gigabytes) or one in a format outside IMAGE_FORMATS is an :class:`ImageError` naming the
  file, the item and the kind, never a crash mid-epoch. ``check_data`` reads each image the
  same way, so it reports what a reader would meet.
"""

from __future__ import annotations

import warnings
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP")
"""Pillow plugins a dataset image may be read with. Only these are tried: others (EPS, which
runs Ghostscript; PSD; ICNS ...) are no dataset's format, and a file that only they open is
refused as an unsupported format."""


class DataError(ValueError):
    """A bad data item; the message names the file and the item."""


class ImageError(DataError, OSError):
    """An image file that cannot be used; ``kind`` groups it in check_data's report. An
    OSError too, as Pillow's own errors for unreadable files are."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


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


def decode_image(
    path: str | Path, *, max_pixels: int | None = None, item: str | None = None
) -> Image.Image:
    """Decode the whole image file at ``path`` and return it as RGB (see :func:`to_rgb`).

    Refused with an :class:`ImageError` naming the file (and ``item``): a 0-byte file, a format
    outside IMAGE_FORMATS, more than ``max_pixels`` pixels (None: Pillow's own limit), a file
    that does not decode to its end (truncated or corrupt). Pillow's DecompressionBombWarning
    and DecompressionBombError become the oversized kind instead of a warning or a crash. A
    missing file is a FileNotFoundError naming it.
    """
    from PIL import Image, ImageFile

    # lmms-eval sets Pillow's process-wide LOAD_TRUNCATED_IMAGES when imported (its
    # api/task.py), and so does every warm-started job (the server preloads it): a truncated
    # file would then decode "successfully", padded. vislaw refuses truncated images wherever
    # it reads them, so the switch is put back off (idempotent across threads, never restored).
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    path = Path(path)
    who = f"item {item}: " if item is not None else ""
    if not path.is_file():
        raise FileNotFoundError(f"{who}image not found: {path}")
    if path.stat().st_size == 0:
        raise ImageError("empty image", f"{who}cannot read image {path}: empty file (0 bytes)")
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    with warnings.catch_warnings():
        # Pillow warns past its own limit: an error without ours, ignored under ours (checked
        # below; data.max_image_pixels may be up to Pillow's hard limit, twice its warning's).
        warnings.simplefilter(
            "error" if max_pixels is None else "ignore", Image.DecompressionBombWarning
        )
        try:
            with Image.open(path, formats=IMAGE_FORMATS) as image:
                _check_pixels(image, limit, path, who)
                image.verify()  # structure and checksums (PNG), without decoding
            with Image.open(path, formats=IMAGE_FORMATS) as image:
                image.load()  # every pixel: a truncated JPEG fails here
                return to_rgb(image)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
            raise ImageError("oversized image", f"{who}cannot read image {path}: {err}") from None
        except Image.UnidentifiedImageError:
            raise ImageError(
                "unsupported image format",
                f"{who}cannot read image {path}: not in a supported format {IMAGE_FORMATS}",
            ) from None
        except (OSError, ValueError, SyntaxError, EOFError) as err:
            if isinstance(err, ImageError):
                raise
            raise ImageError(
                "truncated or corrupt image", f"{who}cannot read image {path}: {err}"
            ) from None


def _check_pixels(image: Image.Image, limit: int | None, path: Path, who: str) -> None:
    """The header's pixel count against ``limit``, before any pixel is decoded."""
    width, height = image.size
    if limit is not None and width * height > limit:
        raise ImageError(
            "oversized image",
            f"{who}cannot read image {path}: {width}x{height} = {width * height} pixels, over "
            f"the limit {limit} (data.max_image_pixels; a decompression bomb?)",
        )


def read_rgb(
    path: str | Path, item: str | None = None, max_pixels: int | None = None
) -> Image.Image:
    """Open an image file as RGB, decoded and checked by :func:`decode_image`; a missing or
    bad file raises an error naming it (and the item, when given)."""
    return decode_image(path, max_pixels=max_pixels, item=item)
