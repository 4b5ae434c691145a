"""Stage 10, hydrate: where a vector becomes a card. The rows to show -> product records (one catalog
query) with their score, their cosine to the query, ``exact_match`` and ``similar_count``."""

from __future__ import annotations

import numpy as np

from ..space import Snapshot
from .diversify import Ranked


def hydrate(snap: Snapshot, ranked: Ranked, vector: np.ndarray | None = None) -> list[dict]:
    """``vector``: the item's query vector, for ``similarity`` (None: no similarity, as in "For you")."""
    cols, rows = snap.columns, ranked.rows
    similarity = None
    if vector is not None:
        similarity = snap.space.vectors(rows, cols) @ vector if len(rows) else np.zeros(0, np.float32)
    records = {p["id"]: p for p in snap.store.products(cols.ids[rows])}
    products = []
    for i, pid in enumerate(cols.ids[rows]):
        product = records.get(pid)
        if product is None:  # removed by a writer since this query's view was read
            continue
        products.append(product)
        product["score"] = round(float(ranked.scores[i]), 4)
        if similarity is not None:
            # The cosine to the query, in [-1, 1] (a ranking boost never shows as over 100 %).
            product["similarity"] = round(min(1.0, float(similarity[i])), 4)
        if i < ranked.exact:
            product["exact_match"] = True
        if ranked.similar is not None:
            product["similar_count"] = int(ranked.similar[i])
    return products
