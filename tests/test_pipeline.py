import csv
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import write_catalog
from imagegen import make_bad_corpus, make_image
from stylelens.build import build_index
from stylelens.errors import IndexMismatchError, InvalidArgumentError
from stylelens.index.store import open_store
from stylelens.query import open_index
from stylelens.settings import Settings

SRC = Path(__file__).resolve().parents[1] / "src"


def vector(store, pid):
    return store.vectors([store.columns.row_of[pid]])[0]


def build(catalog, index, embedder, **kw):
    return build_index(catalog, index, embedder=embedder, workers=0, progress=False, **kw)


def test_rerun_embeds_only_new_or_changed_images_and_drops_removed(catalog, tmp_path, random_embedder):
    folder, rows = catalog
    index = tmp_path / "index"
    first = build(folder, index, random_embedder)
    assert (first.indexed, first.unchanged, first.skipped, first.removed) == (len(rows), 0, 0, 0)
    before = open_store(index)
    old_vector = np.array(vector(before, "1001"))
    before.close()

    again = build(folder, index, random_embedder)
    assert (again.indexed, again.unchanged, again.removed) == (0, len(rows), 0)

    make_image(folder / "images" / "1001.jpg", color=(250, 200, 0), pattern_seed=77)  # changed picture
    (folder / "images" / "1002.jpg").unlink()  # product gone
    make_image(folder / "images" / "5000.jpg", pattern_seed=5)  # new image, no feed row
    third = build(folder, index, random_embedder)
    assert (third.indexed, third.unchanged, third.removed) == (2, len(rows) - 2, 1)
    assert third.without_product == ["5000"] and third.without_image == ["1002"]
    store = open_store(index)
    assert len(store) == len(rows) and "1002" not in store.columns.row_of
    assert not np.allclose(vector(store, "1001"), old_vector)
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
    product = open_store(tmp_path / "index").product(lines[0]["id"])
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


@pytest.mark.slow
def test_threaded_decode_gives_the_same_vectors_as_decoding_in_the_calling_thread(catalog, tmp_path, random_embedder):
    folder, rows = catalog
    for i in range(12):
        make_image(folder / "images" / f"x{i}.png", fmt="PNG", pattern_seed=1000 + i)
    threaded = build_index(folder, tmp_path / "threads", embedder=random_embedder, workers=3, progress=False)
    build(folder, tmp_path / "inline", random_embedder)
    assert threaded.indexed == len(rows) + 12
    a, b = open_store(tmp_path / "threads"), open_store(tmp_path / "inline")
    assert list(a.columns.ids) == list(b.columns.ids)  # the same rows in the same (catalog) order
    np.testing.assert_allclose(a.all_vectors(), b.all_vectors(), atol=1e-5)


def test_search_puts_the_exact_photo_first_then_ranks_by_cosine(catalog, tmp_path, random_embedder):
    folder, rows = catalog
    build(folder, tmp_path / "index", random_embedder)
    index = open_index(tmp_path / "index", embedder=random_embedder)
    result = index.search(folder / "images" / "1006.jpg", k=5, include_out_of_stock=True)
    # The product's own photo comes first, marked; the others never repeat it and are ranked by score.
    assert result.ids[0] == "1006" and result.products[0].get("exact_match") is True
    assert "1006" not in result.ids[1:] and len(result.ids) == 5
    assert not any(p.get("exact_match") for p in result.products[1:])
    scores = [p["score"] for p in result.products[1:]]
    assert scores == sorted(scores, reverse=True)
    # "similarity" is the cosine with the stored vector.
    query = random_embedder.embed_one(folder / "images" / "1006.jpg")
    store = index.store
    for p in result.products:
        assert abs(p["similarity"] - float(vector(store, p["id"]) @ query)) < 1e-3
    # A vector near product 1013's (not the same picture) finds 1013 first.
    rng = np.random.default_rng(0)
    near = np.array(vector(store, "1013")) + rng.normal(0, 0.002, store.dim).astype(np.float32)
    near /= np.linalg.norm(near)
    assert index.search_vector(near, k=1, exclude_rows=(), filters=None).ids == ["1013"]


