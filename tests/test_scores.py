"""The one scoring pass over the catalog (``index.backend.all_scores``) and the parser's whole-map helpers:
the same answers as the plain numpy they replace."""

import numpy as np
import pytest

from stylelens.index import backend
from stylelens.index.backend import all_scores, exact_search
from stylelens.models.parser import _best_class, mask_box


@pytest.mark.parametrize("queries", [1, 2, 5, 9])
@pytest.mark.parametrize("parallel_rows", [1000, 10**9])  # a catalog searched in halves at once, and in one call
def test_all_scores_is_every_rows_cosine_to_each_query(tmp_path, monkeypatch, queries, parallel_rows):
    monkeypatch.setattr(backend, "PARALLEL_ROWS", parallel_rows)
    rng = np.random.default_rng(queries)
    rows = rng.standard_normal((5003, 96)).astype(np.float32)
    path = tmp_path / "vectors.f32"
    rows.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=rows.shape)  # as an index folder keeps them
    q = rng.standard_normal((queries, 96)).astype(np.float32)
    for matrix in (rows, mapped, rows[::2]):  # a strided view too
        got = all_scores(matrix, q)
        assert got.shape == (queries, len(matrix)) and got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_allclose(got, q @ np.asarray(matrix).T, rtol=0, atol=1e-4)
    assert all_scores(rows[:0], q).shape == (queries, 0)
    # Some rows only (a worn garment's group): the very floats the whole pass gives them, not merely close ones,
    # so a search answered from them ranks as one answered from the whole pass (same rows, same order).
    monkeypatch.setattr(backend, "GATHER_ROWS", 300)  # several blocks per half, the last one short
    some = np.flatnonzero(rng.random(len(rows)) < 0.4)
    for matrix in (rows, mapped):
        whole = all_scores(matrix, q)
        assert np.array_equal(all_scores(matrix, q, some), whole[:, some])
        assert np.array_equal(all_scores(matrix, q, some[:7]), whole[:, some[:7]])
        assert all_scores(matrix, q, some[:0]).shape == (queries, 0)
    mask = rng.random(len(rows)) < 0.5
    scores, found = exact_search(mapped, q, 7, mask)
    want = np.where(mask, q @ rows.T, -np.inf)
    assert mask[found].all()
    np.testing.assert_allclose(scores, -np.sort(-want, axis=1)[:, :7], rtol=0, atol=1e-4)


def test_best_class_is_argmax_and_max_with_ties_to_the_first_class():
    rng = np.random.default_rng(0)
    maps = [np.round(rng.random((37, 23)), 1).astype(np.float32) for _ in range(8)]  # rounded: many ties
    labels, best = _best_class(maps)
    stacked = np.stack(maps)
    assert labels.dtype == np.uint8
    assert (labels == stacked.argmax(axis=0)).all() and (best == stacked.max(axis=0)).all()


def test_mask_box_is_the_box_of_the_masks_pixels():
    rng = np.random.default_rng(1)
    for _ in range(20):
        mask = np.zeros((60, 90), bool)
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, 55), rng.integers(0, 85)
            mask[y : y + rng.integers(1, 6), x : x + rng.integers(1, 6)] = True
        ys, xs = np.nonzero(mask)
        assert mask_box(mask) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)


def test_the_best_of_a_masked_catalog_are_top_k_of_the_whole_masked_array():
    """``neighbours.best_of`` picks among the masked rows alone: the same scores and rows, in the same order, as
    ``top_k`` over every row with the others at -inf, ties (which ``top_k`` orders by its partition) included."""
    from stylelens.index.backend import top_k
    from stylelens.query.stages.neighbours import best_of

    rng = np.random.default_rng(3)
    for trial in range(200):
        n = int(rng.integers(1, 3000))
        scores = rng.standard_normal(n).astype(np.float32)
        if trial % 3 == 0:  # many ties: a few distinct values
            scores = np.round(scores, 1)
        mask = rng.random(n) < rng.choice([0.01, 0.2, 0.9])
        k = int(rng.integers(1, 60))
        want = top_k(np.where(mask, scores, np.float32(-np.inf))[None], k)
        got = best_of(scores, mask, k)
        assert got[0].shape == got[1].shape == (1, k)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), (trial, n, k)
