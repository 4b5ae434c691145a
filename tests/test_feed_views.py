"""A feed product's several pictures are views of it (found by any, shown once; "more like this" over all of
them), and the variants of one group are one card with its price range, colours and sizes. Indexed from a real
HTTP server on 127.0.0.1 serving generated pictures."""

from __future__ import annotations

import io
from contextlib import contextmanager

import numpy as np
import pytest
from feedserver import FeedServer
from fastapi.testclient import TestClient
from PIL import Image
from test_feeds import LOCAL, merchant_row, write_tsv
from test_fetch import jpeg

from stylelens import build_index, open_index
from stylelens.cli.output import print_results
from stylelens.index.catalog_db import LABEL_COLUMNS, VIEW_MARK, columns_from, product_of, view_id
from stylelens.service import create_app

OTHERS = range(10, 20)  # pattern seeds of the products that are no one's view


@pytest.fixture
def server():
    with FeedServer() as s:
        yield s


@contextmanager
def opened(path, embedder, **settings):
    index = open_index(path, embedder=embedder, **settings)
    try:
        yield index
    finally:
        index.close()


def as_png(data: bytes) -> bytes:
    """The same picture in other bytes: found by its vector, not by its hash."""
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(out, "PNG")
    return out.getvalue()


def recompressed(data: bytes, quality: int = 55) -> bytes:
    """A near copy of a picture (another shop's photo of the same garment)."""
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def shop(server, tmp_path, extra_rows=()):
    """P has two pictures (seeds 1, 2); O10..O19 one each; the feed's URL."""
    rows = [merchant_row("P", server.route("/p-front.jpg", jpeg(1)), more=server.route("/p-back.jpg", jpeg(2)))]
    rows += [merchant_row(f"O{s}", server.route(f"/o{s}.jpg", jpeg(s))) for s in OTHERS]
    rows += list(extra_rows)
    return server.route("/feed.tsv", write_tsv(tmp_path / "feed.tsv", rows).read_bytes(), content_type="text/plain")


def test_a_products_rows_are_found_by_bisection_as_by_a_scan_of_every_row():
    """``Columns.rows_of_product`` and ``product_views`` read a product's rows from one map made per view: the same
    rows, in the same order, as a scan of every row gives (products with and without views, views whose product
    has no picture of its own, dead rows)."""
    rng = np.random.default_rng(0)
    ids = []
    for p in range(60):
        views = int(rng.integers(0, 4))
        own = rng.random() > 0.1  # some products have only views (their main picture could not be had)
        ids += ([f"p{p}"] if own else []) + [view_id(f"p{p}", n) for n in range(1, views + 1)]
    order = rng.permutation(len(ids))
    n = len(ids) + 15  # dead rows too
    rows = rng.permutation(n)[:len(ids)]
    records = [(int(rows[i]), ids[i], 1.0, 1) + (None,) * len(LABEL_COLUMNS) for i in order]
    columns = columns_from(records, n, 0, (), "test")
    assert columns.views_per_product > 1

    def scanned(row):  # what a scan of every row answers
        others = np.flatnonzero((columns.owner == row) & columns.live)
        return [row] + [r for r in others.tolist() if r != row]

    standing = np.unique(columns.owners(np.flatnonzero(columns.live)))
    for row in standing.tolist():
        assert columns.rows_of_product(row).tolist() == scanned(row)
    for _ in range(20):
        shown = rng.choice(standing, size=int(rng.integers(1, 12)), replace=False)
        want = {}
        for r in np.flatnonzero(np.isin(columns.owner, shown) & columns.live).tolist():
            want.setdefault(int(columns.owner[r]), []).append(r)
        want = {row: [row] + [r for r in rs if r != row] for row, rs in want.items()
                if len(rs) > 1 or product_of(columns.ids[row]) != columns.ids[row]}
        got = columns.product_views(shown)
        assert got == want and list(got) == list(want)
    assert columns.product_views(np.zeros(0, np.int64)) == {}


