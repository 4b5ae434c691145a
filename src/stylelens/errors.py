"""Typed errors raised in the core and translated at the edges (CLI exit code, HTTP 4xx JSON).

Every message says what happened and what to do about it. ``code`` is a stable machine-readable
identifier used by the HTTP API (``{"error": {"code": ..., "message": ...}}``).
"""

from __future__ import annotations


class StylelensError(Exception):
    """Base class. ``code`` is stable; ``http_status`` is what the web API answers with."""

    code = "stylelens_error"
    http_status = 400

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class ImageError(StylelensError):
    """An input could not be used as an image.

    Codes: ``empty``, ``not_an_image``, ``unsupported_format``, ``truncated``, ``corrupt``,
    ``too_many_pixels`` (decompression bomb), ``too_large`` (bytes over the upload limit),
    ``not_found``.
    """

    code = "not_an_image"
    http_status = 422


class CatalogError(StylelensError):
    """The catalog folder or product feed cannot be read."""

    code = "bad_catalog"


class IndexNotFoundError(StylelensError):
    code = "index_not_found"
    http_status = 404


class IndexMismatchError(StylelensError):
    """The index was built with a different embedder than the one asked for."""

    code = "index_mismatch"
    http_status = 409


class ShoppersUnavailable(StylelensError):
    """users.sqlite (likes, views, uploads) cannot be opened or written."""

    code = "users_unavailable"
    http_status = 503


class IndexBusyError(StylelensError):
    """Another process is changing the index: one writer at a time."""

    code = "index_busy"
    http_status = 409


class IndexDamagedError(StylelensError):
    """A file of the index folder cannot be read as what it should be: name it, never answer from it."""

    code = "index_damaged"
    http_status = 503


class ProductNotFoundError(StylelensError):
    code = "unknown_product"
    http_status = 404


class InvalidArgumentError(StylelensError):
    """A filter, option or parameter value is not valid."""

    code = "bad_filter"
    http_status = 422


class WeightsError(StylelensError):
    """Model weights could not be obtained or do not fit the backbone."""

    code = "weights_unavailable"
    http_status = 503


def import_extra(module: str, package: str, extra: str, purpose: str):
    """Import an optional dependency, or raise MissingExtraError naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(package, extra, purpose) from exc


class MissingExtraError(StylelensError):
    """An optional dependency is not installed."""

    code = "missing_extra"
    http_status = 501

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'stylelens[{extra}]'"
        )
        self.package = package
        self.extra = extra


class VectorStoreUnavailable(StylelensError):
    """The external vector store (a Milvus server) cannot be reached or refused the request."""

    code = "vector_store_unavailable"
    http_status = 503


class RayRunError(StylelensError):
    """A distributed indexing run failed; what it committed is kept."""

    code = "ray_failed"
    http_status = 503


class DatabaseUnavailable(StylelensError):
    """The index's database server (PostgreSQL) cannot be reached, refused the login or failed a request."""

    code = "database_unavailable"
    http_status = 503
