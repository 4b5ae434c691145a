"""Stage 9, diversify: near-duplicates folded into one result and MMR (``query.diversity``), k kept; the
query picture's own rows (``exact_first``) go first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..diversity import rerank
from ..request import SearchRequest
from ..space import Snapshot


@dataclass
class Ranked:
    """The rows to show, best first: ``exact`` of them are the query picture itself; ``similar`` counts the
    near-duplicates each stands for (None without collapse)."""

    scores: np.ndarray
    rows: np.ndarray
    similar: np.ndarray | None = None
    exact: int = 0


def diversify(snap: Snapshot, scores: np.ndarray, rows: np.ndarray, exact: np.ndarray, request: SearchRequest) -> Ranked:
    space, cols = snap.space, snap.columns
    exact = exact[:request.k]
    scores, rows, similar = rerank(scores, rows, lambda r: space.vectors(r, cols), request.k - len(exact),
                                   diversity=request.diversity, collapse=request.collapse,
                                   threshold=space.calibration.near_duplicate)
    if len(exact):
        scores = np.concatenate([np.ones(len(exact), np.float32), scores])
        rows = np.concatenate([exact, rows])
        similar = None if similar is None else np.concatenate([np.zeros(len(exact), np.int64), similar])
    return Ranked(scores, rows, similar, len(exact))
