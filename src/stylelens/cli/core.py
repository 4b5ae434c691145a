"""index, search, info, export, remove, settings."""

from __future__ import annotations

import sys

from .. import config
from ..embedder import BACKBONES, POOLINGS
from .output import print_json, print_search_result


def add_embedder_options(p) -> None:
    p.add_argument("--backbone", choices=sorted(BACKBONES), default=None, help=config.SETTINGS["backbone"].help)
    p.add_argument("--weights", default=None, metavar="imagenet|FILE|random", help=config.SETTINGS["weights"].help)
    p.add_argument("--pooling", choices=POOLINGS, default=None, help=config.SETTINGS["pooling"].help)
    p.add_argument("--device", default=None, help=config.SETTINGS["device"].help)
    p.add_argument("--runtime", default=None, help=config.SETTINGS["runtime"].help)
    p.add_argument("--batch-size", type=int, default=None, help=config.SETTINGS["batch_size"].help)


def add_filter_options(p) -> None:
    p.add_argument("--gender", help="Only this gender (comma-separated for several).")
    p.add_argument("--type", help="Only this product type, e.g. Tshirts (comma-separated for several).")
    p.add_argument("--colour", "--color", dest="colour", help="Only this colour (comma-separated for several).")
    p.add_argument("--min-price", type=float, help="Lowest price.")
    p.add_argument("--max-price", type=float, help="Highest price.")
    p.add_argument("--include-out-of-stock", action="store_true", help="Also show products that are out of stock.")


def add_scale_options(p) -> None:
    p.add_argument("--runner", choices=("local", "ray"), default=None,
                   help="Where embedding runs: local (this process, default) or ray (a Ray cluster; pip install 'stylelens[scale]').")
    p.add_argument("--ray-address", default=None, metavar="auto|ray://HOST:10001",
                   help="Ray cluster to use with --runner ray: 'auto' finds the one started by 'ray start'. Default: start Ray on this machine.")
    p.add_argument("--actors", type=int, default=None,
                   help="Embedding actors with --runner ray. Default: one per GPU with --device cuda, else one per node.")
    p.add_argument("--store", default=None, metavar="LOCATION",
                   help="Where the vectors live: local (the index folder, default), milvus-lite:///path/to/file.db, or "
                        "milvus://HOST:PORT/COLLECTION (credentials: STYLELENS_MILVUS_TOKEN). An existing index keeps its own.")


def filters_from(args) -> dict:
    return {k: getattr(args, k) for k in ("gender", "type", "colour", "min_price", "max_price", "include_out_of_stock")}


def register(sub) -> None:
    p = sub.add_parser("index", help="Build or update an index from a catalog folder.")
    p.add_argument("catalog", help="Folder of product images (searched recursively).")
    p.add_argument("--products", help="Product feed: CSV, JSON lines or Parquet. Default: the one feed file at the top of the catalog folder, if any.")
    p.add_argument("--out", required=True, help="Index folder to create or update.")
    p.add_argument("--workers", type=int, default=None, help=config.SETTINGS["workers"].help)
    p.add_argument("--no-progress", action="store_true", help="No progress bar.")
    add_embedder_options(p)
    add_scale_options(p)
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="Recommend products for a photo.")
    p.add_argument("index", help="Index folder.")
    p.add_argument("photo", help="Image file of a garment or accessory.")
    p.add_argument("-k", type=int, default=None, help=config.SETTINGS["k"].help)
    add_filter_options(p)
    p.add_argument("--json", action="store_true", help="Machine-readable output.")
    p.add_argument("--grid", metavar="PNG", help="Also write a picture of the query beside its results.")
    p.add_argument("--search", default=None, help=config.SETTINGS["search"].help)
    p.add_argument("--user", help="Shopper id: personalise with their likes and dislikes (stylelens feedback).")
    p.add_argument("--diversity", type=float, default=None, metavar="0..1", help="Trade similarity for variety (MMR); 0 = plain ranking.")
    p.add_argument("--collapse", action="store_true", help="Show near-duplicate products once, with how many were folded in.")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("info", help="Show what an index holds and how it was built.")
    p.add_argument("index")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("export", help="Write the extracted features (vectors + ids + manifest).")
    p.add_argument("index")
    p.add_argument("--format", choices=("npy", "parquet"), default="npy")
    p.add_argument("--out", required=True, help="Folder (npy) or .parquet file.")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("remove", help="Delete products from an index.")
    p.add_argument("index")
    p.add_argument("ids", nargs="+", metavar="ID")
    p.set_defaults(func=cmd_remove)

    p = sub.add_parser("settings", help="List every setting: its environment variable, value in effect and default.")
    p.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    p.set_defaults(func=cmd_settings)


