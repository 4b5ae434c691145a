import numpy as np
import pytest
from PIL import Image

from quality_catalog import add_near_duplicates, build, outfit_catalog
from stylelens.settings import Settings
from stylelens.query.diversity import (check_collapse, check_diversity, collapse_duplicates, group_pairs, mmr,
                                 near_duplicate_groups, rerank)
from stylelens.errors import InvalidArgumentError

SOURCE = "o000"
COPIES = 4


@pytest.fixture(scope="module")
def dup_shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("dups")
    rows = outfit_catalog(root / "catalog", n=36)
    copies = add_near_duplicates(root / "catalog", rows, SOURCE, COPIES)
    index = build(root / "catalog", root / "index")
    # The shopper's photo: the same garment, but a different picture (stronger JPEG compression).
    query = root / "query.jpg"
    Image.open(root / "catalog" / "images" / f"{SOURCE}.jpg").save(query, "JPEG", quality=80)
    return index, rows, [SOURCE] + copies, query


def unit(rows):
    v = np.asarray(rows, np.float64)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_collapse_groups_best_first_and_counts_members():
    v = unit([[1, 0, 0], [1, 0.01, 0], [0, 1, 0], [1, 0, 0.01], [0, 1, 0.01], [0, 0, 1]])
    kept, counts = collapse_duplicates(v, threshold=0.99)
    assert kept.tolist() == [0, 2, 5]
    assert counts.tolist() == [2, 1, 0]


def test_mmr_zero_is_plain_ranking_and_one_spreads_out():
    v = unit([[1, 0], [1, 0.05], [1, 0.1], [0, 1]])
    scores = np.array([0.99, 0.98, 0.97, 0.2])
    assert mmr(scores, v, 3, 0.0).tolist() == [0, 1, 2]
    picked = mmr(scores, v, 2, 0.6).tolist()
    assert picked == [0, 3], "the second pick is the different item, not the near-copy"


def test_rerank_keeps_at_most_k_and_drops_padding():
    v = unit(np.random.default_rng(0).normal(size=(6, 8)))
    scores, rows, counts = rerank(np.array([0.9, 0.8, -np.inf]), np.array([2, 4, -1]), v, 5)
    assert rows.tolist() == [2, 4] and counts is None


@pytest.mark.parametrize("bad", [-0.1, 1.5, "lots", float("nan")])
def test_diversity_out_of_range_is_refused(bad):
    with pytest.raises(InvalidArgumentError) as err:
        check_diversity(bad)
    assert "diversity must" in err.value.message


def test_collapse_flag_parsing():
    assert check_collapse("true") is True and check_collapse("0") is False and check_collapse(None) is False
    with pytest.raises(InvalidArgumentError):
        check_collapse("maybe")


def test_group_pairs_is_transitive():
    labels = group_pairs(6, np.array([[0, 1], [1, 2], [4, 5]]))
    assert labels[0] == labels[1] == labels[2] and labels[4] == labels[5] and len(set(labels.tolist())) == 3


def test_plain_search_shows_the_copies_collapse_shows_one(dup_shop):
    index, rows, group, query = dup_shop
    plain = index.search(query, k=5, include_out_of_stock=True)
    assert sum(pid in group for pid in plain.ids) >= 4, "precondition: the copies crowd the plain top 5"

    collapsed = index.search(query, k=5, include_out_of_stock=True, collapse=True)
    assert len(collapsed.products) == 5
    members = [p for p in collapsed.products if p["id"] in group]
    assert len(members) == 1 and members[0]["similar_count"] == COPIES
    assert collapsed.products[0]["id"] in group, "the group keeps the rank of its best member"
    vectors = index.store.vectors([index.row(p) for p in collapsed.ids])
    sims = vectors @ vectors.T
    assert (sims[np.triu_indices(5, 1)] < Settings.load().duplicate_cosine).all()
    assert all("similar_count" in p for p in collapsed.products)
    assert "similar_count" not in plain.products[0]


def test_diversity_lowers_redundancy_and_keeps_the_best_first(dup_shop):
    index, rows, group, query = dup_shop

    def redundancy(result):
        v = index.store.vectors([index.row(p) for p in result.ids])
        return float((v @ v.T)[np.triu_indices(len(v), 1)].mean())

    plain = index.search(query, k=6, include_out_of_stock=True)
    varied = index.search(query, k=6, include_out_of_stock=True, diversity=0.7)
    assert varied.ids[0] == plain.ids[0]
    assert redundancy(varied) < redundancy(plain) - 0.05
    assert sum(pid in group for pid in varied.ids) < sum(pid in group for pid in plain.ids)
    assert index.search(query, k=6, include_out_of_stock=True, diversity=0).ids == plain.ids


def test_similar_takes_the_same_options(dup_shop):
    index, rows, group, _ = dup_shop
    other = next(pid for pid in rows if pid not in group and rows[pid]["subCategory"] == "Topwear")
    result = index.similar(other, k=4, include_out_of_stock=True, collapse=True, diversity=0.3)
    assert len(result.products) == 4 and other not in result.ids


def test_near_duplicate_groups_counts_the_relisted_product(dup_shop):
    index, rows, group, _ = dup_shop
    summary = near_duplicate_groups(index.store.all_vectors(), index.store.columns.live, Settings.load().duplicate_cosine)
    assert summary["groups"] >= 1 and summary["largest_group"] == COPIES + 1
    assert summary["threshold"] == Settings.load().duplicate_cosine
    strict = near_duplicate_groups(index.store.all_vectors(), index.store.columns.live, threshold=1.01)
    assert strict["groups"] == 0 and strict["products_in_groups"] == 0


@pytest.mark.parametrize("options", [{"diversity": 2}, {"collapse": "sometimes"}, {"k": 0}])
def test_bad_search_options_are_refused_before_the_image_is_read(opened_index, options):
    # Garbage bytes would be an ImageError; the option error comes first, so no embedding was spent on it.
    with pytest.raises(InvalidArgumentError):
        opened_index.search(b"not a picture at all", **options)


def test_for_you_collapses_near_duplicates_like_search(dup_shop):
    from stylelens.query.personalize import feedback, forget, recommend_for_user

    index, rows, group, _ = dup_shop
    # A shopper who liked something close to the re-listed product: its copies crowd a plain feed.
    near = index.similar(group[0], k=1, include_out_of_stock=True).ids[0]
    shopper = "dup-lover"
    feedback(index, shopper, near, "like")
    try:
        plain = recommend_for_user(index, shopper, k=8, include_out_of_stock=True)
        folded = recommend_for_user(index, shopper, k=8, include_out_of_stock=True, collapse=True)
    finally:
        forget(index, shopper)
    assert len(set(plain.ids) & set(group)) >= 3, "the fixture's copies should crowd the plain feed"
    assert len(set(folded.ids) & set(group)) == 1 and len(folded.ids) == 8
    assert next(p for p in folded.products if p["id"] in group)["similar_count"] >= 3
    v = index.store.vectors([index.row(p) for p in folded.ids])
    sims = v @ v.T
    assert (sims[np.triu_indices(8, 1)] < index.settings.duplicate_cosine).all()
