"""The garment parser: which pixels of a photo are which garment (top, outerwear, dress, bottom, shoes, bag),
the wearer's body, or background.

A light decoder over the frozen backbone's feature maps at strides 8, 16 and 32 (``BackboneMaps``, the
same letterboxed input the embedder sees): each map is normalised and projected by a 1x1 conv; strides
16 and 32 are mixed by 3x3 convs at stride 16, the stride-8 map added, and a 3x3 conv gives per-pixel
class scores on the stride-8 grid, upsampled to the photo.
It was trained on the street-ccp photos' pixel masks (train part only) and on catalog shots whose
masks come free from their white backdrop (``scripts/train_parser.py``; data, licence and hash in the
weights' JSON beside them).

    parser = GarmentParser.load()
    for g in parser.parse(rgb):           # largest / most central first; a pair of shoes is one item
        g.group, g.box, g.area_share, g.mask

``analyse(rgb)`` also says whether a person wears the garments (``person_present``) or one garment fills
the frame (``one_garment``), which is when a query should search the photo as it is.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import WeightsError

CLASSES = ("background", "body", "top", "outerwear", "dress", "bottom", "shoes", "bag")
GARMENTS = CLASSES[2:]
STRIDES = (8, 16, 32)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "parser.npz"

MIN_SHARE = 0.004  # a group with fewer of the photo's pixels is noise (the smallest worn shoes: ~0.01)
MIN_PART = 0.15  # a component under this share of its group's largest one is a stray fragment
PERSON_BODY_SHARE = 0.02  # skin and hair above this share of the photo: a person wears the garments
# The largest garment holds this much of all garment pixels: one garment. Chosen on real-items' train part
# (0.8 called 36 % of its single garments "one garment", 0.6 64 %; a lone garment is often read with a
# stray second group, e.g. a t-shirt's hem as a bottom).
ONE_GARMENT_SHARE = 0.6
UPPER = ("top", "outerwear", "dress")  # what the parser confuses on a garment nobody wears


@dataclass(frozen=True)
class Garment:
    group: str
    mask: np.ndarray  # (H, W) bool, the photo's size
    box: tuple[int, int, int, int]  # x, y, w, h of the mask's pixels
    area_share: float  # mask pixels / photo pixels
    score: float  # mean confidence of the mask's pixels, 0..1

    @property
    def xywh(self) -> tuple[int, int, int, int]:
        return self.box


@dataclass(frozen=True)
class Parsing:
    garments: list[Garment]
    labels: np.ndarray  # (H, W) uint8, index into CLASSES
    body_share: float

    @property
    def person_present(self) -> bool:
        return self.body_share >= PERSON_BODY_SHARE

    @property
    def one_garment(self) -> bool:
        """No one wears it and one garment holds most garment pixels: search the photo as it is."""
        if self.person_present or not self.garments:
            return False
        total = sum(g.area_share for g in self.garments)
        return self.garments[0].area_share >= ONE_GARMENT_SHARE * total

    @property
    def region(self) -> tuple[int, int, int, int] | None:
        """x, y, w, h around every garment's pixels (None when there are none)."""
        if not self.garments:
            return None
        x0 = min(g.box[0] for g in self.garments)
        y0 = min(g.box[1] for g in self.garments)
        x1 = max(g.box[0] + g.box[2] for g in self.garments)
        y1 = max(g.box[1] + g.box[3] for g in self.garments)
        return (x0, y0, x1 - x0, y1 - y0)


