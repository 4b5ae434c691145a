"""Rendering for the terminal: tables and JSON."""

from __future__ import annotations

import json
import sys

# What Ctrl-C leaves, said by commands that commit as they go (index, demo).
RESUMABLE = "interrupted. Work committed so far is kept; run the same command again to resume."


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_table(rows: list[dict], columns: list[tuple[str, str]], max_width: int = 48) -> None:
    """columns: (key, header). Cells are cut to max_width characters."""
    def cell(value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 10 else f"{value:,.2f}"
        text = str(value)
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    table = [[h for _, h in columns]] + [[cell(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    for n, row in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


RESULT_COLUMNS = [("rank", "rank"), ("id", "id"), ("name", "name"), ("type", "type"), ("price", "price"),
                  ("url", "url"), ("score", "score")]


def print_results(products: list[dict]) -> None:
    """The results table; columns the catalog never fills (a feed without prices or links) are left out."""
    rows = [dict(p, rank=i + 1, price=price_text(p)) for i, p in enumerate(products)]
    columns = [(k, h) for k, h in RESULT_COLUMNS if any(r.get(k) not in (None, "") for r in rows)] if rows else RESULT_COLUMNS
    print_table(rows, columns)


def price_text(product: dict) -> str | None:
    """A price as a shop writes it (two decimals), a variant card's as its range ("15.00–19.00")."""
    low, high = product.get("price"), product.get("price_max")
    if low is None:
        return None
    return f"{low:,.2f}" + (f"–{high:,.2f}" if high is not None and high != low else "")


def print_identified(ident) -> None:
    if ident is None or ident.type is None:
        return
    parts = [f"{ident.type} ({ident.type_confidence:.0%})"]
    if ident.gender:
        parts.append(f"{ident.gender} ({ident.gender_confidence:.0%})")
    if ident.colour:
        parts.append(f"{ident.colour} ({ident.colour_confidence:.0%})")
    print("identified: " + ", ".join(parts))


NO_MATCH = "no products match; loosen the filters or add --include-out-of-stock"


def print_search_result(result, as_json: bool) -> None:
    """A SearchResult as JSON, or as the identification line and the results table."""
    if as_json:
        print_json(result.to_dict())
        return
    for note in result.notes:  # a filter the catalog could not apply: said before the results it did not narrow
        print(f"note: {note}")
    items = result.extra.get("items") or []
    if len(items) <= 1:
        print_identified(result.identified)
        print_results(result.products)
        if not result.products:
            print(result.extra.get("note") or NO_MATCH)
        return
    for n, item in enumerate(items, 1):  # several items in the photo: one block each, main item first
        x, y, w, h = item["box"]
        print(f"item {n} of {len(items)} at x={x} y={y} w={w} h={h}")
        print_identified(_Ident(item["identified"]))
        print_results(item["results"])
        if not item["results"]:
            print(NO_MATCH)
        print()


class _Ident:
    """An identification dict read like the library's Identification."""

    def __init__(self, values: dict | None):
        self.__dict__.update(values or {"type": None})
