"""Product feeds as shops export them -> the canonical records of :func:`stylelens.intake.catalog.read_feed`.

Formats, recognised by content and name (:func:`feed_format`):

- **Google Merchant Center**: TSV or CSV (column names with or without ``g:``, ``image_link`` or ``image link``),
  and RSS 2.0 / Atom XML with the ``g:`` namespace. One row or item is one product (a variant names its
  ``item_group_id``).
- **Shopify** product CSV: one product per ``Handle``, over its variant rows and image rows.
- **WooCommerce** product CSV: a product and its ``variation`` rows (``Parent``) are one product.

Every record also has ``images`` (URLs or paths, the main image first) and ``group`` (the variants' group).
Prices and stock are read by the catalog's readers (:func:`~stylelens.intake.catalog.read_price`,
:func:`~stylelens.intake.catalog.read_stock`), rows through the same :class:`~stylelens.intake.catalog.FeedLimits`.
XML is untrusted: parsed with defusedxml (a DTD or an entity refuses the feed); an item that is not well-formed is
skipped with its line, the others are read.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ..errors import CatalogError
from .catalog import CatalogWarning, FeedLimits, Records, _FeedRows, _key, read_price, read_stock, sniff_delimiter

GOOGLE_NS = "http://base.google.com/ns/1.0"
XML_SUFFIXES = (".xml", ".rss", ".atom")
FORMATS = ("merchant", "merchant_xml", "shopify", "woocommerce", "generic")

# Merchant Center attribute (as _key() of its name without "g:") -> canonical field.
MERCHANT_FIELDS = {"id": "id", "title": "name", "link": "url", "availability": "in_stock", "color": "colour",
                   "gender": "gender", "itemgroupid": "group"}
_COLOUR_OPTIONS = {"color", "colour", "pacolor", "pacolour"}
_SIZE_OPTIONS = {"size", "pasize"}
_URL_LIST = re.compile(r",\s*(?=https?://)", re.IGNORECASE)  # a comma inside a URL stays in it
_CATEGORY_LIST = re.compile(r"(?<!\\),\s*")  # WooCommerce escapes a comma inside a category name as "\,"


def feed_format(path: Path) -> str:
    """One of :data:`FORMATS`, from the file's first bytes and its name."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".parquet"):
        return "generic"
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") or suffix in XML_SUFFIXES:
        return "merchant_xml"
    line = head.decode("utf-8-sig", errors="replace").splitlines()[0] if head.strip() else ""
    delimiter = "\t" if line.count("\t") > line.count(",") else ","
    keys = {_column_key(name) for name in next(csv.reader([line], delimiter=delimiter), [])}
    if "handle" in keys and keys & {"variantprice", "imagesrc", "variantsku"}:
        return "shopify"
    if "regularprice" in keys or {"parent", "images", "type"} <= keys:
        return "woocommerce"
    if "imagelink" in keys:
        return "merchant"
    return "generic"


def read_format(path: Path, kind: str, limits: FeedLimits | None = None) -> tuple[dict[str, dict], list[CatalogWarning]]:
    """A feed of a known ``kind`` (see :func:`feed_format`) -> ({id: record}, warnings), as ``read_feed``."""
    path, limits = Path(path), limits or FeedLimits()
    issues: list[CatalogWarning] = []
    if kind == "merchant_xml":
        records = Records(path, "item", limits, issues)
        _merchant_cards(((n, _merchant(values, names), too_long)
                         for n, values, too_long, names in _xml_items(path, limits, issues)), records)
        return records.products, issues
    rows = _FeedRows(path, issues, limits, sniff_delimiter(path))
    records = Records(path, rows.unit, limits, issues)
    if kind == "merchant":
        def items():
            for n, row in rows:
                values, too_long = _clipped(row, limits)
                yield n, _merchant({k: [v] for k, v in values.items() if v}, _names(row)), too_long

        _merchant_cards(items(), records)
    elif kind == "shopify":
        _shopify(rows, records)
    elif kind == "woocommerce":
        _woocommerce(rows, records)
    else:
        raise CatalogError(f"Unknown feed format {kind!r}; known: {', '.join(FORMATS)}.")
    return records.products, issues


def _column_key(name: str) -> str:
    return _key(_plain(name))


def _plain(name: str) -> str:
    """A column's name as the shop wrote it, without Merchant Center's "g:" prefix."""
    name = name.strip()
    return name[2:] if name.lower().startswith("g:") else name


