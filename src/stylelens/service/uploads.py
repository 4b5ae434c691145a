"""A shopper's photo from the request body, into memory only, with the size limit enforced while reading.

Starlette's form parser spools file parts over 1 MB to a temporary file on disk; uploads here never
touch the disk. The body is streamed through python-multipart's parser into a bytearray and refused
as soon as it passes the limit, so an oversized upload costs at most ``max_bytes`` of memory. The
client's file name is never read.
"""

from __future__ import annotations

import asyncio

from dataclasses import dataclass, field

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from ..errors import ImageError
from .http import bad

IMAGE_FIELD = "image"
MAX_FIELDS = 32
MAX_FIELD_BYTES = 4096
# Multipart framing (boundaries, part headers, the small option fields) allowed on top of the photo.
FRAMING_BYTES = 64 * 1024
RAW_TYPES = (b"application/octet-stream", b"")


@dataclass
class Upload:
    image: bytes | None
    fields: dict[str, str] = field(default_factory=dict)


def too_large(max_bytes: int, size: int | None = None) -> ImageError:
    """413 ``too_large``; ``size`` when the client declared it, else the body simply ran past the limit."""
    what = f"The photo is {human_size(size)}, over" if size is not None else "The photo is over"
    return bad(f"{what} the {human_size(max_bytes)} upload limit. Upload a smaller photo (resize it or save it as JPEG).",
               code="too_large", status=413, kind=ImageError)


def human_size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / 1024 / 1024:.1f} MB"
    return f"{n / 1024:.0f} KB" if n >= 1024 else f"{n} bytes"


async def body_chunks(request: Request, stall_s: float, total_s: float | None = None):
    """The request body as it arrives; a client that sends nothing for ``stall_s`` seconds, or is still
    sending after ``total_s`` (default: setting ``upload_total_s``), is answered 408: a slow, half-sent
    upload must not hold a worker and its buffer for ever, nor a client dripping a byte just under the
    stall limit."""
    if total_s is None:
        total_s = request.app.state.settings.upload_total_s
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total_s
    chunks = request.stream().__aiter__()
    while True:
        left = deadline - loop.time()
        try:
            if left <= 0:
                raise asyncio.TimeoutError
            chunk = await asyncio.wait_for(chunks.__anext__(), min(stall_s, left))
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            if loop.time() >= deadline:
                raise bad(f"The upload took longer than {total_s:g} s in all. Check the connection and send it again.",
                          code="upload_timeout", status=408) from None
            raise bad(f"The upload stalled: nothing arrived for {stall_s:g} s. Check the connection and send it again.",
                      code="upload_timeout", status=408) from None
        yield chunk


async def read_upload(request: Request, max_bytes: int, stall_s: float = 30.0) -> Upload:
    """The photo and the text fields of a multipart form, or a raw image body (``Content-Type: image/*``)."""
    ctype, params = parse_options_header(request.headers.get("content-type"))
    ctype = ctype.lower()
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + FRAMING_BYTES:
        raise too_large(max_bytes, int(declared))
    if ctype == b"multipart/form-data":
        return await _read_multipart(request, params.get(b"boundary"), max_bytes, stall_s)
    if ctype.startswith(b"image/") or ctype in RAW_TYPES:
        body = bytearray()
        async for chunk in body_chunks(request, stall_s):
            body += chunk
            if len(body) > max_bytes:
                raise too_large(max_bytes)
        return Upload(bytes(body))
    raise bad(f"The request has Content-Type {ctype.decode('latin-1')!r}. Send the photo as multipart/form-data "
              f"in the field '{IMAGE_FIELD}', or as the raw body with an image/* Content-Type.",
              code="unsupported_media_type", status=415)


class _FormReader:
    """python-multipart callbacks collecting one image part and a few small text fields."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.image: bytearray | None = None
        self.fields: dict[str, str] = {}
        self.ended = False
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name: str | None = None
        self._data = bytearray()

    def callbacks(self) -> dict:
        return {"on_part_begin": self.on_part_begin, "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
                "on_headers_finished": self.on_headers_finished, "on_part_data": self.on_part_data,
                "on_part_end": self.on_part_end, "on_end": self.on_end}

    def on_part_begin(self) -> None:
        self._disposition, self._name, self._data = b"", None, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        # Only the part's name is used; a 'filename' the client sends is ignored on purpose.
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if name is None:
            raise bad("A part of the form has no name. Send the photo in the field 'image'.", code="bad_request")
        self._name = name.decode("utf-8", "replace")
        if self._name != IMAGE_FIELD and b"filename" in options:
            raise bad(f"The form has a file in the field '{self._name}'. Send the photo in the field '{IMAGE_FIELD}'.",
                      code="no_image")
        if self._name == IMAGE_FIELD:
            if self.image is not None:
                raise bad("The form has more than one 'image'. Send one photo per request.", code="bad_request")
            self.image = bytearray()
            self._data = self.image
        elif len(self.fields) >= MAX_FIELDS:
            raise bad(f"The form has more than {MAX_FIELDS} fields.", code="bad_request")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]
        if self._name == IMAGE_FIELD:
            if len(self._data) > self.max_bytes:
                raise too_large(self.max_bytes)
        elif len(self._data) > MAX_FIELD_BYTES:
            raise bad(f"The form field '{self._name}' is longer than {MAX_FIELD_BYTES} bytes. "
                      f"Send the photo in the field '{IMAGE_FIELD}'.", code="bad_request")

    def on_part_end(self) -> None:
        if self._name != IMAGE_FIELD:
            self.fields[self._name] = self._data.decode("utf-8", "replace")

    def on_end(self) -> None:
        self.ended = True


async def _read_multipart(request: Request, boundary: bytes | None, max_bytes: int, stall_s: float) -> Upload:
    if not boundary:
        raise bad("The multipart request has no boundary in its Content-Type. Let your HTTP client build the form.",
                  code="bad_request", status=400)
    reader = _FormReader(max_bytes)
    total = 0
    try:
        parser = MultipartParser(boundary, reader.callbacks())
        async for chunk in body_chunks(request, stall_s):
            total += len(chunk)
            if total > max_bytes + FRAMING_BYTES:
                raise too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise bad(f"The request body is not valid multipart/form-data ({exc}). Let your HTTP client build the form.",
                  code="bad_request", status=400) from None
    if not reader.ended:
        raise bad("The upload was cut short before the end of the form. Send it again.", code="bad_request", status=400)
    return Upload(None if reader.image is None else bytes(reader.image), reader.fields)
