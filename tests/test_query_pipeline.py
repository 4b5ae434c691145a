"""The query as a pipeline of stages: one decode per photo, the options declared once, one snapshot per call,
the stages replaceable (a locator that knows garment groups and types), micro-batching an option of Index."""

import dataclasses
import io
import threading

import numpy as np
import pytest
from PIL import Image

import stylelens.intake.images as images
from stylelens.errors import InvalidArgumentError
from stylelens.index import Columns
from stylelens.query import Filters, Photo, SearchRequest, open_index, pipeline
from stylelens.query.identify import Identification, tally, vote
from stylelens.query.options import FILTER_FIELDS, OPTIONS
from stylelens.query.stages.locate import locate
from stylelens.query.stages.neighbours import neighbours


@pytest.fixture(scope="module")
def index(built_index, random_embedder):
    opened = open_index(built_index[0], embedder=random_embedder)
    yield opened
    opened.close()


def on_a_table(path, size=(420, 300), at=(150, 60)) -> bytes:
    """A catalog picture pasted on a green backdrop (not a shot on white), as JPEG bytes."""
    canvas = Image.new("RGB", size, (60, 140, 70))
    canvas.paste(Image.open(path).convert("RGB").resize((120, 160)), at)
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=92)
    return out.getvalue()


# ---- the options, declared once -----------------------------------------------------------------------
def test_the_options_table_makes_filters_http_fields_docs_and_cli_flags():
    from stylelens.cli import build_parser
    from stylelens.service.app import _OPTION_DOCS
    from stylelens.service.http import OPTION_FIELDS, parse_options

    assert tuple(f.name for f in dataclasses.fields(Filters)) == FILTER_FIELDS
    assert set(OPTIONS) - set(FILTER_FIELDS) | {"filters"} <= {f.name for f in dataclasses.fields(SearchRequest)}
    assert OPTION_FIELDS == tuple(OPTIONS) and _OPTION_DOCS == {n: o.doc for n, o in OPTIONS.items()}
    search = build_parser()._subparsers._group_actions[0].choices["search"]
    flags = {s for action in search._actions for s in action.option_strings}
    assert {o.flag for n, o in OPTIONS.items() if n != "k"} | {"--color"} <= flags
    k, filters, extras = parse_options({"k": "4", "color": "Red", "max_price": "50", "include_out_of_stock": "yes",
                                        "collapse": "true", "user": "u1"})
    assert (k, filters, extras) == (4, {"colour": "Red", "max_price": 50.0, "include_out_of_stock": True},
                                    {"collapse": "true", "user": "u1"})
    with pytest.raises(InvalidArgumentError, match="max_price must be a number"):
        parse_options({"max_price": "cheap"})


def test_a_request_is_checked_before_any_work():
    assert SearchRequest.make(5).pool == 20 and SearchRequest.make(5, collapse=True).pool == 45
    for bad, match in (({"k": 0}, "k must be between"), ({"diversity": 2}, "diversity"), ({"box": "1,2,3"}, "box must be"),
                       ({"collapse": "maybe"}, "collapse must be")):
        with pytest.raises(InvalidArgumentError, match=match):
            SearchRequest.make(5, **bad)


# ---- photo stages ----------------------------------------------------------------------------------------
def test_a_photo_is_decoded_once_per_search(index, built_index, monkeypatch):
    _, catalog, rows = built_index
    data = on_a_table(catalog / "images" / f"{sorted(rows)[0]}.jpg")
    decodes = []
    real = images._open  # every decode of bytes starts here (a PIL image passed along is not decoded again)
    monkeypatch.setattr(images, "_open", lambda *a, **kw: decodes.append(1) or real(*a, **kw))
    result = index.search(data, k=3)
    assert len(decodes) == 1 and len(result.extra["items"]) >= 1  # however many items were found


def on_white() -> Photo:
    canvas = Image.new("RGB", (200, 260), (255, 255, 255))
    canvas.paste(Image.new("RGB", (80, 120), (200, 30, 40)), (60, 70))
    return Photo.decode(canvas)


