"""What a shopper narrows results by, as one vectorised row mask over the catalog's columns."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgumentError
from ..index import Columns
from ..index.catalog_db import label_key
from .options import LABEL_FILTERS, check_k  # noqa: F401  (check_k: the k row of the options table)


@dataclass(frozen=True)
class Filters:
    """The filter rows of ``options.OPTIONS`` (a test keeps the two the same)."""

    gender: str | None = None
    type: str | None = None
    colour: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    include_out_of_stock: bool = False

    def mask(self, columns: Columns) -> np.ndarray:
        """Rows that pass, as one vectorised bool array; unknown label values are an error, not an empty result."""
        mask = columns.live.copy()
        for column in LABEL_FILTERS:
            wanted = getattr(self, column)
            if wanted in (None, ""):
                continue
            codes = []
            for value in str(wanted).split(","):
                code = columns.code(column, value)
                if code is None:
                    raise InvalidArgumentError(unknown_value_message(column, value.strip(), columns.vocab[column]))
                codes.append(code)
            mask &= np.isin(columns.codes[column], codes)
        for name in ("min_price", "max_price"):
            value = getattr(self, name)
            if value is not None and (not np.isfinite(value) or value < 0):
                raise InvalidArgumentError(f"{name} must be a number of 0 or more, got {value}.")
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise InvalidArgumentError(f"min_price ({self.min_price}) is above max_price ({self.max_price}). Swap them.")
        with np.errstate(invalid="ignore"):  # NaN prices never pass a price filter
            if self.min_price is not None:
                mask &= columns.price >= self.min_price
            if self.max_price is not None:
                mask &= columns.price <= self.max_price
        if not self.include_out_of_stock:
            mask &= columns.in_stock
        return mask

    @property
    def is_default(self) -> bool:
        return self == Filters()

    def explain_empty(self, columns: Columns) -> str:
        """Why no product passes, by its real cause (checked one filter at a time)."""
        asked_price = self.min_price is not None or self.max_price is not None
        if asked_price and not np.isfinite(columns.price[columns.live]).any():
            return "This catalog has no prices, so a price filter matches nothing: leave out min_price and max_price."
        labels = Filters(**{c: getattr(self, c) for c in LABEL_FILTERS}, include_out_of_stock=True).mask(columns)
        if not labels.any():
            chosen = ", ".join(f"{c} {getattr(self, c)}" for c in LABEL_FILTERS if getattr(self, c))
            return f"No product is {chosen} together: loosen one of them."
        priced = Filters(**{c: getattr(self, c) for c in LABEL_FILTERS}, min_price=self.min_price,
                         max_price=self.max_price, include_out_of_stock=True).mask(columns)
        if not priced.any():
            return "No product of that kind is in the price range: widen min_price or max_price."
        return (f"{int(priced.sum())} matching products are out of stock: add include_out_of_stock to see them."
                if not self.include_out_of_stock else "No product matches these filters.")


KNOWN_SHOWN = 40


def unknown_value_message(column: str, value: str, vocab: list[str]) -> str:
    """'Unknown type 'tshrt'. Did you mean Tshirts? Known values: ...' (all of them, or the first 40 and a count)."""
    known = sorted(vocab, key=str.lower)
    close = difflib.get_close_matches(label_key(value), {label_key(v): v for v in known}, n=3, cutoff=0.6)
    by_key = {label_key(v): v for v in known}
    hint = f" Did you mean {' or '.join(by_key[c] for c in close)}?" if close else ""
    listed = ", ".join(known[:KNOWN_SHOWN]) or "none in this catalog"
    if len(known) > KNOWN_SHOWN:
        listed += f", … and {len(known) - KNOWN_SHOWN} more (stylelens info, or GET /api/facets, lists them all)"
    return f"Unknown {column} '{value}'.{hint} Known values: {listed}."


# Words shoppers use for catalog types that the catalog names otherwise (checked against its own values).
TYPE_WORDS = {"sneakers": ["Casual Shoes", "Sports Shoes"], "trainers": ["Sports Shoes"], "tee": ["Tshirts"],
              "tees": ["Tshirts"], "t-shirt": ["Tshirts"], "pants": ["Trousers"], "purse": ["Handbags", "Clutches"],
              "bag": ["Handbags"], "bags": ["Handbags"], "sunglasses": ["Sunglasses"], "jumper": ["Sweaters"]}
_PRICE = re.compile(r"\b(under|below|less than|max|up to|over|above|more than|min|from)\s*[$€£₹]?\s*(\d+(?:[.,]\d+)?)", re.I)


def filters_from_text(text: str, columns: Columns) -> tuple[dict, list[str]]:
    """Words -> filter values of this catalog: "red women under 50 sneakers" -> colour Red, gender Women,
    max_price 50, type Casual Shoes,Sports Shoes. Matched like the filters themselves (case, plural,
    punctuation), longest phrase first. Returns (filters, words that matched nothing)."""
    text = str(text or "")[:200]
    found: dict = {}
    for word, amount in _PRICE.findall(text):
        found["max_price" if word.lower() in ("under", "below", "less than", "max", "up to") else "min_price"] = \
            float(amount.replace(",", "."))
    words = re.findall(r"[\w'-]+", _PRICE.sub(" ", text).lower())
    used = [False] * len(words)
    for size in (3, 2, 1):  # "sports shoes" before "shoes"
        for start in range(len(words) - size + 1):
            if any(used[start:start + size]):
                continue
            phrase = " ".join(words[start:start + size])
            for column in LABEL_FILTERS:
                values = _label_values(phrase, column, columns)
                if values:
                    found[column] = ",".join(dict.fromkeys(found.get(column, "").split(",") + values).keys()).strip(",")
                    used[start:start + size] = [True] * size
                    break
    unknown = [w for w, u in zip(words, used) if not u and w not in STOP_WORDS]
    return found, unknown


STOP_WORDS = {"a", "an", "the", "in", "for", "and", "with", "of", "but", "this", "like", "similar", "same", "style"}


def _label_values(phrase: str, column: str, columns: Columns) -> list[str]:
    code = columns.code(column, phrase)
    if code is not None:
        return [columns.vocab[column][code]]
    if column == "type" and phrase in TYPE_WORDS:
        return [v for v in TYPE_WORDS[phrase] if columns.code("type", v) is not None]
    return []
