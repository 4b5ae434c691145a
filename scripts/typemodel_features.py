"""Pooled backbone features of the type model's images, extracted once and cached (npz per set and backbone).

Used by ``scripts/train_type_model.py``. One network pass gives both poolings (max and avg, each L2
normalised): the trunk is the registry's, the input the embedder's own preparation (letterbox on white at
the backbone's input size), run by OpenVINO (fp32, throughput mode) when installed, else torch.

Sets: real-items photos (whole frame, a centred square crop, and for the train part a mirrored frame),
street-ccp worn garments cropped by their box (and mirrored, train part), the train part's worn garments
jittered (``street-jitter``: other margins, shifted, cut out on white by their mask, each mirrored), the
train part's worn garments as the served search's garment parser cuts them (``street-parser``), and the
catalog images.
"""

from __future__ import annotations

import csv
import hashlib
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from stylelens.models.embedder import Embedder
from stylelens.quality import realdata

BOX_MARGIN = 0.05  # of the box's size on each side: a garment cut at its very edge loses its outline
BATCH = 32


# ---- what each set holds: a key per image, its label and how to make its picture ------------------
def catalog_rows(root: Path) -> list[tuple[str, str, Path]]:
    """(product id, articleType, image path) of every catalog product with an image, in id order."""
    base = Path(root) / "fashion-small"
    out = []
    with open(base / "styles.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            path = base / "images" / f"{r['id']}.jpg"
            if r["articleType"] and path.is_file():
                out.append((r["id"], r["articleType"], path))
    return sorted(out, key=lambda r: int(r[0]))


def catalog_subset(rows, per_type: int, seed: int = 0) -> list[tuple[str, str, Path]]:
    """At most ``per_type`` products of each type, drawn with a seed: every type seen, the big ones capped."""
    rng = np.random.default_rng(seed)
    by_type: dict[str, list] = {}
    for row in rows:
        by_type.setdefault(row[1], []).append(row)
    keep = []
    for t in sorted(by_type):
        group = by_type[t]
        pick = rng.permutation(len(group))[:per_type]
        keep += [group[i] for i in sorted(pick)]
    return sorted(keep, key=lambda r: int(r[0]))


def centre_square(image: Image.Image) -> Image.Image:
    w, h = image.size
    s = min(w, h)
    return image.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))


def box_crop(image: Image.Image, box) -> Image.Image:
    x, y, w, h = box
    mx, my = round(w * BOX_MARGIN), round(h * BOX_MARGIN)
    W, H = image.size
    return image.crop((max(0, x - mx), max(0, y - my), min(W, x + w + mx), min(H, y + h + my)))


def real_items_jobs(root: Path, centre: bool = True, flip: bool = True):
    """(key, label set, loader) for every real-items photo and view; keys say part, class, view."""
    jobs = []
    for part in ("train", "measure"):
        for p in realdata.real_items(root, part=part):
            key = f"{part}/{p.cls}/{p.path.stem}"
            types = "|".join(sorted(p.catalog_types))
            jobs.append((f"{key}/whole", types, lambda p=p: _rgb(p.path)))
            if centre:
                jobs.append((f"{key}/centre", types, lambda p=p: centre_square(_rgb(p.path))))
            if part == "train" and flip:
                jobs.append((f"{key}/flip", types, lambda p=p: ImageOps.mirror(_rgb(p.path))))
    return jobs


def street_jobs(root: Path, flip: bool = True):
    """One job per worn garment (its true box), plus a mirrored one in the train part; keys: part/photo/label/group/view."""
    jobs = []
    for part in ("train", "measure"):
        for photo in realdata.street_photos(root, part=part):
            for item in photo.worn:
                key = f"{part}/{photo.photo}/{item.label}/{item.group}"
                types = "|".join(sorted(item.catalog_types))
                jobs.append((f"{key}/box", types, lambda ph=photo, it=item: box_crop(_rgb(ph.path), it.box)))
                if part == "train" and flip:
                    jobs.append((f"{key}/flip", types,
                                 lambda ph=photo, it=item: ImageOps.mirror(box_crop(_rgb(ph.path), it.box))))
    return jobs


# Worn garments as the served search cuts them, and as it may miss them: its box with the served margin, looser
# and tighter, shifted, and cut out on white by the garment's own mask, each also mirrored (train part only).
JITTER_VIEWS = ("pad0", "pad15", "shift", "mask")
JITTER_GROUPS = ("top", "bottom", "outerwear", "dress")


