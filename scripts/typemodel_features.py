"""Pooled backbone features of the type model's images, extracted once and cached (npz per set and backbone).

Used by ``scripts/train_type_model.py``. One network pass gives both poolings (max and avg, each L2
normalised): the trunk is the registry's, the input the embedder's own preparation (letterbox on white at
the backbone's input size), run by OpenVINO (fp32, throughput mode) when installed, else torch.

Sets (``SETS``): real-items photos (whole frame, a centred square crop, and for the train part a mirrored
frame), street-ccp worn garments cropped by their box (and mirrored, train part), and the catalog images.
"""

from __future__ import annotations

import csv
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
    ap.add_argument("--sets", default="real,street,catalog")
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
    if "catalog" in sets:
        rows = catalog_subset(catalog_rows(args.data), args.catalog_per_type)
        extract(catalog_jobs(rows), args.backbone, args.cache / f"{args.backbone}-catalog{args.catalog_per_type}.npz", net)
