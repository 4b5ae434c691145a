"""Bytes, paths or PIL images in; an upright, fully decoded RGB ``PIL.Image`` out.

Everything that can go wrong with a user's file becomes an :class:`~stylelens.errors.ImageError`
with a stable ``code`` and a message that says what to do. Besides the codes listed there, paths
give ``not_a_file`` (a folder, FIFO, socket or device) and ``broken_link`` (a link to nothing).

Memory stays bounded: only regular files are read, and at most ``max_bytes`` of them; ``target``
decodes no more pixels than the caller needs (JPEG draft mode, else ``Image.reduce`` right after
decoding); and :data:`DECODE_GATE` lets only a few large images be decoded at once in a process.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
# MPO is what cameras' multi-picture JPEGs open as; the first picture is an ordinary JPEG.
SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
# read_bytes' cap: far above any photo, far below what a runaway file would cost in memory.
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024
# Images decoded at more pixels than this take a DECODE_GATE slot; slots per process by default.
LARGE_DECODE_PIXELS = 8_000_000
DEFAULT_DECODE_SLOTS = 2
# load_image(target=...) keeps at least this many source pixels per target pixel each way, so the
# caller's resize still averages real detail.
OVERSAMPLE = 2

_ACCEPTED = "JPEG, PNG, WebP, GIF, BMP or TIFF"
_UPLOAD = f"Upload a {_ACCEPTED} photo."
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_WHITE = (255, 255, 255)
# Modes Image.reduce averages correctly; others (palettes, 16-bit, float) become RGB first.
_REDUCIBLE = frozenset({"RGB", "RGBA", "L", "LA", "CMYK"})
# EXIF orientation -> the transpose that makes the picture upright (as ImageOps.exif_transpose does).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

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


class DecodeGate:
    """At most ``slots`` large decodes at a time in this process.

    A decoded image holds all its pixels (a 49 MP photo is ~150 MB as RGB, more while it is
    converted), so a burst of big uploads waits here instead of multiplying the peak memory. Images
    of at most ``min_pixels`` pass without a slot. Change the limits with :meth:`configure`.
    """

    def __init__(self, slots: int = DEFAULT_DECODE_SLOTS, min_pixels: int = LARGE_DECODE_PIXELS):
        self._cond = threading.Condition()
        self.slots, self.min_pixels = 1, 0
        self.configure(slots, min_pixels)
        self.active = 0  # large decodes running now
        self.peak = 0  # most large decodes that ever ran at once

    def configure(self, slots: int | None = None, min_pixels: int | None = None) -> None:
        if slots is not None and slots < 1:
            raise ValueError("A decode gate needs at least one slot.")
        with self._cond:
            self.slots = self.slots if slots is None else int(slots)
            self.min_pixels = self.min_pixels if min_pixels is None else int(min_pixels)
            self._cond.notify_all()

    @contextmanager
    def hold(self, pixels: int):
        """Wait for a slot when ``pixels`` is large; hold it for the ``with`` block."""
        if pixels <= self.min_pixels:
            yield
            return
        with self._cond:
            self._cond.wait_for(lambda: self.active < self.slots)
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            yield
        finally:
            with self._cond:
                self.active -= 1
                self._cond.notify()


DECODE_GATE = DecodeGate()


def read_bytes(path: str | os.PathLike, *, max_bytes: int | None = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The whole file, if it is a regular file of at most ``max_bytes`` bytes (None: no limit).

    ``ImageError`` codes: ``not_found`` (missing or unreadable), ``not_a_file`` (a folder, FIFO, socket
    or device; never opened for a blocking read), ``broken_link``, ``too_large``.
    """
    return _read(Path(path), max_bytes)


