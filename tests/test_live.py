"""An opened index follows the writers: new, changed and removed products show without reopening,
and a query in flight finishes on the view it started with."""

import shutil
import threading

import numpy as np
import pytest
from conftest import write_catalog

from stylelens import build_index, open_index, remove_products
from stylelens.errors import ProductNotFoundError


@pytest.fixture
def shop(tmp_path, random_embedder):
    write_catalog(tmp_path / "catalog", n=20)
    build_index(tmp_path / "catalog", tmp_path / "index", embedder=random_embedder, workers=0, progress=False)
    return tmp_path / "catalog", tmp_path / "index"


def test_a_reader_sees_new_changed_and_removed_products_without_reopening(shop, tmp_path, random_embedder):
    catalog, index_dir = shop
    reader = open_index(index_dir, embedder=random_embedder)
    before = reader.store.generation
    with pytest.raises(ProductNotFoundError):
        reader.product("1025")
    # A writer (its own connection, as another process would have) adds products and changes a price.
    more = write_catalog(tmp_path / "more", n=26)
    for pid in ("1020", "1021", "1022", "1023", "1024", "1025"):
        shutil.copy(tmp_path / "more" / "images" / f"{pid}.jpg", catalog / "images" / f"{pid}.jpg")
    shutil.copy(tmp_path / "more" / "products.csv", catalog / "products.csv")
    text = (catalog / "products.csv").read_text().replace(f"{more['1003']['price']},EUR", "999.00,EUR")
    (catalog / "products.csv").write_text(text)
    build_index(catalog, index_dir, embedder=random_embedder, workers=0, progress=False)
    assert reader.store.generation != before
    assert reader.product("1025")["id"] == "1025" and reader.product("1003")["price"] == 999.0
    new = reader.similar("1025", k=30, include_out_of_stock=True)
    assert len(new.ids) == 25 and "1025" not in new.ids
    # Removal: compaction renumbers the rows; the reader must not answer from the old numbering.
    remove_products(index_dir, ["1000", "1001", "1002"])
    after = reader.similar("1010", k=30, include_out_of_stock=True)
    assert len(after.ids) == 22 and not {"1000", "1001", "1002", "1010"} & set(after.ids)
    truth = reader.vector("1010") @ np.stack([reader.vector(p) for p in after.ids]).T
    np.testing.assert_allclose([p["similarity"] for p in after.products], truth, atol=1e-3)


def test_searches_during_a_build_never_fail(shop, tmp_path, random_embedder):
    catalog, index_dir = shop
    reader = open_index(index_dir, embedder=random_embedder)
    write_catalog(tmp_path / "more", n=60, seed=3)
    for path in (tmp_path / "more" / "images").iterdir():
        if int(path.stem) >= 1020:
            shutil.copy(path, catalog / "images" / path.name)
    errors, answers = [], []
    stop = threading.Event()

    def search_until_stopped():
        while not stop.is_set():
            try:
                answers.append(len(reader.similar("1005", k=10, include_out_of_stock=True).ids))
            except Exception as exc:  # noqa: BLE001 - any failure is what this test looks for
                errors.append(repr(exc))

    threads = [threading.Thread(target=search_until_stopped) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        build_index(catalog, index_dir, embedder=random_embedder, workers=0, progress=False, batch_size=4)
        remove_products(index_dir, [str(i) for i in range(1030, 1040)])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors and answers and all(n == 10 for n in answers)
    assert len(reader) == 50 and "1059" in reader.similar("1005", k=60, include_out_of_stock=True).ids
