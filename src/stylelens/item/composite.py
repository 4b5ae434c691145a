"""Shopper-like photos made from catalog shots: cut the product from its white background, paste it.

A catalog shot is a product alone on white, so a flood fill from the border gives a free mask and box.
Pasted onto generated backgrounds, at a scale and place, beside other products, tilted, relit, blurred
and re-compressed, it becomes a query the catalog cannot show, with its true box known. Everything is a
pure function of (images, ``numpy.random.Generator``): the benchmark and any training augmentation draw
the same pictures from the same seed.

    item = cut(Image.open("15970.jpg"))
    photo = make_variant("small-offcentre", [item], np.random.default_rng(0))
    photo.image, photo.boxes   # PIL image, [(x, y, w, h)] of the target
"""

from __future__ import annotations

import csv
import io
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageFilter

from ..errors import CatalogError, InvalidArgumentError
from ..intake.images import load_image

Box = tuple[int, int, int, int]  # x, y, w, h in pixels
BACKGROUNDS = ("solid", "gradient", "wood", "fabric", "bedsheet", "pattern")


# ---- cut-out ----------------------------------------------------------------------------------------
def _rgb_array(image) -> np.ndarray:
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InvalidArgumentError(f"Expected an RGB uint8 array (H, W, 3), got {image.dtype} {image.shape}.", code="bad_image_array")
        return image
    return np.asarray(load_image(image), dtype=np.uint8)


def _components(binary: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, labels, areas) of 4-connected regions of a bool array; label 0 is the False region."""
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=4)
    return n, labels, stats[:, cv2.CC_STAT_AREA]


def cutout(rgb, tol: int = 24, min_area: float = 0.02, speck: float = 0.002) -> np.ndarray:
    """Product mask (H, W) bool of a shot on white: everything a flood fill from the border does not reach.

    The fill crosses pixels within ``tol`` of white in every channel; white holes inside the product stay
    product. A light product can leak: when the mask covers under ``min_area`` of the frame the fill is
    retried with a tighter tolerance, and in the end the whole frame is the mask (never an empty one).
    Specks under ``speck`` of the frame are dropped.
    """
    arr = _rgb_array(rgb)
    h, w = arr.shape[:2]
    darkest = arr.min(axis=2)
    for t in (tol, tol // 3, 2):
        passable = darkest >= 255 - t
        n, labels, _ = _components(passable)
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        background = np.isin(labels, border[border > 0]) & passable
        mask = ~background
        n, labels, areas = _components(mask)
        keep = np.flatnonzero(areas >= max(1.0, speck * h * w))
        keep = keep[keep > 0]
        mask = np.isin(labels, keep)
        if mask.sum() >= min_area * h * w:
            return mask
    return np.ones((h, w), bool)


def mask_box(mask: np.ndarray) -> Box:
    """Tight (x, y, w, h) around the True pixels; the whole array when there are none."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (0, 0, mask.shape[1], mask.shape[0])
    return (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))


@dataclass(frozen=True)
class Item:
    """A product cut from its shot: pixels and mask, both cropped to the mask's box."""

    rgb: np.ndarray  # (h, w, 3) uint8
    mask: np.ndarray  # (h, w) bool


def cut(image, tol: int = 24) -> Item:
    """Path, bytes, PIL image or RGB array of a shot on white -> the product cut to its box."""
    arr = _rgb_array(image)
    mask = cutout(arr, tol=tol)
    x, y, w, h = mask_box(mask)
    return Item(arr[y : y + h, x : x + w].copy(), mask[y : y + h, x : x + w].copy())


# ---- backgrounds ------------------------------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid resized bicubically."""
    gh, gw = max(2, round(cells * h / max(h, w))), max(2, round(cells * w / max(h, w)))
    grid = Image.fromarray((rng.random((gh, gw)) * 255).astype(np.uint8))
    return np.asarray(grid.resize((w, h), Image.Resampling.BICUBIC), np.float32) / 255.0


