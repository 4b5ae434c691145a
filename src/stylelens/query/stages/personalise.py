"""Stage 7, personalise: the shopper's taste moves the query (Rocchio) and hides what they disliked.

``q' = a*q + b*mean(liked) - c*mean(disliked)``, renormalised, with a, b, c the settings ``rocchio_query``,
``rocchio_like`` and ``rocchio_dislike``; only history of the type the query was identified as takes part,
so liking shirts does not pull a shoe search towards shirts. See ``query.personalize`` for the events.
"""

from __future__ import annotations

import numpy as np

from ..space import Snapshot


def rocchio(query: np.ndarray | None, liked: np.ndarray, disliked: np.ndarray,
            a: float = 1.0, b: float = 1.0, c: float = 0.5) -> np.ndarray | None:
    """q' = a*q + b*mean(liked) - c*mean(disliked), unit length. None when nothing is left."""
    dim = (query if query is not None else liked if len(liked) else disliked).shape[-1]
    out = np.zeros(dim, np.float64)
    if query is not None:
        out += a * query
    if len(liked):
        out += b * np.mean(liked, axis=0)
    if len(disliked):
        out -= c * np.mean(disliked, axis=0)
    norm = np.linalg.norm(out)
    if norm < 1e-6:
        return None
    return (out / norm).astype(np.float32)


def rows_of(snap: Snapshot, product_ids) -> np.ndarray:
    row_of = snap.columns.row_of
    return np.asarray([row_of[p] for p in product_ids if p in row_of], np.int64)  # products since removed drop out


def personalise(snap: Snapshot, vector: np.ndarray, liked_ids, disliked_ids,
                identified_type: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The query vector blended with the shopper's history of the same type, and the rows to leave out (disliked)."""
    cols, space, s = snap.columns, snap.space, snap.settings
    liked, disliked = rows_of(snap, liked_ids), rows_of(snap, disliked_ids)
    if identified_type is not None:
        code = cols.code("type", identified_type)
        same = lambda rows: rows[cols.codes["type"][rows] == code]  # noqa: E731
        liked_t, disliked_t = same(liked), same(disliked)
    else:
        liked_t, disliked_t = liked, disliked
    blended = rocchio(vector, space.vectors(liked_t, cols), space.vectors(disliked_t, cols),
                      s.rocchio_query, s.rocchio_like, s.rocchio_dislike)
    return (vector if blended is None else blended), disliked


RECENT_SEEDS = 5  # profiles (liked types), or uploads/views for a shopper with no likes, behind "For you"


def profile_seeds(snap: Snapshot, liked: np.ndarray, disliked: np.ndarray, uploads, viewed_ids) -> list[np.ndarray]:
    """"For you" query vectors: one Rocchio profile per liked type (a = 0), most liked type first; with no
    likes, the recent uploads and views as they are."""
    s, cols = snap.settings, snap.columns
    vectors = lambda rows: snap.space.vectors(rows, cols)  # noqa: E731
    if len(liked):
        types = cols.codes["type"]
        order = sorted(set(types[liked].tolist()), key=lambda t: -int(np.sum(types[liked] == t)))
        seeds = []
        for t in order[:RECENT_SEEDS]:
            seed = rocchio(None, vectors(liked[types[liked] == t]), vectors(disliked[types[disliked] == t]),
                           s.rocchio_query, s.rocchio_like, s.rocchio_dislike)
            if seed is not None:
                seeds.append(seed)
        return seeds
    recent = list(uploads[:RECENT_SEEDS])
    viewed = rows_of(snap, viewed_ids[:RECENT_SEEDS])
    recent += list(vectors(viewed)) if len(viewed) else []
    return [v for v in recent[:RECENT_SEEDS] if v.shape == (snap.space.dim,)]  # uploads searched in another space are left out
