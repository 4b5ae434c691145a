"""Where an index keeps its catalog, manifest, artifacts and shopper events: one database, chosen by location.

    a folder path                          the embedded default: catalog.sqlite, manifest.json, users.sqlite
                                           and artifact files in the index folder (one machine)
    postgresql://[USER@]HOST[:PORT]/DB     PostgreSQL: every replica on every machine reads the same rows

The PostgreSQL password never goes in the location (it is printed, logged and kept in shell history):
it comes from the ``database_password`` setting (STYLELENS_DATABASE_PASSWORD), or from libpq's own
~/.pgpass. A database index keeps its vectors in a Milvus server (``--store milvus://...``).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import IndexNotFoundError, InvalidArgumentError
from ..files import write_bytes_atomic
from .catalog_db import CATALOG_DB, CatalogDB
from .events import USERS_DB, SqliteEvents
from .lock import LOCK_FILE, WriterLock
from .manifest import MANIFEST, read_manifest, write_manifest

SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
DATABASES = {"postgres": "stylelens.index.postgres:PostgresDatabase"}
ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Files the index itself keeps: an artifact may not overwrite them.
RESERVED = (MANIFEST, CATALOG_DB, USERS_DB, LOCK_FILE, "ann.json", "errors.csv", "warnings.csv")
RESERVED_PREFIXES = tuple(name + "-" for name in (CATALOG_DB, USERS_DB)) + ("vectors-", "ann-")


@dataclass(frozen=True)
class DatabaseLocation:
    """A database index's location, without credentials (its ``str`` is what messages and manifests show)."""

    url: str  # postgresql://user@host:port/db
    host: str
    port: int
    dbname: str
    user: str | None = None
    password: str = field(default="", repr=False, compare=False)

    def __str__(self) -> str:
        return self.url

    def __fspath__(self):  # code that wants a folder gets a clear error, not a path named "postgresql:"
        raise InvalidArgumentError(f"{self.url} is a database, not a folder: this command works on index folders only.",
                                   code="bad_option")


def is_database(location) -> bool:
    return isinstance(location, DatabaseLocation) or str(location).split("://", 1)[0].lower() in SCHEMES and "://" in str(location)


def parse_database(location, password: str = "") -> DatabaseLocation:
    """postgresql://[USER@]HOST[:PORT]/DB → DatabaseLocation; a password in it is refused, saying where it goes."""
    if isinstance(location, DatabaseLocation):
        return location
    parts = urlsplit(str(location))
    if parts.password:
        raise InvalidArgumentError("Do not put the database password in the location (it ends up in logs and shell "
                                   "history); set STYLELENS_DATABASE_PASSWORD, or use ~/.pgpass.", code="bad_option")
    dbname = parts.path.strip("/")
    if not parts.hostname or not dbname or "/" in dbname:
        raise InvalidArgumentError(f"{location} names no host or database. Write postgresql://[USER@]HOST[:PORT]/DATABASE.",
                                   code="bad_option")
    try:
        port = parts.port or 5432
    except ValueError:
        raise InvalidArgumentError(f"{location} has a port that is not a number. Write postgresql://HOST:PORT/DATABASE.",
                                   code="bad_option") from None
    user = parts.username
    url = f"postgresql://{user + '@' if user else ''}{parts.hostname}:{port}/{dbname}"
    return DatabaseLocation(url, parts.hostname, port, dbname, user, password)


def open_database(location, settings, create: bool = False):
    """The database of the index at ``location``: a ``FolderDatabase`` or a server's (by its scheme)."""
    if is_database(location):
        where = parse_database(location, settings.database_password)
        module, _, name = DATABASES["postgres"].partition(":")
        return getattr(importlib.import_module(module), name)(where, settings, create=create)
    return FolderDatabase(Path(location))


def open_events(location):
    """The shopper events of the index at ``location`` (the folder's users.sqlite, or the database's table)."""
    if is_database(location):
        module, _, name = DATABASES["postgres"].partition(":")
        return getattr(importlib.import_module(module), name).open_events(parse_database(location))
    return SqliteEvents(location)


def check_artifact_name(name: str) -> str:
    if not isinstance(name, str) or not ARTIFACT_NAME.match(name) or name in RESERVED or name.startswith(RESERVED_PREFIXES):
        raise InvalidArgumentError(f"Artifact name {str(name)[:40]!r} is not allowed: use letters, digits, '.', '_' and '-', "
                                   "and not a name the index uses for itself.", code="bad_option")
    return name


class FolderDatabase:
    """The embedded default: files in the index folder. One machine; readers follow writers through SQLite."""

    shared = False  # replicas on other machines do not see it

    def __init__(self, folder: Path):
        self.location = Path(folder)

    def exists(self) -> bool:
        return read_manifest(self.location) is not None and (self.location / CATALOG_DB).is_file()

    def not_found(self) -> IndexNotFoundError:
        return IndexNotFoundError(f"No stylelens index at {self.location}. Build one with: stylelens index CATALOG_DIR --out {self.location}")

    def read_manifest(self) -> dict | None:
        return read_manifest(self.location) if self.location.is_dir() else None

    def write_manifest(self, manifest: dict) -> None:
        write_manifest(self.location, manifest)

    def catalog(self, writable: bool) -> CatalogDB:
        return CatalogDB(self.location, writable)

    def create_catalog(self) -> None:
        CatalogDB.create(self.location)

    def writer_lock(self) -> WriterLock:
        return WriterLock(self.location)

    def read_artifact(self, name: str) -> bytes | None:
        path = self.location / check_artifact_name(name)
        return path.read_bytes() if path.is_file() else None

    def write_artifact(self, name: str, data: bytes) -> None:
        write_bytes_atomic(self.location / check_artifact_name(name), bytes(data))

    def events(self) -> SqliteEvents:
        return SqliteEvents(self.location)

    def close(self) -> None:
        """Nothing held: the catalog and events close themselves."""
