"""Bytes, paths or PIL images in; an upright, fully decoded RGB ``PIL.Image`` out.

Everything that can go wrong with a user's file becomes an :class:`~stylelens.errors.ImageError`
with a stable ``code`` and a message that says what to do.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
# MPO is what cameras' multi-picture JPEGs open as; the first picture is an ordinary JPEG.
SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_BYTES = 10 * 1024 * 1024

_ACCEPTED = "JPEG, PNG, WebP, GIF, BMP or TIFF"
_UPLOAD = f"Upload a {_ACCEPTED} photo."
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_WHITE = (255, 255, 255)

# Signatures of accepted formats, to tell "damaged image" from "not an image at all".
_SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}


def read_bytes(path: str | os.PathLike) -> bytes:
    """The whole file; ``ImageError(code='not_found')`` when it is missing, a folder or unreadable."""
    return _read(Path(path), max_bytes=None)


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_image(
    source: str | os.PathLike | bytes | Image.Image,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_bytes: int | None = None,
) -> Image.Image:
    """Decode ``source`` in memory into an upright RGB image (transparency flattened onto white).

    ``max_pixels`` is checked from the header before any pixel is decoded; ``max_bytes`` bounds the
    encoded size. ``None`` disables either limit.
    """
    if isinstance(source, Image.Image):
        im, data = source, b""
    else:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source) if isinstance(source, memoryview) else source
            _check_bytes(len(data), max_bytes)
        else:
            data = _read(Path(source), max_bytes)
        im = _open(data)
    _check_pixels(im.size, max_pixels)
    try:
        im.load()
        im = _upright(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb("It has more pixels than can be decoded safely.") from exc
    except Exception as exc:  # decoders signal bad data with many exception types
        raise _decode_error(exc, data) from exc
    return _to_rgb(im)


def _read(path: Path, max_bytes: int | None) -> bytes:
    try:
        with path.open("rb") as f:
            if max_bytes is not None:
                _check_bytes(os.fstat(f.fileno()).st_size, max_bytes)
            return f.read()
    except FileNotFoundError:
        raise ImageError(f"No file at '{path}'. Check the path and try again.", code="not_found") from None
    except OSError as exc:
        if path.is_dir():
            msg = f"'{path}' is a folder, not an image file. Give the path of one image file."
        else:
            msg = f"'{path}' cannot be read ({exc.strerror or exc}). Check that it exists and is readable."
        raise ImageError(msg, code="not_found") from exc


def _check_bytes(size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise ImageError(
            f"The file is {_mb(size)}, over the {_mb(max_bytes)} limit. "
            "Upload a smaller photo (resize it or save it as JPEG).",
            code="too_large",
        )


def _check_pixels(size: tuple[int, int], max_pixels: int | None) -> None:
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise _bomb(f"It is {width}x{height} pixels, over the limit of {max_pixels:,} pixels.")


def _open(data: bytes) -> Image.Image:
    """Identify the format and read the header only."""
    if not data:
        raise ImageError(f"The file is empty (0 bytes). {_UPLOAD}", code="empty")
    try:
        im = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb("Its header declares more pixels than can be decoded safely.") from exc
    except UnidentifiedImageError as exc:
        raise _unidentified(data) from exc
    except Exception as exc:
        raise _decode_error(exc, data) from exc
    if im.format not in SUPPORTED_FORMATS:
        raise _unsupported(im.format)
    return im


def _upright(im: Image.Image) -> Image.Image:
    try:
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # unreadable EXIF should not cost the user an otherwise good photo
        return im
    # exif_transpose copies even when there is nothing to undo; skip it on the fast path.
    return ImageOps.exif_transpose(im) if orientation in range(2, 9) else im


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB" and "transparency" not in im.info:
        return im
    if im.mode.startswith("I") or im.mode == "F":
        return _grey_to_8bit(im).convert("RGB")
    try:
        if im.mode in _ALPHA_MODES or "transparency" in im.info:
            rgba = im.convert("RGBA")
            flat = Image.new("RGB", im.size, _WHITE)
            flat.paste(rgba, mask=rgba.getchannel("A"))
            return flat
        return im.convert("RGB")
    except ValueError as exc:  # colour modes PIL cannot convert, such as LAB
        raise ImageError(
            f"The image uses the {im.mode} colour mode, which cannot be converted to RGB. "
            f"Save it as an RGB {_ACCEPTED} file and try again.",
            code="unsupported_format",
        ) from exc


def _grey_to_8bit(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float greys: scale to 0..255 instead of letting convert() clip to white."""
    a = np.asarray(im, dtype=np.float32)
    if im.mode.startswith("I;16"):
        top = 65535.0
    else:  # guess the range the values were written in: 0..1 (float), 0..255 or 0..65535
        hi = float(a.max(initial=0.0))
        ranges = (1.0, 255.0, 65535.0) if im.mode == "F" else (255.0, 65535.0)
        top = next((r for r in ranges if hi <= r), hi)
    return Image.fromarray(np.clip(a * (255.0 / top), 0, 255).round().astype(np.uint8))


def _bomb(detail: str) -> ImageError:
    return ImageError(
        f"The image is too large to open safely. {detail} Resize it to a normal photo size "
        "(a few thousand pixels per side) and try again.",
        code="too_many_pixels",
    )


def _unsupported(fmt: str | None) -> ImageError:
    return ImageError(
        f"The file is in {fmt} format, which is not supported. "
        f"Convert it to {_ACCEPTED} and try again.",
        code="unsupported_format",
    )


def _signature(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((fmt for sig, fmt in _SIGNATURES.items() if data.startswith(sig)), None)


def _unidentified(data: bytes) -> ImageError:
    fmt = _signature(data)
    if fmt is not None:
        return ImageError(
            f"The file starts like a {fmt} image but its header is damaged or incomplete. "
            "Export or download the photo again, then retry.",
            code="corrupt",
        )
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return _unsupported("HEIC")
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return _unsupported("SVG")
    return ImageError(f"The file is not an image. {_UPLOAD}", code="not_an_image")


def _decode_error(exc: Exception, data: bytes) -> ImageError:
    fmt = _signature(data) or "image"
    riff_size = int.from_bytes(data[4:8], "little") + 8 if fmt == "WebP" else 0
    if "truncated" in str(exc).lower() or riff_size > len(data):
        return ImageError(
            f"The {fmt} file is cut short (truncated), probably by an interrupted upload or "
            "download. Upload the complete file again.",
            code="truncated",
        )
    return ImageError(
        f"The {fmt} file is damaged and cannot be decoded ({exc}). "
        "Open it in an image editor and save it again, or use another photo.",
        code="corrupt",
    )


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"
