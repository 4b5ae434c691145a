"""Stage 10, hydrate: where a vector becomes a card. The rows to show -> product records (one catalog
query) with their score, their cosine to the query, ``exact_match`` and ``similar_count``."""

from __future__ import annotations

import numpy as np

from ...index.catalog_db import product_of
from ...intake.catalog import parse_price
from ..space import Snapshot
from .diversify import Ranked


def variant_fields(extra: dict) -> dict:
    """What a card shows of a product's variants (kept in its feed's ``extra``): the top of its price range
    (``price_max``, a number: ``price`` is the lowest), its colours and sizes; {} for a product without."""
    out = {}
    if extra.get("price_max") is not None:
        top = parse_price(extra["price_max"])
        if top is not None:
            out["price_max"] = top
    for key in ("colours", "sizes"):
        if isinstance(extra.get(key), list) and extra[key]:
            out[key] = [str(v) for v in extra[key]]
    if isinstance(extra.get("variants"), list) and len(extra["variants"]) > 1:
        out["variants"] = len(extra["variants"])
    return out


def hydrate(snap: Snapshot, ranked: Ranked, vector: np.ndarray | None = None) -> list[dict]:
    """``vector``: the item's query vector, for ``similarity`` (None: no similarity, as in "For you")."""
    cols, rows = snap.columns, ranked.rows
    similarity = None
    views = cols.product_views(rows)
    if vector is not None:
        similarity = snap.space.vectors(rows, cols) @ vector if len(rows) else np.zeros(0, np.float32)
    matched = {}
    if views and vector is not None:  # a product with views: its best view's cosine, and which view that was
        every = np.concatenate([np.asarray(v, np.int64) for v in views.values()])
        cosines = dict(zip(every.tolist(), (snap.space.vectors(every, cols) @ vector).tolist()))
        for i, row in enumerate(rows.tolist()):
            if row in views:
                best = max(views[row], key=cosines.__getitem__)
                similarity[i] = cosines[best]
                if best != row:
                    matched[row] = cols.ids[best]
    records = {p["id"]: p for p in snap.store.products(cols.ids[rows])}
    products = []
    for i, (row, pid) in enumerate(zip(rows.tolist(), cols.ids[rows])):
        product = records.get(pid)
        if product is None:  # removed by a writer since this query's view was read
            continue
        products.append(product)
        product["id"] = product_of(pid)  # a view standing for its product (the main picture could not be had)
        product.update(variant_fields(product.get("extra") or {}))
        if row in views:
            product["views"] = [cols.ids[r] for r in views[row]]
            if row in matched:
                product["matched_view"] = matched[row]
        product["score"] = round(float(ranked.scores[i]), 4)
        if similarity is not None:
            # The cosine to the query, in [-1, 1] (a ranking boost never shows as over 100 %).
            product["similarity"] = round(min(1.0, float(similarity[i])), 4)
        if i < ranked.exact:
            product["exact_match"] = True
        if ranked.similar is not None:
            product["similar_count"] = int(ranked.similar[i])
    return products