def test_locate_boxes_whole_photos_and_shots_on_white(built_index):
    _, catalog, rows = built_index
    [item] = locate(on_white())
    assert item.pad is None and item.box == (60, 70, 80, 120)  # embedded as it is, its product's box reported
    table = Photo.decode(on_a_table(catalog / "images" / f"{sorted(rows)[0]}.jpg"))
    assert table.sha256 and table.size == (420, 300)
    found = locate(table)
    assert found[0].pad == 0.1 and 100 <= found[0].box[0] <= 200  # the pasted product, not the backdrop
    assert locate(table, localise_items=False)[0].box == (0, 0, 420, 300)
    assert locate(table, (10, 20, 30, 40))[0].box == (10, 20, 30, 40)
    with pytest.raises(InvalidArgumentError, match="lies outside"):
        locate(table, (500, 20, 30, 40))


def test_a_locator_that_knows_garment_types_searches_each_item_within_them(built_index, random_embedder):
    """The next locator (a garment parser) is one function: its items carry a group and the catalog types each
    is searched within; an item without them is searched as today."""
    path, catalog, rows = built_index
    kinds = sorted({r["articleType"] for r in rows.values()})

    def parser(photo, box, *, localise_items, max_items):
        whole = locate(photo, box, localise_items=False)[0]
        return [dataclasses.replace(whole, group="top", types=frozenset(kinds[:1])), whole]

    index = open_index(path, embedder=random_embedder, locator=parser)
    plain = open_index(path, embedder=random_embedder, localise=False)
    try:
        photo = on_a_table(catalog / "images" / f"{sorted(rows)[1]}.jpg")
        result = index.search(photo, k=5, include_out_of_stock=True)
        within, anything = result.extra["items"]
        assert within["group"] == "top" and "group" not in anything
        assert within["results"] and {p["type"] for p in within["results"]} == {kinds[0]}
        assert [p["id"] for p in anything["results"]] == plain.search(photo, k=5, include_out_of_stock=True).ids
    finally:
        index.close()
        plain.close()


def test_a_worn_outfits_garments_are_scored_on_their_groups_rows_and_answer_as_from_every_row(built_index, random_embedder,
                                                                                             monkeypatch):
    """A worn outfit's garments are scored in one pass over the rows of their groups alone, gathered in blocks out
    of the catalog's matrix (``neighbours.scored``, ``backend.product``): each garment's results are the same
    products, in the same order, at the same scores, as from the pass over every row, and the same products as
    each garment searched on its own."""
    from stylelens.index import backend

    monkeypatch.setattr(backend, "PARALLEL_ROWS", 1)  # the gathered product a large catalog gets
    monkeypatch.setattr(backend, "GATHER_ROWS", 4)  # several blocks
    gathered = []
    parallel = backend._parallel_product
    monkeypatch.setattr(backend, "_parallel_product",
                        lambda vectors, queries, rows=None: gathered.append(rows) or parallel(vectors, queries, rows))
    path, catalog, rows = built_index
    kinds = sorted({r["articleType"] for r in rows.values()})
    groups = (("top", kinds[:1]), ("bottom", kinds[1:2]), ("bag", kinds[:2]))

    def parser(photo, box, *, localise_items, max_items):
        height, width = photo.pixels.shape[:2]
        whole = locate(photo, box, localise_items=False)[0]
        regions = ((0, 0, width / 2, height), (width / 2, 0, width / 2, height), (width / 4, height / 4, width / 2, height / 2))
        return [dataclasses.replace(whole, region=r, pad=0.1, group=g, types=frozenset(t)) for r, (g, t) in zip(regions, groups)]

    index = open_index(path, embedder=random_embedder, locator=parser)
    scored = pipeline.scored
    try:
        photo = on_a_table(catalog / "images" / f"{sorted(rows)[2]}.jpg")
        answers = {}
        for name, scoring in (("groups", scored), ("every row", lambda snap, vectors, within=None: scored(snap, vectors)),
                              ("alone", lambda snap, vectors, within=None: [snap] * len(vectors))):
            monkeypatch.setattr(pipeline, "scored", scoring)
            answers[name] = index.search(photo, k=5, include_out_of_stock=True).extra["items"]
    finally:
        index.close()
    picked = [r for r in gathered if r is not None]
    assert len(picked) == 1 and len(picked[0]) < len(rows)  # the groups' rows only, in one pass
    assert sorted(item["group"] for item in answers["groups"]) == sorted(g for g, _ in groups)
    for item, whole, alone in zip(answers["groups"], answers["every row"], answers["alone"]):
        assert item["results"] and item["results"] == whole["results"]
        assert [p["id"] for p in item["results"]] == [p["id"] for p in alone["results"]]


