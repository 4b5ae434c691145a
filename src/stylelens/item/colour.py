"""The item's colour, not the background's: a Lab histogram of the item's own pixels.

The frozen backbone's max-pooled features carry shape and texture far better than colour (colour
P@10 0.30 on held-out fashion-small products). The tuned head (``stylelens tune``) reads this
descriptor beside the backbone vector, so the space it learns can rank and name colour.

Which pixels are the item: in a shot on white, the flood-fill cut-out (``composite.cutout``); in any
other crop (a located item with a margin), a centre-weighted window, since the located box is tight
around the item and the margin is where background shows.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .composite import cutout
from ..intake.images import load_image
from .localise import on_white

L_BINS, AB_BINS = 4, 8
DIM = L_BINS * AB_BINS * AB_BINS  # 256
LONG_SIDE = 96  # pixels looked at: colour needs few, and the descriptor runs on every query


def colour_descriptor(image) -> np.ndarray:
    """(256,) float32: square roots of the item's joint Lab histogram (4 L x 8 a x 8 b bins), unit L2 norm."""
    import cv2

    im = image if isinstance(image, Image.Image) else load_image(image)
    im = im.convert("RGB")
    if max(im.size) > LONG_SIDE:
        s = LONG_SIDE / max(im.size)
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.BILINEAR)
    rgb = np.asarray(im, dtype=np.uint8)
    if on_white(rgb):
        weight = cutout(rgb).astype(np.float64)
    else:
        h, w = rgb.shape[:2]
        y, x = np.mgrid[0:h, 0:w]
        weight = np.exp(-(((x + 0.5) / w - 0.5) ** 2 + ((y + 0.5) / h - 0.5) ** 2) / (2 * 0.25 ** 2))
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.int64)
    bins = (lab[:, 0] * L_BINS // 256) * AB_BINS * AB_BINS + (lab[:, 1] * AB_BINS // 256) * AB_BINS + lab[:, 2] * AB_BINS // 256
    hist = np.bincount(bins, weights=weight.reshape(-1), minlength=DIM)
    hist = np.sqrt(hist / max(hist.sum(), 1e-12))
    return (hist / max(np.linalg.norm(hist), 1e-12)).astype(np.float32)


def colour_descriptors(images) -> np.ndarray:
    """(n, 256) descriptors of several images (paths, bytes, PIL images or RGB arrays)."""
    out = np.zeros((len(images), DIM), np.float32)
    for i, image in enumerate(images):
        out[i] = colour_descriptor(Image.fromarray(image) if isinstance(image, np.ndarray) else image)
    return out
