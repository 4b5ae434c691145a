"""Stage 3a, type: what each item of a photo is, by a model that has seen real photos (``models.typemodel``).

The neighbour vote names a type from the catalog's own shots, which real photos do not look like (a shirt
flat on a bed votes Tshirts, jeans vote Shorts). The type model, trained on the catalog's labels plus real
photos, reads the item's backbone vector (the index's own vector when it was built with the model's backbone,
so it costs one small matrix product). A type it is sure of, and that the catalog sells, is the type the
item is searched within and named by; gender and colour still come from the vote. A shopper's type filter,
or a catalog product's own photo (named by its own labels), wins over it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


TOP_TYPES = 5  # the model's most likely types an item may be searched within
# Worn garments of these groups are named by their neighbours' vote, not the model: on street-ccp's measure part,
# outerwear found (a row on it with P@5 >= 0.6) 0.61 -> 0.77 on the first 150 photos and 0.59 -> 0.72 on the other
# 251; for the other groups the model helps (without it: bottoms 0.43 -> 0.31, bags 0.68 -> 0.61, tops the same).
VOTED_GROUPS: frozenset[str] = frozenset({"outerwear"})


@dataclass(frozen=True)
class ModelType:
    type: str  # the best-stocked type of the set the model is sure of (the name when nothing is shown)
    confidence: float  # the model's probability of that set
    likely: tuple[str, ...]  # the catalog types to search within, in order: the set, then the next most likely
    in_set: int = 1  # how many of ``likely`` are the set


def model_types(model, raws: np.ndarray, columns, min_confidence: float = 0.0) -> list[ModelType | None]:
    """Per item (its raw backbone vector), when the model is sure: the smallest set of types it was taught (real
    photos are labelled with sets: "a t-shirt is Tshirts or Lounge Tshirts", and it cannot tell their members
    apart) holding its most likely type, restricted to the catalog's types; else None. Sure: the set's probability
    is at least the model's calibrated threshold and ``min_confidence`` (a photo unlike any it was taught, such as
    a drawing, gets a low one: it is then named by the vote)."""
    if model is None or not len(raws):
        return [None] * len(raws)
    sold = columns.codes["type"][columns.live]
    stock = np.bincount(sold[sold >= 0], minlength=len(columns.vocab["type"]))
    out = []
    for p in model.probabilities(np.asarray(raws, np.float32)):
        prob = {model.types[i]: float(p[i]) for i in np.argsort(-p) if columns.code("type", model.types[i]) is not None}
        if not prob:
            out.append(None)
            continue
        first = next(iter(prob))
        holding = [s for s in model.taught_sets if first in s]
        group = [t for t in prob if t in min(holding, key=len)] if holding else [first]
        confidence = sum(prob[t] for t in group)
        if confidence < max(model.threshold, min_confidence):
            out.append(None)
            continue
        name = max(group, key=lambda t: stock[columns.code("type", t)])
        # Within the set the neighbours choose (the model cannot), so the set's members go in stock order: the
        # set is searched whole when it holds enough products, which is what matters.
        group = sorted(group, key=lambda t: -stock[columns.code("type", t)])
        rest = [t for t in prob if t not in group][:TOP_TYPES]
        out.append(ModelType(name, round(confidence, 4), tuple(group + rest), len(group)))
    return out


def narrowed(types, found: ModelType | None, columns, allowed: np.ndarray, enough: int):
    """The catalog types an item is searched within once the model named it: the whole set the model is sure of,
    then its next likely types while they hold fewer than ``enough`` of the products the shopper may see; within
    the item's own types (a worn garment's group) when it has them."""
    if found is None:
        return types
    codes = columns.codes["type"][allowed]
    counts = np.bincount(codes[codes >= 0], minlength=len(columns.vocab["type"]))
    chosen, total = [], 0
    for i, name in enumerate(found.likely):
        if i >= found.in_set and total >= enough:
            break
        if types is not None and name not in types:
            continue
        chosen.append(name)
        total += int(counts[columns.code("type", name)])
    return tuple(chosen) or types


def shown_type(columns, rows: np.ndarray) -> str | None:
    """The item's name once it is searched within the model's types: the type most of its results are."""
    codes = columns.codes["type"][rows[rows >= 0]]
    codes = codes[codes >= 0]
    return columns.vocab["type"][int(np.bincount(codes).argmax())] if len(codes) else None
