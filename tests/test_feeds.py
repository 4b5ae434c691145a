"""Product feeds as shops export them (Merchant Center TSV/XML, Shopify, WooCommerce), indexed from a real HTTP
server on 127.0.0.1 with faults; refresh with conditional requests; kill -9 during downloads, then resume."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from feedserver import FeedServer
from test_fetch import jpeg

from stylelens import build_index
from stylelens.errors import CatalogError
from stylelens.index import open_store
from stylelens.intake.catalog import read_feed
from stylelens.intake.feeds import feed_format

LOCAL = dict(allow_private_hosts=True, fetch_retries=1, fetch_backoff_s=0.05, fetch_timeout_s=1.0, workers=0,
             progress=False)
MERCHANT_HEADER = ["id", "title", "link", "image_link", "additional_image_link", "availability", "price", "sale_price",
                   "product_type", "google_product_category", "gender", "color", "size", "brand", "item_group_id"]


@pytest.fixture
def server():
    with FeedServer() as s:
        yield s


def merchant_row(pid, image, *, more="", availability="in_stock", price="15.00 USD", sale="", group="", colour="Red"):
    return [pid, f"Tee {pid}", f"https://shop.example/p/{pid}", image, more, availability, price, sale,
            "Apparel > Tops > T-Shirts", "Apparel & Accessories > Clothing > Shirts & Tops", "female", colour, "M",
            "Acme", group]


def write_tsv(path: Path, rows, header=MERCHANT_HEADER) -> Path:
    path.write_text("\n".join("\t".join(r) for r in [header] + rows) + "\n", encoding="utf-8")
    return path


def errors_csv(index: Path) -> dict[str, tuple[str, str]]:
    path = index / "errors.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as fh:
        return {row["id"]: (row["code"], row["message"]) for row in csv.DictReader(fh)}


def test_merchant_center_feed_over_http_with_faults_then_a_refresh(tmp_path, server, random_embedder):
    good = {f"G{i}": server.route(f"/img/g{i}.jpg", jpeg(i)) for i in range(4)}
    faults = {
        "NOTFOUND": server.url("/img/missing.jpg"),
        "FLAKY": server.route("/img/flaky.jpg", jpeg(10), fail_first=1),
        "HTML": server.route("/img/page.jpg", b"<!DOCTYPE html><html>shop</html>", content_type="text/html"),
        "MOVED": server.route("/img/moved.jpg", location="/img/g0-copy.jpg"),
        "SLOW": server.route("/img/slow.jpg", jpeg(11), delay_s=3),
        "HUGE": server.route("/img/huge.jpg", b"\xff\xd8\xff" + bytes(3_000_000)),
        "FILE": "file:///etc/passwd",
        "FTP": "ftp://example.com/a.jpg",
    }
    server.route("/img/g0-copy.jpg", jpeg(12))
    # One picture per product here (feed_views=1): views and variant groups are tests/test_feed_views.py's.
    rows = [merchant_row(pid, url, more=f"{url}, {url}?side") for pid, url in good.items()]
    rows[1][7] = "12.50 USD"  # a sale price
    rows[2][5] = "out_of_stock"
    rows += [merchant_row(pid, url) for pid, url in faults.items()]
    rows.append(["", "no id", "", good["G0"]])
    rows.append(["BROKEN\x00", "nul byte"])
    rows.append(['"UNTERMINATED', "a quote that runs to the end of the file"])
    feed_url = server.route("/feeds/google.tsv", write_tsv(tmp_path / "g.tsv", rows).read_bytes(), content_type="text/plain")
    index = tmp_path / "index"
    report = build_index(feed_url, index, embedder=random_embedder, fetch_max_image_bytes=1_000_000, feed_views=1, **LOCAL)

    assert report.indexed == 6  # G0..G3, FLAKY (after a retry), MOVED (after the redirect)
    errors = errors_csv(index)
    assert {pid: code for pid, (code, _) in errors.items()} == {
        "NOTFOUND": "http_status", "HTML": "not_an_image", "SLOW": "timeout", "HUGE": "too_large",
        "FILE": "refused_url", "FTP": "refused_url"}
    assert "HTTP 404" in errors["NOTFOUND"][1] and "text/html" in errors["HTML"][1]
    with open(index / "warnings.csv", newline="") as fh:
        codes = [row["code"] for row in csv.DictReader(fh)]
    assert sorted(codes) == ["bad_id", "bad_id", "no_id"]
    store = open_store(index)
    g1, g2 = store.product("G1"), store.product("G2")
    assert (g1["price"], g1["currency"], g1["type"], g1["category"], g1["colour"]) == (12.5, "USD", "T-Shirts", "Apparel", "Red")
    assert g1["extra"]["regular_price"] == "15.00 USD" and g1["extra"]["brand"] == "Acme"
    assert g1["extra"]["google_product_category"] == "Apparel & Accessories > Clothing > Shirts & Tops"
    assert g1["extra"]["images"] == [good["G1"], good["G1"] + "?side"]  # main first, each once
    assert g2["in_stock"] is False and "group" not in g2["extra"]
    assert Path(g1["image_path"]).read_bytes() == jpeg(1) and Path(g1["image_path"]).parent == index / "downloads"
    store.close()

    # Refresh: a price and a stock change, one product gone, one image changed; no unchanged image body sent again.
    rows[0][6], rows[2][5] = "19.00 USD", "in_stock"
    del rows[3]  # G3 leaves the feed
    server.route("/feeds/google.tsv", write_tsv(tmp_path / "g.tsv", rows).read_bytes(), content_type="text/plain")
    server.route("/img/g1.jpg", jpeg(21))
    mark = len(server.log)
    report = build_index(feed_url, index, embedder=random_embedder, fetch_max_image_bytes=1_000_000, feed_views=1, **LOCAL)
    assert (report.indexed, report.unchanged, report.removed) == (1, 4, 1)
    sent_again = {path for _, path, status, _ in server.log[mark:] if status == 200 and path.startswith("/img/")}
    # Only the changed image and the ones that failed (nothing cached to ask about) are sent with a body.
    assert sent_again == {"/img/g1.jpg", "/img/page.jpg", "/img/slow.jpg", "/img/huge.jpg"}
    assert {path for _, path, status, _ in server.log[mark:] if status == 304} == {
        "/img/g0.jpg", "/img/g2.jpg", "/img/flaky.jpg", "/img/g0-copy.jpg"}
    store = open_store(index)
    assert store.product("G0")["price"] == 19.0 and store.product("G2")["in_stock"] is True
    assert "G3" not in store.image_hashes()
    store.close()
    downloads = index / "downloads"
    assert len(list(downloads.glob("*.json"))) == 6 and len(list(downloads.glob("*.feed.tsv"))) == 1  # G3's image left
    assert [path for _, path, status, _ in server.log[mark:] if path.startswith("/feeds/")] == ["/feeds/google.tsv"]


def test_a_refused_private_host_without_the_switch(tmp_path, server, random_embedder):
    url = server.route("/a.jpg", jpeg(1))
    local = tmp_path / "shop"
    local.mkdir()
    (local / "b.jpg").write_bytes(jpeg(2))
    feed = write_tsv(local / "feed.tsv", [merchant_row("A", url), merchant_row("B", "b.jpg"),
                                          merchant_row("C", "../outside.jpg"), merchant_row("D", "ftp://x/y.jpg")])
    report = build_index(feed, tmp_path / "index", embedder=random_embedder, workers=0, progress=False)
    assert report.indexed == 1  # the local image beside the feed
    assert {pid: code for pid, (code, _) in errors_csv(tmp_path / "index").items()} == {
        "A": "refused_host", "C": "image_outside_catalog", "D": "refused_url"}
    assert server.log == []
    with pytest.raises(CatalogError, match="allow_private_hosts"):  # the feed's own URL too
        build_index(server.route("/f.tsv", feed.read_bytes()), tmp_path / "index2", embedder=random_embedder,
                    workers=0, progress=False)


GOOGLE_RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0">
<channel><title>Shop</title><link>https://shop.example</link>
<item>
  <g:id>X1</g:id><title>Linen dress</title><link>https://shop.example/x1</link>
  <g:image_link>https://cdn.example/x1.jpg</g:image_link>
  <g:additional_image_link>https://cdn.example/x1-back.jpg</g:additional_image_link>
  <g:additional_image_link>https://cdn.example/x1-side.jpg</g:additional_image_link>
  <g:availability>preorder</g:availability><g:price>49.90 EUR</g:price>
  <g:product_type>Women &gt; Dresses &gt; Summer Dresses</g:product_type><g:item_group_id>D1</g:item_group_id>
  <g:shipping><g:country>DE</g:country><g:price>4.90 EUR</g:price></g:shipping>
</item>
<item>
  <g:id>X2</g:id><g:title>Broken</g:title><g:price>10 EUR</wrong>
</item>
<item>
  <g:id>X3</g:id><g:title>Wool scarf</g:title><g:image_link>https://cdn.example/x3.jpg</g:image_link>
  <g:availability>backorder</g:availability><g:price>25.00 EUR</g:price><g:sale_price>19.99 EUR</g:sale_price>
</item>
</channel></rss>
"""

