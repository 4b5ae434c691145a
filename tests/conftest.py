"""Shared fixtures: generated catalogs (images + feed) and indexes built from them with real code."""

from __future__ import annotations

import csv
import os
import random
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from imagegen import make_image  # noqa: E402

os.environ.setdefault("STYLELENS_PROGRESS", "0")

# Beside the checkout; STYLELENS_TEST_FASHION_SMALL names it for a checkout elsewhere (a git worktree).
FASHION_SMALL = Path(os.environ.get("STYLELENS_TEST_FASHION_SMALL")
                     or Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-small")
COLOURS = {"Red": (200, 30, 40), "Blue": (30, 60, 200), "Green": (40, 160, 60), "Black": (20, 20, 20)}
FEED_HEADER = ["id", "productDisplayName", "articleType", "gender", "baseColour", "price", "currency", "url", "in_stock",
               "masterCategory", "subCategory", "usage", "season", "brand"]


def write_catalog(folder: Path, n: int = 24, seed: int = 0, feed: bool = True) -> dict[str, dict]:
    """n product images (images/<id>.jpg) and products.csv; returns the rows by id.

    Types follow the drawn shape (pattern seeds pick tshirt/dress/bag), colours cycle, every 5th
    product is out of stock, prices rise with the id.
    """
    rng = random.Random(seed)
    rows = {}
    names = list(COLOURS)
    for i in range(n):
        pid = str(1000 + i)
        colour = names[i % len(names)]
        pattern = rng.randrange(10_000)
        make_image(folder / "images" / f"{pid}.jpg", color=COLOURS[colour], pattern_seed=pattern)
        gender = "Women" if i % 2 else "Men"
        rows[pid] = {"id": pid, "productDisplayName": f"{colour} item {pid}", "articleType": f"Type{pattern % 3}",
                     "gender": gender, "baseColour": colour, "price": f"{10 + i * 2.5:.2f}", "currency": "EUR",
                     "url": f"https://shop.example/p/{pid}", "in_stock": "no" if i % 5 == 4 else "yes",
                     "masterCategory": "Apparel", "subCategory": "Topwear", "usage": "Casual", "season": "Summer",
                     "brand": f"Brand{i % 3}"}
    if feed:
        with open(folder / "products.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=FEED_HEADER)
            writer.writeheader()
            writer.writerows(rows.values())
    return rows


def link_slice(catalog: Path, pick, fashion: Path = FASHION_SMALL) -> tuple[list[dict], list[dict]]:
    """A catalog folder at ``catalog`` of the fashion-small products ``pick(rows)`` chooses (images linked, the
    feed written); returns (all rows, the chosen rows)."""
    with open(fashion / "styles.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        header, rows = reader.fieldnames, list(reader)
    chosen = pick(rows)
    (catalog / "images").mkdir(parents=True)
    for row in chosen:
        (catalog / "images" / f"{row['id']}.jpg").symlink_to(fashion / "images" / f"{row['id']}.jpg")
    with open(catalog / "styles.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(chosen)
    return rows, chosen


def fashion_slice(root: Path, pick, fashion: Path = FASHION_SMALL) -> tuple[list[dict], list[dict]]:
    """``link_slice`` at ``root/catalog``, indexed with efficientnet-lite0 at ``root/index``; returns (all rows,
    the indexed rows)."""
    from stylelens import build_index

    rows, indexed = link_slice(root / "catalog", pick, fashion)
    build_index(root / "catalog", root / "index", backbone="efficientnet-lite0", weights="imagenet", progress=False)
    return rows, indexed


def no_download_env(folder: Path) -> dict[str, str]:
    """The environment of a machine that cannot download model weights, with the real download code: an empty
    torch hub, and HTTP(S) through a proxy on a closed local port (every connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{s.getsockname()[1]}"
    return {"TORCH_HOME": str(folder / "torch-hub"), "https_proxy": proxy, "HTTPS_PROXY": proxy, "http_proxy": proxy,
            "HTTP_PROXY": proxy, "no_proxy": "", "NO_PROXY": ""}


@pytest.fixture
def offline(tmp_path, monkeypatch) -> dict[str, str]:
    """This process cannot download weights (``no_download_env``); the environment it set, for subprocesses too."""
    import urllib.request

    env = no_download_env(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # urllib reads the proxies once, into the opener its first urlopen builds: have the next one read them again.
    monkeypatch.setattr(urllib.request, "_opener", None)
    return env


@pytest.fixture
def catalog(tmp_path) -> tuple[Path, dict[str, dict]]:
    folder = tmp_path / "catalog"
    return folder, write_catalog(folder)


@pytest.fixture(scope="session")
def random_embedder():
    """ResNet-50 with seeded random weights: the real architecture, no download."""
    from stylelens import Embedder

    return Embedder("resnet50", weights="random", runtime="torch", batch_size=16)


@pytest.fixture(scope="session")
def built_index(tmp_path_factory, random_embedder) -> tuple[Path, Path, dict[str, dict]]:
    """(index folder, catalog folder, rows) built once per session. Tests must not change it."""
    from stylelens import build_index

    root = tmp_path_factory.mktemp("built")
    rows = write_catalog(root / "catalog", n=30)
    build_index(root / "catalog", root / "index", embedder=random_embedder, workers=0, progress=False)
    return root / "index", root / "catalog", rows


@pytest.fixture(scope="session")
def opened_index(built_index, random_embedder):
    from stylelens import open_index

    return open_index(built_index[0], embedder=random_embedder)
