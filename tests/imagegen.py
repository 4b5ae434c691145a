"""Deterministic test images: product-like pictures, every accepted odd variant, and bad files.

Everything is drawn from a seeded ``random.Random``; nothing is read from outside the folder given.
"""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

GOOD_SIZE = (60, 80)  # width, height of every variant once loaded upright
SHAPE_COLOR = (200, 30, 40)
ACCEPTED_WORDS = "JPEG, PNG, WebP, GIF, BMP or TIFF"

_SHAPES = {
    # Outlines as fractions of (width, height); all cover the centre and none is symmetric
    # under a 180° turn, so a wrong EXIF rotation shows.
    "tshirt": [(0.38, 0.1), (0.5, 0.16), (0.62, 0.1), (0.8, 0.14), (0.95, 0.32), (0.82, 0.38),
               (0.78, 0.35), (0.78, 0.92), (0.22, 0.92), (0.22, 0.35), (0.18, 0.38),
               (0.05, 0.32), (0.2, 0.14)],
    "dress": [(0.38, 0.08), (0.62, 0.08), (0.66, 0.4), (0.85, 0.94), (0.15, 0.94), (0.34, 0.4)],
    "bag": [(0.15, 0.35), (0.85, 0.35), (0.85, 0.9), (0.15, 0.9)],
}
# What make_image stores so that applying the EXIF orientation gives the upright picture back.
_UNDO_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
_SAVE_DEFAULTS = {"JPEG": {"quality": 95}, "MPO": {"quality": 95}, "WEBP": {"quality": 95}}


