"""HTTP API of recommendation quality: shopper events, "For you", forgetting, complete-the-look,
personalised / diversified search. In-process, over a real index of generated products."""

import io

import pytest
from fastapi.testclient import TestClient

from PIL import Image
from quality_catalog import add_near_duplicates, build, outfit_catalog
from service_fixtures import LOCAL, as_shopper
from stylelens.query.look import slot_of
from stylelens.service import create_app

PRIVATE = {"image_path", "image_sha256", "extra"}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("qapi")
    rows = outfit_catalog(root / "catalog", n=48)
    add_near_duplicates(root / "catalog", rows, "o000", 3)
    index = build(root / "catalog", root / "index")
    with TestClient(create_app(index), **LOCAL) as client:
        yield client, index, rows, root


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]
    return body["error"]["message"]


def public(product):
    assert not PRIVATE & set(product) and product["image_url"] == f"/images/{product['id']}"


def test_events_counts_and_opinion_changes(shop):
    client, _, rows, _ = shop
    as_shopper(client, "ann")
    r = client.post("/api/users/ann/events", json={"product_id": "o001", "event": "like"})
    assert r.status_code == 200
    assert r.json() == {"ok": True, "user": "ann", "counts": {"like": 1, "dislike": 0, "view": 0, "upload": 0}}
    client.post("/api/users/ann/events", json={"product_id": "o002", "event": "view"})
    r = client.post("/api/users/ann/events", json={"product_id": "o001", "event": "dislike"})
    assert r.json()["counts"] == {"like": 0, "dislike": 1, "view": 1, "upload": 0}


@pytest.mark.parametrize("body,status,code", [
    ({"product_id": "nope", "event": "like"}, 404, "unknown_product"),
    ({"product_id": "o001", "event": "love"}, 422, "bad_event"),
    ({"product_id": "o001"}, 422, "bad_request"),
    ([1, 2], 422, "bad_request"),
])
def test_bad_events(shop, body, status, code):
    client, _, _, _ = shop
    as_shopper(client, "bob")
    assert_error(client.post("/api/users/bob/events", json=body), status, code)


def test_bad_json_and_bad_user(shop):
    client, _, _, _ = shop
    as_shopper(client, "bob")
    message = assert_error(client.post("/api/users/bob/events", content=b"{not json",
                                       headers={"content-type": "application/json"}), 422, "bad_request")
    assert '"event": "like"' in message
    assert_error(client.post("/api/users/bad%20id/events", json={"product_id": "o001", "event": "like"}), 422, "bad_user")
    assert_error(client.get("/api/users/bad%20id/recommendations"), 422, "bad_user")


def test_for_you_and_forget(shop):
    client, index, rows, _ = shop
    user = "carol"
    as_shopper(client, user)
    empty = client.get(f"/api/users/{user}/recommendations").json()
    assert empty["results"] == [] and "No history" in empty["note"]
    liked = [pid for pid, r in rows.items() if r["subCategory"] == "Topwear"][:2]
    for pid in liked:
        client.post(f"/api/users/{user}/events", json={"product_id": pid, "event": "like"})
    body = client.get(f"/api/users/{user}/recommendations", params={"k": 4}).json()
    assert len(body["results"]) == 4 and not {p["id"] for p in body["results"]} & set(liked)
    for p in body["results"]:
        public(p)
    assert set(body) >= {"identified", "results", "took_ms"}
    filtered = client.get(f"/api/users/{user}/recommendations", params={"k": 4, "gender": "Women"}).json()["results"]
    assert filtered and all(rows[p["id"]]["gender"] == "Women" for p in filtered)

    assert client.delete(f"/api/users/{user}").json() == {"ok": True, "user": user, "deleted": 2}
    assert index.shoppers.history(user).empty
    assert client.get(f"/api/users/{user}/recommendations").json()["results"] == []
    assert client.delete(f"/api/users/{user}").json()["deleted"] == 0
    assert_error(client.get(f"/api/users/{user}/recommendations", params={"diversity": 0.5}), 422, "unsupported_option")
    assert_error(client.get(f"/api/users/{user}/recommendations", params={"k": "many"}), 422, "bad_filter")


def test_search_with_user_is_remembered_and_personalised(shop):
    client, index, rows, root = shop
    photo = (root / "catalog" / "images" / "o006.jpg").read_bytes()
    as_shopper(client, "dave")
    for pid in [p for p, r in rows.items() if r["subCategory"] == "Topwear"][3:6]:
        client.post("/api/users/dave/events", json={"product_id": pid, "event": "dislike"})
    disliked = set(index.shoppers.history("dave").disliked)
    r = client.post("/api/search", files={"image": ("p.jpg", photo, "image/jpeg")}, data={"k": "6", "user": "dave"})
    assert r.status_code == 200
    assert not {p["id"] for p in r.json()["results"]} & disliked
    assert index.shoppers.counts("dave")["upload"] == 1


