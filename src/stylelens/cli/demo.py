"""demo: the main job on the embedded default — index a catalog, show a sample search, serve the page."""

from __future__ import annotations

import sys
from pathlib import Path

from .options import add_setting_flags, settings_from
from .output import RESUMABLE, print_identified, print_results

# Where the project's sample data lies beside a checkout (the README runs the demo from the repo root).
DEFAULT_CATALOG = Path("..") / "shared" / "data" / "fashion-small"


def register(sub) -> None:
    p = sub.add_parser("demo", help="Index a catalog (default: ../shared/data/fashion-small), run a sample search, serve the page.")
    p.add_argument("catalog", nargs="?", default=None, help="Catalog folder (images + optional feed), or a shop's product "
                   "feed: a file or an http(s) URL (Merchant Center, Shopify, WooCommerce; see docs/feeds.md).")
    p.add_argument("--out", default="demo-index", help="Index folder (default: demo-index).")
    add_setting_flags(p, "backbone", "weights")
    p.add_argument("--no-serve", action="store_true", help="Stop after the sample search.")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    add_setting_flags(p, "allow_private_hosts")
    p.set_defaults(func=cmd_demo, interrupted=RESUMABLE)


def choose_embedder(args, out: Path):
    """The index's own embedder when it exists; else the settings' (ResNet-50 with ImageNet weights, or
    EfficientNet-Lite0 with one warning line where they cannot be downloaded: models.embedder_for_settings)."""
    from ..build import embedder_for

    named = {name: getattr(args, name) for name in ("backbone", "weights") if getattr(args, name) is not None}
    return embedder_for(out, settings_from(args), named)


def cmd_demo(args) -> int:
    from ..build.feed import is_feed_source

    catalog = args.catalog if args.catalog and is_feed_source(args.catalog) else Path(args.catalog or DEFAULT_CATALOG)
    if isinstance(catalog, Path) and not catalog.is_dir():
        from ..errors import CatalogError

        raise CatalogError(f"No catalog folder or feed at {catalog}. Pass one: stylelens demo PATH/TO/CATALOG, "
                           "or a product feed's file or URL")
    out = Path(args.out)
    if args.no_serve:
        embedder = choose_embedder(args, out)
        print(f"indexing {catalog} with {embedder.spec.name} ({embedder.runtime_name}) into {out}", flush=True)
        _build_then_sample(catalog, out, embedder, settings_from(args))
        return 0
    return _serve_while_indexing(args, catalog, out)


def _build_then_sample(catalog, out: Path, embedder, settings) -> None:
    from ..build import build_index
    from ..query import open_index
    from .render import results_grid

    report = build_index(catalog, out, settings=settings, embedder=embedder)
    print(report.summary(), flush=True)
    index = open_index(out, embedder=embedder)
    first = next(iter(index.store.columns.row_of))
    query = index.image_path(first)
    result = index.search(query, k=5)
    print(f"\nsample search with {query}:")
    print_identified(result.identified)
    print_results(result.products)
    grid = results_grid(query, result.products, out / "sample-search.png", title=result.identified.type or "query")
    print(f"wrote {grid}", flush=True)
    index.close()


def _serve_while_indexing(args, catalog: Path, out: Path) -> int:
    """The page first: it answers from what is indexed so far while the rest of the catalog streams in."""
    import threading
    import time

    import uvicorn

    from ..index.manifest import read_manifest
    from ..service import create_app
    from .serve import check_port_free

    settings = settings_from(args)
    host, port = settings.host, settings.port
    check_port_free(host, port)
    total = _products_expected(catalog, settings)
    what = f"{total:,} products" if total is not None else "the feed's products"
    embedder = choose_embedder(args, out)
    print(f"indexing {catalog} ({what}) with {embedder.spec.name} ({embedder.runtime_name}) into {out}; "
          "the page opens after the first batch", flush=True)
    failure: list[BaseException] = []

    def build() -> None:
        try:
            _build_then_sample(catalog, out, embedder, settings)
        except Exception as exc:  # shown as one line; the page keeps serving what was indexed
            failure.append(exc)
            print(f"error: indexing stopped: {getattr(exc, 'message', exc)}", file=sys.stderr, flush=True)

    worker = threading.Thread(target=build, name="stylelens-demo-index", daemon=True)
    worker.start()
    # The server opens the index once its first batch is committed (a new folder has no manifest before).
    while worker.is_alive() and not (out.is_dir() and read_manifest(out)):
        time.sleep(0.5)
    if failure and read_manifest(out) is None:
        raise failure[0]
    app = create_app(out, settings)
    app.state.expected_products = total
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    announce = (f"stylelens: open http://{host}:{port}/  — the page searches what is indexed so far while the "
                f"{what} are indexed (Ctrl-C stops; indexed work is kept)")
    threading.Thread(target=_announce_when_started, args=(announce, server), name="stylelens-demo-url",
                     daemon=True).start()
    server.run()
    return 0


def _announce_when_started(line: str, server) -> None:
    """Print the URL once the server is listening, its warm-up done (uvicorn's ``started``): a URL printed
    earlier is a dead link for the first seconds. Read from the server itself, so no request reaches the page."""
    import time

    while not server.should_exit:
        if server.started:
            print(line, flush=True)
            return
        time.sleep(0.05)


def _products_expected(catalog, settings) -> int | None:
    """How many products the page waits for while indexing: a folder's images, a local feed's products; None for
    a feed URL (known once it is downloaded, by the build)."""
    from ..build.feed import is_feed_source
    from ..intake.catalog import FeedLimits, load_catalog, read_feed
    from ..intake.fetch import is_url

    if not is_feed_source(catalog):
        return len(load_catalog(catalog).images)
    if is_url(str(catalog)):
        return None
    products, _ = read_feed(Path(catalog), FeedLimits.of(settings))
    return len(products)
