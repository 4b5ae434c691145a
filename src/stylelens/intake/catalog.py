"""Catalog intake: a folder of product images plus an optional product feed (CSV, JSON lines, Parquet).

Feeds are read as shops write them. What cannot be used is never fatal for a row: it becomes a
:class:`CatalogWarning` (one per problem, all kept) and the row goes on with that field empty.
Image-folder entries that cannot be images at all (folders, FIFOs, broken links named ``*.jpg``)
become :class:`ImageProblem` rows, the same shape as the build's errors.csv.

Prices (:func:`read_price`): a bare number is a machine number (``.`` is the decimal point and an
exponent is allowed: ``"1e3"`` = 1000); anything else (a currency, spaces, ``,`` separators) is read
by `price-parser`, which tells thousands from decimals by the digit groups: ``"Rs. 1,299"`` = 1299,
``"12,50"`` = 12.5, ``"1.299,00 €"`` = 1299. A bare ``"1.299"`` (one dot, three digits after) is read
as 1.299 and warned ``ambiguous_price``, since many shops write one thousand two hundred ninety-nine
that way. A negative price or one without digits is left empty (price unknown) and warned.

Stock (:func:`read_stock`): numbers (``"0.0"``, ``"-1"`` = out), yes/no words and schema.org
availability, as a URL or ``schema:`` name. PreOrder, PreSale, BackOrder and MadeToOrder count as in
stock: the shopper can order them now. Empty means in stock (a shop that does not say is selling);
a word we do not know counts as in stock too, with an ``unknown_stock`` warning.
"""

from __future__ import annotations

import csv
import decimal
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..errors import CatalogError, ImageError
from ..settings import SETTINGS
from .images import IMAGE_EXTENSIONS, check_file

# Canonical column -> accepted spellings (compared lower-case with non-alphanumerics removed).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "productid", "sku", "itemid", "styleid"),
    "name": ("name", "productdisplayname", "productname", "title"),
    "type": ("type", "articletype", "producttype"),
    "gender": ("gender", "sex"),
    "colour": ("colour", "color", "basecolour", "basecolor"),
    "price": ("price", "saleprice"),
    "currency": ("currency",),
    "url": ("url", "link", "producturl"),
    "in_stock": ("instock", "availability", "available", "stock"),
    "category": ("mastercategory", "category"),
    "subcategory": ("subcategory",),
    "season": ("season",),
    "usage": ("usage", "occasion"),
    "image": ("image", "imagepath", "imagefile", "filename"),
}
TEXT_FIELDS = ("name", "type", "gender", "colour", "currency", "url", "category", "subcategory", "season", "usage")
FEED_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".parquet")
# Delimited text: the delimiter is read from the header line (Merchant Center feeds are often tab-separated .txt).
DELIMITED_SUFFIXES = (".csv", ".tsv", ".txt")
# Picture formats we cannot decode still count as catalog images, so they are reported, not ignored.
CANDIDATE_EXTENSIONS = IMAGE_EXTENSIONS | {".heic", ".heif", ".avif", ".svg", ".ico", ".ppm", ".jxl", ".jp2"}

# Stock words, compared as _key() (lower case, letters and digits only), after any schema.org prefix.
_IN_STOCK = {"1", "true", "yes", "y", "t", "instock", "available", "limitedavailability", "limited", "lowstock",
             "onlineonly", "instoreonly", "preorder", "presale", "backorder", "backordered", "onbackorder",
             "madetoorder", "availablefororder"}
_OUT_OF_STOCK = {"0", "false", "no", "n", "f", "outofstock", "soldout", "unavailable", "notavailable", "notinstock",
                 "discontinued", "reserved", "none", "oos"}
_SCHEMA_ORG = re.compile(r"^\s*(?:https?://(?:www\.)?schema\.org/|schema:)", re.IGNORECASE)
_PLAIN_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_AMBIGUOUS_DOT = re.compile(r"^\d{1,3}\.\d{3}$")
_NUMBER_RUN = re.compile(r"\d[\d.,'\u2019\s]*")  # an amount as written: digits with their group and decimal marks
_MINUS = "-\u2212\u2012\u2013"  # hyphen-minus, minus sign, figure dash, en dash
# Currency symbols that name one currency; the rest ("$", "Rs", "kr") are kept as the shop wrote them.
_SYMBOL_CODES = {"€": "EUR", "£": "GBP", "₹": "INR"}

