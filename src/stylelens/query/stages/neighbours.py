"""Stage 4, neighbours: the one search over the live catalog for an item's vector, and which of the rows
found are the query picture itself (same bytes, or the space's calibrated same-picture cosine).

Every later stage works from this one candidate list; ``search_again`` runs only when it cannot answer
(filters that leave too few of its rows, or a personalised query vector). The worn garments of one photo are
scored against the catalog in one pass (``scored``): each garment's passes then read its row of scores.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ...index.backend import top_k
from ..space import Snapshot

SELF_SLACK = 3  # candidates fetched beyond what ranking and voting need, for copies of the query itself


@dataclass
class Neighbours:
    """One neighbour pass for one query vector: live rows best first, and which of them are the query itself."""

    scores: np.ndarray
    rows: np.ndarray
    self_rows: np.ndarray
    colour: "Neighbours | None" = None  # the pass in the colour vote's space, where that is another one

    def others(self) -> tuple[np.ndarray, np.ndarray]:
        keep = (self.rows >= 0) & ~np.isin(self.rows, self.self_rows)
        return self.scores[keep], self.rows[keep]


def neighbours(snap: Snapshot, vector: np.ndarray, n: int, *, sha: str | None = None, exclude_rows=(),
               raw: np.ndarray | None = None, within: np.ndarray | None = None,
               colour_vector: np.ndarray | None = None) -> Neighbours:
    """The n best live rows (minus ``exclude_rows``; only rows ``within`` allows, when given: a worn garment's
    group, so that its vote and its results are of that group) and the query's own rows among them. ``raw``: the
    query's backbone vector, which confirms a same-picture match in a tuned space (that space pulls a type
    together on purpose). Where the colour vote has its own space (``snap.colour_space``), a second pass of the
    vote's size in it (``colour_vector``, else the projection of ``raw``)."""
    columns, space = snap.columns, snap.space
    exclude = np.asarray(list(exclude_rows), dtype=np.int64)
    mask = None if within is None else columns.live & within
    if len(exclude):
        mask = columns.live.copy() if mask is None else mask
        mask[exclude] = False
        if columns.views_per_product > 1:  # a product left out is left out with its views
            mask[np.isin(columns.owner, columns.owners(exclude))] = False
    scores, rows = space.search(vector[None], (n + SELF_SLACK) * columns.views_per_product, mask, columns=columns)
    scores, rows = scores[0], rows[0]
    same = space.same_picture(rows[(rows >= 0) & (scores >= space.calibration.same_picture)], raw, columns)
    if sha:
        row_of = columns.row_of
        same = np.union1d(same, [row_of[p] for p in snap.store.ids_with_hash(sha) if p in row_of]).astype(np.int64)
    scores, rows = best_views(columns, scores, rows)
    same = np.unique(columns.owners(same))
    colour = None
    if snap.colour_space is not None:
        if colour_vector is None and raw is not None:
            colour_vector = snap.colour_space.query(np.asarray(raw)[None])[0]
        if colour_vector is not None:
            cscores, crows = snap.colour_space.search(colour_vector[None],
                                                      (snap.settings.identify_k + SELF_SLACK) * columns.views_per_product,
                                                      mask, columns=columns)
            # The query's own rows are the same in every space: the vote leaves them out (or counts them) alike.
            colour = Neighbours(*best_views(columns, cscores[0], crows[0]), same)
    return Neighbours(scores[:n + SELF_SLACK], rows[:n + SELF_SLACK], same, colour)


def search_again(snap: Snapshot, query: np.ndarray, n: int, mask: np.ndarray, filters=None) -> tuple[np.ndarray, np.ndarray]:
    """A second pass over the rows ``mask`` allows (a backend that filters itself is given ``filters`` too)."""
    columns = snap.columns
    scores, rows = snap.space.search(query[None], n * columns.views_per_product, mask, filters=filters, columns=columns)
    scores, rows = best_views(columns, scores[0], rows[0])
    if mask is not None and columns.views_per_product > 1:  # a product masked out by its own row (left out, disliked)
        keep = columns.fit(mask)[rows]
        scores, rows = scores[keep], rows[keep]
    return scores[:n], rows[:n]


