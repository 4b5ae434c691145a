"""Garment groups (what the garment parser names a worn item) and the catalog types each is searched within.

A worn top is searched among tops, a pair of shoes among shoes: the group decides the types, the picture
decides which of them. The types are the fashion-small catalog's ``articleType`` values, the same ones
street-ccp's ``labels.csv`` maps its labels to (underwear, socks and swimwear left out: nobody shops a
street photo for them). A catalog that has none of a group's types is searched whole
(``query.stages.filter.within_types``).
"""

from __future__ import annotations

GROUP_TYPES: dict[str, frozenset[str]] = {
    "top": frozenset({"Tshirts", "Tops", "Shirts", "Sweatshirts", "Sweaters", "Tunics", "Lounge Tshirts", "Camisoles",
                      "Kurtas", "Kurtis"}),
    "outerwear": frozenset({"Jackets", "Blazers", "Rain Jacket", "Nehru Jackets", "Shrug", "Sweaters", "Sweatshirts",
                            "Waistcoat"}),
    "dress": frozenset({"Dresses", "Jumpsuit", "Rompers"}),
    "bottom": frozenset({"Jeans", "Trousers", "Shorts", "Skirts", "Track Pants", "Leggings", "Jeggings", "Capris",
                         "Lounge Pants", "Lounge Shorts", "Tights", "Churidar", "Patiala", "Salwar"}),
    "shoes": frozenset({"Casual Shoes", "Sports Shoes", "Formal Shoes", "Heels", "Flats", "Sandals", "Sports Sandals",
                        "Flip Flops"}),
    "bag": frozenset({"Handbags", "Clutches", "Backpacks", "Rucksacks", "Messenger Bag", "Duffel Bag", "Laptop Bag"}),
}
WORN_GROUPS = tuple(GROUP_TYPES)  # the groups shop-the-look searches, in the parser's own order

