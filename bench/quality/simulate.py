"""Personalisation lift, simulated: do shoppers' likes and dislikes bring their taste to the top?

Each simulated shopper has a hidden taste (gender + articleType + baseColour, drawn from the
combinations with at least --min-items products) and starts from a catalog product of that
articleType (any gender or colour) as the query photo. Every round they are shown the top 10; they
like the shown products that match their taste and dislike the others. We report, per round, the
share of the top 10 that matches the taste:

- plain: Index.similar without a shopper (what every round shows without personalisation);
- next page: plain search with the products already rated hidden (a non-learning baseline);
- personalised: Index.similar(user=...) (Rocchio blend, disliked products hidden; liked ones may
  show again, as they would for a shopper);
- personalised, unseen: the same with every product already rated hidden (compare with next page);
- for you: the "For you" feed (no query; rated products hidden).

    python bench/quality/simulate.py INDEX [--shoppers 300] [--rounds 5] [--seed 0] [--out FILE.json]

Shoppers are named sim-<seed>-<n> and forgotten at the end, so the index's users.sqlite is left
as it was.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from stylelens import open_index
from stylelens.query import Filters
from stylelens.query.personalize import feedback, forget, recommend_for_user

K = 10


def tastes(cols, min_items: int) -> list[tuple[int, int, int]]:
    """(gender, type, colour) code triples with at least min_items live products."""
    live = cols.live & (cols.codes["gender"] >= 0) & (cols.codes["type"] >= 0) & (cols.codes["colour"] >= 0)
    g, t, c = (cols.codes[x][live].astype(np.int64) for x in ("gender", "type", "colour"))
    key = (g * 1000 + t) * 1000 + c
    values, counts = np.unique(key, return_counts=True)
    keep = values[counts >= min_items]
    return [(int(v // 1_000_000), int(v // 1000 % 1000), int(v % 1000)) for v in keep]


def matches(cols, rows, taste) -> np.ndarray:
    g, t, c = taste
    rows = np.asarray(rows, np.int64)
    return (cols.codes["gender"][rows] == g) & (cols.codes["type"][rows] == t) & (cols.codes["colour"][rows] == c)


def simulate(index, shoppers: int, rounds: int, seed: int, min_items: int) -> dict:
    cols = index.store.columns
    rng = np.random.default_rng(seed)
    combos = tastes(cols, min_items)
    curves = {name: np.zeros((shoppers, rounds + 1))
              for name in ("plain", "next_page", "personalised", "personalised_unseen", "for_you")}
    started = time.perf_counter()
    for s in range(shoppers):
        user = f"sim-{seed}-{s}"
        forget(index, user)
        taste = combos[rng.integers(len(combos))]
        same_type = np.flatnonzero(cols.live & (cols.codes["type"] == taste[1]))
        query_id = cols.ids[int(rng.choice(same_type))]
        query_row = index.row(query_id)
        vector = index.vector(query_id)  # in the space searched (a tuned head's, when it serves)
        raw = index.store.vectors([query_row])[0]  # the backbone's, which the colour vote's space may project

        plain = [index.row(p) for p in index.similar(query_id, K).ids]
        rated: set[int] = set()
        for r in range(rounds + 1):
            personal = [index.row(p) for p in index.similar(query_id, K, user=user).ids]
            nxt = [index.row(p) for p in index.search_vector(vector, K, exclude_rows=[query_row, *rated],
                                                              filters=Filters(), identify=False, raw=raw).ids]
            unseen = [index.row(p) for p in index.search_vector(vector, K, exclude_rows=[query_row, *rated], filters=Filters(),
                                                                 identify=False, user=user, raw=raw).ids]
            curves["personalised_unseen"][s, r] = matches(cols, unseen, taste).mean() if unseen else 0.0
            curves["plain"][s, r] = matches(cols, plain, taste).mean()
            curves["personalised"][s, r] = matches(cols, personal, taste).mean()
            curves["next_page"][s, r] = matches(cols, nxt, taste).mean() if nxt else 0.0
            if r == 0:
                curves["for_you"][s, r] = np.nan  # no history yet: the feed is empty
            else:
                feed = [index.row(p) for p in recommend_for_user(index, user, K).ids]
                curves["for_you"][s, r] = matches(cols, feed, taste).mean() if feed else 0.0
            if r == rounds:
                break
            # The shopper reacts to what personalised search showed them.
            for row, ok in zip(personal, matches(cols, personal, taste)):
                feedback(index, user, cols.ids[row], "like" if ok else "dislike")
                rated.add(row)
        forget(index, user)
        if (s + 1) % 25 == 0:
            print(f"  {s + 1}/{shoppers} shoppers, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    summary = {name: [None if np.isnan(c[:, r]).all() else round(float(np.nanmean(c[:, r])), 4) for r in range(rounds + 1)]
               for name, c in curves.items()}
    return {"index": str(index.path), "products": len(index.store), "shoppers": shoppers, "rounds": rounds, "seed": seed,
            "min_items": min_items, "taste_combinations": len(combos), "k": K,
            "weights": {name: getattr(index.settings, name) for name in ("rocchio_query", "rocchio_like", "rocchio_dislike")},
            "share_matching_top10": summary, "seconds": round(time.perf_counter() - started, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("index")
    p.add_argument("--shoppers", type=int, default=300)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-items", type=int, default=30, help="Smallest taste (products matching gender+type+colour).")
    p.add_argument("--out", help="Write the result as JSON here.")
    args = p.parse_args(argv)
    index = open_index(args.index)
    result = simulate(index, args.shoppers, args.rounds, args.seed, args.min_items)
    print(f"{result['shoppers']} shoppers, {result['taste_combinations']} taste combinations, {result['products']:,} products")
    print("share of the top 10 matching the hidden taste, by round")
    print("round                " + "  ".join(f"{r:>5}" for r in range(args.rounds + 1)))
    for name, values in result["share_matching_top10"].items():
        print(f"{name:<20} " + "  ".join("    -" if v is None else f"{v:5.3f}" for v in values))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
