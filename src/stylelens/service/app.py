"""The web page and the HTTP API over one opened index: ``create_app(index_or_path, settings) -> FastAPI``.

Routes only translate: request -> library call (in a worker thread, since inference is CPU-bound and
must not block the event loop) -> public JSON. The model and index are loaded once, here.
"""

from __future__ import annotations

import inspect
import io
import json
import sqlite3
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..intake.images import return_large_allocations_to_the_os
from ..item.localise import item_crops
from ..query import Index, open_index
from ..query.filters import filters_from_text
from ..query.options import OPTIONS
from ..errors import StylelensError, storage_error
from ..settings import Settings, settings_or_default
from .auth import cookie_shopper, issue_cookie, shopper_of, shopper_secret
from .http import bad, current_index, error_response, install_error_handlers, log, parse_options, public_product, public_result
from .routes_quality import router as shopper_router
from .schemas import Facets, Health, Product, SearchResponse, WordFilters
from .uploads import IMAGE_FIELD, read_upload

STATIC = Path(__file__).parent / "static"
# Every response carries a CSP and nosniff (SecurityHeaders): the page its own; the API docs theirs (Swagger UI
# starts with an inline script); everything else (JSON, pictures, errors) may run and embed nothing at all, so a
# catalog file that is really HTML+script opened directly is inert.
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "frame-ancestors 'none'; base-uri 'none'")
INERT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox"
DOCS_PATHS = ("/docs", "/redoc")
PAGE_HEADERS = {"Cache-Control": "no-cache"}
# Pictures the browsers show as they are; any other format Pillow decodes is re-encoded as PNG.
WEB_IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}

ERROR_SCHEMA = {"description": "An error, in the one error shape",
                "content": {"application/json": {"example": {"error": {"code": "not_an_image",
                                                                       "message": "The file is not an image. ..."}}}}}
_OPTION_DOCS = {name: option.doc for name, option in OPTIONS.items()}  # the search options' table (query.options)
SEARCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [IMAGE_FIELD],
                    "properties": {IMAGE_FIELD: {"type": "string", "format": "binary",
                                                 "description": "The photo: JPEG, PNG, WebP, GIF, BMP or TIFF."},
                                   **{name: {"type": "string", "description": doc} for name, doc in _OPTION_DOCS.items()}},
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def create_app(index_or_path, settings: Settings | None = None) -> FastAPI:
    """The FastAPI app serving ``index_or_path``: an opened ``Index`` (which keeps its own settings, and its
    own choice of micro-batching) or an index folder, opened with ``settings`` (default: this process's
    environment), concurrent searches embedded together (setting ``batch_wait_ms``; models.batching)."""
    if isinstance(index_or_path, Index):
        index = index_or_path
        settings = index.settings if settings is None else settings
    else:
        settings = settings_or_default(settings)
        index = open_index(index_or_path, settings, batch_wait_ms=settings.batch_wait_ms)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # The first inference is slow (precision auto decided, compiles, kernel selection): paid before the first shopper.
        await run_in_threadpool(index.embedder.warm)
        # ... and for finding items in a photo (OpenCV's first call loads its kernels and its own BLAS).
        await run_in_threadpool(item_crops, Image.new("RGB", (64, 48), (90, 120, 60)))
        blas = _one_blas_thread()  # after the warm-up: it limits the BLAS libraries loaded by then
        yield
        if blas is not None:
            blas.restore_original_limits()

    return_large_allocations_to_the_os()  # bounded memory under large uploads (see images)
    app = _fastapi(lifespan)
    app.state.index = index
    app.state.settings = settings
    app.state.shopper_secret = shopper_secret(settings, index.store.database)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings))
    install_error_handlers(app)
    app.include_router(api)
    app.include_router(shopper_router)
    app.include_router(pages)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    build = app.build_middleware_stack
    # Outermost, around Starlette's own error middleware: a 500 and a refused host get the headers too.
    app.build_middleware_stack = lambda: SecurityHeaders(build())
    return app


