import json

import pytest

from stylelens.catalog import find_feed, load_catalog, parse_in_stock, parse_price, read_feed
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
    (tmp_path / "broken.jsonl").write_text('{"id": 1}\n{oops\n')
    with pytest.raises(CatalogError, match="line 2 is not valid JSON"):
        read_feed(tmp_path / "broken.jsonl")
    with pytest.raises(CatalogError, match="does not exist"):
        read_feed(tmp_path / "missing.csv")
    dup = tmp_path / "dup.csv"
    dup.write_text("id,price\n1,abc\n1,2\n,3\n")
    products, warnings = read_feed(dup)
    assert list(products) == ["1"] and products["1"]["price"] is None
    assert any("not a number" in w for w in warnings) and any("duplicate id 1" in w for w in warnings)
    assert any("no id" in w for w in warnings)


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


@pytest.mark.parametrize("text,value", [("12.50", 12.5), ("$1,299.00", 1299.0), ("", None), ("free", None), (7, 7.0)])
def test_parse_price(text, value):
    assert parse_price(text) == value


@pytest.mark.parametrize("text,value", [("yes", True), ("in stock", True), ("", True), ("0", False),
                                        ("out_of_stock", False), ("Sold out", False), (0, False), (3, True)])
def test_parse_in_stock(text, value):
    assert parse_in_stock(text) is value
