"""Real shopper photos, the measure of record (issue 23): both real sets beside the composites, per method.

    .venv/bin/python bench/real.py                       # full measure parts, index /work/cache/lite0-full
    .venv/bin/python bench/real.py --quick --out /tmp/rb  # a small slice; tables as JSON + markdown in /tmp/rb

What is searched:
- real-items (single garments at home) and street-ccp (people in outfits): the ``measure`` part of
  ``stylelens.quality.realdata`` (never its train part), against ``--index``, the whole fashion-small catalog.
- the composites of bench/shopper.py (``--composites`` per kind): held-out products' shopper-like photos,
  searched against a copy of ``--index`` without those products (``remove_products``), so no query is indexed.

Methods: whole frame (setting ``localise=False``) and today's item finding (the default), each in the raw
and in the tuned space. The tuned space is a tuned copy of the index made here once (``stylelens tune``'s
``tune_index`` with ``--tune-views``), kept under ``--work``; "frame probe" / "items probe" (not run by default)
search the raw space with tune's type probe in the type vote (the aspect "vote"). Scoring: ``stylelens.quality.realscore``
(its docstring defines P@5, overlap, found and main-result-right).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shopper import split  # noqa: E402  -- the composites' one held-out split

from stylelens.quality import realdata  # noqa: E402
from stylelens.quality import realscore as rs  # noqa: E402

METHODS = {  # name -> (item finding, what the tuned copy serves: False nothing, True every aspect, or those named)
    "frame raw": (False, False),
    "items raw": (True, False),
    "frame tuned": (False, True),
    "items tuned": (True, True),
    # the raw space with tune's type probe in the type vote (aspect "vote"), as an index that adopted it alone serves
    "frame probe": (False, ("vote",)),
    "items probe": (True, ("vote",)),
}
QUICK = {"items_per_class": 8, "street": 20, "composites": 5}


# ---- indexes ---------------------------------------------------------------------------------------
def copy_index(src: Path, dst: Path) -> None:
    """A folder index copied whole (no writer may be at work on ``src``), without its writer's lock file."""
    tmp = dst.with_name(f"{dst.name}.partial-{os.getpid()}")  # two runs never share a half-made copy
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("writer.lock"))
    tmp.rename(dst)


def tuned_copy(src: Path, dst: Path, tune_views: int) -> dict:
    """``dst``: ``src`` tuned (made once; a copy whose head is missing is tuned again)."""
    from stylelens.tune.train import tune_index

    manifest = dst / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("head"):
        return json.loads(manifest.read_text())["head"].get("info", {})
    if not manifest.is_file():
        copy_index(src, dst)
    started = time.perf_counter()
    report = tune_index(dst, tune_views=tune_views, progress=False)
    print(f"tuned {dst} ({tune_views} views) in {time.perf_counter() - started:.0f} s: {report.to_dict()}", file=sys.stderr)
    return report.to_dict()


def heldout_copy(src: Path, dst: Path, held: list[str]) -> None:
    """``dst``: ``src`` without the composites' held-out products (made once)."""
    from stylelens import remove_products

    if (dst / "manifest.json").is_file():
        return
    copy_index(src, dst)
    removed, missing = remove_products(dst, held)
    print(f"{dst}: removed {removed} held-out products ({len(missing)} were not indexed)", file=sys.stderr)


def searchers(raw: Path, tuned: Path | None, methods) -> dict:
    """One opened index per method, sharing one embedder."""
    from stylelens import open_index

    from stylelens.query.space import ASPECTS

    out, embedder = {}, None
    for name in methods:
        localise, serves = METHODS[name]
        tune = bool(serves)
        path = tuned if tune else raw
        # The tuned methods search the head for every aspect, whatever tune adopted: raw against tuned.
        aspects = ASPECTS if serves is True else tuple(serves or ())
        out[name] = open_index(path, embedder=embedder, localise=localise, tune=tune, aspects=aspects)
        embedder = out[name].embedder
        if "type" in aspects and out[name].space.name == "raw" or "vote" in aspects and out[name].snapshot().type_probe is None:
            raise SystemExit(f"{path} has no tuned head (or no type probe): delete it to have it tuned again")
    return out


def catalog_types(styles: Path) -> Counter:
    import csv

    with open(styles, newline="", encoding="utf-8") as fh:
        return Counter(r["articleType"] for r in csv.DictReader(fh))