# Images kept per product (a feed's main image and its additional ones); more are not read.
MAX_IMAGES = 20

WARNING_KEYS = ("code", "id", "field", "value", "path", "line", "message")


@dataclass(frozen=True)
class FeedLimits:
    """How much of an untrusted feed is read: a feed over ``columns`` or ``rows`` is refused in one line; a row
    over ``row_bytes``, a value over ``field_chars`` and extra columns over ``extra_bytes`` (as JSON) are
    dropped with a warning. Defaults: the settings table (``feed_max_*``)."""

    columns: int = SETTINGS["feed_max_columns"].default
    rows: int = SETTINGS["feed_max_rows"].default
    row_bytes: int = SETTINGS["feed_max_row_bytes"].default
    field_chars: int = SETTINGS["feed_max_field_chars"].default
    extra_bytes: int = SETTINGS["feed_max_extra_bytes"].default
    bytes: int = SETTINGS["feed_max_bytes"].default  # a feed file read whole (XML) or downloaded

    @classmethod
    def of(cls, settings) -> "FeedLimits":
        return cls(settings.feed_max_columns, settings.feed_max_rows, settings.feed_max_row_bytes,
                   settings.feed_max_field_chars, settings.feed_max_extra_bytes, settings.feed_max_bytes)


# Ids are keys in every file an index writes and exports (one per line in ids.txt): no control characters.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class CatalogWarning:
    """Something in the catalog that was read with a loss; ``str()`` is the one-line message.

    Codes: feed rows ``no_id``, ``bad_id``, ``duplicate_id``, ``bad_price``, ``negative_price``,
    ``ambiguous_price``, ``currency_mismatch``, ``unknown_stock``, ``bad_line`` (a JSON-lines line
    that is not a JSON object, or a CSV record that cannot be read), ``row_too_long``, ``field_too_long``,
    ``extra_too_large`` (see :class:`FeedLimits`), ``image_missing`` (the feed's image column names no file),
    ``image_outside_catalog`` (it names a file outside the catalog folder); image folder ``duplicate_image``
    (two files with one product id).
    """

    code: str
    message: str
    id: str | None = None  # product id, when known
    field: str | None = None  # canonical feed column: "price", "in_stock", "id", "image"
    value: str | None = None  # the value as the feed wrote it
    path: str | None = None  # the feed file, or the image file the warning is about
    line: int | None = None  # line of the feed file (CSV, JSON lines; header = line 1), row of a Parquet feed

    def __str__(self) -> str:
        return self.message

    def row(self) -> dict:
        return {key: getattr(self, key) for key in WARNING_KEYS}


class ImageProblem(NamedTuple):
    """A file in the images folder that cannot be an image; the shape of a build's errors.csv row.

    Codes: ``not_a_file`` (a folder, FIFO, socket or device named like an image), ``broken_link``.
    """

    id: str
    path: str
    code: str
    message: str


class ParsedPrice(NamedTuple):
    amount: float | None
    currency: str | None  # as the price text names it ("EUR", "$", "Rs"), else None
    problem: str | None  # a CatalogWarning code when the text was not read cleanly, else None