def test_a_copied_catalog_reindexes_under_the_same_ids(catalog, tmp_path, random_embedder):
    folder, rows = catalog
    build(folder, tmp_path / "index", random_embedder)
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    # Another folder is refused unless asked for: it would remove every product that folder lacks.
    with pytest.raises(IndexMismatchError, match="--replace"):
        build(moved, tmp_path / "index", random_embedder)
    report = build(moved, tmp_path / "index", random_embedder, replace=True)
    assert report.indexed == 0 and report.unchanged == len(rows)


def _images(tmp_path, n_good: int) -> list[tuple[str, Path]]:
    """(id, path) of n_good generated PNGs with bad files spread among them."""
    corpus = make_bad_corpus(tmp_path / "bad")
    bad = [tmp_path / "bad" / name for name in corpus]
    out = []
    for i in range(n_good):
        out.append((f"g{i}", make_image(tmp_path / "good" / f"g{i}.png", fmt="PNG", pattern_seed=2000 + i)))
        if i % 20 == 0:
            out.append((f"b{i}", bad[(i // 20) % len(bad)]))
    return out


def test_decode_threads_stream_in_order_with_bad_files_like_one_thread(tmp_path):
    from stylelens.build.local import stream
    from stylelens.models import BACKBONES

    pre = BACKBONES["resnet50"].preprocess
    images = _images(tmp_path, 120)
    reference = list(stream(images, {}, pre, 0, 50_000_000, window=1))
    assert sum(item.status == "error" for item in reference) >= 5
    known = {reference[3].pid: reference[3].sha256}  # one unchanged image: read and hashed, not decoded
    threaded = list(stream(images, known, pre, 3, 50_000_000, window=7))
    assert [item.pid for item in threaded] == [pid for pid, _ in images]
    assert threaded[3].status == "unchanged" and threaded[3].pixels is None
    for i, (got, ref) in enumerate(zip(threaded, reference)):
        if i == 3:
            continue
        assert (got.status, got.error, got.sha256) == (ref.status, ref.error, ref.sha256)
        assert (got.pixels is None and ref.pixels is None) or np.array_equal(got.pixels, ref.pixels)


class CountingImages(dict):
    """A catalog's images (id -> path) that count how many were taken from them."""

    taken = 0

    def items(self):
        for pid, path in super().items():
            self.taken += 1
            yield pid, path


def test_streaming_reads_a_bounded_window_ahead_of_the_embedder(tmp_path, random_embedder):
    """Memory stays flat: whatever the catalog size, the runner never takes more than its window of images
    (plus the batch being embedded) ahead of the embedder. The old runner read every image first."""
    from stylelens.build.local import run_local, window_for
    from stylelens.build.plan import Build, BuildReport
    from stylelens.intake.catalog import load_catalog
    from stylelens.index.store import create_store

    images = _images(tmp_path, 150)
    folder = tmp_path / "catalog" / "images"
    folder.mkdir(parents=True)
    for pid, path in images:
        shutil.copy(path, folder / f"{pid}{path.suffix}")
    catalog = load_catalog(tmp_path / "catalog")
    catalog.images = counting = CountingImages(catalog.images)

    class SpyEmbedder:  # records how far reading ran ahead each time a batch reaches the embedder
        preprocess, runtime_name, dim = random_embedder.preprocess, "spy", random_embedder.dim

        def __init__(self):
            self.ahead, self.consumed = [], 0

        def embed_prepared(self, pixels):
            self.consumed += len(pixels)
            self.ahead.append(counting.taken - self.consumed)
            rng = np.random.default_rng(len(self.ahead))
            v = rng.standard_normal((len(pixels), self.dim)).astype(np.float32)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

    spy = SpyEmbedder()
    store = create_store(tmp_path / "index", random_embedder.fingerprint(), {}, settings=Settings.load(environ={}))
    report = BuildReport()
    try:
        run_local(Build(catalog, store, report, progress=False, commit_every=8), spy, workers=2, max_pixels=50_000_000)
    finally:
        store.close()
    assert report.indexed == 150 and len(report.errors) == len(images) - 150
    assert len(spy.ahead) >= 150 // 8
    bad_files_between = len(images) - 150  # skipped images are taken too, never embedded
    assert max(spy.ahead) <= window_for(8, 2) + bad_files_between, spy.ahead


@pytest.mark.slow
def test_a_script_calling_build_index_at_module_level_finishes(tmp_path):
    """No `if __name__ == "__main__"` guard: decode threads never re-import the script (spawned worker
    processes did, and failed in their bootstrapping phase, once a catalog had more than 64 images)."""
    pytest.importorskip("efficientnet_lite_pytorch")
    folder = tmp_path / "catalog"
    rows = write_catalog(folder, n=80, seed=3)
    script = tmp_path / "index_my_shop.py"
    script.write_text(textwrap.dedent(f"""
        from stylelens import build_index

        report = build_index({str(folder)!r}, {str(tmp_path / "index")!r}, backbone="efficientnet-lite0",
                             weights="random", runtime="torch", workers=2, batch_size=16, progress=False)
        print(report.summary())
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"indexed {len(rows)}," in done.stdout
    assert "bootstrapping" not in done.stderr and "Traceback" not in done.stderr


def test_reindexing_reuses_the_embedder_that_built_the_index(catalog, tmp_path):
    """An index built with a non-default backbone/weights/pooling is updated with the same embedder when the
    caller names none; naming a different one is the mismatch error."""
    pytest.importorskip("efficientnet_lite_pytorch")
    folder, rows = catalog
    defaults = Settings.load(environ={}, runtime="torch", workers=0, progress=False)
    build_index(folder, tmp_path / "index", settings=defaults, backbone="efficientnet-lite0", weights="random", pooling="avg")
    for i in range(2):
        make_image(folder / "images" / f"new{i}.jpg", pattern_seed=300 + i)
    again = build_index(folder, tmp_path / "index", settings=defaults)  # defaults say resnet50 / imagenet / max
    assert (again.indexed, again.unchanged) == (2, len(rows))
    built = open_store(tmp_path / "index").manifest["embedder"]
    assert (built["backbone"], built["weights"]["source"], built["pooling"]) == ("efficientnet-lite0", "random", "avg")
    with pytest.raises(IndexMismatchError, match="pooling"):
        build_index(folder, tmp_path / "index", settings=defaults, pooling="max")


def test_unknown_keyword_is_the_settings_error(catalog, tmp_path):
    folder, _ = catalog
    with pytest.raises(InvalidArgumentError, match="Unknown setting 'batchsize'"):
        build_index(folder, tmp_path / "index", batchsize=8)


def test_feed_warnings_and_odd_catalog_entries_are_all_written_down(tmp_path, random_embedder):
    import os

    rows = write_catalog(tmp_path / "c", n=14)
    feed = (tmp_path / "c" / "products.csv").read_text().splitlines()
    header, body = feed[0], feed[1:]
    # Twelve rows with a price no shop means (all must reach warnings.csv, not just the first ten).
    body = [line.replace(f",{rows[str(1000 + i)]['price']},", ",$-5,", 1) if i < 12 else line for i, line in enumerate(body)]
    (tmp_path / "c" / "products.csv").write_text("\n".join([header, *body]) + "\n")
    (tmp_path / "c" / "images" / "folder.jpg").mkdir()
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "c" / "images" / "dangling.jpg")
    report = build(tmp_path / "c", tmp_path / "index", random_embedder)
    with open(tmp_path / "index" / "warnings.csv", newline="") as fh:
        warned = list(csv.DictReader(fh))
    assert sum(w["code"] == "negative_price" for w in warned) == 12 and len(report.warnings) == len(warned)
    with open(tmp_path / "index" / "errors.csv", newline="") as fh:
        errors = {row["path"].rsplit("/", 1)[-1]: row["code"] for row in csv.DictReader(fh)}
    assert errors == {"folder.jpg": "not_a_file", "dangling.jpg": "broken_link"}
    assert report.skipped == 2 and "feed warnings (see" in report.summary()
