"""Find the item(s) in a shopper's photo before embedding it: boxes, best first, and the crop to embed.

The catalog is products alone on white; a shopper's photo has the item small, off-centre, on a bed or
beside other things. ``locate`` returns boxes; ``crop`` cuts one out (with a margin) for the embedder.

    boxes = locate(photo)                      # a shot on white: its product's tight box
    vector = embedder.embed([crop(photo, boxes[0])])

Where the foreground comes from is a *heat map*: any callable ``(H, W, 3) uint8 -> (h, w) float in [0, 1]``
(0.5 = the threshold) over the whole photo. Given:

- ``contrast_map``  colour distance from the photo's border colours (no model; the default);
- ``grabcut_map``   OpenCV GrabCut from a centred rectangle;
- ``models.localiser.scda_map(maps)``  the backbone's own last feature map summed over channels (SCDA,
  Wei et al. 2017);
- ``models.localiser.HeatmapHead``   a tiny head on the frozen backbone's feature maps, trained here on
  composites of the catalog (stylelens.item.composite), its weights an npz beside the index.

A photo whose border is (nearly) all white is a catalog-style shot: its box is the cut-out's, found by a
flood fill from the border, whatever the heat map; ``item_crops`` embeds such a shot as it is.

Measured with bench/shopper.py (EfficientNet-Lite0, fashion-small minus 1,000 held-out products, 300
per variant): ``contrast_map`` matches or beats the backbone-based maps on every variant at a fraction of
their cost (no second network pass), so it is the default; SCDA fails on small and multiple items (the
7x7 map's above-mean region is the whole scene), and the trained head is no better than colour contrast on
these photos.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from .composite import cutout, mask_box
from ..errors import InvalidArgumentError
from ..intake.images import load_image

Heatmap = Callable[[np.ndarray], np.ndarray]
WHITE_BORDER_SHARE = 0.85  # a photo this white around its edge is a product on white


@dataclass(frozen=True)
class Box:
    """A located item in pixels; ``score`` ranks boxes of one photo (1.0 for a shot on white)."""

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0

    @property
    def xywh(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.w, self.h)


def iou(a, b) -> float:
    """Intersection over union of two boxes (Box or (x, y, w, h))."""
    ax, ay, aw, ah = a.xywh if isinstance(a, Box) else a
    bx, by, bw, bh = b.xywh if isinstance(b, Box) else b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def frame_share(box, size: tuple[int, int]) -> float:
    """Share of a (width, height) frame that an (x, y, w, h) box covers (the part inside the frame)."""
    x, y, w, h = box
    fw, fh = size
    iw = max(0.0, min(x + w, fw) - max(x, 0))
    ih = max(0.0, min(y + h, fh) - max(y, 0))
    return iw * ih / (fw * fh) if fw * fh else 0.0


def _rgb(image) -> np.ndarray:
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InvalidArgumentError(f"Expected an RGB uint8 array (H, W, 3), got {image.dtype} {image.shape}.", code="bad_image_array")
        return image
    return np.asarray(load_image(image), dtype=np.uint8)  # ImageError for anything that is not an image


def on_white(rgb: np.ndarray, tol: int = 24) -> bool:
    """True for a catalog-style shot: almost all of the outermost pixels are white."""
    ring = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    return float((ring.min(axis=1) >= 255 - tol).mean()) >= WHITE_BORDER_SHARE


# ---- heat maps ---------------------------------------------------------------------------------------
def _small(rgb: np.ndarray, long_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = long_side / max(h, w)
    if s >= 1:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR))


def _cv2():
    """OpenCV, imported when first needed, one thread per call: requests already run in parallel, and
    OpenCV's own pool on top oversubscribes a small CPU (tens of ms for a 96-px colour conversion)."""
    import cv2

    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)
    return cv2