def _names(row: dict) -> dict[str, str]:
    return {_column_key(col): _plain(col) for col in row}


def _clipped(row: dict, limits: FeedLimits) -> tuple[dict[str, str], list[str]]:
    """A row keyed by _column_key, values stripped; values over ``field_chars`` emptied and named."""
    values, too_long = {}, []
    for col, value in row.items():
        value = "" if value is None else str(value).strip()
        if len(value) > limits.field_chars:
            too_long.append(col)
            value = ""
        values.setdefault(_column_key(col), value)
    return values, too_long


def _image_list(value: str) -> list[str]:
    """A comma-separated list of image URLs (or of paths, when it holds no URL)."""
    parts = _URL_LIST.split(value) if "://" in value else value.split(",")
    return [p.strip() for p in parts if p.strip()]


def _steps(path: str) -> list[str]:
    """'Apparel > Tops > T-Shirts' -> ['Apparel', 'Tops', 'T-Shirts']."""
    return [step.strip() for step in re.split(r"\s*>\s*", path or "") if step.strip()]


def _merchant(values: dict[str, list[str]], names: dict[str, str]) -> dict:
    """A Merchant Center product (attribute key -> its values, repeated attributes in order; ``names``: key ->
    the attribute's name as written, for what is kept in ``extra``) -> a record."""
    rec: dict = {"extra": {}}
    main, more = [], []
    for key, vals in values.items():
        first = vals[0]
        if key in MERCHANT_FIELDS:
            rec[MERCHANT_FIELDS[key]] = first
        elif key == "imagelink":
            main = _image_list(first)[:1]
        elif key == "additionalimagelink":
            more = [url for v in vals for url in _image_list(v)]
        elif key == "producttype":  # the shop's own taxonomy: its last step is the garment type
            steps = _steps(first)
            rec["type"] = steps[-1] if steps else None
            if len(steps) > 1:
                rec["category"] = steps[0]
            rec["extra"]["product_type"] = first
        elif key not in ("price", "saleprice"):
            rec["extra"][names.get(key, key)] = first if len(vals) == 1 else vals
    regular, sale = (values.get("price") or [None])[0], (values.get("saleprice") or [None])[0]
    # The shopper pays the sale price while there is one; the regular one is kept beside it.
    rec["price"] = sale or regular
    if sale and regular:
        rec["extra"]["regular_price"] = regular
    rec["images"] = main + more
    return rec


def _merchant_cards(items, records: Records) -> None:
    """Merchant Center products, one per row or item, except variants: the rows of one ``item_group_id`` are one
    product (one card, id = the group's id) with its colours, sizes, price range and every variant's pictures,
    in stock when any variant is, as a Shopify handle or a WooCommerce parent is. At the first row of its group."""
    order: list = []
    groups: dict[str, list] = {}
    for n, rec, too_long in items:
        group = (rec.get("group") or "").strip()
        if not group:
            order.append((n, rec, too_long))
            continue
        if group not in groups:
            groups[group] = []
            order.append(group)
        groups[group].append((n, rec, too_long))
    for entry in order:
        records.add(*(_variant_card(entry, groups[entry]) if isinstance(entry, str) else entry))


def _variant_card(group: str, members: list) -> tuple[int, dict, list]:
    """The rows of one variant group -> (its first row's position, one record, the fields too long in any)."""
    first = members[0][1]
    variants = [rec for _, rec, _ in members]
    rec = {key: first.get(key) for key in ("name", "type", "category", "gender")}
    rec.update(id=group, group=group, name=_common_title([v.get("name") or "" for v in variants]) or first.get("name"))
    in_stock = [read_stock(v.get("in_stock")) is not False for v in variants]
    # The shop's page to send a shopper to: the first variant that can be bought.
    rec["url"] = next((v.get("url") for v, ok in zip(variants, in_stock) if ok and v.get("url")), first.get("url"))
    rec["extra"] = {k: v for k, v in first["extra"].items() if k not in ("size", "regular_price")}
    rec["extra"]["variants"] = [{"id": v.get("id"), "colour": v.get("colour"), "size": v["extra"].get("size"),
                                 "price": v.get("price"), "availability": v.get("in_stock"), "url": v.get("url")}
                                for v in variants]
    _options([("color", v.get("colour") or "") for v in variants] + [("size", str(v["extra"].get("size") or ""))
                                                                        for v in variants], rec)
    _finish_prices(rec, [v.get("price") or "" for v in variants], in_stock)
    rec["images"] = list(dict.fromkeys(url for v in variants for url in v.get("images") or []))
    _picture_colours(rec, [(url, v.get("colour")) for v in variants for url in v.get("images") or []])
    return members[0][0], rec, [name for _, _, too_long in members for name in too_long]


