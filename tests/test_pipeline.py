import csv
import shutil

import numpy as np

from imagegen import make_bad_corpus, make_image
from stylelens import build_index, open_index
from stylelens.store import IndexStore


def build(catalog, index, embedder, **kw):
    return build_index(catalog, index, embedder=embedder, workers=0, progress=False, **kw)


def test_rerun_embeds_only_new_or_changed_images_and_drops_removed(catalog, tmp_path, random_embedder):
    folder, rows = catalog
    index = tmp_path / "index"
    first = build(folder, index, random_embedder)
    assert (first.indexed, first.unchanged, first.skipped, first.removed) == (len(rows), 0, 0, 0)
    before = IndexStore.open(index)
    old_vector = np.array(before.vectors[before.columns.row_of["1001"]])
    before.close()

    again = build(folder, index, random_embedder)
    assert (again.indexed, again.unchanged, again.removed) == (0, len(rows), 0)

    make_image(folder / "images" / "1001.jpg", color=(250, 200, 0), pattern_seed=77)  # changed picture
    (folder / "images" / "1002.jpg").unlink()  # product gone
    make_image(folder / "images" / "5000.jpg", pattern_seed=5)  # new image, no feed row
    third = build(folder, index, random_embedder)
    assert (third.indexed, third.unchanged, third.removed) == (2, len(rows) - 2, 1)
    assert third.without_product == ["5000"] and third.without_image == ["1002"]
    store = IndexStore.open(index)
    assert len(store) == len(rows) and "1002" not in store.columns.row_of
    assert not np.allclose(store.vectors[store.columns.row_of["1001"]], old_vector)
    assert store.product("5000")["name"] is None


def test_feed_changes_update_products_without_re_embedding(catalog, tmp_path, random_embedder):
    folder, rows = catalog
    build(folder, tmp_path / "index", random_embedder)
    feed = folder / "products.csv"
    lines = list(csv.DictReader(open(feed)))
    lines[0]["price"], lines[0]["in_stock"] = "99.00", "no"
    with open(feed, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(lines[0]))
        writer.writeheader()
        writer.writerows(lines)
    report = build(folder, tmp_path / "index", random_embedder)
    assert report.indexed == 0
    product = IndexStore.open(tmp_path / "index").product(lines[0]["id"])
    assert product["price"] == 99.0 and product["in_stock"] is False


def test_bad_images_are_skipped_counted_and_listed(catalog, tmp_path, random_embedder):
    folder, rows = catalog
    corpus = make_bad_corpus(tmp_path / "bad")
    expected = {}
    for name, code in corpus.items():  # one id per file: truncated.jpg and truncated.png would share one
        unique = name.replace(".", "-") + "." + name.rsplit(".", 1)[1]
        shutil.copy(tmp_path / "bad" / name, folder / "images" / unique)
        expected[unique] = code
    report = build(folder, tmp_path / "index", random_embedder)
    assert report.indexed == len(rows)
    assert report.skipped == len(expected)
    listed = {row["path"].split("/")[-1]: row["code"] for row in csv.DictReader(open(report.errors_csv))}
    assert listed == expected
    assert all(row["message"] for row in csv.DictReader(open(report.errors_csv)))
    assert f"skipped {len(expected)}" in report.summary() and "errors.csv" in report.summary()


def test_worker_processes_give_the_same_vectors_as_in_process(catalog, tmp_path, random_embedder):
    folder, rows = catalog
    for i in range(80):  # enough images for the worker pool to be used
        make_image(folder / "images" / f"x{i}.png", fmt="PNG", pattern_seed=1000 + i)
    build_index(folder, tmp_path / "pool", embedder=random_embedder, workers=2, progress=False)
    build(folder, tmp_path / "inproc", random_embedder)
    a, b = IndexStore.open(tmp_path / "pool"), IndexStore.open(tmp_path / "inproc")
    for pid in ("x0", "x79", "1000"):
        np.testing.assert_allclose(a.vectors[a.columns.row_of[pid]], b.vectors[b.columns.row_of[pid]], atol=1e-5)