def test_search_collapse_and_diversity_over_http(shop):
    client, _, rows, root = shop
    # The shopper's photo of product o000: the same garment, a different picture (other JPEG compression).
    buffer = io.BytesIO()
    Image.open(root / "catalog" / "images" / "o000.jpg").save(buffer, "JPEG", quality=80)
    photo = buffer.getvalue()
    group = {"o000", "o000d0", "o000d1", "o000d2"}

    def search(**fields):
        r = client.post("/api/search", files={"image": ("q.jpg", photo, "image/jpeg")},
                        data={"k": "5", "include_out_of_stock": "true", **fields})
        assert r.status_code == 200, r.text
        return r.json()["results"]

    plain = search()
    collapsed = search(collapse="true")
    assert all("similar_count" in p for p in collapsed)
    ids = [p["id"] for p in collapsed]
    assert len(ids) == len(set(ids)) == 5
    assert search(diversity="0") == plain
    assert [p["id"] for p in search(diversity="0.9")] != [p["id"] for p in plain]
    assert_error(client.post("/api/search", files={"image": ("q.jpg", photo, "image/jpeg")}, data={"diversity": "2"}),
                 422, "bad_filter")
    assert len(group & {p["id"] for p in plain}) >= 3, "precondition: the copies crowd the plain list"
    assert len(group & set(ids)) == 1
    assert next(p for p in collapsed if p["id"] in group)["similar_count"] == 3


def test_similar_with_collapse_counts_copies(shop):
    client, index, rows, _ = shop
    group = {"o000", "o000d0", "o000d1", "o000d2"}
    # The re-listed product's closest other product: the copies crowd its plain list, collapse shows one.
    other = next(p for p in index.similar("o000", k=10, include_out_of_stock=True).ids if p not in group)
    params = {"k": 6, "include_out_of_stock": "true"}
    plain = client.get(f"/api/products/{other}/similar", params=params).json()["results"]
    assert len(group & {p["id"] for p in plain}) >= 2
    results = client.get(f"/api/products/{other}/similar", params={**params, "collapse": "true"}).json()["results"]
    members = [p for p in results if p["id"] in group]
    assert len(results) == 6 and len(members) == 1 and members[0]["similar_count"] == 3


def test_complete_the_look(shop):
    client, _, rows, _ = shop
    pid = next(p for p, r in rows.items() if r["subCategory"] == "Topwear" and r["in_stock"] == "yes")
    body = client.get(f"/api/products/{pid}/complete-the-look", params={"k": 2}).json()
    public(body["source"])
    assert body["source"]["id"] == pid and body["source"]["slot"] == "Topwear"
    assert body["groups"], "the generated catalog has bottoms, shoes and accessories"
    for group in body["groups"]:
        assert group["category"] in ("Bottomwear", "Footwear", "Accessories") and 1 <= len(group["products"]) <= 2
        for p in group["products"]:
            public(p)
            assert slot_of(rows[p["id"]]["subCategory"], rows[p["id"]]["masterCategory"]) == group["category"]
    default = client.get(f"/api/products/{pid}/complete-the-look").json()
    assert max(len(g["products"]) for g in default["groups"]) <= 3
    assert_error(client.get("/api/products/nope/complete-the-look"), 404, "unknown_product")
    assert_error(client.get(f"/api/products/{pid}/complete-the-look", params={"gender": "Men"}), 422, "unsupported_option")
    assert_error(client.get(f"/api/products/{pid}/complete-the-look", params={"k": 0}), 422, "bad_filter")



def test_a_damaged_shopper_database_is_a_503_without_the_servers_path(tmp_path):
    outfit_catalog(tmp_path / "catalog", n=12)
    index = build(tmp_path / "catalog", tmp_path / "index")
    (tmp_path / "index" / "users.sqlite").write_bytes(b"this is not a database" * 200)
    with TestClient(create_app(index), **LOCAL) as client:
        as_shopper(client, "u1")
        answer = client.post("/api/users/u1/events", json={"product_id": "o001", "event": "like"})
        assert_error(answer, 503, "users_unavailable")
        assert str(tmp_path) not in answer.text and "users.sqlite" in answer.json()["error"]["message"]
        assert client.get("/api/products/o001/similar").status_code == 200  # the rest of the shop still answers
