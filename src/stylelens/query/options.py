"""The search options, declared once: name, how text becomes a value, and what it does.

This table makes the CLI's flags (``cli.core``), the HTTP form and query fields with their docs
(``service``), the fields of ``Filters`` and of ``SearchRequest``. A new option is one row here (and its
use in a stage).

``kind`` says where an option goes: ``count`` (k), ``filter`` (a ``Filters`` field: which products may be
shown), ``ranking`` (how they are ordered: a shopper, diversity, collapse) or ``photo`` (a region of an
uploaded photo; a catalog product's own picture has none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import InvalidArgumentError
from ..settings import parse_bool


def text(name: str, value) -> str:
    return str(value)


def number(name: str, value) -> float:
    """A finite number (a price)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be a number, got {value!r}.", code="bad_filter") from None
    if not math.isfinite(out):
        raise InvalidArgumentError(f"{name} must be a finite number, got {value!r}.", code="bad_filter")
    return out


def whole(name: str, value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be a whole number, got {value!r}.", code="bad_filter") from None


def yes_no(name: str, value) -> bool:
    return parse_bool(name, value)


def checked_later(name: str, value):
    """Passed on as given: the library checks it (``SearchRequest``) before any work, with its own message."""
    return value


@dataclass(frozen=True)
class Option:
    name: str
    kind: str  # count | filter | ranking | photo
    parse: Callable[[str, Any], Any]  # text from a form or query string -> the value the library takes
    doc: str
    cli_type: Callable | None = str  # argparse's type; None: a yes/no switch (--name)
    metavar: str | None = None
    aliases: tuple[str, ...] = ()  # other spellings accepted (HTTP field, CLI flag)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: dict[str, Option] = {o.name: o for o in (
    Option("k", "count", whole, "How many products to return (1-1000, default from the 'k' setting).", int),
    Option("gender", "filter", text, "Only this gender (comma-separated for several); values from /api/facets."),
    Option("type", "filter", text, "Only this product type, e.g. Tshirts (comma-separated for several)."),
    Option("colour", "filter", text, "Only this colour (comma-separated for several). 'color' is accepted too.",
           aliases=("color",)),
    Option("min_price", "filter", number, "Lowest price.", float),
    Option("max_price", "filter", number, "Highest price.", float),
    Option("include_out_of_stock", "filter", yes_no,
           "Also return products that are out of stock (yes/no; default no).", None),
    Option("user", "ranking", text, "Shopper id, for personalised ranking (their likes and dislikes)."),
    Option("diversity", "ranking", checked_later, "0..1: trade similarity for variety (MMR); 0 = plain ranking.",
           float, metavar="0..1"),
    Option("collapse", "ranking", checked_later,
           "Show one product per near-duplicate group, with how many were folded in.", None),
    Option("box", "photo", checked_later,
           "x,y,w,h in the photo's pixels: search this region only (photo searches), e.g. 120,40,300,420.",
           metavar="X,Y,W,H"),
)}
ALIASES = {alias: o.name for o in OPTIONS.values() for alias in o.aliases}
FILTER_FIELDS = tuple(name for name, o in OPTIONS.items() if o.kind == "filter")
LABEL_FILTERS = ("gender", "type", "colour")  # the filters on a label column (the others are prices and stock)


def names(*kinds: str) -> tuple[str, ...]:
    return tuple(name for name, o in OPTIONS.items() if o.kind in kinds)
