"""index, search, info, export, remove, settings."""

from __future__ import annotations

import sys

from ..query.options import FILTER_FIELDS
from ..settings import SETTINGS, Settings
from .options import add_search_flags, add_setting_flags, settings_from
from .output import RESUMABLE, print_json, print_search_result

EMBEDDER_SETTINGS = ("backbone", "weights", "pooling", "device", "runtime", "precision", "batch_size")


def add_embedder_options(p) -> None:
    add_setting_flags(p, *EMBEDDER_SETTINGS)


def add_filter_options(p) -> None:
    """The filter flags (--gender, --type, --colour, --min-price...): the filter rows of query.options."""
    add_search_flags(p, *FILTER_FIELDS)


def add_scale_options(p) -> None:
    add_setting_flags(p, "runner", "ray_address", "store")
    p.add_argument("--actors", type=int, default=None,
                   help="Embedding actors with --runner ray. Default: one per GPU with --device cuda, else one per node.")


def filters_from(args) -> dict:
    return {name: getattr(args, name) for name in FILTER_FIELDS}


def register(sub) -> None:
    p = sub.add_parser("index", help="Build or update an index from a catalog folder or a product feed.")
    p.add_argument("catalog", help="Folder of product images (searched recursively), or a product feed: a file or an "
                   "http(s) URL (Merchant Center TSV/CSV/XML, Shopify or WooCommerce CSV) whose image URLs are downloaded.")
    p.add_argument("--products", help="Product feed: CSV, JSON lines or Parquet. Default: the one feed file at the top of the catalog folder, if any.")
    p.add_argument("--out", required=True, help="Index folder to create or update.")
    add_setting_flags(p, "workers", "input_size", "allow_private_hosts", "fetch_concurrency", "fetch_timeout_s",
                      "feed_max_rows", "feed_max_columns", "feed_max_bytes")
    p.add_argument("--replace", action="store_true",
                   help="Index a different catalog folder into an existing index (its products not in that folder are removed).")
    p.add_argument("--no-progress", action="store_true", help="No progress bar.")
    add_embedder_options(p)
    add_scale_options(p)
    p.set_defaults(func=cmd_index, interrupted=RESUMABLE)

    p = sub.add_parser("search", help="Recommend products for a photo.")
    p.add_argument("index", help="Index folder.")
    p.add_argument("photo", help="Image file of a garment or accessory.")
    p.add_argument("-k", type=int, default=None, help=SETTINGS["k"].help)
    add_filter_options(p)
    p.add_argument("--json", action="store_true", help="Machine-readable output.")
    p.add_argument("--grid", metavar="PNG", help="Also write a picture of the query beside its results.")
    add_setting_flags(p, "search", "max_items", "tune")
    p.add_argument("--no-localise", action="store_true", help="Search the whole photo as it is (no item finding).")
    add_search_flags(p, "box", "user", "diversity", "collapse")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("info", help="Show what an index holds and how it was built.")
    p.add_argument("index", help="Index folder.")
    p.add_argument("--json", action="store_true", help="Print the manifest and counts as JSON.")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("export", help="Write the extracted features (vectors + ids + manifest).")
    p.add_argument("index", help="Index folder.")
    p.add_argument("--format", choices=("npy", "parquet"), default="npy",
                   help="npy: OUT/vectors.npy + ids.txt + manifest.json (default); parquet: one file with id and vector columns.")
    p.add_argument("--out", required=True, help="Folder (npy) or .parquet file.")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("remove", help="Delete products from an index.")
    p.add_argument("index", help="Index folder.")
    p.add_argument("ids", nargs="+", metavar="ID", help="Product ids to delete (exit code 1 when some are not in the index).")
    p.set_defaults(func=cmd_remove)

    p = sub.add_parser("settings", help="List every setting: its environment variable, value in effect and default.")
    p.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    p.set_defaults(func=cmd_settings)


