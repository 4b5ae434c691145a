"""The front object: an opened index that identifies items and recommends products to buy.

Each query makes one neighbour pass over the live catalog. From that one candidate list come the
catalog rows that are the query picture itself, the identification vote and the ranked results; a
second pass happens only when the shopper's filters (or a personalised query vector) leave too few
candidates in it. Product records for the results are read in one catalog query.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import IndexDamagedError, InvalidArgumentError
from ..intake.images import content_hash, load_image, read_bytes
from ..index import IndexStore
from ..index.manifest import check_compatible
from ..item.localise import crop, item_crops
from ..models import Embedder
from ..settings import Settings, settings_or_default
from . import diversity as div
from .filters import Filters, check_k
from .identify import Identification, vote
from .rank import type_consistent
from .results import SearchResult
from .space import RawSpace, on_one_space, one_space, open_space, pinned_space

SELF_SLACK = 3  # candidates fetched beyond what ranking and voting need, for copies of the query itself


@dataclass
class Neighbours:
    """One neighbour pass for one query vector: live rows best first, and which of them are the query itself."""

    scores: np.ndarray
    rows: np.ndarray
    self_rows: np.ndarray

    def others(self) -> tuple[np.ndarray, np.ndarray]:
        keep = (self.rows >= 0) & ~np.isin(self.rows, self.self_rows)
        return self.scores[keep], self.rows[keep]


class Index:
    """An opened index. Search with an image (path, bytes or PIL image) or a product id.

    ``settings`` (a ``Settings``; default: this process's environment) and keyword overrides of any
    setting (``type_boost=0``, ``search="exact"``...) stay with this instance.
    """

    def __init__(self, path, settings: Settings | None = None, *, embedder: Embedder | None = None, **overrides):
        self.settings = settings_or_default(settings).replace(**overrides)
        self.store = IndexStore(path, settings=self.settings)
        built = self.store.manifest["embedder"]
        try:
            embedder = embedder or Embedder.from_fingerprint(built, settings=self.settings)
            check_compatible(built, embedder.fingerprint(), self.store.path)
        except BaseException:
            self.store.close()
            raise
        self.embedder = embedder
        self._shoppers = None
        self._space = open_space(self.store, self.settings, self.settings.tune)
        self._space_manifest = self.store.manifest
        self._space_key = _space_key(self._space_manifest)

    @property
    def space(self) -> RawSpace:
        """The space searched: the tuned head's (``stylelens tune``; setting ``tune``) or the raw backbone's.
        A writer that tunes (or re-tunes) the index while this one serves is followed on the next call; a call
        in progress keeps the space it started with (``one_space``)."""
        pinned = pinned_space(self)
        if pinned is not None:
            return pinned
        self.store.columns  # noqa: B018 -- a new view re-reads the manifest a writer saved since
        manifest = self.store.manifest
        if manifest is not self._space_manifest:
            self._space_manifest = manifest
            if _space_key(manifest) != self._space_key:
                self._space, self._space_key = open_space(self.store, self.settings, self.settings.tune), _space_key(manifest)
        return self._space

    def one_space(self):
        """A block in which ``space`` does not change: ``with index.one_space() as space: ...``."""
        return one_space(self)

    @property
    def path(self) -> Path:
        return self.store.path

    @property
    def shoppers(self):
        """Shopper events for personalisation, in users.sqlite beside the index (opened on first use)."""
        if self._shoppers is None:
            from .personalize import Shoppers

            self._shoppers = Shoppers(self.path)
        return self._shoppers

    def __len__(self) -> int:
        return len(self.store)

    def close(self) -> None:
        self.store.close()

    # ---- the query pipeline -----------------------------------------------------------------
    @on_one_space
    def embed(self, image) -> tuple[np.ndarray, str | None]:
        """Unit vector of an image (the whole frame) in the space searched, and the sha256 of its bytes
        (None for a PIL image)."""
        photo, sha, _ = self._decode(image)
        return self.space.query(self.embedder.embed([photo]), [photo])[0], sha

    def main_item(self, image) -> Image.Image:
        """The image ``search`` embeds for a photo's main item (the photo itself when it is a shot on white)."""
        photo, _, scale = self._decode(image)
        return self._regions(photo, None, scale)[0][1]

    @on_one_space
    def query_vectors(self, items) -> np.ndarray:
        """(n, dim) vectors of the space searched for item images (``main_item``), embedded in one batch."""
        return self.space.query(self.embedder.embed(items), items)

    @on_one_space
    def neighbours(self, vector: np.ndarray, n: int, sha: str | None = None, exclude_rows=(), columns=None,
                   raw: np.ndarray | None = None) -> Neighbours:
        """The one neighbour pass: the n best live rows (minus ``exclude_rows``), and the query's own rows,
        in the catalog view ``columns`` (default: the current one). ``raw``: the query's backbone vector, which
        confirms a same-picture match in a tuned space (that space pulls a type together on purpose)."""
        columns = columns or self.store.columns
        space = self.space
        exclude = np.asarray(list(exclude_rows), dtype=np.int64)
        mask = None
        if len(exclude):
            mask = columns.live.copy()
            mask[exclude] = False
        scores, rows = space.search(vector[None], n + SELF_SLACK, mask, columns=columns)
        scores, rows = scores[0], rows[0]
        same = space.same_picture(rows[(rows >= 0) & (scores >= space.calibration.same_picture)], raw, columns)
        if sha:
            row_of = columns.row_of
            same = np.union1d(same, [row_of[p] for p in self.store.ids_with_hash(sha) if p in row_of]).astype(np.int64)
        return Neighbours(scores, rows, same)

    def _vote(self, scores: np.ndarray, rows: np.ndarray, columns) -> Identification:
        k = self.settings.identify_k
        return vote(columns, rows[:k], scores[:k], self.space.calibration.vote_temperature)

    @on_one_space
    def search_vector(self, vector: np.ndarray, k: int | None = None, *, sha: str | None = None, exclude_rows=(),
                      filters: Filters | None = None, identify: bool = True, user: str | None = None,
                      diversity: float | None = None, collapse: bool | None = None,
                      exact_first: bool = False, raw: np.ndarray | None = None) -> SearchResult:
        """Nearest products to a vector. ``user`` personalises (see personalize), ``diversity`` (0..1)
        re-ranks by MMR and ``collapse`` folds near-duplicates into one result (see diversity).

        The catalog rows that are the query picture itself (same bytes, or the space's same-picture cosine) are left
        out, unless ``exact_first``: a shopper who uploads a product's own photo sees that product
        first, marked ``exact_match``, and it is named by its own labels."""
        started = time.perf_counter()
        k = self.settings.k if k is None else check_k(k)
        diversity, collapse = div.check_diversity(diversity), div.check_collapse(collapse)
        filters = filters or Filters()
        return self._on_a_view(lambda cols: self._search_view(cols, started, vector, k, sha, exclude_rows, filters,
                                                              identify, user, diversity, collapse, exact_first, raw))

    def _on_a_view(self, answer):
        """``answer(columns)`` on one view of the catalog (kept whole while a writer commits). When a compaction
        replaced the vectors file between reading the view and mapping it, a newer view answers; the same
        error on an up-to-date view is real damage."""
        for attempt in range(3):
            cols = self.store.columns
            try:
                return answer(cols)
            except IndexDamagedError:
                if attempt == 2 or self.store.columns.version == cols.version:
                    raise
        raise AssertionError("unreachable")

    def _search_view(self, cols, started, vector, k, sha, exclude_rows, filters, identify, user, diversity, collapse,
                     exact_first, raw) -> SearchResult:
        mask = filters.mask(cols)  # checks the filter values before any search
        space = self.space
        pool = max(div.pool_size(k, diversity, collapse), 4 * k)
        near = self.neighbours(vector, max(pool, self.settings.identify_k), sha, exclude_rows, cols, raw)
        other_scores, other_rows = near.others()
        exact = near.self_rows[mask[near.self_rows]] if exact_first else np.zeros(0, np.int64)
        if identify or user is not None:
            ok = near.rows >= 0
            voters = (near.scores[ok], near.rows[ok]) if len(exact) else (other_scores, other_rows)
            ident = self._vote(*voters, cols)
        else:
            ident = None
        mask[np.asarray(list(exclude_rows), dtype=np.int64)] = False
        mask[near.self_rows] = False
        query = vector
        if user is not None:
            from .personalize import personal_query

            query, disliked = personal_query(self, user, vector, ident.type if ident else None)
            mask[disliked] = False
        passing = mask[other_rows]
        scores, rows = other_scores[passing], other_rows[passing]
        if query is not vector or (len(rows) < pool and mask.sum() > len(rows)):
            # The first pass cannot answer: another query vector, or filters that leave too few of its rows.
            scores, rows = space.search(query[None], pool, mask, filters=filters, columns=cols)
            scores, rows = scores[0], rows[0]
        s, calibration = self.settings, space.calibration
        scores, rows = type_consistent(scores, rows, cols, ident, filters, s.type_boost * calibration.score_scale,
                                       s.type_boost_min_confidence)
        exact = exact[:k]
        scores, rows, similar = div.rerank(scores, rows, lambda r: space.vectors(r, cols), k - len(exact), diversity=diversity,
                                           collapse=collapse, threshold=calibration.near_duplicate)
        if len(exact):
            scores = np.concatenate([np.ones(len(exact), np.float32), scores])
            rows = np.concatenate([exact, rows])
            similar = None if similar is None else np.concatenate([np.zeros(len(exact), np.int64), similar])
        similarity = space.vectors(rows, cols) @ vector if len(rows) else np.zeros(0, np.float32)
        records = {p["id"]: p for p in self.store.products(cols.ids[rows])}
        products = []
        for i, pid in enumerate(cols.ids[rows]):
            product = records.get(pid)
            if product is None:  # removed by a writer since this query's view was read
                continue
            products.append(product)
            product["score"] = round(float(scores[i]), 4)
            # The cosine to the query, in [-1, 1] (a ranking boost never shows as over 100 %).
            product["similarity"] = round(min(1.0, float(similarity[i])), 4)
            if i < len(exact):
                product["exact_match"] = True
            if similar is not None:
                product["similar_count"] = int(similar[i])
        extra = {} if products else {"note": filters.explain_empty(cols)}
        return SearchResult(products, ident if identify else None, (time.perf_counter() - started) * 1000, extra)

    @on_one_space
    def identify_vector(self, vector: np.ndarray, sha: str | None = None, exclude_rows=(), raw=None) -> Identification:
        cols = self.store.columns
        near = self.neighbours(vector, self.settings.identify_k, sha, exclude_rows, cols, raw)
        return self._vote(*near.others(), cols)

    # ---- the calls users make -----------------------------------------------------------------
    @on_one_space
    def search(self, image, k: int | None = None, *, box=None, user: str | None = None, diversity: float | None = None,
               collapse: bool | None = None, **filters) -> SearchResult:
        """Products most similar to the item in the photo, with what it is. Filters: see ``Filters``.

        The item is found first (setting ``localise``): up to ``max_items`` items each get their box,
        identification and results in ``extra["items"]``; the top-level results are the main item's.
        ``box`` (x, y, w, h in the photo's pixels, or "x,y,w,h") searches that region alone.
        With ``user``, results are personalised and the search is remembered as the shopper's upload."""
        started = time.perf_counter()
        # Ranking options are checked before the image is decoded and embedded.
        k = None if k is None else check_k(k)
        diversity, collapse, filters = div.check_diversity(diversity), div.check_collapse(collapse), Filters(**filters)
        box = None if box is None else parse_box(box)
        photo, sha, scale = self._decode(image)
        regions = self._regions(photo, box, scale)
        crops = [region for _, region in regions]
        raw = self.embedder.embed(crops)
        vectors = self.space.query(raw, crops, colour=filters.colour)
        options = dict(filters=filters, user=user, diversity=diversity, collapse=collapse)
        result = self.search_vector(vectors[0], k, sha=sha, exact_first=True, raw=raw[0], **options)
        items = [result] + [self.search_vector(v, k, raw=r, **options) for v, r in zip(vectors[1:], raw[1:])]
        result.extra["items"] = [{"box": list(item_box), "identified": item.identified.to_dict() if item.identified else None,
                                  "results": item.products} for (item_box, _), item in zip(regions, items)]
        if user is not None:
            self.shoppers.record(user, "upload", vector=vectors[0], sha256=sha)
        result.took_ms = (time.perf_counter() - started) * 1000
        return result

    def _decode(self, image) -> tuple[Image.Image, str | None, float]:
        """The photo decoded for the network (no more pixels than needed), its bytes' hash, and how many
        of its original pixels one decoded pixel spans (boxes are given and answered in original pixels)."""
        sha = None
        if isinstance(image, Image.Image):
            return load_image(image), None, 1.0  # the one RGB conversion (transparency on white, as the catalog's)
        if isinstance(image, (str, Path)):
            image = read_bytes(image)
        sha = content_hash(image)
        # No more pixels than needed (JPEG draft, reduce on load; at least twice the network input, to crop items).
        photo = load_image(image, max_pixels=self.settings.max_pixels, target=self.embedder.preprocess.size)
        return photo, sha, max(_header_size(image) or photo.size) / max(photo.size)

    def _regions(self, photo: Image.Image, box, scale: float) -> list[tuple[tuple[int, int, int, int], Image.Image]]:
        """(box in original pixels, image to embed) per item, main item first."""
        whole = (0, 0, round(photo.width * scale), round(photo.height * scale))
        if box is not None:
            x, y, w, h = (v / scale for v in box)
            if x >= photo.width or y >= photo.height or x + w <= 0 or y + h <= 0:
                raise InvalidArgumentError(f"The box {','.join(map(str, box))} lies outside the {whole[2]}x{whole[3]} photo. "
                                           "Give x,y,w,h in the photo's pixels.", code="bad_box")
            return [(box, crop(photo, (x, y, w, h), pad=0.0))]
        if not self.settings.localise:
            return [(whole, photo)]
        return [(tuple(round(v * scale) for v in found.xywh), region)
                for found, region in item_crops(photo, self.settings.max_items)]

    @on_one_space
    def identify(self, image) -> Identification:
        photo, sha, _ = self._decode(image)
        raw = self.embedder.embed([photo])
        return self.identify_vector(self.space.query(raw, [photo])[0], sha, raw=raw[0])

    @on_one_space
    def similar(self, product_id: str, k: int | None = None, *, user: str | None = None, diversity: float | None = None,
                collapse: bool | None = None, **filters) -> SearchResult:
        """'More like this' for a catalog product, without uploading its picture again."""
        started = time.perf_counter()
        vector = self.vector(product_id)
        row = self.row(product_id)
        result = self.search_vector(vector, k, sha=self.store.product(product_id).get("image_sha256"), exclude_rows=[row],
                                    filters=Filters(**filters), user=user, diversity=diversity, collapse=collapse,
                                    raw=self.store.vectors([row])[0])
        result.took_ms = (time.perf_counter() - started) * 1000
        return result

    # ---- catalog -------------------------------------------------------------------------
    def row(self, product_id: str) -> int:
        row = self.store.columns.row_of.get(str(product_id))
        if row is None:
            self.store.product(product_id)  # raises ProductNotFoundError with the message
        return row

    @on_one_space
    def vector(self, product_id: str) -> np.ndarray:
        def of(cols):
            row = cols.row_of.get(str(product_id))
            if row is None:
                self.store.product(product_id)  # raises ProductNotFoundError with the message
            return self.space.vectors([row], cols)[0]

        return self._on_a_view(of)

    def product(self, product_id: str) -> dict:
        return self.store.product(product_id)

    def image_path(self, product_id: str) -> Path:
        return Path(self.store.product(product_id)["image_path"])

    def facets(self) -> dict:
        cols = self.store.columns
        prices = cols.price[cols.live & np.isfinite(cols.price)]
        return {
            "gender": sorted(cols.vocab["gender"]),
            "type": sorted(cols.vocab["type"]),
            "colour": sorted(cols.vocab["colour"]),
            "price": {"min": float(prices.min()), "max": float(prices.max())} if len(prices) else None,
        }

    @on_one_space
    def info(self) -> dict:
        manifest = dict(self.store.manifest)
        manifest["counts"] = self.store.counts()
        manifest["search"] = self.store.backend.name
        manifest["runtime"] = self.embedder.runtime_name
        manifest["space"] = {"searched": self.space.name, "dim": self.space.dim, **self.space.calibration.to_dict()}
        return manifest


def _space_key(manifest: dict) -> str:
    """What decides the space searched: the head's file and each space's calibration."""
    return json.dumps([(manifest.get("head") or {}).get("sha256"), manifest.get("spaces")], sort_keys=True)


def parse_box(box) -> tuple[int, int, int, int]:
    """(x, y, w, h) from a sequence or "x,y,w,h": whole pixels, positive width and height."""
    parts = box.split(",") if isinstance(box, str) else list(box)
    try:
        values = tuple(int(round(float(v))) for v in parts)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 4 or values[2] <= 0 or values[3] <= 0 or values[0] < 0 or values[1] < 0:
        raise InvalidArgumentError(f"box must be x,y,w,h: four whole numbers, x and y from 0, w and h above 0; got {box!r}.",
                                   code="bad_box")
    return values


def _header_size(data: bytes) -> tuple[int, int] | None:
    """The photo's size from its header alone (no decoding); None when the header does not say."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:  # the decoder proper reports a bad file, with its own typed error
        return None


def open_index(path, settings: Settings | None = None, *, embedder: Embedder | None = None, **overrides) -> Index:
    """Open an index for searching. The embedder is rebuilt from the manifest unless one is given;
    ``overrides`` are settings (``search="exact"``, ``type_boost=0``, ``device="cuda"``...)."""
    return Index(path, settings, embedder=embedder, **overrides)
