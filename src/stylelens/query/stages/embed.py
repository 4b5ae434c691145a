"""Stage 3, embed: where pixels become vectors. Every item's cut-out in one batch through the backbone
(``models.Embedder``: its raw unit vector), then into the space searched (the raw vector as it is, or the
tuned head's projection with the item's colour; ``colour``, a colour filter, asks for that colour instead)."""

from __future__ import annotations

from dataclasses import replace

from ..request import Item
from ..space import RawSpace


def embed(items: list[Item], embedder, space: RawSpace, colour: str | None = None,
          colour_space: RawSpace | None = None) -> list[Item]:
    """``colour_space``: the colour vote's space where it is another one (``query.space.ASPECTS``)."""
    images = [item.image for item in items]
    raw = embedder.embed(images)
    vectors = space.query(raw, images, colour=colour)
    colours = colour_space.query(raw, images) if colour_space is not None else [None] * len(items)
    return [replace(item, raw=r, vector=v, colour_vector=c) for item, r, v, c in zip(items, raw, vectors, colours)]