@dataclass
class Catalog:
    """Products keyed by id, and the image file for each id that has one.

    ``issues``: every warning, structured (see :class:`CatalogWarning`); ``warnings``: the same as text.
    ``problems``: image-folder entries that cannot be read as files, as (id, path, code, message).
    """

    products: dict[str, dict] = field(default_factory=dict)
    images: dict[str, Path] = field(default_factory=dict)
    feed: Path | None = None
    issues: list[CatalogWarning] = field(default_factory=list)
    problems: list[ImageProblem] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """Every warning as one line of text (the shape callers had before warnings were structured)."""
        return [str(w) for w in self.issues]

    def warning_rows(self) -> list[dict]:
        """Every warning as a dict with the keys of ``WARNING_KEYS``, in this order:

        ``code`` (stable, see :class:`CatalogWarning`), ``id`` (product id or None), ``field`` (feed column:
        "price", "in_stock", "id", "image", or None), ``value`` (the raw value, str or None), ``path`` (the feed
        or image file, str or None), ``line`` (int: feed line, header = 1, or Parquet row; None otherwise),
        ``message`` (one line of text). Ready for ``csv.DictWriter(fh, WARNING_KEYS)``.
        """
        return [w.row() for w in self.issues]

    @property
    def without_image(self) -> list[str]:
        return sorted(pid for pid in self.products if pid not in self.images) if self.feed else []

    @property
    def without_product(self) -> list[str]:
        return sorted(pid for pid in self.images if pid not in self.products) if self.feed else []

    def record(self, pid: str) -> dict:
        """The product row for an id; a bare row (id only) when there is no feed entry."""
        return self.products.get(pid) or {"id": pid}


def read_price(value) -> ParsedPrice:
    """A feed's price cell -> (amount or None, currency named in it or None, warning code or None)."""
    if value is None or isinstance(value, bool):
        return ParsedPrice(None, None, None if value is None else "bad_price")
    if isinstance(value, (int, float, decimal.Decimal)):
        amount = float(value)
        if not math.isfinite(amount):
            return ParsedPrice(None, None, None if math.isnan(amount) else "bad_price")
        return ParsedPrice(None, None, "negative_price") if amount < 0 else ParsedPrice(amount, None, None)
    text = str(value).strip()
    if not text:
        return ParsedPrice(None, None, None)
    if _PLAIN_NUMBER.match(text):
        amount = float(text)
        if not math.isfinite(amount):
            return ParsedPrice(None, None, "bad_price")
        if amount < 0:
            return ParsedPrice(None, None, "negative_price")
        return ParsedPrice(amount, None, "ambiguous_price" if _AMBIGUOUS_DOT.match(text) else None)
    first_digit = next((i for i, ch in enumerate(text) if ch.isdigit()), None)
    if first_digit is None:
        return ParsedPrice(None, None, "bad_price")
    from price_parser import Price

    parsed = Price.fromstring(text)
    currency = parsed.currency.strip().rstrip(".") if parsed.currency else None
    if currency:
        currency = _SYMBOL_CODES.get(currency, currency.upper() if re.fullmatch(r"[A-Za-z]{3}", currency) else currency)
    if any(ch in _MINUS for ch in text[:first_digit]):
        return ParsedPrice(None, currency, "negative_price")
    if parsed.amount is None or not _only_a_price(text, parsed):
        return ParsedPrice(None, currency, "bad_price")
    return ParsedPrice(float(parsed.amount), currency, None)


def _only_a_price(text: str, parsed) -> bool:
    """Nothing but one amount and a currency: "Size 42", "42 EUR / kg", "3 for 10" and "0800 123" (a phone
    number, which price-parser reads as 800123) are not prices."""
    rest = text.replace(parsed.currency, " ", 1) if parsed.currency else text
    number = _NUMBER_RUN.search(rest)
    if number is None or re.match(r"0\d", number.group().strip()):
        return False
    return not re.search(r"[^\W_]", rest[:number.start()] + rest[number.end():])


def parse_price(value) -> float | None:
    """The amount of a price cell; None when it is empty, negative or not a price (see :func:`read_price`)."""
    return read_price(value).amount


def read_stock(value) -> bool | None:
    """A feed's availability cell -> True / False, or None when it is a word we do not know.

    Empty cells (None, "", NaN) are True: a shop that does not say is selling.
    """
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float, decimal.Decimal)):
        return True if isinstance(value, float) and math.isnan(value) else value > 0
    text = _SCHEMA_ORG.sub("", str(value)).strip()
    if not text:
        return True
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return True if math.isnan(number) else number > 0
    key = _key(text)
    if key in _OUT_OF_STOCK:
        return False
    if key in _IN_STOCK:
        return True
    return None


def parse_in_stock(value) -> bool:
    """Availability as a bool; words we do not know count as in stock (:func:`read_feed` warns about them)."""
    return read_stock(value) is not False


