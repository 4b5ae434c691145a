"""Complete the look: items from complementary categories that go with a product or a photo.

No outfit data is needed. Rules decide what may be shown, visual affinity (cosine of the image
vectors) decides the order:

1. **Slot**: each product falls in an outfit slot by subcategory (else category): Topwear,
   Bottomwear, One-piece (dresses, sarees, sets), Footwear, Accessories. ``COMPLEMENTS`` says which
   slots complete which; products in no slot (innerwear, personal care...) get no suggestions.
2. **Gender**: the same gender or Unisex (a Unisex item takes Men, Women and Unisex).
3. **Usage**: the same usage or a compatible one (``USAGE_PAIRS``: Casual goes with Smart Casual,
   Sports, Travel, Ethnic, Home; Formal with Smart Casual and Party; ... but never Formal with
   Sports or Casual).
4. **Season**: the same season or a neighbouring one (Summer goes with Spring and Fall, not Winter).
5. **Colour harmony**: neutrals (black, white, greys, navy, beiges, browns, olive, metals) go with
   everything; two chromatic colours go together when their hues are within 45 degrees of each other
   (analogous) or at least 140 degrees apart (complementary); anything else clashes. "Multi" goes
   only with neutrals.
6. **Label sanity**: a candidate must look more like its own slot than like the source's slot
   (cosine to each slot's mean vector). Ranking across categories by visual affinity otherwise
   rewards mislabelled products: a shirt photo filed as a wallet is the "wallet" most like a shirt.
7. Only live, in-stock products; within a group, distinct product types come first (a watch, a bag
   and a belt rather than three watches).

A label the source or a candidate does not have is not held against it.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field

import numpy as np

from .filters import Filters, check_k
from .stages.neighbours import search_again

SUBCATEGORY_SLOT = {
    "topwear": "Topwear", "bottomwear": "Bottomwear",
    "dress": "One-piece", "saree": "One-piece", "apparel set": "One-piece",
    "shoes": "Footwear", "sandal": "Footwear", "flip flops": "Footwear",
    "bags": "Accessories", "belts": "Accessories", "eyewear": "Accessories", "jewellery": "Accessories",
    "watches": "Accessories", "headwear": "Accessories", "ties": "Accessories", "scarves": "Accessories",
    "stoles": "Accessories", "cufflinks": "Accessories", "wallets": "Accessories", "mufflers": "Accessories",
}
CATEGORY_SLOT = {"footwear": "Footwear", "accessories": "Accessories"}
COMPLEMENTS = {
    "Topwear": ("Bottomwear", "Footwear", "Accessories"),
    "Bottomwear": ("Topwear", "Footwear", "Accessories"),
    "One-piece": ("Footwear", "Accessories"),
    "Footwear": ("Topwear", "Bottomwear", "One-piece", "Accessories"),
    "Accessories": ("Topwear", "Bottomwear", "One-piece", "Footwear"),
}
GENDERS = {"men": {"men", "unisex"}, "women": {"women", "unisex"}, "boys": {"boys", "unisex"},
           "girls": {"girls", "unisex"}, "unisex": {"men", "women", "unisex"}}
USAGE_PAIRS = [("casual", "smart casual"), ("casual", "sports"), ("casual", "travel"), ("casual", "ethnic"),
               ("casual", "home"), ("smart casual", "formal"), ("smart casual", "party"), ("formal", "party"),
               ("party", "ethnic"), ("sports", "travel")]
SEASONS = ["spring", "summer", "fall", "winter"]  # a cycle: each season goes with its two neighbours
NEUTRAL_COLOURS = {"black", "white", "grey", "grey melange", "charcoal", "navy blue", "beige", "cream", "off white",
                   "brown", "coffee brown", "mushroom brown", "tan", "khaki", "taupe", "nude", "skin", "silver",
                   "steel", "gold", "bronze", "copper", "metallic", "olive"}
HUE = {"red": 0, "maroon": 345, "burgundy": 340, "rose": 340, "pink": 330, "magenta": 310, "mauve": 290,
       "purple": 275, "lavender": 265, "blue": 220, "turquoise blue": 180, "teal": 180, "sea green": 150,
       "green": 120, "fluorescent green": 110, "lime green": 90, "yellow": 55, "mustard": 50, "orange": 30,
       "peach": 25, "rust": 20}
ANALOGOUS_DEGREES = 45
COMPLEMENTARY_DEGREES = 140


def slot_of(subcategory: str | None, category: str | None) -> str | None:
    return SUBCATEGORY_SLOT.get((subcategory or "").lower()) or CATEGORY_SLOT.get((category or "").lower())


def genders_with(gender: str) -> set[str]:
    return GENDERS.get(gender.lower(), {gender.lower(), "unisex"})


def usages_with(usage: str) -> set[str]:
    u = usage.lower()
    return {u} | {b for a, b in USAGE_PAIRS if a == u} | {a for a, b in USAGE_PAIRS if b == u}


def seasons_with(season: str) -> set[str]:
    s = season.lower()
    if s not in SEASONS:
        return {s}
    i = SEASONS.index(s)
    return {s, SEASONS[i - 1], SEASONS[(i + 1) % 4]}


def colours_harmonise(a: str, b: str) -> bool:
    a, b = a.lower(), b.lower()
    if a in NEUTRAL_COLOURS or b in NEUTRAL_COLOURS:
        return True
    if a == b:
        return True
    if a not in HUE or b not in HUE:  # "multi" and unknown colours: only with neutrals
        return a == b
    d = abs(HUE[a] - HUE[b]) % 360
    d = min(d, 360 - d)
    return d <= ANALOGOUS_DEGREES or d >= COMPLEMENTARY_DEGREES


@dataclass
class LookResult:
    source: dict
    groups: list[dict] = field(default_factory=list)  # {"category": slot, "products": [...]}
    took_ms: float = 0.0

    def to_dict(self) -> dict:
        return {"source": self.source, "groups": self.groups, "took_ms": round(self.took_ms, 2)}


def _allowed(columns, column: str, value: str | None, rule) -> np.ndarray:
    """Rows whose label passes rule(source value, candidate value); rows without the label pass."""
    codes = columns.codes[column]
    if not value:
        return np.ones(len(codes), bool)
    ok_codes = [c for c, v in enumerate(columns.vocab[column]) if rule(value, v)]
    return np.isin(codes, ok_codes) | (codes < 0)


def look_mask(columns, source: dict) -> np.ndarray:
    """Rows allowed by the gender, usage, season and colour rules (live and in stock)."""
    mask = Filters().mask(columns)
    mask &= _allowed(columns, "gender", source.get("gender"), lambda s, c: c.lower() in genders_with(s))
    mask &= _allowed(columns, "usage", source.get("usage"), lambda s, c: c.lower() in usages_with(s))
    mask &= _allowed(columns, "season", source.get("season"), lambda s, c: c.lower() in seasons_with(s))
    mask &= _allowed(columns, "colour", source.get("colour"), colours_harmonise)
    return mask


def slot_rows(columns) -> np.ndarray:
    """Outfit slot of every row (object array, None outside any slot)."""
    sub = [slot_of(v, None) for v in columns.vocab["subcategory"]]
    cat = [slot_of(None, v) for v in columns.vocab["category"]]
    sub_codes, cat_codes = columns.codes["subcategory"], columns.codes["category"]
    slots = np.full(len(sub_codes), None, dtype=object)
    for code, slot in enumerate(cat):
        slots[cat_codes == code] = slot
    for code, slot in enumerate(sub):
        if slot is not None:
            slots[sub_codes == code] = slot
    return slots


_CENTROIDS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
CENTROID_SAMPLE = 256  # products per slot averaged into its centroid: the vectors read stay bounded on any backend


def slot_centroids(space) -> tuple[np.ndarray, dict[str, int]]:
    """Unit mean vector of each outfit slot (from a seeded sample of its products) in the space searched
    (``Index.space``), and slot -> row. Cached per space and catalog state."""
    store = space.store
    key = (store.n_rows, len(store))
    cached = _CENTROIDS.get(space)
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    cols = store.columns
    slots = slot_rows(cols)
    rng = np.random.default_rng(0)
    names, centroids = [], []
    for name in COMPLEMENTS:
        rows = np.flatnonzero((slots == name) & cols.live)
        if len(rows):
            sample = np.sort(rng.choice(rows, size=min(len(rows), CENTROID_SAMPLE), replace=False))
            names.append(name)
            centroids.append(space.vectors(sample).mean(axis=0))
    centroids = np.stack(centroids) if centroids else np.zeros((0, space.dim), np.float32)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    column = {name: i for i, name in enumerate(names)}
    _CENTROIDS[space] = (key, centroids, column)
    return centroids, column


def _distinct_types_first(columns, rows: np.ndarray, scores: np.ndarray, k: int) -> list[int]:
    types = columns.codes["type"]
    first, rest, seen = [], [], set()
    for i, row in enumerate(rows):
        if row < 0:
            break
        (rest if types[row] in seen and types[row] >= 0 else first).append(i)
        seen.add(types[row])
    return (first + rest)[:k]


def complete_the_look(index, product_id: str | None = None, image=None, k: int | None = None) -> LookResult:
    """Suggestions per complementary slot for a catalog product (by id) or a photo (``Index.look``)."""
    return index.look(product_id, image, k)


def look(snap, source: dict, vector: np.ndarray, k: int | None = None, *, row: int | None = None) -> LookResult:
    """The slots that complete ``source`` (a product record, or a photo's voted labels) for its ``vector``:
    per slot a neighbour pass over the rows the rules allow (minus ``row``, the product itself), kept when
    they look like their slot, distinct types first."""
    started = time.perf_counter()
    k = 3 if k is None else check_k(k)
    store, space, cols = snap.store, snap.space, snap.columns
    slot = slot_of(source.get("subcategory"), source.get("category"))
    groups = []
    if slot is not None:
        allowed = look_mask(cols, source)
        slots = slot_rows(cols)
        centroids, column = slot_centroids(space)
        for target in COMPLEMENTS[slot]:
            mask = allowed & (slots == target)
            if row is not None:
                mask[row] = False
            if not mask.any():
                continue
            scores, rows = search_again(snap, vector, max(20 * k, 60), mask)
            scores, rows = scores[rows >= 0], rows[rows >= 0]
            if target in column and slot in column and len(rows):
                # Keep what looks like its own slot: fashion catalogs hold mislabelled photos.
                affinity = space.vectors(rows, cols) @ centroids.T
                looks_right = affinity[:, column[target]] > affinity[:, column[slot]]
                scores, rows = scores[looks_right], rows[looks_right]
            picked = _distinct_types_first(cols, rows, scores, k)
            products = store.products(cols.ids[rows[picked]]) if picked else []
            for product, i in zip(products, picked):
                product["score"] = round(float(scores[i]), 4)
            if products:
                groups.append({"category": target, "products": products})
    source["slot"] = slot
    return LookResult(source, groups, (time.perf_counter() - started) * 1000)
