"""Diversity: near-duplicate collapse and maximal marginal relevance (MMR) over search candidates.

A catalog often holds the same garment several times (colour variants shot identically, re-listed
products). Their vectors are nearly identical, so a plain top 10 can be ten copies of one shirt.

- **Collapse**: walking the candidates best first, one whose cosine to an item already kept is at
  least ``duplicate_cosine`` (setting, default 0.97) joins that item's group instead of taking a
  slot; the kept item reports ``similar_count`` = how many candidates it stands for besides itself.
- **MMR** (Carbonell & Goldstein 1998): with ``diversity`` d in 0..1, each next pick maximises
  ``(1 - d) * cos(query, item) - d * max cos(item, picked)``. d = 0 is the plain ranking.

Both work on a candidate pool fetched from the searcher (``pool_size``), so they cost one small
(pool x pool) matrix product per query.
"""

from __future__ import annotations

import numpy as np

from .options import check_collapse, check_diversity  # noqa: F401  (rows of the options table)


def pool_size(k: int, diversity: float | None, collapse: bool) -> int:
    """How many candidates to fetch so that k survive collapsing and MMR has room to choose."""
    if not diversity and not collapse:
        return k
    return max(4 * k, k + 40)


def collapse_duplicates(vectors: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy grouping of best-first candidates. Returns (kept positions, duplicates folded into each)."""
    n = len(vectors)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    sims = vectors @ vectors.T
    kept: list[int] = []
    counts: list[int] = []
    for i in range(n):
        if kept:
            best = int(np.argmax(sims[i, kept]))
            if sims[i, kept[best]] >= threshold:
                counts[best] += 1
                continue
        kept.append(i)
        counts.append(0)
    return np.asarray(kept, np.int64), np.asarray(counts, np.int64)


def mmr(query_scores: np.ndarray, vectors: np.ndarray, k: int, diversity: float) -> np.ndarray:
    """Positions of k candidates chosen by maximal marginal relevance, in pick order."""
    n = len(query_scores)
    k = min(k, n)
    if n == 0 or diversity <= 0:
        return np.arange(k)
    sims = vectors @ vectors.T
    relevance = (1.0 - diversity) * np.asarray(query_scores, np.float64)
    closest = np.full(n, -np.inf)  # max similarity to anything picked so far
    picked = np.zeros(n, bool)
    order = []
    for _ in range(k):
        gain = relevance - diversity * np.where(np.isfinite(closest), closest, 0.0)
        gain[picked] = -np.inf
        best = int(np.argmax(gain))
        order.append(best)
        picked[best] = True
        closest = np.maximum(closest, sims[best])
    return np.asarray(order, np.int64)


def rerank(scores: np.ndarray, rows: np.ndarray, vectors_of, k: int, *, diversity: float | None = None,
           collapse: bool = False, threshold: float = 0.97) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Candidates (best first, -1 padded) -> (scores, rows, similar_counts or None), at most k of each.

    ``vectors_of(rows)`` gives the candidates' vectors (read only when collapsing or diversifying).
    Collapse runs first so that MMR chooses among distinct products, not among copies.
    """
    ok = rows >= 0
    scores, rows = scores[ok], rows[ok]
    if not diversity and not collapse:
        return scores[:k], rows[:k], None
    cand = np.asarray(vectors_of(rows), np.float32)
    counts = None
    if collapse:
        keep, counts = collapse_duplicates(cand, threshold)
        scores, rows, cand = scores[keep], rows[keep], cand[keep]
    if diversity:
        order = mmr(scores, cand, k, diversity)
    else:
        order = np.arange(min(k, len(rows)))
    return scores[order], rows[order], (counts[order] if counts is not None else None)


def near_duplicate_pairs(block_scores: np.ndarray, query_rows: np.ndarray, threshold: float) -> np.ndarray:
    """(i, j) row pairs with i < j and cosine >= threshold, from a block of a rows x rows score matrix
    whose block row b is store row query_rows[b]."""
    qi, rj = np.nonzero(block_scores >= threshold)
    qi = np.asarray(query_rows)[qi]
    keep = qi < rj
    return np.stack([qi[keep], rj[keep]], axis=1)


def group_pairs(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components (union-find) of n rows linked by pairs -> component label per row."""
    parent = np.arange(n)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for a, b in pairs:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)])


def summarise_groups(labels: np.ndarray, live: np.ndarray) -> dict:
    """Counts of near-duplicate groups (components with 2+ live rows) for reports."""
    sizes = np.bincount(labels[live], minlength=len(labels))
    groups = sizes[sizes >= 2]
    return {"groups": int(len(groups)), "products_in_groups": int(groups.sum()),
            "largest_group": int(groups.max()) if len(groups) else 0,
            "redundant_products": int(groups.sum() - len(groups))}


def near_duplicate_groups(vectors: np.ndarray, live: np.ndarray, threshold: float, batch: int = 1024) -> dict:
    """How many groups of near-identical products the index holds (cosine >= threshold).

    One pass of blocked matrix products over all rows' vectors: O(N^2 * D), about a minute for 40k.
    """
    n = len(vectors)
    pairs = []
    for start in range(0, n, batch):
        block = vectors[start:start + batch] @ vectors.T
        block[:, ~live] = -np.inf
        block[~live[start:start + batch]] = -np.inf
        pairs.append(near_duplicate_pairs(block, np.arange(start, start + len(block)), threshold))
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    summary = summarise_groups(group_pairs(n, pairs), live)
    summary["threshold"] = threshold
    return summary
