"""Same results before and after a refactor of the query path: ids, scores and identifications as JSON.

Builds (once, under --work) a small EfficientNet-Lite0 index from a seeded slice of fashion-small, and a
tuned copy of it; then, on a fresh copy of each (personalisation writes shopper events), runs queries of
every kind through the public API only, so the same script runs against any commit:

    .venv/bin/python bench/same_results.py --work /work/cache/pipeline/same --out /tmp/after.json
    PYTHONPATH=/tmp/base/src .venv/bin/python bench/same_results.py --work /work/cache/pipeline/same --out /tmp/before.json
    .venv/bin/python bench/same_results.py --compare /tmp/before.json /tmp/after.json

Queries: catalog shots of held-out products (with and without filters, diversity, collapse), real photos of
single garments (real-items) and street photos (street-ccp, whole and with a worn item's box), similar(),
identify(), complete_the_look (product and photo), a personalised search and recommend_for_user.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

DATA = Path(os.environ.get("STYLELENS_DATA", "/work/shared/data"))
N_PRODUCTS, N_HELD_OUT, SEED = 600, 12, 0


def pick_products() -> tuple[list[dict], list[dict]]:
    with open(DATA / "fashion-small" / "styles.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if (DATA / "fashion-small" / "images" / f"{r['id']}.jpg").is_file()]
    rows.sort(key=lambda r: int(r["id"]))
    picked = random.Random(SEED).sample(rows, N_PRODUCTS + N_HELD_OUT)
    return picked[:N_PRODUCTS], picked[N_PRODUCTS:]


def build(work: Path) -> None:
    from stylelens.build import build_index
    from stylelens.tune.train import tune_index

    indexed, _ = pick_products()
    catalog = work / "catalog"
    if not (work / "raw" / "manifest.json").exists():
        (catalog / "images").mkdir(parents=True, exist_ok=True)
        for r in indexed:
            shutil.copyfile(DATA / "fashion-small" / "images" / f"{r['id']}.jpg", catalog / "images" / f"{r['id']}.jpg")
        with open(catalog / "styles.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(indexed[0]))
            writer.writeheader()
            writer.writerows(indexed)
        build_index(catalog, work / "raw", catalog / "styles.csv", backbone="efficientnet-lite0", weights="imagenet",
                    runtime="torch", workers=0, progress=False)
    if not (work / "tuned" / "head.npz").exists():
        shutil.rmtree(work / "tuned", ignore_errors=True)
        shutil.copytree(work / "raw", work / "tuned")
        tune_index(work / "tuned", tune_views=0, progress=False)
        # The head serves every aspect, measured or not: this copy exists to exercise the tuned space (a manifest
        # key older commits ignore, where a head always served).
        from stylelens.index import open_store

        store = open_store(work / "tuned", writable=True)
        store.set_manifest(head=dict(store.manifest["head"], adopted={"type": True, "colour": True}))
        store.close()


def brief(result) -> dict:
    out = {"ids": [p["id"] for p in result.products], "scores": [p["score"] for p in result.products],
           "similarity": [p.get("similarity") for p in result.products],
           "exact": [bool(p.get("exact_match")) for p in result.products],
           "similar_count": [p.get("similar_count") for p in result.products],
           "identified": result.identified.to_dict() if result.identified else None}
    if "items" in result.extra:
        out["items"] = [{"box": item["box"], "identified": item["identified"], "ids": [p["id"] for p in item["results"]],
                         "scores": [p["score"] for p in item["results"]]} for item in result.extra["items"]]
    if "note" in result.extra:
        out["note"] = result.extra["note"]
    return out


def photos() -> list[tuple[str, Path, tuple | None]]:
    """(name, path, box or None): real garments at home and street photos, with one worn item's box."""
    out = []
    for cls in ("dress", "longsleeve", "shoes", "pants"):
        folder = DATA / "real-items" / "photos" / cls
        if folder.is_dir():
            for path in sorted(folder.glob("*.jpg"))[:2]:
                out.append((f"real/{cls}/{path.name}", path, None))
    with open(DATA / "street-ccp" / "items.csv", newline="") as fh:
        items = list(csv.DictReader(fh))
    for photo in ("0001", "0002", "0005", "0010"):
        path = DATA / "street-ccp" / "photos" / f"{photo}.jpg"
        out.append((f"street/{photo}", path, None))
        worn = [r for r in items if r["photo"] == photo and float(r["area_share"]) >= 0.02]
        if worn:
            r = worn[0]
            out.append((f"street/{photo}/box-{r['name']}", path, tuple(int(r[k]) for k in ("box_x", "box_y", "box_w", "box_h"))))
    return out


