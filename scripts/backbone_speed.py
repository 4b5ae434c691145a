"""Speed of the EfficientNet-Lite backbones as the embedder runs them: ms per query image and batch img/s.

    python scripts/backbone_speed.py --data ../shared/data [--runtime openvino] [--precision fp32]

Query: one real-items photo at a time through ``Embedder.embed_one`` (decode, letterbox, network), p50 and
p90 over ``--queries`` photos after a warm-up. Batch: ``embed_prepared`` on 64 prepared photos, best of 3.
Each backbone runs at its own input size. Say the CPU and its load beside the numbers.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from stylelens.models.backbones import BACKBONES
from stylelens.models.embedder import Embedder
from stylelens.quality import realdata


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=realdata.default_root())
    ap.add_argument("--backbones", default="efficientnet-lite0,efficientnet-lite1,efficientnet-lite2")
    ap.add_argument("--runtime", default="openvino")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--queries", type=int, default=30)
    args = ap.parse_args()
    photos = [p.path for p in realdata.real_items(args.data, part="measure")][:: 7][: max(args.queries, 64)]
    print(f"cpu: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; runtime {args.runtime}, precision {args.precision}")
    print("| backbone | input | ms / query image p50 | p90 | batch img/s |\n|---|---|---|---|---|")
    for name in args.backbones.split(","):
        size = BACKBONES[name].preprocess.size
        emb = Embedder(name, weights="imagenet", runtime=args.runtime, precision=args.precision, input_size=size, batch_size=64)
        emb.warm()
        for p in photos[:3]:
            emb.embed_one(p)
        times = []
        for p in photos[: args.queries]:
            t0 = time.perf_counter()
            emb.embed_one(p)
            times.append((time.perf_counter() - t0) * 1000)
        pixels = np.stack([emb.prepare(p) for p in photos[:64]])
        best = min(_timed(emb.embed_prepared, pixels) for _ in range(3))
        print(f"| {name} | {size} | {np.percentile(times, 50):.1f} | {np.percentile(times, 90):.1f} | "
              f"{len(pixels) / best:.1f} |  ({emb.runtime_name})", flush=True)


def _timed(fn, x) -> float:
    t0 = time.perf_counter()
    fn(x)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
