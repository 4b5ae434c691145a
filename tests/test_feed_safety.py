"""A feed is untrusted input: its files stay in the catalog folder, its size is bounded, its prices are prices,
and the reports made from it are safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import json
import os

import pytest
from conftest import write_catalog

from stylelens.errors import CatalogError
from stylelens.intake.catalog import FeedLimits, load_catalog, read_feed, read_price


def _feed(folder, rows, name="products.csv"):
    path = folder / name
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_feed_images_outside_the_catalog_folder_are_refused_per_row(tmp_path):
    folder = tmp_path / "catalog"
    write_catalog(folder, n=3, feed=False)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "x.jpg").write_bytes((folder / "images" / "1000.jpg").read_bytes())
    _feed(folder, [{"id": "1000", "image": "../secret/x.jpg"}, {"id": "1001", "image": str(secret / "x.jpg")},
                   {"id": "1002", "image": "images/1002.jpg"}])
    cat = load_catalog(folder)
    outside = {w.id: w for w in cat.issues if w.code == "image_outside_catalog"}
    assert set(outside) == {"1000", "1001"}
    assert "outside the catalog folder" in str(outside["1000"])
    assert all(secret not in p.parents for p in cat.images.values())
    assert cat.images["1002"] == folder / "images" / "1002.jpg"
    # 1000 keeps the image named by its file stem: the refused path does not replace it.
    assert cat.images["1000"] == folder / "images" / "1000.jpg"


def test_links_the_operator_made_are_followed_but_a_feed_cannot_climb_out_through_dots(tmp_path):
    folder = tmp_path / "catalog"
    write_catalog(folder, n=2, feed=False)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "x.jpg").write_bytes((folder / "images" / "1000.jpg").read_bytes())
    os.symlink(tmp_path / "shared", folder / "more")  # the operator links a folder of images in
    _feed(folder, [{"id": "1000", "image": "more/x.jpg"}, {"id": "1001", "image": "more/../../shared/x.jpg"}])
    cat = load_catalog(folder)
    assert cat.images["1000"] == folder / "more" / "x.jpg"
    assert [(w.code, w.id) for w in cat.issues] == [("image_outside_catalog", "1001")]


def test_a_feed_with_too_many_columns_is_refused_in_one_line(tmp_path):
    path = _feed(tmp_path, [{"id": "1", **{f"c{i}": "x" for i in range(50)}}])
    with pytest.raises(CatalogError) as err:
        read_feed(path, FeedLimits(columns=40))
    assert "51 columns, more than 40" in str(err.value) and "--feed-max-columns" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_wide_header_is_read_whole(tmp_path):
    """20,000 columns: every extra column kept by name (the header is mapped in one pass)."""
    path = _feed(tmp_path, [{"id": "1", **{f"c{i}": str(i) for i in range(20_000)}}])
    products, issues = read_feed(path, FeedLimits(columns=30_000, extra_bytes=10**7))
    assert len(products["1"]["extra"]) == 20_000 and products["1"]["extra"]["c19999"] == "19999" and not issues


def test_new_keys_in_json_lines_count_towards_the_column_limit(tmp_path):
    path = tmp_path / "feed.jsonl"
    path.write_text(json.dumps({"id": "1"}) + "\n" + json.dumps({"id": "2", **{f"k{i}": i for i in range(10)}}) + "\n")
    with pytest.raises(CatalogError, match="more than 5"):
        read_feed(path, FeedLimits(columns=5))


def test_a_feed_with_too_many_rows_is_refused(tmp_path):
    path = _feed(tmp_path, [{"id": str(i)} for i in range(11)])
    with pytest.raises(CatalogError, match="more than 10 rows"):
        read_feed(path, FeedLimits(rows=10))
    assert len(read_feed(path, FeedLimits(rows=11))[0]) == 11


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_long_rows_values_and_extras_are_dropped_with_a_warning(tmp_path, suffix):
    rows = [{"id": "1", "name": "ok", "notes": "n"}, {"id": "2", "name": "x" * 500, "notes": "n"},
            {"id": "3", "name": "ok", "notes": "y" * 300}, {"id": "4", "name": "z" * 5000, "notes": "n"},
            {"id": "5", "name": "ok", "notes": "n"}]
    if suffix == ".csv":
        path = _feed(tmp_path, rows)
    else:
        path = tmp_path / "feed.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    products, issues = read_feed(path, FeedLimits(row_bytes=2000, field_chars=400, extra_bytes=200))
    codes = {(w.code, w.id) for w in issues}
    assert sorted(products) == ["1", "2", "3", "5"]  # row 4 is longer than 2,000 bytes: skipped
    assert products["2"]["name"] is None and ("field_too_long", "2") in codes
    assert products["3"]["extra"] == {} and ("extra_too_large", "3") in codes
    assert products["1"]["extra"] == {"notes": "n"} and products["5"]["name"] == "ok"
    assert any(w.code == "row_too_long" for w in issues)
    assert all("\n" not in str(w) for w in issues)


def test_a_csv_value_over_the_row_limit_skips_its_row_not_the_feed(tmp_path):
    """The csv module refuses such a value mid-file; the rows after it are still read."""
    path = tmp_path / "feed.csv"
    path.write_text("id,name\n1,a\n2,\"" + "b" * 300_000 + "\"\n3,d\n")
    products, issues = read_feed(path, FeedLimits(row_bytes=100_000))
    assert sorted(products) == ["1", "3"]
    assert [w.code for w in issues] == ["row_too_long"] and "line 3" in str(issues[0])


@pytest.mark.parametrize("text", ["Size 42", "0800 123", "42 EUR / kg", "3 for 10", "about 5"])
def test_text_that_is_not_a_price_is_no_price(text):
    assert read_price(text) == (None, read_price(text).currency, "bad_price")


@pytest.mark.parametrize("text,amount", [("Rs. 1,299", 1299.0), ("15.00 USD", 15.0), ("1 299 €", 1299.0),
                                         ("€12", 12.0), ("EUR 1.299,00", 1299.0), ("12,50", 12.5)])
def test_prices_as_shops_write_them_still_read(text, amount):
    assert read_price(text).amount == amount and read_price(text).problem is None


def test_reports_escape_values_a_spreadsheet_would_run(tmp_path, random_embedder):
    from stylelens import build_index

    folder = tmp_path / "catalog"
    rows = write_catalog(folder, n=4, feed=False)
    feed = [dict(r, price=p) for r, p in zip(rows.values(), ["=HYPERLINK(\"http://x\")", "+cmd|calc", "@SUM(A1)", "-"])]
    _feed(folder, feed)
    (folder / "images" / "=bad.jpg").write_bytes(b"not an image")
    build_index(folder, tmp_path / "index", embedder=random_embedder, workers=0, progress=False)
    with open(tmp_path / "index" / "warnings.csv", newline="") as fh:
        values = [row["value"] for row in csv.DictReader(fh)]
    assert "'=HYPERLINK(\"http://x\")" in values and "'+cmd|calc" in values and "'@SUM(A1)" in values
    assert not any(v and v[0] in "=+-@" for v in values)
    with open(tmp_path / "index" / "errors.csv", newline="") as fh:
        errors = list(csv.DictReader(fh))
    assert [e["id"] for e in errors] == ["'=bad"]