def test_a_product_is_found_by_its_second_picture_and_shown_once(tmp_path, server, random_embedder):
    report = build_index(shop(server, tmp_path), tmp_path / "index", embedder=random_embedder, **LOCAL)
    assert report.indexed == 12 and not report.errors  # 11 products, P's second picture a row of its own
    assert sum(status == 200 and path.endswith(".jpg") for _, path, status, _ in server.log) == 12  # each once
    index = open_index(tmp_path / "index", embedder=random_embedder, localise=False)
    assert index.store.counts()["products"] == 11 and index.store.counts()["views"] == 1
    assert index.status()["products"] == 11

    result = index.search(as_png(jpeg(2)), k=20, include_out_of_stock=True)
    assert result.ids[0] == "P" and result.products[0]["matched_view"] == "P" + VIEW_MARK + "1"
    assert sorted(result.ids) == sorted(["P"] + [f"O{s}" for s in OTHERS])  # every product once, no view id
    assert result.products[0]["similarity"] > 0.99  # its best view's cosine, not its main picture's
    assert result.products[0]["views"] == ["P", "P" + VIEW_MARK + "1"]
    front = index.search(as_png(jpeg(1)), k=3)
    assert front.ids[0] == "P" and "matched_view" not in front.products[0]  # the main picture matched
    # The exact bytes of the second picture: the product itself, first, as a catalog photo is.
    exact = index.search(jpeg(2), k=3)
    assert exact.ids[0] == "P" and exact.products[0]["exact_match"] and exact.ids.count("P") == 1

    with TestClient(create_app(index), base_url="http://127.0.0.1") as client:
        body = client.post("/api/search", files={"image": ("q.png", as_png(jpeg(2)), "image/png")}, data={"k": "3"}).json()
        first = body["results"][0]
        assert first["id"] == "P" and "views" not in first and "matched_view" not in first
        assert first["image_urls"] == ["/images/P", "/images/P%1Fview1"]
        assert first["matched_image_url"] == "/images/P%1Fview1"
        picture = client.get(first["matched_image_url"])
        assert picture.status_code == 200 and picture.content == jpeg(2)  # the second picture itself
    index.close()


def test_more_like_this_uses_every_view(tmp_path, server, random_embedder):
    # A is a near copy of P's front picture, B of its back one: both are like P.
    near = [merchant_row("A", server.route("/a.jpg", recompressed(jpeg(1)))),
            merchant_row("B", server.route("/b.jpg", recompressed(jpeg(2))))]
    feed = shop(server, tmp_path, near)
    build_index(feed, tmp_path / "views", embedder=random_embedder, **LOCAL)
    build_index(feed, tmp_path / "main-only", embedder=random_embedder, **dict(LOCAL, feed_views=1))
    with opened(tmp_path / "views", random_embedder) as views, \
            opened(tmp_path / "main-only", random_embedder) as main_only:
        assert sorted(views.similar("P", k=2, include_out_of_stock=True).ids) == ["A", "B"]
        alone = main_only.similar("P", k=12, include_out_of_stock=True).ids
        assert alone[0] == "A" and alone.index("B") > 1  # from the main picture alone, B is not among the first two
        # Every view's product is left out, not only its main row; each result once.
        found = views.similar("P", k=20, include_out_of_stock=True).ids
        assert "P" not in found and len(found) == len(set(found)) == 12
        # From the other side: B is like P through P's second picture, and P comes back once.
        back = views.similar("B", k=3, include_out_of_stock=True)
        assert back.ids[0] == "P" and back.products[0]["matched_view"] == "P" + VIEW_MARK + "1"


def test_a_refresh_updates_and_removes_views_with_their_product(tmp_path, server, random_embedder):
    feed = shop(server, tmp_path)
    build_index(feed, tmp_path / "index", embedder=random_embedder, **LOCAL)
    rows = [merchant_row("P", server.url("/p-front.jpg"), more=server.url("/p-back.jpg"), availability="out_of_stock",
                         price="9.00 USD")]
    rows += [merchant_row(f"O{s}", server.url(f"/o{s}.jpg")) for s in OTHERS]
    server.route("/feed.tsv", write_tsv(tmp_path / "feed.tsv", rows).read_bytes(), content_type="text/plain")
    report = build_index(feed, tmp_path / "index", embedder=random_embedder, **LOCAL)
    assert (report.indexed, report.unchanged, report.removed) == (0, 12, 0)
    with opened(tmp_path / "index", random_embedder, localise=False) as index:
        # Out of stock now, with its views: the second picture no longer finds it unless asked.
        assert "P" not in index.search(as_png(jpeg(2)), k=11).ids
        hit = index.search(as_png(jpeg(2)), k=1, include_out_of_stock=True).products[0]
        assert (hit["id"], hit["price"], hit["in_stock"]) == ("P", 9.0, False)
    rows[0] = merchant_row("P", server.url("/p-front.jpg"))  # the back picture leaves the feed
    server.route("/feed.tsv", write_tsv(tmp_path / "feed.tsv", rows).read_bytes(), content_type="text/plain")
    report = build_index(feed, tmp_path / "index", embedder=random_embedder, **LOCAL)
    assert report.removed == 1
    with opened(tmp_path / "index", random_embedder) as index:
        assert index.store.counts() == {"products": 11, "vector_rows": 12, "dead_rows": 1}


