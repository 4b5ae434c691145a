"""The words shoppers type for types, genders and colours, and the catalog values each one names: one table.

Every surface reads a label filter through ``catalog_values``: ``Filters.mask`` (the Python API, the CLI's
``--type``, the HTTP form and query fields, Milvus's expressions) and ``filters.filters_from_text`` (the
page's describe box, ``/api/filters``). A word names a catalog value when it is that value as shoppers spell
it (case, punctuation, a plural, British or American spelling: "t-shirt", "tshirts", "gray" for Grey), else
through ``SYNONYMS`` ("sneakers", "female"), whose targets are kept only where this catalog has them: a
catalog with its own "Sneakers" type is searched by it, not by the table's guess.
"""

from __future__ import annotations

import difflib
import functools

from ..index.catalog_db import label_forms, label_key

# Shopper word (as ``label_key`` writes it) -> the catalog values it names, fashion-small's spelling.
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "type": {
        **dict.fromkeys(("sneaker", "sneakers"), ("Casual Shoes", "Sports Shoes")),
        **dict.fromkeys(("trainer", "trainers", "runningshoes", "runners"), ("Sports Shoes",)),
        **dict.fromkeys(("shoe", "shoes"), ("Casual Shoes", "Sports Shoes", "Formal Shoes")),
        **dict.fromkeys(("tee", "tees", "tshirt", "tshirts", "polo", "polos"), ("Tshirts",)),
        **dict.fromkeys(("hoodie", "hoodies", "hoody"), ("Sweatshirts",)),
        **dict.fromkeys(("jumper", "jumpers", "pullover", "pullovers", "cardigan", "cardigans"), ("Sweaters",)),
        **dict.fromkeys(("pants", "slacks", "chinos"), ("Trousers", "Track Pants", "Lounge Pants")),
        **dict.fromkeys(("joggers", "sweatpants", "trackpants"), ("Track Pants",)),
        **dict.fromkeys(("blouse", "blouses"), ("Tops",)),
        **dict.fromkeys(("frock", "frocks"), ("Dresses",)),
        **dict.fromkeys(("coat", "coats"), ("Jackets", "Rain Jacket")),
        **dict.fromkeys(("purse", "purses"), ("Handbags", "Clutches")),
        **dict.fromkeys(("bag", "bags"), ("Handbags",)),
        **dict.fromkeys(("shades",), ("Sunglasses",)),
        **dict.fromkeys(("scarf",), ("Scarves",)),
        **dict.fromkeys(("flipflop", "flipflops", "thongs"), ("Flip Flops",)),
    },
    "gender": {
        **dict.fromkeys(("women", "woman", "womens", "female", "females", "ladies", "lady"), ("Women",)),
        **dict.fromkeys(("men", "man", "mens", "male", "males", "gents", "gentlemen"), ("Men",)),
        **dict.fromkeys(("girl", "girls"), ("Girls",)),
        **dict.fromkeys(("boy", "boys"), ("Boys",)),
        **dict.fromkeys(("kid", "kids", "children", "child"), ("Boys", "Girls")),
    },
    "colour": {
        **dict.fromkeys(("navy",), ("Navy Blue",)),
        **dict.fromkeys(("wine",), ("Burgundy", "Maroon")),
        **dict.fromkeys(("violet",), ("Purple",)),
        **dict.fromkeys(("fuchsia",), ("Magenta",)),
        **dict.fromkeys(("turquoise",), ("Turquoise Blue",)),
        **dict.fromkeys(("lime",), ("Lime Green",)),
        **dict.fromkeys(("golden",), ("Gold",)),
        **dict.fromkeys(("multi", "multicolour", "multicoloured", "multicolor", "multicolored"), ("Multi",)),
    },
}

# American -> British inside a word (both sides are spelled this way before they are compared), so "gray" finds
# Grey and a catalog spelling "Gray" is found by "grey".
SPELLINGS = (("gray", "grey"), ("color", "colour"), ("jewelry", "jewellery"), ("moisturiz", "moisturis"))


def spelled(value: str) -> str:
    """``label_key`` with one spelling of the words that have two."""
    key = label_key(value)
    for american, british in SPELLINGS:
        key = key.replace(american, british)
    return key


# Cached: every word a query reads is compared with each value of the catalog's vocabulary, whose forms never
# change (141 types in fashion-small); the bound only keeps the shoppers' own words from growing it without end.
@functools.lru_cache(maxsize=8192)
def forms(value: str) -> frozenset[str]:
    """The spellings under which a word and a catalog value are the same label (case, punctuation, plural)."""
    return frozenset(label_forms(spelled(value)))


def catalog_values(column: str, word: str, vocab: list[str]) -> list[str]:
    """The values of ``vocab`` (a catalog's values of ``column``) that ``word`` names: the value itself as
    shoppers spell it, else the synonyms this catalog has. [] when it names none."""
    same = _same(word, vocab)
    if same:
        return same
    out: list[str] = []
    for target in meant(column, word):
        out += [v for v in _same(target, vocab) if v not in out]
    return out


def meant(column: str, word: str) -> tuple[str, ...]:
    """The values the table says ``word`` names, whatever the catalog has ('sneakers': Casual Shoes, Sports Shoes)."""
    return SYNONYMS.get(column, {}).get(spelled(str(word)), ())


def _same(word: str, vocab: list[str]) -> list[str]:
    """The catalog value that is ``word`` as shoppers spell it: an exact (case-insensitive) match first."""
    wanted = str(word).strip().lower()
    if not wanted:
        return []
    exact = [v for v in vocab if v.lower() == wanted]
    if exact:
        return exact[:1]
    mine = forms(wanted)
    return [v for v in vocab if mine & forms(v)][:1]


def suggestions(column: str, word: str, vocab: list[str], n: int = 3) -> list[str]:
    """The words closest to a mistyped ``word`` that this catalog understands for ``column``: its values and the
    synonyms that name one of them, one word per set of values named ('sneaker' or 'sneakers': the closer)."""
    words = {spelled(v): v for v in vocab}
    for synonym, targets in SYNONYMS.get(column, {}).items():
        # A synonym that is a value's own plural or spelling ('tshirt') is shown as the value ('Tshirts').
        if not _same(synonym, vocab) and any(_same(t, vocab) for t in targets):
            words[synonym] = synonym
    out, named = [], set()
    for close in difflib.get_close_matches(spelled(word), list(words), n=3 * n, cutoff=0.6):
        values = tuple(catalog_values(column, words[close], vocab))
        if values not in named:
            named.add(values)
            out.append(words[close])
    return out[:n]
