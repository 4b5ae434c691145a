"""Would a learned linear projection of the frozen embeddings earn its place? Measured, not shipped.

Trains a linear map (dim x D, no bias) on a seeded 80% of the catalog's products with
cosine-softmax heads for articleType, gender and colour (weights 1, 0.5, 0.5; temperature 0.05;
Adam, CPU), then searches with the held-out 20% as queries against the whole catalog (leaving out
the query and any copy of its picture), raw vectors vs projected ones:

    python bench/quality/projection.py INDEX [--dim 128] [--epochs 15] [--seed 0] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from stylelens.quality.evaluate import LABELS, label_metrics, neighbours
from stylelens.index import open_store


def train(vectors: np.ndarray, labels: dict[str, np.ndarray], vocab_sizes: dict[str, int], dim: int, epochs: int,
          seed: int, weights=(1.0, 0.5, 0.5), temperature: float = 0.05) -> np.ndarray:
    torch.manual_seed(seed)
    x = torch.from_numpy(vectors)
    y = {c: torch.from_numpy(labels[c]) for c in LABELS}
    proj = torch.nn.Linear(vectors.shape[1], dim, bias=False)
    heads = {c: torch.nn.Linear(dim, vocab_sizes[c], bias=False) for c in LABELS}
    params = list(proj.parameters()) + [p for h in heads.values() for p in h.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), 512):
            i = order[start:start + 512]
            z = torch.nn.functional.normalize(proj(x[i]), dim=1)
            loss = 0.0
            for w, c in zip(weights, LABELS):
                target, known = y[c][i], y[c][i] >= 0
                centres = torch.nn.functional.normalize(heads[c].weight, dim=1)
                loss = loss + w * torch.nn.functional.cross_entropy(z[known] @ centres.T / temperature, target[known])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return proj.weight.detach().numpy().T.copy()


def held_out_metrics(space: np.ndarray, live: np.ndarray, query_rows: np.ndarray, codes: dict, k: int = 10) -> dict:
    _, rows, _, _ = neighbours(space, live, space[query_rows], k, self_rows=query_rows)
    out = {}
    for c in LABELS:
        q = codes[c][query_rows]
        counts = np.bincount(codes[c][live][codes[c][live] >= 0], minlength=codes[c].max() + 2)
        n_rel = np.where(q >= 0, counts[np.clip(q, 0, None)] - 1, 0)
        rel = np.where(rows >= 0, codes[c][np.clip(rows, 0, None)], -3) == q[:, None]
        out[c] = label_metrics(rel, n_rel, (k,))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("index")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out")
    args = p.parse_args(argv)
    store = open_store(args.index)
    cols = store.columns
    vectors = np.array(store.all_vectors(), np.float32)  # a copy in RAM: training and both searches read it all
    codes = {c: cols.codes[c].astype(np.int64) for c in LABELS}
    live_rows = np.flatnonzero(cols.live)
    rng = np.random.default_rng(args.seed)
    test = np.sort(rng.choice(live_rows, len(live_rows) // 5, replace=False))
    train_rows = np.setdiff1d(live_rows, test)
    started = time.perf_counter()
    weight = train(vectors[train_rows], {c: codes[c][train_rows] for c in LABELS},
                   {c: len(cols.vocab[c]) for c in LABELS}, args.dim, args.epochs, args.seed)
    seconds = time.perf_counter() - started
    projected = vectors @ weight
    projected /= np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12)
    raw = held_out_metrics(vectors, cols.live, test, codes)
    tuned = held_out_metrics(projected.astype(np.float32), cols.live, test, codes)
    result = {"index": str(args.index), "products": int(len(live_rows)), "trained_on": int(len(train_rows)),
              "held_out_queries": int(len(test)), "dim": args.dim, "epochs": args.epochs, "seed": args.seed,
              "train_seconds": round(seconds, 1), "raw": raw, "projected": tuned}
    print(f"{len(train_rows):,} products trained, {len(test):,} held-out queries, {args.dim}-d, {seconds:.0f} s")
    print("label    P@10 raw  P@10 projected  mAP@10 raw  mAP@10 projected")
    for c in LABELS:
        print(f"{c:<8} {raw[c]['precision@10']:8.4f}  {tuned[c]['precision@10']:14.4f}  {raw[c]['mAP@10']:10.4f}  "
              f"{tuned[c]['mAP@10']:16.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
