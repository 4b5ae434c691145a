"""Where an index keeps its vectors: the ``VectorBackend`` protocol and the registry of backends.

The catalog (catalog.sqlite) gives every product a row; a backend stores and searches the vector of
each row. The front (``IndexStore``) calls a backend in an order that keeps crashes safe: ``add``
makes vectors durable *before* the catalog commit that makes their rows visible, and ``recover``
drops what a crash left uncommitted. Searches answer ``(scores, rows)``: (Q, k) cosines and row
numbers, best first, padded with -inf / -1 when fewer rows qualify.

A new vector store is one module with a class implementing the protocol, plus one entry in
``BACKENDS`` (the module is imported only when a location names it); it is done when
tests/test_conformance.py passes on it.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from ..errors import InvalidArgumentError

if TYPE_CHECKING:
    from .checkup import CheckedCatalog, Checkup, VectorRows


@runtime_checkable
class VectorBackend(Protocol):
    """Made with the opened front store (``Backend(store)``); ``prepare`` classmethod sets up a new index's place."""

    name: str  # what info and health report, e.g. "folder (exact)" or "milvus"
    server_filters: bool  # True: search() can run the filters itself instead of taking a row mask

    @classmethod
    def accepts(cls, location: str | None) -> bool:
        """Whether the ``store`` location names this backend."""

    @classmethod
    def place(cls, location: str | None):
        """What identifies where the vectors live (two locations with the same place are the same store)."""

    @classmethod
    def prepare(cls, where, manifest: dict, location: str | None, settings) -> None:
        """A new index at the database location ``where``: claim the place, name it in ``manifest["vectors"]``."""

    @classmethod
    def check(cls, checkup: "Checkup", database, catalog: "CheckedCatalog") -> "VectorRows | None":
        """``stylelens check``: hold the vectors against the catalog's products (``checkup.products``), adding
        findings to ``checkup`` (its own repairs now when ``checkup.repair`` and they cannot wait, the rest in
        the answer's ``repair``); answer the vectors by row for the length and re-embedding checks, None when
        they cannot be read."""

    def add(self, start_row: int, records: list[dict], vectors: np.ndarray) -> None:
        """Store vectors for rows start_row.. (durable when this returns; not yet visible)."""

    def committed_meta(self) -> dict:
        """catalog meta changes that go with the commit of a batch (e.g. clear a pending mark)."""

    def recover(self) -> None:
        """On opening for writing: drop vectors of a batch whose catalog commit never happened."""

    def delete(self, ids: list[str], rows: np.ndarray) -> None: ...

    def update_fields(self, records: list[dict], before: dict[str, dict]) -> None:
        """Feed fields changed (price, stock, labels): copy those a server-side filter reads."""

    def get(self, rows: np.ndarray, columns) -> np.ndarray:
        """(len(rows), dim) float32 vectors of these rows of the view ``columns``; dead rows read as zeros."""

    def all_vectors(self) -> np.ndarray:
        """(n_rows, dim): every row, read on purpose (evaluation, export)."""

    def search(self, queries: np.ndarray, k: int, mask: np.ndarray | None = None, filters=None,
               columns=None) -> tuple[np.ndarray, np.ndarray]:
        """Top k rows of the view ``columns`` (the catalog's rows at one moment) by cosine, among rows where
        ``mask`` is True (all live rows when None)."""

    def compact(self) -> int:
        """Drop dead rows; answers how many went."""

    def maintain(self) -> None:
        """Bring derived structures (an ANN file, sealed segments) up to date after writes."""

    def changed(self) -> None:
        """The catalog changed: forget what was derived from the old rows."""

    def close(self) -> None: ...


# kind -> "module:Class". ``accepts(location)`` on the class says whether a location names it.
BACKENDS: dict[str, str] = {
    "folder": "stylelens.index.folder:FolderBackend",
    "milvus": "stylelens.index.milvus:MilvusBackend",
}


def backend_class(kind: str):
    module, _, name = BACKENDS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def kind_of(location: str | None) -> str:
    """The backend kind a location names: None/''/'local' is the index folder itself."""
    for kind in BACKENDS:
        if backend_class(kind).accepts(location):
            return kind
    raise InvalidArgumentError(f"Unknown --store '{location}'. Use local, milvus-lite:///path/to/file.db or "
                               "milvus://HOST:PORT/COLLECTION.", code="bad_option")