def _colour(rng: np.random.Generator, light: float = 0.0) -> np.ndarray:
    """A random colour; ``light`` pulls it towards the pale end (sheets, walls)."""
    c = rng.uniform(20, 235, 3)
    return c + (255 - c) * light * rng.random()


def background(rng: np.random.Generator, size: tuple[int, int], kind: str | None = None) -> np.ndarray:
    """A procedurally generated backdrop (H, W, 3) uint8 for ``size`` = (width, height).

    Kinds: solid, gradient, wood (grain), fabric (weave), bedsheet (soft folds), pattern (stripes,
    checks, dots). Never a downloaded image.
    """
    w, h = size
    kind = kind or BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = _colour(rng), _colour(rng)
    if kind == "solid":
        img = np.broadcast_to(_colour(rng, light=0.5), (h, w, 3)).astype(np.float32)
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        t = xx * np.cos(angle) + yy * np.sin(angle)
        t = (t - t.min()) / max(1e-6, np.ptp(t))
        img = a * (1 - t[..., None]) + b * t[..., None]
    elif kind == "wood":
        base = np.array([rng.uniform(90, 200), rng.uniform(50, 130), rng.uniform(20, 80)])
        angle = rng.uniform(-0.3, 0.3) + (np.pi / 2 if rng.random() < 0.5 else 0)
        u = xx * np.cos(angle) + yy * np.sin(angle)
        warp = _smooth_noise(rng, h, w, 4) * rng.uniform(10, 40)
        grain = 0.5 + 0.5 * np.sin((u + warp) * rng.uniform(0.15, 0.5))
        fine = _smooth_noise(rng, h, w, max(h, w) // 3)
        shade = 0.7 + 0.2 * grain + 0.1 * fine
        img = base * shade[..., None]
        if rng.random() < 0.5:  # planks
            period = rng.uniform(40, 90)
            v = -xx * np.sin(angle) + yy * np.cos(angle)
            img = img * np.where((v % period) < 2, 0.55, 1.0)[..., None]
    elif kind == "fabric":
        f = rng.uniform(0.6, 1.6)
        weave = 0.5 + 0.25 * np.sin(xx * f) * np.sign(np.sin(yy * f * 0.5)) + 0.25 * np.sin(yy * f)
        img = a * (0.75 + 0.25 * weave[..., None]) * (0.85 + 0.15 * _smooth_noise(rng, h, w, 6)[..., None])
    elif kind == "bedsheet":
        base = _colour(rng, light=0.8)
        folds = _smooth_noise(rng, h, w, rng.integers(3, 8))
        ridges = 1.0 - np.abs(np.sin(folds * rng.uniform(4, 9)))
        img = base * (0.7 + 0.3 * ridges[..., None])
        if rng.random() < 0.4:  # a printed stripe
            period = rng.uniform(12, 40)
            img = np.where(((xx + folds * 20) % period < period / 4)[..., None], img * b / 255.0, img)
    elif kind == "pattern":
        period = rng.uniform(8, 40)
        style = rng.integers(3)
        if style == 0:
            on = (xx * np.cos(0.7) + yy * np.sin(0.7) * rng.choice([-1, 1])) % period < period / 2
        elif style == 1:
            on = ((xx // period) + (yy // period)) % 2 == 0
        else:
            on = ((xx % period - period / 2) ** 2 + (yy % period - period / 2) ** 2) < (period / 4) ** 2
        img = np.where(on[..., None], a, b)
    else:
        raise InvalidArgumentError(f"Unknown background '{kind}'. Choose one of: {', '.join(BACKGROUNDS)}.", code="bad_option")
    img = img + rng.normal(0, rng.uniform(1, 6), (h, w, 1))  # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)


# ---- placing items ----------------------------------------------------------------------------------
@dataclass
class Composite:
    """A generated photo with where each product lies.

    ``boxes`` are the targets' visible boxes (x, y, w, h), in the order given; ``labels`` marks each pixel:
    0 background, i + 1 target i, len(boxes) + j + 1 distractor j (what a localiser may learn from).
    """

    image: Image.Image
    boxes: list[Box]
    labels: np.ndarray
    distractor_boxes: list[Box] = field(default_factory=list)


def _scaled(item: Item, height: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Item resized to ``height`` px tall (aspect kept), turned by ``angle`` degrees: (rgb, alpha in 0..1)."""
    ih, iw = item.mask.shape
    height = max(2, int(round(height)))
    width = max(2, int(round(iw * height / ih)))
    rgb = Image.fromarray(item.rgb).resize((width, height), Image.Resampling.BICUBIC)
    # A one-pixel soft edge: no white fringe from the catalog shot, no jagged outline.
    alpha = Image.fromarray(item.mask.astype(np.uint8) * 255).resize((width, height), Image.Resampling.BILINEAR)
    alpha = alpha.filter(ImageFilter.MinFilter(3)) if min(width, height) > 12 else alpha
    if angle:
        rgb = rgb.rotate(angle, Image.Resampling.BICUBIC, expand=True)
        alpha = alpha.rotate(angle, Image.Resampling.BILINEAR, expand=True)
    return np.asarray(rgb, np.float32), np.asarray(alpha, np.float32) / 255.0


def _fit_height(item: Item, frac: float, size: tuple[int, int]) -> float:
    """Height in px at which the item's box spans ``frac`` of the frame in its limiting dimension."""
    ih, iw = item.mask.shape
    w, h = size
    return frac * min(h, w * ih / iw)


def _paste(canvas: np.ndarray, labels: np.ndarray, item: Item, centre: tuple[float, float], height: float,
           label: int, angle: float = 0.0) -> None:
    rgb, alpha = _scaled(item, height, angle)
    ph, pw = alpha.shape
    x0, y0 = int(round(centre[0] - pw / 2)), int(round(centre[1] - ph / 2))
    H, W = labels.shape
    sx0, sy0, sx1, sy1 = max(0, -x0), max(0, -y0), min(pw, W - x0), min(ph, H - y0)
    if sx1 <= sx0 or sy1 <= sy0:
        return
    a = alpha[sy0:sy1, sx0:sx1, None]
    region = canvas[y0 + sy0 : y0 + sy1, x0 + sx0 : x0 + sx1]
    region[:] = region * (1 - a) + rgb[sy0:sy1, sx0:sx1] * a
    lab = labels[y0 + sy0 : y0 + sy1, x0 + sx0 : x0 + sx1]
    lab[a[..., 0] >= 0.5] = label


def _relight(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour cast, exposure, gamma and a soft shadow across the frame."""
    h, w = img.shape[:2]
    cast = rng.uniform(0.85, 1.15, 3)
    exposure = rng.uniform(0.7, 1.15)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = xx * np.cos(angle) + yy * np.sin(angle)
    t = (t - t.min()) / max(1e-6, np.ptp(t))
    shade = 1.0 - rng.uniform(0.1, 0.35) * t
    out = (img / 255.0) ** rng.uniform(0.8, 1.25) * 255.0
    return out * cast * exposure * shade[..., None]


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=int(quality))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def compose(
    targets: Sequence[Item],
    rng: np.random.Generator,
    *,
    size: tuple[int, int] = (240, 320),
    scale: tuple[float, float] = (0.65, 0.75),
    layout: str = "centre",
    distractors: Sequence[Item] = (),
    distractor_scale: tuple[float, float] = (0.35, 0.5),
    backdrop: str | None = None,
    tilt: float = 0.0,
    relight: bool = False,
    blur: float = 0.0,
    jpeg: int | None = None,
) -> Composite:
    """Paste ``targets`` (and ``distractors`` behind them) onto a generated background of ``size`` (w, h).

    ``scale``: the share of the frame each target's box spans in its limiting dimension, drawn per item.
    ``layout``: ``centre`` (one target near the middle), ``offcentre`` (one target away from the middle,
    inside the frame) or ``row`` (targets side by side, one slot each). Distractors go to the sides of
    the first target and may be cut by the frame. ``tilt`` turns each item by up to ±tilt degrees;
    ``relight``, ``blur`` (max Gaussian radius, px) and ``jpeg`` (quality) degrade the whole photo.
    Boxes are measured from the visible pixels of each item, after everything else is pasted.
    """
    if not targets:
        raise InvalidArgumentError("compose needs at least one target item.", code="bad_option")
    w, h = size
    canvas = background(rng, size, backdrop).astype(np.float32)
    labels = np.zeros((h, w), np.int16)
    n = len(targets)
    heights = [_fit_height(t, rng.uniform(*scale), (w / n if layout == "row" else w, h)) for t in targets]
    centres = []
    for i, (item, height) in enumerate(zip(targets, heights)):
        ih, iw = item.mask.shape
        pw, ph = iw * height / ih, height
        if layout == "centre":
            cx, cy = w / 2 + rng.uniform(-0.05, 0.05) * w, h / 2 + rng.uniform(-0.05, 0.05) * h
        elif layout == "offcentre":
            # Anywhere the item stays inside the frame, but at least a fifth of the free room away from the middle.
            rx, ry = max(0.0, (w - pw) / 2), max(0.0, (h - ph) / 2)
            while True:
                dx, dy = rng.uniform(-1, 1), rng.uniform(-1, 1)
                if max(abs(dx), abs(dy)) >= 0.6:
                    break
            cx, cy = w / 2 + dx * rx, h / 2 + dy * ry
        elif layout == "row":
            slot = w / n
            free = max(0.0, (slot - pw) / 2)
            cx = slot * (i + 0.5) + rng.uniform(-0.5, 0.5) * free
            cy = h / 2 + rng.uniform(-0.5, 0.5) * max(0.0, (h - ph) / 2)
        else:
            raise InvalidArgumentError(f"Unknown layout '{layout}'. Choose centre, offcentre or row.", code="bad_option")
        centres.append((cx, cy, pw, ph))
    # Distractors first (targets lie on top of them), left and right of the first target, alternating.
    for j, item in enumerate(distractors):
        height = _fit_height(item, rng.uniform(*distractor_scale), size)
        ih, iw = item.mask.shape
        cx0, cy0, pw0, _ = centres[0]
        side = -1 if j % 2 == 0 else 1
        dw = iw * height / ih
        cx = cx0 + side * (pw0 / 2 + dw * rng.uniform(0.3, 0.6))
        cy = h / 2 + rng.uniform(-0.3, 0.3) * h
        _paste(canvas, labels, item, (cx, cy), height, n + j + 1, rng.uniform(-tilt, tilt) if tilt else 0.0)
    for i, (item, (cx, cy, _, ph)) in enumerate(zip(targets, centres)):
        _paste(canvas, labels, item, (cx, cy), ph, i + 1, rng.uniform(-tilt, tilt) if tilt else 0.0)
    if relight:
        canvas = _relight(canvas, rng)
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4 * blur, blur)))
    if jpeg:
        image = _jpeg(image, jpeg)
    boxes = [mask_box(labels == i + 1) for i in range(n)]
    dboxes = [mask_box(labels == n + j + 1) for j in range(len(distractors)) if (labels == n + j + 1).any()]
    return Composite(image, boxes, labels, dboxes)


# ---- the benchmark's named variants -----------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """A kind of shopper photo: how many targets and distractors, and the compose() settings."""

    name: str
    targets: int = 1
    distractors: int = 0
    options: dict = field(default_factory=dict)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("catalog"),  # the unchanged catalog shot
        Variant("textured-70", options=dict(size=(240, 320), scale=(0.68, 0.72), layout="centre")),
        Variant("textured-70-degraded", options=dict(size=(240, 320), scale=(0.68, 0.72), layout="centre", tilt=10.0,
                                                     relight=True, blur=1.5, jpeg=-1)),
        Variant("small-offcentre", options=dict(size=(240, 320), scale=(0.35, 0.45), layout="offcentre")),
        Variant("distractors", distractors=2, options=dict(size=(320, 240), scale=(0.5, 0.6), layout="centre",
                                                          distractor_scale=(0.4, 0.55))),
        Variant("multi-2", targets=2, options=dict(size=(320, 240), scale=(0.55, 0.7), layout="row")),
        Variant("multi-3", targets=3, options=dict(size=(320, 240), scale=(0.5, 0.65), layout="row")),
    )
}


def make_variant(name: str, targets: Sequence[Item], rng: np.random.Generator, distractors: Sequence[Item] = ()) -> Composite:
    """One photo of a named variant (see VARIANTS). ``catalog`` is the first target on white, unchanged."""
    if name not in VARIANTS:
        raise InvalidArgumentError(f"Unknown variant '{name}'. Choose one of: {', '.join(VARIANTS)}.", code="bad_option")
    variant = VARIANTS[name]
    if len(targets) != variant.targets or len(distractors) != variant.distractors:
        raise InvalidArgumentError(f"Variant '{name}' takes {variant.targets} target(s) and {variant.distractors} distractor(s), "
                                   f"got {len(targets)} and {len(distractors)}.", code="bad_option")
    if name == "catalog":
        raise InvalidArgumentError("The catalog variant is the shot itself: write the original file.", code="bad_option")
    options = dict(variant.options)
    if options.get("jpeg") == -1:
        options["jpeg"] = int(rng.integers(25, 56))
    return compose(targets, rng, distractors=distractors, **options)


# ---- the benchmark on disk --------------------------------------------------------------------------
LABEL_COLUMNS = ["id", "product_id", "variant", "articleType", "gender", "baseColour", "box"]


def read_products(path) -> dict[str, dict]:
    """Product rows by id from a CSV feed (styles.csv)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return {row["id"]: row for row in csv.DictReader(fh)}
    except (OSError, KeyError) as exc:
        raise CatalogError(f"Could not read product rows from {path} ({exc}). Pass products= a CSV with an id column.") from exc


def _image_path(catalog_dir: Path, pid: str) -> Path:
    for p in (catalog_dir / "images" / f"{pid}.jpg", catalog_dir / f"{pid}.jpg"):
        if p.is_file():
            return p
    raise CatalogError(f"No image for product {pid} in {catalog_dir} (looked for images/{pid}.jpg and {pid}.jpg).")


def _photo_rng(seed: int, variant: str, pid: str) -> np.random.Generator:
    """One generator per photo: a photo is the same whatever else is generated beside it."""
    return np.random.default_rng([seed, zlib.crc32(variant.encode()), zlib.crc32(str(pid).encode())])


def category(row: dict) -> str:
    """What makes products 'of other categories' here: the subCategory (else the articleType)."""
    return row.get("subCategory") or row.get("articleType") or ""


def pick_others(rng: np.random.Generator, pool: Sequence[str], rows: dict[str, dict], avoid: set[str], n: int, exclude: set[str]) -> list[str]:
    """n products of categories not in ``avoid`` and unlike each other, drawn from ``pool``."""
    picked: list[str] = []
    if n <= 0:
        return picked
    avoid = set(avoid)
    for i in rng.permutation(len(pool)):
        pid = pool[i]
        if pid in exclude or pid not in rows or category(rows[pid]) in avoid:
            continue
        picked.append(pid)
        avoid.add(category(rows[pid]))
        if len(picked) == n:
            return picked
    raise CatalogError(f"Not enough products of other categories to pick {n} (pool of {len(pool)}).")


def variant_photo(variant: str, pid: str, rows: dict[str, dict], pool: Sequence[str], rng: np.random.Generator,
                  item: Callable[[str], Item]) -> tuple[list[str], Composite]:
    """A photo of a named variant around product ``pid``: other targets and distractors drawn from ``pool``
    (each of a category unlike the rest of the photo). ``item(id)`` gives a product's cut-out.
    Returns (target ids in box order, the composite). Benchmark and training augmentation share it."""
    spec = VARIANTS[variant]
    companions = pick_others(rng, pool, rows, {category(rows[pid])}, spec.targets - 1, {pid})
    target_ids = [pid, *companions]
    distractor_ids = pick_others(rng, pool, rows, {category(rows[t]) for t in target_ids}, spec.distractors, set(target_ids))
    return target_ids, make_variant(variant, [item(t) for t in target_ids], rng, [item(d) for d in distractor_ids])


def write_benchmark(
    catalog_dir,
    out_dir,
    ids: Sequence[str],
    seed: int = 0,
    variants: Sequence[str] = tuple(VARIANTS),
    *,
    products=None,
    pool: Sequence[str] | None = None,
    quality: int = 92,
) -> Path:
    """Shopper-like query photos of the products ``ids``: ``out_dir/images/<variant>-<id>.jpg`` + ``labels.csv``.

    One photo per (variant, id); ``id`` is the first target, other targets and distractors come from
    ``pool`` (default: ``ids``), each of a category (subCategory) unlike the others in the photo. A
    multi-item photo gets one labels row per target. ``products`` is the feed with id, articleType,
    gender, baseColour, subCategory (default: the catalog's styles.csv). Returns the labels path.
    """
    catalog_dir, out = Path(catalog_dir), Path(out_dir)
    rows = read_products(Path(products) if products else catalog_dir / "styles.csv")
    ids = [str(i) for i in ids]
    pool = [str(i) for i in (pool if pool is not None else ids)]
    for v in variants:
        if v not in VARIANTS:
            raise InvalidArgumentError(f"Unknown variant '{v}'. Choose from: {', '.join(VARIANTS)}.", code="bad_option")
    missing = [i for i in ids if i not in rows]
    if missing:
        raise CatalogError(f"{len(missing)} ids have no product row (e.g. {missing[0]}).")
    (out / "images").mkdir(parents=True, exist_ok=True)
    items: dict[str, Item] = {}

    def item(pid: str) -> Item:
        if pid not in items:
            items[pid] = cut(_image_path(catalog_dir, pid))
        return items[pid]

    labels = []
    for variant in variants:
        for pid in ids:
            stem = f"{variant}-{pid}"
            path = out / "images" / f"{stem}.jpg"
            if variant == "catalog":
                source = _image_path(catalog_dir, pid)
                path.write_bytes(source.read_bytes())
                placed = [(pid, mask_box(cutout(np.asarray(load_image(source)))))]
            else:
                target_ids, photo = variant_photo(variant, pid, rows, pool, _photo_rng(seed, variant, pid), item)
                photo.image.save(path, "JPEG", quality=quality)
                placed = list(zip(target_ids, photo.boxes))
            for target, box in placed:
                row = rows[target]
                labels.append({"id": stem, "product_id": target, "variant": variant, "articleType": row.get("articleType", ""),
                               "gender": row.get("gender", ""), "baseColour": row.get("baseColour", ""),
                               "box": ",".join(str(int(v)) for v in box)})
    labels_path = out / "labels.csv"
    with open(labels_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=LABEL_COLUMNS)
        writer.writeheader()
        writer.writerows(labels)
    return labels_path


def read_labels(path) -> list[dict]:
    """The rows of a benchmark's labels.csv, with ``box`` as an (x, y, w, h) tuple of ints."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["box"] = tuple(int(v) for v in row["box"].split(","))
    return rows
