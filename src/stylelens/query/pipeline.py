"""The query pipeline: the stages of ``query.stages`` assembled, for every kind of query.

    photo ─ locate ─ cut out ─ embed ─┐                       (once per photo: ``photo_items``)
                                      │  per item:
    vector ───────────────────────────┴─ neighbours ─ filter ─ identify ─ personalise ─ rank ─ diversify ─ hydrate
                                                   (``search_item``; ``rank_found`` is the part after the
                                                    neighbour pass, which evaluation runs on its own pass)

Every entry takes one ``Snapshot`` (the space and catalog view of the call) and explicit values; none is
handed the ``Index``. ``Index.search`` / ``similar`` / ``identify``, ``look``, "For you" and ``quality.evaluate``
all run these functions, so evaluation measures exactly what is served.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from ..errors import IndexDamagedError
from .diversity import pool_size
from .identify import Identification
from .request import Item, Photo, SearchRequest
from .results import SearchResult
from .space import Snapshot
from .stages.cutout import cut_out
from .stages.diversify import Ranked, diversify
from .stages.embed import embed
from .stages.filter import filter_found, within_types
from .stages.hydrate import hydrate
from .stages.identify import attributes, identify, type_shares
from .stages.locate import locate
from .stages.neighbours import Neighbours, neighbours, scored, search_again
from .stages.order import main_first
from .stages.personalise import personalise, profile_seeds, rows_of
from .stages.rank import rank
from .stages.typemodel import (ModelType, for_groups, looks_like_a_catalog_shot, model_types, narrowed, shown_type,
                               with_vote)


Locator = Callable[..., "list[Item]"]  # (photo, box, *, localise_items, max_items) -> items, main first: stages.locate


def cut_items(photo: Photo, *, box=None, localise: bool = True, max_items: int = 3, locator: Locator | None = None) -> list[Item]:
    """locate → cut out: the items of one decoded photo, main item first, with the picture of each to embed.
    ``locator``: another locate stage (a garment parser) in place of ``stages.locate.locate``."""
    return cut_out(photo, (locator or locate)(photo, box, localise_items=localise, max_items=max_items))


def photo_items(photo: Photo, snap: Snapshot, embedder, *, box=None, colour: str | None = None,
                localise: bool = True, max_items: int = 3, locator: Locator | None = None) -> list[Item]:
    """locate → cut out → embed: the items of one decoded photo, main item first, with their vectors."""
    items = cut_items(photo, box=box, localise=localise, max_items=max_items, locator=locator)
    return embed(items, embedder, snap.space, colour=colour, colour_space=snap.colour_space)


def rank_found(snap: Snapshot, near: Neighbours, vector: np.ndarray, request: SearchRequest, allowed: np.ndarray, *,
               history=None, identified: Identification | None = None,
               model_type: ModelType | None = None, raw: np.ndarray | None = None) -> tuple[Ranked, Identification | None]:
    """filter → identify → personalise → rank → diversify, from one neighbour pass. ``allowed``: the
    filters' row mask (``request.filters.mask(snap.columns)``); ``history``: the shopper's, with ``request.user``;
    ``identified``: an identification made elsewhere, used instead of the vote; ``model_type``: the type model's
    answer, which names the type while the vote names the rest; ``raw``: the item's backbone vector, for the catalog's
    type probe (``stages.identify``)."""
    found = filter_found(near, allowed, request)
    ident = identified
    if ident is None and (request.identify or request.user is not None):
        ident = identify(snap, near, with_self=len(found.exact) > 0, raw=raw)
        if model_type is not None:  # the item is searched within the model's types: no lift for one of them
            ident = replace(ident, type=None, type_confidence=model_type.confidence)
    query, mask, scores, rows = vector, found.mask, found.scores, found.rows
    if request.user is not None:
        query, disliked = personalise(snap, vector, history.liked, history.disliked, ident.type if ident else None)
        mask[disliked] = False
        passing = mask[rows]
        scores, rows = scores[passing], rows[passing]
    pool = request.pool
    if query is not vector or (len(rows) < pool and mask.sum() > len(rows)):
        # The first pass cannot answer: another query vector, or filters that leave too few of its rows.
        scores, rows = search_again(snap, query, pool, mask, request.filters)
    scores, rows = rank(snap, scores, rows, ident, request.filters)
    ranked = diversify(snap, scores, rows, found.exact, request)
    if model_type is not None and ident is not None:
        ident = replace(ident, type=shown_type(snap.columns, ranked.rows[:request.k]) or model_type.type)
    return ranked, ident


def search_item(snap: Snapshot, vector: np.ndarray, request: SearchRequest, *, sha: str | None = None,
                raw: np.ndarray | None = None, history=None, identified: Identification | None = None,
                types=None, model_type: ModelType | None = None, colour_vector: np.ndarray | None = None) -> SearchResult:
    """neighbours → ... → hydrate for one item's vector (``raw``: its backbone vector; ``sha``: the photo's hash;
    ``types``: the catalog types it is searched within, None for all; ``model_type``: the type model's answer,
    which the item is then searched within, unless the shopper filtered by type or the photo is a catalog
    product's own; ``colour_vector``: its vector in the colour vote's space, where that is another one)."""
    allowed = request.filters.mask(snap.columns)  # checks the filter values first
    # A garment of a known group is searched, and voted on, among that group's types alone (a worn top among tops).
    within = None if types is None else within_types(snap.columns, np.ones(len(snap.columns.live), bool), types)
    near = neighbours(snap, vector, max(request.pool, snap.settings.identify_k), sha=sha,
                      exclude_rows=request.exclude_rows, raw=raw, within=within, colour_vector=colour_vector)
    # (A worn garment, searched within its group's types, is never taken for a catalog shot: bottoms lose by it.)
    if request.filters.type or len(near.self_rows) or (types is None and looks_like_a_catalog_shot(snap.space, near)):
        model_type = None
    if model_type is not None and model_type.vote_weight:  # named by the model and the neighbours together
        model_type = with_vote(model_type, type_shares(snap, near), types)
    allowed = within_types(snap.columns, allowed, narrowed(types, model_type, snap.columns, allowed, request.pool))
    # A worn garment is voted on within its group's types, which the catalog's probe (catalog shots) knows nothing of.
    ranked, ident = rank_found(snap, near, vector, request, allowed, history=history, identified=identified,
                               model_type=model_type, raw=raw if types is None else None)
    products = hydrate(snap, ranked, vector)
    extra = {} if products else {"note": request.filters.explain_empty(snap.columns)}
    return SearchResult(products, ident if request.identify else None, 0.0, extra, request.filters.notes(snap.columns))


def search_photo(snap: Snapshot, photo: Photo, request: SearchRequest, embedder, *, history=None,
                 localise: bool = True, max_items: int = 3, locator: Locator | None = None,
                 type_model=None) -> tuple[SearchResult, list[Item]]:
    """A photo's search: every item searched; the main item's results on top, each item's in ``extra["items"]``.
    The main item is the one that may be the photo of a catalog product itself (same bytes or picture); of a worn
    outfit, the garment most likely answered right (``stages.order``), its row first.
    ``type_model``: names each item's type from its raw vector (``stages.typemodel``), None: the vote alone."""
    colour = request.filters.applied(snap.columns).colour  # the catalog's values: "gray" asks for its Grey
    items = photo_items(photo, snap, embedder, box=request.box, colour=colour, localise=localise,
                        max_items=max_items, locator=locator)
    typed = model_types(type_model, np.stack([item.raw for item in items]), snap.columns,
                        snap.settings.type_model_min_confidence, [item.group for item in items])
    typed = for_groups(typed, [item.group for item in items])
    # A worn outfit's garments are scored against the catalog in one pass, over their groups' rows alone (each is
    # searched within its group's types); other photos search as they always did.
    views = [snap] * len(items)
    if any(item.group for item in items):
        everything = np.ones(len(snap.columns.live), bool)
        views = scored(snap, [item.vector for item in items],
                       [None if item.types is None else within_types(snap.columns, everything, item.types) for item in items])
    results = []
    for i, (item, model_type, view) in enumerate(zip(items, typed, views)):
        item_request = request if i == 0 else replace(request, exact_first=False)
        results.append(on_a_view(view, lambda s, item=item, r=item_request, main=i == 0, mt=model_type: search_item(
            s, item.vector, r, sha=photo.sha256 if main else None, raw=item.raw, history=history,
            identified=item.identified, types=item.types, model_type=mt, colour_vector=item.colour_vector)))
    # A worn outfit's main item is the garment most likely answered right, once all are searched (stages.order).
    first = main_first(items, results, photo.size)
    items, results = [items[i] for i in first], [results[i] for i in first]
    result = results[0]
    result.extra["items"] = [{"box": list(item.box), **({"group": item.group} if item.group else {}),
                              **({"outline": item.outline} if item.outline else {}),
                              "identified": r.identified.to_dict() if r.identified else None,
                              "results": r.products} for item, r in zip(items, results)]
    return result, items


