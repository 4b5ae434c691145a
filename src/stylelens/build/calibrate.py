"""Thresholds measured for one embedding space, each time a space is made (an index built, a head tuned).

A cosine means different things in different spaces: 0.97 is a near-duplicate among raw backbone
vectors and an ordinary neighbour in a tuned space that pulls every t-shirt together. So each space
carries its own ``Calibration`` (models.head), recorded in the manifest under ``spaces``:

- ``vote_temperature``: the softmax temperature that makes the neighbours' vote an honest probability
  (least log-loss of the true type, leave-one-out over a seeded sample of labelled products), so a
  confidence of 0.5 means about the same in every space;
- ``score_scale``: how far apart a product's neighbours lie (median gap from the 1st to the 40th)
  relative to the raw space; ``type_boost`` is scaled by it;
- ``same_picture``: the tuned cosine that two raw vectors at the raw same-picture cosine (0.9999) keep;
- ``near_duplicate``: the tuned cosine that counts as many nearest-neighbour pairs as near-duplicates as
  the raw threshold (setting ``duplicate_cosine``) does among raw vectors.
"""

from __future__ import annotations

import numpy as np

from ..index.backend import top_k
from ..models.head import Calibration

TEMPERATURES = (0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2)
SAMPLE = 1000
SCORE_SCALE_RANGE = (0.25, 4.0)  # a type boost stays a nudge, never a filter
DEPTH = 40  # neighbours looked at per sampled product (the candidate pool of a k=10 search)


def _neighbours(matrix: np.ndarray, live: np.ndarray, rows: np.ndarray, same: float, block: int = 512):
    """(scores, rows) of the DEPTH nearest live rows to each sampled row, itself and its same pictures left out."""
    scores, found = [], []
    for start in range(0, len(rows), block):
        q = rows[start:start + block]
        s = matrix[q] @ matrix.T
        s[:, ~live] = -np.inf
        s[np.arange(len(q)), q] = -np.inf
        s[s >= same] = -np.inf
        sc, r = top_k(s, DEPTH)
        scores.append(sc)
        found.append(r)
    return np.concatenate(scores), np.concatenate(found)


def vote_temperature(scores: np.ndarray, rows: np.ndarray, codes: np.ndarray, truth: np.ndarray, k: int) -> float:
    """The temperature of least log-loss of the true label under the top-k softmax vote."""
    labelled = truth >= 0
    if labelled.sum() < 20:
        return Calibration.vote_temperature
    s, r, t = scores[labelled, :k], rows[labelled, :k], truth[labelled]
    ok = (r >= 0) & np.isfinite(s)
    hit = (codes[np.clip(r, 0, None)] == t[:, None]) & ok
    best, best_loss = Calibration.vote_temperature, np.inf
    for temperature in TEMPERATURES:
        w = np.where(ok, np.exp((np.where(ok, s, 0) - np.max(np.where(ok, s, -1), axis=1, keepdims=True)) / temperature), 0)
        p = (w * hit).sum(1) / np.maximum(w.sum(1), 1e-12)
        loss = float(-np.log(np.clip(p, 1e-3, 1)).mean())
        if loss < best_loss - 1e-9:
            best, best_loss = temperature, loss
    return best


def _gap(scores: np.ndarray) -> float:
    ok = np.isfinite(scores[:, 0]) & np.isfinite(scores[:, -1])
    return float(np.median(scores[ok, 0] - scores[ok, -1])) if ok.any() else 1.0


def sample_rows(live: np.ndarray, seed: int = 0, n: int = SAMPLE) -> np.ndarray:
    rows = np.flatnonzero(live)
    if len(rows) > n:
        rows = np.sort(np.random.default_rng(seed).choice(rows, n, replace=False))
    return rows


def calibrate_raw(matrix: np.ndarray, live: np.ndarray, type_codes: np.ndarray, settings, seed: int = 0) -> dict:
    """The raw space's calibration (its same-picture and near-duplicate cosines are the settings' own)."""
    rows = sample_rows(live, seed)
    if len(rows) < 2:
        return Calibration(near_duplicate=settings.duplicate_cosine).to_dict()
    scores, found = _neighbours(matrix, live, rows, Calibration.same_picture)
    t = vote_temperature(scores, found, type_codes, type_codes[rows], settings.identify_k)
    return Calibration(near_duplicate=settings.duplicate_cosine, vote_temperature=t).to_dict()


def calibrate_tuned(raw: np.ndarray, tuned: np.ndarray, live: np.ndarray, type_codes: np.ndarray, project, settings,
                    seed: int = 0) -> dict:
    """The tuned space's calibration, measured against the raw space on the same sampled products.
    ``project(raw_rows_vectors, rows)`` maps raw vectors of those rows into the tuned space."""
    rows = sample_rows(live, seed)
    if len(rows) < 2:
        return Calibration().to_dict()
    raw_same = Calibration.same_picture
    raw_scores, _ = _neighbours(raw, live, rows, raw_same)
    rng = np.random.default_rng(seed)
    # Same picture: nudge each raw vector to cosine raw_same in a random direction and see what the head keeps.
    v = raw[rows]
    noise = rng.standard_normal(v.shape).astype(np.float32)
    noise -= (noise * v).sum(1, keepdims=True) * v
    noise /= np.maximum(np.linalg.norm(noise, axis=1, keepdims=True), 1e-12)
    nudged = raw_same * v + np.sqrt(1 - raw_same ** 2) * noise
    kept = (project(nudged, rows) * tuned[rows]).sum(1)
    same = float(min(np.quantile(kept, 0.01), 0.99999))
    scores, found = _neighbours(tuned, live, rows, same)
    # Near-duplicates: as many nearest-neighbour pairs over the tuned threshold as over the raw one.
    share = float(np.mean(raw_scores[:, 0] >= settings.duplicate_cosine))
    near = float(np.quantile(scores[:, 0][np.isfinite(scores[:, 0])], 1 - max(share, 0.001)))
    near = min(max(near, 0.5), same)
    t = vote_temperature(scores, found, type_codes, type_codes[rows], settings.identify_k)
    scale = float(np.clip(_gap(scores) / max(_gap(raw_scores), 1e-6), *SCORE_SCALE_RANGE))
    return Calibration(same_picture=same, near_duplicate=near, vote_temperature=t, score_scale=scale).to_dict()