GOOGLE_ATOM = """<?xml version="1.0"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:g="http://base.google.com/ns/1.0">
<title>Shop</title>
<entry><id>tag:shop.example,2026:1</id><g:id>A1</g:id><title>Denim jacket</title>
  <link href="https://shop.example/a1"/><g:image_link>https://cdn.example/a1.jpg</g:image_link>
  <g:availability>out_of_stock</g:availability><g:price>89.00 USD</g:price><g:gender>male</g:gender></entry>
</feed>
"""


def test_merchant_center_xml_rss_and_atom(tmp_path):
    rss = tmp_path / "google.xml"
    rss.write_text(GOOGLE_RSS)
    assert feed_format(rss) == "merchant_xml"
    products, issues = read_feed(rss)
    # The item that is not well-formed is skipped, the others read; X1 names a variant group (D1): the group's card.
    assert list(products) == ["D1", "X3"]
    assert [(w.code, w.line) for w in issues] == [("bad_line", 13)]
    x1, x3 = products["D1"], products["X3"]
    assert x1["images"] == ["https://cdn.example/x1.jpg", "https://cdn.example/x1-back.jpg", "https://cdn.example/x1-side.jpg"]
    assert (x1["name"], x1["type"], x1["category"], x1["group"], x1["price"], x1["currency"], x1["in_stock"]) == (
        "Linen dress", "Summer Dresses", "Women", "D1", 49.9, "EUR", True)
    assert "shipping" not in x1["extra"] and x1["extra"]["product_type"] == "Women > Dresses > Summer Dresses"
    assert (x3["price"], x3["in_stock"], x3["extra"]["regular_price"]) == (19.99, True, "25.00 EUR")
    atom = tmp_path / "feed.atom"
    atom.write_text(GOOGLE_ATOM)
    a1 = read_feed(atom)[0]["A1"]  # the g:id wins over Atom's own <id>
    assert (a1["url"], a1["in_stock"], a1["gender"], a1["images"]) == ("https://shop.example/a1", False, "male",
                                                                       ["https://cdn.example/a1.jpg"])


