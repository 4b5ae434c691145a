"""What a store must do to be done: the same tests on every database + vector backend pair.

    folder          the index folder's files, exact search (the embedded default)
    folder+faiss    the index folder's files, FAISS (``search="ann"``)
    milvus-lite     the index folder's catalog, vectors in Milvus Lite (``store="milvus-lite:///…db"``)
    postgres+milvus PostgreSQL 15 (initdb/pg_ctl) + the embedded Milvus server, as replicas run

A new database (``index.database.DATABASES``) or vector backend (``index.backend.BACKENDS``) adds its pair
to ``PLACES`` and passes this file. Data are small, seeded unit vectors written through the store's
protocol (no model): the tests hold the store's behaviour, not an embedder's.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field

import numpy as np
import pytest

from replica_fixtures import PASSWORD, db_url, eventually, milvus_server, postgres, postgres_server  # noqa: F401
from stylelens.errors import IndexBusyError, InvalidArgumentError, ProductNotFoundError
from stylelens.index import create_store, open_store
from stylelens.index.backend import exact_search
from stylelens.index.check import check
from stylelens.index.database import open_events
from stylelens.query.filters import Filters
from stylelens.settings import Settings

DIM = 16
FP = {"backbone": "toy", "weights": {"source": "random", "sha256": None, "detail": "seed=0"}, "pooling": "max",
      "preprocess": {"size": 8}, "dim": DIM, "normalized": "l2"}
TYPES, GENDERS, COLOURS = ["Shirts", "Dresses", "Handbags"], ["Men", "Women"], ["Red", "Blue"]
ANN_ROWS = 8_500  # above the folder ANN's exact shortcut (8,192 passing rows): FAISS itself answers


@dataclass
class Place:
    """Where one store under test lives: the index location, its vectors' location, its settings."""

    kind: str
    location: object
    vectors: str | None
    settings: Settings
    exact: bool  # search equals exact search; else recall against it
    lags: bool = False  # another handle sees a write within seconds, not at once (a version poll, Bounded reads)
    opened: list = field(default_factory=list)

    def create(self):
        return self._keep(create_store(self.location, FP, {}, self.vectors, settings=self.settings))

    def open(self, writable: bool = False):
        return self._keep(open_store(self.location, writable=writable, settings=self.settings))

    def check(self, **kw):
        return check(self.location, settings=self.settings, **kw)

    def _keep(self, store):
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in reversed(self.opened):
            try:
                store.close()
            except Exception:  # noqa: BLE001 (already closed by the test, or its server is gone)
                pass


def _folder(tmp_path, request, **settings) -> dict:
    return {"location": tmp_path / "index", "vectors": None, "settings": Settings.load(**settings)}


def _milvus_lite(tmp_path, request) -> dict:
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed: pip install 'stylelens[milvus]'")
    return {"location": tmp_path / "index", "vectors": f"milvus-lite://{tmp_path / 'vectors.db'}", "settings": Settings.load()}


def _postgres_milvus(tmp_path, request) -> dict:
    pytest.importorskip("sqlalchemy", reason="the postgres extra is not installed: pip install 'stylelens[postgres]'")
    pytest.importorskip("psycopg", reason="the postgres extra is not installed: pip install 'stylelens[postgres]'")
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed: pip install 'stylelens[milvus]'")
    port, milvus = request.getfixturevalue("postgres"), request.getfixturevalue("milvus_server")
    name = f"conformance_{uuid.uuid4().hex[:10]}"  # one database and collection per test
    return {"location": db_url(port, name), "vectors": f"milvus://127.0.0.1:{milvus}/{name}",
            "settings": Settings.load(database_password=PASSWORD), "lags": True}


PLACES = {
    "folder": (lambda t, r: _folder(t, r, search="exact"), True, ()),
    "folder+faiss": (lambda t, r: _folder(t, r, search="ann"), False, ()),
    "milvus-lite": (_milvus_lite, True, (pytest.mark.scale,)),
    "postgres+milvus": (_postgres_milvus, False, (pytest.mark.scale,)),
}