def cmd_index(args) -> int:
    from ..build import build_index

    settings = settings_from(args).replace(progress=False if args.no_progress else None)
    # The embedder flags given are named as such: `--backbone resnet50` on an index of another backbone is a
    # mismatch to report, not the default to drop in favour of the index's own.
    named = {name: getattr(args, name) for name in ("backbone", "weights", "pooling") if getattr(args, name) is not None}
    report = build_index(args.catalog, args.out, args.products, settings=settings, actors=args.actors, replace=args.replace,
                         **named)
    for warning in report.warnings[:10]:
        print(f"warning: {warning}", file=sys.stderr)
    if len(report.warnings) > 10:
        print(f"warning: ... and {len(report.warnings) - 10} more, all in {report.warnings_csv}", file=sys.stderr)
    print(report.summary())
    return 0


def cmd_search(args) -> int:
    from ..query import open_index

    index = open_index(args.index, settings_from(args).replace(localise=False if args.no_localise else None))
    result = index.search(args.photo, args.k, box=args.box, user=args.user, diversity=args.diversity,
                          collapse=args.collapse or None, **filters_from(args))
    if args.grid:
        from .render import results_grid

        boxes = [item["box"] for item in result.extra.get("items", [])]
        results_grid(args.photo, result.products, args.grid, title=_ident_title(result.identified), boxes=boxes)
    print_search_result(result, args.json)
    if args.grid and not args.json:
        print(f"wrote {args.grid}")
    return 0


def _ident_title(ident) -> str:
    return f"{ident.type} {ident.type_confidence:.0%}" if ident and ident.type else "query"


def cmd_info(args) -> int:
    from ..index import open_store

    from ..tune.train import head_status

    store = open_store(args.index)
    try:
        info = dict(store.manifest)
        info["counts"] = store.counts()
        if info.get("head"):
            info["head"] = head_status(store)
    finally:
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
        print(f"catalog    {info['catalog'].get('folder') or '(a feed)'}  feed: {info['catalog'].get('feed')}")
    print(f"vectors    {(info.get('vectors') or {}).get('location', 'in the index folder')}")
    if info.get("precision"):
        from ..models.precision import describe

        print(f"precision  {describe(info['precision'])}")
    if info.get("last_build"):
        lb = info["last_build"]
        print(f"last build indexed {lb['indexed']:,}, skipped {lb['skipped']:,}, removed {lb['removed']:,}, {lb['images_per_s']} img/s")
    head = info.get("head")
    if head:
        trained = head.get("trained_on") or {}
        state = "STALE: labels changed since; run stylelens tune again" if head.get("stale") else "up to date"
        print(f"tuned head {head['dim']}-d, trained {head['created']} on {trained.get('products', 0):,} products + "
              f"{trained.get('views', 0):,} shopper views ({', '.join(trained.get('labels') or {})}); {state}")
        if "adopted" in head:  # tuned since heads are measured (older ones serve every aspect)
            from ..query.space import adopted_aspects

            serves = adopted_aspects(info)  # what open_spaces serves, read the one way
            said = {"type": "type (its space searched)", "colour": "colour (its colour vote)",
                    "vote": "vote (the type probe joins the type vote)"}
            print(f"           serves {', '.join(said.get(a, a) for a in serves) if serves else 'nothing (measured no better than the raw space)'}; "
                  f"{trained.get('held_out', 0):,} products held out to measure it")
    else:
        print("tuned head none (stylelens tune INDEX trains one on the catalog's labels)")
    for name, cal in (info.get("spaces") or {}).items():
        print(f"space {name:5s} same picture >= {cal['same_picture']}, near-duplicate >= {cal['near_duplicate']}, "
              f"vote temperature {cal['vote_temperature']}")
    return 0


def cmd_export(args) -> int:
    from ..index.export import export_features

    for path in export_features(args.index, args.out, args.format):
        print(f"wrote {path}")
    return 0


def cmd_settings(args) -> int:
    values = Settings.load().to_dict()
    rows = [{"name": s.name, "env": s.env, "value": values[s.name], "default": s.default, "help": s.help}
            for s in SETTINGS.values()]
    for row in rows:
        if row["name"].endswith(("token", "secret")) and row["value"]:
            row["value"] = "(set)"  # a credential is never printed
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        changed = "" if row["value"] == row["default"] else f"   (default {row['default']!r})"
        print(f"{row['env']:36s} {row['value']!r}{changed}\n    {row['help']}")
    return 0


def cmd_remove(args) -> int:
    from ..index import remove_products

    removed, missing = remove_products(args.index, args.ids)
    print(f"removed {removed}")
    if missing:
        print(f"not in the index: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0
