"""The walk of one photo through the library, counted: rooms (stylelens modules entered), stays (calls that
enter a module other than the caller's), calls back into the front object from below, and decodes per photo
(bytes decoded; whole-picture ``load_image`` passes, the RGB conversions included).

Runs against any commit (public API only), on an index made by bench/same_results.py:

    .venv/bin/python bench/query_walk.py --index /work/cache/pipeline/same/raw PHOTO
    PYTHONPATH=/tmp/base/src .venv/bin/python bench/query_walk.py --index ... PHOTO
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def walk(index, photo: Path) -> dict:
    import stylelens.intake.images as images

    index.search(photo, 5)  # warm-up: lazy loading is not part of the walk
    counts = {"decodes": 0, "load_image": 0, "back_into_index": 0}
    real_open = images._open

    def counted_open(*a, **kw):
        counts["decodes"] += 1
        return real_open(*a, **kw)

    images._open = counted_open
    calls = []

    def profile(frame, event, arg):
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        caller = frame.f_back.f_globals.get("__name__", "") if frame.f_back else ""
        if module.startswith("stylelens.") and frame.f_code.co_name == "load_image" and module == "stylelens.intake.images":
            counts["load_image"] += 1
        if module.startswith("stylelens.") and module != caller:
            calls.append(module)
            if module == "stylelens.query.index" and caller.startswith("stylelens."):
                counts["back_into_index"] += 1  # a lower module calling the front object back

    sys.setprofile(profile)
    try:
        result = index.search(photo, 5)
    finally:
        sys.setprofile(None)
        images._open = real_open
    rooms = list(dict.fromkeys(calls))
    return {"rooms": len(rooms), "stays": len(calls), "decodes": counts["decodes"],
            "whole_picture_passes": counts["load_image"], "back_into_index": counts["back_into_index"],
            "query_rooms": sum(m.startswith("stylelens.query") for m in rooms), "items": len(result.extra.get("items", [])), "walk": rooms}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("photo", type=Path)
    args = ap.parse_args()
    from stylelens.query import open_index

    index = open_index(args.index, runtime="torch")
    print(json.dumps(walk(index, args.photo), indent=1))
    index.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
