"""Untrusted uploads: only complete JPEG/PNG/WebP images within the byte and pixel limits decode."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from fashionrec.errors import UserError
from fashionrec.index.images import ImageLimits, ImageTooLarge, decode_image


def encoded(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize(size).convert(mode).save(buffer, format=fmt)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` pixels but carries almost no data: a decompression bomb's
    header, which must be refused before any pixel is decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_accepts_each_supported_format_as_rgb(fmt: str) -> None:
    image = decode_image(encoded(fmt, mode="L"))
    assert image.mode == "RGB" and image.size == (40, 30)


def test_applies_exif_orientation_like_training() -> None:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (40, 30)).save(buffer, format="JPEG", exif=exif)
    assert decode_image(buffer.getvalue()).size == (30, 40)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"GIF89a" + b"\0" * 100, "not a JPEG, PNG or WebP"),
        (b"hello, this is text", "not a JPEG, PNG or WebP"),
        (encoded("GIF"), "not a JPEG, PNG or WebP"),
        (encoded("PNG", (200, 200))[:-200], "truncated or corrupt"),
        (encoded("JPEG", (200, 200))[:-300], "truncated or corrupt"),
    ],
)
def test_refuses_non_images_and_truncated_files(data: bytes, message: str) -> None:
    with pytest.raises(UserError, match=message):
        decode_image(data)


def test_refuses_more_bytes_than_the_limit() -> None:
    data = encoded("PNG")
    assert decode_image(data, ImageLimits(max_bytes=len(data)))
    with pytest.raises(ImageTooLarge, match=f"{len(data) + 0} bytes; the limit is {len(data) - 1}"):
        decode_image(data, ImageLimits(max_bytes=len(data) - 1))


def test_refuses_more_pixels_than_the_limit_before_decoding() -> None:
    with pytest.raises(ImageTooLarge, match="40x30 pixels; the limit is 1000"):
        decode_image(encoded("PNG"), ImageLimits(max_pixels=1000))
    assert len(png_header_only(8000, 8000)) < 100
    with pytest.raises(ImageTooLarge, match="8000x8000 pixels; the limit is 40000000"):
        decode_image(png_header_only(8000, 8000))
    with pytest.raises(ImageTooLarge, match="10000000000 pixels"):  # caught by Pillow's own guard
        decode_image(png_header_only(100_000, 100_000))