def run_queries(index_dir: Path) -> dict:
    from stylelens.query import open_index
    from stylelens.query.look import complete_the_look
    from stylelens.query.personalize import feedback, recommend_for_user

    indexed, held = pick_products()
    index = open_index(index_dir, runtime="torch")
    out: dict = {"space": index.info()["space"]["searched"]}
    catalog_ids = sorted(r["id"] for r in indexed)
    for r in held:
        path = DATA / "fashion-small" / "images" / f"{r['id']}.jpg"
        out[f"held/{r['id']}"] = brief(index.search(path, 8))
        out[f"held/{r['id']}/identify"] = index.identify(path).to_dict()
    r = held[0]
    path = DATA / "fashion-small" / "images" / f"{r['id']}.jpg"
    out["held/filters-gender"] = brief(index.search(path, 8, gender=r["gender"]))
    out["held/filters-type-price"] = brief(index.search(path, 8, type=r["articleType"], max_price=1e9, include_out_of_stock=True))
    out["held/diversity"] = brief(index.search(path, 8, diversity=0.5))
    out["held/collapse"] = brief(index.search(path, 8, collapse=True))
    out["held/colour"] = brief(index.search(path, 5, colour="Black"))
    own = DATA / "fashion-small" / "images" / f"{catalog_ids[3]}.jpg"
    out["catalog-own-shot"] = brief(index.search(own, 5))  # exact_first: the product itself first
    for name, path, box in photos():
        out[name] = brief(index.search(path, 6, box=box))
    for pid in catalog_ids[:6]:
        out[f"similar/{pid}"] = brief(index.similar(pid, 6))
    out[f"similar/{catalog_ids[0]}/diverse"] = brief(index.similar(catalog_ids[0], 6, diversity=0.3, collapse=True))
    for pid in catalog_ids[:4]:
        look = complete_the_look(index, pid)
        out[f"look/{pid}"] = {g["category"]: [(p["id"], p["score"]) for p in g["products"]] for g in look.groups}
    look = complete_the_look(index, image=DATA / "fashion-small" / "images" / f"{held[1]['id']}.jpg")
    out["look/photo"] = {"source": look.source, "groups": {g["category"]: [(p["id"], p["score"]) for p in g["products"]]
                                                           for g in look.groups}}
    user = "shopper-1"
    for pid in catalog_ids[10:14]:
        feedback(index, user, pid, "like")
    feedback(index, user, catalog_ids[20], "dislike")
    out["user/search"] = brief(index.search(DATA / "fashion-small" / "images" / f"{held[2]['id']}.jpg", 8, user=user))
    out["user/similar"] = brief(index.similar(catalog_ids[30], 8, user=user))
    out["user/recommend"] = brief(recommend_for_user(index, user, 8))
    out["user/recommend-collapse"] = brief(recommend_for_user(index, user, 8, collapse=True))
    index.close()
    return out


def compare(before: dict, after: dict) -> int:
    diffs = 0
    for space in sorted(set(before) | set(after)):
        b, a = before.get(space, {}), after.get(space, {})
        for key in sorted(set(b) | set(a)):
            if b.get(key) != a.get(key):
                diffs += 1
                print(f"DIFF {space} {key}\n  before {json.dumps(b.get(key))[:400]}\n  after  {json.dumps(a.get(key))[:400]}")
        print(f"{space}: {len(set(b) | set(a))} queries compared")
    print(f"{diffs} differences")
    return 1 if diffs else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/work/cache/pipeline/same"))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args()
    if args.compare:
        return compare(*(json.loads(p.read_text()) for p in args.compare))
    import torch

    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    build(args.work)
    results = {}
    for name in ("raw", "tuned"):
        with tempfile.TemporaryDirectory() as tmp:  # a fresh copy: the shopper's events are written beside it
            shutil.copytree(args.work / name, Path(tmp) / name)
            results[name] = run_queries(Path(tmp) / name)
    text = json.dumps(results, indent=1, sort_keys=True)
    if args.out:
        args.out.write_text(text)
        print(f"wrote {args.out} ({sum(len(v) for v in results.values())} queries)")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
