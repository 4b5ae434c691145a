"""Stage 5, filter: which of the rows found may be shown. The shopper's filters (one row mask over the
catalog, ``query.filters``, made before any search so a bad value fails first), minus the rows asked to be
left out and the query picture itself, which comes first instead when ``exact_first`` (and it passes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..request import SearchRequest
from .neighbours import Neighbours


@dataclass
class Candidates:
    scores: np.ndarray  # the rows found that may be shown, best first
    rows: np.ndarray
    exact: np.ndarray  # the query picture's own rows shown first (exact_first)
    mask: np.ndarray  # every catalog row that may be shown (for a second pass)


def filter_found(near: Neighbours, allowed: np.ndarray, request: SearchRequest) -> Candidates:
    """``allowed``: ``request.filters.mask(columns)``, computed once per call (it is not changed here)."""
    mask = allowed.copy()
    exact = near.self_rows[mask[near.self_rows]] if request.exact_first else np.zeros(0, np.int64)
    mask[np.asarray(request.exclude_rows, dtype=np.int64)] = False
    mask[near.self_rows] = False
    scores, rows = near.others()
    passing = mask[rows]
    return Candidates(scores[passing], rows[passing], exact, mask)


def within_types(columns, allowed: np.ndarray, types) -> np.ndarray:
    """``allowed`` narrowed to the catalog types an item is searched within (a worn garment's group: a top among
    tops). None: every type, as today. Types the catalog lacks are left out; a catalog with none of them (another
    shop's vocabulary) is searched over every type rather than answering nothing."""
    if types is None:
        return allowed
    codes = [c for c in (columns.code("type", t) for t in types) if c is not None]
    if not codes:
        return allowed
    return allowed & columns.rows_with("type", codes)
