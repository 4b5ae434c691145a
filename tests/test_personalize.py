import sqlite3

import numpy as np
import pytest

from quality_catalog import build, taste_catalog
from stylelens.errors import InvalidArgumentError, ProductNotFoundError
from stylelens.query.personalize import USERS_DB, Shoppers, feedback, forget, recommend_for_user, rocchio


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("taste")
    rows = taste_catalog(root / "catalog")
    index = build(root / "catalog", root / "index")
    return index, rows, root


def ids_where(rows, **labels):
    return [pid for pid, r in rows.items() if all(r[k] == v for k, v in labels.items())]


def share(products, rows, **labels):
    return sum(all(rows[p["id"]][k] == v for k, v in labels.items()) for p in products) / len(products)


def test_events_persist_and_latest_opinion_wins(tmp_path):
    shoppers = Shoppers(tmp_path)
    shoppers.record("u1", "like", "a")
    shoppers.record("u1", "like", "b")
    shoppers.record("u1", "dislike", "a")  # changed their mind
    shoppers.record("u1", "view", "c")
    shoppers.record("u1", "view", "c")
    shoppers.record("u2", "like", "z")
    shoppers.close()

    reopened = Shoppers(tmp_path)  # a restart
    history = reopened.history("u1")
    assert history.liked == ["b"] and history.disliked == ["a"] and history.viewed == ["c"]
    assert reopened.counts("u1") == {"like": 1, "dislike": 1, "view": 1, "upload": 0}
    assert reopened.users() == ["u1", "u2"]


def test_forget_deletes_every_event_of_that_shopper_only(tmp_path):
    shoppers = Shoppers(tmp_path)
    for pid in "abc":
        shoppers.record("gone", "like", pid)
    shoppers.record("gone", "upload", vector=np.ones(4, np.float32), sha256="s")
    shoppers.record("kept", "like", "a")
    assert shoppers.forget("gone") == 4
    assert shoppers.history("gone").empty
    with sqlite3.connect(tmp_path / USERS_DB) as db:
        assert db.execute("SELECT COUNT(*) FROM events WHERE user='gone'").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM events WHERE user='kept'").fetchone()[0] == 1
    assert shoppers.forget("nobody") == 0


@pytest.mark.parametrize("user", ["", "a b", "x" * 129, "../etc", "ü"])
def test_bad_shopper_ids_are_refused(tmp_path, user):
    with pytest.raises(InvalidArgumentError) as err:
        Shoppers(tmp_path).record(user, "like", "a")
    assert err.value.code == "bad_user" and "letters, digits" in err.value.message


def test_rocchio_is_the_documented_blend():
    q = np.array([1.0, 0, 0], np.float32)
    liked = np.array([[0, 1.0, 0], [0, 0, 1.0]], np.float32)
    disliked = np.array([[1.0, 0, 0]], np.float32)
    out = rocchio(q, liked, disliked, a=1.0, b=0.8, c=0.4)
    expected = np.array([1.0 - 0.4, 0.4, 0.4])
    np.testing.assert_allclose(out, expected / np.linalg.norm(expected), rtol=1e-6)
    assert rocchio(q, liked[:0], disliked[:0], a=1, b=1, c=1) == pytest.approx(q)
    assert rocchio(None, liked[:0], disliked, a=1, b=1, c=0) is None  # nothing left to search with


def test_feedback_checks_product_and_event(shop):
    index, rows, _ = shop
    with pytest.raises(ProductNotFoundError):
        feedback(index, "checker", "no-such-id", "like")
    with pytest.raises(InvalidArgumentError) as err:
        feedback(index, "checker", next(iter(rows)), "love")
    assert err.value.code == "bad_event"
    assert index.shoppers.counts("checker") == {"like": 0, "dislike": 0, "view": 0, "upload": 0}