def photo_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:  # boxes are answered in the upright photo's pixels
        w, h = im.size
        return (h, w) if im.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)


def search(index, data: bytes, **kw) -> tuple[object, float]:
    started = time.perf_counter()
    result = index.search(data, k=rs.K, include_out_of_stock=True, **kw)
    return result, (time.perf_counter() - started) * 1000


def rows_of(result) -> list[tuple[list, list[str]]]:
    """(box, result types) per item row the search answered, main item first."""
    return [(row["box"], rs.result_types(row["results"])) for row in result.extra["items"]]


def p50(values) -> float | None:
    return round(float(np.median(values)), 1) if len(values) else None


# ---- the three sets --------------------------------------------------------------------------------
def real_items(photos, indexes: dict, counts: Counter) -> dict:
    per = {m: defaultdict(list) for m in indexes}
    several, cut, ms = defaultdict(list), defaultdict(list), defaultdict(list)
    for n, photo in enumerate(photos):
        data = photo.path.read_bytes()
        size = photo_size(data)
        for name, index in indexes.items():
            result, took = search(index, data)
            ms[name].append(took)
            per[name][photo.cls].append(rs.type_p_at_k(rs.result_types(result.products), photo.catalog_types))
            rows = result.extra["items"]
            several[name].append(len(rows) > 1)
            cut[name].append(rs.is_cut(rows[0]["box"], size))
        if n % 100 == 99:
            print(f"real-items {n + 1}/{len(photos)}", file=sys.stderr)
    classes = sorted({p.cls for p in photos})
    types = {p.cls: p.catalog_types for p in photos}
    table = {"classes": {c: {"n": len(per[next(iter(indexes))][c]), "chance": round(rs.chance(counts, types[c]), 3),
                             **{m: round(rs.mean(per[m][c]), 3) for m in indexes}} for c in classes}}
    table["overall"] = {m: round(rs.mean(v for c in classes for v in per[m][c]), 3) for m in indexes}
    table["mean_of_classes"] = {m: round(rs.mean(rs.mean(per[m][c]) for c in classes), 3) for m in indexes}
    table["chance_overall"] = round(rs.mean(rs.chance(counts, p.catalog_types) for p in photos), 3)
    table["several_items"] = {m: round(rs.mean(several[m]), 3) for m in indexes}
    table["cut_smaller_than_frame"] = {m: round(rs.mean(cut[m]), 3) for m in indexes}
    table["p50_ms"] = {m: p50(ms[m]) for m in indexes}
    table["n"] = len(photos)
    return table


