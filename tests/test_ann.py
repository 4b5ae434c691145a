"""FAISS ANN search: recall against exact, persistence in the index folder, add / delete / compact, filters."""

import json

import numpy as np
import pytest

from stylelens.index import ann
from stylelens.index import ann as ann_module
from stylelens.settings import Settings
from stylelens.index.backend import exact_search
from stylelens.index import create_store, open_store, remove_products

pytest.importorskip("faiss")

DIM = 64
FINGERPRINT = {"backbone": "test", "weights": {"source": "random", "sha256": None, "detail": "seed=0"}, "pooling": "max",
               "preprocess": {}, "dim": DIM, "normalized": "l2"}


def clustered(n, seed=0, clusters=60, noise=0.35):
    """Unit vectors around cluster centres: neighbourhoods like real embeddings, not uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    v = centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def records(start, n):
    return [{"id": f"p{i}", "image_sha256": f"h{i}", "price": float(i % 100), "type": "Shirts" if i % 4 else "Bags"}
            for i in range(start, start + n)]


@pytest.fixture
def store(tmp_path):
    s = create_store(tmp_path / "index", FINGERPRINT, {})
    vectors = clustered(6000)
    s.add(records(0, 6000), vectors)
    yield s
    s.close()


def searcher_of(store, ann=None, nprobe=16, candidates=100):
    return ann_module.AnnSearcher(store.backend, nprobe, candidates, ann=ann)


def recall_at(found, truth, k=10):
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(found, truth)]))


def queries(n=40, seed=7):
    return clustered(n, seed=seed)


def test_recall_against_exact_and_true_scores(store):
    searcher = searcher_of(store)
    q = queries()
    scores, rows = searcher.search(q, 10)
    _, truth = exact_search(store.all_vectors(), q, 10, None)
    assert recall_at(rows, truth) >= 0.95
    # Re-ranked with the float32 rows: reported scores are the exact cosines, best first.
    np.testing.assert_allclose(scores, np.einsum("qkd,qd->qk", store.all_vectors()[rows], q), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-7).all()


def test_product_quantized_codes_also_reach_recall(store):
    index = ann.AnnIndex.build(store.backend, factory="IVF32,PQ16")
    searcher = searcher_of(store, ann=index, nprobe=16, candidates=200)
    _, rows = searcher.search(queries(), 10)
    _, truth = exact_search(store.all_vectors(), queries(), 10)
    assert recall_at(rows, truth) >= 0.95
    assert index.memory_bytes() < store.all_vectors().nbytes / 4  # 16 bytes of codes per 256-byte vector


def test_index_is_persisted_in_the_folder_and_reused(store):
    first = ann.open_ann(store.backend)
    meta = json.loads((store.path / ann.ANN_META).read_text())
    assert meta["vectors"] == 6000 and meta["rows"] == 6000
    assert (store.path / f"ann-{meta['token']}.faiss").is_file()
    again = ann.open_ann(store.backend)
    assert again.meta["token"] == first.meta["token"]  # loaded, not rebuilt
    assert again.index.ntotal == 6000


def test_new_rows_are_added_and_found(store):
    ann.open_ann(store.backend)
    extra = clustered(50, seed=99)
    store.add(records(6000, 50), extra)
    index = ann.open_ann(store.backend)
    assert index.index.ntotal == 6050 and index.meta["trained_on"] == json.loads((store.path / ann.ANN_META).read_text())["trained_on"]
    _, rows = searcher_of(store, ann=index).search(extra[:10], 1)
    assert list(rows[:, 0]) == list(range(6000, 6010))


def test_deleted_products_never_come_back(store):
    ann.open_ann(store.backend)
    q = store.all_vectors()[:20].copy()
    store.delete([f"p{i}" for i in range(20)])
    searcher = searcher_of(store)
    assert searcher.ann.index.ntotal == 5980
    _, rows = searcher.search(q, 10)
    assert not set(rows.ravel()) & set(range(20))
    assert all(store.columns.live[r] for r in rows.ravel())


def test_compaction_remaps_ids_without_rebuilding(store):
    first = ann.open_ann(store.backend)
    q = queries()
    before_scores, before = searcher_of(store, ann=first).search(q, 10)
    before_ids = [[store.columns.ids[r] for r in row] for row in before]
    gone = {f"p{i}" for i in range(0, 6000, 7)}
    path = store.path
    store.close()
    remove_products(path, sorted(gone))
    reopened = open_store(path)
    # remove_products brought the saved ANN index in step with the compacted vectors itself.
    saved = json.loads((path / ann.ANN_META).read_text())
    assert saved["generation"] == reopened.backend.generation_name and saved["vectors"] == 6000 - len(gone)
    try:
        index = ann.open_ann(reopened.backend)
        assert index.meta["trained_on"] == first.meta["trained_on"] and index.meta["train_seconds"] == first.meta["train_seconds"]
        assert index.index.ntotal == 6000 - len(gone) and reopened.n_rows == 6000 - len(gone)
        scores, after = searcher_of(reopened, ann=index).search(q, 10)
        after_ids = [[reopened.columns.ids[r] for r in row] for row in after]
        for b_ids, a_ids in zip(before_ids, after_ids):
            kept = [i for i in b_ids if i not in gone]
            assert a_ids[: len(kept)] == kept or len(set(kept) - set(a_ids)) <= 1
        assert not {i for row in after_ids for i in row} & gone
        _, truth = exact_search(reopened.all_vectors(), q, 10)
        assert recall_at(after, truth) >= 0.95
    finally:
        reopened.close()


@pytest.mark.parametrize("share", [0.5, 0.02])
def test_filters_are_respected_and_recall_holds(store, share):
    """A broad filter goes through FAISS' IDSelector; a narrow one is answered exactly over its rows."""
    rng = np.random.default_rng(3)
    mask = rng.random(6000) < share
    searcher = searcher_of(store)
    q = queries()
    _, rows = searcher.search(q, 10, mask)
    _, truth = exact_search(store.all_vectors(), q, 10, mask)
    assert all(mask[r] for r in rows.ravel() if r >= 0)
    assert recall_at(rows, truth) >= 0.95