def best_views(columns, scores: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows found (best first) as products: each product once, at its best view's score, by the row standing for
    it (``Columns.owner``). Every later stage then sees products; a catalog without views is returned as it is."""
    if columns.views_per_product == 1:
        return scores, rows
    owners = columns.owners(rows)
    found = owners >= 0
    _, first = np.unique(owners[found], return_index=True)  # the first (best) time each product is found
    keep = np.sort(first)
    return scores[found][keep], owners[found][keep]


class Scored:
    """The space of ``snap``, but a search for ``vector`` on the view ``columns`` is answered from ``scores``,
    that vector's cosine to every row of the view (what the exact search computes, here made once for all of a
    photo's items), or to the rows ``scored`` allows (a worn garment's group: -inf elsewhere). Any other query,
    another view (``on_a_view`` after a compaction), or a mask that lets in a row not scored goes to the space."""

    def __init__(self, space, vector: np.ndarray, scores: np.ndarray, columns, scored: np.ndarray | None = None):
        self.space, self.vector, self.scores, self.columns = space, vector, scores, columns
        self.unscored = None if scored is None else ~scored

    def __getattr__(self, name):
        return getattr(self.space, name)

    def search(self, queries, k: int, mask=None, filters=None, columns=None):
        queries = np.asarray(queries)
        if columns is not self.columns or len(queries) != 1 or not np.array_equal(queries[0], self.vector):
            return self.space.search(queries, k, mask, filters=filters, columns=columns)
        mask = columns.live if mask is None else columns.fit(mask)
        if self.unscored is not None and (mask & self.unscored).any():
            return self.space.search(queries, k, mask, filters=filters, columns=columns)
        return best_of(self.scores, mask, k)


def best_of(scores: np.ndarray, mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``top_k`` of ``scores`` where ``mask`` is True, as (1, k) arrays: picked among the masked rows alone (a
    garment's group, not the whole catalog), the answer of ``top_k`` on the whole masked array. Where the best k
    and the next are all different, both can answer only one way; a tie among them, whose order ``top_k`` leaves
    to its partition, is answered by ``top_k`` on the whole array, as before."""
    rows = np.flatnonzero(mask)
    best, at = top_k(scores[rows][None], k + 1)
    finite = best[0][np.isfinite(best[0])]
    if not len(rows) or np.any(finite[1:] == finite[:-1]):
        return top_k(np.where(mask, scores, np.float32(-np.inf))[None], k)
    return best[:, :k], np.where(at >= 0, rows[np.maximum(at, 0)], -1)[:, :k]


def scored(snap: Snapshot, vectors: list[np.ndarray], within: list[np.ndarray | None] | None = None) -> list[Snapshot]:
    """One snapshot per query vector, each answering that vector's searches from one pass over the catalog made
    for all of them (a photo's worn garments: one product of their vectors with the catalog, not one or two
    each). ``within``: each vector's rows (a worn garment's group, None: every row); where every vector has its
    rows, the pass reads only the live rows of their union, each score the same float as a whole pass gives it
    (groups are searched within, so a garment's searches never read the other rows: 54 % of the catalog read on
    58 street photos). Where the space does not search exactly in memory (ANN, Milvus), ``snap`` itself for each."""
    if not vectors:
        return []
    columns = snap.columns
    union = None
    if within is not None and all(rows is not None for rows in within):
        union = columns.live & np.logical_or.reduce([columns.fit(rows) for rows in within])
    queries = np.stack(vectors)
    scores = snap.space.scores(queries, columns, None if union is None else np.flatnonzero(union))
    if scores is not None and union is not None:  # as the whole pass's rows, -inf where not scored
        scores, some = np.full((len(vectors), len(union)), -np.inf, np.float32), scores
        scores[:, union] = some
    if scores is None:
        return [snap] * len(vectors)
    return [replace(snap, space=Scored(snap.space, v, s, columns, union)) for v, s in zip(vectors, scores)]
