import csv
import io
import json
import os
import threading

import pytest

from stylelens.intake.catalog import (
    WARNING_KEYS,
    CatalogWarning,
    find_feed,
    load_catalog,
    parse_in_stock,
    parse_price,
    read_feed,
    read_price,
    read_stock,
)
from stylelens.errors import CatalogError
from conftest import write_catalog


def test_feed_columns_are_mapped_and_extras_kept(catalog):
    folder, rows = catalog
    cat = load_catalog(folder)
    assert cat.feed.name == "products.csv"  # found without being named
    rec = cat.products["1000"]
    assert rec["name"] == rows["1000"]["productDisplayName"]
    assert rec["type"] == rows["1000"]["articleType"] and rec["colour"] == "Red"
    assert rec["price"] == 10.0 and rec["currency"] == "EUR" and rec["in_stock"] is True
    assert rec["category"] == "Apparel" and rec["subcategory"] == "Topwear"
    assert rec["extra"] == {"brand": "Brand0"}
    assert cat.products["1004"]["in_stock"] is False
    assert set(cat.images) == set(rows)


def test_jsonl_and_parquet_feeds_read_the_same(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [{"sku": "a1", "title": "Blue shirt", "color": "Blue", "price": "€19.90", "availability": "out of stock"},
               {"sku": "a2", "title": "Red dress", "color": "Red", "price": 35, "availability": "in stock"}]
    jsonl = tmp_path / "feed.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    parquet = tmp_path / "feed.parquet"
    pq.write_table(pa.Table.from_pylist([{**r, "price": str(r["price"])} for r in records]), parquet)
    for path in (jsonl, parquet):
        products, warnings = read_feed(path)
        assert warnings == []
        assert products["a1"]["name"] == "Blue shirt" and products["a1"]["colour"] == "Blue"
        assert products["a1"]["price"] == 19.90 and products["a1"]["in_stock"] is False
        assert products["a2"]["price"] == 35.0 and products["a2"]["in_stock"] is True


def test_products_without_image_and_images_without_product_are_reported(catalog):
    folder, rows = catalog
    (folder / "images" / "1003.jpg").unlink()
    (folder / "images" / "9999.jpg").write_bytes((folder / "images" / "1000.jpg").read_bytes())
    cat = load_catalog(folder)
    assert cat.without_image == ["1003"]
    assert cat.without_product == ["9999"]


def test_bad_feeds_say_what_to_do(tmp_path):
    (tmp_path / "noid.csv").write_text("name,price\nshirt,3\n")
    with pytest.raises(CatalogError, match="no id column"):
        read_feed(tmp_path / "noid.csv")
    (tmp_path / "broken.jsonl").write_text('{oops\n[1, 2]\n')
    with pytest.raises(CatalogError, match="no usable line .line 1 is not valid JSON"):
        read_feed(tmp_path / "broken.jsonl")
    with pytest.raises(CatalogError, match="does not exist"):
        read_feed(tmp_path / "missing.csv")
    dup = tmp_path / "dup.csv"
    dup.write_text("id,price\n1,abc\n1,2\n,3\n")
    products, warnings = read_feed(dup)
    assert list(products) == ["1"] and products["1"]["price"] is None
    assert [(w.code, w.line) for w in warnings] == [("bad_price", 2), ("duplicate_id", 3), ("no_id", 4)]
    text = [str(w) for w in warnings]
    assert "dup.csv line 2: price 'abc' of 1 is not a number" in text[0] and "duplicate id 1" in text[1]


def test_catalog_folder_errors(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CatalogError, match="No images found"):
        load_catalog(tmp_path / "empty")
    two = tmp_path / "two"
    write_catalog(two, n=2)
    (two / "other.jsonl").write_text("")
    with pytest.raises(CatalogError, match="several product feeds"):
        find_feed(two)


def test_images_are_found_recursively_and_duplicate_ids_reported(tmp_path):
    write_catalog(tmp_path / "cat", n=3, feed=False)
    nested = tmp_path / "cat" / "images" / "deeper"
    nested.mkdir()
    (nested / "1000.png").write_bytes(b"x")  # same id as images/1000.jpg
    (nested / "2000.webp").write_bytes(b"x")
    (nested / "notes.txt").write_text("ignored")
    cat = load_catalog(tmp_path / "cat")
    assert sorted(cat.images) == ["1000", "1001", "1002", "2000"]
    assert any("already has id 1000" in w for w in cat.warnings)
    assert cat.record("2000") == {"id": "2000"}


def test_feed_image_column_names_the_file(tmp_path):
    write_catalog(tmp_path / "cat", n=2, feed=False)
    (tmp_path / "cat" / "feed.csv").write_text("id,image,name\nsku-1,images/1001.jpg,Shirt\n")
    cat = load_catalog(tmp_path / "cat")
    assert cat.images["sku-1"].name == "1001.jpg"
    assert "1001" not in cat.images  # the file belongs to sku-1 now
    assert cat.without_product == ["1000"]


PRICES = [
    # (cell, amount, currency named in it, warning code)
    ("12.50", 12.5, None, None),
    ("$1,299.00", 1299.0, "$", None),
    ("Rs. 1,299", 1299.0, "Rs", None),
    ("Rs.999", 999.0, "Rs", None),
    ("₹ 2,499", 2499.0, "INR", None),
    ("12,50", 12.5, None, None),
    ("1.299,00 €", 1299.0, "EUR", None),
    ("€19.90", 19.9, "EUR", None),
    ("1 299,00 EUR", 1299.0, "EUR", None),
    ("10 USD", 10.0, "USD", None),
    ("CHF 1'299.50", 1299.5, "CHF", None),
    ("1,299", 1299.0, None, None),
    ("1e3", 1000.0, None, None),
    ("1.5E+02", 150.0, None, None),
    ("1.299", 1.299, None, "ambiguous_price"),
    ("$-5", None, "$", "negative_price"),
    ("-5", None, None, "negative_price"),
    ("−5 €", None, "EUR", "negative_price"),
    (-3, None, None, "negative_price"),
    ("99,-", 99.0, None, None),
    ("0", 0.0, None, None),
    ("free", None, None, "bad_price"),
    ("1e999", None, None, "bad_price"),
    (True, None, None, "bad_price"),
    ("", None, None, None),
    (None, None, None, None),
    (float("nan"), None, None, None),
    (7, 7.0, None, None),
    (19.9, 19.9, None, None),
]


@pytest.mark.parametrize("cell,amount,currency,code", PRICES)
def test_read_price(cell, amount, currency, code):
    assert tuple(read_price(cell)) == (amount, currency, code)
    assert parse_price(cell) == amount


def test_decimal_prices_from_parquet():
    from decimal import Decimal

    assert read_price(Decimal("19.90")) == (19.9, None, None)


STOCK = [
    ("yes", True), ("in stock", True), ("In_Stock", True), ("available", True), ("", True), (None, True),
    ("1", True), ("3", True), ("2.0", True), (3, True), (True, True), (float("nan"), True),
    ("https://schema.org/InStock", True), ("LimitedAvailability", True),
    # can be ordered now, delivered later: in stock for a shopper
    ("https://schema.org/PreOrder", True), ("BackOrder", True), ("schema:PreSale", True), ("MadeToOrder", True),
    ("0", False), ("0.0", False), ("-1", False), (0, False), (0.0, False), (-2, False), (False, False),
    ("no", False), ("false", False), ("out of stock", False), ("out_of_stock", False), ("Sold out", False),
    ("https://schema.org/OutOfStock", False), ("http://schema.org/OutOfStock", False),
    ("https://www.schema.org/SoldOut", False), ("schema:OutOfStock", False), ("schema:SoldOut", False),
    ("https://schema.org/Discontinued", False), ("Discontinued", False), ("unavailable", False),
    ("maybe", None), ("ask us", None), ("https://schema.org/Banana", None),
]


@pytest.mark.parametrize("cell,value", STOCK)
def test_read_stock(cell, value):
    assert read_stock(cell) is value
    assert parse_in_stock(cell) is (value is not False)  # words we do not know count as in stock


def test_feed_warns_about_prices_and_stock_and_keeps_the_price_currency(tmp_path):
    feed = tmp_path / "feed.csv"
    feed.write_text("sku,price,availability\n"
                    "a,Rs. 1299,in stock\n"
                    "b,$-5,https://schema.org/OutOfStock\n"
                    "c,1.299,ask us\n"
                    "d,19.90,0.0\n")
    products, warnings = read_feed(feed)
    assert [(p["price"], p["currency"], p["in_stock"]) for p in products.values()] == [
        (1299.0, "Rs", True), (None, "$", False), (1.299, None, True), (19.9, None, False)]
    assert [(w.code, w.id, w.field, w.value, w.line) for w in warnings] == [
        ("negative_price", "b", "price", "$-5", 3), ("ambiguous_price", "c", "price", "1.299", 4),
        ("unknown_stock", "c", "in_stock", "ask us", 4)]
    assert "price unknown" in str(warnings[0]) and "counted as in stock" in str(warnings[2])

    with_column = tmp_path / "with_column.csv"
    with_column.write_text("id,price,currency\na,€19.90,EUR\nb,€5,USD\nc,$5,CAD\nd,€7,\n")
    products, warnings = read_feed(with_column)
    assert [p["currency"] for p in products.values()] == ["EUR", "USD", "CAD", "EUR"]
    assert [(w.code, w.id) for w in warnings] == [("currency_mismatch", "b")]  # "$" may well be CAD


def test_jsonl_lines_that_are_not_objects_are_skipped_with_their_line(tmp_path):
    feed = tmp_path / "feed.jsonl"
    feed.write_text('{"id": "a", "price": "€5"}\n'
                    "[1, 2]\n"
                    "\n"
                    "42\n"
                    '{"id": "b", "price": 7, "colour": "Red"}\n'
                    "{broken\n"
                    '"text"\n'
                    "null\n"
                    '{"id": "c"}\n')
    products, warnings = read_feed(feed)
    assert list(products) == ["a", "b", "c"]
    assert products["b"]["colour"] == "Red"  # a column the first line did not have
    assert [(w.code, w.line) for w in warnings] == [("bad_line", n) for n in (2, 4, 6, 7, 8)]
    messages = [str(w) for w in warnings]
    assert "line 2 is a JSON list, not an object" in messages[0] and "line 4 is a JSON number" in messages[1]
    assert "line 6 is not valid JSON" in messages[2] and messages[2].count("\n") == 0


def test_every_warning_is_kept_and_structured(tmp_path):
    folder = tmp_path / "cat"
    write_catalog(folder, n=3, feed=False)
    lines = ["id,price,stock"] + [f"p{i},-{i + 1},perhaps" for i in range(25)]
    (folder / "feed.csv").write_text("\n".join(lines) + "\n")
    cat = load_catalog(folder)
    assert len(cat.issues) == 50 and all(isinstance(w, CatalogWarning) for w in cat.issues)
    assert len(cat.warnings) == 50 and all(isinstance(w, str) for w in cat.warnings)  # as text, for old callers
    assert cat.warnings[-1] == str(cat.issues[-1]) and "line 26" in cat.warnings[-1]
    rows = cat.warning_rows()
    assert len(rows) == 50 and all(tuple(r) == WARNING_KEYS for r in rows)
    assert rows[-2] == {"code": "negative_price", "id": "p24", "field": "price", "value": "-25",
                        "path": str(folder / "feed.csv"), "line": 26, "message": cat.warnings[-2]}
    out = io.StringIO()
    writer = csv.DictWriter(out, WARNING_KEYS)
    writer.writeheader()
    writer.writerows(rows)
    assert len(out.getvalue().splitlines()) == 51


def test_entries_that_are_not_files_are_reported(tmp_path):
    folder = tmp_path / "cat"
    rows = write_catalog(folder, n=3)
    images = folder / "images"
    (images / "2000.jpg").mkdir()  # a folder named like an image...
    imagegen_copy = (images / "1000.jpg").read_bytes()
    (images / "2000.jpg" / "2001.jpg").write_bytes(imagegen_copy)  # ...whose images still count
    (images / "2002.jpg").symlink_to(images / "gone.jpg")
    (tmp_path / "outside.jpg").write_bytes(imagegen_copy)
    (images / "2003.png").symlink_to(tmp_path / "outside.jpg")  # a link to a real image is an image
    (images / "1002.jpg").unlink()
    (images / "1002.jpg").symlink_to(tmp_path / "nowhere.jpg")  # a product whose image link is broken
    if hasattr(os, "mkfifo"):
        os.mkfifo(images / "2004.jpg")
    result = {}
    thread = threading.Thread(target=lambda: result.update(cat=load_catalog(folder)), daemon=True)
    thread.start()
    thread.join(10)
    assert "cat" in result, "scanning the folder blocked"
    cat = result["cat"]
    assert sorted(cat.images) == ["1000", "1001", "2001", "2003"]
    problems = {p.id: p for p in cat.problems}
    expected = {"1002": "broken_link", "2000": "not_a_file", "2002": "broken_link"}
    if hasattr(os, "mkfifo"):
        expected["2004"] = "not_a_file"
        assert "FIFO" in problems["2004"].message
    assert {pid: p.code for pid, p in problems.items()} == expected
    assert "folder" in problems["2000"].message and "nowhere.jpg" in problems["1002"].message
    assert problems["2000"].path == str(images / "2000.jpg")
    assert all(len(p) == 4 for p in cat.problems)  # (id, path, code, message): an errors.csv row
    assert cat.without_image == ["1002"] and set(rows) >= {"1002"}


def test_feed_image_that_is_missing_is_warned(tmp_path):
    write_catalog(tmp_path / "cat", n=2, feed=False)
    (tmp_path / "cat" / "feed.csv").write_text("id,image\nsku-1,images/1001.jpg\nsku-2,images/none.jpg\n")
    cat = load_catalog(tmp_path / "cat")
    assert [(w.code, w.id, w.value) for w in cat.issues] == [("image_missing", "sku-2", "images/none.jpg")]


def test_ids_with_line_breaks_are_refused_as_keys(tmp_path):
    """An id is a key in every file the index writes (ids.txt holds one per line): a line break would shift them."""
    from PIL import Image

    from stylelens.intake.catalog import load_catalog

    (tmp_path / "images").mkdir()
    for name in ("good.jpg", "bad\nname.jpg"):
        Image.new("RGB", (8, 8), "red").save(tmp_path / "images" / name)
    (tmp_path / "products.csv").write_text('id,name\ngood,Good\n"two\nlines",Bad\n')
    catalog = load_catalog(tmp_path)
    assert list(catalog.images) == ["good"] and list(catalog.products) == ["good"]
    assert [w.code for w in catalog.issues].count("bad_id") == 2
