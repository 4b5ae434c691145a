"""What a shopper narrows results by, as one vectorised row mask over the catalog's columns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgumentError
from ..index import Columns

FILTER_FIELDS = ("gender", "type", "colour", "min_price", "max_price", "include_out_of_stock")
LABEL_FILTERS = ("gender", "type", "colour")


@dataclass(frozen=True)
class Filters:
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
                    known = ", ".join(sorted(columns.vocab[column])[:30]) or "none in this catalog"
                    raise InvalidArgumentError(f"Unknown {column} '{value.strip()}'. Known values: {known}.")
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


def check_k(k) -> int:
    try:
        k = int(k)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"k must be a whole number, got {k!r}.") from None
    if not 1 <= k <= 1000:
        raise InvalidArgumentError(f"k must be between 1 and 1000, got {k}.")
    return k