def _common_title(titles: list[str]) -> str:
    """The words every variant's title starts with ("Tee - Red - M", "Tee - Blue - S" -> "Tee"), or ""."""
    words = [t.split() for t in titles if t]
    common = []
    for column in zip(*words):
        if len(set(column)) > 1:
            break
        common.append(column[0])
    return " ".join(common).rstrip(" -|/,:") if len(words) > 1 else (titles[0] if titles else "")


def _xml_items(path: Path, limits: FeedLimits, issues: list[CatalogWarning]):
    """(item number, {attribute key: [values]}, too-long attributes, {key: name}) for each <item> / <entry> of an XML feed."""
    import defusedxml.ElementTree as ET
    from defusedxml import DefusedXmlException

    if path.stat().st_size > limits.bytes:
        raise CatalogError(f"Product feed {path} is larger than {limits.bytes:,} bytes (setting feed_max_bytes). "
                           "Split it, or raise the limit with --feed-max-bytes.")
    data = path.read_bytes()
    try:
        elements = [el for el in ET.fromstring(data).iter() if _local(el.tag) in ("item", "entry")]
        chunks = [(i, None, el) for i, el in enumerate(elements, 1)]
    except DefusedXmlException as exc:
        raise CatalogError(f"Product feed {path} declares a DTD or entities ({type(exc).__name__}), refused: a feed "
                           "must not expand entities or load external files. Export it without a DOCTYPE.") from None
    except ET.ParseError as exc:
        chunks = list(_recovered(data, path, str(exc), issues))
    for n, (i, line, el) in enumerate(chunks, 1):
        if n > limits.rows:
            raise CatalogError(f"Product feed {path} has more than {limits.rows:,} items (setting feed_max_rows). "
                               "Split it, or raise the limit with --feed-max-rows.")
        plain: dict[str, list[str]] = {}
        google: dict[str, list[str]] = {}
        names: dict[str, str] = {}
        too_long = []
        for child in list(el)[: limits.columns]:
            if len(child):  # nested attributes (g:shipping, g:tax): not read
                continue
            local = _local(child.tag)
            value = (child.text or "").strip() or (child.get("href") or "").strip()  # Atom: <link href="..."/>
            if not value:
                continue
            if len(value) > limits.field_chars:
                too_long.append(local)
                continue
            # A g: attribute wins over the plain element of the same name (Atom's own <id>, <title>).
            target = google if child.tag.startswith("{" + GOOGLE_NS + "}") else plain
            target.setdefault(_column_key(local), []).append(value)
            names.setdefault(_column_key(local), local)
        yield i, {**plain, **google}, too_long, names


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


_ITEM = re.compile(rb"<(item|entry)\b[^>]*>.*?</\1\s*>", re.DOTALL)
_XMLNS = re.compile(rb"""\sxmlns(?::[\w.-]+)?\s*=\s*(?:"[^"]*"|'[^']*')""")


def _recovered(data: bytes, path: Path, problem: str, issues: list[CatalogWarning]):
    """The items of a feed that is not well-formed XML, each parsed alone: a broken item is skipped with its line."""
    import defusedxml.ElementTree as ET

    first = _ITEM.search(data)
    declarations = b"".join(_XMLNS.findall(data[: first.start()] if first else data[:4096]))
    found = 0
    for i, match in enumerate(_ITEM.finditer(data), 1):
        line = data.count(b"\n", 0, match.start()) + 1
        try:
            root = ET.fromstring(b"<stylelens-items" + declarations + b">" + match.group() + b"</stylelens-items>")
        except Exception as exc:  # ParseError, or a DTD/entity refused inside the item
            issues.append(CatalogWarning("bad_line", f"{path.name} item {i} (line {line}) is not well-formed XML ({exc}), "
                                         "skipped.", path=str(path), line=line, value=match.group()[:200].decode("utf-8", "replace")))
            continue
        found += 1
        yield i, line, root[0]
    if not found:
        raise CatalogError(f"Product feed {path} is not well-formed XML ({problem}) and no <item> or <entry> could be "
                           "read from it. Check the export.")