def test_personalised_search_moves_towards_liked_colour(shop):
    index, rows, root = shop
    red_shirts = ids_where(rows, articleType="Tshirts", baseColour="Red")
    blue_shirts = ids_where(rows, articleType="Tshirts", baseColour="Blue")
    query = root / "catalog" / "images" / f"{red_shirts[0]}.jpg"
    plain = index.search(query, k=4, include_out_of_stock=True)
    for pid in blue_shirts[:2]:
        feedback(index, "likes-blue", pid, "like")
    for pid in red_shirts[1:3]:
        feedback(index, "likes-blue", pid, "dislike")
    personal = index.search(query, k=4, user="likes-blue", include_out_of_stock=True)

    assert share(personal.products, rows, baseColour="Blue") > share(plain.products, rows, baseColour="Blue")
    assert not {p["id"] for p in personal.products} & set(red_shirts[1:3]), "disliked products are left out"
    assert personal.identified.type == plain.identified.type == "Tshirts", "identification is not personalised"
    # The search was remembered as an upload; the same photo again is still one upload.
    index.search(query, k=4, user="likes-blue")
    assert index.shoppers.counts("likes-blue")["upload"] == 1


def test_history_of_another_type_does_not_pull_the_search(shop):
    index, rows, root = shop
    for pid in ids_where(rows, articleType="Handbags", baseColour="Green"):
        feedback(index, "bag-fan", pid, "like")
    query = root / "catalog" / "images" / f"{ids_where(rows, articleType='Tshirts', baseColour='Red')[0]}.jpg"
    plain = index.search(query, k=5, user=None)
    personal = index.search(query, k=5, user="bag-fan")
    assert personal.ids == plain.ids


def test_for_you_feed_follows_likes_and_skips_what_was_rated(shop):
    index, rows, _ = shop
    liked = ids_where(rows, articleType="Tshirts", baseColour="Green")[:2] + ids_where(rows, articleType="Handbags", baseColour="Blue")[:1]
    disliked = ids_where(rows, articleType="Tshirts", baseColour="Red")[:1]
    for pid in liked:
        feedback(index, "feed", pid, "like")
    for pid in disliked:
        feedback(index, "feed", pid, "dislike")
    result = recommend_for_user(index, "feed", k=6)
    got = [p["id"] for p in result.products]
    assert len(got) == 6 and len(set(got)) == 6
    assert not set(got) & set(liked + disliked)
    # Both liked types are represented, and the taste (green shirts, blue bags) dominates.
    assert {rows[p]["articleType"] for p in got} == {"Tshirts", "Handbags"}
    matches = sum((rows[p]["articleType"], rows[p]["baseColour"]) in {("Tshirts", "Green"), ("Handbags", "Blue")} for p in got)
    assert matches >= 4, [(rows[p]["articleType"], rows[p]["baseColour"]) for p in got]


def test_for_you_without_history_is_empty_and_says_why(shop):
    index, _, _ = shop
    result = recommend_for_user(index, "newcomer", k=5)
    assert result.products == [] and "No history" in result.to_dict()["note"]


def test_forget_through_the_index_survives_reopen(shop):
    from stylelens import open_index
    from quality_catalog import lite_embedder

    index, rows, root = shop
    pid = next(iter(rows))
    feedback(index, "temp", pid, "like")
    feedback(index, "temp", pid, "view")
    reopened = open_index(root / "index", embedder=lite_embedder())
    assert reopened.shoppers.counts("temp")["like"] == 1
    assert forget(reopened, "temp") == 2
    assert recommend_for_user(index, "temp", k=3).products == []
    assert (root / "index" / USERS_DB).is_file()


def test_cli_feedback_and_recommend(shop, capsys, monkeypatch):
    import json

    from stylelens.cli import main

    index, rows, root = shop
    pid = ids_where(rows, articleType="Handbags", baseColour="Red")[0]
    # The CLI opens the index from its manifest: efficientnet-lite0 with the packaged weights.
    assert main(["feedback", str(root / "index"), "--user", "cli", "--like", pid, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["like"] == 1
    assert main(["recommend", str(root / "index"), "--user", "cli", "-k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["results"]) == 3 and pid not in [p["id"] for p in out["results"]]
    assert main(["feedback", str(root / "index"), "--user", "cli", "--forget"]) == 0
    assert "1 events deleted" in capsys.readouterr().out
    assert main(["feedback", str(root / "index"), "--user", "cli", "--like", "nope"]) == 2
    assert "No product with id 'nope'" in capsys.readouterr().err