def test_a_view_that_cannot_be_had_is_reported_under_its_product(tmp_path, server, random_embedder):
    rows = [merchant_row("P", server.route("/p.jpg", jpeg(1)), more=server.url("/gone.jpg")),
            merchant_row("Q", server.url("/gone-too.jpg"), more=server.route("/q-back.jpg", jpeg(3)))]
    feed = server.route("/feed.tsv", write_tsv(tmp_path / "feed.tsv", rows).read_bytes(), content_type="text/plain")
    report = build_index(feed, tmp_path / "index", embedder=random_embedder, **LOCAL)
    assert report.indexed == 2
    by_id = {(pid, url.rsplit("/", 1)[1]): (code, message) for pid, url, code, message in report.errors}
    assert set(by_id) == {("P", "gone.jpg"), ("Q", "gone-too.jpg")}
    assert "view 1" in by_id["P", "gone.jpg"][1] and "view" not in by_id["Q", "gone-too.jpg"][1]
    with opened(tmp_path / "index", random_embedder, localise=False) as index:
        # Q's main picture failed: Q is still found, by its other picture, under its own id.
        hit = index.search(as_png(jpeg(3)), k=1).products[0]
        assert hit["id"] == "Q" and hit["name"] == "Tee Q"
        assert index.product("Q")["id"] == "Q" and index.image_path("Q").read_bytes() == jpeg(3)  # its page picture
        assert sorted(index.similar("Q", k=5).ids) == ["P"]


def test_a_card_with_colours_but_no_picture_is_reported_and_the_feed_still_loads(tmp_path, server, random_embedder):
    """Colours without a picture get a view of the main picture; a card with no picture at all has none to give
    (this once stopped the whole feed with an IndexError)."""
    rows = [merchant_row("P", server.route("/p.jpg", jpeg(1))),
            merchant_row("NOPIC-RED", "", group="NOPIC", colour="Red"),
            merchant_row("NOPIC-BLUE", "", group="NOPIC", colour="Blue")]
    feed = server.route("/feed.tsv", write_tsv(tmp_path / "feed.tsv", rows).read_bytes(), content_type="text/plain")
    report = build_index(feed, tmp_path / "index", embedder=random_embedder, **LOCAL)
    assert report.indexed == 1
    assert [(pid, code) for pid, _, code, _ in report.errors] == [("NOPIC", "no_image")]


