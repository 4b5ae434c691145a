"""Ranking rules applied to the neighbour candidates of one query."""

from __future__ import annotations

import numpy as np

from ..index import Columns
from .filters import Filters
from .identify import Identification


def type_consistent(scores: np.ndarray, rows: np.ndarray, columns: Columns, ident: Identification | None,
                    filters: Filters, boost: float, min_confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Lift candidates of the identified type by ``boost`` when identification is confident.

    A shopper who uploads a t-shirt wants t-shirts first; a dress that merely looks close follows.
    Does nothing when the shopper chose a type filter. Returns the candidates re-sorted.
    """
    ok = rows >= 0
    scores, rows = scores[ok], rows[ok]
    if boost <= 0 or ident is None or ident.type is None or filters.type or ident.type_confidence < min_confidence:
        return scores, rows
    code = columns.code("type", ident.type)
    lifted = scores + boost * (columns.codes["type"][rows] == code)
    order = np.argsort(-lifted, kind="stable")
    return lifted[order].astype(np.float32), rows[order]