class SecurityHeaders:
    """ASGI middleware: X-Content-Type-Options: nosniff, a Content-Security-Policy and Referrer-Policy on every
    response (the route's own CSP, if it set one, stays)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        csp = PAGE_CSP if path == "/" else DOCS_CSP if path.startswith(DOCS_PATHS) else INERT_CSP

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in ((b"x-content-type-options", b"nosniff"), (b"content-security-policy", csp.encode()),
                                    (b"referrer-policy", b"same-origin")):
                    if name not in present:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def _fastapi(lifespan) -> FastAPI:
    meta = dict(title="stylelens", version=__version__, lifespan=lifespan,
                description="Upload a photo of a garment; get what it is and similar products to buy.")
    try:  # API docs with their assets served locally, so /docs works offline
        from fastapi_offline import FastAPIOffline
    except ImportError:
        return FastAPI(**meta)
    return FastAPIOffline(**meta)


def _one_blas_thread():
    """Requests run in parallel threads, each with its own matrix product (exact search). OpenBLAS's
    threads on top of that oversubscribe the cores and spin: measured on 2 cores, 20 concurrent
    searches over 3,000 products took 370 ms each instead of 8 ms. The server limits BLAS to one
    thread per call for as long as it runs; parallelism comes from the requests."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        log.warning("threadpoolctl is not installed: concurrent searches may oversubscribe the CPU (pip install threadpoolctl)")
        return None
    return threadpool_limits(limits=1, user_api="blas")


def _options(request: Request, form: dict | None = None):
    raw = dict(request.query_params)
    raw.update(form or {})
    return parse_options(raw)


def _query_params(func):
    """Document the option fields as query parameters without letting FastAPI parse them (parse_options does)."""
    sig = inspect.signature(func)
    params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=str | None,
                                 default=Query(None, description=doc)) for name, doc in _OPTION_DOCS.items()]
    func.__signature__ = sig.replace(parameters=params)
    return func


api = APIRouter(prefix="/api", responses={400: ERROR_SCHEMA, 404: ERROR_SCHEMA, 413: ERROR_SCHEMA, 422: ERROR_SCHEMA})


@api.post("/search", openapi_extra=SEARCH_BODY, response_model=SearchResponse, summary="Identify the item in a photo and recommend products")
async def search(request: Request, index: Index = Depends(current_index)):
    """Multipart form with the photo in ``image`` and any of the options as fields (or query parameters),
    or the raw photo as the body with an ``image/*`` Content-Type and the options as query parameters."""
    settings = request.app.state.settings
    upload = await read_upload(request, settings.max_upload_bytes, settings.upload_stall_s)
    if upload.image is None:
        raise _no_image()
    k, filters, extras = _options(request, upload.fields)
    if "user" in extras:  # a personal search records the upload in the shopper's history: a write
        extras["user"] = shopper_of(request, extras["user"], write=True)
    # Bytes, not a decoded picture: the library hashes them to recognise a catalog image sent as the query.
    result = await run_in_threadpool(index.search, upload.image, k, **filters, **extras)
    return public_result(result)


def _no_image():
    return bad(f"No photo in the request. Send it as the multipart form field '{IMAGE_FIELD}' "
               "(or as the raw body with an image/* Content-Type).", code="no_image")


@api.get("/products/{product_id}", response_model=Product, summary="One product")
async def product(product_id: str, index: Index = Depends(current_index)):
    return public_product(await run_in_threadpool(index.product, product_id))


@api.get("/products/{product_id}/similar", response_model=SearchResponse, summary="More like this: products similar to a catalog product")
@_query_params
async def similar(request: Request, product_id: str, index: Index = Depends(current_index), **_documented):
    k, filters, extras = _options(request)
    if "user" in extras:
        extras["user"] = shopper_of(request, extras["user"])
    if "box" in extras:
        raise bad("box picks a region of an uploaded photo; 'more like this' searches with the product's own picture.",
                  code="unsupported_option")
    return public_result(await run_in_threadpool(index.similar, product_id, k, **filters, **extras))


LOOPBACK_NAMES = ["localhost", "127.0.0.1", "::1", "[::1]"]


def allowed_hosts(settings: Settings) -> list[str]:
    if settings.allowed_hosts:
        return [h.strip() for h in settings.allowed_hosts.split(",") if h.strip()]
    return LOOPBACK_NAMES if _loopback(settings.host) else ["*"]


def _loopback(address: str) -> bool:
    return address in ("localhost", "::1") or address.startswith("127.")


UNHEALTHY = {"description": "Not serving: the reason, in one line",
             "content": {"application/json": {"example": {"status": "unhealthy", "version": __version__,
                                                          "reason": "A database of the index is damaged ...",
                                                          "error": {"code": "index_damaged", "message": "..."}}}}}


@api.get("/health", response_model=Health, response_model_exclude_unset=True, summary="What the server is serving",
         responses={503: UNHEALTHY})