def street(photos, indexes: dict, oracle: dict, counts: Counter, seed: int = 0) -> dict:
    """``oracle``: space name -> the index searched with each garment's true box (and a random box)."""
    rng = np.random.default_rng(seed)
    main, top1, every, found, every_typed, ms = (defaultdict(list) for _ in range(6))
    found_group = {m: defaultdict(list) for m in indexes}
    boxes_iou, items_n = defaultdict(list), []
    oracle_p5 = {s: defaultdict(list) for s in oracle}
    random_p5 = {s: [] for s in oracle}
    chance_top1, chance_group = [], defaultdict(list)
    for n, photo in enumerate(photos):
        worn = photo.worn
        if not worn:
            continue
        data = photo.path.read_bytes()
        size = photo_size(data)
        wanted = [g.catalog_types for g in worn]
        garments = [(g.box, g.catalog_types) for g in worn]
        chance_top1.append(rs.chance(counts, frozenset().union(*wanted)))
        for g in worn:
            chance_group[g.group].append(rs.chance(counts, g.catalog_types))
        for name, index in indexes.items():
            result, took = search(index, data)
            ms[name].append(took)
            types = rs.result_types(result.products)
            main[name].append(rs.main_result_right(types, wanted))
            top1[name].append(rs.top1_right(types, wanted))
            rows = rows_of(result)
            hit = rs.garments_found(rows, garments)
            every[name].append(all(hit))
            every_typed[name].append(all(rs.garments_typed([t for _, t in rows], wanted)))
            found[name] += hit
            for g, h in zip(worn, hit):
                found_group[name][g.group].append(h)
            if name == "items raw":  # item finding is the same in both spaces
                items_n.append(len(rows))
                for g in worn:
                    boxes_iou[g.group].append(rs.best_iou([b for b, _ in rows], g.box))
        for space, index in oracle.items():
            for g in worn:
                result, _ = search(index, data, box=g.box)
                oracle_p5[space][g.group].append(rs.type_p_at_k(rs.result_types(result.products), g.catalog_types))
                if space != "raw":
                    continue
                # The same garment's types searched from a box of the same size placed at random in the frame.
                w, h = min(g.box[2], size[0]), min(g.box[3], size[1])
                x, y = int(rng.integers(0, size[0] - w + 1)), int(rng.integers(0, size[1] - h + 1))
                result, _ = search(index, data, box=(x, y, w, h))
                random_p5[space].append(rs.type_p_at_k(rs.result_types(result.products), g.catalog_types))
        if n % 50 == 49:
            print(f"street {n + 1}/{len(photos)}", file=sys.stderr)
    groups = [g for g in realdata.GROUPS if boxes_iou.get(g) or chance_group.get(g)]
    r3 = lambda v: None if v is None else round(v, 3)  # noqa: E731
    return {
        "n": len(main[next(iter(indexes))]),
        "garments": len(found[next(iter(indexes))]),
        "main_result_right": {m: r3(rs.mean(main[m])) for m in indexes},
        "top1_right": {m: r3(rs.mean(top1[m])) for m in indexes},
        "chance_top1": r3(rs.mean(chance_top1)),
        "every_garment_found": {m: r3(rs.mean(every[m])) for m in indexes},
        "garments_found": {m: r3(rs.mean(found[m])) for m in indexes},
        "every_garment_typed": {m: r3(rs.mean(every_typed[m])) for m in indexes},
        "groups": {g: {"n": len(chance_group[g]), "chance": r3(rs.mean(chance_group[g])),
                       **{f"found: {m}": r3(rs.mean(found_group[m][g])) for m in indexes},
                       **{f"true box {s}": r3(rs.mean(oracle_p5[s][g])) for s in oracle},
                       "box IoU>=0.5": r3(rs.mean(v >= 0.5 for v in boxes_iou[g])),
                       "box IoU mean": r3(rs.mean(boxes_iou[g]))} for g in groups},
        "true_box_p5": {s: r3(rs.mean(v for g in groups for v in oracle_p5[s][g])) for s in oracle},
        "random_box_p5": {s: r3(rs.mean(random_p5[s])) for s in oracle if random_p5[s]},
        "box_iou_ge_0.5": r3(rs.mean(v >= 0.5 for g in groups for v in boxes_iou[g])),
        "items_per_photo": dict(sorted(Counter(items_n).items())),
        "one_item_share": r3(rs.mean(v == 1 for v in items_n)),
        "worn_per_photo": r3(rs.mean(len(p.worn) for p in photos if p.worn)),
        "p50_ms": {m: p50(ms[m]) for m in indexes},
    }


def composites(bench: Path, indexes: dict) -> dict:
    from stylelens.item.composite import read_labels

    photos: dict[str, list[dict]] = {}
    for r in read_labels(bench / "labels.csv"):
        photos.setdefault(r["id"], []).append(r)
    hits = {m: defaultdict(list) for m in indexes}
    ms = defaultdict(list)
    for stem, targets in photos.items():
        data = (bench / "images" / f"{stem}.jpg").read_bytes()
        for name, index in indexes.items():
            result, took = search(index, data)
            ms[name].append(took)
            rows = rows_of(result)
            for t in targets:
                # Each target is scored on the item row that points at it; with none, on the main results.
                i = rs.row_for(t["box"], [b for b, _ in rows]) if len(targets) > 1 else 0
                types = rows[i][1] if i is not None else rs.result_types(result.products)
                hits[name][t["variant"]].append(rs.type_p_at_k(types, {t["articleType"]}))
    kinds = list(dict.fromkeys(t["variant"] for ts in photos.values() for t in ts))
    return {"kinds": {k: {"n": len(hits[next(iter(indexes))][k]), **{m: round(rs.mean(hits[m][k]), 3) for m in indexes}}
                      for k in kinds},
            "p50_ms": {m: p50(ms[m]) for m in indexes}}


