"""Stage 2, cut out: the picture of each item the embedder sees (its box with a margin, or the whole
photo; pixels outside the item's mask turn white, like the catalog's backdrop)."""

from __future__ import annotations

from dataclasses import replace

from ...item.localise import crop
from ..request import Item, Photo


def cut_out(photo: Photo, items: list[Item]) -> list[Item]:
    return [replace(item, image=photo.image if item.pad is None else crop(photo.image, item.region, pad=item.pad,
                                                                           mask=item.mask))
            for item in items]