def jitter_crop(image: Image.Image, box, view: str, rng: np.random.Generator, mask: np.ndarray | None = None) -> Image.Image:
    """One jittered view of a worn garment: ``pad0`` its box alone, ``pad15`` a margin of 0.15 of its longer
    side, ``shift`` the box moved and resized by up to 15 % (seeded), ``mask`` its pixels on white."""
    from stylelens.item.localise import crop

    x, y, w, h = box
    if view == "pad0":
        return crop(image, box, pad=0.0)
    if view == "pad15":
        return crop(image, box, pad=0.15)
    if view == "shift":
        dx, dy, sw, sh = rng.uniform(-0.15, 0.15, 4)
        nw, nh = max(4, w * (1 + sw)), max(4, h * (1 + sh))
        nx, ny = x + dx * w + (w - nw) / 2, y + dy * h + (h - nh) / 2
        W, H = image.size
        nx, ny = min(max(0, nx), W - 4), min(max(0, ny), H - 4)
        return crop(image, (nx, ny, min(nw, W - nx), min(nh, H - ny)), pad=0.05)
    return crop(image, box, pad=0.05, mask=mask)


def street_jitter_jobs(root: Path, groups=JITTER_GROUPS, views=JITTER_VIEWS, seed: int = 0):
    """The train part's worn garments of ``groups`` in each of ``views``, and mirrored; keys as street_jobs'."""
    jobs = []
    for photo in realdata.street_photos(root, part="train"):
        for item in photo.worn:
            if item.group not in groups:
                continue
            key = f"train/{photo.photo}/{item.label}/{item.group}"
            types = "|".join(sorted(item.catalog_types))
            for view in views:
                rng_seed = int(hashlib.sha256(f"{seed}:{key}:{view}".encode()).hexdigest()[:8], 16)

                def load(ph=photo, it=item, v=view, s=rng_seed, flip=False):
                    image = _rgb(ph.path)
                    mask = np.asarray(Image.open(ph.mask_path)) == it.label if v == "mask" else None
                    out = jitter_crop(image, it.box, v, np.random.default_rng(s), mask)
                    return ImageOps.mirror(out) if flip else out

                jobs.append((f"{key}/{view}", types, load))
                jobs.append((f"{key}/{view}-flip", types, lambda load=load: load(flip=True)))
    return jobs


def street_parser_features(root: Path, index: Path, path: Path, net: "DualPool | None" = None, log=print) -> dict:
    """The train part's worn garments as the served search cuts them (the garment parser's box, or its mask on
    white, ``Index.search``'s own cut-outs), each matched to the labelled garment of its group it overlaps most
    (``realscore.overlaps``); keys ``train/photo/label/group/parser``. Cached at ``path`` like ``extract``."""
    path = Path(path)
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    from stylelens import open_index
    from stylelens.quality import realscore
    from stylelens.query import pipeline

    searcher = open_index(index, tune=False)
    net = net or DualPool("efficientnet-lite0")
    keys, labels, mx, av = [], [], [], []
    t0 = time.perf_counter()
    photos = [p for p in realdata.street_photos(root, part="train") if p.worn]
    for n, photo in enumerate(photos):
        decoded = searcher._photo(photo.path.read_bytes())
        items = pipeline.cut_items(decoded, localise=searcher.settings.localise, max_items=searcher.settings.max_items,
                                   locator=searcher.locator or searcher.parser_locator())
        for item in items:
            near = [g for g in photo.worn if g.group == item.group and realscore.overlaps(item.box, g.box)]
            if not item.group or not near:
                continue
            g = max(near, key=lambda g: realscore.iou(tuple(item.box), tuple(g.box)))
            a, b = net(net.embedder.prepare(item.image)[None])
            keys.append(f"train/{photo.photo}/{g.label}/{g.group}/parser")
            labels.append("|".join(sorted(g.catalog_types)))
            mx.append(a[0].astype(np.float16))
            av.append(b[0].astype(np.float16))
        if n % 100 == 99:
            log(f"{path.name}: {n + 1}/{len(photos)} photos, {time.perf_counter() - t0:.0f} s")
    out = {"keys": np.array(keys), "labels": np.array(labels), "max": np.stack(mx), "avg": np.stack(av),
           "seconds": np.array(time.perf_counter() - t0)}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    return out


def catalog_jobs(rows):
    return [(f"catalog/{pid}", t, lambda path=path: _rgb(path)) for pid, t, path in rows]


def _rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