def contrast_map(rgb: np.ndarray, long_side: int = 96, clusters: int = 6) -> np.ndarray:
    """Foreground = colours unlike the photo's border (the border is background). No model; ~2 ms."""
    cv2 = _cv2()
    small = cv2.GaussianBlur(_small(rgb, long_side), (5, 5), 0)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    b = max(2, long_side // 24)
    ring = np.concatenate([lab[:b].reshape(-1, 3), lab[-b:].reshape(-1, 3), lab[:, :b].reshape(-1, 3), lab[:, -b:].reshape(-1, 3)])
    k = min(clusters, len(ring))
    criteria = (cv2.TERM_CRITERIA_MAX_ITER + cv2.TERM_CRITERIA_EPS, 10, 1.0)
    cv2.setRNGSeed(0)
    _, _, centres = cv2.kmeans(ring, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    d = np.sqrt(((lab[:, :, None, :] - centres[None, None]) ** 2).sum(-1)).min(-1)
    ring_d = np.sqrt(((ring[:, None, :] - centres[None]) ** 2).sum(-1)).min(-1)
    # Half-way between the border's own spread and a clear colour difference is the 0.5 level.
    thr = max(12.0, float(np.percentile(ring_d, 95)) * 1.5)
    return np.clip(d / (2 * thr), 0, 1)


def grabcut_map(rgb: np.ndarray, long_side: int = 128, margin: float = 0.03, iterations: int = 3) -> np.ndarray:
    """OpenCV GrabCut started from the frame less a thin margin (the margin is background)."""
    cv2 = _cv2()
    small = np.ascontiguousarray(_small(rgb, long_side)[:, :, ::-1])
    h, w = small.shape[:2]
    mx, my = max(1, int(w * margin)), max(1, int(h * margin))
    mask = np.zeros((h, w), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(small, mask, (mx, my, w - 2 * mx, h - 2 * my), bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    return np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)


# ---- boxes ---------------------------------------------------------------------------------------------
def boxes_from_heat(heat: np.ndarray, size: tuple[int, int], max_items: int = 3, threshold: float = 0.5,
                    min_area: float = 0.01, keep: float = 0.2, centre: float = 0.5) -> list[Box]:
    """Connected regions of the heat map above ``threshold``, as boxes of a ``size`` = (w, h) photo.

    Ranked by heat mass, weighted towards the centre of the frame (a shopper centres what they mean);
    regions under ``keep`` of the best one's score are dropped. None found: the whole frame.
    """
    cv2 = _cv2()

    w, h = size
    s = min(1.0, 96 / max(w, h))
    gw, gh = max(1, round(w * s)), max(1, round(h * s))
    fine = cv2.resize(heat.astype(np.float32), (gw, gh), interpolation=cv2.INTER_LINEAR)
    n, labels, stats, centroids = cv2.connectedComponentsWithStats((fine >= threshold).astype(np.uint8), connectivity=8)
    found = []
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < min_area * gw * gh:
            continue
        mass = float(fine[labels == i].sum())
        off = np.hypot((centroids[i, 0] / gw - 0.5) * 2, (centroids[i, 1] / gh - 0.5) * 2) / np.sqrt(2)
        x, y, bw, bh = stats[i, :4]
        found.append((mass * (1 - centre * off), (x / s, y / s, bw / s, bh / s)))
    if not found:
        return [Box(0, 0, w, h, 0.0)]
    found.sort(key=lambda f: -f[0])
    best = found[0][0]
    out = []
    for score, (x, y, bw, bh) in found:
        if score < keep * best or len(out) == max_items:
            break
        x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
        x1, y1 = min(w, int(round(x + bw))), min(h, int(round(y + bh)))
        out.append(Box(x0, y0, max(1, x1 - x0), max(1, y1 - y0), round(score / best, 4)))
    return out


def locate(image, max_items: int = 3, *, heatmap: Heatmap | None = None, threshold: float = 0.5) -> list[Box]:
    """Boxes of the item(s) in a photo, best first, at most ``max_items`` (always at least one).

    A shot on white (a catalog-style photo) gives its product's tight box. Otherwise the heat map
    (default ``contrast_map``) is thresholded and its regions ranked; see ``boxes_from_heat``.
    """
    if not isinstance(max_items, int) or max_items < 1:
        raise InvalidArgumentError(f"max_items must be a whole number >= 1, got {max_items!r}.", code="bad_option")
    rgb = _rgb(image)
    h, w = rgb.shape[:2]
    if on_white(rgb):
        return [Box(*mask_box(cutout(rgb)), 1.0)]
    return boxes_from_heat((heatmap or contrast_map)(rgb), (w, h), max_items, threshold)


def crop(image, box, pad: float = 0.1, mask: np.ndarray | None = None) -> Image.Image:
    """The box with a margin of ``pad`` x its longer side each way (inside the photo), as an RGB image.

    With ``mask`` (H, W) of the photo, pixels outside it turn white, like the catalog's backdrop.
    """
    im = load_image(image) if not isinstance(image, np.ndarray) else Image.fromarray(_rgb(image))
    x, y, w, h = box.xywh if isinstance(box, Box) else box
    if w <= 0 or h <= 0:
        raise InvalidArgumentError(f"A box needs a positive width and height, got {w}x{h}.", code="bad_option")
    m = pad * max(w, h)
    W, H = im.size
    x0, y0 = max(0, int(x - m)), max(0, int(y - m))
    x1, y1 = min(W, int(np.ceil(x + w + m))), min(H, int(np.ceil(y + h + m)))
    if x1 <= x0 or y1 <= y0:
        raise InvalidArgumentError(f"The box {box} lies outside the {W}x{H} photo.", code="bad_option")
    out = im.crop((x0, y0, x1, y1))
    if mask is not None:
        keep = np.asarray(mask, bool)[y0:y1, x0:x1]
        arr = np.asarray(out).copy()
        arr[~keep] = 255
        out = Image.fromarray(arr)
    return out


def item_crops(image, max_items: int = 1, *, heatmap: Heatmap | None = None, pad: float = 0.1) -> list[tuple[Box, Image.Image]]:
    """The query path in one call: (box, image to embed) per item, best first.

    A shot on white is embedded as it is (the catalog's own framing; its box is still reported);
    any other photo is cut to each located box with a margin of ``pad``.
    """
    im = load_image(image) if not isinstance(image, np.ndarray) else Image.fromarray(_rgb(image))
    rgb = np.asarray(im)
    boxes = locate(rgb, max_items, heatmap=heatmap)
    if on_white(rgb):
        return [(boxes[0], im)]
    return [(b, crop(im, b, pad)) for b in boxes]
