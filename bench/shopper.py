"""Shopper photos (issue 11): articleType P@5 of generated shopper-like queries, per localiser.

    .venv/bin/python bench/shopper.py                         # builds /work/cache/fs-heldout-lite0 once
    .venv/bin/python bench/shopper.py --index DIR --per-variant 300

Held-out split: HELD_OUT products drawn from fashion-small's styles.csv with seed 0 are left out of the
index (their ids, in query order, are written to <index>-heldout-ids.txt beside it; the index is built
from <index>-catalog/, symlinks + a filtered styles.csv). The first --per-variant of them are the queries;
multi-item photos and distractors draw their other products from the held-out set too. No query is an
indexed product. The localiser head (method 'learned') trains on composites of indexed products only.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FASHION = ROOT.parent / "shared" / "data" / "fashion-small"
HELD_OUT = 1000
SPACES = {"served": None, "raw": (), "tuned": ("type", "colour")}  # --space: what a tuned head serves (query.space.ASPECTS)


def split(styles: Path, held_out: int = HELD_OUT, seed: int = 0) -> tuple[list[dict], list[str], list[str]]:
    """(all rows, indexed ids, held-out ids in their seeded query order)."""
    with open(styles, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    order = np.random.default_rng(seed).permutation(len(rows))
    held = [rows[i]["id"] for i in order[:held_out]]
    heldset = set(held)
    return rows, [r["id"] for r in rows if r["id"] not in heldset], held


def build_heldout_index(catalog: Path, index_dir: Path, held_out: int = HELD_OUT, seed: int = 0) -> list[str]:
    """Index of the catalog minus the held-out products (a folder of symlinks + filtered styles.csv beside it)."""
    from stylelens import build_index

    rows, indexed, held = split(catalog / "styles.csv", held_out, seed)
    link_dir = index_dir.parent / (index_dir.name + "-catalog")
    (link_dir / "images").mkdir(parents=True, exist_ok=True)
    keep = set(indexed)
    for row in rows:
        if row["id"] in keep and not (link_dir / "images" / f"{row['id']}.jpg").exists():
            (link_dir / "images" / f"{row['id']}.jpg").symlink_to(catalog / "images" / f"{row['id']}.jpg")
    with open(link_dir / "styles.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if r["id"] in keep)
    (index_dir.parent / (index_dir.name + "-heldout-ids.txt")).write_text("\n".join(held) + "\n")
    report = build_index(link_dir, index_dir, backbone="efficientnet-lite0", weights="imagenet", progress=False)
    print(f"built {index_dir}: {report}", file=sys.stderr)
    return held


# ---- methods ---------------------------------------------------------------------------------------
def training_photos(catalog: Path, ids: list[str], n: int, seed: int = 1):
    """(rgb, product mask) composites of indexed products for the localiser head, all variants mixed."""
    from stylelens.item import composite as comp

    rows = comp.read_products(catalog / "styles.csv")
    rng = np.random.default_rng(seed)
    names = [v for v in comp.VARIANTS if v != "catalog"]
    pool = [ids[i] for i in rng.permutation(len(ids))[: max(50, n)]]
    cache: dict[str, comp.Item] = {}

    def item(pid):
        if pid not in cache:
            cache[pid] = comp.cut(catalog / "images" / f"{pid}.jpg")
        return cache[pid]

    for k in range(n):
        _, photo = comp.variant_photo(names[k % len(names)], pool[k % len(pool)], rows, pool, rng, item)
        yield np.asarray(photo.image), photo.labels > 0


def make_methods(index, args, indexed: list[str]) -> dict:
    from stylelens.item import localise as L
    from stylelens.models import localiser as ML

    whole = lambda rgb: [L.Box(0, 0, rgb.shape[1], rgb.shape[0], 1.0)]  # noqa: E731
    methods = {"whole": whole}
    wanted = args.methods.split(",")
    if "contrast" in wanted:
        methods["contrast"] = lambda rgb: L.locate(rgb, heatmap=L.contrast_map)
    if "grabcut" in wanted:
        methods["grabcut"] = lambda rgb: L.locate(rgb, heatmap=L.grabcut_map)
    if {"scda", "learned"} & set(wanted):
        maps = ML.BackboneMaps(index.embedder)
        print(f"backbone maps on {maps.runtime}", file=sys.stderr)
        if "scda" in wanted:
            methods["scda"] = lambda rgb, h=ML.scda_map(maps): L.locate(rgb, heatmap=h)
        if "learned" in wanted:
            path = Path(args.index) / "localiser.npz"
            if path.is_file() and not args.retrain:
                head = ML.HeatmapHead.load(path, maps)
            else:
                started = time.perf_counter()
                head = ML.HeatmapHead.train(maps, list(training_photos(Path(args.fashion), indexed, args.train_photos)))
                head.save(path)
                print(f"trained the localiser head on {args.train_photos} composites in {time.perf_counter() - started:.0f} s -> {path}", file=sys.stderr)
            methods["learned"] = lambda rgb: L.locate(rgb, heatmap=head)
    if "multicrop" in wanted:
        from PIL import Image

        def multicrop(rgb):
            # Several candidate crops, embedded in one batch; the one whose neighbours agree most on a type wins.
            h, w = rgb.shape[:2]
            img = Image.fromarray(rgb)
            cands = [L.Box(0, 0, w, h), L.Box(int(w * 0.2), int(h * 0.2), int(w * 0.6), int(h * 0.6)),
                     *L.locate(rgb, heatmap=L.contrast_map)]
            crops = [img if i == 0 else L.crop(img, b) for i, b in enumerate(cands)]
            raws = index.embedder.embed(crops)
            vecs = index.snapshot().space.query(raws, crops)  # into the space searched (a tuned head's, when it serves)
            conf = [index.identify_vector(v, raw=r).type_confidence for v, r in zip(vecs, raws)]
            return [cands[i] for i in np.argsort(conf, kind="stable")[::-1]]

        methods["multicrop"] = multicrop
    return methods


def match(boxes, truths) -> list:
    """Greedy IoU matching: for each true box, the located box that overlaps it most (or None)."""
    from stylelens.item.localise import iou

    pairs = sorted(((iou(b, t), i, j) for i, b in enumerate(boxes) for j, t in enumerate(truths)), reverse=True)
    used_b, out = set(), [None] * len(truths)
    for v, i, j in pairs:
        if v > 0 and i not in used_b and out[j] is None:
            out[j] = (boxes[i], v)
            used_b.add(i)
    return out


def run(args) -> None:
    from PIL import Image

    from stylelens import open_index
    from stylelens.item.composite import read_labels, write_benchmark
    from stylelens.item.localise import crop, iou, on_white

    index_dir, fashion = Path(args.index), Path(args.fashion)
    if not (index_dir / "manifest.json").is_file():
        build_heldout_index(fashion, index_dir, args.held_out, args.seed)
    if args.build_only:
        return
    _, indexed, held = split(fashion / "styles.csv", args.held_out, args.seed)
    index = open_index(index_dir, aspects=SPACES[args.space])
    assert not set(held) & set(index.store.columns.ids), "a held-out product is in the index"
    queries = held[: args.per_variant]
    bench = Path(args.bench or f"/work/cache/shopper-bench-s{args.seed}-n{args.per_variant}")
    if args.limit:
        queries = queries[: args.limit]
    variants = args.variants.split(",")
    if not (bench / "labels.csv").is_file() or args.regenerate:
        write_benchmark(fashion, bench, queries, seed=args.seed, variants=variants, pool=held)
    wanted = {f"{v}-{q}" for v in variants for q in queries}  # a bigger benchmark folder serves a smaller run
    labels = [r for r in read_labels(bench / "labels.csv") if r["id"] in wanted]
    photos: dict[str, list[dict]] = {}
    for r in labels:
        photos.setdefault(r["id"], []).append(r)
    methods = make_methods(index, args, indexed)

    def p_at_5(img) -> list[str]:
        return [p["type"] for p in index.search(img, k=5, include_out_of_stock=True).products]

    stats: dict[tuple[str, str], dict] = {}
    for stem, items in photos.items():
        variant = items[0]["variant"]
        img = Image.open(bench / "images" / f"{stem}.jpg").convert("RGB")
        rgb = np.asarray(img)
        whole_types = None
        white = on_white(rgb) and not args.crop_catalog  # the query path embeds a shot on white as it is
        for name, method in methods.items():
            started = time.perf_counter()
            boxes = method(rgb)
            crops = {}
            if len(items) == 1:
                crops[0] = (crop(img, boxes[0]) if name != "whole" and not white else img, iou(boxes[0], items[0]["box"]))
            else:
                for j, m in enumerate(match(boxes, [r["box"] for r in items])):
                    crops[j] = (crop(img, m[0]) if m and name != "whole" else img, m[1] if m else 0.0)
            took = (time.perf_counter() - started) * 1000
            s = stats.setdefault((variant, name), {"hits": 0, "n": 0, "ms": [], "iou": []})
            s["ms"].append(took / len(items) if name != "whole" else 0.0)
            for j, r in enumerate(items):
                searched = time.perf_counter()
                if name == "whole":
                    whole_types = whole_types or p_at_5(img)
                    types = whole_types
                else:
                    types = p_at_5(crops[j][0])
                if j == 0 and len(items) == 1:
                    s.setdefault("query_ms", []).append(took + (time.perf_counter() - searched) * 1000)
                s["hits"] += sum(t == r["articleType"] for t in types)
                s["n"] += 1
                s["iou"].append(crops[j][1])
    names = list(methods)
    print(f"\nindex {index_dir} ({len(index)} products, {args.held_out} held out, seed {args.seed}; space {index.space.name}); "
          f"queries: {args.per_variant} held-out products per variant; articleType P@5 / n / locate+crop p50 ms / IoU>=0.5 share")
    print("| variant | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for v in variants:
        cells = []
        for m in names:
            s = stats.get((v, m))
            if not s:
                cells.append("")
                continue
            ious = np.asarray(s["iou"])
            cells.append(f"{s['hits'] / (5 * s['n']):.3f} (n={s['n']}, {np.median(s['ms']):.1f} ms, IoU.5 {np.mean(ious >= 0.5):.2f})")
        print(f"| {v} | " + " | ".join(cells) + " |")
    print("\nwhole query (locate + crop + embed + search) p50 ms over the one-item photos:")
    for m in names:
        q = [t for (v, mm), s in stats.items() if mm == m and v != "catalog" for t in s.get("query_ms", [])]
        print(f"  {m}: {np.median(q):.1f} ms (n={len(q)})" if q else f"  {m}: -")


def main(argv=None) -> None:
    from stylelens.item.composite import VARIANTS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", default="/work/cache/fs-heldout-lite0", help="Index of fashion-small minus the held-out products (built if missing).")
    p.add_argument("--bench", help="Benchmark folder (default /work/cache/shopper-bench-s<seed>-n<per-variant>).")
    p.add_argument("--fashion", default=str(FASHION), help="The fashion-small folder (default: ../shared/data/fashion-small).")
    p.add_argument("--per-variant", type=int, default=300)
    p.add_argument("--limit", type=int, default=0, help="Query only the first N of the benchmark's products (a quick look).")
    p.add_argument("--held-out", type=int, default=HELD_OUT)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--space", choices=sorted(SPACES), default="served",
                   help="With a tuned head: the aspects tune adopted (served), the raw space, or the tuned one for every aspect.")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--methods", default="contrast,grabcut,scda,learned")
    p.add_argument("--train-photos", type=int, default=600)
    p.add_argument("--retrain", action="store_true")
    p.add_argument("--regenerate", action="store_true")
    p.add_argument("--build-only", action="store_true", help="Only build the held-out index (if missing).")
    p.add_argument("--crop-catalog", action="store_true", help="Crop shots on white too (the query path embeds them whole).")
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
