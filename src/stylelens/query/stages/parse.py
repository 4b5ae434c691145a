"""Stage 1 with a garment parser: which items of the photo to search, main item first (shop the look).

The parser (``models.parser.GarmentParser``, run once on the decoded pixels) reads each pixel as a garment
group, the wearer's body or background. Then:

- a box the shopper drew, setting ``localise`` off, or a shot on white: today's ``locate`` (the box, the
  whole frame, the catalog's own framing);
- a **person** wearing an outfit (no garment's pixels over a fifth of the frame, no two garments' boxes over a
  fifth each): one item per worn garment (top, outerwear, dress, bottom, shoes, bag), its
  box (a coat or a dress: its mask cut out on white), searched within its group's catalog types
  (``item.groups``), largest / most central first, up to ``max_items``;
- **one garment**, or nobody: the whole frame as it is (the parser mistakes a bed or a floor for garments
  beside a lone one), unless every separate part of the garment pixels is much smaller than the frame: then
  each part is an item (a flat lay of a top and jeans, products on a backdrop, a small item on a table).
"""

from __future__ import annotations

import threading

import numpy as np

from ...item import localise
from ...item.groups import GROUP_TYPES
from ..request import Item, Photo
from .locate import locate

PAD = 0.05  # margin around a worn garment's box
# Groups cut out on white (their mask); the others are searched as their box with a margin. Measured on 150
# street measure photos (bench/shop_the_look.py): the mask wins for outerwear (type P@5 0.68 against 0.39: a
# coat's box holds the top beneath it) and ties for dresses; a top's visible part under a coat, a bottom or a
# shoe search better with their context (tops 0.33 against 0.16, bottoms 0.30 against 0.21).
MASKED = frozenset({"outerwear", "dress"})
# A person in view wearing an outfit: no one garment holds this share of the frame. Closer, it is one garment
# worn or held up to the camera (real-items' photos the parser reads as worn have their largest garment at
# 0.2-0.5 of the frame, street-ccp's outfits under 0.2), searched as a lone garment is: whole.
OUTFIT_MAX_SHARE = 0.2
# ... and no two garments' boxes each hold this share of the frame (the second-largest box under it): closer than
# that, it is one garment (worn, held up, or on feet) that the parser read in parts of several groups. Whether the
# photo is an outfit at all; not stages.order.WHOLE_OUTFIT_MAX_LARGEST_BOX, which takes an outfit (past this test)
# as seen whole, so its main item may be reordered, by its largest box. Chosen on the train parts (issue 23): the
# second-largest box of real-items' photos that took the outfit path is median 0.31 of the frame, street-ccp's
# outfits' 0.09 (90 % under 0.14); over 0.2 sends 25 of 31 such real-items photos and 3 of 585 street photos
# whole. Measure parts: 16 of 19 and 2 of 388; real-items type P@5 0.867 -> see docs/shop-the-look.md.
OUTFIT_MAX_SECOND_BOX = 0.2
# Nobody wearing them: the garment pixels' separate parts (a part: pixels that touch, and parts nearer each other
# than GAP of the smaller one's longer side, e.g. a pair of shoes), parts under MIN_PART of the largest or
# MIN_ITEM of the frame dropped. Several parts each boxed in under PARTS_MAX of the frame are an item each (a
# flat lay of a top and jeans); one part under LONE_MAX is cut out (a small item on a table); otherwise one
# garment fills the frame and is searched as it is. First chosen on composites (issue 23: multi-2 type P@5 0.163
# -> 0.575, multi-3 0.070 -> 0.595, small-offcentre 0.472 -> 0.590), then made stricter on real photos, which
# it must never answer worse than the whole frame: real-items' lone garments cut out at 0.3-0.5 of the frame
# gained on the whole catalog (+0.087 on 46 photos) but lost on a 3,000-product one (-0.034 on 48), so not
# robustly; at 0.3-0.4 they tied on both. A second part under 0.15 of the first was a fold or a tag (4 photos,
# -0.25). Now 5 of 1,227 real-items measure photos are cut (the rest whole); composites within 0.01 but
# distractors (0.276 -> 0.242).
PARTS_MAX = 0.6
LONE_MAX = 0.3
GAP = 0.25
MIN_PART = 0.15
MIN_ITEM = 0.005
OUTLINE_POINTS = 24  # at most this many corners per outline polygon (the page draws it; the JSON stays small)


