"""Catalog folder -> index: plan what changed, stream the images through the embedder, commit by batch.

``build_index`` picks the runner (``local``: this process; ``ray``: a Ray cluster) from the settings;
both share ``plan.Build`` (incremental by content hash, crash-safe commits, the report).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..intake.catalog import WARNING_KEYS, Catalog, FeedLimits, load_catalog
from ..errors import IndexMismatchError
from ..index.catalog_db import product_of
from ..index.store import create_store, read_manifest_at
from ..models import Embedder, embedder_for_settings, library_versions
from ..models.precision import catalog_probe
from ..models.spec import WeightsInfo
from ..settings import SETTINGS, Settings, settings_or_default
from .feed import downloads_folder, is_feed_source, load_feed, source_key
from .plan import Build, BuildReport, write_errors, write_warnings

# The settings that decide which vectors an index holds; an existing index keeps its own unless one is named.
EMBEDDER_IDENTITY = ("backbone", "weights", "pooling", "input_size")
CALIBRATE_MAX_ROWS = 1_000_000


def build_index(catalog_dir, out, products=None, *, settings: Settings | None = None, embedder: Embedder | None = None,
                actors: int | None = None, replace: bool = False, **overrides) -> BuildReport:
    """Index (or update) the catalog in ``catalog_dir`` into the index folder ``out``.

    ``catalog_dir`` may also be a product feed: a file, or an http(s) URL of one (Merchant Center TSV/CSV/XML,
    Shopify or WooCommerce CSV, or any feed ``read_feed`` reads), whose image URLs are downloaded into the
    index's cache (``build.feed``); running it again refreshes prices and stock with conditional requests only.

    ``overrides`` are settings by name (backbone, weights, pooling, device, runtime, precision, batch_size,
    workers, progress, runner, ray_address, store, ...) over ``settings`` (default: ``Settings.load()``).
    An existing index is updated with the embedder that built it (its manifest) unless a backbone,
    weights or pooling is named; naming a different one is an IndexMismatchError. ``embedder`` uses
    that one as it is. ``actors``: embedding actors of the Ray runner (default: one per node or GPU).
    An index follows one catalog folder: indexing another folder into it (which would remove every
    product that folder lacks) needs ``replace=True``.
    """
    started = time.perf_counter()
    settings = settings_or_default(settings).replace(**overrides)
    from_feed = products is None and is_feed_source(catalog_dir)
    # Absolute paths in the index: what search --json and the server report works from any folder.
    source = source_key(catalog_dir) if from_feed else Path(catalog_dir).resolve()
    check_same_catalog(out, source, replace, settings)
    catalog = None if from_feed else load_catalog(source, products, FeedLimits.of(settings))
    actor_settings = settings
    if embedder is None:
        named = {name: getattr(settings, name) for name in EMBEDDER_IDENTITY
                 if overrides.get(name) is not None or getattr(settings, name) != SETTINGS[name].default}
        # The Ray driver only needs the fingerprint; the actors build the real embedder on their device.
        local = {"device": "cpu", "runtime": "torch"} if settings.runner == "ray" else {}
        embedder = embedder_for(out, settings, named, **local)
    else:
        given = {k: v for k, v in overrides.items() if k in ("device", "runtime", "precision", "batch_size")}
        actor_settings = embedder.settings.replace(**given)
    fetch_errors: list = []
    downloads = None
    if from_feed:  # the images are downloaded into the index's own folder: it is created first
        store = create_store(out, embedder.fingerprint(), library_versions(), settings.store or None, settings=settings)
        try:
            catalog, fetch_errors, downloads = load_feed(source, downloads_folder(store.path, settings), settings)
        except BaseException:
            store.close()
            raise
    # precision auto: measured on this catalog's own images before the first batch (cached per model and CPU).
    probe = catalog if downloads is None or settings.runner == "ray" else _feed_probe(catalog, downloads)
    precision = embedder.settle_precision(*catalog_probe(probe)) if settings.runner != "ray" else None
    if not from_feed:
        store = create_store(out, embedder.fingerprint(), library_versions(), settings.store or None, settings=settings)
    report = BuildReport(without_image=catalog.without_image, without_product=catalog.without_product, warnings=catalog.warnings,
                         errors=[tuple(problem) for problem in catalog.problems] + fetch_errors)  # folders, FIFOs, broken links named *.jpg
    try:
        build = Build(catalog, store, report, settings.progress, embedder.batch_size)
        build.downloads = downloads
        build.remove_gone()
        if settings.runner == "ray":
            from .ray import run_ray

            build.settle_downloads()  # the Ray dataset is made from every image's path
            runtime_name = run_ray(build, embedder, settings=actor_settings, actors=actors)
        else:
            from .local import run_local

            runtime_name = run_local(build, embedder, settings.workers, settings.max_pixels)
        if downloads is not None:  # known once the downloads are done; a view without its picture is an error row
            report.without_image = [pid for pid in catalog.without_image if product_of(pid) == pid]
        report.skipped = len(report.errors)
        report.seconds = time.perf_counter() - started
        store.maintain()  # the ANN file, sealed Milvus segments
        if isinstance(store.path, Path):  # a database index has no folder: its report still counts them
            report.errors_csv = write_errors(store.path, report.errors)
            report.warnings_csv = write_warnings(store.path, catalog.warning_rows(), WARNING_KEYS)
        store.set_manifest(catalog={"folder": None if from_feed else str(source),
                                    "feed": source if from_feed else str(Path(catalog.feed).resolve()) if catalog.feed else None},
                           last_build=dict(report.to_dict(), runner=settings.runner), runtime=runtime_name, precision=precision,
                           spaces=dict(store.manifest.get("spaces") or {}, raw=_calibrate_raw(store, settings)))
    finally:
        if downloads is not None:
            downloads.close()
        store.close()
    return report


def _feed_probe(catalog: Catalog, downloads) -> Catalog:
    """The feed's catalog with the probe's images downloaded first (the rest stream in during the build)."""
    # catalog_probe picks by id: run it on ids standing for their own images to learn which ids to fetch now.
    everyone = Catalog(catalog.products, {pid: pid for pid in [*catalog.images, *downloads.pids]})
    probe, _, calibration = catalog_probe(everyone)
    wanted = {*probe, *calibration}
    return Catalog(catalog.products, {**downloads.fetch_first(wanted - set(catalog.images)), **catalog.images})


def _calibrate_raw(store, settings: Settings) -> dict:
    """The raw space's thresholds (build.calibrate), measured on this catalog; bounded work on any size."""
    from .calibrate import calibrate_raw

    cols = store.columns
    if cols.n_rows > CALIBRATE_MAX_ROWS:  # reading every vector back from a large Milvus store: the defaults stand
        return (store.manifest.get("spaces") or {}).get("raw") or {}
    return calibrate_raw(store.all_vectors(), cols.live, cols.codes["type"].astype("int64"), settings)


