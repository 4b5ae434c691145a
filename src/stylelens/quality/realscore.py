"""How a search answers a real photo, scored: small pure functions shared by ``bench/real.py``, the real-photo
tests and whatever replaces today's item finding.

Definitions (issue 23; the bench prints them beside its tables):

- **type P@5** of a result list for a set of catalog types: the share of its first 5 rows whose type is in the
  set; a list shorter than 5 counts its missing rows as wrong.
- **an item row overlaps a garment** when their boxes have IoU >= 0.5, or the row's box centre lies inside the
  garment's box (a tight box around one shoe of a pair, or around the chest of a long coat, still points at it).
- **a garment is found** when an item row that overlaps it has type P@5 >= 0.6 within the garment's catalog
  types; each row finds at most one garment (a row showing jeans cannot also be the shopper's top), so the
  rows are matched one-to-one to the garments, as many as possible. The loose reading (``garments_typed``)
  drops the box and the one-to-one rule: some row has type P@5 >= 0.6 within the garment's types.
- **the main result is right** when the top-level results (the main item's) have type P@5 >= 0.6 for at least
  one worn garment; ``top1_right`` is the looser figure: the first result's type is one a worn garment has.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from ..item.localise import frame_share, iou

K = 5
FOUND_P5 = 0.6  # a garment's results must be mostly of its type to count as found
OVERLAP_IOU = 0.5
CUT_SHARE = 0.9  # an item box covering less of the frame than this is a cut, not the frame itself

Box = Sequence[float]  # x, y, w, h


def result_types(products: Iterable[Mapping]) -> list[str]:
    """The catalog types of a result list (``SearchResult.products`` or an item row's ``results``), in order."""
    return [str(p.get("type") or "") for p in products]


def type_p_at_k(types: Sequence[str], wanted: Collection[str], k: int = K) -> float:
    """Share of the first ``k`` result types that are in ``wanted`` (missing rows count as wrong)."""
    if k <= 0:
        raise ValueError(f"k must be 1 or more, got {k}")
    return sum(t in wanted for t in list(types)[:k]) / k


def chance(catalog_types: Mapping[str, int], wanted: Collection[str]) -> float:
    """P@k of products drawn at random from a catalog with ``catalog_types`` (type -> count): the share of
    the catalog whose type is in ``wanted``."""
    total = sum(catalog_types.values())
    return sum(n for t, n in catalog_types.items() if t in wanted) / total if total else 0.0


def centre_inside(box: Box, outer: Box) -> bool:
    x, y, w, h = box
    ox, oy, ow, oh = outer
    cx, cy = x + w / 2, y + h / 2
    return ox <= cx <= ox + ow and oy <= cy <= oy + oh


def overlaps(box: Box, garment: Box, min_iou: float = OVERLAP_IOU) -> bool:
    """Whether a located item's box points at a garment (see the module's definitions)."""
    return iou(tuple(box), tuple(garment)) >= min_iou or centre_inside(box, garment)


def is_cut(box: Box, size: tuple[int, int], share: float = CUT_SHARE) -> bool:
    """Whether item finding cut the photo to a box smaller than the frame."""
    return frame_share(box, size) < share


def best_iou(boxes: Sequence[Box], garment: Box) -> float:
    """The IoU of the located box that fits a garment best (0 with no boxes)."""
    return max((iou(tuple(b), tuple(garment)) for b in boxes), default=0.0)


def match_one_to_one(edges: Sequence[Collection[int]], n_right: int) -> list[int | None]:
    """A maximum matching of a small bipartite graph (Kuhn's augmenting paths): ``edges[i]`` are the right
    nodes left node ``i`` may take. Returns, per right node, its left node or None."""
    owner: list[int | None] = [None] * n_right

    def augment(i: int, seen: set[int]) -> bool:
        for j in sorted(edges[i]):
            if j in seen:
                continue
            seen.add(j)
            if owner[j] is None or augment(owner[j], seen):
                owner[j] = i
                return True
        return False

    for i in range(len(edges)):
        augment(i, set())
    return owner


def garments_found(rows: Sequence[tuple[Box, Sequence[str]]], garments: Sequence[tuple[Box, Collection[str]]],
                   threshold: float = FOUND_P5) -> list[bool]:
    """Per garment ((box, catalog types)), whether a result row ((box, result types)) found it: the row
    overlaps it and its type P@5 within the garment's types is >= ``threshold``; rows matched one to one."""
    edges = [{j for j, (gbox, wanted) in enumerate(garments)
              if overlaps(box, gbox) and type_p_at_k(types, wanted) >= threshold}
             for box, types in rows]
    return [o is not None for o in match_one_to_one(edges, len(garments))]


def garments_typed(rows: Sequence[Sequence[str]], worn: Sequence[Collection[str]], threshold: float = FOUND_P5) -> list[bool]:
    """Per worn garment (its catalog types), whether some result row (its types) is mostly of its types, wherever
    that row's box lies and however many garments it serves: the loose reading of 'found', beside ``garments_found``."""
    return [any(type_p_at_k(types, wanted) >= threshold for types in rows) for wanted in worn]


def main_result_right(types: Sequence[str], worn: Sequence[Collection[str]], threshold: float = FOUND_P5) -> bool:
    """Whether the top-level results are, for some worn garment, mostly of its types."""
    return any(type_p_at_k(types, wanted) >= threshold for wanted in worn)


def top1_right(types: Sequence[str], worn: Sequence[Collection[str]]) -> bool:
    """Whether the first result's type is one that some worn garment has."""
    return bool(types) and any(types[0] in wanted for wanted in worn)


def row_for(box: Box, rows: Sequence[Box]) -> int | None:
    """The item row whose box fits ``box`` best among those that overlap it (None when none does)."""
    fits = [(iou(tuple(r), tuple(box)), i) for i, r in enumerate(rows) if overlaps(r, box)]
    return max(fits, key=lambda f: (f[0], -f[1]))[1] if fits else None  # ties: the earlier (main) row


def mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None
