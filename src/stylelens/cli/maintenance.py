"""check: verify an index (a folder, or a database location), and repair what is safe to repair."""

from __future__ import annotations

from .options import add_setting_flags, settings_from
from .output import print_json


def register(sub) -> None:
    p = sub.add_parser("check", help="Verify an index (manifest, catalog, vectors, tuned head, a re-embedded sample): a "
                                     "folder, or PostgreSQL + its Milvus collection; --repair fixes what is safe.")
    p.add_argument("index", help="Index folder, or database location (postgresql://USER@HOST:PORT/DB).")
    p.add_argument("--repair", action="store_true",
                   help="Take the writer lock and fix what is safe: cut an uncommitted tail, delete stale files or vectors "
                        "no product owns, make the next `stylelens index` re-embed products whose vectors are missing or damaged.")
    p.add_argument("--sample", type=int, default=64, metavar="N",
                   help="Products re-embedded from their images and compared with their vectors (seeded; 0 = all; default 64).")
    add_setting_flags(p, "device", "runtime", "precision", "batch_size")
    p.add_argument("--json", action="store_true", help="Print the report as JSON.")
    p.set_defaults(func=cmd_check)


def cmd_check(args) -> int:
    from ..index.check import check

    report = check(args.index, repair=args.repair, sample=args.sample, settings=settings_from(args))
    if args.json:
        print_json(report.to_dict())
        return report.exit_code
    for finding in report.findings:
        print(finding.line())
    for note in report.notes:
        print(f"note      {note}")
    print(report.summary())
    return report.exit_code
