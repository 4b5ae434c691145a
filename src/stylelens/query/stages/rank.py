"""Stage 8, rank: lift candidates of the identified type when identification is confident.

A shopper who uploads a t-shirt wants t-shirts first; a dress that merely looks close follows. Nothing
changes when the shopper chose a type filter. A re-ranker would be another function here.
"""

from __future__ import annotations

import numpy as np

from ..filters import Filters
from ..identify import Identification
from ..space import Snapshot


def type_consistent(scores: np.ndarray, rows: np.ndarray, columns, ident: Identification | None,
                    filters: Filters, boost: float, min_confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Candidates (best first, -1 padded) re-sorted with ``boost`` added to those of the identified type."""
    ok = rows >= 0
    scores, rows = scores[ok], rows[ok]
    if boost <= 0 or ident is None or ident.type is None or filters.type or ident.type_confidence < min_confidence:
        return scores, rows
    code = columns.code("type", ident.type)
    lifted = scores + boost * (columns.codes["type"][rows] == code)
    order = np.argsort(-lifted, kind="stable")
    return lifted[order].astype(np.float32), rows[order]


def rank(snap: Snapshot, scores: np.ndarray, rows: np.ndarray, ident: Identification | None,
         filters: Filters) -> tuple[np.ndarray, np.ndarray]:
    s = snap.settings
    return type_consistent(scores, rows, snap.columns, ident, filters,
                           s.type_boost * snap.space.calibration.score_scale, s.type_boost_min_confidence)