# ---- the network: one pass, both poolings ----------------------------------------------------
class DualPool:
    """uint8 NHWC at the backbone's size -> (max-pooled, avg-pooled) unit vectors, from one trunk pass."""

    def __init__(self, backbone: str):
        import torch

        size = None
        from stylelens.models.backbones import BACKBONES

        size = BACKBONES[backbone].preprocess.size
        self.embedder = Embedder(backbone, weights="imagenet", pooling="max", runtime="torch", input_size=size)
        base = self.embedder.net

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.base = base

            def forward(self, pixels):
                x = pixels.permute(0, 3, 1, 2).float()
                x = (x - self.base.mean) / self.base.std
                fmap = self.base.trunk(x.contiguous(memory_format=torch.channels_last))
                mx = torch.nn.functional.normalize(fmap.amax(dim=(2, 3)), dim=1)
                av = torch.nn.functional.normalize(fmap.mean(dim=(2, 3)), dim=1)
                return torch.cat([mx, av], dim=1)

        self.size = size
        self.net = Net().eval()
        self.runtime = "torch"
        try:
            import openvino as ov

            model = ov.convert_model(self.net, example_input=torch.zeros((1, size, size, 3), dtype=torch.uint8))
            model.reshape([-1, size, size, 3])
            compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "THROUGHPUT"})
            self._queue = ov.AsyncInferQueue(compiled, max(1, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            self.runtime = "openvino-fp32"
        except ImportError:
            self._queue = None

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._queue is None:
            import torch

            with torch.inference_mode():
                out = self.net(torch.from_numpy(pixels)).numpy()
        else:
            results: dict[int, np.ndarray] = {}
            self._queue.set_callback(lambda req, i: results.__setitem__(i, req.get_output_tensor(0).data.copy()))
            parts = np.array_split(pixels, min(len(self._queue), len(pixels)))
            for i, part in enumerate(parts):
                self._queue.start_async({0: np.ascontiguousarray(part)}, i)
            self._queue.wait_all()
            out = np.concatenate([results[i] for i in range(len(parts))])
        d = out.shape[1] // 2
        return out[:, :d].astype(np.float32), out[:, d:].astype(np.float32)


def extract(jobs, backbone: str, path: Path, net: DualPool | None = None, log=print) -> dict:
    """Features of ``jobs`` cached at ``path`` (npz: keys, labels, max, avg); extracted only when absent."""
    path = Path(path)
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    net = net or DualPool(backbone)
    keys, labels, mx, av = [], [], [], []
    t0 = time.perf_counter()
    for start in range(0, len(jobs), BATCH):
        chunk = jobs[start:start + BATCH]
        pixels = np.stack([net.embedder.prepare(load()) for _, _, load in chunk])
        a, b = net(pixels)
        mx.append(a.astype(np.float16))
        av.append(b.astype(np.float16))
        keys += [k for k, _, _ in chunk]
        labels += [t for _, t, _ in chunk]
        if (start // BATCH) % 20 == 0:
            done = start + len(chunk)
            log(f"{path.name}: {done}/{len(jobs)} images, {done / (time.perf_counter() - t0):.1f} img/s ({net.runtime})")
    out = {"keys": np.array(keys), "labels": np.array(labels), "max": np.concatenate(mx), "avg": np.concatenate(av),
           "seconds": np.array(time.perf_counter() - t0)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    return out


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=realdata.default_root())
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--backbone", default="efficientnet-lite0")
    ap.add_argument("--sets", default="real,street,catalog", help="of real, street, street-jitter, street-parser, catalog")
    ap.add_argument("--index", type=Path, help="with --sets street-parser: an index with the garment parser")
    ap.add_argument("--catalog-per-type", type=int, default=40)
    ap.add_argument("--no-centre", action="store_true", help="leave out the centred-square view of real-items")
    ap.add_argument("--no-flip", action="store_true", help="leave out the mirrored train pictures")
    args = ap.parse_args()
    net = DualPool(args.backbone)
    sets = args.sets.split(",")
    if "real" in sets:
        extract(real_items_jobs(args.data, centre=not args.no_centre, flip=not args.no_flip), args.backbone, args.cache / f"{args.backbone}-real.npz", net)
    if "street" in sets:
        extract(street_jobs(args.data, flip=not args.no_flip), args.backbone, args.cache / f"{args.backbone}-street.npz", net)
    if "street-jitter" in sets:
        extract(street_jitter_jobs(args.data), args.backbone, args.cache / f"{args.backbone}-street-jitter.npz", net)
    if "street-parser" in sets:
        if args.index is None:
            raise SystemExit("--sets street-parser needs --index (the index whose garment parser cuts the garments)")
        street_parser_features(args.data, args.index, args.cache / f"{args.backbone}-street-parser.npz", net)
    if "catalog" in sets:
        rows = catalog_subset(catalog_rows(args.data), args.catalog_per_type)
        extract(catalog_jobs(rows), args.backbone, args.cache / f"{args.backbone}-catalog{args.catalog_per_type}.npz", net)
