"""eval, recommend, feedback, look (and tune): recommendation quality."""

from __future__ import annotations

import argparse
from pathlib import Path

from .core import add_filter_options, filters_from
from .options import add_search_flags, add_setting_flags, settings_from
from .output import print_json, print_results, print_search_result, print_table


def register(sub) -> None:
    p = sub.add_parser("eval", help="Measure recommendation quality on labelled data (precision, mAP, identify accuracy, latency).")
    p.add_argument("index", help="Index folder.")
    p.add_argument("--queries", metavar="DIR", help="Folder of held-out query photos (needs --labels).")
    p.add_argument("--labels", metavar="FEED", help="Labels of the query photos: a product feed (CSV, JSON lines, Parquet).")
    p.add_argument("--leave-one-out", action="store_true", help="Use every catalog product as a query against the others (the default).")
    p.add_argument("--k", default="5,10", help="Cut-offs for precision@k and mAP@k, comma-separated (default 5,10).")
    p.add_argument("--sample", type=int, help="Leave-one-out on this many products only (seeded), for a quick look.")
    p.add_argument("--out", default="eval-report", help="Folder for eval.json and eval.png (default ./eval-report).")
    p.add_argument("--search", default=None, help="Search method to evaluate (auto, exact, ann...).")
    p.add_argument("--json", action="store_true", help="Print the report as JSON.")
    p.add_argument("--tune", dest="tune", action=argparse.BooleanOptionalAction, default=None,
                   help="With a tuned head: --tune evaluates the spaces it serves only, --no-tune the raw space only "
                        "(default: both, side by side).")
    p.add_argument("--include-trained", action="store_true",
                   help="With a tuned head: also query the products it trained on (left out by default; counted in the report).")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("tune", help="Train a head on the frozen vectors from the catalog's own labels (type, colour...).")
    p.add_argument("index", help="Index folder.")
    p.add_argument("--labels", metavar="FEED", help="Labels to learn from (a feed with the index's product ids); default: the catalog's.")
    p.add_argument("--label", action="append", default=[], metavar="COLUMN",
                   help="Another label column of the feed to learn (repeat for several), besides type, gender, colour and category.")
    add_setting_flags(p, "tune_views", "tune_dim", "workers")
    p.add_argument("--seed", type=int, default=0, help="Seed of the training run, its held-out products and shopper views (default 0).")
    p.add_argument("--real-data", metavar="DIR", default="auto",
                   help="Folder with real-items/ and street-ccp/ to measure the head on (default: ../shared/data where it is found).")
    p.add_argument("--photos", type=int, default=None, metavar="N",
                   help="Real photos measured per set, raw against tuned (default 300).")
    p.add_argument("--no-progress", action="store_true", help="No progress bars.")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("recommend", help="Recommendations for a shopper: 'For you', or a photo search blended with their taste.")
    p.add_argument("index", help="Index folder.")
    p.add_argument("photo", nargs="?", help="Optional photo to search with; without it, the shopper's 'For you' feed.")
    p.add_argument("--user", required=True, help="Shopper id (opaque, chosen by the shop).")
    p.add_argument("-k", type=int, default=None, help="Number of recommendations.")
    add_filter_options(p)
    _add_diversity_options(p)
    p.add_argument("--grid", metavar="PNG", help="Also write a picture of the results.")
    p.add_argument("--json", action="store_true", help="Machine-readable output.")
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("feedback", help="Record a shopper's like, dislike or view, or forget the shopper.")
    p.add_argument("index", help="Index folder.")
    p.add_argument("--user", required=True, help="Shopper id.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--like", metavar="ID", help="Product the shopper likes.")
    what.add_argument("--dislike", metavar="ID", help="Product the shopper dislikes.")
    what.add_argument("--view", metavar="ID", help="Product the shopper looked at.")
    what.add_argument("--forget", action="store_true", help="Delete the shopper and all their events.")
    p.add_argument("--json", action="store_true", help="Machine-readable output.")
    p.set_defaults(func=cmd_feedback)

    p = sub.add_parser("look", help="Complete the look: items from complementary categories for a product or photo.")
    p.add_argument("index", help="Index folder.")
    p.add_argument("source", metavar="ID|PHOTO", help="A product id of the index, or a photo file.")
    p.add_argument("-k", type=int, default=3, help="Suggestions per category (default 3).")
    p.add_argument("--grid", metavar="PNG", help="Also write a picture: the source, then the suggestions.")
    p.add_argument("--json", action="store_true", help="Machine-readable output.")
    p.set_defaults(func=cmd_look)


