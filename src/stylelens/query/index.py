"""The front object: an opened index that identifies items and recommends products to buy.

``Index`` is a facade: ``search``, ``similar``, ``identify``, ``look``, ``recommend``, ``feedback``, ``status``.
Each call takes one ``Snapshot`` (the space searched and a view of the catalog) and runs the stages of
``query.pipeline`` on it: a photo is decoded once (``Photo``), the options are checked once
(``SearchRequest``), and each item makes one neighbour pass from which come the query's own rows, the
identification vote and the ranked results.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np

from ..errors import WeightsError
from ..index import IndexStore
from ..index.catalog_db import VIEW_MARK
from ..index.manifest import check_compatible
from ..models import Embedder, MicroBatcher
from ..settings import Settings, settings_or_default
from . import pipeline
from .filters import Filters
from .identify import Identification
from .look import LookResult, look
from .personalize import Shoppers, feedback
from .request import Item, Photo, SearchRequest
from .results import SearchResult
from .space import RawSpace, Snapshot, open_spaces
from .stages.identify import identify
from .stages.neighbours import neighbours
from .stages.parse import parse

log = logging.getLogger(__name__)


class Index:
    """An opened index. Search with an image (path, bytes or PIL image) or a product id.

    ``settings`` (a ``Settings``; default: this process's environment) and keyword overrides of any
    setting (``type_boost=0``, ``search="exact"``...) stay with this instance. ``batch_wait_ms`` above 0
    embeds concurrent callers' photos together in one model call (``models.MicroBatcher``; a server's choice).
    ``locator`` replaces the locate stage (``query.stages.locate.locate``'s signature), e.g. a garment parser.
    ``aspects``: what a tuned head serves ("type", "colour"; ``query.space.ASPECTS``) instead of what tune adopted.
    """

    def __init__(self, path, settings: Settings | None = None, *, embedder: Embedder | None = None,
                 batch_wait_ms: float | None = None, locator=None, aspects=None, **overrides):
        self.settings = settings_or_default(settings).replace(**overrides)
        self.store = IndexStore(path, settings=self.settings)
        built = self.store.manifest["embedder"]
        try:
            embedder = embedder or Embedder.from_fingerprint(built, settings=self.settings)
            check_compatible(built, embedder.fingerprint(), self.store.path)
        except BaseException:
            self.store.close()
            raise
        self.embedder = MicroBatcher(embedder, max_wait_ms=batch_wait_ms) if batch_wait_ms and batch_wait_ms > 0 else embedder
        self.locator = locator
        self.type_model = _type_model(built, self.settings)
        self._parser = None  # the garment parser, loaded on the first photo searched with it (``parser_locator``)
        self._parser_lock = threading.Lock()
        self._parse_lock = threading.Lock()  # one parser model answers one photo at a time
        self._shoppers = None
        self._aspects = None if aspects is None else tuple(aspects)
        self._spaces = open_spaces(self.store, self.settings, self.settings.tune, self._aspects)
        self._space_manifest = self.store.manifest
        self._space_key = _space_key(self._space_manifest)

    @property
    def space(self) -> RawSpace:
        """The space searched now: the tuned head's (``stylelens tune``; setting ``tune``) or the raw backbone's.
        A writer that tunes (or re-tunes) the index while this one serves is followed on the next call; a call
        in progress keeps the one in its ``snapshot``."""
        return self._current()[0]

    def _current(self) -> tuple[RawSpace, RawSpace | None, object]:
        self.store.columns  # noqa: B018 -- a new view re-reads the manifest a writer saved since
        manifest = self.store.manifest
        if manifest is not self._space_manifest:
            self._space_manifest = manifest
            if _space_key(manifest) != self._space_key:
                self._spaces = open_spaces(self.store, self.settings, self.settings.tune, self._aspects)
                self._space_key = _space_key(manifest)
        return self._spaces

    def snapshot(self) -> Snapshot:
        """The spaces and catalog view one call works on from start to end."""
        space, colour_space, type_probe = self._current()
        return Snapshot(space, self.store.columns, self.store, self.settings, colour_space, type_probe)

    @property
    def path(self) -> Path:
        return self.store.path

    @property
    def shoppers(self) -> Shoppers:
        """Shopper events for personalisation, in users.sqlite beside the index (opened on first use)."""
        if self._shoppers is None:
            self._shoppers = Shoppers(self.path)
        return self._shoppers

    def __len__(self) -> int:
        return len(self.store)

    def close(self) -> None:
        if isinstance(self.embedder, MicroBatcher):
            self.embedder.close()
            self.embedder = self.embedder.embedder
        self.store.close()

    # ---- the calls users make -----------------------------------------------------------------
    def search(self, image, k: int | None = None, *, box=None, user: str | None = None, diversity: float | None = None,
               collapse: bool | None = None, **filters) -> SearchResult:
        """Products most similar to the item in the photo, with what it is. Filters: see ``Filters``.

        The item is found first (setting ``localise``): up to ``max_items`` items each get their box,
        identification and results in ``extra["items"]``; the top-level results are the main item's.
        ``box`` (x, y, w, h in the photo's pixels, or "x,y,w,h") searches that region alone.
        With ``user``, results are personalised and the search is remembered as the shopper's upload."""
        return self.search_items(image, k, box=box, user=user, diversity=diversity, collapse=collapse, **filters)[0]

    def search_items(self, image, k: int | None = None, *, box=None, user: str | None = None,
                     diversity: float | None = None, collapse: bool | None = None,
                     **filters) -> tuple[SearchResult, Photo, list[Item]]:
        """``search`` as served, with the decoded photo and the items found in it (box, parser score, group),
        main item first: for the scripts that fit what items are ordered by (scripts/fit_main_item.py)."""
        started = time.perf_counter()
        # The options are checked before the image is decoded and embedded.
        request = SearchRequest.make(self.settings.k, k, box=box, user=user, diversity=diversity, collapse=collapse,
                                     exact_first=True, **filters)
        snap = self.snapshot()
        photo = self._photo(image)
        history = self.shoppers.history(user) if user is not None else None
        result, items = pipeline.search_photo(snap, photo, request, self.embedder, history=history,
                                              localise=self.settings.localise, max_items=self.settings.max_items,
                                              locator=self.locator or self.parser_locator(), type_model=self.type_model)
        if user is not None:
            self.shoppers.record(user, "upload", vector=items[0].vector, sha256=photo.sha256)
        result.took_ms = (time.perf_counter() - started) * 1000
        return result, photo, items

    def parser_locator(self):
        """The locate stage with the garment parser (``stages.parse``), or None for today's (``stages.locate``):
        setting ``parser`` off or ``localise`` off, no shipped weights, or an index on another backbone than the
        one the parser reads (its maps come from the index's own network: no second model in memory)."""
        if not (self.settings.parser and self.settings.localise):
            return None
        parser = self.parser
        if parser is None:
            return None
        return partial(parse, parser=parser, lock=self._parse_lock)

    @property
    def parser(self):
        """The garment parser over this index's backbone, loaded once (None where it cannot serve this index)."""
        if self._parser is None:
            with self._parser_lock:
                if self._parser is None:
                    self._parser = _load_parser(self.embedder) or False
        return self._parser or None

    def similar(self, product_id: str, k: int | None = None, *, user: str | None = None, diversity: float | None = None,
                collapse: bool | None = None, **filters) -> SearchResult:
        """'More like this' for a catalog product, without uploading its picture again. A product with several
        pictures (views) is searched with the mean of its views (see ``views_query``)."""
        started = time.perf_counter()
        snap = self.snapshot()
        row = self.row(product_id)
        request = SearchRequest.make(self.settings.k, k, user=user, diversity=diversity, collapse=collapse,
                                     exclude_rows=[row], **filters)
        history = self.shoppers.history(user) if user is not None else None
        sha = self.store.products([snap.columns.ids[row]])[0].get("image_sha256")
        raw = self.store.vectors([row])[0]
        def answer(s):
            rows = s.columns.rows_of_product(row)
            return pipeline.search_item(
                s, views_query(s.space.vectors(rows, s.columns)), request, sha=sha, raw=raw, history=history,
                colour_vector=views_query(s.colour_space.vectors(rows, s.columns)) if s.colour_space else None)

        result = pipeline.on_a_view(snap, answer)
        result.took_ms = (time.perf_counter() - started) * 1000
        return result

    def identify(self, image) -> Identification:
        """What the item in the photo is (the whole frame): the vote of its labelled neighbours, the type from the
        type model where it applies (``type_model``)."""
        return pipeline.identify_photo(self.snapshot(), self._photo(image), self.embedder, self.type_model)

    def look(self, product_id: str | None = None, image=None, k: int | None = None) -> LookResult:
        """Complete the look (see ``query.look``) for a catalog product (by id) or a photo."""
        started = time.perf_counter()
        snap = self.snapshot()
        if product_id is not None:
            row = self.row(product_id)
            result = look(snap, self.product(product_id), snap.space.vectors([row], snap.columns)[0], k, row=row)
        else:
            item, source = pipeline.photo_attributes(snap, self._photo(image), self.embedder)
            result = look(snap, source, item.vector, k)
        result.took_ms = (time.perf_counter() - started) * 1000
        return result

    def recommend(self, user: str, k: int | None = None, *, collapse: bool | None = None, **filters) -> SearchResult:
        """"For you": products for a shopper from their history alone (see ``query.personalize``)."""
        started = time.perf_counter()
        request = SearchRequest.make(self.settings.k, k, collapse=collapse, **filters)
        result = pipeline.recommend(self.snapshot(), self.shoppers.history(user), request)
        result.took_ms = (time.perf_counter() - started) * 1000
        return result

    def feedback(self, user: str, product_id: str, event: str) -> dict:
        """Record that a shopper liked, disliked or viewed a catalog product. Returns their counts."""
        return feedback(self, user, product_id, event)

    def status(self) -> dict:
        """What this index serves, for a health check: products, model, storage, space and catalog generation."""
        manifest = self.store.manifest["embedder"]
        generation = self.store.generation
        space, colour_space, type_probe = self._current()
        head = self.store.manifest.get("head") or {}
        return {"products": self.store.counts()["products"], "backbone": manifest["backbone"], "weights": manifest["weights"]["source"],
                "dimension": self.store.dim, "pooling": manifest["pooling"], "search": self.store.backend.name,
                "runtime": self.embedder.runtime_name, "space": space.name, "colour_vote": (colour_space or space).name,
                "type_probe": type_probe is not None,
                # the tuned head this replica follows (its file's hash): a tune elsewhere shows here once it is read
                "head": (head.get("sha256") or "")[:12] or None,
                "generation": {"vectors": generation[0], "rows": generation[1]}}

    # ---- from a vector (benchmarks, evaluation) ---------------------------------------------------
    def search_vector(self, vector: np.ndarray, k: int | None = None, *, sha: str | None = None, exclude_rows=(),
                      filters: Filters | None = None, identify: bool = True, user: str | None = None,
                      diversity: float | None = None, collapse: bool | None = None,
                      exact_first: bool = False, raw: np.ndarray | None = None) -> SearchResult:
        """Nearest products to a vector of the space searched (``search`` without the photo stages)."""
        started = time.perf_counter()
        request = SearchRequest.make(self.settings.k, k, filters=filters or Filters(), user=user, diversity=diversity,
                                     collapse=collapse, exact_first=exact_first, exclude_rows=exclude_rows,
                                     identify=identify)
        history = self.shoppers.history(user) if user is not None else None
        result = pipeline.on_a_view(self.snapshot(), lambda s: pipeline.search_item(s, vector, request, sha=sha, raw=raw,
                                                                                     history=history))
        result.took_ms = (time.perf_counter() - started) * 1000
        return result

    def identify_vector(self, vector: np.ndarray, sha: str | None = None, exclude_rows=(), raw=None) -> Identification:
        snap = self.snapshot()
        near = neighbours(snap, vector, self.settings.identify_k, sha=sha, exclude_rows=exclude_rows, raw=raw)
        return identify(snap, near, raw=None if len(near.self_rows) else raw)

    def _photo(self, image) -> Photo:
        # No more pixels than needed: at least twice the network input each way, to crop items from.
        return Photo.decode(image, max_pixels=self.settings.max_pixels, target=self.embedder.preprocess.size)

    # ---- catalog -------------------------------------------------------------------------
    def row(self, product_id: str) -> int:
        row = self.store.columns.row_of.get(str(product_id))
        if row is None:
            self.store.product(product_id)  # raises ProductNotFoundError with the message
        return row

    def vector(self, product_id: str) -> np.ndarray:
        """A catalog product's vector in the space searched."""
        def of(snap):
            row = snap.columns.row_of.get(str(product_id))
            if row is None:
                self.store.product(product_id)  # raises ProductNotFoundError with the message
            return snap.space.vectors([row], snap.columns)[0]

        return pipeline.on_a_view(self.snapshot(), of)

    def product(self, product_id: str) -> dict:
        """A product's record. One whose main picture could not be had is read from the view standing for it."""
        row_id = self.store.columns.ids[self.row(product_id)] if VIEW_MARK not in str(product_id) else product_id
        if row_id == product_id:
            return self.store.product(product_id)
        return dict(self.store.product(row_id), id=str(product_id))

    def image_path(self, product_id: str) -> Path:
        return Path(self.product(product_id)["image_path"])

    def facets(self) -> dict:
        cols = self.store.columns
        prices = cols.price[cols.live & np.isfinite(cols.price)]
        return {
            "gender": sorted(cols.vocab["gender"]),
            "type": sorted(cols.vocab["type"]),
            "colour": sorted(cols.vocab["colour"]),
            "price": {"min": float(prices.min()), "max": float(prices.max())} if len(prices) else None,
        }

    def info(self) -> dict:
        space = self.space
        manifest = dict(self.store.manifest)
        manifest["counts"] = self.store.counts()
        manifest["search"] = self.store.backend.name
        manifest["runtime"] = self.embedder.runtime_name
        manifest["space"] = {"searched": space.name, "dim": space.dim, **space.calibration.to_dict()}
        _, colour_space, type_probe = self._current()
        manifest["space"]["colour_vote"] = (colour_space or space).name
        manifest["space"]["type_probe"] = type_probe is not None
        return manifest


def views_query(vectors: np.ndarray) -> np.ndarray:
    """One query for a product's views (its pictures, main first): their mean, made a unit vector again.

    The mean rather than a search per view merged by best score: "more like this" asks for products like this
    one as a whole, and the mean of a product's shots is its centroid (average query expansion, Chum et al.
    2007), so one detail shot cannot pull in products that only resemble that shot. Each candidate still
    answers with its best view (``stages.neighbours.best_views``). One view: its own vector, as before."""
    if len(vectors) == 1:
        return vectors[0]
    mean = vectors.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm).astype(vectors.dtype) if norm > 0 else vectors[0]


def _type_model(fingerprint: dict, settings: Settings):
    """The shipped type model when the setting ``type_model`` is on and it reads this index's own vectors (its
    backbone, pooling and input size), else None: the vote alone names the type."""
    if not settings.type_model:
        return None
    from ..models.typemodel import TypeModel

    try:
        model = TypeModel.load()
    except WeightsError as exc:  # a damaged install: search still works, named by the vote
        log.warning("%s Searching without the type model.", exc)
        return None
    return model if model.accepts(fingerprint) else None


# The parser's maps (OpenVINO) in bf16 where the CPU has it natively (f32 elsewhere): 0.6x f32's time at 384 px
# (2-core AMD EPYC), and as good on the real measure parts: street-ccp (401 photos) main result right 0.581 ->
# 0.601, every worn garment found 0.227 -> 0.242, garments found 0.606 -> 0.617; real-items served 0.861 -> 0.864.
PARSER_PRECISION = "bf16"


def _load_parser(embedder):
    """``models.parser.GarmentParser`` over ``embedder``'s network when its shipped weights were trained on that
    very backbone (same weights hash); None otherwise."""
    from ..models import parser as garment_parser

    embedder = getattr(embedder, "embedder", embedder)  # a MicroBatcher's model
    meta_path = garment_parser.DEFAULT_WEIGHTS.with_suffix(".json")
    if not (garment_parser.DEFAULT_WEIGHTS.is_file() and meta_path.is_file()):
        return None
    meta = json.loads(meta_path.read_text())
    if embedder.fingerprint()["weights"].get("sha256") != meta.get("backbone_weights_sha256"):
        return None
    return garment_parser.GarmentParser.load(embedder=embedder, precision=PARSER_PRECISION)


def _space_key(manifest: dict) -> str:
    """What decides the spaces searched: the head's file, what it was adopted for and each space's calibration."""
    head = manifest.get("head") or {}
    return json.dumps([head.get("sha256"), head.get("adopted"), manifest.get("spaces")], sort_keys=True)


def open_index(path, settings: Settings | None = None, *, embedder: Embedder | None = None,
               batch_wait_ms: float | None = None, locator=None, aspects=None, **overrides) -> Index:
    """Open an index for searching. The embedder is rebuilt from the manifest unless one is given;
    ``overrides`` are settings (``search="exact"``, ``type_boost=0``, ``device="cuda"``...);
    ``batch_wait_ms`` > 0 batches concurrent callers' photos (see ``Index``)."""
    return Index(path, settings, embedder=embedder, batch_wait_ms=batch_wait_ms, locator=locator, aspects=aspects,
                 **overrides)
