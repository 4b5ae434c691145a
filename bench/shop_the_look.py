"""Shop the look, measured per garment: the parser locate stage's variants on the real measure parts.

    PYTHONPATH=src .venv/bin/python bench/shop_the_look.py --street 150 --items-per-class 30 --out /tmp/stl

bench/real.py gives the tables of record (whole frame vs item finding, setting ``parser`` on or off); this
adds what it does not split out: each worn garment's type P@5 from the item row that points at it (0 when
no row does), per group; a worn garment cut out on white (its mask) against its padded box crop; and, on
real-items, how often the stage cuts a lone garment and whether a cut ever answers worse than the frame.
Definitions: ``stylelens.quality.realscore``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from functools import partial
from pathlib import Path

import numpy as np

from stylelens import open_index
from stylelens.quality import realdata
from stylelens.quality import realscore as rs
from stylelens.query.stages.parse import parse


def p50(v):
    return round(float(np.median(v)), 1) if v else None


def street(photos, indexes):
    per_group = {m: defaultdict(list) for m in indexes}
    found, every, main, ious, ms, n_items = (defaultdict(list) for _ in range(6))
    for photo in photos:
        worn = photo.worn
        if not worn:
            continue
        data = photo.path.read_bytes()
        for name, index in indexes.items():
            t = time.perf_counter()
            result = index.search(data, k=rs.K, include_out_of_stock=True)
            ms[name].append((time.perf_counter() - t) * 1000)
            rows = [(r["box"], rs.result_types(r["results"])) for r in result.extra["items"]]
            n_items[name].append(len(rows))
            hit = rs.garments_found(rows, [(g.box, g.catalog_types) for g in worn])
            found[name] += hit
            every[name].append(all(hit))
            main[name].append(rs.main_result_right(rs.result_types(result.products), [g.catalog_types for g in worn]))
            for g in worn:
                i = rs.row_for(g.box, [b for b, _ in rows])
                per_group[name][g.group].append(0.0 if i is None else rs.type_p_at_k(rows[i][1], g.catalog_types))
                ious[name].append(rs.best_iou([b for b, _ in rows], g.box))
    r3 = lambda v: None if v is None else round(v, 3)  # noqa: E731
    return {m: {"photos": len(main[m]), "main_result_right": r3(rs.mean(main[m])),
                "every_garment_found": r3(rs.mean(every[m])), "garments_found": r3(rs.mean(found[m])),
                "garment_p5": r3(rs.mean(v for g in per_group[m].values() for v in g)),
                "group_p5": {g: r3(rs.mean(v)) for g, v in sorted(per_group[m].items())},
                "box_iou_ge_0.5": r3(rs.mean(v >= 0.5 for v in ious[m])), "items_per_photo": r3(rs.mean(n_items[m])),
                "p50_ms": p50(ms[m])} for m in indexes}


def items(photos, indexes, frame: str):
    p5, ms, cut = {m: [] for m in indexes}, defaultdict(list), defaultdict(list)
    for photo in photos:
        data = photo.path.read_bytes()
        for name, index in indexes.items():
            t = time.perf_counter()
            result = index.search(data, k=rs.K, include_out_of_stock=True)
            ms[name].append((time.perf_counter() - t) * 1000)
            p5[name].append(rs.type_p_at_k(rs.result_types(result.products), photo.catalog_types))
            row = result.extra["items"][0]
            cut[name].append(len(result.extra["items"]) > 1 or row.get("group") is not None
                             or row["box"][:2] != [0, 0])
    out = {}
    for m in indexes:
        d = np.array(p5[m]) - np.array(p5[frame])
        out[m] = {"p5": round(float(np.mean(p5[m])), 3), "not_whole_frame": round(float(np.mean(cut[m])), 3),
                  "worse_than_frame": int((d < 0).sum()), "better_than_frame": int((d > 0).sum()),
                  "p50_ms": p50(ms[m])}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--index", default="/work/cache/lite0-full")
    p.add_argument("--data", default=str(realdata.default_root()))
    p.add_argument("--street", type=int, default=150)
    p.add_argument("--items-per-class", type=int, default=0)
    p.add_argument("--precision", default="f32", help="The parser maps' precision for the 'parser' rows (f32, bf16).")
    p.add_argument("--baselines", action="store_true", help="Also the whole frame and the contrast localiser on "
                   "street photos (bench/real.py measures both).")
    p.add_argument("--out")
    args = p.parse_args(argv)
    root = Path(args.data)
    frame = open_index(args.index, localise=False)
    from stylelens.models.parser import GarmentParser

    parser = GarmentParser.load(embedder=frame.embedder, precision=args.precision)
    variants = {
        **({"whole frame": frame, "contrast": open_index(args.index, embedder=frame.embedder, parser=False)}
           if args.baselines else {}),
        "parser (MASKED groups on white)": open_index(args.index, embedder=frame.embedder, locator=partial(parse, parser=parser)),
        "parser (every garment a box crop)": open_index(args.index, embedder=frame.embedder,
                                        locator=partial(parse, parser=parser, masked=False)),
    }
    report = {"precision": args.precision}
    shots = realdata.street_photos(root, part="measure")[: args.street]
    report["street"] = street(shots, variants)
    print(json.dumps(report["street"], indent=1), file=sys.stderr)
    if not args.items_per_class:
        print(json.dumps(report, indent=1))
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "shop_the_look.json").write_text(json.dumps(report, indent=1))
        return
    by_class = defaultdict(list)
    for photo in realdata.real_items(root, part="measure"):
        if len(by_class[photo.cls]) < args.items_per_class:
            by_class[photo.cls].append(photo)
    singles = [p for c in sorted(by_class) for p in by_class[c]]
    report["items"] = items(singles, {"whole frame": frame, "parser (MASKED groups on white)": variants["parser (MASKED groups on white)"]},
                            "whole frame")
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "shop_the_look.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
