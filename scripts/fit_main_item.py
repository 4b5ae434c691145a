"""Fit the weights of an outfit's main-item score (stylelens.query.stages.order.WEIGHTS) on street-ccp's train part.

    python scripts/fit_main_item.py --data ../shared/data --index LITE0_INDEX [--part train] [--limit N]

Every train photo with a worn garment is searched as served (garment parser and type model on); each garment
the search answers is one example: its ``stages.order.features`` and whether its results would make the main
result right (type P@5 >= 0.6 for some worn garment, ``quality.realscore``). The weights are an L2 logistic
regression's (C=1, intercept unpenalised, Newton's method); paste them into ``stages.order.WEIGHTS``.
``--part measure`` only reports main result right with today's weights and the parser's order (nothing is fitted
on it). Deterministic.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from stylelens import open_index
from stylelens.quality import realdata
from stylelens.quality import realscore as rs
from stylelens.query.stages import order


def examples(index, photos):
    """Per photo: (the features of each garment answered, whether each one's results are right)."""
    for photo in photos:
        result, decoded, items = index.search_items(photo.path.read_bytes(), rs.K, include_out_of_stock=True)
        wanted = [g.catalog_types for g in photo.worn]
        rows = result.extra["items"]
        x = [order.features(item.score, (row["identified"] or {}).get("type_confidence", 0.0), row["results"],
                            item.box, item.group, decoded.size) for item, row in zip(items, rows)]
        y = [rs.main_result_right(rs.result_types(row["results"]), wanted) for row in rows]
        yield np.array(x), np.array(y, float)


def logistic(x: np.ndarray, y: np.ndarray, c: float = 1.0, steps: int = 50) -> np.ndarray:
    """L2-penalised logistic regression (penalty |w|^2 / 2C, intercept free) by Newton's method: (weights, intercept)."""
    a = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(a.shape[1])
    penalty = np.full(a.shape[1], 1.0 / c)
    penalty[-1] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-a @ w))
        grad = a.T @ (p - y) + penalty * w
        hess = (a * (p * (1 - p))[:, None]).T @ a + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=realdata.default_root())
    ap.add_argument("--index", type=Path, required=True, help="the efficientnet-lite0 index of the whole catalog")
    ap.add_argument("--part", default="train", choices=("train", "measure"))
    ap.add_argument("--limit", type=int, default=0, help="only the first N photos")
    args = ap.parse_args(argv)
    index = open_index(args.index, tune=False)
    photos = [p for p in realdata.street_photos(args.data, part=args.part) if p.worn][: args.limit or None]
    xs, ys = [], []
    for x, y in examples(index, photos):  # the rows as served: the main item's first
        xs.append(x)
        ys.append(y)
    print(f"{args.part}: {len(photos)} photos, {sum(len(y) for y in ys)} garments; main result right as served "
          f"(WEIGHTS {order.WEIGHTS}): {np.mean([y[0] for y in ys]):.3f}")
    if args.part == "train":
        w = logistic(np.concatenate(xs), np.concatenate(ys))
        print("WEIGHTS = (" + ", ".join(f"{v:.2f}" for v in w[:-1]) + ")  # " + ", ".join(order.FEATURES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
