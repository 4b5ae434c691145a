"""Command line: thin shells over the library. Each subcommand module registers itself here.

Errors raised in the library (StylelensError) become one line on stderr and exit code 2;
nobody sees a stack trace unless STYLELENS_DEBUG=1.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys

from .. import __version__
from ..errors import StylelensError, storage_error
from . import core, demo, maintenance, quality, serve


class _Intermixed(argparse.ArgumentParser):
    """A subcommand whose positionals may follow its options: `recommend INDEX --user U PHOTO`."""

    _inner = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inner:  # parse_known_intermixed_args calls back in here
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stylelens", description="Fashion recommendations from a photo.")
    parser.add_argument("--version", action="version", version=f"stylelens {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Intermixed)
    for module in (core, serve, quality, demo, maintenance):
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
    except (OSError, sqlite3.DatabaseError) as exc:
        if isinstance(exc, BrokenPipeError):
            return 0
        error = storage_error(exc, "the index or its files")  # disk full, read-only, damaged: one line, what to do
        if error is None or os.environ.get("STYLELENS_DEBUG"):
            raise
        print(f"error: {error.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Commands that commit as they go (index, demo) say what is kept; the others leave nothing half-written.
        print(getattr(args, "interrupted", "interrupted; nothing was left half-written. Run the same command again."),
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
