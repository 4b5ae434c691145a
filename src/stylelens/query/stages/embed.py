"""Stage 3, embed: where pixels become vectors. Every item's cut-out in one batch through the backbone
(``models.Embedder``: its raw unit vector), then into the space searched (the raw vector as it is, or the
tuned head's projection with the item's colour; ``colour``, a colour filter, asks for that colour instead)."""

from __future__ import annotations

from dataclasses import replace

from ..request import Item
from ..space import RawSpace


def embed(items: list[Item], embedder, space: RawSpace, colour: str | None = None) -> list[Item]:
    images = [item.image for item in items]
    raw = embedder.embed(images)
    vectors = space.query(raw, images, colour=colour)
    return [replace(item, raw=r, vector=v) for item, r, v in zip(items, raw, vectors)]
