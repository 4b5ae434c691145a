"""A product feed (a file, or an http(s) URL of one) -> a Catalog whose images are files: downloaded into the
index's cache (``DOWNLOADS``), or local paths next to a local feed.

The build then runs as for a folder: unchanged image bytes (a 304 keeps the cached file) are not re-embedded,
prices and stock are updated, and products gone from the feed leave the index. Every image that cannot be had
is a row of errors.csv: (product id, URL, code, reason).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import CatalogError
from ..intake.catalog import Catalog, FeedLimits, _inside, read_feed
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


def load_feed(source, cache: Path, settings) -> tuple[Catalog, list[tuple[str, str, str, str]]]:
    """(catalog with each product's main image as a local file, errors as (id, url or path, code, message))."""
    limits = FeedLimits.of(settings)
    policy = FetchPolicy.of(settings)
    errors: list[tuple[str, str, str, str]] = []
    with Fetcher(cache, policy, settings.progress) as fetcher:
        keep: list[str] = []
        if is_url(str(source)):
            url = str(source).strip()
            suffix = Path(url.split("?", 1)[0]).suffix.lower()
            got = fetcher.fetch(url, image=False, max_bytes=limits.bytes,
                                name="feed" + (suffix if suffix in FEED_NAMES else ".txt"))
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
        catalog = Catalog(products=products, feed=feed, issues=issues)
        wanted: dict[str, list[str]] = {}
        for pid, rec in products.items():
            if not rec["images"]:
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
        results = fetcher.fetch_all(list(wanted))
        for url, pids in wanted.items():
            got = results[url]
            for pid in pids:
                if got.path is not None:  # fresh, or the last good copy when this run could not refresh it
                    catalog.images[pid] = got.path
                if got.code:
                    errors.append((pid, url, got.code, got.message + ("; the copy downloaded before is kept"
                                                                        if got.path is not None else "")))
        fetcher.prune(keep + list(wanted))
    return catalog, errors
