"""Decode untrusted image bytes: only real, complete, reasonably sized JPEG/PNG/WebP files get through."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps

from fashionrec.errors import UserError

FORMATS = ("JPEG", "PNG", "WEBP")
EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


@dataclass(frozen=True)
class ImageLimits:
    """Upload limits. A 20 MB WebP can still decode to gigapixels, so pixels are capped separately."""

    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000


DEFAULT_LIMITS = ImageLimits()


class ImageTooLarge(UserError):
    """Over the byte or pixel limit: the server answers 413 rather than 400."""


def decode_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> Image.Image:
    """RGB image from `data`, or a UserError that says what is wrong with it."""
    if not data:
        raise UserError("the image is empty")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"the image is {len(data)} bytes; the limit is {limits.max_bytes}")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
        if image.width * image.height > limits.max_pixels:
            raise ImageTooLarge(
                f"the image is {image.width}x{image.height} pixels; the limit is {limits.max_pixels} pixels"
            )
        image.load()
        return ImageOps.exif_transpose(image).convert("RGB")  # upright, as training loads its images
    except UserError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"the image is too large to decode safely ({e})") from e
    except Image.UnidentifiedImageError as e:
        raise UserError("the upload is not a JPEG, PNG or WebP image") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"the image could not be decoded; it may be truncated or corrupt ({e})") from e
