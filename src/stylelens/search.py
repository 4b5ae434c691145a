"""Nearest-neighbour search behind one interface.

A searcher answers ``search(queries, k, mask) -> (scores, rows)`` over the store's vector rows:
``queries`` is (Q, D) float32 unit vectors, ``mask`` an optional bool array over rows (True = may be
returned), and the answer is (Q, k) cosine scores and row numbers, best first, padded with -1 rows
when fewer than k rows qualify. Exact search is the embedded default; other methods register in
``SEARCHERS`` and are chosen by name.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from . import config
from .errors import InvalidArgumentError


class Searcher(Protocol):
    name: str

    def search(self, queries: np.ndarray, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...


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


class ExactSearcher:
    """Brute-force cosine (inner product of unit vectors) with BLAS over float32 rows."""

    name = "exact"

    def __init__(self, vectors: np.ndarray):
        self.vectors = vectors
        self._last: tuple[bytes, np.ndarray] | None = None

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """(Q, rows) cosines. One query image is searched several times in a row (self-match,
        identification, results, each with its own mask): the last matrix pass is kept for them."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.vectors.shape[1])
        key = queries.tobytes()
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        scores = queries @ self.vectors.T if len(self.vectors) else np.zeros((len(queries), 0), np.float32)
        scores.flags.writeable = False
        self._last = (key, scores)
        return scores

    def search(self, queries, k, mask=None):
        scores = self.scores(queries)
        if mask is not None:
            scores = np.where(mask, scores, np.float32(-np.inf))
        return top_k(scores, k)


def _milvus_searcher(store) -> Searcher:
    from .scale.milvus_store import MilvusSearcher

    return MilvusSearcher(store)


# name -> factory(store) -> Searcher. Optional methods (FAISS, Milvus) register themselves on import.
SEARCHERS: dict[str, Callable[[object], Searcher]] = {"exact": lambda store: ExactSearcher(store.vectors),
                                                      "milvus": _milvus_searcher}


def search_filtered(searcher: Searcher, queries: np.ndarray, k: int, mask: np.ndarray | None, filters=None):
    """``searcher.search``, also handing over the Filters the mask came from to a searcher that filters
    server-side (``server_filters``, e.g. Milvus), so it need not ship the mask."""
    if filters is not None and getattr(searcher, "server_filters", False):
        return searcher.search(queries, k, mask, filters=filters)
    return searcher.search(queries, k, mask)


def _ann_module():
    from . import ann  # registers "ann" (FAISS, extra 'ann'); imported late, like the searchers it offers

    return ann


def make_searcher(store, method: str | None = None) -> Searcher:
    method = method or config.get("search")
    if method == "auto" and getattr(store, "search_method", None):  # a store that keeps its vectors elsewhere
        method = store.search_method
    if method == "auto":
        use_ann = store.n_rows >= config.get("ann_threshold") and _ann_module().faiss_available()
        method = "ann" if use_ann else "exact"
    elif method == "ann":
        _ann_module()
    if method not in SEARCHERS:
        raise InvalidArgumentError(f"Unknown search method '{method}'. Choose one of: auto, {', '.join(SEARCHERS)}.", code="bad_option")
    return SEARCHERS[method](store)
