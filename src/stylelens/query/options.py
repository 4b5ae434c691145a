"""The search options, declared once: name, how text becomes a value, how the value is checked, what it does.

This table makes the CLI's flags (``cli.options.add_search_flags``), the HTTP form and query fields with
their docs (``service``), the fields of ``Filters`` and the checks of ``SearchRequest.make`` (a test keeps
``SearchRequest``'s fields and the table together). A new option is one row here, a field of
``SearchRequest`` and its use in a stage.

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
    """Passed on as given: the library checks it (``SearchRequest.make``, the row's ``check``) before any work."""
    return value


def as_given(value):
    """No check here: a filter value is checked against the catalog's own values (``Filters.mask``)."""
    return value


def check_k(k) -> int:
    try:
        k = int(k)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"k must be a whole number, got {k!r}.") from None
    if not 1 <= k <= 1000:
        raise InvalidArgumentError(f"k must be between 1 and 1000, got {k}.")
    return k


def check_diversity(value) -> float | None:
    if value is None or value == "":
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"diversity must be a number from 0 to 1, got {value!r}.") from None
    if not 0.0 <= value <= 1.0:
        raise InvalidArgumentError(f"diversity must be from 0 (plain ranking) to 1 (most varied), got {value}.")
    return value


def check_collapse(value) -> bool:
    return False if value is None or value == "" else parse_bool("collapse", value)


def parse_box(box) -> tuple[int, int, int, int]:
    """(x, y, w, h) from a sequence or "x,y,w,h": whole pixels, positive width and height."""
    parts = box.split(",") if isinstance(box, str) else list(box)
    try:
        values = tuple(int(round(float(v))) for v in parts)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 4 or values[2] <= 0 or values[3] <= 0 or values[0] < 0 or values[1] < 0:
        raise InvalidArgumentError(f"box must be x,y,w,h: four whole numbers, x and y from 0, w and h above 0; got {box!r}.",
                                   code="bad_box")
    return values




@dataclass(frozen=True)
class Option:
    name: str
    kind: str  # count | filter | ranking | photo
    parse: Callable[[str, Any], Any]  # text from a form or query string -> the value the library takes
    doc: str
    cli_type: Callable | None = str  # argparse's type; None: a yes/no switch (--name)
    metavar: str | None = None
    aliases: tuple[str, ...] = ()  # other spellings accepted (HTTP field, CLI flag)
    check: Callable[[Any], Any] = as_given  # a value given to the library -> the checked value SearchRequest keeps

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: dict[str, Option] = {o.name: o for o in (
    Option("k", "count", whole, "How many products to return (1-1000, default from the 'k' setting).", int, check=check_k),
    Option("gender", "filter", text, "Only this gender, e.g. Women or female (comma-separated for several); "
                                     "values from /api/facets."),
    Option("type", "filter", text, "Only this product type, e.g. Tshirts, tee or sneakers (comma-separated for several)."),
    Option("colour", "filter", text, "Only this colour, e.g. Grey or gray (comma-separated for several). 'color' is "
                                     "accepted too.", aliases=("color",)),
    Option("min_price", "filter", number, "Lowest price (left out, with a note, where the catalog has no prices).", float),
    Option("max_price", "filter", number, "Highest price (left out, with a note, where the catalog has no prices).", float),
    Option("include_out_of_stock", "filter", yes_no,
           "Also return products that are out of stock (yes/no; default no).", None),
    Option("user", "ranking", text, "Shopper id, for personalised ranking (their likes and dislikes)."),
    Option("diversity", "ranking", checked_later, "0..1: trade similarity for variety (MMR); 0 = plain ranking.",
           float, metavar="0..1", check=check_diversity),
    Option("collapse", "ranking", checked_later,
           "Show one product per near-duplicate group, with how many were folded in.", None, check=check_collapse),
    Option("box", "photo", checked_later,
           "x,y,w,h in the photo's pixels: search this region only (photo searches), e.g. 120,40,300,420.",
           metavar="X,Y,W,H", check=parse_box),
)}
ALIASES = {alias: o.name for o in OPTIONS.values() for alias in o.aliases}
FILTER_FIELDS = tuple(name for name, o in OPTIONS.items() if o.kind == "filter")
LABEL_FILTERS = ("gender", "type", "colour")  # the filters on a label column (the others are prices and stock)


def names(*kinds: str) -> tuple[str, ...]:
    return tuple(name for name, o in OPTIONS.items() if o.kind in kinds)