def identify_photo(snap: Snapshot, photo: Photo, embedder, type_model=None) -> Identification:
    """What the whole photo shows (not localised): the vote of its neighbours, the type from ``type_model`` when
    it is sure (and the photo is not a catalog product's own)."""
    item = photo_items(photo, snap, embedder, localise=False)[0]
    near = neighbours(snap, item.vector, snap.settings.identify_k, sha=photo.sha256, raw=item.raw,
                      colour_vector=item.colour_vector)
    ident = identify(snap, near, raw=None if len(near.self_rows) else item.raw)
    model_type = model_types(type_model, item.raw[None], snap.columns, snap.settings.type_model_min_confidence)[0]
    if model_type is not None and not len(near.self_rows) and not looks_like_a_catalog_shot(snap.space, near):
        ident = replace(ident, type=model_type.type, type_confidence=model_type.confidence)
    return ident


def photo_attributes(snap: Snapshot, photo: Photo, embedder) -> tuple[Item, dict]:
    """The whole photo's item and every label of it by the same vote (complete-the-look's source)."""
    item = photo_items(photo, snap, embedder, localise=False)[0]
    near = neighbours(snap, item.vector, snap.settings.identify_k, sha=photo.sha256, colour_vector=item.colour_vector)
    return item, {"id": None, **attributes(snap, near)}


