"""Train the garment parser's decoder (stylelens.models.parser) and write src/stylelens/models/weights/parser.npz
(+ parser.json: backbone, input size, classes, training data, licences, sha256).

Data (from ../shared/data, read-only):
- street-ccp, **train part only** (stylelens.quality.realdata.street_photos(part="train"), Apache-2.0): each
  photo's pixel mask, labels grouped by label_groups() into the parser's classes; each photo as it is,
  mirrored, and cut around one of its garments (a garment that fills more of the frame).
- fashion-small catalog shots (Kaggle "Fashion Product Images (Small)", Myntra's product photos; its README
  states no licence): the product cut from its white backdrop (item.composite.cutout) is
  a free mask, its group from styles.csv; half on white as shot, half pasted large onto a generated
  backdrop (item.composite.background), the "one garment filling the frame" a shopper photographs at home.

The frozen backbone's maps (BackboneMaps, strides 8/16/32) are computed once per sample and cached under
--cache; the decoder then trains on the cached maps (CPU, minutes). Everything is seeded: the same data,
backbone and library versions give the same weights.

    PYTHONPATH=src python scripts/train_parser.py            # cache (first run ~10 min on 2 cores), train, write
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from stylelens.item.composite import background, cutout, mask_box
from stylelens.models.parser import CLASSES, DEFAULT_WEIGHTS, STRIDES, build_decoder, weights_sha256
from stylelens.quality.realdata import default_root, label_groups, street_photos

BACKBONE = "efficientnet-lite0"
INPUT_SIZE = 384
SEED = 0
CROP32 = (8, 6)  # training window of the stride-32 grid (rows, cols); a smaller sample is padded (window())

# Catalog (subCategory, articleType) -> the parser's group; street-ccp's own grouping decides the edge
# cases (sweaters and sweatshirts are tops there, cardigans and jackets outerwear).
OUTERWEAR_TYPES = {"Jackets", "Blazers", "Nehru Jackets", "Rain Jacket", "Shrug", "Waistcoat"}
SUB_GROUPS = {"Topwear": "top", "Bottomwear": "bottom", "Dress": "dress", "Shoes": "shoes", "Sandal": "shoes",
              "Flip Flops": "shoes", "Bags": "bag"}


def catalog_group(row: dict) -> str | None:
    if row["articleType"] in OUTERWEAR_TYPES:
        return "outerwear"
    if row["articleType"] in ("Dresses", "Jumpsuit"):
        return "dress"
    return SUB_GROUPS.get(row["subCategory"])


def street_lut(root: Path) -> np.ndarray:
    """Mask label -> class index (accessories count as background: nothing a shopper buys here)."""
    lut = np.zeros(256, np.uint8)
    for label, group in label_groups(root).items():
        lut[label] = CLASSES.index(group) if group in CLASSES else 0
    return lut


def street_samples(root: Path, rng: np.random.Generator):
    lut = street_lut(root)
    for p in street_photos(root, part="train"):
        rgb = np.asarray(Image.open(p.path).convert("RGB"))
        cls = lut[np.asarray(Image.open(p.mask_path))]
        yield f"street-{p.photo}-full", rgb, cls
        yield f"street-{p.photo}-flip", rgb[:, ::-1].copy(), cls[:, ::-1].copy()
        worn = p.worn
        if worn:
            x, y, w, h = worn[rng.integers(len(worn))].box
            grow = rng.uniform(1.2, 1.8)
            side_w, side_h = max(w * grow, 160), max(h * grow, 160)
            cx, cy = x + w / 2, y + h / 2
            H, W = cls.shape
            x0, y0 = int(max(0, cx - side_w / 2)), int(max(0, cy - side_h / 2))
            x1, y1 = int(min(W, cx + side_w / 2)), int(min(H, cy + side_h / 2))
            yield f"street-{p.photo}-crop", rgb[y0:y1, x0:x1].copy(), cls[y0:y1, x0:x1].copy()


def catalog_samples(root: Path, per_group: int, rng: np.random.Generator):
    base = root / "fashion-small"
    by_group: dict[str, list[str]] = {}
    with open(base / "styles.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            g = catalog_group(row)
            if g and (base / "images" / f"{row['id']}.jpg").exists():
                by_group.setdefault(g, []).append(row["id"])
    for group in sorted(by_group):
        ids = sorted(by_group[group])
        for pid in rng.permutation(ids)[:per_group]:
            rgb = np.asarray(Image.open(base / "images" / f"{pid}.jpg").convert("RGB"))
            mask = cutout(rgb)
            cls = np.where(mask, CLASSES.index(group), 0).astype(np.uint8)
            if rng.random() < 0.5:
                yield f"cat-{pid}-white", rgb, cls
                continue
            # Pasted large onto a backdrop: 55-95 % of a 3:4 frame's height, near the centre.
            x, y, w, h = mask_box(mask)
            item, m = rgb[y : y + h, x : x + w], mask[y : y + h, x : x + w]
            W, H = 300, 400
            s = rng.uniform(0.55, 0.95) * min(H / h, W / w)
            nw, nh = max(1, round(w * s)), max(1, round(h * s))
            item = np.asarray(Image.fromarray(item).resize((nw, nh), Image.Resampling.BILINEAR))
            m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((nw, nh), Image.Resampling.BILINEAR)) >= 128
            canvas = background(rng, (W, H)).copy()
            ox = int(np.clip((W - nw) / 2 + rng.normal(0, 0.08) * W, 0, W - nw))
            oy = int(np.clip((H - nh) / 2 + rng.normal(0, 0.08) * H, 0, H - nh))
            canvas[oy : oy + nh, ox : ox + nw][m] = item[m]
            out = np.zeros((H, W), np.uint8)
            out[oy : oy + nh, ox : ox + nw][m] = CLASSES.index(group)
            yield f"cat-{pid}-scene", canvas, out


def targets(cls: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(K, h, w) share of each class in each stride-8 cell (the grid covers the photo's part of the letterbox)."""
    import cv2

    h, w = grid
    return np.stack([cv2.resize((cls == k).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
                     for k in range(len(CLASSES))])


def cache_features(maps, samples, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths, started, made = [], time.perf_counter(), 0
    for key, rgb, cls in samples:
        path = folder / f"{key}.npz"
        if not path.exists():
            fmaps = maps(rgb)
            t = targets(cls, fmaps[0].shape[1:])
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, **{f"f{s}": m.astype(np.float16) for s, m in zip(STRIDES, fmaps)}, t=t.astype(np.float16))
            tmp.rename(path)
            made += 1
            if made % 100 == 0:
                print(f"  cached {made} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
        paths.append(path)
    return paths


def load_cached(paths: list[Path]):
    out = []
    for p in paths:
        with np.load(p) as d:
            out.append(([d[f"f{s}"] for s in STRIDES], d["t"]))
    return out


def jitter(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Light, white balance and saturation of another day and camera."""
    from PIL import ImageEnhance

    im = Image.fromarray(rgb)
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.7, 1.3))
    im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.7, 1.3))
    im = ImageEnhance.Color(im).enhance(rng.uniform(0.6, 1.4))
    a = np.asarray(im).astype(np.float32) * rng.uniform(0.9, 1.1, size=3)
    return np.clip(a, 0, 255).astype(np.uint8)


def street_jitter_samples(root: Path, n: int, rng: np.random.Generator):
    """``n`` more samples of each street train photo: a random 60-95 % cut (the wearer larger in the frame, as
    in a closer shot), colour jitter, mirrored half the time."""
    lut = street_lut(root)
    for p in street_photos(root, part="train"):
        rgb = np.asarray(Image.open(p.path).convert("RGB"))
        cls = lut[np.asarray(Image.open(p.mask_path))]
        H, W = cls.shape
        for k in range(n):
            s = rng.uniform(0.6, 0.95)
            h, w = int(H * s), int(W * rng.uniform(0.75, 1.0) * s if rng.random() < 0.5 else W * s)
            w, h = min(W, max(w, 160)), max(h, 200)
            y0, x0 = int(rng.integers(H - h + 1)), int(rng.integers(W - w + 1))
            r, c = jitter(rgb[y0 : y0 + h, x0 : x0 + w], rng), cls[y0 : y0 + h, x0 : x0 + w]
            if rng.random() < 0.5:
                r, c = r[:, ::-1], c[:, ::-1]
            yield f"street-{p.photo}-jit{k}", np.ascontiguousarray(r), np.ascontiguousarray(c)


def window(sample, crop32: tuple[int, int], rng: np.random.Generator, fill: list[np.ndarray]):
    """A random ``crop32``-sized window (rows, cols of the stride-32 grid) of every map and of the targets,
    aligned on the stride-32 grid; a sample smaller than the window is padded with each level's mean (``fill``)
    and its padding left out of the loss. -> (maps, targets, valid)."""
    fmaps, t = sample
    r32, c32 = crop32
    H32, W32 = fmaps[-1].shape[1:]
    h, w = min(r32, H32), min(c32, W32)
    oy, ox = int(rng.integers(H32 - h + 1)), int(rng.integers(W32 - w + 1))
    out = []
    for m, s, mean in zip(fmaps, STRIDES, fill):
        f = 32 // s
        c = m[:, oy * f : (oy + h) * f, ox * f : (ox + w) * f]  # the finer maps may be a cell short at the edge
        pad = np.empty((m.shape[0], r32 * f, c32 * f), np.float32)
        pad[:] = mean.reshape(-1, 1, 1)
        pad[:, : c.shape[1], : c.shape[2]] = c
        out.append(pad)
    f = 32 // STRIDES[0]
    c = t[:, oy * f : (oy + h) * f, ox * f : (ox + w) * f]
    tt = np.zeros((t.shape[0], r32 * f, c32 * f), np.float32)
    tt[:, : c.shape[1], : c.shape[2]] = c
    valid = np.zeros((r32 * f, c32 * f), np.float32)
    valid[: c.shape[1], : c.shape[2]] = 1
    return out, tt, valid


def train(data, dim: int, epochs: int, seed: int, batch: int = 32, lr: float = 2e-3, crop32=CROP32, pool: bool = False,
          dice: float = 0.0, flip: bool = False):
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    in_channels = [m.shape[0] for m in data[0][0]]
    dec = build_decoder(in_channels, dim, len(CLASSES), pool=pool)
    # Per-channel normalisation of each level, from a sample of the training maps.
    for i in range(len(STRIDES)):
        stack = np.concatenate([d[0][i].reshape(d[0][i].shape[0], -1).astype(np.float32) for d in data[:: max(1, len(data) // 400)]], axis=1)
        getattr(dec, f"mean{i}").copy_(torch.from_numpy(stack.mean(1)).view(1, -1, 1, 1))
        getattr(dec, f"std{i}").copy_(torch.from_numpy(stack.std(1) + 1e-3).view(1, -1, 1, 1))
    fill = [getattr(dec, f"mean{i}").numpy().reshape(-1) for i in range(len(STRIDES))]
    # Rare classes (shoes, bags) weigh more: inverse square root of their pixel share.
    share = np.sum([d[1].astype(np.float64).sum(axis=(1, 2)) for d in data], axis=0)
    share = share / share.sum()
    weight = torch.from_numpy(np.clip((share / share.mean()) ** -0.5, 0.3, 5.0).astype(np.float32))
    opt = torch.optim.AdamW(dec.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(data) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    dec.train()
    for epoch in range(epochs):
        order = rng.permutation(len(data))
        total, started = 0.0, time.perf_counter()
        for b in range(0, len(order), batch):
            crops = []
            for i in order[b : b + batch]:
                maps_, t, valid = window(data[i], crop32, rng, fill)
                if flip and rng.random() < 0.5:  # the maps mirrored: nearly the mirrored photo's, for free
                    maps_, t, valid = [m[:, :, ::-1] for m in maps_], t[:, :, ::-1], valid[:, ::-1]
                crops.append((maps_, t, valid))
            xs = [torch.from_numpy(np.stack([c[0][lv] for c in crops])) for lv in range(len(STRIDES))]
            t = torch.from_numpy(np.stack([c[1] for c in crops]))
            valid = torch.from_numpy(np.stack([c[2] for c in crops]))
            t = t / t.sum(1, keepdim=True).clamp_min(1e-6)
            logp = torch.log_softmax(dec(*xs), dim=1)
            loss = -((t * logp * weight.view(1, -1, 1, 1)).sum(1) * valid).sum() / valid.sum()
            if dice:  # soft dice of the garment classes over the batch: the small ones count as much as the large
                pr, tv = logp.exp() * valid[:, None], t * valid[:, None]
                inter, den = (pr * tv).sum((0, 2, 3)), pr.sum((0, 2, 3)) + tv.sum((0, 2, 3))
                loss = loss + dice * (1 - (2 * inter + 1) / (den + 1))[2:].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(crops)
        print(f"  epoch {epoch + 1}/{epochs} loss {total / len(data):.4f} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    return dec.eval(), in_channels, share


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="the shared data folder (default ../shared/data)")
    ap.add_argument("--cache", type=Path, default=Path("/work/cache/parser"), help="where the backbone maps are cached")
    ap.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--catalog-per-group", type=int, default=250)
    ap.add_argument("--dim", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=18)
    ap.add_argument("--jitter", type=int, default=0, help="jittered cuts of each street train photo (street_jitter_samples)")
    ap.add_argument("--crop", default=",".join(map(str, CROP32)), help="training window, rows,cols of the stride-32 grid")
    ap.add_argument("--pool", action=argparse.BooleanOptionalAction, default=False, help="the whole photo's mean in the context")
    ap.add_argument("--dice", type=float, default=0.0, help="weight of a soft dice loss of the garment classes")
    ap.add_argument("--flip", action="store_true", help="mirror the cached maps half the time")
    ap.add_argument("--cache-only", action="store_true")
    args = ap.parse_args(argv)

    from stylelens import Embedder
    from stylelens.models.localiser import BackboneMaps

    root = Path(args.data or default_root())
    embedder = Embedder(BACKBONE, runtime="torch", batch_size=1)
    maps = BackboneMaps(embedder, size=INPUT_SIZE, strides=STRIDES)
    folder = args.cache / f"{BACKBONE}-{INPUT_SIZE}-{maps.runtime}"
    rng = np.random.default_rng(SEED)
    street = cache_features(maps, street_samples(root, rng), folder)
    catalog = cache_features(maps, catalog_samples(root, args.catalog_per_group, np.random.default_rng(SEED + 1)), folder)
    jittered = cache_features(maps, street_jitter_samples(root, args.jitter, np.random.default_rng(SEED + 11)), folder)
    print(f"cached maps: {len(street)} street, {len(jittered)} jittered street, {len(catalog)} catalog samples in {folder}",
          file=sys.stderr)
    if args.cache_only:
        return 0
    crop32 = tuple(int(v) for v in args.crop.split(","))
    data = load_cached(street + catalog + jittered)
    print(f"training on {len(data)} samples", file=sys.stderr)
    dec, in_channels, share = train(data, args.dim, args.epochs, SEED, crop32=crop32, pool=args.pool, dice=args.dice,
                                    flip=args.flip)
    params = {k: v.detach().numpy().astype(np.float32) for k, v in dec.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **params)
    meta = {
        "model": "garment parser: 1x1 projections of the stride 8/16/32 maps; two 3x3 convs at stride 16, one at stride 8, per-pixel classes",
        "backbone": BACKBONE, "backbone_weights_sha256": embedder.weights.sha256, "maps_runtime": maps.runtime,
        "input_size": INPUT_SIZE, "strides": list(STRIDES), "in_channels": in_channels, "dim": args.dim, "pool": args.pool,
        "classes": list(CLASSES), "class_pixel_share": [round(float(s), 4) for s in share],
        "training": {"seed": SEED, "epochs": args.epochs, "script": "scripts/train_parser.py",
                     "samples": {"street": len(street), "street_jittered": len(jittered), "catalog": len(catalog)},
                     "window_stride32": list(crop32), "dice": args.dice, "flip_maps": args.flip},
        "data": [
            {"name": "street-ccp", "part": "train (stylelens.quality.realdata split, seed 0)",
             "photos": len(street_photos(root, part="train")), "licence": "Apache-2.0",
             "source": "https://github.com/bearpaw/clothing-co-parsing"},
            {"name": "fashion-small", "part": f"{args.catalog_per_group} shots per group (seeded), cut from white",
             "source": "Kaggle paramaggarwal/fashion-product-images-small (Myntra product photos)",
             "licence": "not stated in ../shared/data/fashion-small/README.md; confirm before shipping"},
        ],
        "sha256": weights_sha256(args.out),
    }
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 1e6:.2f} MB, sha256 {meta['sha256'][:12]}) and {args.out.with_suffix('.json').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
