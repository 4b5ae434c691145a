"""Stage 1, locate: which items of the photo to search, main item first (at least one).

Today: the region the shopper boxed, else the whole photo (setting ``localise`` off), else the boxes
``item.localise`` finds (a shot on white: its product, embedded as it is). A garment parser would return
one ``Item`` per worn garment with its mask, group and the catalog types to search it within.
"""

from __future__ import annotations

from ...errors import InvalidArgumentError
from ...item import localise
from ..request import Item, Photo


def locate(photo: Photo, box=None, *, localise_items: bool = True, max_items: int = 3) -> list[Item]:
    width, height = photo.size
    if box is not None:
        x, y, w, h = (v / photo.scale for v in box)
        if x >= photo.image.width or y >= photo.image.height or x + w <= 0 or y + h <= 0:
            raise InvalidArgumentError(f"The box {','.join(map(str, box))} lies outside the {width}x{height} photo. "
                                       "Give x,y,w,h in the photo's pixels.", code="bad_box")
        return [Item(box=tuple(box), region=(x, y, w, h), pad=0.0)]
    if not localise_items:
        return [Item(box=(0, 0, width, height), pad=None)]
    rgb = photo.pixels
    found = localise.locate(rgb, max_items)
    # A shot on white is the catalog's own framing: embedded whole (pad None), its product's box reported.
    pad = None if localise.on_white(rgb) else 0.1
    return [Item(box=tuple(round(v * photo.scale) for v in b.xywh), region=b.xywh, pad=pad, score=b.score)
            for b in (found[:1] if pad is None else found)]
