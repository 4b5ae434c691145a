"""On real labelled products: a fixed slice of fashion-small indexed with efficientnet-lite0."""

import csv

import numpy as np
import pytest

from conftest import FASHION_SMALL
from stylelens import build_index, open_index

pytestmark = [pytest.mark.realdata, pytest.mark.slow,
              pytest.mark.skipif(not (FASHION_SMALL / "styles.csv").is_file(), reason="fashion-small is not beside the repo")]

CATALOG_SIZE, QUERIES = 3000, 300


@pytest.fixture(scope="module")
def real_slice(tmp_path_factory):
    """3,000 products (seeded permutation) linked into a catalog folder, and 300 other products as queries."""
    pytest.importorskip("efficientnet_lite_pytorch")
    with open(FASHION_SMALL / "styles.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        header, rows = reader.fieldnames, list(reader)
    order = np.random.default_rng(0).permutation(len(rows))
    catalog_rows = [rows[i] for i in order[:CATALOG_SIZE]]
    query_rows = [rows[i] for i in order[CATALOG_SIZE:CATALOG_SIZE + QUERIES]]
    folder = tmp_path_factory.mktemp("fashion") / "catalog"
    (folder / "images").mkdir(parents=True)
    for row in catalog_rows:
        (folder / "images" / f"{row['id']}.jpg").symlink_to(FASHION_SMALL / "images" / f"{row['id']}.jpg")
    with open(folder / "styles.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(catalog_rows)
    index_dir = folder.parent / "index"
    report = build_index(folder, index_dir, backbone="efficientnet-lite0", progress=False)
    assert report.indexed == CATALOG_SIZE and report.skipped == 0
    return open_index(index_dir), query_rows


def test_recommendations_share_the_query_type_and_identify_it(real_slice):
    index, queries = real_slice
    hits, correct = 0, 0
    for row in queries:
        result = index.search(FASHION_SMALL / "images" / f"{row['id']}.jpg", k=5, include_out_of_stock=True)
        assert len(result.products) == 5
        hits += sum(p["type"] == row["articleType"] for p in result.products)
        correct += result.identified.type == row["articleType"]
    precision, accuracy = hits / (5 * len(queries)), correct / len(queries)
    print(f"\nfashion-small {CATALOG_SIZE} indexed / {QUERIES} queries: precision@5 {precision:.3f}, identify-type accuracy {accuracy:.3f}")
    assert precision >= 0.70
    assert accuracy >= 0.75


def test_gender_filter_on_real_data_only_returns_that_gender(real_slice):
    index, queries = real_slice
    result = index.search(FASHION_SMALL / "images" / f"{queries[0]['id']}.jpg", k=10, gender="Women", include_out_of_stock=True)
    assert len(result.products) == 10 and {p["gender"] for p in result.products} == {"Women"}