def _add_diversity_options(p) -> None:
    add_search_flags(p, "diversity", "collapse")


def _open(args, search=None, tune=None):
    from ..query import open_index

    return open_index(args.index, search=search, tune=tune)


def cmd_tune(args) -> int:
    from ..quality.tuning import PHOTOS, adopt, table
    from ..tune.train import tune_index

    settings = settings_from(args).replace(progress=False if args.no_progress else None)
    report = tune_index(args.index, labels=args.labels, extra_labels=args.label, settings=settings, seed=args.seed)
    s = report.seconds
    print(f"tuned {args.index}: a head trained on {report.products:,} products + {report.views:,} shopper views "
          f"({', '.join(f'{c} {n}' for c, n in report.labels.items())} values) in {s['total']} s "
          f"(colours {s['colours']} s, views {s['views']} s, training {s['train']} s, type probe {s['type_probe']} s, "
          f"calibration {s['calibrate']} s); "
          f"{report.held_out:,} products held out to measure it")
    if report.skipped_images:
        print(f"warning: {report.skipped_images:,} product images could not be read; those products learnt without their colour")
    real = None if args.real_data in ("", "none") else args.real_data
    measured = adopt(args.index, real_root=real, photos=args.photos or PHOTOS, settings=settings)
    where = "held-out catalog products and real photos (measure parts)" if measured["real_data"] else \
        "held-out catalog products (no real photos found: --real-data DIR)"
    rows = table(measured)
    probe = any("raw + type probe" in r for r in rows)
    print(f"raw space against tuned space{' and the type probe' if probe else ''}, as served, on {where}:")
    print_table(rows, [("kind", "kind"), ("aspect", "aspect"), ("queries", "queries"), ("raw", "raw"), ("tuned", "tuned"),
                       ("change", "change"), *([("raw + type probe", "raw + type probe"), ("probe change", "probe change")]
                                               if probe else [])])
    adopted = [a for a, on in measured["adopted"].items() if on and a != "vote"]
    if adopted:
        print(f"the tuned space serves: {', '.join(adopted)} (the raw space the rest); recorded in the manifest. "
              f"Compare with stylelens eval {args.index}")
    else:
        print("the tuned space measured no better: the raw space serves every aspect (recorded in the manifest)")
    if probe:
        print("the type probe joins the neighbours' type vote" if measured["adopted"].get("vote") else
              "the type probe measured no better: the neighbours' vote alone names types (recorded in the manifest)")
    return 0