def parse(photo: Photo, box=None, *, localise_items: bool = True, max_items: int = 6, parser,
          lock: threading.Lock | None = None, masked: bool = True) -> list[Item]:
    """``parser``: ``analyse(rgb) -> Parsing``; ``lock``: held around it (one model, concurrent callers);
    ``masked``: cut the ``MASKED`` groups out on white (False: every garment as its box with a margin)."""
    rgb = photo.pixels
    if box is not None or not localise_items or localise.on_white(rgb):
        return locate(photo, box, localise_items=localise_items, max_items=max_items)
    if lock is None:
        parsing = parser.analyse(rgb)
    else:
        with lock:
            parsing = parser.analyse(rgb)
    worn = [g for g in parsing.garments if g.group in GROUP_TYPES]
    if parsing.person_present and worn and max(g.area_share for g in worn) < OUTFIT_MAX_SHARE \
            and _second_box_share(worn, rgb.shape[:2]) < OUTFIT_MAX_SECOND_BOX:
        return [Item(box=_original(g.box, photo.scale), region=g.box, pad=PAD, score=g.score,
                     mask=g.mask if masked and g.group in MASKED else None, group=g.group, types=GROUP_TYPES[g.group],
                     outline=outline(g.mask, photo.scale))
                for g in worn[:max_items]]
    return unworn(photo, parsing, max_items)


def _second_box_share(garments, shape) -> float:
    """The share of the frame the second-largest garment's box holds (0 with one garment)."""
    height, width = shape
    shares = sorted((localise.frame_share(g.box, (width, height)) for g in garments), reverse=True)
    return shares[1] if len(shares) > 1 else 0.0


def unworn(photo: Photo, parsing, max_items: int) -> list[Item]:
    """One garment, or nobody wearing them (a flat lay, products on a backdrop): which items to search."""
    height, width = photo.pixels.shape[:2]
    parts = [] if parsing.person_present else separate_items(parsing, (height, width))
    most = PARTS_MAX if len(parts) >= 2 else LONE_MAX
    if parts and all(w * h < most * width * height for _, _, w, h in parts):
        return [Item(box=_original(p, photo.scale), region=p, pad=0.1, score=_score(parsing, p)) for p in parts[:max_items]]
    return [Item(box=photo_box(photo), pad=None)]


def separate_items(parsing, shape) -> list[tuple[int, int, int, int]]:
    """x, y, w, h of each separate item the parser's garment pixels make (a garment read as a top and a bag
    is one item: its pixels touch), main (largest, most central) first."""
    import cv2

    height, width = shape
    if not parsing.garments:
        return []
    union = np.logical_or.reduce([g.mask for g in parsing.garments]).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(union, connectivity=8)
    parts = [list(map(int, s)) for s in stats[1:] if s[4] >= MIN_ITEM * width * height]
    if not parts:
        return []
    largest = max(p[4] for p in parts)
    parts = [p for p in parts if p[4] >= MIN_PART * largest]
    merged = True
    while merged:  # near parts are one item (a pair of shoes), until no two are near
        merged = False
        for i, j in ((i, j) for i in range(len(parts)) for j in range(i + 1, len(parts))):
            a, b = parts[i], parts[j]
            gap = max(b[0] - a[0] - a[2], a[0] - b[0] - b[2], b[1] - a[1] - a[3], a[1] - b[1] - b[3], 0)
            if gap < GAP * min(max(a[2], a[3]), max(b[2], b[3])):
                x0, y0 = min(a[0], b[0]), min(a[1], b[1])
                x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
                parts[i] = [x0, y0, x1 - x0, y1 - y0, a[4] + b[4]]
                del parts[j]
                merged = True
                break

    def rank(p):  # as the parser ranks garments: area, weighted towards the centre
        off = np.hypot((p[0] + p[2] / 2) / width - 0.5, (p[1] + p[3] / 2) / height - 0.5) * 2 / np.sqrt(2)
        return -p[4] * (1 - 0.5 * off)

    return [tuple(p[:4]) for p in sorted(parts, key=rank)]


def _score(parsing, part) -> float:
    """The parser's confidence in a part: its best garment's whose box meets the part's."""
    x, y, w, h = part
    meets = [g.score for g in parsing.garments
             if g.box[0] < x + w and x < g.box[0] + g.box[2] and g.box[1] < y + h and y < g.box[1] + g.box[3]]
    return max(meets, default=1.0)


def photo_box(photo: Photo) -> tuple[int, int, int, int]:
    width, height = photo.size
    return (0, 0, width, height)


def _original(box, scale: float) -> tuple[int, int, int, int]:
    return tuple(round(v * scale) for v in box)


def outline(mask: np.ndarray, scale: float = 1.0, max_points: int = OUTLINE_POINTS) -> list[list[list[int]]]:
    """A garment's mask as a few simplified polygons in the original photo's pixels (a pair of shoes: two)."""
    import cv2

    contours, _ = cv2.findContours(np.ascontiguousarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    largest = max(cv2.contourArea(c) for c in contours)
    polygons = []
    for c in sorted(contours, key=cv2.contourArea, reverse=True):
        if cv2.contourArea(c) < 0.15 * largest or len(polygons) == 4:
            break
        eps = 0.01 * cv2.arcLength(c, True)
        poly = cv2.approxPolyDP(c, eps, True)
        while len(poly) > max_points:
            eps *= 1.5
            poly = cv2.approxPolyDP(c, eps, True)
        if len(poly) >= 3:
            polygons.append([[round(float(x) * scale), round(float(y) * scale)] for x, y in poly[:, 0]])
    return polygons