def _variant_in_stock(qty: str, tracker: str, policy: str) -> bool:
    """Shopify: a variant is for sale when its stock is not tracked, it sells when out ('continue'), or has stock."""
    if not tracker or policy.lower() == "continue" or qty == "":
        return True
    return read_stock(qty) is not False


def _price_range(prices: list[str]) -> tuple[str | None, str | None]:
    """(lowest, highest) of price texts, as written; the unreadable ones are left to the record's warnings."""
    read = sorted(((p, read_price(p).amount) for p in prices if p), key=lambda pa: (pa[1] is None, pa[1] or 0))
    good = [p for p, amount in read if amount is not None]
    if not good:
        return (read[0][0] if read else None), None
    return good[0], (good[-1] if read_price(good[-1]).amount != read_price(good[0]).amount else None)


def _options(names_values: list[tuple[str, str]], rec: dict) -> None:
    """Colour and size options of a product's variants -> colour (the first), extra colours / sizes (all)."""
    found: dict[str, dict[str, None]] = {"colour": {}, "size": {}}  # values in order, once each
    for name, value in names_values:
        key = _key(name) if value else ""
        if key in _COLOUR_OPTIONS or key in _SIZE_OPTIONS:
            found["colour" if key in _COLOUR_OPTIONS else "size"][value] = None
    colours, sizes = list(found["colour"]), list(found["size"])
    if colours:
        rec.setdefault("colour", colours[0])
        if len(colours) > 1:
            rec["extra"]["colours"] = colours
    if sizes:
        rec["extra"]["sizes"] = sizes


def _picture_colours(rec: dict, pictures: list[tuple[str, str | None]]) -> None:
    """Which colour each variant's picture shows (``extra.picture_colours``, URL -> colour), where the variants
    have more than one colour: the picture's view is labelled with it, so a colour filter finds the card by any
    of its colours (``build.feed.with_views``)."""
    shown: dict[str, str] = {}
    for url, colour in pictures:
        if url and colour:
            shown.setdefault(url, colour)
    if len(set(shown.values())) > 1 or len(rec["extra"].get("colours") or []) > 1:
        rec["extra"]["picture_colours"] = shown


def _finish_prices(rec: dict, prices: list[str], stock: list[bool]) -> None:
    low, high = _price_range(prices)
    rec["price"] = low
    if high:
        rec["extra"]["price_max"] = high  # the variants' price range: lowest in 'price'
    rec["in_stock"] = "yes" if (any(stock) or not stock) else "no"  # in stock when any variant is


def _shopify(rows, records: Records) -> None:
    """Shopify's product CSV: rows grouped by Handle (the product); the first row holds the product's fields."""
    products: dict[str, dict] = {}
    for n, row in rows:
        values, too_long = _clipped(row, records.limits)
        handle = values.get("handle", "")
        if not handle:
            records.warn(n, "no_id", "no Handle, skipped", fld="id")
            continue
        p = products.get(handle)
        if p is None:
            names = [values.get(f"option{i}name", "") for i in (1, 2, 3)]  # the product's first row names its options
            p = products[handle] = {"line": n, "first": values, "too_long": too_long, "images": [], "variant_images": [],
                                    "picture_colours": [], "prices": [], "stock": [], "options": [], "names": names,
                                    "colour": next((i for i, name in enumerate(names, 1) if _key(name) in _COLOUR_OPTIONS), None)}
        names = p["names"]
        if values.get("imagesrc"):
            position = values.get("imageposition", "")
            p["images"].append((int(position) if position.isdigit() else 1 << 30, len(p["images"]), values["imagesrc"]))
        if values.get("variantprice") or values.get("option1value") or values.get("variantsku"):
            p["prices"].append(values.get("variantprice", ""))
            p["stock"].append(_variant_in_stock(values.get("variantinventoryqty", ""),
                                                values.get("variantinventorytracker", ""),
                                                values.get("variantinventorypolicy", "")))
            p["options"] += [(name, values.get(f"option{i}value", "")) for i, name in zip((1, 2, 3), names)]
            if values.get("variantimage"):
                p["variant_images"].append(values["variantimage"])
                colour = values.get(f"option{p['colour']}value") if p["colour"] else None
                p["picture_colours"].append((values["variantimage"], colour))
    for handle, p in products.items():
        first = p["first"]
        status = first.get("status", "").lower()
        published = first.get("published", "").lower()
        if (status and status != "active") or (not status and published in ("false", "no", "0")):
            records.warn(p["line"], "not_active", f"product {handle} is {status or 'not published'}, skipped", handle,
                         "status", status or published)
            continue
        rec = {"id": handle, "group": handle, "name": first.get("title"), "type": first.get("type"),
               "gender": first.get("googleshoppinggender"), "extra": {}}
        for key, name in (("vendor", "brand"), ("productcategory", "product_category"), ("tags", "tags")):
            if first.get(key):
                rec["extra"][name] = first[key]
        _options(p["options"], rec)
        _finish_prices(rec, p["prices"], p["stock"])
        rec["images"] = [src for _, _, src in sorted(p["images"])] + p["variant_images"]
        _picture_colours(rec, p["picture_colours"])
        records.add(p["line"], rec, p["too_long"])