def check_file(path: str | os.PathLike) -> os.stat_result:
    """The file's stat when it is a regular file (links followed), else the ImageError read_bytes raises."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise _missing(path, exc) from None
    if not stat.S_ISREG(st.st_mode):
        raise _not_a_file(path, st.st_mode)
    return st


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_image(
    source: str | os.PathLike | bytes | Image.Image,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_bytes: int | None = None,
    target: int | tuple[int, int] | None = None,
    gate: DecodeGate | None = DECODE_GATE,
) -> Image.Image:
    """Decode ``source`` in memory into an upright RGB image (transparency flattened onto white).

    ``max_pixels`` is checked from the header before any pixel is decoded; ``max_bytes`` bounds the
    encoded size. ``None`` disables either limit.

    ``target``: the box the caller will shrink the image to fit in, ``(w, h)`` or ``n`` for n x n (such
    as the network's input size). Then no more is decoded than needed: a JPEG is decoded at 1/2, 1/4
    or 1/8 scale (draft mode), other formats are reduced by an integer factor right after decoding, so
    that the image fitted in ``target`` keeps at least ``OVERSAMPLE`` (2) source pixels per pixel each
    way (and fewer than twice that where the scales allow). Without ``target`` every pixel is decoded,
    exactly as before. ``gate`` bounds concurrent large decodes (None: no bound).
    """
    box = _box(target)
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
    orientation = None
    if box is not None and im is not source and im.format in ("JPEG", "MPO"):
        orientation = _orientation(im)  # a JPEG's EXIF is in its header: reading it decodes nothing
        _draft(im, _stored_box(box, orientation))
    with _hold(gate, im.width * im.height):  # after draft: the pixels that will really be decoded
        try:
            im.load()
            if box is None:
                im = _upright(im)
            else:
                orientation = _orientation(im) if orientation is None else orientation
                im = _reduce(im, _stored_box(box, orientation))
                if orientation in _TRANSPOSE:
                    im = im.transpose(_TRANSPOSE[orientation])
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _bomb("It has more pixels than can be decoded safely.") from exc
        except Exception as exc:  # decoders signal bad data with many exception types
            raise _decode_error(exc, data) from exc
        return _to_rgb(im)


def _box(target) -> tuple[int, int] | None:
    if target is None:
        return None
    w, h = (target, target) if isinstance(target, int) else target
    if int(w) < 1 or int(h) < 1:
        raise ValueError(f"target must be a positive size, not {target!r}")
    return int(w), int(h)


def _stored_box(box: tuple[int, int], orientation: int | None) -> tuple[int, int]:
    """The target box in the file's stored frame: orientations 5-8 store the picture on its side."""
    return (box[1], box[0]) if orientation in (5, 6, 7, 8) else box


def _needed(size: tuple[int, int], box: tuple[int, int]) -> float:
    """The fraction of each side that keeps OVERSAMPLE source pixels per pixel of the fitted image."""
    return OVERSAMPLE * min(box[0] / size[0], box[1] / size[1])


def _draft(im: Image.Image, box: tuple[int, int]) -> None:
    need = _needed(im.size, box)
    if need < 1:  # PIL picks the smallest scale 1/s (s = 1, 2, 4, 8) that keeps at least this size
        im.draft(None, (max(1, -int(-im.width * need // 1)), max(1, -int(-im.height * need // 1))))


def _reduce(im: Image.Image, box: tuple[int, int]) -> Image.Image:
    need = _needed(im.size, box)
    factor = int(1 / need) if need < 1 else 1
    if factor < 2:
        return im
    if im.mode not in _REDUCIBLE or "transparency" in im.info:
        im = _to_rgb(im)
    return im.reduce(factor)


@contextmanager
def _hold(gate: DecodeGate | None, pixels: int):
    if gate is None:
        yield
    else:
        with gate.hold(pixels):
            yield


def _read(path: Path, max_bytes: int | None) -> bytes:
    check_file(path)  # a FIFO would block the open below; a device would never end
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)  # non-blocking: a FIFO swapped in since the check still opens at once
    except OSError as exc:
        raise _missing(path, exc) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_a_file(path, st.st_mode)
        if max_bytes is None:
            return f.read()
        _check_bytes(st.st_size, max_bytes)
        data = f.read(max_bytes + 1)  # the file may have grown since fstat
        _check_bytes(len(data), max_bytes)
        return data


def _missing(path: Path, exc: OSError) -> ImageError:
    if isinstance(exc, FileNotFoundError) and path.is_symlink():
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return ImageError(f"'{path}' is a link to '{target}', which does not exist. "
                          "Check the link, or give the path of the image file itself.", code="broken_link")
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return ImageError(f"No file at '{path}'. Check the path and try again.", code="not_found")
    if path.is_dir():
        return _not_a_file(path, stat.S_IFDIR)
    return ImageError(f"'{path}' cannot be read ({exc.strerror or exc}). Check that it exists and is readable.",
                      code="not_found")


def _not_a_file(path: Path, mode: int) -> ImageError:
    kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a regular file")
    return ImageError(f"'{path}' is {kind}, not an image file. Give the path of one image file.", code="not_a_file")


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


def _orientation(im: Image.Image) -> int:
    try:
        return im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # unreadable EXIF should not cost the user an otherwise good photo
        return 1


def _upright(im: Image.Image) -> Image.Image:
    # exif_transpose copies even when there is nothing to undo; skip it on the fast path.
    return ImageOps.exif_transpose(im) if _orientation(im) in range(2, 9) else im


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


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def return_large_allocations_to_the_os(threshold: int = 1 << 20) -> bool:
    """Make glibc serve allocations of ``threshold`` bytes and more with mmap, always.

    By default glibc raises that threshold after the first large free (up to 32 MB), so a decoded photo's
    16 MB pixel blocks then come from per-thread heaps that keep the memory: ten concurrent 49 MP uploads
    left a server 1.3 GB larger; with a fixed threshold, 0.38 GB, given back afterwards. Process-wide;
    the web server calls it at start. A no-op where the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False
