"""The catalog's type probe: a linear classifier of the product type over the index's own raw vectors, trained by
``stylelens tune`` on the products the head trains on (never on the held-out ones).

The neighbour vote and a linear classifier err on different products: the vote follows the few nearest shots
(a top shot like a t-shirt is named Tshirts), the classifier the whole type's shape. Their average names catalog
shots better than either: on 4,000 held-out fashion-small products (EfficientNet-Lite0) the vote is right 0.852,
the probe 0.850, their equal blend 0.870. The identify stage blends them (``query.stages.identify``) where tune
measured the blend better (``quality.tuning``, aspect "vote"); the probe is a ``models.typemodel.TypeModel``.
"""

from __future__ import annotations

import numpy as np

from ..models.typemodel import TypeModel

EPOCHS, MIN_STEPS, BATCH, LR, WEIGHT_DECAY = 30, 600, 512, 1e-3, 1e-4  # a small catalog still gets MIN_STEPS
CALIBRATION_SHARE = 0.1  # of the trained products, kept out of the fit to set the temperature on
MIN_PER_TYPE = 2  # types with fewer trained products are left to the vote


def fit_type_probe(vectors: np.ndarray, codes: np.ndarray, vocab: list[str], fingerprint: dict, seed: int = 0) -> TypeModel | None:
    """A linear probe from raw ``vectors`` to ``codes`` (indexes into ``vocab``; -1 unknown), its softmax temperature
    fitted on a seeded slice it did not train on. None when fewer than two types have products enough."""
    import torch

    known = codes >= 0
    counts = np.bincount(codes[known], minlength=len(vocab))
    taught = np.flatnonzero(counts >= MIN_PER_TYPE)
    if len(taught) < 2:
        return None
    keep = known & np.isin(codes, taught)
    x = np.asarray(vectors[keep], np.float32)
    y = np.searchsorted(taught, codes[keep])
    rng = np.random.default_rng(seed)
    calib = rng.random(len(x)) < CALIBRATION_SHARE
    mean, scale = x[~calib].mean(0), x[~calib].std(0) + 1e-6
    z = torch.from_numpy((x - mean) / scale)
    target = torch.from_numpy(y.astype(np.int64))
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 1280 x ~140 matrix: one thread is as fast and never stalls a busy machine
    try:
        layer = torch.nn.Linear(z.shape[1], len(taught))
        opt = torch.optim.AdamW(layer.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        fit_rows = torch.from_numpy(np.flatnonzero(~calib))
        generator = torch.Generator().manual_seed(seed)
        batches = -(-len(fit_rows) // BATCH)
        for _ in range(max(EPOCHS, -(-MIN_STEPS // batches))):
            order = fit_rows[torch.randperm(len(fit_rows), generator=generator)]
            for start in range(0, len(order), BATCH):
                batch = order[start:start + BATCH]
                loss = torch.nn.functional.cross_entropy(layer(z[batch]), target[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            held = torch.from_numpy(np.flatnonzero(calib))
            logits = layer(z[held]).double() if len(held) else None
            temperature = _temperature(logits, target[held], torch) if logits is not None else 1.0
    finally:
        torch.set_num_threads(threads)
    w, b = layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy()
    return TypeModel(fingerprint["backbone"], fingerprint.get("pooling", "max"),
                     int((fingerprint.get("preprocess") or {}).get("size") or 0), tuple(vocab[i] for i in taught),
                     mean, scale, [(w, b)], temperature,
                     meta={"trained_on": int((~calib).sum()), "calibrated_on": int(calib.sum()), "epochs": EPOCHS,
                           "seed": seed})


def _temperature(logits, target, torch) -> float:
    """The softmax temperature minimising the held slice's negative log-likelihood (a grid: one number)."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 41))
    nll = [float(torch.nn.functional.cross_entropy(logits / t, target)) for t in grid]
    return float(grid[int(np.argmin(nll))])