def cmd_eval(args) -> int:
    from ..errors import InvalidArgumentError
    from ..quality.evaluate import evaluate, parse_ks, write_report

    if bool(args.queries) != bool(args.labels):
        raise InvalidArgumentError("--queries and --labels go together: a folder of photos and the feed with their labels.")
    if args.queries and args.leave_one_out:
        raise InvalidArgumentError("Choose either --queries DIR --labels FEED or --leave-one-out, not both.")
    ks = parse_ks(args.k)
    index = _open(args, search=args.search, tune=args.tune)
    report = evaluate(index, args.queries, args.labels, ks=ks, sample=args.sample, include_trained=args.include_trained)
    if (report["space"] == "tuned" or report.get("colour_vote_space") or report.get("type_probe")) and args.tune is None:
        # the raw space beside it, same queries
        raw = evaluate(_open(args, search=args.search, tune=False), args.queries, args.labels, ks=ks, sample=args.sample,
                       latency_samples=0, duplicates=False, include_trained=args.include_trained)
        report["raw"] = {key: raw[key] for key in ("type", "gender", "colour", "per_variant", "space") if key in raw}
    json_path, png_path = write_report(report, args.out)
    if args.json:
        print_json(report)
        return 0
    print(f"{report['mode']} on {report['index']}: {report['queries']:,} queries, {report['products']:,} products, "
          f"{report['backbone']} ({report['runtime']} runtime), search {report['search']}")
    _print_head_note(report.get("head"))
    rows = []
    for label in ("type", "gender", "colour"):
        rows.append(dict(report[label], label=label))
    cols = [("label", "label"), ("queries", "queries")]
    cols += [(f"precision@{k}", f"P@{k}") for k in ks] + [(f"mAP@{k}", f"mAP@{k}") for k in ks]
    cols += [("identify_accuracy", "identify")]
    print_table(rows, cols)
    if report.get("raw"):
        _print_side_by_side(report, ks)
    if report.get("per_variant"):
        print("type per query kind" + (" (tuned space)" if report["space"] == "tuned" else ""))
        vcols = [("variant", "query kind"), ("queries", "queries")] + [(f"precision@{k}", f"P@{k}") for k in ks]
        print_table(report["per_variant"], vcols + [("identify_accuracy", "identify")])
    knn = report.get("type_nearest_neighbours")
    if knn and knn.get("queries"):
        print("type, bare nearest neighbours (before the identified-type boost): "
              + ", ".join(f"P@{k} {knn[f'precision@{k}']:.4f}" for k in ks))
    print()
    print("per articleType (top 20 by support)")
    kmax = max(ks)
    print_table(report["per_type"], [("type", "type"), ("support", "support"), (f"precision@{kmax}", f"P@{kmax}"),
                                     ("identify_accuracy", "identify"), ("most_confused_with", "most confused with")])
    print()
    print("most confused types")
    print_table(report["confused_types"], [("type", "type"), ("identified_as", "identified as"), ("count", "count"),
                                           ("share", "share")])
    print()
    if "ann_recall@10" in report:
        print(f"ANN recall@10 vs exact: {report['ann_recall@10']:.3f}")
    lat = report.get("latency_ms")
    if lat:
        print(f"query latency (decode+embed+search, {lat['queries']} queries): p50 {lat['p50']} ms, p95 {lat['p95']} ms; "
              f"search alone p50 {lat['search_only_p50']} ms")
    dup = report.get("near_duplicates")
    if dup:
        print(f"near-duplicate groups (cosine >= {dup['threshold']}): {dup['groups']:,} groups holding "
              f"{dup['products_in_groups']:,} products (largest {dup['largest_group']})")
    chart = f" and {png_path}" if png_path else " (no chart: pip install 'stylelens[eval]' for eval.png)"
    print(f"wrote {json_path}{chart} ({report['seconds']} s)")
    return 0


def _print_head_note(head: dict | None) -> None:
    """What the tuned head saw among the queries: left out (the default), or counted and said loudly."""
    if not head:
        return
    if not head["trained_on_known"]:
        print("warning: the tuned head did not record the products it trained on (tuned by an older stylelens): these "
              "figures may include them. Run stylelens tune again to measure on products it never saw.")
    elif head["queries_trained_on"]:
        print(f"warning: {head['queries_trained_on']:,} queries are products the tuned head trained on "
              f"(--include-trained): its figures flatter it")
    elif head["left_out"]:
        print(f"{head['left_out']:,} products the tuned head trained on left out: measured on products it never saw")


