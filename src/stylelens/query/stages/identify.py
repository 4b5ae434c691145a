"""Stage 6, identify: what the item is, by the one vote of its labelled neighbours (``query.identify.vote``).

When the query is a catalog product's own photo shown first, its own rows vote too (it is named by its
own labels); otherwise the others vote. A type model trained on real photos would answer here instead
(an ``Item`` that arrives with ``identified`` set keeps it).
"""

from __future__ import annotations

import numpy as np

from ...index import LABEL_COLUMNS
from ..identify import Identification, tally, vote, vote_labels
from ..space import Snapshot
from .neighbours import Neighbours


# The type probe's share of the blend with the vote (``tune.typeprobe``): the two equally, fixed before measuring.
PROBE_WEIGHT = 0.5


def identify(snap: Snapshot, near: Neighbours, *, with_self: bool = False, raw: np.ndarray | None = None) -> Identification:
    """``raw``: the item's backbone vector, for the catalog's type probe where the index adopted one (a catalog
    product's own photo is named by its own rows, without it)."""
    scores, rows = _voters(near, with_self)
    k = snap.settings.identify_k
    ident = vote(snap.columns, rows[:k], scores[:k], snap.space.calibration.vote_temperature)
    if snap.type_probe is not None and raw is not None and not with_self:
        blended = _with_probe(snap, tally(snap.columns, rows[:k], scores[:k], snap.space.calibration.vote_temperature,
                                          "type"), raw)
        best = int(np.argmax(blended))
        ident.type, ident.type_confidence = snap.columns.vocab["type"][best], round(float(blended[best]), 4)
    colour = _colour_vote(snap, near, with_self)
    if colour is not None:
        ident.colour, ident.colour_confidence = colour
    return ident


def _with_probe(snap: Snapshot, shares: np.ndarray | None, raw: np.ndarray) -> np.ndarray:
    """The vote's type shares (indexed like the type vocabulary) blended with the probe's probabilities of the types
    the catalog has."""
    columns, probe = snap.columns, snap.type_probe
    p = probe.probabilities(np.asarray(raw, np.float32)[None])[0]
    codes = np.array([-1 if (c := columns.code("type", t)) is None else c for t in probe.types])
    known = codes >= 0
    prob = np.bincount(codes[known], weights=p[known], minlength=len(columns.vocab["type"]))
    prob = prob / max(prob.sum(), 1e-12)
    return prob if shares is None else (1 - PROBE_WEIGHT) * shares + PROBE_WEIGHT * prob


def type_shares(snap: Snapshot, near: Neighbours) -> dict[str, float]:
    """Each type's share of the vote of the item's neighbours (the others, as ``identify`` counts them)."""
    scores, rows = _voters(near, False)
    k = snap.settings.identify_k
    shares = tally(snap.columns, rows[:k], scores[:k], snap.space.calibration.vote_temperature, "type")
    vocab = snap.columns.vocab["type"]
    return {} if shares is None else {vocab[i]: float(shares[i]) for i in np.flatnonzero(shares)}


def attributes(snap: Snapshot, near: Neighbours) -> dict:
    """Every label of the item by the same vote (complete-the-look needs usage and season too)."""
    scores, rows = _voters(near, False)
    k = snap.settings.identify_k
    votes = vote_labels(snap.columns, rows[:k], scores[:k], snap.space.calibration.vote_temperature, LABEL_COLUMNS)
    colour = _colour_vote(snap, near, False)
    if colour is not None:
        votes["colour"] = colour
    return {label: value for label, (value, _) in votes.items()}


def _colour_vote(snap: Snapshot, near: Neighbours, with_self: bool) -> tuple[str | None, float] | None:
    """The colour by the vote of the colour space's neighbours, where the colour vote has its own space."""
    if near.colour is None or snap.colour_space is None:
        return None
    scores, rows = _voters(near.colour, with_self)
    k = snap.settings.identify_k
    return vote_labels(snap.columns, rows[:k], scores[:k], snap.colour_space.calibration.vote_temperature,
                       ("colour",))["colour"]


def _voters(near: Neighbours, with_self: bool) -> tuple[np.ndarray, np.ndarray]:
    if with_self:
        ok = near.rows >= 0
        return near.scores[ok], near.rows[ok]
    return near.others()
