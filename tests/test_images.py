"""Uploaded images: every odd size, mode and damage a classroom can upload gives RGB pixels or a clear refusal."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from s7core.images import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, ImageUploadError, load_upload


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with one tiny compressed row: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_an_rgb_png_comes_back_pixel_for_pixel() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    got = load_upload(encoded(Image.fromarray(pixels)))
    assert got.dtype == np.uint8 and got.shape == (7, 5, 3)
    assert np.array_equal(got, pixels)


def test_a_1x1_image_is_read() -> None:
    assert load_upload(encoded(Image.new("RGB", (1, 1), (10, 20, 30)))).tolist() == [[[10, 20, 30]]]


def test_16_bit_grey_is_scaled_not_clipped() -> None:
    grey = np.array([[0, 32768, 65535]], dtype=np.uint16)
    got = load_upload(encoded(Image.fromarray(grey)))
    assert got.shape == (1, 3, 3)
    assert got[0, :, 0].tolist() == [0, 128, 255]  # clipping would make the middle one white


def test_cmyk_jpeg_becomes_rgb() -> None:
    got = load_upload(encoded(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"))  # pure red in CMYK
    assert got.shape == (8, 8, 3)
    assert got[..., 0].mean() > 200 and got[..., 1].mean() < 60 and got[..., 2].mean() < 60


def test_palette_with_transparency_is_laid_over_white() -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((0, 0), 1)
    got = load_upload(encoded(image, transparency=0))
    assert got[0, 0].tolist() == [255, 0, 0]  # the opaque palette entry
    assert got[1, 1].tolist() == [255, 255, 255]  # the transparent one shows the white background


def test_grey_with_alpha_is_laid_over_white() -> None:
    got = load_upload(encoded(Image.new("LA", (2, 2), (0, 0))))
    assert got.tolist() == [[[255] * 3] * 2] * 2


def test_an_animation_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (6, 6), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    got = load_upload(data)
    assert got.shape == (6, 6, 3) and got[..., 0].mean() > 200 and got[..., 2].mean() < 60


def test_a_truncated_image_is_refused_as_damaged() -> None:
    noisy = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encoded(Image.fromarray(noisy))
    with pytest.raises(ImageUploadError, match="damaged or cut short"):
        load_upload(data[: len(data) // 2], "half.png")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image at all",
        b"%PDF-1.4\n" + b"0" * 100,
        b'{"layers": []}',
        encoded(Image.new("RGB", (4, 4)), "TIFF"),
    ],
    ids=["empty", "text", "pdf", "json", "tiff"],
)
def test_files_that_are_not_an_accepted_image_are_refused_whatever_their_name(data: bytes) -> None:
    with pytest.raises(ImageUploadError, match=r"cat\.png is not a PNG, JPEG, GIF, WEBP image"):
        load_upload(data, "cat.png")


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    bomb = png_header_only(100_000, 100_000)  # 10 gigapixels promised in under 100 bytes
    assert len(bomb) < 200
    with pytest.raises(ImageUploadError, match="header claims far more pixels"):
        load_upload(bomb)


def test_a_10000x10000_image_is_refused_before_decoding() -> None:
    with pytest.raises(ImageUploadError, match=f"10000x10000 pixels .*at most {MAX_UPLOAD_PIXELS / 1e6:,.1f}"):
        load_upload(png_header_only(10_000, 10_000))


def test_an_upload_over_the_byte_cap_is_refused_unopened() -> None:
    with pytest.raises(ImageUploadError, match="MB; at most"):
        load_upload(b"\x89PNG" + b"\0" * MAX_UPLOAD_BYTES)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.integers(0, 400))
def test_damaged_bytes_inside_a_real_png_never_raise_anything_else(noise: bytes, at: int) -> None:
    data = bytearray(encoded(Image.new("RGB", (9, 9), (1, 2, 3))))
    data[at : at + len(noise)] = noise
    try:
        got = load_upload(bytes(data))
    except ImageUploadError as err:
        assert str(err)
    else:
        assert got.dtype == np.uint8 and got.ndim == 3 and got.shape[2] == 3


def test_the_servers_upload_limit_is_the_image_cap() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    config = tomllib.loads((Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * 2**20 == MAX_UPLOAD_BYTES
