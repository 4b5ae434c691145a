"""A product feed (a file, or an http(s) URL of one) -> a Catalog whose images are files: downloaded into the
index's cache (``DOWNLOADS``), or local paths next to a local feed.

The images download while the build embeds those already here (``FeedImages.stream`` feeds the runner);
the build then runs as for a folder: unchanged image bytes (a 304 keeps the cached file) are not re-embedded,
prices and stock are updated, and products gone from the feed leave the index. Every image that cannot be had
is a row of errors.csv: (product id, URL, code, reason).
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Iterator

from ..errors import CatalogError
from ..intake.catalog import Catalog, FeedLimits, _inside, read_feed
from ..index.catalog_db import product_of, view_id
from ..intake.fetch import FetchPolicy, Fetcher, is_url, url_scheme

DOWNLOADS = "downloads"  # inside the index folder
FEED_NAMES = (".csv", ".tsv", ".txt", ".xml", ".rss", ".atom", ".jsonl", ".ndjson", ".parquet")


def is_feed_source(source) -> bool:
    """A feed file or URL (indexed with its image URLs), as opposed to a catalog folder."""
    return is_url(str(source)) or Path(source).is_file()


def source_key(source) -> str:
    """How the index's manifest names the feed it follows: the URL as given, or the file's absolute path."""
    return str(source).strip() if is_url(str(source)) else str(Path(source).resolve())


def downloads_folder(store_path, settings) -> Path:
    """The cache inside the index folder; a database index has none, so its cache lives under cache_dir."""
    if isinstance(store_path, Path):
        return store_path / DOWNLOADS
    return settings.cache_path / "feeds" / hashlib.sha256(str(store_path).encode()).hexdigest()[:16]


class FeedImages:
    """A feed's image URLs, downloaded while the build embeds the ones already here: (id, file) as each arrives.

    ``pids``: the products waiting for a download (they stay in the index while it runs). A failed URL is a
    skip (errors.csv); when an earlier copy is cached, that copy is still indexed."""

    def __init__(self, catalog: Catalog, fetcher: Fetcher, wanted: dict[str, list[str]], keep: list[str]):
        self.catalog, self.fetcher, self.wanted, self.keep = catalog, fetcher, wanted, keep
        self.pids = {pid for pids in wanted.values() for pid in pids}
        self.done: dict[str, object] = {}  # URL -> Fetched, fetched ahead of the stream

    def fetch_first(self, pids) -> dict[str, Path]:
        """Download these products' images now, before the rest streams (precision auto is decided on them);
        their files by id. Each is fetched once: :meth:`stream` hands these results on."""
        urls = list(dict.fromkeys(url for url, owners in self.wanted.items() for pid in owners if pid in set(pids)))
        self.done.update(self.fetcher.fetch_all(urls))
        return {pid: got.path for url, got in self.done.items() if got.path is not None for pid in self.wanted[url]}

    def stream(self, skip) -> Iterator[tuple[str, Path]]:
        done, self.done = self.done, {}
        try:
            for got in itertools.chain(done.values(), self.fetcher.stream([u for u in self.wanted if u not in done])):
                for pid in self.wanted[got.url]:
                    if got.code:  # named by its product: a view's id is not the shop's
                        skip(product_of(pid), got.url, got.code, got.message + _view_note(pid) + (
                            "; the copy downloaded before is kept" if got.path is not None else ""))
                    if got.path is not None:
                        self.catalog.images[pid] = got.path
                        yield pid, got.path
            self.fetcher.prune(self.keep + list(self.wanted))  # a complete pass: what the feed no longer names goes
        finally:
            self.close()

    def close(self) -> None:
        self.fetcher.close()


def _view_note(pid: str) -> str:
    view = pid[len(product_of(pid)):]
    return f" (a further picture of the product, view {view.rsplit('view', 1)[1]})" if view else ""


MORE_COLOURS = 24  # a card's colours given views of their own at most (each is one more row to embed)


def with_views(products: dict[str, dict], most: int) -> dict[str, dict]:
    """Each product's further pictures (up to ``most`` pictures in all) as views: rows of their own, ids
    ``index.catalog_db.view_id``, with the product's fields (so filters, prices and stock apply to them as they
    are, and a refresh updates them too), and the picture as their one image. The product keeps its main one."""
    out: dict[str, dict] = {}
    for pid, rec in products.items():
        out[pid] = rec
        shown = rec["extra"].get("picture_colours") or {}
        pictures = [(image, shown.get(image)) for image in rec["images"][1:max(1, most)]]
        # A colour of the card that no picture kept shows: a view of its main picture labelled with it, so that a
        # colour filter finds the card by any of its colours (a picture's view carries the colour it shows).
        seen = {rec.get("colour")} | {colour for _, colour in pictures}
        pictures += [(rec["images"][0], colour) for colour in (rec["extra"].get("colours") or [])[:MORE_COLOURS]
                     if colour not in seen and most > 1 and rec["images"]]
        for n, (image, colour) in enumerate(pictures, 1):
            out[view_id(pid, n)] = dict(rec, id=view_id(pid, n), images=[image], colour=colour or rec.get("colour"),
                                        extra=dict(rec["extra"], view_of=pid, view=n))
    return out


def load_feed(source, cache: Path, settings) -> tuple[Catalog, list[tuple[str, str, str, str]], FeedImages]:
    """(catalog with the local images, errors as (id, url or path, code, message), the images to download)."""
    limits = FeedLimits.of(settings)
    errors: list[tuple[str, str, str, str]] = []
    fetcher = Fetcher(cache, FetchPolicy.of(settings), settings.progress)
    try:
        keep: list[str] = []
        if is_url(str(source)):
            url = str(source).strip()
            suffix = Path(url.split("?", 1)[0]).suffix.lower()
            got = fetcher.fetch(url, image=False, max_bytes=limits.bytes,
                                name=fetcher.key(url) + ".feed" + (suffix if suffix in FEED_NAMES else ".txt"))
            if got.path is None:
                raise CatalogError(f"Could not download the feed {url}: {got.message}. Check the URL, or download it "
                                   "and pass the file.")
            feed, base = got.path, None  # a feed from the web names no files on this machine
            keep.append(url)
        else:
            feed = Path(source).resolve()
            base = feed.parent
        products, issues = read_feed(feed, limits)
        if not products:  # an export gone wrong must not empty the index: every product would be removed
            raise CatalogError(f"The feed {source} holds no product (see its warnings: {'; '.join(map(str, issues[:3])) or 'none'}). "
                               "The index is left as it is; check the export.")
        catalog = Catalog(products=with_views(products, settings.feed_views), feed=feed, issues=issues)
        wanted: dict[str, list[str]] = {}
        for pid, rec in catalog.products.items():
            if not rec["images"]:  # said, not skipped in silence: the shop sees which products are missing
                errors.append((pid, "", "no_image", "no picture in the feed: add an image link to index this product"))
                continue
            main = rec["images"][0]
            scheme = url_scheme(main)
            if scheme in ("http", "https"):
                wanted.setdefault(main, []).append(pid)
            elif scheme is not None:
                errors.append((pid, main, "refused_url", f"refused: the {scheme} scheme (only http and https URLs, or "
                                                         "local paths in a local feed)"))
            elif base is None:
                errors.append((pid, main, "refused_url", "refused: a feed downloaded from a URL cannot name local files"))
            elif not _inside(base / main, base):
                errors.append((pid, main, "image_outside_catalog", f"refused: {main} lies outside the feed's folder {base}"))
            elif not (base / main).is_file():
                errors.append((pid, main, "image_missing", f"no file {main} under {base}"))
            else:
                catalog.images[pid] = base / main
        errors = [(product_of(pid), path, code, message + _view_note(pid)) for pid, path, code, message in errors]
    except BaseException:
        fetcher.close()
        raise
    return catalog, errors, FeedImages(catalog, fetcher, wanted, keep)