def steps(photos: list[Path], index) -> dict:
    """p50 ms of each step of a search as shipped, each run on its own: decode, locate (item finding), embed
    (the items' crops in one batch), search (one neighbour pass, vote, ranking and records for the main item)."""
    from stylelens.query import pipeline
    from stylelens.query.request import Photo
    from stylelens.query.stages.embed import embed

    s, t = index.settings, defaultdict(list)
    if photos:
        search(index, photos[0].read_bytes())  # warm-up: lazy loading (the parser) is not a step
    for path in photos:
        data = path.read_bytes()
        t0 = time.perf_counter()
        photo = Photo.decode(data, max_pixels=s.max_pixels, target=index.embedder.preprocess.size)
        t1 = time.perf_counter()
        # The locate stage the search uses (the garment parser where it serves this index), then the cut-outs.
        items = pipeline.cut_items(photo, localise=s.localise, max_items=s.max_items,
                                   locator=index.locator or index.parser_locator())
        t2 = time.perf_counter()
        snap = index.snapshot()
        items = embed(items, index.embedder, snap.space, colour_space=snap.colour_space)
        t3 = t4 = time.perf_counter()
        index.search_vector(items[0].vector, rs.K, raw=items[0].raw)
        t5 = time.perf_counter()
        _, total = search(index, data)
        for k, v in (("decode", t1 - t0), ("locate", t2 - t1), ("embed", t3 - t2), ("search", t5 - t4)):
            t[k].append(v * 1000)
        t["end to end"].append(total)
    return {k: p50(v) for k, v in t.items()} | {"n": len(photos)}


# ---- printing --------------------------------------------------------------------------------------
def fmt(v) -> str:
    """Shares with 3 decimals, milliseconds (above 1) with 1."""
    return "" if v is None else (f"{v:.3f}" if v <= 1 else f"{v:.1f}") if isinstance(v, float) else str(v)


def markdown(report: dict) -> str:
    out = [f"# bench/real.py — {report['when']}", "", report["machine"], "",
           f"index {report['index']} ({report['products']} products; {report['search']}); tuned copy {report['tuned']} "
           f"({report['tune']})", ""]
    ri = report.get("real_items")
    if ri:
        ms = list(ri["overall"])
        out += [f"## real-items (measure part, {ri['n']} photos): type P@5", "",
                "| class | n | chance | " + " | ".join(ms) + " |", "|---|---|---|" + "---|" * len(ms)]
        out += [f"| {c} | {v['n']} | {fmt(v['chance'])} | " + " | ".join(fmt(v[m]) for m in ms) + " |" for c, v in ri["classes"].items()]
        out += [f"| **overall (mean of photos)** | {ri['n']} | {fmt(ri['chance_overall'])} | " + " | ".join(f"**{fmt(ri['overall'][m])}**" for m in ms) + " |",
                "| mean of classes | | | " + " | ".join(fmt(ri["mean_of_classes"][m]) for m in ms) + " |",
                "| 'several items' share | | | " + " | ".join(fmt(ri["several_items"][m]) for m in ms) + " |",
                "| main box < 90 % of the frame | | | " + " | ".join(fmt(ri["cut_smaller_than_frame"][m]) for m in ms) + " |",
                "| search p50 ms (end to end) | | | " + " | ".join(fmt(ri["p50_ms"][m]) for m in ms) + " |", ""]
    st = report.get("street")
    if st:
        ms = list(st["main_result_right"])
        out += [f"## street-ccp (measure part, {st['n']} photos with a worn garment, {st['garments']} garments, "
                f"{st['worn_per_photo']} a photo)", "", "| | " + " | ".join(ms) + " |", "|---|" + "---|" * len(ms)]
        for key, label in (("main_result_right", "main result right (P@5 >= 0.6 for a worn garment)"),
                           ("top1_right", f"top-1 of a worn garment's type (chance {fmt(st['chance_top1'])})"),
                           ("every_garment_found", "**every worn garment found** (P@5 >= 0.6)"),
                           ("garments_found", "garments found (share of garments)"),
                           ("every_garment_typed", "every worn garment's type answered by some row (box and one-to-one ignored)"),
                           ("p50_ms", "search p50 ms (end to end)")):
            if key in st:  # (a report of an earlier version may lack a row)
                out.append(f"| {label} | " + " | ".join(fmt(st[key][m]) for m in ms) + " |")
        cols = [k for k in next(iter(st["groups"].values())) if k != "n"]
        out += ["", "per group: garments found per method; type P@5 searched with the true box and with a random box "
                "of the same size; today's item finding's best box IoU against the garment", "",
                "| group | n | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
        out += [f"| {g} | {v['n']} | " + " | ".join(fmt(v[c]) for c in cols) + " |" for g, v in st["groups"].items()]
        out += ["", f"true box P@5 (all garments): {st['true_box_p5']}; random box of the same size: {st['random_box_p5']}",
                f"item finding: best box IoU >= 0.5 for {fmt(st['box_iou_ge_0.5'])} of garments; items a photo "
                f"{st['items_per_photo']} (one item: {fmt(st['one_item_share'])})", ""]
    co = report.get("composites")
    if co:
        ms = list(co["p50_ms"])
        out += ["## composites (bench/shopper.py kinds, held-out products, index without them): type P@5", "",
                "| kind | n | " + " | ".join(ms) + " |", "|---|---|" + "---|" * len(ms)]
        out += [f"| {k} | {v['n']} | " + " | ".join(fmt(v[m]) for m in ms) + " |" for k, v in co["kinds"].items()]
        out += ["| search p50 ms | | " + " | ".join(fmt(co["p50_ms"][m]) for m in ms) + " |", "",
                f"composites index: {co.get('index')}; its tuned copy's tune: {co.get('tune')}", ""]
    if report.get("steps"):
        out += ["## p50 ms per step (items raw, each step run on its own)", "", "| set | " + " | ".join(
            k for k in next(iter(report["steps"].values())) if k != "n") + " | n |", "|---|" + "---|" * 6]
        out += [f"| {s} | " + " | ".join(fmt(v[k]) for k in v if k != "n") + f" | {v['n']} |" for s, v in report["steps"].items()]
        out.append("")
    out.append(f"run time: {report['seconds']}")
    return "\n".join(out)


def machine() -> str:
    import platform

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), platform.processor())
    return (f"{cpu}, {os.cpu_count()} cores (shared with other jobs), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, "
            f"Python {platform.python_version()}")