def build_decoder(in_channels, dim: int = 48, classes: int = len(CLASSES), pool: bool = False):
    """The torch decoder (training and query share it): maps at strides 8/16/32 -> logits at stride 8.

    The context (strides 16 and 32) is mixed by two 3x3 convs at stride 16, where it is 4x cheaper; the
    stride-8 map adds the edges, and one 3x3 conv there gives the classes. ``pool``: the stride-32 map's
    mean over the whole photo is added to the context too (the outfit as a whole: a coat over a top, a dress
    rather than a top and a skirt).
    """
    import torch
    import torch.nn.functional as F

    def up(z, size):
        return z if z.shape[-2:] == size else F.interpolate(z, size=size, mode="bilinear", align_corners=False)

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.ModuleList(torch.nn.Conv2d(c, dim, 1) for c in in_channels)
            for i, c in enumerate(in_channels):
                self.register_buffer(f"mean{i}", torch.zeros(1, c, 1, 1))
                self.register_buffer(f"std{i}", torch.ones(1, c, 1, 1))
            self.drop = torch.nn.Dropout2d(0.1)
            self.pool = torch.nn.Conv2d(dim, dim, 1) if pool else None
            self.context = torch.nn.Sequential(
                torch.nn.ReLU(), torch.nn.Conv2d(dim, dim, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(dim, dim, 3, padding=1))
            self.fine = torch.nn.Sequential(
                torch.nn.ReLU(), torch.nn.Conv2d(dim, dim // 3, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(dim // 3, classes, 1))

        def forward(self, f8, f16, f32):
            z = [proj(self.drop((m - getattr(self, f"mean{i}")) / getattr(self, f"std{i}")))
                 for i, (m, proj) in enumerate(zip((f8, f16, f32), self.proj))]
            mix = z[1] + up(z[2], z[1].shape[-2:])
            if self.pool is not None:
                mix = mix + self.pool(torch.relu(z[2]).mean(dim=(2, 3), keepdim=True))
            ctx = self.context(mix)
            return self.fine(z[0] + up(ctx, z[0].shape[-2:]))

    return Decoder()


def weights_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class GarmentParser:
    """``parse(rgb) -> [Garment]``: the backbone's maps (``BackboneMaps``) -> the decoder -> one item per group."""

    def __init__(self, maps, decoder, meta: dict):
        self.maps = maps
        self.decoder = decoder.eval()
        self.meta = meta

    @classmethod
    def load(cls, path=None, embedder=None, runtime: str = "auto", precision: str = "f32") -> "GarmentParser":
        """The shipped weights (or ``path``) over ``embedder`` (default: the backbone they were trained on).

        ``precision`` is the OpenVINO maps' precision: "f32" as trained; "bf16" measured as good on 80 street
        photos and ~20 % faster (scripts/measure_parser.py)."""
        import torch

        from .localiser import BackboneMaps

        path = Path(path or DEFAULT_WEIGHTS)
        meta_path = path.with_suffix(".json")
        redo = "Rebuild them with scripts/train_parser.py."
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("sha256") and meta["sha256"] != weights_sha256(path):
                raise WeightsError(f"The garment parser's weights {path} do not match the hash in {meta_path.name}. {redo}")
            with np.load(path, allow_pickle=False) as data:
                params = {k: torch.from_numpy(np.asarray(data[k], np.float32)) for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise WeightsError(f"Could not read the garment parser's weights {path} ({type(exc).__name__}). {redo}") from exc
        try:
            decoder = build_decoder(meta["in_channels"], meta["dim"], len(meta["classes"]), pool=meta.get("pool", False))
            decoder.load_state_dict(params)
        except (KeyError, RuntimeError, TypeError) as exc:
            raise WeightsError(f"The garment parser's weights {path} do not fit its decoder ({type(exc).__name__}). {redo}") from exc
        if embedder is None:
            from .embedder import Embedder

            embedder = Embedder(meta["backbone"], runtime="torch", batch_size=1)
        elif embedder.settings.backbone != meta["backbone"]:
            raise WeightsError(f"The garment parser was trained on {meta['backbone']}, not {embedder.settings.backbone}. {redo}")
        maps = BackboneMaps(embedder, size=meta["input_size"], runtime=runtime, strides=tuple(meta["strides"]), precision=precision)
        return cls(maps, decoder, meta)

    def logits(self, fmaps) -> np.ndarray:
        """(K, h, w) class scores on the stride-8 grid of the photo's part of the letterbox."""
        import torch

        threads = torch.get_num_threads()
        # One thread: the decoder's maps are small (a 48x32 grid), and torch's threads cost more than they give
        # (2.2 ms a photo on one thread against 19 ms on two on a quiet 2-core AMD EPYC, 57 ms on a busy one).
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                return self.decoder(*[torch.from_numpy(np.ascontiguousarray(m, np.float32))[None] for m in fmaps])[0].numpy()
        finally:
            torch.set_num_threads(threads)

    def analyse(self, rgb: np.ndarray) -> Parsing:
        return parse_logits(self.logits(self.maps(rgb)), rgb.shape[:2], tuple(self.meta["classes"]))

    def parse(self, rgb: np.ndarray) -> list[Garment]:
        return self.analyse(rgb).garments

    __call__ = parse


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=0, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=0, keepdims=True)


def _best_class(scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``argmax`` and ``max`` over a list of (h, w) class maps (ties: the first class), one pass of whole-map
    comparisons: 6x faster than ``argmax(axis=0)`` over the stacked maps, whose reduction strides across them."""
    best = scores[0].copy()
    labels = np.zeros(best.shape, np.uint8)
    for k, p in enumerate(scores[1:], 1):
        better = p > best
        labels[better] = k
        np.maximum(best, p, out=best)
    return labels, best


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """x, y, w, h of a non-empty (H, W) bool mask's pixels (from its rows and columns: no list of every pixel)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))


def parse_logits(logits: np.ndarray, shape: tuple[int, int], classes=CLASSES, centre: float = 0.5) -> Parsing:
    """Class scores (K, h, w) over a photo of ``shape`` = (H, W) -> its garments, one per group.

    The scores are upsampled to the photo, each pixel takes its best class; a group's stray fragments
    (under ``MIN_PART`` of its largest component) are dropped and the rest merged (a pair of shoes is one
    item); groups under ``MIN_SHARE`` of the photo are dropped. Order: area weighted towards the centre.
    """
    import cv2

    H, W = shape
    prob = _softmax(logits.astype(np.float32))
    # Upsample the probabilities at up to 256 px (masks are then resized): the grid is stride 8 anyway.
    s = min(1.0, 256 / max(H, W))
    h, w = max(1, round(H * s)), max(1, round(W * s))
    labels, conf = _best_class([cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) for p in prob])
    found = []
    for k, name in enumerate(classes):
        if name not in GARMENTS:
            continue
        sel = labels == k
        if sel.sum() < MIN_SHARE * h * w:
            continue
        n, comp, stats, _ = cv2.connectedComponentsWithStats(sel.astype(np.uint8), connectivity=8)
        areas = stats[1:, cv2.CC_STAT_AREA]
        kept = np.concatenate([[False], areas >= MIN_PART * areas.max()])
        if not kept[1:].all():  # else every component is kept: ``sel`` as it is
            sel = kept[comp]
        if sel.sum() < MIN_SHARE * h * w:
            continue
        found.append((name, sel, float(conf[sel].mean())))
    full_labels = cv2.resize(labels, (W, H), interpolation=cv2.INTER_NEAREST)
    garments = []
    for name, sel, score in found:
        mask = cv2.resize(sel.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST).astype(bool)
        if not mask.any():
            continue
        garments.append(Garment(name, mask, mask_box(mask), np.count_nonzero(mask) / mask.size, round(score, 4)))

    def rank(g: Garment) -> float:
        x, y, bw, bh = g.box
        off = np.hypot((x + bw / 2) / W - 0.5, (y + bh / 2) / H - 0.5) * 2 / np.sqrt(2)
        return g.area_share * (1 - centre * off)

    body = classes.index("body") if "body" in classes else None
    body_share = float((labels == body).mean()) if body is not None else 0.0
    if body_share < PERSON_BODY_SHARE:
        garments = _merge_families(garments)
    garments.sort(key=lambda g: -rank(g))
    return Parsing(garments, full_labels, body_share)


def _merge_families(garments: list[Garment]) -> list[Garment]:
    """With no one wearing them, a top, outerwear and dress are one garment read in parts (a shirt lying
    flat is not worn layers): one item, named by its largest part."""
    parts = [g for g in garments if g.group in UPPER]
    if len(parts) < 2:
        return garments
    mask = np.logical_or.reduce([g.mask for g in parts])
    box = mask_box(mask)
    big = max(parts, key=lambda g: g.area_share)
    score = sum(g.score * g.area_share for g in parts) / sum(g.area_share for g in parts)
    return [Garment(big.group, mask, box, float(mask.mean()), round(score, 4))] + [g for g in garments if g.group not in UPPER]
