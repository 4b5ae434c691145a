"""manifest.json: what made an index (embedder fingerprint, library versions), where its vectors live, counts.

Read once when an index opens; a damaged manifest is named, never a traceback.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import IndexDamagedError, IndexMismatchError
from ..files import write_json_atomic

FORMAT = "stylelens-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def new_manifest(fingerprint: dict, versions: dict) -> dict:
    stamp = now()
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "embedder": fingerprint, "versions": versions,
            "created": stamp, "updated": stamp, "counts": {"products": 0}}


def read_manifest(folder) -> dict | None:
    """The manifest of the index in ``folder``, None when there is none; damaged → IndexDamagedError."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _damaged(path, f"it is not readable JSON ({type(exc).__name__})") from None
    return check_manifest(manifest, folder, lambda why: _damaged(path, why))


def check_manifest(manifest, where, damaged) -> dict:
    """The manifest, checked: an object of our format version that names its embedder (``damaged(why)``
    makes the error for a manifest that is not)."""
    if not isinstance(manifest, dict):
        raise damaged(f"it holds a {type(manifest).__name__}, not an object")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexMismatchError(f"Index {where} has format version {manifest.get('format_version')}; this stylelens reads "
                                 f"{FORMAT_VERSION}. Rebuild the index.")
    embedder = manifest.get("embedder")
    if not isinstance(embedder, dict) or not {"backbone", "weights", "pooling", "dim"} <= set(embedder):
        raise damaged("it does not say which embedder made the vectors")
    return manifest


def write_manifest(folder, manifest: dict) -> None:
    manifest["updated"] = now()
    write_json_atomic(Path(folder) / MANIFEST, manifest)


def _damaged(path: Path, why: str) -> IndexDamagedError:
    return IndexDamagedError(f"The index file {path} is damaged: {why}. Run stylelens check {path.parent} --repair to "
                             f"rebuild the manifest from the catalog and vectors. Rebuild the index into a new folder "
                             f"(stylelens index CATALOG --out NEW_FOLDER) only if the check cannot.")


def check_compatible(built: dict, asked: dict, path) -> None:
    """Refuse to mix vectors from different embedders; say which setting differs."""
    def weights_id(fp):
        w = fp.get("weights") or {}
        return (w.get("source"), w.get("sha256") or w.get("detail"))

    checks = [
        ("backbone", built.get("backbone"), asked.get("backbone"), "--backbone"),
        ("weights", weights_id(built), weights_id(asked), "--weights"),
        ("pooling", built.get("pooling"), asked.get("pooling"), "--pooling"),
        ("preprocessing", built.get("preprocess"), asked.get("preprocess"), "the stylelens version"),
        ("dimension", built.get("dim"), asked.get("dim"), "--backbone"),
    ]
    for name, b, a, option in checks:
        if b != a:
            raise IndexMismatchError(
                f"Index {path} was built with {name} {_show(b)}, but the embedder in use has {_show(a)}. "
                f"Use the same {option} as when it was built, or build a new index."
            )


def _show(value) -> str:
    if isinstance(value, tuple):
        return "/".join(str(v)[:16] for v in value if v)
    return repr(value)
