"""An uploaded image, read defensively: one function turns the bytes anyone may upload into an RGB array.

The bytes come from a stranger, so the file's size is capped before it is opened, its pixel count is read
from the header and capped before any pixel is decoded (a decompression bomb is a small file whose header
promises gigapixels), and only a few well-known formats are decoded at all. Every mode a PNG, JPEG, GIF or
WebP can hold (16-bit grey, CMYK, palette, alpha, animation) becomes plain 8-bit RGB.
"""

from __future__ import annotations

import io

import numpy as np

from s7core.errors import UserError

MAX_UPLOAD_BYTES = 10 * 2**20  # an upload's file size; a photo from a phone is 2-5 MB
MAX_UPLOAD_PIXELS = 4096 * 4096  # width x height, read from the header before decoding
UPLOAD_FORMATS = {"PNG": ("png",), "JPEG": ("jpg", "jpeg"), "GIF": ("gif",), "WEBP": ("webp",)}
UPLOAD_EXTENSIONS = tuple(ext for exts in UPLOAD_FORMATS.values() for ext in exts)  # what the upload box offers
BACKGROUND = 255  # transparent pixels are laid over white, as a browser shows them


class ImageUploadError(UserError):
    """An upload that is not an image this app reads, or too large to read safely."""


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:,.1f} megapixels"


def load_upload(data: bytes, name: str = "the upload") -> np.ndarray:
    """The image in `data` as an (H, W, 3) uint8 array (the first frame of an animation), or an ImageUploadError."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageUploadError(f"{name}: expected the bytes of an image file, got {type(data).__name__}")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageUploadError(
            f"{name} is {len(data) / 2**20:,.1f} MB; at most {MAX_UPLOAD_BYTES // 2**20} MB — shrink it first"
        )
    kinds = ", ".join(UPLOAD_FORMATS)
    try:
        image = Image.open(io.BytesIO(data), formats=list(UPLOAD_FORMATS))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ImageUploadError(
            f"{name} is not a {kinds} image (whatever its name says) — upload one of those"
        ) from None
    except Image.DecompressionBombError:
        raise ImageUploadError(
            f"{name}'s header claims far more pixels than any upload needs (a decompression bomb?); "
            f"at most {_megapixels(MAX_UPLOAD_PIXELS)} are read"
        ) from None
    with image:
        width, height = image.size
        if width < 1 or height < 1 or width * height > MAX_UPLOAD_PIXELS:
            raise ImageUploadError(
                f"{name} is {width}x{height} pixels ({_megapixels(width * height)}); at most "
                f"{_megapixels(MAX_UPLOAD_PIXELS)} are read — shrink it first"
            )
        try:
            image.seek(0)  # an animation: its first frame
            image.load()
            return _to_rgb(image)
        except (OSError, ValueError, SyntaxError, EOFError) as err:
            reason = " ".join(str(err).split())[:120] or type(err).__name__
            raise ImageUploadError(f"{name} is damaged or cut short ({reason}) — upload the whole file again") from None


def _to_rgb(image) -> np.ndarray:
    """8-bit RGB of a decoded PIL image of any mode, alpha laid over white."""
    mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16-bit or 32-bit grey: scale, do not clip
        grey = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or (mode == "I" and grey.max(initial=0) > 255) else 255.0
        if mode == "F":
            low, high = float(np.nanmin(grey, initial=0)), float(np.nanmax(grey, initial=1))
            grey, top = np.nan_to_num(grey - low), max(high - low, 1e-12)
        grey = np.clip(grey / top * 255.0, 0, 255).round().astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64)
        alpha = rgba[:, :, 3:] / 255.0
        rgb = rgba[:, :, :3] * alpha + BACKGROUND * (1 - alpha)
        return rgb.round().astype(np.uint8)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
