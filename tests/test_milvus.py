"""Milvus as the vector store, on a real Milvus Lite file: same answers as the embedded exact store."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from service_fixtures import LOCAL
from stylelens.errors import IndexMismatchError, InvalidArgumentError
from stylelens.query import Filters
from stylelens.index import create_store
from stylelens.index.milvus import parse_location
from stylelens.index.backend import exact_search
from stylelens.index import open_store, remove_products
from stylelens.index.manifest import check_compatible

pytestmark = pytest.mark.scale
pymilvus = pytest.importorskip("pymilvus")

DIM = 64
FP = {"backbone": "toy", "weights": {"source": "random", "sha256": None, "detail": "seed=0"}, "pooling": "max",
      "preprocess": {"size": 8}, "dim": DIM, "normalized": "l2"}
GENDERS, TYPES, COLOURS = ["Men", "Women", "Unisex"], ["Tshirts", "Shirts", "Dresses", "Handbags", 'Say "hi" tee'], ["Red", "Blue", "Black", "White"]


def unit(rng, n, d=DIM):
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def records(rng, ids):
    out = []
    for pid in ids:
        out.append({"id": pid, "name": f"item {pid}", "gender": rng.choice(GENDERS), "type": rng.choice(TYPES),
                    "colour": None if rng.random() < 0.05 else rng.choice(COLOURS),
                    "price": None if rng.random() < 0.05 else round(float(rng.uniform(5, 200)), 2),
                    "in_stock": bool(rng.random() < 0.8), "category": "Apparel"})
    return out


def lite(tmp_path, name="vectors.db", collection=None):
    return f"milvus-lite://{tmp_path / name}" + (f"?collection={collection}" if collection else "")


def top_ids(store, queries, k, mask, filters):
    scores, rows = store.search(queries, k, mask, filters)
    ids = [[store.columns.ids[r] for r in row if r >= 0] for row in rows]
    return ids, scores


# ---- locations ---------------------------------------------------------------------------------
def test_locations_parse_to_one_canonical_form_and_bad_ones_say_what_to_write(tmp_path):
    assert parse_location(None) is None and parse_location("local") is None
    loc = parse_location(f"milvus-lite://{tmp_path}/v.db?collection=shop")
    assert (loc.kind, loc.uri, loc.collection, loc.index) == ("milvus-lite", str(tmp_path / "v.db"), "shop", "FLAT")
    assert parse_location(loc.canonical()) == loc
    cluster = parse_location("milvus://milvus.internal:19530/products_2024?index=ivf_pq")
    assert (cluster.uri, cluster.collection, cluster.index) == ("http://milvus.internal:19530", "products_2024", "IVF_PQ")
    assert parse_location("milvus://db-host/items").index == "HNSW"  # approximate by default on a server
    assert parse_location("milvus+https://db-host:443/items").uri == "https://db-host:443"
    for bad, words in [("qdrant://x", "milvus-lite:///path/to/file.db"), ("milvus://user:pw@h:1/c", "STYLELENS_MILVUS_TOKEN"),
                       ("milvus://h:1/bad-name", "letters, digits"), ("milvus-lite:///tmp/x.db?index=annoy", "HNSW"),
                       ("milvus-lite://", "names no file"), ("milvus-lite:///x.db?shards=2", "collection= and index=")]:
        with pytest.raises(InvalidArgumentError, match=words):
            parse_location(bad)


# ---- equivalence with the embedded store --------------------------------------------------------
@pytest.fixture(scope="module")
def twin_stores(tmp_path_factory):
    """The same 5,000 generated products and vectors in the folder store and in Milvus Lite."""
    tmp = tmp_path_factory.mktemp("twins")
    rng = np.random.default_rng(7)
    ids = [f"sku-{i:05d}" for i in range(5000)]
    recs, vecs = records(rng, ids), unit(rng, len(ids))
    local = create_store(tmp / "local", FP, {})
    milvus = create_store(tmp / "milvus", FP, {}, lite(tmp))
    for start in range(0, len(ids), 1000):
        local.add(recs[start:start + 1000], vecs[start:start + 1000])
        milvus.add(recs[start:start + 1000], vecs[start:start + 1000])
    yield local, milvus, rng
    local.close()
    milvus.close()


FILTER_CASES = [Filters(), Filters(include_out_of_stock=True), Filters(gender="women"), Filters(type="Tshirts,Dresses"),
                Filters(colour="Red", min_price=20, max_price=120), Filters(min_price=150, include_out_of_stock=True),
                Filters(type='say "HI" tee', gender="Men,Unisex"), Filters(gender="Men", type="Handbags", colour="White", max_price=30)]


def assert_same_top_k(local, milvus, queries, k, filters, exclude=()):
    results = []
    for store in (local, milvus):
        mask = filters.mask(store.columns)
        rows = [store.columns.row_of[pid] for pid in exclude]
        mask[rows] = False
        results.append(top_ids(store, queries, k, mask, filters))
    (ids_a, scores_a), (ids_b, scores_b) = results
    assert ids_a == ids_b, f"top-{k} differs for {filters}"
    finite = np.isfinite(scores_a)
    np.testing.assert_allclose(scores_b[finite], scores_a[finite], atol=1e-5)
    return ids_a


def test_same_top_k_as_the_exact_store_with_every_filter_on_5000_products(twin_stores):
    local, milvus, rng = twin_stores
    queries = unit(np.random.default_rng(11), 16)
    assert milvus.backend.milvus.count() == len(local) == 5000
    for filters in FILTER_CASES:
        ids = assert_same_top_k(local, milvus, queries, 10, filters)
        assert all(len(row) == 10 for row in ids) or filters.colour == "White"
    # Unknown values are refused exactly as by the embedded store.
    with pytest.raises(InvalidArgumentError, match="Unknown gender 'Kids'"):
        milvus.search(queries, 5, None, filters=Filters(gender="Kids"))


def test_add_update_delete_keep_milvus_equal_to_the_exact_store(twin_stores):
    local, milvus, rng = twin_stores
    ids = sorted(local.columns.row_of)
    gone = [str(i) for i in rng.choice(ids, 300, replace=False)]
    assert milvus.delete(gone) == local.delete(gone) == 300
    kept = [i for i in ids if i not in set(gone)]
    # Feed changes without new images: prices, stock, colours.
    changed = records(rng, [str(i) for i in rng.choice(kept, 400, replace=False)])
    local.update_records(changed)
    milvus.update_records(changed)
    # New images for some products, and new products.
    renewed = records(rng, [str(i) for i in rng.choice(kept, 100, replace=False)] + [f"new-{i}" for i in range(50)])
    vecs = unit(rng, len(renewed))
    local.add(renewed, vecs)
    milvus.add(renewed, vecs)
    assert milvus.backend.milvus.count() == len(local) == 5000 - 300 + 50
    queries = np.vstack([vecs[:8], unit(np.random.default_rng(12), 8)])
    for filters in FILTER_CASES:
        top = assert_same_top_k(local, milvus, queries, 10, filters)
        assert not set(gone) & {pid for row in top for pid in row}
    # A caller's extra exclusions travel with the filters (few ids) ...
    assert_same_top_k(local, milvus, queries, 10, Filters(gender="Women"), exclude=[r["id"] for r in renewed[:20]])
    # ... and a bare mask of any size is answered exactly too (sent as id lists).
    for keep in (0.999, 0.5, 0.01):
        mask = np.random.default_rng(3).random(len(local.columns.ids)) < keep
        got = [top_ids(s, queries, 7, mask & s.columns.live, None)[0] for s in (local, milvus)]
        assert got[0] == got[1]
    new3 = [r["id"] for r in renewed].index("new-3")
    np.testing.assert_array_equal(milvus.vectors([milvus.columns.row_of["new-3"]])[0], vecs[new3])


# ---- manifest check, locations kept ---------------------------------------------------------------
def test_a_different_embedder_is_refused_with_the_embedded_stores_message(tmp_path):
    store = create_store(tmp_path / "ix", FP, {}, lite(tmp_path))
    store.add(records(np.random.default_rng(0), ["a", "b"]), unit(np.random.default_rng(0), 2))
    store.close()
    other = {**FP, "pooling": "avg"}
    with pytest.raises(IndexMismatchError) as folder_check:
        create_store(tmp_path / "ix", other, {})
    with pytest.raises(IndexMismatchError, match="pooling"):
        check_compatible(FP, other, tmp_path / "ix")
    # The collection itself carries the fingerprint: checked with the same words as the folder's manifest.
    from stylelens.index.milvus import MilvusCollection

    collection = MilvusCollection(parse_location(lite(tmp_path)))
    owner = json.loads((tmp_path / "ix" / "manifest.json").read_text())["vectors"]["owner"]
    with pytest.raises(IndexMismatchError) as collection_check:
        collection.check(other, owner, tmp_path / "ix")
    where = parse_location(lite(tmp_path)).canonical()
    with pytest.raises(IndexMismatchError) as expected:
        check_compatible(FP, other, where)
    assert str(collection_check.value) == str(expected.value)
    assert str(folder_check.value).replace(str(tmp_path / "ix"), "X") == str(expected.value).replace(where, "X")
    collection.check(FP, owner, tmp_path / "ix")  # same embedder passes
    # Another index may not adopt (and mix its products into) a collection it does not own.
    with pytest.raises(IndexMismatchError, match="already exists"):
        create_store(tmp_path / "second", FP, {}, lite(tmp_path))
    collection.close()


def test_an_index_keeps_the_vector_location_it_was_built_with(tmp_path):
    folder = create_store(tmp_path / "folder", FP, {})
    folder.add(records(np.random.default_rng(0), ["a"]), unit(np.random.default_rng(0), 1))
    folder.close()
    with pytest.raises(IndexMismatchError, match="keeps its vectors in the index folder"):
        create_store(tmp_path / "folder", FP, {}, lite(tmp_path, collection="moved"))
    store = create_store(tmp_path / "ix", FP, {}, lite(tmp_path, collection="shop"))
    store.add(records(np.random.default_rng(0), ["a"]), unit(np.random.default_rng(0), 1))
    store.close()
    with pytest.raises(IndexMismatchError, match="keeps its vectors in milvus-lite"):
        create_store(tmp_path / "ix", FP, {}, "local")
    with pytest.raises(IndexMismatchError, match="keeps its vectors in milvus-lite"):
        create_store(tmp_path / "ix", FP, {}, lite(tmp_path, collection="other"))
    again = create_store(tmp_path / "ix", FP, {})  # no location: the one it has
    assert again.backend.milvus.count() == 1 and type(again.backend).__name__ == "MilvusBackend"
    again.close()
    reopened = open_store(tmp_path / "ix")
    assert reopened.backend.name == "milvus" and reopened.product("a")["name"] == "item a"
    reopened.close()


def test_a_crash_between_milvus_and_the_catalog_leaves_no_stray_vectors(tmp_path):
    """The build process dies after Milvus took a batch but before catalog.sqlite committed it.

    Milvus Lite lets one process at a time open its file, so the dying writer runs alone in a child."""
    script = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from stylelens.index import create_store, milvus as milvus_store
        store = create_store({str(tmp_path / "ix")!r}, {FP!r}, {{}}, {lite(tmp_path)!r})
        v = np.eye({DIM}, dtype=np.float32)
        store.add([{{"id": "a", "name": "first"}}, {{"id": "b"}}, {{"id": "c"}}], v[:3])
        real = milvus_store.MilvusCollection.upsert
        def upsert_then_die(self, records, vectors):
            real(self, records, vectors)
            os.kill(os.getpid(), signal.SIGKILL)
        milvus_store.MilvusCollection.upsert = upsert_then_die
        store.add([{{"id": "d"}}, {{"id": "e"}}, {{"id": "a", "name": "renewed"}}], v[3:6])
    """)
    assert subprocess.run([sys.executable, "-c", script], timeout=120).returncode == -9
    store = open_store(tmp_path / "ix", writable=True)  # opening for writing removes what never committed
    assert sorted(store.columns.row_of) == ["a", "b", "c"] and store.backend.milvus.count() == 3
    assert store.product("a")["name"] == "first"  # the catalog keeps the committed record ...
    assert store.image_hashes()["a"] is None  # ... but forgets its image hash: Milvus may hold the new vector, so the next build re-embeds it
    np.testing.assert_array_equal(store.vectors([store.columns.row_of["b"]])[0], np.eye(DIM, dtype=np.float32)[1])
    store.close()