class _FeedRows:
    """(position, row) for each record of a feed, within ``limits``; rows that cannot be used are skipped and noted."""

    def __init__(self, path: Path, issues: list[CatalogWarning], limits: FeedLimits, delimiter: str | None = None):
        self.path, self.issues, self.limits = path, issues, limits
        self.unit = "row" if path.suffix.lower() == ".parquet" else "line"
        self.delimiter = delimiter  # delimited text (CSV, TSV) whatever the file's name
        self.count = 0

    def __iter__(self):
        path = self.path
        suffix = path.suffix.lower()
        try:
            if self.delimiter or suffix in DELIMITED_SUFFIXES:
                rows = self._csv(path, self.delimiter or sniff_delimiter(path))
            elif suffix in (".jsonl", ".ndjson"):
                rows = self._json_lines(path)
            elif suffix == ".parquet":
                rows = self._parquet(path)
            else:
                raise CatalogError(f"Product feed {path} has an unknown format. Use .csv, .tsv, .xml, .jsonl or .parquet.")
            for position, row in rows:
                self.count += 1
                if self.count > self.limits.rows:
                    raise CatalogError(f"Product feed {path} has more than {self.limits.rows:,} rows (setting "
                                       "feed_max_rows). Split it, or raise the limit with --feed-max-rows.")
                yield position, row
        except (OSError, UnicodeDecodeError) as exc:
            raise CatalogError(f"Could not read product feed {path}: {exc}. Check the path and that it is UTF-8 text.") from exc
        except CatalogError:
            raise
        except Exception as exc:  # pyarrow raises its own types for a damaged file
            raise CatalogError(f"Could not parse product feed {path}: {exc}.") from exc

    def _too_many_columns(self, n: int) -> None:
        if n > self.limits.columns:
            raise CatalogError(f"Product feed {self.path} has {n:,} columns, more than {self.limits.columns:,} (setting "
                               "feed_max_columns). Remove the columns you do not need, or raise the limit with --feed-max-columns.")

    def _skip(self, position: int, problem: str, value: str = "") -> None:
        self.issues.append(CatalogWarning("row_too_long" if "longer" in problem else "bad_line",
                                          f"{self.path.name} {self.unit} {position} {problem}, skipped.",
                                          path=str(self.path), line=position, value=value[:200] or None))

    def _csv(self, path: Path, delimiter: str = ","):
        # The csv module's field limit is per process: raised to the row limit, never lowered (other readers keep theirs).
        csv.field_size_limit(max(csv.field_size_limit(), self.limits.row_bytes))
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                return
            self._too_many_columns(len(header))
            width = len(header)
            while True:
                try:
                    values = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:  # a NUL byte, or one value longer than the row limit
                    self._skip(reader.line_num, f"cannot be read as CSV ({exc})" if "larger" not in str(exc) else
                               f"is longer than {self.limits.row_bytes:,} bytes (setting feed_max_row_bytes)")
                    continue
                if sum(map(len, values)) > self.limits.row_bytes:
                    self._skip(reader.line_num, f"is longer than {self.limits.row_bytes:,} bytes (setting feed_max_row_bytes)")
                    continue
                # Short rows leave the missing columns empty; values past the header are not kept.
                yield reader.line_num, dict(zip(header, values[:width]))

    def _parquet(self, path: Path):
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path).metadata
        self._too_many_columns(meta.num_columns)
        if meta.num_rows > self.limits.rows:
            raise CatalogError(f"Product feed {path} has {meta.num_rows:,} rows, more than {self.limits.rows:,} (setting "
                               "feed_max_rows). Split it, or raise the limit with --feed-max-rows.")
        yield from enumerate(pq.read_table(path).to_pylist(), 1)

    def _json_lines(self, path: Path):
        good = bad = 0
        first_bad = ""
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                if len(line) > self.limits.row_bytes:
                    self._skip(lineno, f"is longer than {self.limits.row_bytes:,} bytes (setting feed_max_row_bytes)")
                    bad += 1
                    first_bad = first_bad or f"line {lineno} is too long"
                    continue
                try:
                    row = json.loads(line)
                    problem = None if isinstance(row, dict) else f"is a JSON {_json_kind(row)}, not an object"
                except json.JSONDecodeError as exc:
                    problem = f"is not valid JSON ({exc.msg})"
                if problem is None:
                    good += 1
                    yield lineno, row
                    continue
                bad += 1
                first_bad = first_bad or f"line {lineno} {problem}"
                self.issues.append(CatalogWarning(
                    "bad_line", f"{path.name} line {lineno} {problem}, skipped. Each line must be one JSON object "
                    'such as {"id": "123", "price": "19.90"}.', path=str(path), line=lineno, value=line.strip()[:200]))
        if bad and not good:
            raise CatalogError(f"Product feed {path} has no usable line ({first_bad}). "
                               'Write one JSON object per line, such as {"id": "123", "price": "19.90"}.')