async def health(request: Request, index: Index = Depends(current_index)):
    """What the page needs for everyone; the model, runtime and storage detail only for a client on this
    machine (it tells an attacker what to probe)."""
    try:
        status = await run_in_threadpool(_read_probe, index)
    except (StylelensError, OSError, sqlite3.DatabaseError) as exc:
        # Not serving: the reason for everyone (what is broken, what to do; no paths), 503 for load balancers.
        error = exc if isinstance(exc, StylelensError) else storage_error(exc)
        if error is None:
            raise
        reason = error.message.replace(str(index.path), "the index folder")  # the server's paths stay on the server
        return JSONResponse({"status": "unhealthy", "version": __version__, "reason": reason,
                             "error": {"code": error.code, "message": reason}}, status_code=503)
    products = status["products"]
    public = {"status": "ok", "version": __version__, "products": products,
              "max_upload_bytes": request.app.state.settings.max_upload_bytes,
              "indexing": _indexing(request.app, products), "shopper_tokens": bool(request.app.state.settings.auth_secret)}
    if not _loopback(request.client.host if request.client else ""):
        return public
    return {**status, **public}


def _read_probe(index: Index) -> dict:
    """A real read, cheap: the catalog's current view, one product's row from the database and its vector
    from the store. A damaged database or vectors file fails here, not in the next shopper's search."""
    import numpy as np

    status = index.status()
    columns = index.store.columns
    live = np.flatnonzero(columns.live)
    if len(live):
        row = int(live[0])
        index.store.product(str(columns.ids[row]))
        vector = index.store.vectors([row], columns)
        if vector.shape != (1, index.store.dim) or not np.isfinite(vector).all():
            from ..errors import IndexDamagedError

            raise IndexDamagedError("The index's vectors cannot be read as they should be: run `stylelens check` on "
                                    "the index and repair or rebuild it.")
    return status


def _indexing(app: FastAPI, products: int) -> dict | None:
    """While `stylelens demo` still indexes the catalog it serves: how far it got (None when done)."""
    expected = getattr(app.state, "expected_products", None)
    if expected is None or products >= expected:
        return None
    return {"indexed": products, "expected": expected}


@api.get("/filters", response_model=WordFilters, summary='Words to filters: "red women under 50 sneakers"')
async def words_to_filters(text: str = Query("", max_length=200, description="What the shopper typed."),
                           index: Index = Depends(current_index)):
    filters, unknown = await run_in_threadpool(filters_from_text, text, index.store.columns)
    return {"filters": filters, "unknown": unknown}


@api.get("/facets", response_model=Facets, summary="Values for the filter controls")
async def facets(index: Index = Depends(current_index)):
    return await run_in_threadpool(index.facets)


pages = APIRouter()


@pages.get("/images/{product_id}", summary="A catalog product's image", responses={404: ERROR_SCHEMA})
async def product_image(product_id: str, request: Request, index: Index = Depends(current_index)):
    # The id is looked up in the catalog; only the path stored there is ever opened.
    path = await run_in_threadpool(index.image_path, product_id)
    if not path.is_file():
        return error_response(404, "image_missing", f"The image of product '{product_id}' is missing on the server. "
                                                    "Ask the shop to re-index its catalog.")
    try:
        return await run_in_threadpool(_picture, path, request.app.state.settings.max_pixels)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        return error_response(404, "image_unreadable", f"The image of product '{product_id}' is not a picture the server "
                                                       "can show. Ask the shop to check its catalog and re-index it.")


def _picture(path: Path, max_pixels: int) -> Response:
    """A catalog file served as what it decodes as, never by its name: a web format is sent as it is with its own
    image/* type (nosniff keeps browsers to it); any other format Pillow reads is re-encoded as PNG."""
    headers = {"Cache-Control": "public, max-age=3600"}
    with Image.open(path) as picture:
        media_type = WEB_IMAGE_TYPES.get(picture.format or "")
        if media_type is not None:
            return FileResponse(path, media_type=media_type, headers=headers)
        if picture.width * picture.height > max_pixels:
            raise Image.DecompressionBombError("too many pixels")
        out = io.BytesIO()
        picture.convert("RGBA" if "A" in picture.getbands() else "RGB").save(out, "PNG")
    return Response(out.getvalue(), media_type="image/png", headers=headers)


@pages.get("/", include_in_schema=False)
async def page(request: Request):
    response = HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"), headers=PAGE_HEADERS)
    if cookie_shopper(request) is None:
        issue_cookie(request, response)  # the page's anonymous shopper, before any script runs
    return response


# What `stylelens serve --workers N` hands each worker, as one JSON value: the index and the settings it built.
SERVE_ENV = "STYLELENS_SERVE"


def serve_value(index, settings: Settings) -> str:
    return json.dumps({"index": str(index), "settings": settings.to_json()})


def app_from_environment() -> FastAPI:
    """The app of one worker of `stylelens serve --workers N`: the command's index and settings, exactly as it
    built them (one value in the environment the workers inherit; no setting is read again from the environment)."""
    import os

    value = json.loads(os.environ[SERVE_ENV])
    return create_app(value["index"], Settings.from_json(value["settings"]))


__all__ = ["create_app", "app_from_environment"]