def test_search_ranks_by_cosine_and_never_returns_the_query_itself(catalog, tmp_path, random_embedder):
    folder, rows = catalog
    build(folder, tmp_path / "index", random_embedder)
    index = open_index(tmp_path / "index", embedder=random_embedder)
    result = index.search(folder / "images" / "1006.jpg", k=5, include_out_of_stock=True)
    assert "1006" not in result.ids and len(result.ids) == 5
    scores = [p["score"] for p in result.products]
    assert scores == sorted(scores, reverse=True)
    # "similarity" is the cosine with the stored vector.
    query = random_embedder.embed_one(folder / "images" / "1006.jpg")
    store = index.store
    for p in result.products:
        assert abs(p["similarity"] - float(store.vectors[store.columns.row_of[p["id"]]] @ query)) < 1e-3
    # A vector near product 1013's (not the same picture) finds 1013 first.
    rng = np.random.default_rng(0)
    near = np.array(store.vectors[store.columns.row_of["1013"]]) + rng.normal(0, 0.002, store.dim).astype(np.float32)
    near /= np.linalg.norm(near)
    assert index.search_vector(near, k=1, exclude_rows=(), filters=None).ids == ["1013"]


def test_a_copied_catalog_reindexes_under_the_same_ids(catalog, tmp_path, random_embedder):
    folder, rows = catalog
    build(folder, tmp_path / "index", random_embedder)
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    report = build(moved, tmp_path / "index", random_embedder)
    assert report.indexed == 0 and report.unchanged == len(rows)


def _jobs(tmp_path, n_good: int):
    from stylelens.images import content_hash
    from stylelens.pipeline import Job

    corpus = make_bad_corpus(tmp_path / "bad")
    bad = [tmp_path / "bad" / name for name in corpus]
    jobs = []
    for i in range(n_good):
        path = make_image(tmp_path / "good" / f"g{i}.png", fmt="PNG", pattern_seed=2000 + i)
        jobs.append(path)
        if i % 40 == 0:  # bad files spread through the stream
            jobs.append(bad[(i // 40) % len(bad)])
    out = []
    for path in jobs:
        data = path.read_bytes()
        out.append(Job(path.stem, str(path), data, content_hash(data)))
    return out


def test_decode_workers_stream_in_order_through_reused_shared_slots(tmp_path, monkeypatch):
    """More images than shared-memory slots (ring reuse), bad files among them: same answers, same order
    and same pixels as decoding in-process; the slots are gone afterwards; the pipe fallback agrees."""
    from pathlib import Path

    from stylelens.embedder import BACKBONES
    from stylelens.pipeline import _SharedSlots, prepared_stream

    pre = BACKBONES["resnet50"].preprocess
    jobs = _jobs(tmp_path, 300)
    reference = list(prepared_stream(jobs, pre, 0, 50_000_000))
    assert sum(err is not None for _, _, err in reference) >= 5

    def same_as_reference(results):
        assert [job.pid for job, _, _ in results] == [job.pid for job, _, _ in reference]
        for (_, px, err), (_, ref_px, ref_err) in zip(results, reference):
            assert err == ref_err
            assert (px is None and ref_px is None) or np.array_equal(px, ref_px)

    made = []
    original_init = _SharedSlots.__init__

    def recording_init(self, n, size):
        original_init(self, n, size)
        made.append((self.shm.name, n))

    monkeypatch.setattr(_SharedSlots, "__init__", recording_init)
    same_as_reference(list(prepared_stream(jobs, pre, 2, 50_000_000)))
    assert len(made) == 1 and made[0][1] < len(jobs)  # the ring was reused
    assert not (Path("/dev/shm") / made[0][0].lstrip("/")).exists()

    monkeypatch.setattr(_SharedSlots, "fit", staticmethod(lambda n, size: False))  # e.g. a small /dev/shm
    same_as_reference(list(prepared_stream(jobs, pre, 2, 50_000_000)))
    assert len(made) == 1
