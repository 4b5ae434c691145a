"""Typed errors raised in the core and translated at the edges (CLI exit code, HTTP 4xx JSON).

Every message says what happened and what to do about it. ``code`` is a stable machine-readable
identifier used by the HTTP API (``{"error": {"code": ..., "message": ...}}``). What each one is in HTTP
is the service's business (``service.http.STATUS``), not the core's.
"""

from __future__ import annotations


class StylelensError(Exception):
    """Base class. ``code`` is stable."""

    code = "stylelens_error"

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


class CatalogError(StylelensError):
    """The catalog folder or product feed cannot be read."""

    code = "bad_catalog"


class IndexNotFoundError(StylelensError):
    code = "index_not_found"


class IndexMismatchError(StylelensError):
    """The index was built with a different embedder than the one asked for."""

    code = "index_mismatch"


class ShoppersUnavailable(StylelensError):
    """users.sqlite (likes, views, uploads) cannot be opened or written."""

    code = "users_unavailable"


class IndexBusyError(StylelensError):
    """Another process is changing the index: one writer at a time."""

    code = "index_busy"


class IndexDamagedError(StylelensError):
    """A file of the index folder cannot be read as what it should be: name it, never answer from it."""

    code = "index_damaged"


class ProductNotFoundError(StylelensError):
    code = "unknown_product"


class InvalidArgumentError(StylelensError):
    """A filter, option or parameter value is not valid."""

    code = "bad_filter"


class WeightsError(StylelensError):
    """Model weights could not be obtained or do not fit the backbone."""

    code = "weights_unavailable"


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


class RayRunError(StylelensError):
    """A distributed indexing run failed; what it committed is kept."""

    code = "ray_failed"


class DatabaseUnavailable(StylelensError):
    """The index's database server (PostgreSQL) cannot be reached, refused the login or failed a request."""

    code = "database_unavailable"


class StorageError(StylelensError):
    """The disk or a database file failed under a read or write: full, read-only, or damaged."""

    code = "storage_error"


def storage_error(exc: BaseException, where: str = "the index") -> StorageError | None:
    """A disk or SQLite failure as one line that says what to do (None: not a storage failure). Disk full and
    read-only keep what was committed: the command resumes once the cause is gone."""
    import errno
    import sqlite3

    if isinstance(exc, StorageError):
        return exc
    text = str(exc).lower()
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT) or "database or disk is full" in text:
        return StorageError(f"The disk holding {where} is full: free some space (or use another folder) and run the same "
                            "command again; what was committed is kept.", code="disk_full")
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return StorageError(f"A file of {where} reached this system's file size limit (ulimit -f): raise the limit and run "
                            "the same command again; what was committed is kept.", code="disk_full")
    if isinstance(exc, OSError) and exc.errno == errno.EROFS or "readonly database" in text or "read-only" in text:
        return StorageError(f"{where[:1].upper() + where[1:]} is on a read-only file system: mount it writable (or copy it "
                            "to a writable folder) and run the same command again.", code="read_only")
    if isinstance(exc, OSError) and exc.errno == errno.EIO or "disk i/o error" in text:
        # SQLite says only "disk I/O error" for a write the system refused: a full disk, a file size limit, a failing disk.
        return StorageError(f"The disk holding {where} refused a read or write (I/O error): check its free space and the "
                            "file size limit (df, ulimit -f) and the disk itself, then run the same command again; what "
                            "was committed is kept.", code="io_error")
    if isinstance(exc, sqlite3.DatabaseError) and "locked" not in text and "busy" not in text:
        return StorageError(f"A database of {where} is damaged ({exc}): run `stylelens check` on it, restore it from a "
                            "backup, or rebuild it with `stylelens index`.", code="index_damaged")
    return None