def _json_kind(value) -> str:
    return {list: "list", str: "string", bool: "true/false", type(None): "null"}.get(type(value), "number")


def _canonical(col: str, taken: set[str]) -> str | None:
    for canon, aliases in COLUMN_ALIASES.items():
        if _key(col) in aliases and canon not in taken:
            return canon
    return None


def canonical_column(name: str) -> str:
    """The record field a feed column's name is read into ("productDisplayName" -> "name"); other names unchanged
    (they are kept in the record's ``extra``)."""
    return _canonical(name, set()) or name


def sniff_delimiter(path: Path) -> str:
    """Tab when the header line holds more tabs than commas (a TSV, whatever its name), else comma."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        header = fh.readline(1_000_000)
    return "\t" if header.count("\t") > header.count(",") else ","


def read_feed(path: Path, limits: FeedLimits | None = None) -> tuple[dict[str, dict], list[CatalogWarning]]:
    """Feed file -> ({id: canonical record with 'extra'}, warnings). ``str(warning)`` is its message.
    A feed is untrusted input: ``limits`` (default: the settings' defaults) bound what is read.

    The format is recognised by content and name (:func:`stylelens.intake.feeds.feed_format`): Google Merchant
    Center (TSV, CSV, XML), Shopify and WooCommerce product CSVs are read by :mod:`stylelens.intake.feeds`;
    any other CSV, TSV, JSON lines or Parquet file by its column names (``COLUMN_ALIASES``). Every record also
    has ``images`` (its image paths or URLs, the main one first) and ``group`` (the variants' group, or None).
    """
    from . import feeds  # feeds builds on this module's readers

    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"Product feed {path} does not exist. Check the --products path.")
    limits = limits or FeedLimits()
    kind = feeds.feed_format(path)
    if kind != "generic":
        return feeds.read_format(path, kind, limits)
    issues: list[CatalogWarning] = []
    rows = _FeedRows(path, issues, limits)
    records = Records(path, rows.unit, limits, issues)
    mapping: dict[str, str | None] | None = None
    taken: set[str] = set()  # canonical fields already claimed by a column (kept as we go: linear in the columns)

    def column(col: str) -> str | None:
        canon = mapping[col] = _canonical(col, taken)
        if canon is not None:
            taken.add(canon)
        return canon

    for n, row in rows:
        if mapping is None:
            mapping = {}
            for col in row:
                column(col)
            if "id" not in taken:
                raise CatalogError(
                    f"Product feed {path} has no id column (looked for: {', '.join(COLUMN_ALIASES['id'])}). "
                    "Add an 'id' column whose values match the image file names."
                )
        rec: dict = {"extra": {}}
        too_long = []
        for col, value in row.items():
            if col not in mapping:  # JSON lines: a key the first row did not have
                rows._too_many_columns(len(mapping) + 1)
                column(col)
            if isinstance(value, str) and len(value) > limits.field_chars:
                too_long.append(mapping[col] or col)
                value = None
            canon = mapping[col]
            if canon is None:
                if value is not None:
                    rec["extra"][col] = value
            else:
                rec[canon] = value
        records.add(n, rec, too_long)
    return records.products, issues


class Records:
    """Canonical records from a feed's rows, whatever its format: ids checked, text trimmed, price and stock read,
    each loss a :class:`CatalogWarning`. A reader fills ``rec`` with canonical fields (raw values), ``extra``, and
    optionally ``images`` (main first) and ``group``; :meth:`add` does the rest."""

    def __init__(self, path: Path, unit: str, limits: FeedLimits, issues: list[CatalogWarning]):
        self.path, self.unit, self.limits, self.issues = Path(path), unit, limits, issues
        self.products: dict[str, dict] = {}

    def warn(self, n, code, message, pid=None, fld=None, value=None) -> None:
        self.issues.append(CatalogWarning(code, f"{self.path.name} {self.unit} {n}: {message}", id=pid, field=fld,
                                          value=None if value is None else str(value), path=str(self.path), line=n))

    def add(self, n: int, rec: dict, too_long=()) -> dict | None:
        """Check and normalise one record read at position ``n``; the record kept, or None when it is skipped."""
        limits, warn = self.limits, self.warn
        pid = str(rec.get("id") or "").strip()
        if pid.endswith(".0") and pid[:-2].isdigit():  # ids read as floats from Parquet/JSON
            pid = pid[:-2]
        if not pid:
            warn(n, "no_id", "no id, skipped", fld="id")
            return None
        if _CONTROL.search(pid):
            warn(n, "bad_id", f"id {pid!r} holds a line break or control character, skipped", None, "id", pid)
            return None
        if pid in self.products:
            warn(n, "duplicate_id", f"duplicate id {pid}, later row ignored", pid, "id", pid)
            return None
        rec["id"] = pid
        rec.setdefault("extra", {})
        for col in too_long:
            warn(n, "field_too_long", f"{col} of {pid} is longer than {limits.field_chars:,} characters (setting "
                 "feed_max_field_chars), left empty", pid, col)
        if rec["extra"] and len(json.dumps(rec["extra"], default=str)) > limits.extra_bytes:
            warn(n, "extra_too_large", f"the extra columns of {pid} take more than {limits.extra_bytes:,} bytes (setting "
                 f"feed_max_extra_bytes), not kept: {', '.join(list(rec['extra'])[:5])}", pid, "extra")
            rec["extra"] = {}
        for f in TEXT_FIELDS:
            value = rec.get(f)
            rec[f] = None if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "" else str(value).strip()
        raw_price = rec.get("price")
        price = read_price(raw_price)
        rec["price"] = price.amount
        if price.problem == "negative_price":
            warn(n, "negative_price", f"price {raw_price!r} of {pid} is negative, left empty (price unknown)", pid, "price", raw_price)
        elif price.problem == "bad_price":
            warn(n, "bad_price", f"price {raw_price!r} of {pid} is not a number, left empty", pid, "price", raw_price)
        elif price.problem == "ambiguous_price":
            warn(n, "ambiguous_price", f"price {raw_price!r} of {pid} read as {price.amount}; if it means "
                 f"{price.amount * 1000:g}, write it without the thousands dot", pid, "price", raw_price)
        if price.currency:
            named = _SYMBOL_CODES.get(price.currency, price.currency)
            if rec["currency"] is None:
                rec["currency"] = named
            elif re.fullmatch(r"[A-Z]{3}", named) and named != rec["currency"].upper():
                warn(n, "currency_mismatch", f"price {raw_price!r} of {pid} is in {named} but its currency column says "
                     f"{rec['currency']}; kept {rec['currency']}", pid, "currency", raw_price)
        raw_stock = rec.get("in_stock")
        stock = read_stock(raw_stock)
        if stock is None:
            warn(n, "unknown_stock", f"availability {raw_stock!r} of {pid} is not a stock word we know, counted as in "
                 "stock. Use in stock / out of stock, yes / no, a number, or a schema.org availability", pid,
                 "in_stock", raw_stock)
        rec["in_stock"] = stock is not False
        image = rec.get("image")
        images = [str(i).strip() for i in rec.get("images") or ([image] if image not in (None, "") else [])]
        images = list(dict.fromkeys(i for i in images if i))[:MAX_IMAGES]  # in order, each once
        rec["images"] = images
        rec["group"] = str(rec["group"]).strip() or None if rec.get("group") not in (None, "") else None
        # Kept with the product in the index (the catalog's 'extra'), so a page can show every view and the variants.
        if len(images) > 1 or any("://" in i for i in images):
            rec["extra"]["images"] = images
        if rec["group"]:
            rec["extra"]["group"] = rec["group"]
        self.products[pid] = rec
        return rec


def find_feed(folder: Path) -> Path | None:
    """A single feed file at the top of the catalog folder is used without asking."""
    candidates = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in FEED_SUFFIXES)
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise CatalogError(f"The catalog folder has several product feeds ({names}). Choose one with --products FILE.")
    return candidates[0] if candidates else None


def _not_a_file(path: Path) -> ImageProblem | None:
    """Why an entry named like an image cannot be read as one, or None when it is a regular file."""
    try:
        check_file(path)  # stat only: a FIFO is never opened
    except ImageError as exc:
        return None if exc.code == "not_found" else ImageProblem(path.stem, str(path), exc.code, exc.message)
    return None


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` names a file under ``folder``, ``..`` taken into account: a feed must not make stylelens read
    (and serve) a file from elsewhere on the machine. Links are the operator's own and are followed as they are."""
    return Path(os.path.normpath(os.path.abspath(path))).is_relative_to(os.path.normpath(os.path.abspath(folder)))


def scan_images(folder: Path, problems: list | None = None) -> tuple[dict[str, Path], list[CatalogWarning]]:
    """Image files under folder (recursive), keyed by file stem, in a deterministic order.

    Entries named like images that are not regular files (folders, FIFOs, broken links) are appended
    to ``problems`` as :class:`ImageProblem` when a list is given.
    """
    images: dict[str, Path] = {}
    issues: list[CatalogWarning] = []
    for path in sorted(Path(folder).rglob("*")):
        if path.suffix.lower() not in CANDIDATE_EXTENSIONS or path.name.startswith("."):
            continue
        problem = _not_a_file(path)
        if problem is not None:
            if problems is not None:
                problems.append(problem)
            continue
        if not path.is_file():
            continue
        pid = path.stem
        if _CONTROL.search(pid):
            issues.append(CatalogWarning("bad_id", f"{path!s:.200}: a file name with a line break or control character "
                                         "cannot be a product id, skipped", path=repr(str(path))))
            continue
        if pid in images:
            issues.append(CatalogWarning("duplicate_image", f"{path}: another image already has id {pid} ({images[pid]}), skipped",
                                         id=pid, path=str(path)))
            continue
        images[pid] = path
    return images, issues


def load_catalog(folder, products=None, limits: FeedLimits | None = None) -> Catalog:
    folder = Path(folder)
    if not folder.is_dir():
        raise CatalogError(f"Catalog folder {folder} does not exist or is not a folder. Pass the folder that holds the product images.")
    feed = Path(products) if products else find_feed(folder)
    catalog = Catalog(feed=feed)
    catalog.images, catalog.issues = scan_images(folder, catalog.problems)
    if feed is not None:
        catalog.products, feed_issues = read_feed(feed, limits)
        catalog.issues.extend(feed_issues)
        # A feed 'image' column overrides the file-stem convention.
        for pid, rec in catalog.products.items():
            image = rec.get("image")
            if image:
                path = folder / image  # an absolute path stays absolute
                if not _inside(path, folder):
                    catalog.issues.append(CatalogWarning(
                        "image_outside_catalog", f"{feed.name}: the image of {pid}, {image!r}, lies outside the catalog "
                        f"folder {folder}, refused. Name image files by their path inside that folder.",
                        id=pid, field="image", value=str(image), path=str(path)))
                elif path.is_file():
                    catalog.images[pid] = path
                else:
                    catalog.issues.append(CatalogWarning(
                        "image_missing", f"{feed.name}: the image of {pid}, {image!r}, is not a file under {folder}",
                        id=pid, field="image", value=str(image), path=str(path)))
        claimed = {path.resolve(): pid for pid, path in catalog.images.items() if pid in catalog.products}
        catalog.images = {pid: p for pid, p in catalog.images.items() if claimed.get(p.resolve(), pid) == pid}
    if not catalog.images:
        raise CatalogError(
            f"No images found under {folder} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}). Pass the folder that holds the product images."
        )
    return catalog
