"""Command line: thin shells over the library. Each subcommand module registers itself here.

Errors raised in the library (StylelensError) become one line on stderr and exit code 2;
nobody sees a stack trace unless STYLELENS_DEBUG=1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import StylelensError

# Modules under stylelens.cli that define register(subparsers). Missing ones are skipped.
COMMAND_MODULES = ("core", "serve", "quality", "scale", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stylelens", description="Fashion recommendations from a photo.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except StylelensError as exc:
        if os.environ.get("STYLELENS_DEBUG"):
            raise
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted. Work committed so far is kept; run the same command again to resume.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