def test_variants_of_one_group_are_one_card_with_a_price_range(tmp_path, server, random_embedder, capsys):
    variants = [merchant_row("TEE-RED-M", server.route("/tee-red.jpg", jpeg(31)), group="TEE", colour="Red",
                             availability="out_of_stock", price="15.00 USD"),
                merchant_row("TEE-BLUE-L", server.route("/tee-blue.jpg", jpeg(32)), group="TEE", colour="Blue",
                             price="19.00 USD", sale="17.50 USD")]
    variants[0][1], variants[1][1] = "Tee - Red - M", "Tee - Blue - L"
    variants[1][12] = "L"
    cap = server.route("/cap.jpg", jpeg(33))
    variants += [merchant_row("CAP-GREEN", cap, group="CAP", colour="Green"),
                 merchant_row("CAP-BLACK", cap, group="CAP", colour="Black")]
    report = build_index(shop(server, tmp_path, variants), tmp_path / "index", embedder=random_embedder, **LOCAL)
    assert report.indexed == 16 and not report.errors  # 11 + the tee's 2 pictures + the cap's picture, twice
    with opened(tmp_path / "index", random_embedder, localise=False) as index:
        card = index.product("TEE")
        assert (card["name"], card["price"], card["in_stock"], card["colour"]) == ("Tee", 15.0, True, "Red")
        assert card["extra"]["colours"] == ["Red", "Blue"] and card["extra"]["sizes"] == ["M", "L"]
        assert [v["id"] for v in card["extra"]["variants"]] == ["TEE-RED-M", "TEE-BLUE-L"]
        assert card["url"] == "https://shop.example/p/TEE-BLUE-L"  # the variant that can be bought
        # Found by the blue variant's picture (a view of the card), once, with what the card shows.
        result = index.search(as_png(jpeg(32)), k=20)
        assert result.ids[0] == "TEE" and result.ids.count("TEE") == 1 and "TEE-RED-M" not in result.ids
        top = result.products[0]
        assert (top["price"], top["price_max"], top["colours"], top["sizes"], top["variants"]) == (
            15.0, 17.5, ["Red", "Blue"], ["M", "L"], 2)
        print_results(result.products[:1])  # the CLI's table says the range too
        assert "15.00–17.50" in capsys.readouterr().out
        # Each variant's picture is labelled with its colour: a colour filter finds the card by either colour.
        assert sorted(index.facets()["colour"]) == ["Black", "Blue", "Green", "Red"]
        for colour in ("Blue", "Red"):
            found = index.search(as_png(jpeg(31)), k=20, colour=colour).ids
            assert found.count("TEE") == 1, colour
        assert "TEE" not in index.search(as_png(jpeg(31)), k=20, colour="Green").ids  # the cap's colours only
        # One picture for both colours of the cap: each colour it comes in still finds it, and no other does.
        for colour in ("Green", "Black"):
            assert index.search(as_png(jpeg(33)), k=20, colour=colour).ids.count("CAP") == 1, colour
        assert "CAP" not in index.search(as_png(jpeg(33)), k=20, colour="Red").ids
        with TestClient(create_app(index), base_url="http://127.0.0.1") as client:
            body = client.post("/api/search", files={"image": ("q.png", as_png(jpeg(32)), "image/png")},
                               data={"k": "2"}).json()
            first = body["results"][0]
            assert (first["id"], first["price"], first["price_max"], first["colours"], first["sizes"]) == (
                "TEE", 15.0, 17.5, ["Red", "Blue"], ["M", "L"])
            assert len(first["image_urls"]) == 2


def test_demo_takes_a_feed_url(tmp_path, server, capsys):
    from stylelens.cli import main

    feed = shop(server, tmp_path)
    args = ["demo", feed, "--out", str(tmp_path / "ix"), "--no-serve", "--weights", "random"]
    assert main(args) == 2 and "allow_private_hosts" in capsys.readouterr().err  # a private host, refused in one line
    assert main(args + ["--allow-private-hosts"]) == 0
    out = capsys.readouterr().out
    assert "indexed 12, unchanged 0, skipped 0" in out and (tmp_path / "ix" / "sample-search.png").is_file()


def test_demo_serves_a_feed_while_it_downloads(tmp_path, server):
    import subprocess
    import sys
    import time

    import httpx
    from service_fixtures import free_port

    rows = [merchant_row("P", server.route("/p-front.jpg", jpeg(1)), more=server.route("/p-back.jpg", jpeg(2)))]
    rows += [merchant_row(f"S{s}", server.route(f"/s{s}.jpg", jpeg(s), delay_s=0.2)) for s in range(40, 64)]
    feed = write_tsv(tmp_path / "feed.tsv", rows)
    port = free_port()
    log = open(tmp_path / "demo.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "stylelens", "demo", str(feed), "--out", str(tmp_path / "ix"),
                             "--port", str(port), "--weights", "random", "--allow-private-hosts"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        health, during, deadline = None, None, time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"{url}/api/health", timeout=5).json()
            except httpx.HTTPError:
                time.sleep(0.3)
                continue
            if health["indexing"] is not None:
                during = health["indexing"]  # the page answers before the feed is all in
            if health["indexing"] is None and health["products"] == 25:
                break
            time.sleep(0.5)
        text = (tmp_path / "demo.log").read_text()
        assert proc.poll() is None and health and health["products"] == 25, text
        assert during is not None and during["expected"] == 25 and during["indexed"] < 25, text
        opened = [line for line in text.splitlines() if line.startswith("stylelens: open")]
        assert opened and opened[0].startswith(f"stylelens: open {url}/") and "25 products" in opened[0], text
        answer = httpx.post(f"{url}/api/search", files={"image": ("q.png", as_png(jpeg(2)), "image/png")},
                            data={"k": "3"}, timeout=30).json()
        first = answer["results"][0]
        assert first["id"] == "P" and len(first["image_urls"]) == 2 and first["matched_image_url"] == first["image_urls"][1]
        assert httpx.get(url + first["image_urls"][1], timeout=10).content == jpeg(2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
