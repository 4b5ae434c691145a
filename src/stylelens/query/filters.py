"""What a shopper narrows results by, as one vectorised row mask over the catalog's columns."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from ..errors import InvalidArgumentError
from ..index import Columns
from .options import LABEL_FILTERS, check_k  # noqa: F401  (check_k: the k row of the options table)
from .vocabulary import catalog_values, meant, suggestions


@dataclass(frozen=True)
class Filters:
    """The filter rows of ``options.OPTIONS`` (a test keeps the two the same). Label values are shoppers' words,
    read through ``vocabulary`` ("sneakers", "female", "gray"); ``applied`` gives the catalog's own values."""

    gender: str | None = None
    type: str | None = None
    colour: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    include_out_of_stock: bool = False

    def applied(self, columns: Columns) -> "Filters":
        """These filters as this catalog applies them: each label word as the catalog's values, comma-separated
        ('sneakers' -> 'Casual Shoes,Sports Shoes'); a price filter left out where the catalog has no prices
        (``notes`` says so). An unknown word or a bad price is an error, not an empty result."""
        labels = {}
        for column in LABEL_FILTERS:
            wanted = getattr(self, column)
            if wanted in (None, ""):
                continue
            values: list[str] = []
            for word in str(wanted).split(","):
                if not word.strip():  # "Tshirts," from a form that joined its choices
                    continue
                found = catalog_values(column, word, columns.vocab[column])
                if not found:
                    raise InvalidArgumentError(unknown_value_message(column, word.strip(), columns.vocab[column]))
                values += [v for v in found if v not in values]
            labels[column] = ",".join(values)
        for name in ("min_price", "max_price"):
            value = getattr(self, name)
            if value is not None and (not np.isfinite(value) or value < 0):
                raise InvalidArgumentError(f"{name} must be a number of 0 or more, got {value}.")
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise InvalidArgumentError(f"min_price ({self.min_price}) is above max_price ({self.max_price}). Swap them.")
        priced = self.min_price is None and self.max_price is None or has_prices(columns)
        prices = {} if priced else {"min_price": None, "max_price": None}
        return replace(self, **labels, **prices)

    def notes(self, columns: Columns) -> list[str]:
        """One line for each filter given that this catalog cannot apply (and so left out), shown beside the results."""
        if (self.min_price is not None or self.max_price is not None) and not has_prices(columns):
            return ["Price filter not applied: this catalog has no prices."]
        return []

    def mask(self, columns: Columns) -> np.ndarray:
        """Rows that pass, as one vectorised bool array (``applied`` first: unknown words are an error)."""
        applied = self.applied(columns)
        rows = applied._labelled(columns) & applied._priced(columns)
        if not applied.include_out_of_stock:
            rows &= columns.in_stock
        return _whole_products(columns, rows)

    def _labelled(self, columns: Columns) -> np.ndarray:
        """The live rows of the label values asked for (filters already ``applied``): a new array."""
        rows = columns.live.copy()
        for column in LABEL_FILTERS:
            wanted = getattr(self, column)
            if wanted:
                codes = [columns.vocab[column].index(v) for v in wanted.split(",")]
                rows &= np.isin(columns.codes[column], codes)
        return rows

    def _priced(self, columns: Columns) -> np.ndarray | bool:
        """The rows in the price range (filters already ``applied``); True when there is no range."""
        rows: np.ndarray | bool = True
        with np.errstate(invalid="ignore"):  # NaN prices never pass a price filter
            if self.min_price is not None:
                rows = rows & (columns.price >= self.min_price)
            if self.max_price is not None:
                rows = rows & (columns.price <= self.max_price)
        return rows

    @property
    def is_default(self) -> bool:
        return self == Filters()

    def explain_empty(self, columns: Columns) -> str:
        """Why no product passes, by its real cause (checked one filter at a time, each filter's rows read once)."""
        applied = self.applied(columns)
        labelled = applied._labelled(columns)
        # A product passes when one of its rows does (``_whole_products``): "any" needs no spreading.
        if not labelled.any():
            chosen = ", ".join(f"{c} {getattr(self, c)}" for c in LABEL_FILTERS if getattr(self, c))
            return f"No product is {chosen} together: loosen one of them."
        priced = labelled & applied._priced(columns)
        if not priced.any():
            return "No product of that kind is in the price range: widen min_price or max_price."
        if self.include_out_of_stock:
            return "No product matches these filters."
        products = len(np.unique(columns.owners(np.flatnonzero(priced))))  # a product's views are one product
        return (f"{products} matching product{'s are' if products != 1 else ' is'} out of stock: add include_out_of_stock "
                "to see them.")


def _whole_products(columns: Columns, rows: np.ndarray) -> np.ndarray:
    """``rows`` (changed in place) with the product row of each row that passes: a product passes when any of its
    pictures does: a variant card's views carry their variant's colour (build.feed.with_views), and results are
    products at their row (stages.neighbours.best_views)."""
    if columns.views_per_product > 1:
        rows[columns.owners(np.flatnonzero(rows))] = True
    return rows


def has_prices(columns: Columns) -> bool:
    """Whether any product of the catalog has a price (a feed without prices: a price filter cannot apply)."""
    return bool(np.isfinite(columns.price[columns.live]).any())


KNOWN_SHOWN = 40


def unknown_value_message(column: str, value: str, vocab: list[str]) -> str:
    """'Unknown type 'tshrt'. Did you mean Tshirts? Known values: ...' (all of them, or the first 40 and a count);
    the words suggested are this catalog's values and the synonyms it has (``vocabulary``); a synonym for values
    this catalog lacks says so ('sneakers': no Casual Shoes or Sports Shoes) rather than suggest a look-alike."""
    known = sorted(vocab, key=str.lower)
    if meant(column, value):  # a word the table knows, for values this catalog does not sell
        hint = f" This catalog has no {' or '.join(meant(column, value))}."
    else:
        close = suggestions(column, value, vocab)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
    listed = ", ".join(known[:KNOWN_SHOWN]) or "none in this catalog"
    if len(known) > KNOWN_SHOWN:
        listed += f", … and {len(known) - KNOWN_SHOWN} more (stylelens info, or GET /api/facets, lists them all)"
    return f"Unknown {column} '{value}'.{hint} Known values: {listed}."


_PRICE = re.compile(r"\b(under|below|less than|max|up to|over|above|more than|min|from)\s*[$€£₹]?\s*(\d+(?:[.,]\d+)?)", re.I)


def filters_from_text(text: str, columns: Columns) -> tuple[dict, list[str]]:
    """Words -> filter values of this catalog: "red women under 50 sneakers" -> colour Red, gender Women,
    max_price 50, type Casual Shoes,Sports Shoes. Read like the filters themselves (``vocabulary``), longest
    phrase first. Returns (filters, words that matched nothing)."""
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
                values = catalog_values(column, phrase, columns.vocab[column])
                if values:
                    found[column] = ",".join(dict.fromkeys(found.get(column, "").split(",") + values).keys()).strip(",")
                    used[start:start + size] = [True] * size
                    break
    unknown = [w for w, u in zip(words, used) if not u and w not in STOP_WORDS]
    return found, unknown


STOP_WORDS = {"a", "an", "the", "in", "for", "and", "with", "of", "but", "this", "like", "similar", "same", "style"}

