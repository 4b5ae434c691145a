"""Catalog intake: a folder of product images plus an optional product feed (CSV, JSON lines, Parquet)."""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CatalogError
from .images import IMAGE_EXTENSIONS

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
# Picture formats we cannot decode still count as catalog images, so they are reported, not ignored.
CANDIDATE_EXTENSIONS = IMAGE_EXTENSIONS | {".heic", ".heif", ".avif", ".svg", ".ico", ".ppm", ".jxl", ".jp2"}

_TRUE = {"1", "true", "yes", "y", "instock", "in stock", "available", "t"}
_FALSE = {"0", "false", "no", "n", "outofstock", "out of stock", "soldout", "sold out", "unavailable", "f"}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass
class Catalog:
    """Products keyed by id, and the image file for each id that has one."""

    products: dict[str, dict] = field(default_factory=dict)
    images: dict[str, Path] = field(default_factory=dict)
    feed: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def without_image(self) -> list[str]:
        return sorted(pid for pid in self.products if pid not in self.images) if self.feed else []

    @property
    def without_product(self) -> list[str]:
        return sorted(pid for pid in self.images if pid not in self.products) if self.feed else []

    def record(self, pid: str) -> dict:
        """The product row for an id; a bare row (id only) when there is no feed entry."""
        return self.products.get(pid) or {"id": pid}


def parse_price(value) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    text = re.sub(r"[^0-9.,-]", "", str(value)).replace(",", "")
    try:
        return float(text)
    except ValueError:
        return None


def parse_in_stock(value) -> bool:
    """Unknown availability counts as in stock: a shop that does not say is selling."""
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value > 0
    text = str(value).strip().lower()
    if text in _FALSE or _key(text) in _FALSE:
        return False
    return True


def _rows(path: Path):
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8-sig") as fh:
                # on_bad_lines: csv module yields short/long rows; we keep what maps to the header.
                yield from csv.DictReader(fh)
        elif suffix in (".jsonl", ".ndjson"):
            with open(path, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            yield json.loads(line)
                        except json.JSONDecodeError as exc:
                            raise CatalogError(f"{path} line {lineno} is not valid JSON ({exc.msg}). Fix or remove that line.") from exc
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            yield from pq.read_table(path).to_pylist()
        else:
            raise CatalogError(f"Product feed {path} has an unknown format. Use .csv, .jsonl or .parquet.")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"Could not read product feed {path}: {exc}. Check the path and that it is UTF-8 text.") from exc
    except CatalogError:
        raise
    except Exception as exc:  # pyarrow / csv raise their own types for a damaged file
        raise CatalogError(f"Could not parse product feed {path}: {exc}.") from exc


def read_feed(path: Path) -> tuple[dict[str, dict], list[str]]:
    """Feed file -> ({id: canonical record with 'extra'}, warnings)."""
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"Product feed {path} does not exist. Check the --products path.")
    products: dict[str, dict] = {}
    warnings: list[str] = []
    mapping: dict[str, str] | None = None
    for n, row in enumerate(_rows(path), 1):
        if mapping is None:
            mapping = {}
            for col in row:
                if col is None:
                    continue
                for canon, aliases in COLUMN_ALIASES.items():
                    if _key(col) in aliases and canon not in mapping.values():
                        mapping[col] = canon
                        break
            if "id" not in mapping.values():
                raise CatalogError(
                    f"Product feed {path} has no id column (looked for: {', '.join(COLUMN_ALIASES['id'])}). "
                    "Add an 'id' column whose values match the image file names."
                )
        rec: dict = {"extra": {}}
        for col, value in row.items():
            if col is None:  # csv: more fields than the header
                continue
            canon = mapping.get(col)
            if canon is None:
                rec["extra"][col] = value
            else:
                rec[canon] = value
        pid = str(rec.get("id") or "").strip()
        if pid.endswith(".0") and pid[:-2].isdigit():  # ids read as floats from Parquet/JSON
            pid = pid[:-2]
        if not pid:
            warnings.append(f"row {n}: no id, skipped")
            continue
        if pid in products:
            warnings.append(f"row {n}: duplicate id {pid}, later row ignored")
            continue
        rec["id"] = pid
        for f in TEXT_FIELDS:
            value = rec.get(f)
            rec[f] = None if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "" else str(value).strip()
        raw_price = rec.get("price")
        rec["price"] = parse_price(raw_price)
        if raw_price not in (None, "") and rec["price"] is None:
            warnings.append(f"row {n}: price {raw_price!r} of {pid} is not a number, left empty")
        rec["in_stock"] = parse_in_stock(rec.get("in_stock"))
        products[pid] = rec
    return products, warnings


def find_feed(folder: Path) -> Path | None:
    """A single feed file at the top of the catalog folder is used without asking."""
    candidates = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in FEED_SUFFIXES)
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise CatalogError(f"The catalog folder has several product feeds ({names}). Choose one with --products FILE.")
    return candidates[0] if candidates else None


def scan_images(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Image files under folder (recursive), keyed by file stem, in a deterministic order."""
    images: dict[str, Path] = {}
    warnings: list[str] = []
    for path in sorted(Path(folder).rglob("*")):
        if path.suffix.lower() not in CANDIDATE_EXTENSIONS or not path.is_file() or path.name.startswith("."):
            continue
        pid = path.stem
        if pid in images:
            warnings.append(f"{path}: another image already has id {pid} ({images[pid]}), skipped")
            continue
        images[pid] = path
    return images, warnings


def load_catalog(folder, products=None) -> Catalog:
    folder = Path(folder)
    if not folder.is_dir():
        raise CatalogError(f"Catalog folder {folder} does not exist or is not a folder. Pass the folder that holds the product images.")
    feed = Path(products) if products else find_feed(folder)
    images, warnings = scan_images(folder)
    catalog = Catalog(images=images, feed=feed, warnings=warnings)
    if feed is not None:
        catalog.products, feed_warnings = read_feed(feed)
        catalog.warnings.extend(feed_warnings)
        # A feed 'image' column overrides the file-stem convention.
        for pid, rec in catalog.products.items():
            image = rec.get("image")
            if image:
                path = Path(image) if Path(image).is_absolute() else folder / image
                if path.is_file():
                    catalog.images[pid] = path
        claimed = {path.resolve(): pid for pid, path in catalog.images.items() if pid in catalog.products}
        catalog.images = {pid: p for pid, p in catalog.images.items() if claimed.get(p.resolve(), pid) == pid}
    if not catalog.images:
        raise CatalogError(
            f"No images found under {folder} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}). Pass the folder that holds the product images."
        )
    return catalog