# ---- main ------------------------------------------------------------------------------------------
def run(args) -> dict:
    from stylelens import open_index
    from stylelens.item.composite import VARIANTS, write_benchmark

    clock = {"start": time.perf_counter()}
    seconds = {}
    data, work, index_dir = Path(args.data), Path(args.work), Path(args.index)
    fashion = data / "fashion-small"
    if not (index_dir / "manifest.json").is_file():
        raise SystemExit(f"no index at {index_dir}: build one of {fashion} (stylelens index {fashion} --out {index_dir} "
                         "--backbone efficientnet-lite0)")
    work.mkdir(parents=True, exist_ok=True)
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}: choose from {', '.join(METHODS)}")
    wants_tuned = any(METHODS[m][1] for m in methods)
    quick = QUICK if args.quick else {}
    sets = set(args.sets.split(","))
    uses_index = bool(sets & {"items", "street"}) or args.steps > 0  # composites search a held-out copy only
    tuned_dir = Path(args.tuned or work / f"{index_dir.name}-tuned-v{args.tune_views}")
    tune_info = tuned_copy(index_dir, tuned_dir, args.tune_views) if wants_tuned and uses_index else None
    seconds["prepare tuned"] = round(time.perf_counter() - clock["start"], 1)
    counts = catalog_types(fashion / "styles.csv")
    report = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(), "index": str(index_dir),
              "tuned": str(tuned_dir) if tune_info is not None else None,
              "tune": f"tune_views {args.tune_views}" + (f", {tune_info.get('seconds')}" if tune_info else ""),
              "methods": methods, "definitions": rs.__doc__}
    indexes = searchers(index_dir, tuned_dir, methods) if uses_index else {}
    first = next(iter(indexes.values())) if indexes else open_index(index_dir, tune=False)
    info = first.info()
    report["products"] = len(first)
    report["search"] = f"search {info['search']}, runtime {info['runtime']}, backbone {info['embedder']['backbone']}"
    oracle = {("tuned" if METHODS[m][1] is True else "raw"): indexes[m] for m in methods
              if METHODS[m][0] and METHODS[m][1] in (True, False) and indexes}

    def save():  # each set's table as soon as it is measured: a long run stopped late keeps the others
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "real.partial.json").write_text(json.dumps(report | {"seconds": seconds}, indent=1) + "\n")

    if "items" in sets:
        t = time.perf_counter()
        photos = realdata.real_items(data, part="measure")
        if quick or args.items_per_class:
            per = args.items_per_class or quick["items_per_class"]
            photos = [p for c in sorted({p.cls for p in photos}) for p in [q for q in photos if q.cls == c][:per]]
        report["real_items"] = real_items(photos, indexes, counts)
        seconds["real-items"] = round(time.perf_counter() - t, 1)
        save()
    if "street" in sets:
        t = time.perf_counter()
        photos = realdata.street_photos(data, part="measure")[: (args.street or quick.get("street") or None)]
        report["street"] = street(photos, indexes, oracle, counts)
        seconds["street"] = round(time.perf_counter() - t, 1)
        save()
    if "composites" in sets:
        t = time.perf_counter()
        per_kind = quick.get("composites") or args.composites
        _, _, held = split(fashion / "styles.csv")
        heldout_dir = work / f"{index_dir.name}-heldout"
        heldout_copy(index_dir, heldout_dir, held)
        ctuned = tuned_copy(heldout_dir, work / f"{index_dir.name}-heldout-tuned-v{args.tune_views}", args.tune_views) if wants_tuned else None
        seconds["prepare composites"] = round(time.perf_counter() - t, 1)
        variants = args.variants.split(",") if args.variants else list(VARIANTS)
        bench = work / f"composites-s0-n{per_kind}"
        if not (bench / "labels.csv").is_file():
            write_benchmark(fashion, bench, held[:per_kind], seed=0, variants=variants, pool=held)
        cindexes = searchers(heldout_dir, work / f"{index_dir.name}-heldout-tuned-v{args.tune_views}", methods)
        report["composites"] = composites(bench, cindexes)
        report["composites"]["index"] = f"{heldout_dir} ({len(next(iter(cindexes.values())))} products)"
        report["composites"]["tune"] = ctuned.get("seconds") if ctuned else None
        seconds["composites"] = round(time.perf_counter() - t, 1)
        save()
    if args.steps and "items raw" in indexes:
        t = time.perf_counter()
        items = realdata.real_items(data, part="measure")
        report["steps"] = {"real-items": steps([p.path for p in items[:: max(1, len(items) // args.steps)]][: args.steps], indexes["items raw"]),
                           "street-ccp": steps([p.path for p in realdata.street_photos(data, part="measure")[: args.steps]], indexes["items raw"])}
        seconds["steps"] = round(time.perf_counter() - t, 1)
    seconds["total"] = round(time.perf_counter() - clock["start"], 1)
    report["seconds"] = seconds
    return report


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", default="/work/cache/lite0-full", help="Index of the whole fashion-small catalog.")
    p.add_argument("--data", default=str(realdata.default_root()), help="The shared data folder (fashion-small, real-items, street-ccp).")
    p.add_argument("--work", default="/work/cache/realbench", help="Where the tuned and held-out copies and the composites are kept.")
    p.add_argument("--tuned", help="A tuned copy of --index (default: made under --work).")
    p.add_argument("--tune-views", type=int, default=2000, help="Shopper views the tuned copies learn from (the setting's default: 2000).")
    p.add_argument("--methods", default=",".join(m for m in METHODS if "probe" not in m))
    p.add_argument("--sets", default="items,street,composites")
    p.add_argument("--items-per-class", type=int, default=0, help="Only the first N photos of each real-items class.")
    p.add_argument("--street", type=int, default=0, help="Only the first N street photos.")
    p.add_argument("--composites", type=int, default=100, help="Held-out products per composite kind.")
    p.add_argument("--variants", default="", help="Composite kinds (default: all of bench/shopper.py's).")
    p.add_argument("--steps", type=int, default=40, help="Photos per real set timed step by step (0: none).")
    p.add_argument("--quick", action="store_true", help=f"A small slice: {QUICK}.")
    p.add_argument("--out", help="Folder for real.json and real.md.")
    p.add_argument("--render", nargs="+", metavar="JSON", help="Only print the tables of earlier runs' real.json files "
                   "(merged: runs of different --sets at once make one table).")
    args = p.parse_args(argv)
    if args.render:
        report = {}
        for path in args.render:
            one = json.loads(Path(path).read_text())
            seconds = report.get("seconds", {})
            seconds = {k: max(seconds.get(k, 0), v) for k, v in {**seconds, **one.pop("seconds", {})}.items()}  # runs in parallel
            report = {**report, **{k: v for k, v in one.items() if v is not None or k not in report}, "seconds": seconds}
    else:
        report = run(args)
    text = markdown(report)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "real.json").write_text(json.dumps(report, indent=1) + "\n")
        (out / "real.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