# ---- after the neighbour pass ------------------------------------------------------------------------------
def test_rank_found_is_what_search_serves_and_takes_an_identification_from_elsewhere(index, built_index):
    """Evaluation runs rank_found on its own neighbour pass: from the served pass it gives the served rows."""
    _, _, rows = built_index
    pid = sorted(rows)[2]
    row = index.row(pid)
    served = index.similar(pid, k=4, include_out_of_stock=True)
    snap = index.snapshot()
    vector = index.vector(pid)
    request = SearchRequest.make(5, 4, include_out_of_stock=True, exclude_rows=[row])
    near = neighbours(snap, vector, max(request.pool, snap.settings.identify_k), sha=index.product(pid)["image_sha256"],
                      exclude_rows=[row], raw=index.store.vectors([row])[0])
    ranked, ident = pipeline.rank_found(snap, near, vector, request, request.filters.mask(snap.columns))
    assert list(snap.columns.ids[ranked.rows]) == served.ids and ident == served.identified
    # A type model's answer replaces the vote: its type is the one lifted (type_boost), whatever the neighbours say.
    other = next(t for t in sorted(snap.columns.vocab["type"]) if t != ident.type)
    ranked, used = pipeline.rank_found(snap, near, vector, request, request.filters.mask(snap.columns),
                                       identified=Identification(type=other, type_confidence=1.0))
    assert used.type == other
    types = [snap.columns.vocab["type"][c] for c in snap.columns.codes["type"][ranked.rows]]
    lifted = sum(t == other for t in types)
    assert lifted and types[:lifted] == [other] * lifted


def test_one_snapshot_per_call(index):
    """A call keeps the space and catalog view it began with; the next call takes the current ones."""
    first, second = index.snapshot(), index.snapshot()
    assert first.space is second.space and first.columns.version == second.columns.version
    assert index.status()["space"] == first.space.name == "raw"


def test_status_is_what_health_shows(index):
    status = index.status()
    assert status["products"] == len(index) and status["dimension"] == 2048
    assert {"backbone", "weights", "pooling", "search", "runtime", "space", "generation"} <= set(status)


# ---- micro-batching, an option of Index ---------------------------------------------------------------------
def test_micro_batching_is_a_construction_option(built_index, random_embedder):
    from stylelens.models import MicroBatcher

    path, catalog, rows = built_index
    plain = open_index(path, embedder=random_embedder)
    batched = open_index(path, embedder=random_embedder, batch_wait_ms=50)
    try:
        assert not isinstance(plain.embedder, MicroBatcher) and isinstance(batched.embedder, MicroBatcher)
        photos = [catalog / "images" / f"{pid}.jpg" for pid in sorted(rows)[:4]]
        expected = [plain.search(p, k=3).ids for p in photos]
        got = [None] * len(photos)

        def one(i):
            got[i] = batched.search(photos[i], k=3).ids

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(photos))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert got == expected
        assert batched.embedder.requests == len(photos) and batched.embedder.batches < len(photos)
    finally:
        plain.close()
        batched.close()
    assert batched.embedder is random_embedder  # closing stops the batcher and keeps the model


