"""An outfit query's catalog pass, before and after, side by side in one process (issue 23's cost).

    PYTHONPATH=src .venv/bin/python bench/outfit_cost.py --street 60 --repeats 2

Each street-ccp measure photo (``stylelens.quality.realdata``) is searched as the whole frame, then as served (the
garment parser: one row per worn garment) twice, in turn, the order alternating:

- **whole pass**: the garments' vectors against every row of the catalog, each search's best picked over every row
  (``query.stages.neighbours`` as it was before the group passes);
- **group rows**: against the rows of the garments' groups alone, each search's best picked among its own rows
  (``neighbours.scored`` with each garment's rows, ``neighbours.best_of``), as served.

Every item row's products (ids, scores), its type and the main results must be the same; p50 wall and CPU
milliseconds (every thread of the process) of each, and the ratio to the whole frame. ``--items N`` adds N real-items
measure photos (spread over the classes) (mostly searched whole) to the comparison of answers.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from stylelens import open_index
from stylelens.index.backend import top_k
from stylelens.quality import realdata
from stylelens.query import pipeline
from stylelens.query.stages import neighbours

GROUP_ROWS, BEST_OF = neighbours.scored, neighbours.best_of


def whole_pass(snap, vectors, within=None):
    """Before: every row scored, the best picked over every row."""
    neighbours.best_of = lambda scores, mask, k: top_k(np.where(mask, scores, np.float32(-np.inf))[None], k)
    return GROUP_ROWS(snap, vectors)


def group_rows(snap, vectors, within=None):
    neighbours.best_of = BEST_OF
    return GROUP_ROWS(snap, vectors, within)


def answer(result) -> list:
    return [([p["id"] for p in row["results"]], [p["score"] for p in row["results"]],
             (row["identified"] or {}).get("type")) for row in result.extra["items"]] + [result.ids]


def timed(index, data: bytes, scoring=None):
    if scoring is not None:
        pipeline.scored = scoring
    wall, cpu = time.perf_counter(), time.process_time()
    result = index.search(data, k=5, include_out_of_stock=True)
    return result, (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", default="/work/cache/lite0-full")
    p.add_argument("--data", default=str(realdata.default_root()))
    p.add_argument("--street", type=int, default=60, help="The first N street measure photos with a worn garment.")
    p.add_argument("--items", type=int, default=0, help="The first N real-items measure photos, answers only.")
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)
    served = open_index(args.index, tune=False)
    frame = open_index(args.index, tune=False, localise=False, embedder=served.embedder)
    street = [ph.path.read_bytes() for ph in realdata.street_photos(args.data, part="measure") if ph.worn][:args.street]
    every = realdata.real_items(args.data, part="measure")
    items = [ph.path.read_bytes() for ph in every[::max(1, len(every) // args.items)][:args.items]] if args.items else []
    sides = [("whole pass", whole_pass), ("group rows", group_rows)]
    for data in street[:3]:  # warm-up: the parser and the runtimes load lazily
        timed(frame, data)
        for _, scoring in sides:
            timed(served, data, scoring)
    wall = {name: [] for name in ["whole frame"] + [s for s, _ in sides]}
    cpu = {name: [] for name in wall}
    same, different = 0, []
    for repeat in range(args.repeats):
        for i, data in enumerate(street + items):
            if i < len(street):
                _, w, c = timed(frame, data)
                wall["whole frame"].append(w)
                cpu["whole frame"].append(c)
            got = {}
            for name, scoring in (sides if (i + repeat) % 2 == 0 else sides[::-1]):
                result, w, c = timed(served, data, scoring)
                got[name] = answer(result)
                if i < len(street):
                    wall[name].append(w)
                    cpu[name].append(c)
            if got["whole pass"] == got["group rows"]:
                same += 1
            else:
                different.append(("street" if i < len(street) else "real-items", i))
    pipeline.scored = GROUP_ROWS
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[0]
    print(f"{len(street)} street + {len(items)} real-items photos x {args.repeats}: same answers {same}, "
          f"different {len(different)} {different[:10]}; load {load}")
    for label, table in (("wall", wall), ("CPU", cpu)):
        base = float(np.median(table["whole frame"]))
        print(f"p50 {label} ms: " + ", ".join(f"{name} {np.median(v):.1f}" + ("" if name == "whole frame" else
                                                                              f" ({np.median(v) / base:.2f}x)")
                                              for name, v in table.items()))


if __name__ == "__main__":
    main()
