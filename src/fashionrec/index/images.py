"""Decode untrusted image bytes: only real, complete, reasonably sized JPEG/PNG/WebP files get through,
in bounded memory."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, ImageOps

from fashionrec.errors import UserError

FORMATS = ("JPEG", "PNG", "WEBP")
# A catalog's own images may also be what the original system's extractor took (`--from-mongo-export --images`).
CATALOG_FORMATS = (*FORMATS, "BMP", "TIFF")
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
# A large upload is decoded (JPEG) or shrunk right after decoding (PNG, WebP) to about this many pixels
# on its shorter side: over four times the model's 224 px input, so crops keep their detail.
DECODE_SIDE = 1024
# Decoded pixels held at once by all decodes in the process; a decode larger than this runs alone.
DECODE_BUDGET_BYTES = 320 * 2**20
REDUCIBLE_MODES = ("L", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F")  # what Image.reduce takes


@dataclass(frozen=True)
class ImageLimits:
    """Upload limits. A 20 MB WebP can still decode to gigapixels, so pixels are capped separately."""

    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000


DEFAULT_LIMITS = ImageLimits()


class ImageTooLarge(UserError):
    """Over the byte or pixel limit: the server answers 413 rather than 400."""


class DecodeBudget:
    """Lets decodes run at once only while their decoded pixels fit in `limit` bytes, so memory is bounded
    however many uploads arrive together; small images pass while a large one decodes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._free = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[Callable[[int], None]]:
        """Waits until `nbytes` fit, then holds them for the block, which may lower its hold to what it keeps
        after all (call the function it is given) so that waiting decodes start sooner."""
        held = min(nbytes, self.limit)
        with self._free:
            self._free.wait_for(lambda: self._used + held <= self.limit)
            self._used += held

        def lower(kept: int) -> None:
            nonlocal held
            with self._free:
                kept = min(kept, held)
                self._used -= held - kept
                held = kept
                self._free.notify_all()

        try:
            yield lower
        finally:
            lower(0)


DECODES = DecodeBudget(DECODE_BUDGET_BYTES)


@contextmanager
def decoded(
    data: bytes, limits: ImageLimits = DEFAULT_LIMITS, formats: tuple[str, ...] = FORMATS
) -> Iterator[Image.Image]:
    """The picture `decode_image` returns, its pixels counted in the decode budget until the block ends: a
    query keeps its picture until it is preprocessed, and pictures waiting for that count as decodes do.
    `formats`: Pillow's names of the formats taken (uploads: JPEG, PNG, WebP; a catalog's own images:
    CATALOG_FORMATS)."""
    with _image_errors():
        image = _opened(data, limits, formats)
    with DECODES.hold(_decoded_bytes(image)) as lower:
        with _image_errors():
            image = _loaded(image)  # rebound: the full-size pixels go as soon as they are reduced
        lower(_decoded_bytes(image))
        yield image


def decode_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS, formats: tuple[str, ...] = FORMATS) -> Image.Image:
    """RGB image from `data`, or a UserError that says what is wrong with it. Large images come out with
    about DECODE_SIDE pixels on the shorter side (the model sees far fewer)."""
    with decoded(data, limits, formats) as picture:
        return picture


def _opened(data: bytes, limits: ImageLimits, formats: tuple[str, ...]) -> Image.Image:
    """The image with only its header read, checked against the limits, set to decode at reduced size."""
    if not data:
        raise UserError("the image is empty")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"the image is {len(data)} bytes; the limit is {limits.max_bytes}")
    image = Image.open(io.BytesIO(data), formats=formats)
    if image.width * image.height > limits.max_pixels:
        size = f"{image.width}x{image.height}"
        raise ImageTooLarge(f"the image is {size} pixels; the limit is {limits.max_pixels} pixels")
    if image.format == "JPEG":
        image.draft("RGB", (DECODE_SIDE, DECODE_SIDE))  # decodes at 1/2, 1/4 or 1/8 scale when that fits
    return image


def _loaded(image: Image.Image) -> Image.Image:
    """The decoded picture, reduced, upright (as training loads its images) and RGB, with no copy kept."""
    image.load()
    image = _shrink(image)
    ImageOps.exif_transpose(image, in_place=True)
    return image if image.mode == "RGB" else image.convert("RGB")


@contextmanager
def _image_errors() -> Iterator[None]:
    """Pillow's errors as a UserError that says what is wrong with the image."""
    try:
        yield
    except UserError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"the image is too large to decode safely ({e})") from e
    except Image.UnidentifiedImageError as e:
        raise UserError("the upload is not a JPEG, PNG or WebP image") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"the image could not be decoded; it may be truncated or corrupt ({e})") from e


def image_suffix(data: bytes) -> str:
    """The file extension of image bytes `decode_image` accepted (from the header alone)."""
    with Image.open(io.BytesIO(data), formats=FORMATS) as image:
        return SUFFIXES[image.format]


def _decoded_bytes(image: Image.Image) -> int:
    """Memory a decode and `_shrink` may hold: Pillow keeps most modes in 4 bytes a pixel, and a mode that
    cannot be reduced directly is converted at full size first."""
    pixels = image.width * image.height
    return pixels * 4 * (1 if image.mode in REDUCIBLE_MODES else 2)


def _shrink(image: Image.Image) -> Image.Image:
    """A box-filtered reduction by a whole factor that keeps the shorter side at least DECODE_SIDE."""
    factor = min(image.size) // DECODE_SIDE
    if factor < 2:
        return image
    if image.mode not in REDUCIBLE_MODES:
        image = image.convert("RGB")  # what decode_image returns anyway
    return image.reduce(factor)