def test_xml_entities_are_refused(tmp_path):
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
                    '<rss xmlns:g="http://base.google.com/ns/1.0"><channel><item><g:id>&b;</g:id></item></channel></rss>')
    with pytest.raises(CatalogError, match="DTD or entities"):
        read_feed(bomb)
    external = tmp_path / "xxe.xml"
    external.write_text('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                        '<rss><channel><item><id>&x;</id></item></channel></rss>')
    with pytest.raises(CatalogError, match="refused"):
        read_feed(external)


SHOPIFY = [
    ["Handle", "Title", "Body (HTML)", "Vendor", "Type", "Tags", "Published", "Option1 Name", "Option1 Value",
     "Option2 Name", "Option2 Value", "Variant SKU", "Variant Inventory Tracker", "Variant Inventory Qty",
     "Variant Inventory Policy", "Variant Price", "Variant Compare At Price", "Image Src", "Image Position",
     "Variant Image", "Google Shopping / Gender", "Status"],
    ["classic-tee", "Classic Tee", "<p>Soft</p>", "Acme", "T-Shirts", "cotton", "TRUE", "Color", "Black", "Size", "S",
     "TEE-BLK-S", "shopify", "0", "deny", "19.00", "", "https://cdn.shopify.example/tee-back.jpg", "2", "", "Unisex", "active"],
    ["classic-tee", "", "", "", "", "", "", "", "Black", "", "M", "TEE-BLK-M", "shopify", "0", "deny", "19.00", "",
     "https://cdn.shopify.example/tee-front.jpg", "1", "", "", ""],
    ["classic-tee", "", "", "", "", "", "", "", "White", "", "M", "TEE-WHT-M", "shopify", "3", "deny", "21.00", "", "", "",
     "https://cdn.shopify.example/tee-white.jpg", "", ""],
    ["sold-out-cap", "Cap", "", "Acme", "Caps", "", "TRUE", "Title", "Default Title", "", "", "CAP", "shopify", "0",
     "deny", "12.00", "", "https://cdn.shopify.example/cap.jpg", "1", "", "", "active"],
    ["draft-bag", "Bag", "", "Acme", "Bags", "", "FALSE", "Title", "Default Title", "", "", "BAG", "", "", "deny",
     "40.00", "", "https://cdn.shopify.example/bag.jpg", "1", "", "", "draft"],
]


def write_csv(path: Path, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


def test_shopify_export_is_one_product_per_handle(tmp_path):
    feed = write_csv(tmp_path / "products_export.csv", SHOPIFY)
    assert feed_format(feed) == "shopify"
    products, issues = read_feed(feed)
    assert list(products) == ["classic-tee", "sold-out-cap"]
    assert [(w.code, w.id) for w in issues] == [("not_active", "draft-bag")]
    tee, cap = products["classic-tee"], products["sold-out-cap"]
    assert tee["images"] == ["https://cdn.shopify.example/tee-front.jpg", "https://cdn.shopify.example/tee-back.jpg",
                             "https://cdn.shopify.example/tee-white.jpg"]  # by Image Position, then variant images
    assert (tee["name"], tee["type"], tee["group"], tee["price"], tee["in_stock"], tee["gender"], tee["colour"]) == (
        "Classic Tee", "T-Shirts", "classic-tee", 19.0, True, "Unisex", "Black")
    assert tee["extra"]["price_max"] == "21.00" and tee["extra"]["colours"] == ["Black", "White"]
    assert tee["extra"]["sizes"] == ["S", "M"] and tee["extra"]["brand"] == "Acme"
    assert cap["in_stock"] is False and cap["price"] == 12.0  # its one variant has none left


WOO_HEADER = ["ID", "Type", "SKU", "Name", "Published", "In stock?", "Stock", "Sale price", "Regular price", "Categories",
              "Images", "Parent", "Attribute 1 name", "Attribute 1 value(s)", "Attribute 2 name", "Attribute 2 value(s)"]
WOO = [
    WOO_HEADER,
    ["101", "variable", "HOODIE", "Zip hoodie", "1", "1", "", "", "", "Clothing > Hoodies, Sale",
     "https://shop.example/wp-content/hoodie.jpg, https://shop.example/wp-content/hoodie-back.jpg", "", "Color",
     "Grey, Navy", "Size", "M, L"],
    ["102", "variation", "HOODIE-GREY", "Zip hoodie - Grey", "1", "0", "0", "", "45", "", "", "id:101", "Color", "Grey", "", ""],
    ["103", "variation", "HOODIE-NAVY", "Zip hoodie - Navy", "1", "1", "4", "39", "45", "",
     "https://shop.example/wp-content/hoodie-navy.jpg", "HOODIE", "Color", "Navy", "", ""],
    ["104", "simple", "BELT", "Leather belt", "1", "backorder", "", "20", "25", "Accessories > Belts",
     "https://shop.example/wp-content/belt.jpg", "", "", "", "", ""],
    ["105", "simple", "HIDDEN", "Hidden", "0", "1", "", "", "10", "Clothing", "https://shop.example/x.jpg", "", "", "", "", ""],
    ["106", "variation", "LOST", "Lost variation", "1", "1", "", "", "30", "", "https://shop.example/lost.jpg", "id:999",
     "", "", "", ""],
]


def test_woocommerce_export_groups_variations_under_their_parent(tmp_path):
    feed = write_csv(tmp_path / "wc-product-export.csv", WOO)
    assert feed_format(feed) == "woocommerce"
    products, issues = read_feed(feed)
    assert list(products) == ["101", "104", "106"]
    assert sorted((w.code, w.id) for w in issues) == [("not_active", "105"), ("orphan_variation", "106")]
    hoodie, belt = products["101"], products["104"]
    assert hoodie["images"] == ["https://shop.example/wp-content/hoodie.jpg", "https://shop.example/wp-content/hoodie-back.jpg",
                                "https://shop.example/wp-content/hoodie-navy.jpg"]
    assert (hoodie["type"], hoodie["category"], hoodie["group"], hoodie["price"], hoodie["in_stock"]) == (
        "Hoodies", "Clothing", "101", 39.0, True)  # the navy one's sale price; in stock as the navy one is
    assert hoodie["extra"]["price_max"] == "45" and hoodie["extra"]["colours"] == ["Grey", "Navy"]
    assert hoodie["extra"]["sizes"] == ["M", "L"]
    assert (belt["price"], belt["in_stock"], belt["group"], belt["extra"]["regular_price"]) == (20.0, True, None, "25")
    assert products["106"]["group"] == "id:999"


def test_a_variants_picture_is_labelled_with_its_own_colour_whichever_option_holds_it(tmp_path):
    """Shopify: the colour is the product's second option (named on its first row only); WooCommerce: a variation's
    colour attribute comes after its size. Each variant picture is labelled with that variant's colour."""
    shopify = [SHOPIFY[0]] + [
        ["polo", "Polo", "", "Acme", "Polos", "", "TRUE", "Size", "S", "Colour", "Red", "P-R-S", "", "", "deny", "20.00", "",
         "https://cdn.shopify.example/polo.jpg", "1", "https://cdn.shopify.example/polo-red.jpg", "", "active"],
        ["polo", "", "", "", "", "", "", "", "M", "", "Blue", "P-B-M", "", "", "deny", "20.00", "", "", "",
         "https://cdn.shopify.example/polo-blue.jpg", "", ""]]
    products, _ = read_feed(write_csv(tmp_path / "products_export.csv", shopify))
    polo = products["polo"]
    assert (polo["colour"], polo["extra"]["colours"], polo["extra"]["sizes"]) == ("Red", ["Red", "Blue"], ["S", "M"])
    assert polo["extra"]["picture_colours"] == {"https://cdn.shopify.example/polo-red.jpg": "Red",
                                                "https://cdn.shopify.example/polo-blue.jpg": "Blue"}
    woo = [WOO_HEADER,
           ["201", "variable", "SCARF", "Scarf", "1", "1", "", "", "15", "Accessories > Scarves", "https://shop.example/s.jpg",
            "", "Size", "One", "Colour", "Green, Plum"],
           ["202", "variation", "SCARF-G", "Scarf - Green", "1", "1", "", "", "15", "", "https://shop.example/s-g.jpg",
            "id:201", "Size", "One", "Colour", "Green"],
           ["203", "variation", "SCARF-P", "Scarf - Plum", "1", "1", "", "", "15", "",
            "https://shop.example/s-p.jpg, https://shop.example/s-p2.jpg", "id:201", "Size", "One", "Colour", "Plum"]]
    products, _ = read_feed(write_csv(tmp_path / "wc-product-export.csv", woo))
    scarf = products["201"]
    assert scarf["images"] == ["https://shop.example/s.jpg", "https://shop.example/s-g.jpg", "https://shop.example/s-p.jpg",
                               "https://shop.example/s-p2.jpg"]
    assert (scarf["colour"], scarf["extra"]["colours"], scarf["extra"]["sizes"]) == ("Green", ["Green", "Plum"], ["One"])
    assert scarf["extra"]["picture_colours"] == {"https://shop.example/s-g.jpg": "Green", "https://shop.example/s-p.jpg": "Plum",
                                                 "https://shop.example/s-p2.jpg": "Plum"}


def test_shopify_export_indexed_over_http_one_card_per_handle(tmp_path, server, random_embedder):
    rows = [list(r) for r in SHOPIFY]
    for r in rows[1:]:
        for col in (17, 19):
            if r[col]:
                r[col] = server.route("/" + r[col].rsplit("/", 1)[1], jpeg(len(r[col]) + col))
    feed = write_csv(tmp_path / "products_export.csv", rows)
    report = build_index(feed, tmp_path / "index", embedder=random_embedder, **LOCAL)
    assert report.indexed == 4 and not report.errors  # two products, the tee's two further pictures its views
    store = open_store(tmp_path / "index")
    tee = store.product("classic-tee")
    assert Path(tee["image_path"]).read_bytes() == server.routes["/tee-front.jpg"].body
    assert len(tee["extra"]["images"]) == 3 and tee["extra"]["group"] == "classic-tee"
    assert store.counts()["products"] == 2
    store.close()
    assert server.bodies_sent() == 4  # every picture once


KILL_SCRIPT = """
import sys
from stylelens import build_index, Embedder
emb = Embedder("resnet50", weights="random", runtime="torch", batch_size=8)
build_index(sys.argv[1], sys.argv[2], embedder=emb, workers=0, progress=False, allow_private_hosts=True,
            fetch_concurrency=2)
"""


def test_kill_9_during_downloads_then_resume(tmp_path, server, random_embedder):
    rows = [merchant_row(f"K{i}", server.route(f"/img/k{i}.jpg", jpeg(100 + i), delay_s=0.25)) for i in range(24)]
    feed = write_tsv(tmp_path / "feed.tsv", rows)
    index = tmp_path / "index"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1] / "src")] + sys.path))
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(feed), str(index)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((index / "downloads").glob("*.json"))) < 6:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cached = {p.name for p in (index / "downloads").glob("*.json")}
    assert 6 <= len(cached) < 24  # killed in the middle of the downloads
    served_before = {path for _, path, status, _ in server.log if status == 200}

    report = build_index(feed, index, embedder=random_embedder, **dict(LOCAL, fetch_concurrency=4))
    assert report.indexed == 24 and not report.errors
    again = [path for _, path, status, _ in server.log if status == 200]
    assert len(again) - len(served_before) <= 24 - len(cached) + 2  # at most the ones in flight at the kill, again
    assert not list((index / "downloads").glob("*.tmp"))
    store = open_store(index)
    assert all(Path(store.product(f"K{i}")["image_path"]).read_bytes() == jpeg(100 + i) for i in range(24))
    store.close()