def recommend(snap: Snapshot, history, request: SearchRequest) -> SearchResult:
    """"For you": one profile per liked type (personalise) → a pass each (neighbours), interleaved best first
    → collapse (diversify) → hydrate. No history: empty, saying so."""
    cols = snap.columns
    liked, disliked = rows_of(snap, history.liked), rows_of(snap, history.disliked)
    seeds = profile_seeds(snap, liked, disliked, history.uploads, history.viewed)
    mask = request.filters.mask(cols)
    notes = request.filters.notes(cols)
    mask[liked] = False
    mask[disliked] = False
    if not seeds:
        return SearchResult([], None, 0.0,
                            extra={"note": "No history for this shopper yet: like, view or search for a few products first."},
                            notes=notes)
    depth = pool_size(request.k, None, request.collapse)
    per_seed = [search_again(snap, seed, depth, mask) for seed in seeds]
    chosen: dict[int, float] = {}
    for rank_ in range(depth):  # interleave: the best of each seed, then the second best of each...
        for scores, rows in per_seed:
            row = int(rows[rank_])
            if row >= 0 and row not in chosen:
                chosen[row] = float(scores[rank_])
    rows = np.array(list(chosen), np.int64)
    scores = np.array(list(chosen.values()), np.float32)
    ranked = diversify(snap, scores, rows, np.zeros(0, np.int64), replace(request, diversity=None))
    return SearchResult(hydrate(snap, ranked), None, 0.0, notes=notes)


def on_a_view(snap: Snapshot, answer):
    """``answer(snap)`` on one view of the catalog (kept whole while a writer commits). When a compaction
    replaced the vectors file between reading the view and mapping it, a newer view answers (the same space);
    the same error on an up-to-date view is real damage."""
    for attempt in range(3):
        try:
            return answer(snap)
        except IndexDamagedError:
            newer = snap.store.columns
            if attempt == 2 or newer.version == snap.columns.version:
                raise
            snap = snap.with_columns(newer)
    raise AssertionError("unreachable")
