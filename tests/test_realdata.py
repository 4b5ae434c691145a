"""On real labelled products: a fixed slice of fashion-small indexed with efficientnet-lite0."""

import numpy as np
import pytest

from conftest import FASHION_SMALL, link_slice
from stylelens import build_index, open_index

pytestmark = [pytest.mark.realdata, pytest.mark.slow,
              pytest.mark.skipif(not (FASHION_SMALL / "styles.csv").is_file(), reason="fashion-small is not beside the repo")]

CATALOG_SIZE, QUERIES = 3000, 300


@pytest.fixture(scope="module")
def real_slice(tmp_path_factory):
    """3,000 products (seeded permutation) linked into a catalog folder, and 300 other products as queries."""
    pytest.importorskip("efficientnet_lite_pytorch")
    chosen: dict = {}

    def pick(rows):
        order = np.random.default_rng(0).permutation(len(rows))
        chosen["queries"] = [rows[i] for i in order[CATALOG_SIZE:CATALOG_SIZE + QUERIES]]
        return [rows[i] for i in order[:CATALOG_SIZE]]

    folder = tmp_path_factory.mktemp("fashion") / "catalog"
    link_slice(folder, pick)
    query_rows = chosen["queries"]
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