def cmd_index(args) -> int:
    from ..pipeline import build_index

    report = build_index(args.catalog, args.out, args.products, backbone=args.backbone, weights=args.weights,
                         pooling=args.pooling, device=args.device, runtime=args.runtime, batch_size=args.batch_size,
                         workers=args.workers, progress=False if args.no_progress else None,
                         runner=args.runner, ray_address=args.ray_address, actors=args.actors, store=args.store)
    for warning in report.warnings[:10]:
        print(f"warning: {warning}", file=sys.stderr)
    if len(report.warnings) > 10:
        print(f"warning: ... and {len(report.warnings) - 10} more", file=sys.stderr)
    print(report.summary())
    return 0


def cmd_search(args) -> int:
    from ..recommend import open_index

    index = open_index(args.index, search=args.search)
    result = index.search(args.photo, args.k, user=args.user, diversity=args.diversity, collapse=args.collapse or None,
                          **filters_from(args))
    if args.grid:
        from ..render import results_grid

        results_grid(args.photo, result.products, args.grid, title=_ident_title(result.identified))
    print_search_result(result, args.json)
    if args.grid and not args.json:
        print(f"wrote {args.grid}")
    return 0


def _ident_title(ident) -> str:
    return f"{ident.type} {ident.type_confidence:.0%}" if ident and ident.type else "query"


def cmd_info(args) -> int:
    from ..store import IndexStore

    store = IndexStore.open(args.index)
    info = dict(store.manifest)
    info["counts"] = {"products": len(store), "vector_rows": store.n_rows, "dead_rows": store.dead_rows()}
    store.close()
    if args.json:
        print_json(info)
        return 0
    emb = info["embedder"]
    print(f"index      {args.index}")
    print(f"products   {info['counts']['products']:,}")
    print(f"backbone   {emb['backbone']} ({emb['weights']['source']}), {emb['pooling']} pooling, {emb['dim']}-d, {emb['normalized']}")
    print(f"built      {info['created']}, updated {info['updated']}")
    if info.get("catalog"):
        print(f"catalog    {info['catalog'].get('folder')}  feed: {info['catalog'].get('feed')}")
    print(f"vectors    {(info.get('vectors') or {}).get('location', 'in the index folder')}")
    if info.get("last_build"):
        lb = info["last_build"]
        print(f"last build indexed {lb['indexed']:,}, skipped {lb['skipped']:,}, removed {lb['removed']:,}, {lb['images_per_s']} img/s")
    return 0


def cmd_export(args) -> int:
    from ..export import export_features

    for path in export_features(args.index, args.out, args.format):
        print(f"wrote {path}")
    return 0


def cmd_settings(args) -> int:
    rows = [{"name": s.name, "env": s.env, "value": config.get(s.name), "default": s.default, "help": s.help}
            for s in config.SETTINGS.values()]
    for row in rows:
        if row["name"].endswith("token") and row["value"]:
            row["value"] = "(set)"  # a credential is never printed
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        changed = "" if row["value"] == row["default"] else f"   (default {row['default']!r})"
        print(f"{row['env']:36s} {row['value']!r}{changed}\n    {row['help']}")
    return 0


def cmd_remove(args) -> int:
    from ..store import remove_products

    removed, missing = remove_products(args.index, args.ids)
    print(f"removed {removed}")
    if missing:
        print(f"not in the index: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0
