"""Small file operations every layer shares."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of one (write beside it, fsync, rename)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: dict) -> None:
    write_bytes_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str).encode())


# A cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection"): "=HYPERLINK(...)".
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """A value for a CSV report that a person opens in a spreadsheet: text that a spreadsheet would run as a
    formula gets a leading apostrophe, which shows it as the text it was."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
