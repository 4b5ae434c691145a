"""The shapes of the API's answers (pydantic), so /openapi.json documents every 200 response."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..query import Identification  # a dataclass: pydantic documents it as it is


class Product(BaseModel):
    # Feed columns beyond these (brand, season...) pass through as they are.
    model_config = ConfigDict(extra="allow")

    id: str
    name: str | None = None
    type: str | None = None
    gender: str | None = None
    colour: str | None = None
    price: float | None = None
    currency: str | None = None
    url: str | None = None
    in_stock: bool = True
    category: str | None = None
    subcategory: str | None = None
    season: str | None = None
    usage: str | None = None
    image_url: str = Field(description="The product's picture, served by this server.")
    score: float | None = Field(None, description="Ranking score, what the order follows (non-increasing down the list "
                                                  "unless 'diversity' is set): the cosine similarity to the (personalised) "
                                                  "query plus type_boost for a product of the identified type, so it can pass "
                                                  "1. The page shows it as '% match', capped at 100 %; see docs/results.md.")
    similarity: float | None = Field(None, description="Cosine similarity to the query photo, at most 1: how alike it "
                                                       "looks, before any lift; not what the order follows.")
    exact_match: bool | None = Field(None, description="True when the query photo is this product's own picture.")
    similar_count: int | None = Field(None, description="Near-identical products folded into this one (collapse).")
    price_max: float | None = Field(None, description="Variants: the top of the price range ('price' is its lowest).")
    colours: list[str] | None = Field(None, description="Variants: every colour the product comes in.")
    sizes: list[str] | None = Field(None, description="Variants: every size the product comes in.")
    variants: int | None = Field(None, description="Variants: how many the product's card stands for.")
    image_urls: list[str] | None = Field(None, description="Every picture of a product with several (its views), main first.")
    matched_image_url: str | None = Field(None, description="The product's picture that matched the query, when it is not "
                                                            "the main one.")


class Item(BaseModel):
    box: list[int] = Field(description="x, y, width, height of the item in the photo's pixels.")
    group: str | None = Field(None, description="A worn garment's group (top, outerwear, dress, bottom, shoes, bag), "
                                                "when the garment parser found it; it was searched within that group's types.")
    outline: list[list[list[int]]] | None = Field(None, description="The garment's outline: a few polygons of [x, y] points "
                                                                   "in the photo's pixels (from the parser's mask).")
    identified: Identification | None = None
    results: list[Product]


class SearchResponse(BaseModel):
    identified: Identification | None = Field(None, description="What the item is, by its labelled neighbours' vote.")
    results: list[Product] = Field(description="For a photo: the main item's results (the first of 'items').")
    took_ms: float
    note: str | None = Field(None, description="Why there are no results, when there are none.")
    notes: list[str] = Field(default_factory=list, description="One line for each filter given that this catalog "
                             "cannot apply, left out of the search (a price filter on a catalog without prices): "
                             "show them beside the results.")
    items: list[Item] | None = Field(None, description="For a photo: every item found in it, main item first, each "
                                                         "with its box, identification and results.")


class LookGroup(BaseModel):
    category: str
    products: list[Product]


class LookResponse(BaseModel):
    source: Product
    groups: list[LookGroup]
    took_ms: float


class EventResponse(BaseModel):
    ok: bool
    user: str
    counts: dict[str, int]


class ShopperResponse(BaseModel):
    user: str
    token: str | None = Field(None, description="Send it as X-Shopper-Token with this shopper's requests (tokens on).")
    csrf: str | None = Field(None, description="Send it as X-CSRF-Token with this shopper's changes that are not JSON "
                                               "(the cookie's shopper).")


class ForgetResponse(BaseModel):
    ok: bool
    user: str
    deleted: int


class WordFilters(BaseModel):
    filters: dict[str, str | float] = Field(description="gender, type, colour (comma-separated values), min_price, max_price.")
    unknown: list[str] = Field(description="Words that matched nothing in this catalog.")


class PriceRange(BaseModel):
    min: float
    max: float


class Facets(BaseModel):
    gender: list[str]
    type: list[str]
    colour: list[str]
    price: PriceRange | None = Field(None, description="None when the catalog has no prices.")


class Generation(BaseModel):
    vectors: int
    rows: int


class Indexing(BaseModel):
    indexed: int
    expected: int


class Health(BaseModel):
    """backbone, weights, dimension, pooling, search, runtime, space, colour_vote, head and generation: for clients on the server's
    own machine only."""

    status: str
    version: str
    products: int
    max_upload_bytes: int
    indexing: Indexing | None = None
    shopper_tokens: bool = Field(False, description="True: a shopper's requests need their X-Shopper-Token.")
    backbone: str | None = None
    weights: str | None = None
    dimension: int | None = None
    pooling: str | None = None
    search: str | None = None
    runtime: str | None = None
    space: str | None = Field(None, description="The space searched: 'tuned' (the head stylelens tune trained, where it "
                              "measured better for the type) or 'raw'.")
    colour_vote: str | None = Field(None, description="The space the colour vote is taken in: 'tuned' or 'raw'.")
    type_probe: bool | None = Field(None, description="True: the type probe stylelens tune trained on the catalog joins "
                                    "the neighbours' type vote (where it measured better).")
    head: str | None = Field(None, description="The tuned head followed (the start of its file's hash), or null.")
    generation: Generation | None = None