# ---- end to end: build_index, open_index, CLI, web API -------------------------------------------
@pytest.fixture(scope="module")
def lite0():
    from stylelens import Embedder

    return Embedder("efficientnet-lite0", weights="random", runtime="torch", batch_size=8)


def test_build_search_update_and_remove_through_milvus_match_the_folder_index(tmp_path, lite0):
    import csv

    from conftest import write_catalog
    from stylelens import build_index, open_index

    rows = write_catalog(tmp_path / "catalog", n=24)
    location = lite(tmp_path)
    report = build_index(tmp_path / "catalog", tmp_path / "folder", embedder=lite0, workers=0, progress=False)
    build_index(tmp_path / "catalog", tmp_path / "milvus", embedder=lite0, workers=0, progress=False, store=location)
    folder, milvus = open_index(tmp_path / "folder", embedder=lite0), open_index(tmp_path / "milvus", embedder=lite0)
    assert report.indexed == 24 and milvus.store.backend.name == "milvus" and folder.store.backend.name != "milvus"
    assert milvus.info()["vectors"]["location"] == parse_location(location).canonical()
    photo = tmp_path / "catalog" / "images" / "1003.jpg"
    for filters in ({}, {"gender": "Women"}, {"colour": "Red,Blue", "max_price": 50}, {"include_out_of_stock": True}):
        a, b = folder.search(photo, 5, **filters), milvus.search(photo, 5, **filters)
        assert a.ids == b.ids and a.identified == b.identified
        assert [p["score"] for p in a.products] == [p["score"] for p in b.products]
    assert folder.similar("1005", 4).ids == milvus.similar("1005", 4).ids
    np.testing.assert_array_equal(milvus.vector("1007"), folder.vector("1007"))

    # The feed changes (stock, price) and a product goes: an incremental build updates Milvus's filter fields.
    rows["1003"]["in_stock"], rows["1006"]["price"] = "no", "999.00"
    del rows["1010"]
    (tmp_path / "catalog" / "images" / "1010.jpg").unlink()
    with open(tmp_path / "catalog" / "products.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(next(iter(rows.values()))))
        writer.writeheader()
        writer.writerows(rows.values())
    for out, store in (("folder", None), ("milvus", None)):
        again = build_index(tmp_path / "catalog", tmp_path / out, embedder=lite0, workers=0, progress=False, store=store)
        assert (again.indexed, again.unchanged, again.removed) == (0, 23, 1)
    folder, milvus = open_index(tmp_path / "folder", embedder=lite0), open_index(tmp_path / "milvus", embedder=lite0)
    for filters in ({}, {"max_price": 100}, {"include_out_of_stock": True, "min_price": 40}):
        a, b = folder.search(photo, 8, **filters), milvus.search(photo, 8, **filters)
        assert a.ids == b.ids and "1010" not in b.ids
    assert "1003" not in milvus.similar("1004", 23).ids and "1006" not in milvus.similar("1004", 23, max_price=100).ids

    assert remove_products(tmp_path / "milvus", ["1000", "nope"]) == (1, ["nope"])
    milvus = open_index(tmp_path / "milvus", embedder=lite0)
    assert "1000" not in milvus.similar("1001", 23, include_out_of_stock=True).ids
    assert milvus.store.backend.milvus.count() == len(milvus) == 22


def test_cli_and_web_api_work_on_a_milvus_backed_index(tmp_path):
    from fastapi.testclient import TestClient

    from conftest import write_catalog
    from stylelens.cli import main
    from stylelens.service.app import create_app

    write_catalog(tmp_path / "catalog", n=12)
    args = ["index", str(tmp_path / "catalog"), "--out", str(tmp_path / "ix"), "--backbone", "efficientnet-lite0",
            "--weights", "random", "--workers", "0", "--no-progress", "--store", lite(tmp_path, collection="shop")]
    assert main(args) == 0
    assert main(["index", str(tmp_path / "catalog"), "--out", str(tmp_path / "ix"), "--store", "local",
                 "--backbone", "efficientnet-lite0", "--weights", "random"]) == 2  # a clear error, no traceback
    assert main(["search", str(tmp_path / "ix"), str(tmp_path / "catalog" / "images" / "1002.jpg"), "--json", "--gender", "Men"]) == 0
    assert main(["remove", str(tmp_path / "ix"), "1004"]) == 0
    client = TestClient(create_app(tmp_path / "ix"), **LOCAL)
    with open(tmp_path / "catalog" / "images" / "1002.jpg", "rb") as fh:
        answer = client.post("/api/search", files={"image": ("q.jpg", fh, "image/jpeg")}, data={"k": "4", "gender": "Men"})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert results and all(p["gender"] == "Men" for p in results) and "1004" not in [p["id"] for p in results]
    similar = client.get("/api/products/1003/similar", params={"k": 3})
    assert similar.status_code == 200 and len(similar.json()["results"]) == 3
    bad = client.get("/api/products/1003/similar", params={"gender": "Kids"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "bad_filter"