def test_no_result_is_said_by_its_real_cause_and_a_product_passes_by_any_of_its_views():
    """Rows: a red dress (10, out of stock) with a blue view of it, a red T-shirt (90, out of stock) and a blue
    one (95, in stock). Each filter is checked once, in order: labels, then price, then stock."""
    vocab = {"gender": ["Women"], "type": ["Dresses", "Tshirts"], "colour": ["Red", "Blue", "Grey"]}
    cols = Columns(ids=np.array(["a", "a~blue", "b", "c"], object), live=np.ones(4, bool),
                   price=np.array([10.0, 10.0, 90.0, 95.0]), in_stock=np.array([False, False, False, True]),
                   codes={"gender": np.zeros(4, np.int32), "type": np.array([0, 0, 1, 1], np.int32),
                          "colour": np.array([0, 1, 0, 1], np.int32)},
                   vocab=vocab, row_of={"a": 0, "b": 2, "c": 3}, owner=np.array([0, 0, 2, 3]), views_per_product=2)
    assert Filters(type="dress", colour="grey").explain_empty(cols) == \
        "No product is type dress, colour grey together: loosen one of them."
    assert Filters(type="dress", min_price=50).explain_empty(cols) == \
        "No product of that kind is in the price range: widen min_price or max_price."
    assert Filters(type="tshirt", colour="red").explain_empty(cols) == \
        "1 matching product is out of stock: add include_out_of_stock to see them."
    # The dress and its view are one product, counted once.
    assert Filters(type="dress").explain_empty(cols) == \
        "1 matching product is out of stock: add include_out_of_stock to see them."
    assert Filters(max_price=90).explain_empty(cols) == \
        "2 matching products are out of stock: add include_out_of_stock to see them."
    assert Filters(type="tshirt", colour="red", include_out_of_stock=True).explain_empty(cols) == \
        "No product matches these filters."
    # The dress passes a blue filter through its blue view: its own row is where results are ranked.
    assert Filters(colour="blue", include_out_of_stock=True).mask(cols).tolist() == [True, True, False, True]
    assert Filters(colour="blue").mask(cols).tolist() == [False, False, False, True]
    assert Filters(colour="blue", max_price=50, include_out_of_stock=True).mask(cols).tolist() == [True, True, False, False]


def test_the_vote_weighs_the_closest_most_and_reads_each_label_over_the_neighbours_that_have_it():
    """Three neighbours at cosines 0.9, 0.8, 0.1 (temperature 0.1: weights 1, e^-1, e^-8): the closest names the
    type against two others; the colour is read over the two that have one; no gender is None, not a guess."""
    vocab = {"gender": ["Women"], "type": ["Dresses", "Tshirts"], "colour": ["Red", "Blue"]}
    cols = Columns(ids=np.array(["a", "b", "c"], object), live=np.ones(3, bool), price=np.zeros(3),
                   in_stock=np.ones(3, bool), codes={"gender": np.full(3, -1, np.int32),
                                                     "type": np.array([0, 1, 1], np.int32),
                                                     "colour": np.array([-1, 1, 0], np.int32)},
                   vocab=vocab, row_of={"a": 0, "b": 1, "c": 2})
    rows, sims = np.array([0, 1, 2]), np.array([0.9, 0.8, 0.1], np.float32)
    w = np.exp([0.0, -1.0, -8.0])
    ident = vote(cols, rows, sims, 0.1)
    assert (ident.type, ident.colour, ident.gender, ident.gender_confidence) == ("Dresses", "Blue", None, 0.0)
    assert ident.type_confidence == round(w[0] / w.sum(), 4)
    assert ident.colour_confidence == round(w[1] / (w[1] + w[2]), 4)
    assert np.allclose(tally(cols, rows, sims, 0.1, "type"), [w[0] / w.sum(), (w[1] + w[2]) / w.sum()])
    assert tally(cols, rows, sims, 0.1, "gender") is None and tally(cols, rows[:0], sims[:0], 0.1, "type") is None