def product_picture(size=GOOD_SIZE, color=SHAPE_COLOR, pattern_seed=None) -> Image.Image:
    """An RGBA garment-like shape in ``color``; the background is transparent (and black).

    Without ``pattern_seed`` it is a plain t-shirt; a seed picks the shape, jitters it and adds
    darker stripes below the centre, so the centre pixel is always ``color``.
    """
    w, h = size
    rng = random.Random(pattern_seed)
    kind = "tshirt" if pattern_seed is None else rng.choice(sorted(_SHAPES))
    jitter = 0.0 if pattern_seed is None else 0.03
    outline = [((fx + rng.uniform(-jitter, jitter)) * w, (fy + rng.uniform(-jitter, jitter)) * h)
               for fx, fy in _SHAPES[kind]]
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    draw.polygon(outline, fill=255)
    if kind == "bag":
        draw.arc((0.3 * w, 0.12 * h, 0.7 * w, 0.55 * h), 180, 360, fill=255, width=max(1, w // 20))
    paint = Image.new("RGBA", size, (*color, 255))
    if pattern_seed is not None:
        shade = (*(c * 3 // 5 for c in color), 255)
        for _ in range(rng.randint(0, 3)):
            y = rng.uniform(0.6, 0.85) * h
            ImageDraw.Draw(paint).rectangle((0, y, w, y + max(1, h // 40)), fill=shade)
    return Image.composite(paint, Image.new("RGBA", size, (0, 0, 0, 0)), mask)


def on_white(rgba: Image.Image) -> Image.Image:
    flat = Image.new("RGB", rgba.size, (255, 255, 255))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


def make_image(path, size=GOOD_SIZE, color=SHAPE_COLOR, fmt="JPEG", mode="RGB", pattern_seed=None,
               *, orientation=None, **save_kwargs) -> Path:
    """Write a product picture to ``path`` and return the path.

    ``mode`` is the stored pixel mode: alpha modes (RGBA, LA) keep the background transparent,
    ``PA`` stores a palette image whose background index is transparent, ``I;16``/``I``/``F`` store
    grey scaled to 0..65535 / 0..65535 / 0..1. ``orientation`` stores the pixels turned and writes
    the EXIF tag that turns them upright again. Extra keywords go to ``Image.save``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = _convert(product_picture(size, color, pattern_seed), mode)
    kwargs = {**_SAVE_DEFAULTS.get(fmt, {}), **save_kwargs}
    if orientation is not None:
        im = im.transpose(_UNDO_ORIENTATION[orientation])
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    if mode == "PA":
        kwargs.setdefault("transparency", 0)
    im.save(path, fmt, **kwargs)
    return path


def _convert(rgba: Image.Image, mode: str) -> Image.Image:
    if mode == "RGBA":
        return rgba
    if mode == "LA":
        return rgba.convert("LA")
    if mode == "PA":
        pal = Image.new("P", rgba.size, 0)
        pal.putpalette([0, 0, 0, *rgba.getpixel((rgba.width // 2, rgba.height // 2))[:3]])
        pal.paste(1, mask=rgba.getchannel("A"))
        return pal
    flat = on_white(rgba)
    if mode == "1":
        return flat.convert("L").convert("1", dither=Image.Dither.NONE)
    if mode in ("I;16", "I", "F"):
        grey = np.asarray(flat.convert("L"), dtype=np.float64)
        values = {"I;16": (grey * 257).astype(np.uint16), "I": (grey * 257).astype(np.int32),
                  "F": (grey / 255).astype(np.float32)}[mode]
        return Image.fromarray(values)
    if mode == "P":
        return flat.convert("P", palette=Image.Palette.ADAPTIVE)
    return flat.convert(mode)


def make_good_variants(folder) -> list[Path]:
    """One file per accepted odd case; each loads upright as ``GOOD_SIZE`` with a white corner."""
    folder = Path(folder)
    blue = Image.new("RGB", GOOD_SIZE, (0, 0, 255))
    specs = {
        "plain.jpg": dict(fmt="JPEG"),
        "exif_rotated.jpg": dict(fmt="JPEG", orientation=6),
        "exif_rotated8.png": dict(fmt="PNG", orientation=8),
        "rgba.png": dict(fmt="PNG", mode="RGBA"),
        "la.png": dict(fmt="PNG", mode="LA"),
        "p_transparent.png": dict(fmt="PNG", mode="PA"),
        "palette.png": dict(fmt="PNG", mode="P"),
        "gray.jpg": dict(fmt="JPEG", mode="L"),
        "bilevel.png": dict(fmt="PNG", mode="1"),
        "cmyk.jpg": dict(fmt="JPEG", mode="CMYK"),
        "cmyk.tif": dict(fmt="TIFF", mode="CMYK"),
        "gray16.png": dict(fmt="PNG", mode="I;16"),
        "gray16.tif": dict(fmt="TIFF", mode="I;16"),
        "int32.tif": dict(fmt="TIFF", mode="I"),
        "float.tif": dict(fmt="TIFF", mode="F"),
        "rgb.webp": dict(fmt="WEBP"),
        "rgba.webp": dict(fmt="WEBP", mode="RGBA"),
        # Second frame is solid blue: loading must give the first.
        "animated.gif": dict(fmt="GIF", save_all=True, append_images=[blue], duration=100, loop=0),
        "transparent.gif": dict(fmt="GIF", mode="PA"),
        "rgb.bmp": dict(fmt="BMP"),
        "rgb.tif": dict(fmt="TIFF"),
        "camera_mpo.jpg": dict(fmt="MPO", save_all=True, append_images=[blue]),
    }
    return [make_image(folder / name, **spec) for name, spec in specs.items()]


def make_bad_corpus(folder) -> dict[str, str]:
    """Write one file per failure case; returns file name → expected ``ImageError.code``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20240607)
    noisy = _noise_picture(rng)

    def encoded(fmt: str, im: Image.Image = noisy, **kwargs) -> bytes:
        path = folder / f"_tmp.{fmt.lower()}"
        im.save(path, fmt, **kwargs)
        data = path.read_bytes()
        path.unlink()
        return data

    png = encoded("PNG")
    files = {
        "empty.jpg": (b"", "empty"),
        "notes.jpg": (b"Order 1234: two shirts, one pair of shoes.\n" * 20, "not_an_image"),
        "page.png": (b"<!DOCTYPE html>\n<html><head><title>Not found</title></head>"
                     b"<body><img src='shirt.jpg'></body></html>\n", "not_an_image"),
        "random.jpg": (rng.randbytes(4096), "not_an_image"),
        "truncated.jpg": (_half(encoded("JPEG", quality=95)), "truncated"),
        "truncated.png": (_half(png), "truncated"),
        "truncated.gif": (_half(encoded("GIF")), "truncated"),
        "truncated.webp": (_half(encoded("WEBP")), "truncated"),
        "corrupt.png": (_garble_idat(png, rng), "corrupt"),
        "damaged_header.png": (png[:8] + rng.randbytes(200), "corrupt"),
        "bomb.png": (_png_header_only(20_000, 20_000), "too_many_pixels"),
        "bomb_64mp.png": (_png_header_only(8_000, 8_000), "too_many_pixels"),
        "icon.ico": (encoded("ICO", noisy.resize((32, 32))), "unsupported_format"),
        "picture.ppm": (encoded("PPM"), "unsupported_format"),
        "photo.heic": (struct.pack(">I", 24) + b"ftypheic" + b"\0\0\0\0mif1heic" + rng.randbytes(500),
                       "unsupported_format"),
        "logo.svg": (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="60" '
                     b'height="80"><rect width="60" height="80" fill="red"/></svg>\n',
                     "unsupported_format"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: code for name, (_, code) in files.items()}


def _noise_picture(rng: random.Random) -> Image.Image:
    # Noise keeps the encoded files large enough that cutting them in half lands in pixel data.
    noise = np.frombuffer(rng.randbytes(GOOD_SIZE[0] * GOOD_SIZE[1] * 3), dtype=np.uint8)
    return Image.fromarray(noise.reshape(GOOD_SIZE[1], GOOD_SIZE[0], 3))


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and header declaring width x height, with one row of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    row = b"\0" + bytes((width + 7) // 8)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(row)) + \
        _chunk(b"IEND", b"")


def _garble_idat(png: bytes, rng: random.Random) -> bytes:
    """Same PNG with the compressed pixel data replaced by noise (CRCs fixed, so only zlib fails)."""
    start = png.index(b"IDAT") - 4
    length = struct.unpack(">I", png[start:start + 4])[0]
    end = start + 12 + length
    noise = b"\xff\xff" + rng.randbytes(length - 2)  # 0xffff is never a valid zlib header
    return png[:start] + _chunk(b"IDAT", noise) + png[end:]
