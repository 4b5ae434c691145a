"""The front object: an opened index that identifies items and recommends products to buy."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import config
from .embedder import Embedder
from .errors import InvalidArgumentError
from .images import content_hash, load_image
from .search import make_searcher, search_filtered
from .store import Columns, IndexStore, check_compatible

# Cosine at or above which a catalog vector is taken to be the query picture itself.
SAME_IMAGE_COSINE = 0.9999
VOTED_LABELS = ("type", "gender", "colour")


@dataclass(frozen=True)
class Filters:
    gender: str | None = None
    type: str | None = None
    colour: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    include_out_of_stock: bool = False

    def mask(self, columns: Columns) -> np.ndarray:
        """Rows that pass, as one vectorised bool array; unknown label values are an error, not an empty result."""
        mask = columns.live.copy()
        for column in ("gender", "type", "colour"):
            wanted = getattr(self, column)
            if wanted in (None, ""):
                continue
            codes = []
            for value in str(wanted).split(","):
                code = columns.code(column, value)
                if code is None:
                    known = ", ".join(sorted(columns.vocab[column])[:30]) or "none in this catalog"
                    raise InvalidArgumentError(f"Unknown {column} '{value.strip()}'. Known values: {known}.")
                codes.append(code)
            mask &= np.isin(columns.codes[column], codes)
        for name in ("min_price", "max_price"):
            value = getattr(self, name)
            if value is not None and (not np.isfinite(value) or value < 0):
                raise InvalidArgumentError(f"{name} must be a number of 0 or more, got {value}.")
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise InvalidArgumentError(f"min_price ({self.min_price}) is above max_price ({self.max_price}). Swap them.")
        with np.errstate(invalid="ignore"):  # NaN prices never pass a price filter
            if self.min_price is not None:
                mask &= columns.price >= self.min_price
            if self.max_price is not None:
                mask &= columns.price <= self.max_price
        if not self.include_out_of_stock:
            mask &= columns.in_stock
        return mask


@dataclass
class Identification:
    type: str | None = None
    type_confidence: float = 0.0
    gender: str | None = None
    gender_confidence: float = 0.0
    colour: str | None = None
    colour_confidence: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchResult:
    products: list[dict]
    identified: Identification | None = None
    took_ms: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [p["id"] for p in self.products]

    def to_dict(self) -> dict:
        out = {"identified": self.identified.to_dict() if self.identified else None,
               "results": self.products, "took_ms": round(self.took_ms, 2)}
        out.update(self.extra)
        return out


def vote(columns: Columns, rows: np.ndarray, sims: np.ndarray) -> Identification:
    """Similarity-weighted vote of labelled neighbours for each voted label."""
    ident = Identification()
    if len(sims) == 0:
        return ident
    # Softmax weights: the closest neighbours count most; a far tail cannot outvote them.
    temperature = config.get("vote_temperature")
    weights = np.exp((sims.astype(np.float64) - float(np.max(sims))) / temperature)
    for label in VOTED_LABELS:
        codes = columns.codes[label][rows]
        known = codes >= 0
        if not known.any() or weights[known].sum() <= 0:
            continue
        tally = np.bincount(codes[known], weights=weights[known], minlength=len(columns.vocab[label]))
        best = int(np.argmax(tally))
        setattr(ident, label, columns.vocab[label][best])
        setattr(ident, f"{label}_confidence", round(float(tally[best] / weights[known].sum()), 4))
    return ident


def type_consistent(scores: np.ndarray, rows: np.ndarray, columns: Columns, ident: Identification | None,
                    filters: Filters) -> tuple[np.ndarray, np.ndarray]:
    """Lift candidates of the identified type by ``type_boost`` when identification is confident.

    A shopper who uploads a t-shirt wants t-shirts first; a dress that merely looks close follows.
    Does nothing when the shopper chose a type filter. Returns the candidates re-sorted.
    """
    boost = config.get("type_boost")
    ok = rows >= 0
    scores, rows = scores[ok], rows[ok]
    if (boost <= 0 or ident is None or ident.type is None or filters.type
            or ident.type_confidence < config.get("type_boost_min_confidence")):
        return scores, rows
    code = columns.code("type", ident.type)
    lifted = scores + boost * (columns.codes["type"][rows] == code)
    order = np.argsort(-lifted, kind="stable")
    return lifted[order].astype(np.float32), rows[order]


class Index:
    """An opened index. Search with an image (path, bytes or PIL image) or a product id."""

    def __init__(self, path, embedder: Embedder | None = None, search: str | None = None, **embedder_options):
        self.store = IndexStore.open(path)  # the class its manifest names: vectors in the folder or in Milvus
        built = self.store.manifest["embedder"]
        embedder = embedder or Embedder.from_fingerprint(built, **embedder_options)
        check_compatible(built, embedder.fingerprint(), self.store.path)
        self.embedder = embedder
        self.searcher = make_searcher(self.store, search)
        self._shoppers = None

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

    # ---- queries -------------------------------------------------------------------------
    def embed(self, image) -> tuple[np.ndarray, str | None]:
        """Unit vector of an image, and the sha256 of its bytes (None for a PIL image)."""
        sha = content_hash(image) if isinstance(image, (bytes, bytearray)) else None
        if isinstance(image, (str, Path)):
            from .images import read_bytes

            image = read_bytes(image)
            sha = content_hash(image)
        pil = image if isinstance(image, Image.Image) else load_image(image, max_pixels=config.get("max_pixels"))
        return self.embedder.embed([pil])[0], sha

    def _self_rows(self, vector: np.ndarray, sha: str | None) -> list[int]:
        cols = self.store.columns
        rows = [cols.row_of[pid] for pid in (self.store.ids_with_hash(sha) if sha else []) if pid in cols.row_of]
        scores, near = self.searcher.search(vector[None], 3)
        rows += [int(r) for s, r in zip(scores[0], near[0]) if r >= 0 and s >= SAME_IMAGE_COSINE]
        return rows

    def search_vector(self, vector: np.ndarray, k: int | None = None, *, exclude_rows=(), filters: Filters | None = None,
                      identify: bool = True, user: str | None = None, diversity: float | None = None,
                      collapse: bool | None = None) -> SearchResult:
        """Nearest products to a vector. ``user`` personalises (see personalize), ``diversity`` (0..1)
        re-ranks by MMR and ``collapse`` folds near-duplicates into one result (see diversity)."""
        from . import diversity as div

        started = time.perf_counter()
        k = config.get("k") if k is None else _check_k(k)
        diversity, collapse = div.check_diversity(diversity), div.check_collapse(collapse)
        cols = self.store.columns
        mask = (filters or Filters()).mask(cols)
        exclude = np.asarray(list(exclude_rows), dtype=np.int64)
        if len(exclude):
            mask[exclude] = False
        ident = self.identify_vector(vector, exclude_rows=exclude) if identify or user is not None else None
        query = vector
        if user is not None:
            from .personalize import personal_query

            query, disliked = personal_query(self, user, vector, ident.type if ident else None)
            mask[disliked] = False
        scores, rows = search_filtered(self.searcher, query[None], max(div.pool_size(k, diversity, collapse), 4 * k), mask, filters or Filters())
        scores, rows = type_consistent(scores[0], rows[0], cols, ident, filters or Filters())
        scores, rows, similar = div.rerank(scores, rows, self.store.vectors, k, diversity=diversity, collapse=collapse)
        products = []
        for i, (score, row) in enumerate(zip(scores, rows)):
            product = self.store.product(cols.ids[row])
            product["score"] = round(float(score), 4)
            product["similarity"] = round(float(np.dot(self.store.vectors[row], vector)), 4)
            if similar is not None:
                product["similar_count"] = int(similar[i])
            products.append(product)
        return SearchResult(products, ident if identify else None, (time.perf_counter() - started) * 1000)

    def identify_vector(self, vector: np.ndarray, exclude_rows=()) -> Identification:
        cols = self.store.columns
        mask = cols.live.copy()
        if len(exclude_rows):
            mask[np.asarray(exclude_rows, dtype=np.int64)] = False
        scores, rows = self.searcher.search(vector[None], config.get("identify_k"), mask)
        ok = rows[0] >= 0
        return vote(cols, rows[0][ok], scores[0][ok])

    def search(self, image, k: int | None = None, *, user: str | None = None, diversity: float | None = None,
               collapse: bool | None = None, **filters) -> SearchResult:
        """Products most similar to the image, with what the item is. Filters: see ``Filters``.

        With ``user``, results are personalised and the search is remembered as the shopper's upload."""
        from . import diversity as div

        started = time.perf_counter()
        # Ranking options are checked before the image is embedded (filter values need the catalog: later).
        k = None if k is None else _check_k(k)
        diversity, collapse, filters = div.check_diversity(diversity), div.check_collapse(collapse), Filters(**filters)
        vector, sha = self.embed(image)
        result = self.search_vector(vector, k, exclude_rows=self._self_rows(vector, sha), filters=filters,
                                    user=user, diversity=diversity, collapse=collapse)
        if user is not None:
            self.shoppers.record(user, "upload", vector=vector, sha256=sha)
        result.took_ms = (time.perf_counter() - started) * 1000
        return result

    def identify(self, image) -> Identification:
        vector, sha = self.embed(image)
        return self.identify_vector(vector, exclude_rows=self._self_rows(vector, sha))

    def similar(self, product_id: str, k: int | None = None, *, user: str | None = None, diversity: float | None = None,
                collapse: bool | None = None, **filters) -> SearchResult:
        """'More like this' for a catalog product, without uploading its picture again."""
        started = time.perf_counter()
        row = self.row(product_id)
        vector = np.asarray(self.store.vectors[row])
        result = self.search_vector(vector, k, exclude_rows=self._self_rows(vector, self.store.product(product_id).get("image_sha256")) + [row],
                                    filters=Filters(**filters), user=user, diversity=diversity, collapse=collapse)
        result.took_ms = (time.perf_counter() - started) * 1000
        return result

    # ---- catalog -------------------------------------------------------------------------
    def row(self, product_id: str) -> int:
        row = self.store.columns.row_of.get(str(product_id))
        if row is None:
            self.store.product(product_id)  # raises ProductNotFoundError with the message
        return row

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

    def info(self) -> dict:
        manifest = dict(self.store.manifest)
        manifest["counts"] = {"products": len(self.store), "vector_rows": self.store.n_rows, "dead_rows": self.store.dead_rows()}
        manifest["search"] = self.searcher.name
        manifest["runtime"] = self.embedder.runtime_name
        return manifest


def _check_k(k) -> int:
    try:
        k = int(k)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"k must be a whole number, got {k!r}.") from None
    if not 1 <= k <= 1000:
        raise InvalidArgumentError(f"k must be between 1 and 1000, got {k}.")
    return k


def open_index(path, embedder: Embedder | None = None, search: str | None = None, **embedder_options) -> Index:
    """Open an index for searching. The embedder is rebuilt from the manifest unless one is given."""
    return Index(path, embedder=embedder, search=search, **embedder_options)