def _woocommerce(rows, records: Records) -> None:
    """WooCommerce's product CSV: a product with its variation rows (Parent: 'id:ID' or the parent's SKU) is one."""
    parents: dict[str, dict] = {}  # product key ('id:ID' and SKU) -> its entry
    entries: list[dict] = []
    orphans: list[tuple[int, dict, list]] = []
    for n, row in rows:
        values, too_long = _clipped(row, records.limits)
        kind = values.get("type", "").lower()
        if "variation" in kind:
            orphans.append((n, values, too_long))
            continue
        entry = {"line": n, "values": values, "too_long": too_long, "variations": []}
        entries.append(entry)
        if values.get("id"):
            parents["id:" + values["id"]] = entry
        if values.get("sku"):
            parents.setdefault(values["sku"], entry)
    for n, values, too_long in orphans:
        parent = parents.get(values.get("parent", ""))
        if parent is not None:
            parent["variations"].append(values)
        else:  # its parent is not in the feed: a product of its own, grouped by the parent it names
            records.warn(n, "orphan_variation", f"variation {values.get('id') or values.get('sku')} names parent "
                         f"{values.get('parent')!r}, which is not in the feed; read as a product of its own",
                         values.get("id") or values.get("sku"), "parent", values.get("parent"))
            entries.append({"line": n, "values": values, "too_long": too_long, "variations": [], "orphan": True})
    for entry in sorted(entries, key=lambda e: e["line"]):
        v = entry["values"]
        pid = v.get("id") or v.get("sku")
        if v.get("published", "1") not in ("1", ""):
            records.warn(entry["line"], "not_active", f"product {pid} is not published, skipped", pid, "published",
                         v.get("published"))
            continue
        variations = [x for x in entry["variations"] if x.get("published", "1") in ("1", "")]
        categories = _CATEGORY_LIST.split(v.get("categories", "")) if v.get("categories") else []
        steps = [s.replace("\\,", ",") for s in _steps(categories[0])] if categories else []
        rec = {"id": pid, "name": v.get("name"), "type": steps[-1] if steps else None,
               "category": steps[0] if len(steps) > 1 else None, "extra": {},
               "group": pid if variations else (v.get("parent") if entry.get("orphan") else None)}
        for key, name in (("categories", "categories"), ("tags", "tags"), ("brands", "brand"), ("sku", "sku")):
            if v.get(key):
                rec["extra"][name] = v[key]
        options, pictures = [], []  # pictures: (URL, the colour its variation is) for each variation's picture
        for x in [v] + variations:
            colour: str | None = None
            colour_named = False  # a variation's colour: its first colour attribute's value (one value)
            for i in range(1, 10):
                name, value = x.get(f"attribute{i}name"), x.get(f"attribute{i}values")
                if not name:
                    break
                key = _key(name)
                if key == "gender":
                    rec.setdefault("gender", value)
                elif key in _COLOUR_OPTIONS and not colour_named:
                    colour, colour_named = value or None, True
                options += [(name, part) for part in _CATEGORY_LIST.split(value or "") if part]
            if x is not v:
                pictures += [(url, colour) for url in _image_list(x.get("images", ""))]
        _options(options, rec)
        priced = variations or [v]
        _finish_prices(rec, [x.get("saleprice") or x.get("regularprice", "") for x in priced],
                       [read_stock(x.get("instock", "")) is not False for x in priced])
        regular = v.get("regularprice")
        if v.get("saleprice") and regular and not variations:
            rec["extra"]["regular_price"] = regular
        rec["images"] = _image_list(v.get("images", "")) + [url for url, _ in pictures]
        _picture_colours(rec, pictures)
        records.add(entry["line"], rec, entry["too_long"])
