"""What the item in a photo is: the one vote of its labelled catalog neighbours.

Search, complete-the-look and evaluation all name an item through ``vote``: softmax weights over the
neighbours' cosines (the closest count most; a far tail cannot outvote them), a tally per label.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..index import Columns

VOTED_LABELS = ("type", "gender", "colour")


@dataclass
class Identification:
    type: str | None = None
    type_confidence: float = 0.0
    gender: str | None = None
    gender_confidence: float = 0.0
    colour: str | None = None
    colour_confidence: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def vote_labels(columns: Columns, rows: np.ndarray, sims: np.ndarray, temperature: float,
                labels=VOTED_LABELS) -> dict[str, tuple[str | None, float]]:
    """label -> (winning value or None, its share of the vote)."""
    out: dict[str, tuple[str | None, float]] = {label: (None, 0.0) for label in labels}
    if len(sims) == 0:
        return out
    weights = vote_weights(sims, temperature)  # one set of weights for every label
    for label in labels:
        shares = _shares(columns, rows, weights, label)
        if shares is None:
            continue
        best = int(np.argmax(shares))
        out[label] = (columns.vocab[label][best], round(float(shares[best]), 4))
    return out


def tally(columns: Columns, rows: np.ndarray, sims: np.ndarray, temperature: float, label: str) -> np.ndarray | None:
    """Each value's share of the vote on ``label`` (indexed like ``columns.vocab[label]``); None when no neighbour
    has the label."""
    if len(sims) == 0:
        return None
    return _shares(columns, rows, vote_weights(sims, temperature), label)


def vote_weights(sims: np.ndarray, temperature: float) -> np.ndarray:
    """Each neighbour's weight: softmax over the cosines (shifted by the best, so the largest weight is 1)."""
    return np.exp((sims.astype(np.float64) - float(np.max(sims))) / temperature)


def _shares(columns: Columns, rows: np.ndarray, weights: np.ndarray, label: str) -> np.ndarray | None:
    codes = columns.codes[label][rows]
    known = codes >= 0
    if not known.any():
        return None
    weights = weights[known]
    total = weights.sum()
    if total <= 0:
        return None
    return np.bincount(codes[known], weights=weights, minlength=len(columns.vocab[label])) / total


def vote(columns: Columns, rows: np.ndarray, sims: np.ndarray, temperature: float) -> Identification:
    """Similarity-weighted vote of labelled neighbours on type, gender and colour."""
    ident = Identification()
    for label, (value, confidence) in vote_labels(columns, rows, sims, temperature).items():
        setattr(ident, label, value)
        setattr(ident, f"{label}_confidence", confidence)
    return ident