def check_same_catalog(out, catalog_dir, replace: bool, settings: Settings | None = None) -> None:
    """``catalog_dir``: the folder, or the feed (``feed.source_key``), that is to be indexed into ``out``."""
    manifest = read_manifest_at(out, settings)
    built = (manifest or {}).get("catalog") or {}
    built_from = built.get("folder") or built.get("feed")
    if built_from and str(built_from) != str(catalog_dir) and not replace:
        raise IndexMismatchError(
            f"Index {out} follows the catalog {built_from}, not {catalog_dir}: indexing {catalog_dir} into it would "
            f"remove every product that catalog lacks ({manifest['counts'].get('products', 0):,} are indexed now). "
            "Pass --replace (replace=True) to make it that catalog's index, or choose a new --out.")


def embedder_for(out, settings: Settings, named: dict, **options) -> Embedder:
    """The embedder to index into ``out`` with: the one that built the index there (its manifest), with
    what ``named`` changes; the settings' one for a new index (EfficientNet-Lite0 with a warning when the
    default's weights cannot be downloaded and nothing was named: ``models.embedder_for_settings``)."""
    manifest = read_manifest_at(out, settings)
    if manifest is None:
        return embedder_for_settings(settings, named, **options)
    built = manifest["embedder"]
    backbone = named.get("backbone", built["backbone"])
    weights = named.get("weights")
    if weights is None:
        weights = WeightsInfo(**built["weights"]).argument if backbone == built["backbone"] else settings.weights
    size = named.get("input_size", (built.get("preprocess") or {}).get("size"))
    return Embedder(backbone, weights, named.get("pooling", built["pooling"]), input_size=size, settings=settings, **options)


__all__ = ["Build", "BuildReport", "build_index", "embedder_for"]