def test_a_feed_that_names_no_product_leaves_the_index_as_it_is(tmp_path, random_embedder):
    feed = write_tsv(tmp_path / "feed.tsv", [])
    with pytest.raises(CatalogError, match="holds no product"):
        build_index(feed, tmp_path / "index", embedder=random_embedder, workers=0, progress=False)


def test_the_folder_form_keeps_working_and_a_feed_is_refused_into_a_folders_index(tmp_path, random_embedder):
    from conftest import write_catalog

    folder = tmp_path / "catalog"
    write_catalog(folder, n=4)
    build_index(folder, tmp_path / "index", embedder=random_embedder, workers=0, progress=False)
    feed = write_tsv(tmp_path / "feed.tsv", [merchant_row("Z", "z.jpg")])
    (tmp_path / "z.jpg").write_bytes(jpeg(1))
    from stylelens.errors import IndexMismatchError

    with pytest.raises(IndexMismatchError, match="follows the catalog"):
        build_index(feed, tmp_path / "index", embedder=random_embedder, workers=0, progress=False)


def test_stylelens_index_takes_a_feed_url(tmp_path, server, capsys):
    from stylelens.cli import main

    rows = [merchant_row(f"C{i}", server.route(f"/c{i}.jpg", jpeg(200 + i))) for i in range(3)]
    rows.append(merchant_row("C404", server.url("/gone.jpg")))
    feed_url = server.route("/feed.txt", write_tsv(tmp_path / "f.tsv", rows).read_bytes(), content_type="text/plain")
    args = ["index", feed_url, "--out", str(tmp_path / "index"), "--workers", "0", "--no-progress", "--input-size", "64",
            "--backbone", "resnet50", "--weights", "random", "--runtime", "torch"]
    assert main(args) == 2  # the feed's own host is private: refused in one line
    assert "allow_private_hosts" in capsys.readouterr().err
    assert main(args + ["--allow-private-hosts"]) == 0
    out = capsys.readouterr().out
    assert "indexed 3, unchanged 0, skipped 1 (see " in out and "errors.csv" in out
    assert errors_csv(tmp_path / "index")["C404"][0] == "http_status"
