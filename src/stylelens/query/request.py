"""The values a query is made of: the decoded ``Photo``, the shopper's ``SearchRequest``, and one located ``Item``.

A photo is decoded once (``Photo.decode``); every stage after that reads its pixels, never the file.
A request is checked when it is made (``SearchRequest.make``), before any pixel is decoded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..intake.images import content_hash, load_image, read_bytes
from .diversity import pool_size
from .filters import Filters
from .identify import Identification
from .options import OPTIONS, parse_box  # noqa: F401  (parse_box: the box row's check)


@dataclass(frozen=True)
class Photo:
    """A shopper's photo decoded for the network (no more pixels than needed), the sha256 of its bytes
    (None for a PIL image), and how many of its original pixels one decoded pixel spans (boxes are given
    and answered in original pixels)."""

    image: Image.Image
    sha256: str | None = None
    scale: float = 1.0

    @classmethod
    def decode(cls, source, *, max_pixels: int | None = None, target=None) -> "Photo":
        if isinstance(source, Photo):
            return source
        if isinstance(source, Image.Image):
            return cls(load_image(source))  # the one RGB conversion (transparency on white, as the catalog's)
        if isinstance(source, (str, Path)):
            source = read_bytes(source)
        sha = content_hash(source)
        # JPEG draft, reduce on load: at least twice the network input each way, to crop items from.
        image = load_image(source, max_pixels=max_pixels, target=target)
        return cls(image, sha, max(_header_size(source) or image.size) / max(image.size))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in the original photo's pixels."""
        return round(self.image.width * self.scale), round(self.image.height * self.scale)

    @property
    def pixels(self) -> np.ndarray:
        """(H, W, 3) uint8 view of the decoded pixels (no copy, no second decode)."""
        return np.asarray(self.image)


@dataclass(frozen=True)
class Item:
    """One thing in the photo to search for. ``locate`` makes it, each later stage fills in its part.

    ``box`` is in the original photo's pixels (what the shopper is shown); ``region`` in the decoded
    photo's, with ``pad`` the margin cut around it (None: the whole photo as it is, a shot on white).
    ``mask`` (decoded pixels), ``group`` ("top", "shoes"...) and ``types`` (catalog types to search within)
    are for locators that know them (a garment parser); None keeps today's search over every type.
    ``identified`` may come from a type model instead of the neighbours' vote (left None, the vote names it).
    """

    box: tuple[int, int, int, int]
    region: tuple[float, float, float, float] | None = None
    pad: float | None = 0.1
    score: float = 1.0
    mask: np.ndarray | None = None
    group: str | None = None
    types: frozenset[str] | None = None
    image: Image.Image | None = None  # the cut-out the embedder sees
    raw: np.ndarray | None = None  # its backbone vector
    vector: np.ndarray | None = None  # its vector in the space searched
    colour_vector: np.ndarray | None = None  # its vector in the colour vote's space, where that is another one
    identified: Identification | None = None
    outline: list | None = None  # the item's outline for the page: polygons of [x, y] in the original photo's pixels


@dataclass(frozen=True)
class SearchRequest:
    """What the shopper asked for, checked. ``exclude_rows``: catalog rows never shown (the product itself
    in 'more like this'); ``exact_first``: a catalog product's own photo comes first, marked ``exact_match``."""

    k: int
    filters: Filters = field(default_factory=Filters)
    user: str | None = None
    diversity: float | None = None
    collapse: bool = False
    box: tuple[int, int, int, int] | None = None
    exact_first: bool = False
    exclude_rows: tuple[int, ...] = ()
    identify: bool = True

    @classmethod
    def make(cls, default_k: int, k=None, *, box=None, user=None, diversity=None, collapse=None, filters=None,
             exact_first: bool = False, exclude_rows=(), identify: bool = True, **filter_values) -> "SearchRequest":
        """From the options as the library's callers give them, each checked by its row of ``options.OPTIONS``
        (a filter value by ``Filters.mask``, against the catalog's own values)."""
        given = {"k": k, "user": user, "diversity": diversity, "collapse": collapse, "box": box}
        checked = {name: OPTIONS[name].check(value) for name, value in given.items() if value is not None}
        return cls(k=checked.pop("k", default_k), filters=filters if filters is not None else Filters(**filter_values),
                   collapse=checked.pop("collapse", False), **checked, exact_first=exact_first,
                   exclude_rows=tuple(int(r) for r in exclude_rows), identify=identify)

    @property
    def pool(self) -> int:
        """Candidates ranked to serve k: room for the type boost, collapsing and MMR to choose from."""
        return max(pool_size(self.k, self.diversity, self.collapse), 4 * self.k)


def _header_size(data: bytes) -> tuple[int, int] | None:
    """The photo's size from its header alone (no decoding); None when the header does not say."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:  # the decoder proper reports a bad file, with its own typed error
        return None
