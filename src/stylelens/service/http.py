"""The HTTP edge: one JSON error shape, public product dicts, and request options -> library arguments.

Routers (app.py, routes_quality.py) share these so every endpoint speaks the same dialect:
errors are ``{"error": {"code": ..., "message": ...}}`` and products never show local paths.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .. import errors
from ..errors import InvalidArgumentError, StylelensError, storage_error
from ..query import Index, SearchResult
from ..query.options import ALIASES, OPTIONS

log = logging.getLogger("stylelens.service")

# Fields of a product that belong to the server, not to the shopper.
PRIVATE_FIELDS = frozenset({"image_path", "image_sha256", "extra"})
OPTION_FIELDS = tuple(OPTIONS)  # the form and query fields: the search options' table (query.options)

def current_index(request: Request) -> Index:
    """The index opened at start-up (use as a FastAPI dependency)."""
    return request.app.state.index


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


# The HTTP status of each kind of error, decided here at the edge: the core says what happened, not how HTTP says
# it. The first class of an error's own classes (its MRO) found here wins; an error the edge makes itself may name
# its status (``bad(..., status=413)``).
STATUS: dict[type, int] = {
    errors.ImageError: 422, errors.InvalidArgumentError: 422, errors.CatalogError: 400,
    errors.IndexNotFoundError: 404, errors.ProductNotFoundError: 404,
    errors.IndexMismatchError: 409, errors.IndexBusyError: 409,
    errors.MissingExtraError: 501,
    errors.ShoppersUnavailable: 503, errors.IndexDamagedError: 503, errors.WeightsError: 503,
    errors.VectorStoreUnavailable: 503, errors.RayRunError: 503, errors.DatabaseUnavailable: 503,
    errors.StorageError: 503,
    errors.StylelensError: 400,
}


def http_status(exc: StylelensError) -> int:
    named = getattr(exc, "edge_status", None)
    if named is not None:
        return named
    return next(STATUS[kind] for kind in type(exc).__mro__ if kind in STATUS)


def bad(message: str, code: str = "bad_filter", status: int | None = None, kind=InvalidArgumentError) -> StylelensError:
    """An error the HTTP edge itself finds (a request it cannot use), with its status when not its kind's."""
    exc = kind(message, code=code)
    exc.edge_status = status
    return exc


# ---- products and results ----------------------------------------------------------------
def image_url(product_id: str) -> str:
    return "/images/" + quote(str(product_id), safe="")


def public_product(product: dict) -> dict:
    out = {k: v for k, v in product.items() if k not in PRIVATE_FIELDS}
    if isinstance(out.get("price"), float) and not math.isfinite(out["price"]):
        out["price"] = None
    out["image_url"] = image_url(product["id"])
    # A product with several pictures (views): every one, main first, and the one that matched the query.
    views = out.pop("views", None)
    if views:
        out["image_urls"] = [image_url(v) for v in views]
    if out.get("matched_view"):
        out["matched_image_url"] = image_url(out.pop("matched_view"))
    return out


def public_result(result: SearchResult) -> dict:
    body = result.to_dict()
    body["results"] = [public_product(p) for p in result.products]
    if "items" in body:
        body["items"] = [dict(item, results=[public_product(p) for p in item["results"]]) for item in body["items"]]
    return body


# ---- request options -----------------------------------------------------------------------
def parse_options(raw: dict[str, str], *, strict: bool = True) -> tuple[int | None, dict, dict]:
    """Text options from a form or query string -> (k, filters, other keyword arguments), each value parsed
    by its row of ``query.options.OPTIONS``. The other arguments (user, diversity, collapse, box) are passed to
    Index.search / similar only when given; the library checks them before any work.

    Empty values count as not given (HTML forms send them). With ``strict``, unknown names are an
    error, so a misspelt filter is not silently ignored.
    """
    values: dict[str, str] = {}
    for name, value in raw.items():
        name = ALIASES.get(name, name)
        if name.startswith("_"):  # cache-busting parameters
            continue
        if name not in OPTIONS:
            if strict:
                raise bad(f"Unknown field '{name}'. Known fields: {', '.join(OPTION_FIELDS)}.", code="bad_request")
            continue
        value = value.strip() if isinstance(value, str) else value
        if value not in (None, ""):
            values[name] = value
    parsed = {name: OPTIONS[name].parse(name, value) for name, value in values.items()}
    k = parsed.pop("k", None)
    filters = {name: value for name, value in parsed.items() if OPTIONS[name].kind == "filter"}
    extras = {name: value for name, value in parsed.items() if OPTIONS[name].kind != "filter"}
    return k, filters, extras


# ---- error handlers -----------------------------------------------------------------------
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
               415: "unsupported_media_type"}


def install_error_handlers(app: FastAPI) -> None:
    """Every failure leaves as the one JSON error shape; bad input is always 4xx, never a trace."""

    @app.exception_handler(StylelensError)
    async def _stylelens(request: Request, exc: StylelensError):
        return error_response(http_status(exc), exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        problems, fields = [], []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form")]
            fields.append(loc[-1] if loc else "")
            where = f"'{'.'.join(loc)}'" if loc else "the request body"
            problems.append(f"{where}: {err.get('msg', 'is not valid')}")
        code = "bad_filter" if fields and all(f in OPTION_FIELDS for f in fields) else "bad_request"
        return error_response(422, code, "The request is not valid: " + "; ".join(problems) + ". See /docs for the API.")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        if exc.status_code == 404:
            message = f"There is nothing at {request.url.path}. The web page is at / and the API is described at /docs."
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "see /docs")
            message = f"{request.method} is not allowed on {request.url.path}. Allowed: {allowed}."
        else:
            message = str(exc.detail)
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect):
        # The shopper closed the page or lost the network mid-upload: nothing to answer, nothing broke.
        log.info("client went away during %s %s", request.method, request.url.path)
        return error_response(400, "client_disconnected", "The upload was interrupted.")

    async def _storage(request: Request, exc: Exception):
        storage = storage_error(exc)
        if storage is None:
            return await _unexpected(request, exc)
        # A damaged database, a full or read-only disk: 503 in one line (the log has the detail for the shop).
        log.error("storage failure on %s %s: %s", request.method, request.url.path, exc)
        return error_response(http_status(storage), storage.code,
                              "The shop's catalog cannot be read right now (its storage failed). Try again later; "
                              "the shop's server log says what to repair.")

    app.add_exception_handler(sqlite3.DatabaseError, _storage)
    app.add_exception_handler(OSError, _storage)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # A server bug, not bad input: log the trace here, show the user nothing of it.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error",
                              "Something went wrong on the server. Try again; if it keeps happening, tell the shop.")
