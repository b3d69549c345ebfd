"""Untrusted uploads: only complete JPEG/PNG/WebP images within the byte and pixel limits decode."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image
from rec_fixtures import png_header_only

from fashionrec.errors import UserError
from fashionrec.index import images
from fashionrec.index.images import DecodeBudget, ImageLimits, ImageTooLarge, decode_image, decoded


def encoded(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize(size).convert(mode).save(buffer, format=fmt)
    return buffer.getvalue()


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


@pytest.mark.parametrize(
    "fmt, mode, size, expected",
    [
        ("JPEG", "RGB", (6000, 4200), (1500, 1050)),  # decoded at 1/4 scale (draft)
        ("PNG", "RGB", (5000, 3100), (1667, 1034)),  # decoded, then reduced 3x
        ("PNG", "P", (4200, 2100), (2100, 1050)),  # palette: converted, then reduced 2x
        ("WEBP", "RGB", (1500, 2600), (1500, 2600)),  # too small to reduce by a whole factor
    ],
)
def test_large_images_come_out_smaller_with_the_same_picture(fmt, mode, size, expected) -> None:
    picture = Image.new("RGB", size, (200, 40, 90))
    picture.paste((10, 220, 30), (0, 0, size[0] // 2, size[1]))  # left half green
    picture = picture.quantize(4) if mode == "P" else picture.convert(mode)  # P: exact colours, no dither
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, quality=95)
    image = decode_image(buffer.getvalue(), ImageLimits(max_bytes=50_000_000))
    assert image.mode == "RGB" and image.size == expected
    for x in (0.25, 0.75):  # the colours either side, as a full decode has them
        want = picture.convert("RGB").getpixel((int(x * size[0]), 10))
        got = image.getpixel((int(x * expected[0]), 10))
        assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < 8


def test_the_decode_budget_bounds_decoded_bytes_held_at_once() -> None:
    budget = DecodeBudget(limit=10)
    held, peak, lock = [0], [0], threading.Lock()

    def decode(nbytes: int) -> None:
        with budget.hold(nbytes):
            with lock:
                held[0] += nbytes
                peak[0] = max(peak[0], held[0])
            time.sleep(0.02)
            with lock:
                held[0] -= nbytes

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(decode, [4] * 16 + [50]))  # one over the limit still runs, alone
    assert peak[0] == 50
    peak[0] = 0
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(decode, [4] * 16))
    assert peak[0] == 8  # two at once, never three


def test_a_query_picture_counts_in_the_budget_until_its_block_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2048 px square decodes within the whole budget, is reduced to 1024 px, and holds that much until
    the block (a query's preprocessing) ends: a decode that fits beside it runs, a larger one waits."""
    monkeypatch.setattr(images, "DECODES", DecodeBudget(limit=2048 * 2048 * 4))
    large, beside, after = (encoded("PNG", size) for size in [(2048, 2048), (1024, 1024), (2048, 1600)])
    with ThreadPoolExecutor(2) as pool:
        with decoded(large) as picture:
            assert picture.size == (1024, 1024) and picture.mode == "RGB"
            assert pool.submit(decode_image, beside).result(timeout=30).size == (1024, 1024)
            waiting = pool.submit(decode_image, after)  # 13.1 MB: only 12.6 MB are free beside the picture
            time.sleep(0.3)
            assert not waiting.done()
        assert waiting.result(timeout=30).size == (2048, 1600)