def open_backend(kind: str, store) -> VectorBackend:
    """The backend of an opened ``IndexStore`` (it reads the store's catalog, columns and settings)."""
    return backend_class(kind)(store)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best k of each row of a (Q, N) score matrix, sorted, -inf entries reported as row -1."""
    q, n = scores.shape
    kk = min(k, n)
    if kk == 0:
        return np.full((q, k), -np.inf, np.float32), np.full((q, k), -1, np.int64)
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    rows = np.take_along_axis(part, order, axis=1).astype(np.int64)
    best = np.take_along_axis(part_scores, order, axis=1).astype(np.float32)
    rows[~np.isfinite(best)] = -1
    if kk < k:
        best = np.pad(best, ((0, 0), (0, k - kk)), constant_values=-np.inf)
        rows = np.pad(rows, ((0, 0), (0, k - kk)), constant_values=-1)
    return best, rows


def all_scores(vectors: np.ndarray, queries: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """(Q, N) cosines of every row to each query, in one pass over the rows (``product``). ``rows`` (sorted row
    numbers): only those, (Q, len(rows)), each score the same float as the whole pass gives it."""
    queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, vectors.shape[1])
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return np.zeros((len(queries), 0), np.float32)
    if not len(vectors):
        return np.zeros((len(queries), 0), np.float32)
    return product(vectors, queries, rows)


# From this many rows the product runs as two single-threaded halves at once (``product``); fewer: one BLAS call.
PARALLEL_ROWS = 8192
# Rows copied together out of the catalog's matrix for a product on some of its rows (``rows``): 512 x 1280-d
# float32 is 2.6 MB, read again from the cache by the product. 256-1024 were alike; 2048-4096 slower.
GATHER_ROWS = 512


def product(vectors: np.ndarray, queries: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """(Q, N) ``queries @ vectors.T`` for a catalog's rows (``rows``: only those rows, (Q, len(rows))). A large
    catalog's: torch's single-threaded product on each half of the rows, both halves at once, the rows read in place
    (no copy of a memory-mapped matrix). OpenBLAS multiplies a few queries by the whole matrix 3-4x slower than one
    query, and after any call its threads spin for a while, starving the next OpenVINO inference on 2 cores:
    measured on 40 street photos, quiet 2-core AMD EPYC Zen 4, an outfit query right after a whole-frame one 100-107
    ms with OpenBLAS's product, 74-76 ms without; 5 queries x 39,665 x 1280 in 32-38 ms against 60-79 ms busy, the
    same quiet. One query's pass alone is slower (16 ms against OpenBLAS's 8.5, quiet), which the spin saved pays
    for (docs/shop-the-look.md). Some rows of a large catalog: copied ``GATHER_ROWS`` at a time into a buffer the
    product reads from the cache, so a pass over a garment group's rows reads only those rows, and each row's score
    is the very float the whole pass gives it (the same product, row by row: tests/test_scores.py)."""
    small = len(vectors) < PARALLEL_ROWS or not vectors.flags.c_contiguous or vectors.dtype != np.float32
    if rows is not None and (small or len(queries) < 2 or len(rows) < 2):
        # The rows picked out of the whole pass, the same floats by construction: a small catalog's pass is cheap,
        # and one query's product (or one row's) takes another path in the BLAS whose last row of an odd count
        # comes out a rounding apart, so only two or more queries on two or more rows are gathered.
        return np.ascontiguousarray(product(vectors, queries)[:, rows])
    if small:
        return np.ascontiguousarray(queries @ vectors.T)
    return _parallel_product(vectors, queries, rows)


_POOL = None
_BUFFERS: dict[tuple, list] = {}  # (dim, GATHER_ROWS, parts) -> a gather buffer per part, kept for the next pass
# One product at a time: it uses every core already, and torch's thread count is one setting for the process.
_PRODUCT_LOCK = threading.Lock()


def _parallel_product(vectors: np.ndarray, queries: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    import torch

    global _POOL
    with warnings.catch_warnings():  # a read-only memory map: torch only reads it
        warnings.simplefilter("ignore", UserWarning)
        matrix = torch.from_numpy(np.asarray(vectors))
    q = torch.from_numpy(queries).T
    n = len(vectors) if rows is None else len(rows)
    out = np.empty((n, len(queries)), np.float32)
    picked = None if rows is None else torch.from_numpy(rows)
    with _PRODUCT_LOCK:
        threads = torch.get_num_threads()
        parts = max(1, min(threads, 8, n // 1024 or 1))
        bounds = np.linspace(0, n, parts + 1).astype(int)
        if _POOL is None:
            _POOL = ThreadPoolExecutor(8, thread_name_prefix="catalog-product")
        key = (vectors.shape[1], GATHER_ROWS, parts)
        if picked is not None and key not in _BUFFERS:
            _BUFFERS[key] = [torch.empty((GATHER_ROWS, vectors.shape[1])) for _ in range(parts)]
        buffers = None if picked is None else _BUFFERS[key]

        def part(i: int) -> None:
            a, b = bounds[i], bounds[i + 1]
            if picked is None:
                torch.mm(matrix[a:b], q, out=torch.from_numpy(out[a:b]))
                return
            buffer = buffers[i]
            blocks = np.linspace(a, b, -(-(b - a) // GATHER_ROWS) + 1).astype(int)  # even sizes: never a lone row
            for start, end in zip(blocks[:-1], blocks[1:]):
                block = buffer[:end - start]
                torch.index_select(matrix, 0, picked[start:end], out=block)
                torch.mm(block, q, out=torch.from_numpy(out[start:end]))

        torch.set_num_threads(1)  # each part on one thread: the parts are the parallelism
        try:
            list(_POOL.map(part, range(parts)))
        finally:
            torch.set_num_threads(threads)
    return np.ascontiguousarray(out.T)


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force cosine (inner product of unit vectors) with BLAS over float32 rows."""
    scores = all_scores(vectors, queries)
    if mask is not None:
        scores = np.where(mask, scores, np.float32(-np.inf))
    return top_k(scores, k)
