"""Scaling out on existing engines: a Ray Data runner for indexing, Milvus as the vector store.

Where the vectors live is chosen by location, one string, as with the other settings:

    None or "local"                          the index folder itself (vectors-<gen>.f32, memory-mapped)
    "milvus-lite:///path/to/file.db"         Milvus Lite, embedded in this process, one file
    "milvus://HOST:PORT/COLLECTION"          a Milvus server or cluster ("milvus+https://" for TLS)

Either way the index folder is the front: manifest.json and catalog.sqlite (product records, the
columns that filters and type votes read) stay in it, so ``open_index(folder)`` works the same. The
manifest names the vector location; ``IndexStore.open`` picks the store class from it. Ray and pymilvus
are imported only by the submodules that need them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..errors import IndexMismatchError, InvalidArgumentError
from ..store import MANIFEST, IndexStore

LOCAL = "local"
DEFAULT_COLLECTION = "stylelens"
INDEX_TYPES = ("FLAT", "HNSW", "IVF_FLAT", "IVF_PQ", "AUTOINDEX")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_STORE_HELP = "local, milvus-lite:///path/to/file.db or milvus://HOST:PORT/COLLECTION"


@dataclass(frozen=True)
class MilvusLocation:
    """A parsed Milvus location. ``uri`` is what MilvusClient takes: a .db path (Lite) or http(s)://host:port."""

    kind: str  # "milvus-lite" or "milvus"
    uri: str
    collection: str
    index: str

    @property
    def lite(self) -> bool:
        return self.kind == "milvus-lite"

    def canonical(self) -> str:
        """The location as written into the manifest (no credentials: those come from the environment)."""
        if self.lite:
            return f"milvus-lite://{self.uri}?collection={self.collection}&index={self.index}"
        scheme = "milvus+https" if self.uri.startswith("https://") else "milvus"
        return f"{scheme}://{self.uri.split('://', 1)[1]}/{self.collection}?index={self.index}"


def parse_location(location: str | None) -> MilvusLocation | None:
    """None for the index folder itself, else the Milvus location; anything else is an error saying what to write."""
    if location in (None, "", LOCAL):
        return None
    parts = urlsplit(str(location))
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"collection", "index"}
    if unknown:
        raise InvalidArgumentError(f"Unknown option '{sorted(unknown)[0]}' in --store {location}. Only collection= and index= are understood.", code="bad_option")
    index = query.get("index", "").upper()
    if index and index not in INDEX_TYPES:
        raise InvalidArgumentError(f"Unknown Milvus index type '{index}' in --store {location}. Choose one of: {', '.join(INDEX_TYPES)}.", code="bad_option")
    if parts.scheme == "milvus-lite":
        path = parts.netloc + parts.path
        if not path or path.endswith("/"):
            raise InvalidArgumentError(f"--store {location} names no file. Write milvus-lite:///path/to/file.db.", code="bad_option")
        collection = query.get("collection", DEFAULT_COLLECTION)
        uri = str(Path(path).expanduser().resolve())
        kind = "milvus-lite"
        index = index or "FLAT"  # exact: Lite serves catalogs that fit one machine
    elif parts.scheme in ("milvus", "milvus+https"):
        if not parts.hostname:
            raise InvalidArgumentError(f"--store {location} names no host. Write milvus://HOST:PORT/COLLECTION.", code="bad_option")
        if parts.username or parts.password:
            raise InvalidArgumentError("Do not put credentials in --store; set STYLELENS_MILVUS_TOKEN=user:password (or an API key) instead.", code="bad_option")
        collection = parts.path.strip("/") or query.get("collection", DEFAULT_COLLECTION)
        uri = f"{'https' if parts.scheme == 'milvus+https' else 'http'}://{parts.hostname}:{parts.port or 19530}"
        kind = "milvus"
        index = index or "HNSW"
    else:
        raise InvalidArgumentError(f"Unknown --store '{location}'. Use {_STORE_HELP}.", code="bad_option")
    if not _NAME.match(collection):
        raise InvalidArgumentError(f"Milvus collection name '{collection}' is not valid: use letters, digits and underscores, starting with a letter.", code="bad_option")
    return MilvusLocation(kind, uri, collection, index)


def _manifest_location(path: Path) -> str | None:
    """The vector location an existing index folder was built with (None: the folder itself, or no index yet)."""
    manifest = Path(path) / MANIFEST
    if not manifest.is_file():
        return None
    return (json.loads(manifest.read_text()).get("vectors") or {}).get("location")


def store_class(location: str | None) -> type[IndexStore]:
    if parse_location(location) is None:
        return IndexStore
    from .milvus_store import MilvusIndexStore

    return MilvusIndexStore


def create_store(path, fingerprint: dict, versions: dict, location: str | None = None) -> IndexStore:
    """Create an index folder (or open it to update) with its vectors at ``location``.

    ``location`` None means: where an existing index keeps them, else the folder itself. An existing
    index keeps the location it was built with; naming another one is an error, not a move.
    """
    built = _manifest_location(path) if (Path(path) / MANIFEST).is_file() else None
    if location is None:
        location = built
    wanted = parse_location(location)
    if (Path(path) / MANIFEST).is_file() and _same_place(parse_location(built)) != _same_place(wanted):
        raise IndexMismatchError(
            f"Index {path} keeps its vectors in {built or 'the index folder'}, not {location or 'the index folder'}. "
            f"Pass --store {built or LOCAL} (or no --store) to update it, or choose a new --out folder."
        )
    if wanted is None:
        return IndexStore.create(path, fingerprint, versions)
    from .milvus_store import MilvusIndexStore

    return MilvusIndexStore.create_at(path, fingerprint, versions, parse_location(built) or wanted)


def _same_place(location: MilvusLocation | None):
    # The index type may differ between runs without moving anything; the place is kind + uri + collection.
    return None if location is None else (location.kind, location.uri, location.collection)