def _print_side_by_side(report: dict, ks) -> None:
    """Raw backbone space vs tuned head, same queries: what tuning changed."""
    raw = report["raw"]
    k = ks[0]
    rows = [{"label": c, "raw": raw[c].get(f"precision@{k}"), "tuned": report[c].get(f"precision@{k}"),
             "raw_id": raw[c].get("identify_accuracy"), "tuned_id": report[c].get("identify_accuracy")}
            for c in ("type", "gender", "colour")]
    if max(ks) != k:
        for row, c in zip(rows, ("type", "gender", "colour")):
            row["raw_k"], row["tuned_k"] = raw[c].get(f"precision@{max(ks)}"), report[c].get(f"precision@{max(ks)}")
    served = "tuned" if report["space"] == "tuned" else "served"
    parts = [what for what, on in (("the colour vote", report.get("colour_vote_space")),
                                   ("the type probe in the type vote", report.get("type_probe"))) if on]
    print("raw space vs tuned space (same queries)" + ("" if served == "tuned" else
          f"; the tuned head serves {' and '.join(parts)} only, searched in the {report['space']} space"))
    cols = [("label", "label"), ("raw", f"raw P@{k}"), ("tuned", f"{served} P@{k}")]
    if max(ks) != k:
        cols += [("raw_k", f"raw P@{max(ks)}"), ("tuned_k", f"{served} P@{max(ks)}")]
    print_table(rows, cols + [("raw_id", "raw identify"), ("tuned_id", f"{served} identify")])
    if raw.get("per_variant"):
        by = {r["variant"]: r for r in raw["per_variant"]}
        table = [{"variant": r["variant"], "raw": by.get(r["variant"], {}).get(f"precision@{k}"), "tuned": r.get(f"precision@{k}")}
                 for r in report["per_variant"]]
        print_table(table, [("variant", "query kind"), ("raw", f"raw type P@{k}"), ("tuned", f"tuned type P@{k}")])


def cmd_recommend(args) -> int:
    index = _open(args)
    if args.photo:
        result = index.search(args.photo, args.k, user=args.user, diversity=args.diversity, collapse=args.collapse,
                              **filters_from(args))
    else:
        if args.diversity or args.collapse:
            from ..errors import InvalidArgumentError

            raise InvalidArgumentError("--diversity and --collapse apply to a photo search; the 'For you' feed is already spread over your liked types.")
        result = index.recommend(args.user, args.k, **filters_from(args))
    if args.grid and result.products:
        from .render import results_grid

        query = args.photo or result.products[0]["image_path"]
        results_grid(query, result.products, args.grid, title="query" if args.photo else f"for {args.user}")
    print_search_result(result, args.json)
    if args.json:
        return 0
    if args.grid and result.products:
        print(f"wrote {args.grid}")
    return 0


def cmd_feedback(args) -> int:
    from ..query.personalize import forget

    index = _open(args)
    if args.forget:
        n = forget(index, args.user)
        out = {"ok": True, "user": args.user, "deleted": n}
        if args.json:
            print_json(out)
        else:
            print(f"forgot shopper {args.user}: {n} events deleted")
        return 0
    event, pid = next((e, getattr(args, e)) for e in ("like", "dislike", "view") if getattr(args, e))
    counts = index.feedback(args.user, pid, event)
    if args.json:
        print_json({"ok": True, "user": args.user, "counts": counts})
    else:
        print(f"{args.user}: {event} {pid}  (likes {counts['like']}, dislikes {counts['dislike']}, "
              f"views {counts['view']}, uploads {counts['upload']})")
    return 0


def cmd_look(args) -> int:
    index = _open(args)
    is_photo = Path(args.source).is_file() and args.source not in index.store.columns.row_of
    if is_photo:
        result = index.look(image=args.source, k=args.k)
    else:
        result = index.look(product_id=args.source, k=args.k)
    if args.grid:
        from .render import results_grid

        query = args.source if is_photo else result.source["image_path"]
        products = [dict(p, type=f"{g['category']}: {p.get('type') or ''}") for g in result.groups for p in g["products"]]
        results_grid(query, products, args.grid, title=f"{result.source.get('type') or 'source'} ({result.source.get('slot')})")
    if args.json:
        print_json(result.to_dict())
        return 0
    src = result.source
    print(f"source: {src.get('id') or args.source}  {src.get('type')}, {src.get('gender')}, {src.get('colour')}, "
          f"{src.get('usage')}, {src.get('season')}  (slot: {src.get('slot') or 'none'})")
    if not result.groups:
        print("no suggestions: this kind of product has no complementary categories, or none pass the rules")
    for group in result.groups:
        print(f"\n{group['category']}")
        print_results(group["products"])
    if args.grid:
        print(f"\nwrote {args.grid}")
    return 0
