"""Measure the garment parser (stylelens.models.parser) against the contrast localiser (item.localise.locate)
on the **measure** parts of the real photos (never trained on), and the cost of each per photo.

street-ccp (people in outfits, true boxes and masks):
  per group: share of worn items whose box the method finds with IoU >= 0.5 (parser: its box of the item's
  group; contrast: its best box of any kind, up to --contrast-items), mean box IoU, parser mask IoU of the group,
  share of items whose pixels the parser gives mostly to their own group (group right); pixel IoU per class, mIoU;
  garments per photo against the truth; share of returned boxes that match a worn item (IoU >= 0.5).
real-items (one garment per photo, no boxes): share the parser calls "one garment", whose first box covers
  at least half the frame, whose group is the class's; against the contrast localiser's first box.

    PYTHONPATH=src python scripts/measure_parser.py --data /work/shared/data
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from stylelens.item.localise import iou, locate
from stylelens.models.parser import CLASSES, GARMENTS, GarmentParser
from stylelens.quality.realdata import default_root, label_groups, real_items, street_photos

REAL_GROUP = {"t-shirt": "top", "longsleeve": "top", "shirt": "top", "outwear": "outerwear", "dress": "dress",
              "pants": "bottom", "shorts": "bottom", "skirt": "bottom", "shoes": "shoes", "hat": None}
COVERS = 0.5  # a box this share of the frame's area "covers most of the frame"


def rgb_of(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def street(parser, root: Path, limit: int | None, contrast_items: int) -> None:
    groups_of = label_groups(root)
    photos = street_photos(root, part="measure")[:limit]
    hit = defaultdict(lambda: defaultdict(list))  # method -> group -> [IoU]
    group_right = defaultdict(list)  # group -> [the parser's most common garment class on the item's pixels is its group]
    lut = np.zeros(256, np.uint8)  # mask label -> parser class (accessories are background, as trained)
    for label, group in groups_of.items():
        lut[label] = CLASSES.index(group) if group in CLASSES else 0
    confusion = np.zeros((len(CLASSES), len(CLASSES)), np.int64)  # truth class x parser class, pixels
    mask_iou = defaultdict(list)
    counts = defaultdict(list)
    precise = defaultdict(list)
    person = []
    for p in photos:
        rgb = rgb_of(p.path)
        labels = np.asarray(Image.open(p.mask_path))
        parsing = parser.analyse(rgb)
        person.append(parsing.person_present)
        by_group = {g.group: g for g in parsing.garments}
        boxes = [b.xywh for b in locate(rgb, max_items=contrast_items)]
        worn = p.worn
        truth_cls = lut[labels].astype(np.int64)
        confusion += np.bincount(truth_cls.ravel() * len(CLASSES) + parsing.labels.ravel(),
                                 minlength=len(CLASSES) ** 2).reshape(len(CLASSES), len(CLASSES))
        for item in worn:
            votes = np.bincount(parsing.labels[labels == item.label], minlength=len(CLASSES))
            votes[: CLASSES.index(GARMENTS[0])] = 0  # background and body are no group
            group_right[item.group].append(bool(votes.sum()) and CLASSES[int(votes.argmax())] == item.group)
            g = by_group.get(item.group)
            hit["parser"][item.group].append(iou(g.box, item.box) if g else 0.0)
            hit["contrast"][item.group].append(max(iou(b, item.box) for b in boxes))
        for group in GARMENTS:
            truth = np.isin(labels, [k for k, v in groups_of.items() if v == group])
            worn_here = any(i.group == group for i in worn)
            if worn_here or group in by_group:
                pred = by_group[group].mask if group in by_group else np.zeros_like(truth)
                union = (truth | pred).sum()
                mask_iou[group].append(float((truth & pred).sum() / union) if union else 1.0)
        counts["truth items"].append(len(worn))
        counts["truth groups"].append(len({i.group for i in worn}))
        counts["parser"].append(len(parsing.garments))
        counts["contrast"].append(len(boxes))
        precise["parser"] += [any(i.group == g.group and iou(g.box, i.box) >= 0.5 for i in worn) for g in parsing.garments]
        precise["contrast"] += [any(iou(b, i.box) >= 0.5 for i in worn) for b in boxes]
    print(f"\nstreet-ccp measure part: {len(photos)} photos, {sum(counts['truth items'])} worn items")
    print("| group | items | parser box IoU>=0.5 | contrast (best of its boxes) | parser mean IoU | contrast mean IoU | parser mask IoU | parser group right |")
    print("|---|---|---|---|---|---|---|---|")
    for group in [*GARMENTS, "all"]:
        ps = hit["parser"][group] if group != "all" else sum(hit["parser"].values(), [])
        cs = hit["contrast"][group] if group != "all" else sum(hit["contrast"].values(), [])
        ms = mask_iou[group] if group != "all" else sum(mask_iou.values(), [])
        gr = group_right[group] if group != "all" else sum(group_right.values(), [])
        if not ps:
            continue
        print(f"| {group} | {len(ps)} | {np.mean(np.asarray(ps) >= 0.5):.3f} | {np.mean(np.asarray(cs) >= 0.5):.3f} | "
              f"{np.mean(ps):.3f} | {np.mean(cs):.3f} | {np.mean(ms):.3f} | {np.mean(gr):.3f} |")
    inter = np.diag(confusion)
    class_iou = inter / np.maximum(confusion.sum(0) + confusion.sum(1) - inter, 1)
    print("\npixel IoU per class (accessories as background): " + ", ".join(f"{c} {v:.3f}" for c, v in zip(CLASSES, class_iou))
          + f"; mIoU {class_iou.mean():.3f}")
    print(f"\ngarments per photo: truth {np.mean(counts['truth items']):.2f} items in {np.mean(counts['truth groups']):.2f} groups; "
          f"parser {np.mean(counts['parser']):.2f}; contrast (max_items={contrast_items}) {np.mean(counts['contrast']):.2f}; "
          f"one item: parser {np.mean(np.asarray(counts['parser']) == 1):.3f}, contrast {np.mean(np.asarray(counts['contrast']) == 1):.3f}")
    print(f"returned boxes matching a worn item (IoU>=0.5; parser: of its group): parser {np.mean(precise['parser']):.3f} "
          f"of {len(precise['parser'])}, contrast {np.mean(precise['contrast']):.3f} of {len(precise['contrast'])}")
    print(f"parser says a person wears them: {np.mean(person):.3f}")


def items(parser, root: Path, step: int) -> None:
    photos = real_items(root, part="measure")[::step]
    rows = defaultdict(lambda: defaultdict(list))
    for p in photos:
        rgb = rgb_of(p.path)
        H, W = rgb.shape[:2]
        parsing = parser.analyse(rgb)
        first = parsing.garments[0] if parsing.garments else None
        share = first.box[2] * first.box[3] / (W * H) if first else 1.0  # nothing found: the whole frame
        boxes = locate(rgb, max_items=3)
        c_share = boxes[0].w * boxes[0].h / (W * H)
        r = rows[p.cls]
        r["one"].append(parsing.one_garment)
        r["person"].append(parsing.person_present)
        r["covers"].append(share >= COVERS)
        r["one_covers"].append((parsing.one_garment or not parsing.garments) and share >= COVERS)
        r["group"].append(first is not None and first.group == REAL_GROUP[p.cls])
        r["c_covers"].append(c_share >= COVERS)
        r["c_several"].append(len(boxes) > 1)
        r["n"].append(len(parsing.garments))
    print(f"\nreal-items measure part: {len(photos)} photos (every {step}th), one garment each")
    print("| class | photos | parser 'one garment' | parser 1st box covers >= 50 % | both | parser group right | parser 'person' | parser items | contrast 1st box covers >= 50 % | contrast several items |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for cls in [*sorted(rows), "all"]:
        r = rows[cls] if cls != "all" else {k: sum((rows[c][k] for c in rows), []) for k in rows[next(iter(rows))]}
        print(f"| {cls} | {len(r['one'])} | {np.mean(r['one']):.3f} | {np.mean(r['covers']):.3f} | {np.mean(r['one_covers']):.3f} | "
              f"{np.mean(r['group']):.3f} | {np.mean(r['person']):.3f} | {np.mean(r['n']):.2f} | {np.mean(r['c_covers']):.3f} | {np.mean(r['c_several']):.3f} |")


def cost(parser, root: Path, n: int = 30) -> None:
    from stylelens import Embedder

    embedder = Embedder(parser.meta["backbone"], batch_size=1)
    photos = [rgb_of(p.path) for p in street_photos(root, part="measure")[:n]]
    embedder.embed_one(Image.fromarray(photos[0]))
    parser.parse(photos[0])

    def p50(fn) -> float:
        times = []
        for rgb in photos:
            t = time.perf_counter()
            fn(rgb)
            times.append((time.perf_counter() - t) * 1000)
        return float(np.median(times))

    maps = p50(parser.maps)
    print(f"\ncost per photo, p50 of {n} street photos ({parser.maps.runtime} maps at {parser.meta['input_size']} px, "
          f"embedder {embedder.runtime_name} at {embedder.preprocess.size} px):")
    print(f"| step | p50 ms |\n|---|---|\n| parse (maps + decoder + masks) | {p50(parser.parse):.1f} |\n| of which backbone maps | {maps:.1f} |"
          f"\n| one embedding (embed_one) | {p50(lambda rgb: embedder.embed_one(Image.fromarray(rgb))):.1f} |"
          f"\n| contrast locate | {p50(lambda rgb: locate(rgb, max_items=3)):.1f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=None, help="street photos (default all of the measure part)")
    ap.add_argument("--items-step", type=int, default=1, help="every n-th real-items photo")
    ap.add_argument("--contrast-items", type=int, default=3)
    ap.add_argument("--skip", nargs="*", default=(), choices=("street", "items", "cost"))
    args = ap.parse_args(argv)
    root = Path(args.data or default_root())
    parser = GarmentParser.load(args.weights)
    if "street" not in args.skip:
        street(parser, root, args.limit, args.contrast_items)
    if "items" not in args.skip:
        items(parser, root, args.items_step)
    if "cost" not in args.skip:
        cost(parser, root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
