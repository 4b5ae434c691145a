"""Stage 8a, order: which garment of a worn outfit is the main item (its results on top, its row first).

The parser lists an outfit's garments largest and most central first, but the largest garment is not the one
the search answers best: a coat the vote half-knows comes first while the shoes it is sure of come last. Once
every garment is searched, the main item is the one most likely answered right, by a logistic score of what
the search already knows: the parser's confidence in the garment, the confidence of its type (the model's, or
the vote's where the vote named it), how many of its first results are of one type, and its share of the frame.
The weights are fitted on street-ccp's train part by ``scripts/fit_main_item.py``.

Only an outfit seen whole is reordered (no garment's box covers ``WHOLE_OUTFIT_MAX_LARGEST_BOX`` of the frame): a
close-up the parser still reads as an outfit (shoes on a bed, a shirt on a chair) is mostly a photo of its
largest garment, which keeps its place.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from ...item.localise import frame_share
from .typemodel import VOTED_GROUPS

AGREE_K = 5  # the first results whose types are counted
# An outfit seen whole: its largest garment's box under this share of the frame (95 % of street-ccp's train outfits
# have no garment box as large). Not stages.parse.OUTFIT_MAX_SECOND_BOX (0.2, the second-largest box), which
# decides whether a photo is an outfit at all; this one only whether an outfit's garments are reordered.
WHOLE_OUTFIT_MAX_LARGEST_BOX = 0.3
FEATURES = ("log parser confidence", "log type confidence", "share of the first results of one type",
            "log share of the frame", "named by the vote (its group's)")
# scripts/fit_main_item.py on street-ccp's train part (602 photos, 2,253 garments; L2 logistic regression, C=1), on
# the pipeline before worn tops were named with the vote. Measured on its measure part (401 photos, nothing here
# fitted on it): main result right 0.638 -> 0.701 (first 150 photos 0.647 -> 0.720, the other 251 0.633 -> 0.689);
# real-items served P@5 unchanged (0.867). Refitted on today's pipeline the script gives (2.33, 1.42, 2.19, 0.75,
# -0.13): 0.700 / 0.681 on the same parts, within noise of these and not better on either, so these stay.
WEIGHTS = (2.29, 1.41, 2.14, 0.83, -0.26)


def agreement(products: Sequence[Mapping]) -> float:
    """The share of the first ``AGREE_K`` results that are of their most common type (missing rows count as not)."""
    types = Counter(p.get("type") for p in products[:AGREE_K])
    return types.most_common(1)[0][1] / AGREE_K if types else 0.0


def features(score: float, type_confidence: float, products: Sequence[Mapping], box, group: str | None,
             size: tuple[int, int]) -> np.ndarray:
    """One garment's ``FEATURES``: its parser score, its type's confidence, its results, box and group."""
    return np.array([np.log(max(score, 1e-3)), np.log(max(type_confidence, 1e-3)), agreement(products),
                     np.log(max(frame_share(box, size), 1e-4)), float(group in VOTED_GROUPS)])


def main_first(items, results, size: tuple[int, int], weights: Sequence[float] = WEIGHTS) -> list[int]:
    """The order of a worn outfit's items (``Item``s with their ``SearchResult``s), the main item first: by the
    fitted score, ties in the parser's order. Other photos, and an outfit seen close, keep the parser's order."""
    order = list(range(len(items)))
    if len(items) < 2 or not all(item.group for item in items) \
            or max(frame_share(item.box, size) for item in items) >= WHOLE_OUTFIT_MAX_LARGEST_BOX:
        return order
    w = np.asarray(weights, np.float64)
    score = [float(w @ features(item.score, r.identified.type_confidence if r.identified else 0.0, r.products,
                                item.box, item.group, size)) for item, r in zip(items, results)]
    return sorted(order, key=lambda i: (-score[i], i))