@pytest.fixture(params=[pytest.param(kind, marks=marks) for kind, (_, _, marks) in PLACES.items()])
def place(request, tmp_path):
    make, exact, _ = PLACES[request.param]
    if request.param == "folder+faiss":
        pytest.importorskip("faiss", reason="the ann extra is not installed: pip install 'stylelens[ann]'")
    made = Place(request.param, exact=exact, **make(tmp_path, request))
    yield made
    made.close_all()


# ---- data ----------------------------------------------------------------------------------------
def unit(n, seed=0, clusters=40):
    """Unit vectors around cluster centres: neighbourhoods like real embeddings, no ties."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    v = centres[rng.integers(0, clusters, n)] + 0.4 * rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def records(ids, seed=0):
    rng = np.random.default_rng(seed)
    # Every label given: the embedded Milvus 2.3 server of the tests takes no null fields (2.5+ does).
    return [{"id": pid, "name": f"item {pid}", "type": TYPES[int(rng.integers(3))], "gender": GENDERS[int(rng.integers(2))],
             "colour": COLOURS[int(rng.integers(2))], "category": "Apparel", "subcategory": "Topwear", "season": "Summer",
             "usage": "Casual",
             "price": round(float(rng.uniform(5, 100)), 2), "in_stock": bool(rng.random() < 0.8),
             "image_sha256": f"sha-{pid}"} for pid in ids]


def ids(n, start=0, prefix="p"):
    return [f"{prefix}{i:05d}" for i in range(start, start + n)]




def checks_ok(place) -> bool:
    """``stylelens check`` says ok. The embedded Milvus 2.3 server lists the ids of a collection from a client-side
    timestamp (pymilvus cannot ask it for one), so a check right after a delete may see the deleted ids for about
    a second: polled there."""
    return eventually(lambda: place.check().summary() == "ok", timeout=30 if place.lags else 0)


def found(store, queries, k, mask=None, filters=None):
    """The ids the store answers, best first, and their scores."""
    cols = store.columns
    scores, rows = store.search(queries, k, mask, filters, columns=cols)
    return [[cols.ids[r] for r in row if r >= 0] for row in rows], scores


def truth(vectors: dict[str, np.ndarray], queries, k, allowed=None):
    """The exact answer over the products we wrote (``allowed``: the ids that may be found)."""
    pids = sorted(vectors if allowed is None else allowed)
    matrix = np.stack([vectors[p] for p in pids]) if pids else np.zeros((0, DIM), np.float32)
    scores, rows = exact_search(matrix, queries, k)
    return [[pids[r] for r in row if r >= 0] for row in rows], scores


def recall(got, want, k):
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / max(1, min(k, len(b))) for a, b in zip(got, want)]))


def filled(store, n):
    """The store, ``n`` products added in batches of 500 (a build's commits), maintained, and what was written."""
    pids = ids(n)
    vecs = unit(n)
    for start in range(0, n, 500):
        store.add(records(pids[start:start + 500], seed=start), vecs[start:start + 500])
    store.maintain()
    return dict(zip(pids, vecs))


# ---- the tests -----------------------------------------------------------------------------------
def test_the_store_speaks_to_its_storage_through_the_two_protocols(place):
    from stylelens.index import Database, VectorBackend

    store = place.create()
    assert isinstance(store.database, Database) and isinstance(store.backend, VectorBackend)
    assert type(store.database).accepts(place.location) and type(store.backend).accepts(place.vectors)


def test_add_update_and_remove_products(place):
    store = place.create()
    written = filled(store, 40)
    assert len(store) == 40 and store.product("p00003")["name"] == "item p00003"
    # The same id again replaces its vector and record: still one product.
    new = unit(1, seed=99)[0]
    store.add([dict(records(["p00003"])[0], name="renewed")], new[None])
    written["p00003"] = new
    assert len(store) == 40 and store.product("p00003")["name"] == "renewed"
    assert eventually(lambda: np.allclose(store.vectors([store.columns.row_of["p00003"]])[0], new, atol=1e-6))
    # Fields alone (the feed's price moved): no vector touched.
    store.update_records([dict(records(["p00004"])[0], price=999.0)])
    assert store.product("p00004")["price"] == 999.0
    np.testing.assert_allclose(store.vectors([store.columns.row_of["p00004"]])[0], written["p00004"], atol=1e-6)
    # Removed products are gone from reads and searches, compacted or not.
    assert store.delete(["p00005", "p00006", "nobody"]) == 2
    for pid in ("p00005", "p00006"):
        del written[pid]
        with pytest.raises(ProductNotFoundError):
            store.product(pid)
    store.compact()
    store.maintain()
    assert len(store) == 38 and sorted(store.columns.row_of) == sorted(written)
    own = np.stack(list(written.values()))  # each product's own vector finds it first
    assert eventually(lambda: [row[0] for row in found(store, own, 1)[0]] == list(written))
    rows = [store.columns.row_of[p] for p in written]
    np.testing.assert_allclose(store.vectors(rows), np.stack(list(written.values())), atol=1e-6)


def test_search_ranks_as_exact_search_does(place):
    n = ANN_ROWS if not place.exact else 600
    store = place.create()
    written = filled(store, n)
    queries = unit(25, seed=7)
    want, want_scores = truth(written, queries, 10)

    def agrees():
        got, scores = found(store, queries, 10)
        if place.exact:
            return got == want and np.allclose(scores, want_scores, atol=1e-5)
        # Approximate: most of the true neighbours, and the scores reported are the true cosines.
        true = [[float(written[p] @ q) for p in row] for row, q in zip(got, queries)]
        return recall(got, want, 10) >= 0.9 and all(np.allclose(s[:len(t)], t, atol=1e-4) for s, t in zip(scores, true))

    assert eventually(agrees), (recall(found(store, queries, 10)[0], want, 10), place.kind)


def test_filters_narrow_the_search_exactly(place):
    store = place.create()
    written = filled(store, 120)
    by_id = {r["id"]: r for r in records(ids(120))}  # as filled() wrote them (one batch)
    queries = unit(8, seed=3)
    for filters in (Filters(type="Shirts"), Filters(gender="Women", max_price=50.0), Filters(min_price=20.0, max_price=60.0,
                    include_out_of_stock=True), Filters(type="Dresses,Handbags", gender="Men")):
        mask = filters.mask(store.columns)
        allowed = [p for p in written if mask[store.columns.row_of[p]]]
        assert 0 < len(allowed) < len(written)
        want, _ = truth(written, queries, 10, allowed)
        assert eventually(lambda: found(store, queries, 10, mask, filters)[0] == want), filters
        assert all(by_id[p]["in_stock"] or filters.include_out_of_stock for row in want for p in row)
    with pytest.raises(InvalidArgumentError):
        Filters(type="Socks").mask(store.columns)  # an unknown value is an error, not an empty answer
    # A feed update moves a product into a filter, wherever the filter runs.
    cheap = Filters(max_price=5.0, include_out_of_stock=True)
    store.update_records([dict(by_id["p00007"], price=1.0)])
    assert eventually(lambda: found(store, written["p00007"][None], 5, cheap.mask(store.columns), cheap)[0] == [["p00007"]])


def test_what_was_written_is_there_after_reopening(place):
    store = place.create()
    written = filled(store, 50)
    store.write_artifact("head.bin", bytes(range(256)))
    store.save_manifest(note="kept")
    queries = unit(5, seed=11)
    before, _ = found(store, queries, 5)
    store.close()
    again = place.open()
    assert len(again) == 50 and again.manifest["note"] == "kept" and again.read_artifact("head.bin") == bytes(range(256))
    assert again.product("p00010")["name"] == "item p00010"
    rows = [again.columns.row_of[p] for p in written]
    np.testing.assert_allclose(again.vectors(rows), np.stack(list(written.values())), atol=1e-6)
    assert eventually(lambda: found(again, queries, 5)[0] == before)


def test_a_batch_whose_commit_never_happened_is_found_and_recovered(place):
    store = place.create()
    filled(store, 20)
    lost, lost_vectors = ids(3, start=100), unit(3, seed=5)

    def interrupted(writer) -> None:
        """What a writer killed between the two steps of add() leaves: the vectors durable, the catalog not told."""
        writer.backend.add(writer.n_rows, records(lost), lost_vectors)
        writer.close()

    interrupted(store)
    report = place.check()
    assert report.exit_code == 1 and [f.code for f in report.findings] in (["vectors_tail"], ["vectors_uncommitted"])
    # The next writer recovers it on opening (what the next build does): the lost products are nowhere.
    writer = place.open(writable=True)
    assert len(writer) == 20 and not set(lost) & set(writer.columns.row_of)
    assert not set(lost) & {p for row in found(writer, lost_vectors, 10)[0] for p in row}
    assert checks_ok(place)  # nothing of the batch is left behind
    interrupted(writer)
    # ... and so does the check's repair.
    repaired = place.check(repair=True)
    assert repaired.exit_code == 0, [f.line() for f in repaired.findings]
    assert checks_ok(place)
    writer = place.open(writable=True)
    assert len(writer) == 20 and checks_ok(place)
    writer.add(records(lost), lost_vectors)  # the build resumes: added once, found
    writer.maintain()
    assert len(writer) == 23
    assert eventually(lambda: [row[0] for row in found(writer, lost_vectors, 1)[0]] == lost)
    assert checks_ok(place)


def test_two_readers_follow_one_writer(place):
    writer = place.create()
    filled(writer, 30)
    readers = [place.open(), place.open()]
    queries = unit(4, seed=21)
    problems: list[str] = []
    done = threading.Event()

    def read(store):
        seen = 0
        while not done.is_set():
            cols = store.columns
            live = int(cols.live.sum())
            if live < seen:
                problems.append(f"a reader went back from {seen} to {live} products")
            seen = live
            scores, rows = store.search(queries, 10, None, None, columns=cols)
            for score_row, row in zip(scores, rows):
                hits = row[row >= 0]
                if not cols.live[hits].all() or len(set(hits)) != len(hits):
                    problems.append("a search answered a dead or repeated row")
                if np.any(np.diff(score_row[np.isfinite(score_row)]) > 1e-6):
                    problems.append("a search answered out of order")

    threads = [threading.Thread(target=read, args=(r,)) for r in readers]
    for t in threads:
        t.start()
    try:
        for batch in range(4):
            new = ids(10, start=1000 + 10 * batch)
            writer.add(records(new, seed=batch), unit(10, seed=100 + batch))
            writer.maintain()
    finally:
        done.set()
        for t in threads:
            t.join(timeout=60)
    assert not problems, problems[:3]
    newest = unit(10, seed=103)
    for reader in readers:
        assert eventually(lambda r=reader: len(r) == 70)
        assert eventually(lambda r=reader: [row[0] for row in found(r, newest, 1)[0]] == ids(10, start=1030))


def test_artifacts_round_trip_and_names_are_checked(place):
    writer = place.create()
    filled(writer, 3)
    reader = place.open()
    data = bytes(range(256)) * 3
    assert reader.read_artifact("head.bin") is None
    writer.write_artifact("head.bin", data)
    writer.save_manifest(head={"artifact": "head.bin"})
    assert writer.read_artifact("head.bin") == data
    assert eventually(lambda: reader.read_artifact("head.bin") == data and reader.columns is not None
                      and reader.manifest.get("head") == {"artifact": "head.bin"})
    writer.write_artifact("head.bin", b"\x00second")
    assert eventually(lambda: reader.read_artifact("head.bin") == b"\x00second")
    for name in ("manifest.json", "catalog.sqlite", "../x", "vectors-0.f32", ""):
        with pytest.raises(InvalidArgumentError):
            writer.write_artifact(name, b"x")
    with pytest.raises(RuntimeError):
        reader.write_artifact("head.bin", b"x")


def test_shopper_events_are_kept_in_order_and_shared(place):
    store = place.create()
    filled(store, 3)
    events = store.database.events()
    try:
        events.append("ann", "like", "p00001", None, None)
        events.append("ann", "upload", None, "sha-a", np.ones(DIM, np.float32).tobytes())
        events.append("bob", "view", "p00002", None, None)
        events.append("ann", "upload", None, "sha-a", np.zeros(DIM, np.float32).tobytes())  # the same picture again
        other = open_events(store.path)  # another handle: another replica's
        try:
            rows = other.rows("ann")
            assert [(k, p) for k, p, _ in rows] == [("like", "p00001"), ("upload", None)]
            assert np.frombuffer(rows[1][2], np.float32).sum() == 0  # the newer upload replaced the older
            assert other.users() == ["ann", "bob"]
            assert other.forget("ann") == 2 and events.rows("ann") == [] and events.users() == ["bob"]
        finally:
            other.close()
    finally:
        events.close()


def test_one_writer_at_a_time(place):
    writer = place.create()
    filled(writer, 3)
    with pytest.raises(IndexBusyError, match="another writer"):
        place.open(writable=True)
    with pytest.raises(IndexBusyError):
        place.check(repair=True)
    assert len(place.open()) == 3 and place.check().ok  # readers and checks never wait
    writer.close()
    second = place.open(writable=True)
    second.add(records(["late"]), unit(1, seed=8))
    assert len(second) == 4


def test_check_finds_damaged_vectors_and_repair_makes_the_next_build_re_embed_them(place):
    store = place.create()
    filled(store, 12)
    bad = unit(1, seed=31)
    store.add(records(["broken"]), 2 * bad)  # not a unit vector: what a damaged store hands back
    store.maintain()
    store.close()
    report = place.check()
    assert [f.code for f in report.findings] == ["vectors_damaged"] and report.findings[0].products == ["broken"]
    assert report.exit_code == 1 and report.findings[0].line().startswith("problem   ")
    assert place.check(repair=True).exit_code == 0
    after = place.check()
    assert [f.code for f in after.findings] == ["pending"] and after.findings[0].products == ["broken"]
    writer = place.open(writable=True)  # what the next `stylelens index` does for it
    writer.add(records(["broken"]), bad)
    writer.maintain()
    writer.close()
    assert checks_ok(place)


def test_check_re_embeds_a_sample_and_finds_swapped_vectors(place, random_embedder, tmp_path):
    """Real images and a real (seeded random-weight) ResNet-50: two products' vectors swapped are unit length,
    so only re-embedding their images finds them, with the store's own search for the closest vector."""
    from conftest import write_catalog
    from stylelens.intake.images import content_hash

    rows = write_catalog(tmp_path / "catalog", n=8, feed=False)
    paths = [tmp_path / "catalog" / "images" / f"{pid}.jpg" for pid in rows]
    vectors = random_embedder.embed_prepared(np.stack([random_embedder.prepare(p) for p in paths]))
    products = [dict(records([pid])[0], image_path=str(p), image_sha256=content_hash(p.read_bytes()))
                for pid, p in zip(rows, paths)]
    store = create_store(place.location, random_embedder.fingerprint(), {}, place.vectors, settings=place.settings)
    place.opened.append(store)
    store.add(products, vectors)
    store.maintain()

    def run(**kw):
        return place.check(embedder=random_embedder, sample=0, **kw)

    report = run()
    assert report.summary() == "ok" and report.counts["sampled"] == 8 and report.counts["lowest_cosine"] >= 0.99
    store.add([products[2], products[5]], vectors[[5, 2]])  # each other's vector: rows point at the wrong vectors
    store.maintain()
    store.close()
    report = run()
    assert [f.code for f in report.findings] == ["vectors_mismatch"], [f.line() for f in report.findings]
    assert sorted(report.findings[0].products) == sorted([products[2]["id"], products[5]["id"]])
    assert run(repair=True).exit_code == 0
    assert [f.code for f in run().findings] == ["pending"]
    writer = place.open(writable=True)  # the next build re-embeds exactly them
    writer.add([products[2], products[5]], vectors[[2, 5]])
    writer.maintain()
    writer.close()
    assert eventually(lambda: run().summary() == "ok", timeout=30 if place.lags else 0)
