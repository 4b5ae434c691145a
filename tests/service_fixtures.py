"""Small catalogs for the web service tests: generated product pictures plus a CSV feed, or real
fashion-small images, indexed with the real library."""

from __future__ import annotations

import csv
import random
import shutil
import socket
from pathlib import Path

from imagegen import _SHAPES, make_image

from stylelens import build_index

FEED_COLUMNS = ("id", "name", "articleType", "gender", "baseColour", "price", "currency", "url", "in_stock")
# fashion-small's own labels that complete-the-look uses, kept as they are in styles.csv.
FASHION_EXTRA_COLUMNS = ("masterCategory", "subCategory", "usage", "season")
SHAPE_TYPES = {"tshirt": "Tshirts", "dress": "Dresses", "bag": "Handbags"}
COLOURS = {"Red": (200, 30, 40), "Blue": (30, 60, 200), "Green": (30, 150, 60), "Black": (25, 25, 25)}


def _shared_data(name: str) -> Path:
    """../shared/data/NAME beside the checkout; for a git worktree, beside the main checkout it belongs to."""
    repo = Path(__file__).resolve().parents[1]
    beside = repo.parent / "shared" / "data" / name
    git = repo / ".git"
    if not beside.exists() and git.is_file():  # a worktree: ".git" names MAIN/.git/worktrees/NAME
        main = Path(git.read_text().split("gitdir:", 1)[-1].strip()).parents[2]
        return main.parent / "shared" / "data" / name
    return beside


FASHION_SMALL = _shared_data("fashion-small")


def shape_of(seed: int) -> str:
    """The shape imagegen.product_picture draws for a pattern seed (its first draw picks the shape)."""
    return random.Random(seed).choice(sorted(_SHAPES))


def make_demo_catalog(folder: Path, n: int = 48, seed: int = 7) -> Path:
    """``n`` product pictures (3 shapes x 4 colours, jittered) and products.csv; some out of stock."""
    folder = Path(folder)
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        pattern = seed * 1000 + i
        colour = list(COLOURS)[i % len(COLOURS)]
        kind = shape_of(pattern)
        pid = f"p{i:03d}"
        make_image(folder / f"{pid}.jpg", color=COLOURS[colour], pattern_seed=pattern)
        rows.append({
            "id": pid,
            "name": f"{colour} {SHAPE_TYPES[kind][:-1].lower()} {i}",
            "articleType": SHAPE_TYPES[kind],
            "gender": "Women" if kind == "dress" else ("Men", "Women", "Unisex")[i % 3],
            "baseColour": colour,
            "price": f"{rng.uniform(5, 120):.2f}",
            "currency": "EUR",
            "url": f"https://shop.example/products/{pid}",
            "in_stock": "no" if i % 7 == 6 else "yes",
        })
    write_feed(folder / "products.csv", rows)
    return folder


def write_feed(path: Path, rows: list[dict], columns=FEED_COLUMNS) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def build_demo_index(folder: Path, n: int = 48, backbone: str = "resnet50", weights: str = "random") -> Path:
    catalog = make_demo_catalog(folder / "catalog", n)
    out = folder / "index"
    build_index(catalog, out, backbone=backbone, weights=weights, workers=0, progress=False)
    return out


def fashion_small_catalog(folder: Path, n: int = 300) -> Path:
    """The first ``n`` products of fashion-small that have an image, copied with a feed in our columns."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(300)
    rows = []
    with open(FASHION_SMALL / "styles.csv", newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            src = FASHION_SMALL / "images" / f"{rec['id']}.jpg"
            if not src.is_file():
                continue
            shutil.copyfile(src, folder / src.name)
            rows.append({
                "id": rec["id"], "name": rec["productDisplayName"], "articleType": rec["articleType"],
                "gender": rec["gender"], "baseColour": rec["baseColour"], "price": f"{rng.uniform(8, 150):.2f}",
                "currency": "EUR", "url": f"https://shop.example/p/{rec['id']}",
                "in_stock": "no" if rng.random() < 0.1 else "yes",
                **{c: rec[c] for c in FASHION_EXTRA_COLUMNS},
            })
            if len(rows) == n:
                break
    write_feed(folder / "products.csv", rows, FEED_COLUMNS + FASHION_EXTRA_COLUMNS)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A TestClient that talks to the app as a browser on the server's own machine would: Host localhost, peer 127.0.0.1.
LOCAL = {"base_url": "http://localhost", "client": ("127.0.0.1", 50000)}


def as_shopper(client, user: str) -> None:
    """Make ``client`` the browser of shopper ``user``: the cookie the server signs for it (as a shop's own site
    may set for a customer) and its CSRF token, as the page sends them."""
    from stylelens.service.auth import COOKIE, csrf_token, shopper_cookie

    secret = client.app.state.shopper_secret
    client.cookies.set(COOKIE, shopper_cookie(secret, user))
    client.headers["X-CSRF-Token"] = csrf_token(secret, user)
