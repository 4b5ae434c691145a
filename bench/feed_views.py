""""More like this" for products with several pictures: the query made from the main picture alone, from the
mean of the views (what ``Index.similar`` does), or the best pair of views (one search per view, merged).

fashion-small has one picture per product, so each sampled product gets a second view made from its own
picture: a closer, mirrored shot (the centre 70 %, flipped), as a shop's detail or side shot. Each candidate
answers with its best view (``best_views``), as served. Relevance: the same articleType, and the same
articleType and colour. EfficientNet-Lite0 with its real ImageNet weights (fp32).

    python bench/feed_views.py --n 1500
"""

from __future__ import annotations

import argparse
import csv
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

FASHION = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-small"


def second_view(path: Path) -> Image.Image:
    picture = Image.open(path).convert("RGB")
    w, h = picture.size
    crop = picture.crop((int(w * .15), int(h * .15), int(w * .85), int(h * .85))).resize((w, h))
    return ImageOps.mirror(crop)


def precision_at(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    np.fill_diagonal(scores, -np.inf)  # a product is not its own "more like this"
    top = np.argsort(-scores, axis=1)[:, :k]
    return float((labels[top] == labels[:, None]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=FASHION, help="fashion-small (default: ../shared/data/fashion-small)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from stylelens.models import Embedder

    fashion = args.data
    with open(fashion / "styles.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if (fashion / "images" / f"{r['id']}.jpg").is_file()]
    rows = random.Random(args.seed).sample(rows, args.n)
    embedder = Embedder("efficientnet-lite0", weights="imagenet", runtime="torch", precision="fp32", batch_size=32)
    started = time.perf_counter()
    paths = [fashion / "images" / f"{r['id']}.jpg" for r in rows]
    main_v = np.concatenate([embedder.embed([Image.open(p).convert("RGB") for p in paths[i:i + 64]])
                             for i in range(0, len(paths), 64)])
    other_v = np.concatenate([embedder.embed([second_view(p) for p in paths[i:i + 64]]) for i in range(0, len(paths), 64)])
    print(f"embedded {2 * len(paths)} pictures in {time.perf_counter() - started:.0f} s")

    # Each candidate's score: its best view (what best_views serves).
    def against_views(queries: np.ndarray) -> np.ndarray:
        return np.maximum(queries @ main_v.T, queries @ other_v.T)

    mean = main_v + other_v
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    methods = {
        "catalog without views: main picture vs main pictures": main_v @ main_v.T,
        "views: the main picture as the query": against_views(main_v),
        "views: the mean of the views as the query (served)": against_views(mean),
        "views: the best pair of views (a search per view)": np.maximum(against_views(main_v), against_views(other_v)),
    }
    kinds = np.array([r["articleType"] for r in rows])
    kind_colour = np.array([f"{r['articleType']}/{r['baseColour']}" for r in rows])
    print(f"\n{args.n} fashion-small products, each with a second view (centre 70 %, mirrored); P@{args.k}\n")
    print(f"| query | same type | same type and colour |\n|---|---:|---:|")
    for name, scores in methods.items():
        print(f"| {name} | {precision_at(scores.copy(), kinds, args.k):.3f} | {precision_at(scores.copy(), kind_colour, args.k):.3f} |")


if __name__ == "__main__":
    main()