def test_a_filter_with_fewer_rows_than_k_pads_with_minus_one(store):
    mask = np.zeros(6000, bool)
    mask[[5, 17, 99]] = True
    scores, rows = searcher_of(store).search(queries(2), 10, mask)
    assert set(rows[0, :3]) == {5, 17, 99} and (rows[:, 3:] == -1).all() and np.isinf(scores[:, 3:]).all()


def test_auto_picks_ann_by_catalog_size(store):
    def method(**settings):
        opened = open_store(store.path, settings=Settings.load(**settings))
        try:
            return opened.backend.name
        finally:
            opened.close()

    assert method(search="auto", ann_threshold=100_000) == "exact"
    assert method(search="auto", ann_threshold=1000) == "ann"
    assert method(search="ann", ann_threshold=100_000) == "ann"


def test_factory_grows_with_the_catalog():
    assert ann.factory_for(30, 2048) == ("IVF1,SQ8", 1)
    assert ann.factory_for(40_000, 2048) == ("IVF256,SQ8", 256)
    assert ann.factory_for(1_000_000, 2048) == ("IVF1024,PQ256", 1024)


def test_build_index_writes_the_ann_file_when_asked(tmp_path, monkeypatch, random_embedder):
    from conftest import write_catalog
    from stylelens import build_index, open_index

    monkeypatch.setenv("STYLELENS_SEARCH", "ann")
    write_catalog(tmp_path / "catalog", n=40)
    build_index(tmp_path / "catalog", tmp_path / "index", embedder=random_embedder, workers=0, progress=False)
    meta = json.loads((tmp_path / "index" / ann.ANN_META).read_text())
    assert meta["vectors"] == 40
    index = open_index(tmp_path / "index", embedder=random_embedder)
    assert index.store.backend.name == "ann"
    result = index.similar("1003", k=5)
    assert len(result.products) == 5 and "1003" not in result.ids
