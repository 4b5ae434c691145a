"""Stage 3a, type: what each item of a photo is, by a model that has seen real photos (``models.typemodel``).

The neighbour vote names a type from the catalog's own shots, which real photos do not look like (a shirt
flat on a bed votes Tshirts, jeans vote Shorts). The type model, trained on the catalog's labels plus real
photos, reads the item's backbone vector (the index's own vector when it was built with the model's backbone,
so it costs one small matrix product). A type it is sure of, and that the catalog sells, is the type the
item is searched within and named by; gender and colour still come from the vote. A shopper's type filter,
or a catalog product's own photo (named by its own labels), wins over it. A worn garment whose group has a head
of its own (``TypeModel.worn``: top, bottom, outerwear, shoes and bag in the shipped model) is named by that head,
trained on street photos' worn garments alone (``_decide_worn``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np


TOP_TYPES = 5  # the model's most likely types an item may be searched within
TIED = 1e-3  # a worn head's scores this close name types it cannot tell apart
WORN_MIN_SCORE = 0.0  # a worn head's best score below which the vote names the garment
# Worn garments of these groups are named by their neighbours' vote, not the main head (a group with a head of
# its own, ``TypeModel.worn``, is named by that head; the shipped model has one for outerwear). Measured for the
# main head on street-ccp's measure part: outerwear found (a row on it with P@5 >= 0.6) 0.61 -> 0.77 on the first
# 150 photos and 0.59 -> 0.72 on the other 251; for the other groups the model helps (without it: bottoms
# 0.43 -> 0.31, bags 0.68 -> 0.61, tops the same). Outerwear by its own head: 0.756 -> 0.882 (all 401 photos).
VOTED_GROUPS: frozenset[str] = frozenset({"outerwear"})


# A photo this close (raw cosine of its nearest product) to the catalog's own shots is one of them, or made like
# them: its neighbours' vote names it (catalog shots are what the vote is good at; the model learnt real photos).
# Above the 99th percentile of real-items train photos' nearest cosine (0.762); 95 % of held-out catalog shots
# reach it, 4 of 1,227 real-items measure photos do.
CATALOG_SHOT_COSINE = 0.77

# Worn garments of these groups, when the main head names them (the shipped model names tops by their own head;
# these weights apply to a model file without one), are named by it and their neighbours' vote together: a geometric
# blend over the group's types, the vote weighing this much (the vote is taken among the group's types alone). On worn
# tops cropped by their true box the type is right 0.598 -> 0.646 (street-ccp train part's held-out slice; weight
# chosen there among 0, 0.25, 0.5, 0.75, 1) and 0.545 -> 0.591 on the measure part; bottoms, shoes and bags gain
# nothing (0.733, 0.963, 1.0 the same), and single garments at home lose (real-items 0.862 -> 0.837).
VOTE_WEIGHTS: dict[str, float] = {"top": 0.25}
# The same for a garment named by its group's own head: none (see docs/shop-the-look.md, "Worn garments' own heads").
WORN_VOTE_WEIGHTS: dict[str, float] = {}


@dataclass(frozen=True)
class ModelType:
    type: str  # the best-stocked type of the set the model is sure of (the name when nothing is shown)
    confidence: float  # the model's probability of that set
    likely: tuple[str, ...]  # the catalog types to search within, in order: the set, then the next most likely
    in_set: int = 1  # how many of ``likely`` are the set
    # With the vote (``VOTE_WEIGHTS``): the probabilities of the catalog's types, most likely first, the vote's
    # weight, and the decision to take again on the blend (``with_vote``).
    probabilities: dict[str, float] = field(default_factory=dict, compare=False, repr=False)
    vote_weight: float = 0.0
    decide: Callable[[dict[str, float]], "ModelType | None"] | None = field(default=None, compare=False, repr=False)
    worn: bool = False  # named by its group's own head (``TypeModel.worn``)


def model_types(model, raws: np.ndarray, columns, min_confidence: float = 0.0, groups=None) -> list[ModelType | None]:
    """Per item (its raw backbone vector), when the model is sure: the smallest set of types it was taught (real
    photos are labelled with sets: "a t-shirt is Tshirts or Lounge Tshirts", and it cannot tell their members
    apart) holding its most likely type, restricted to the catalog's types; else None. Sure: the set's probability
    is at least the model's calibrated threshold and ``min_confidence`` (a photo unlike any it was taught, such as
    a drawing, gets a low one: it is then named by the vote). ``groups``: each item's garment group (or None); a
    worn garment whose group has a head of its own (``TypeModel.worn``) is named by it (``_decide_worn``)."""
    if model is None or not len(raws):
        return [None] * len(raws)
    sold = columns.codes["type"][columns.live]
    stock = np.bincount(sold[sold >= 0], minlength=len(columns.vocab["type"]))
    threshold = max(model.threshold, min_confidence)
    decide = partial(_decide, model.taught_sets, threshold, columns, stock)
    raws = np.asarray(raws, np.float32)
    out = []
    for i, p in enumerate(model.probabilities(raws)):
        worn = model.worn_scores(raws[i], groups[i]) if groups is not None and groups[i] else None
        if worn is not None:
            sold_types = {t: v for t, v in worn.items() if columns.code("type", t) is not None}
            out.append(_decide_worn(max(threshold, WORN_MIN_SCORE), columns, stock, sold_types))
        else:
            out.append(decide({model.types[j]: float(p[j]) for j in np.argsort(-p)
                               if columns.code("type", model.types[j]) is not None}))
    return out


def _decide_worn(threshold: float, columns, stock: np.ndarray, scores: dict[str, float]) -> ModelType | None:
    """A worn garment named by its group's head (``scores``: type -> the chance its label holds that type, best
    first): searched within the best type, with the types it cannot tell from it (the same score: they belong to
    the same labels, "pants" are Trousers, Track Pants, Capris or Lounge Pants) in stock order, then the next ones
    (``narrowed``) where those hold too few."""
    if not scores:
        return None
    first = next(iter(scores))
    if scores[first] < threshold:
        return None
    tied = sorted((t for t in scores if scores[t] >= scores[first] - TIED), key=lambda t: -stock[columns.code("type", t)])
    rest = [t for t in scores if t not in tied][:TOP_TYPES]
    return ModelType(tied[0], round(scores[first], 4), tuple(tied + rest), len(tied), scores, 0.0,
                     partial(_decide_worn, threshold, columns, stock), worn=True)


def _decide(taught, threshold: float, columns, stock: np.ndarray, prob: dict[str, float]) -> ModelType | None:
    """The type set named by ``prob`` (type -> probability, most likely first), or None when it is not sure."""
    if not prob:
        return None
    first = next(iter(prob))
    holding = [s for s in taught if first in s]
    group = [t for t in prob if t in min(holding, key=len)] if holding else [first]
    confidence = sum(prob[t] for t in group)
    if confidence < threshold:
        return None
    name = max(group, key=lambda t: stock[columns.code("type", t)])
    # Within the set the neighbours choose (the model cannot), so the set's members go in stock order: the
    # set is searched whole when it holds enough products, which is what matters.
    group = sorted(group, key=lambda t: -stock[columns.code("type", t)])
    rest = [t for t in prob if t not in group][:TOP_TYPES]
    return ModelType(name, round(confidence, 4), tuple(group + rest), len(group), prob, 0.0,
                     partial(_decide, taught, threshold, columns, stock))


def for_groups(typed: list[ModelType | None], groups) -> list[ModelType | None]:
    """The model's answers per item of a photo, given each item's group (a worn garment's, or None): a group the
    vote names (``VOTED_GROUPS``) drops the main head's answer (not its own head's); a group it is blended with
    (``VOTE_WEIGHTS``, or ``WORN_VOTE_WEIGHTS`` for an answer of the group's own head) says so."""
    out = []
    for t, g in zip(typed, groups):
        weight = (WORN_VOTE_WEIGHTS if t is not None and t.worn else VOTE_WEIGHTS).get(g, 0.0)
        dropped = t is None or (g in VOTED_GROUPS and not t.worn)
        out.append(None if dropped else replace(t, vote_weight=weight) if weight else t)
    return out


def with_vote(found: ModelType | None, shares: dict[str, float], types=None) -> ModelType | None:
    """The model's answer blended with the vote of the item's neighbours (type -> share of the vote), over ``types``
    (the item's group's, when it has them): log p = (1 - w) log p_model + w log (p_vote + 0.001), normalised, and
    the model's decision taken again on it (None: not sure, the vote names the item). Unchanged without a weight."""
    if found is None or not found.vote_weight or not shares or found.decide is None:
        return found
    w = found.vote_weight
    logs = {t: (1 - w) * np.log(max(p, 1e-6)) + w * np.log(shares.get(t, 0.0) + 1e-3)
            for t, p in found.probabilities.items() if types is None or t in types}
    if not logs:
        return found
    top = max(logs.values())
    blend = {t: float(np.exp(v - top)) for t, v in sorted(logs.items(), key=lambda kv: -kv[1])}
    total = sum(blend.values())
    return found.decide({t: v / total for t, v in blend.items()})


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


def looks_like_a_catalog_shot(space, near) -> bool:
    """Whether an item's nearest product (``Neighbours``, itself left out) is as close as ``CATALOG_SHOT_COSINE``
    (raw space: a tuned space's cosines are on another scale, and there the model answers as before)."""
    scores, _ = near.others()
    return space.name == "raw" and len(scores) > 0 and float(scores.max()) >= CATALOG_SHOT_COSINE


def shown_type(columns, rows: np.ndarray) -> str | None:
    """The item's name once it is searched within the model's types: the type most of its results are."""
    codes = columns.codes["type"][rows[rows >= 0]]
    codes = codes[codes >= 0]
    return columns.vocab["type"][int(np.bincount(codes).argmax())] if len(codes) else None
