"""Where an index keeps its catalog, manifest, artifacts and shopper events: the ``Database`` protocol and the
registry of databases, one chosen by location as the vector backends are (``index.backend``).

    a folder path                          the embedded default (``index.folder_db``): catalog.sqlite,
                                           manifest.json, users.sqlite and artifact files in the index folder
    postgresql://[USER@]HOST[:PORT]/DB     PostgreSQL (``index.postgres``): every replica on every machine
                                           reads the same rows

The PostgreSQL password never goes in the location (it is printed, logged and kept in shell history):
it comes from the ``database_password`` setting (STYLELENS_DATABASE_PASSWORD), or from libpq's own
~/.pgpass. A database index keeps its vectors in a Milvus server (``--store milvus://...``).

A new database is one module with a class implementing ``Database``, plus one entry in ``DATABASES``
(the module is imported only when a location names it); it is done when tests/test_conformance.py passes on it.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from urllib.parse import urlsplit

from ..errors import IndexNotFoundError, InvalidArgumentError
from .catalog_db import CATALOG_DB
from .events import USERS_DB
from .lock import LOCK_FILE
from .manifest import MANIFEST

if TYPE_CHECKING:
    from .checkup import CheckedCatalog, Checkup


class WriterLockLike(Protocol):
    """One writer per index: ``acquire`` raises IndexBusyError naming the holder; the lock dies with its process."""

    def acquire(self) -> "WriterLockLike": ...

    def release(self) -> None: ...


class Events(Protocol):
    """Shopper events as stored rows, in order (``query.personalize`` decides what they mean)."""

    def append(self, user: str, kind: str, product_id: str | None, sha256: str | None, vector: bytes | None) -> None:
        """One event; an upload of a picture the shopper searched before replaces the older one."""

    def rows(self, user: str) -> list[tuple[str, str | None, bytes | None]]:
        """(kind, product id, vector bytes) of a shopper's events, oldest first."""

    def forget(self, user: str) -> int: ...

    def users(self) -> list[str]: ...

    def close(self) -> None: ...


@runtime_checkable
class Database(Protocol):
    """The manifest, catalog, artifacts, shopper events and writer lock of one index.

    Made with ``Class(Class.locate(location, settings), settings, create=...)`` (``open_database`` does it);
    ``create`` lets a server database be created on the server when it does not exist yet. The catalog it
    answers (``catalog(writable)``) is ``index.catalog_db.CatalogDB``'s interface: rows, meta, a ``version``
    that moves with every committed change, so readers in other processes follow writers."""

    location: object  # a folder (Path) or a parsed location; its str is what messages and reports show
    shared: bool  # True: replicas on other machines read the same rows (its vectors must be shared too)

    @classmethod
    def accepts(cls, location) -> bool:
        """Whether ``location`` names this kind of database."""

    @classmethod
    def locate(cls, location, settings):
        """The parsed location (credentials from ``settings``, never from the location string)."""

    @classmethod
    def open_events(cls, location) -> Events:
        """The shopper events alone (a service's personalisation, without opening the index)."""

    def exists(self) -> bool:
        """An index is here (a manifest and its catalog)."""

    def not_found(self) -> IndexNotFoundError:
        """The one-line error for a location without an index, saying how to build one."""

    def prepare(self, vectors_kind: str) -> None:
        """A new index is about to be made here (no manifest yet), its vectors in a backend of ``vectors_kind``:
        refuse what cannot work (a folder that is not empty, vectors only one machine reaches), make the place."""

    def read_manifest(self) -> dict | None:
        """None when there is none; a damaged one raises IndexDamagedError, another format IndexMismatchError."""

    def write_manifest(self, manifest: dict) -> None: ...

    def catalog(self, writable: bool): ...

    def create_catalog(self) -> None: ...

    def writer_lock(self) -> WriterLockLike: ...

    def read_artifact(self, name: str) -> bytes | None:
        """A named blob kept with the index, None when there is none (names pass ``check_artifact_name``)."""

    def write_artifact(self, name: str, data: bytes) -> None:
        """Atomically: readers get the old or the new bytes, never half."""

    def announce(self, catalog, what: str) -> None:
        """A manifest or artifact write happened: move ``catalog``'s version so readers elsewhere take a new
        view (a database that moves it in the write's own transaction does nothing)."""

    def events(self) -> Events: ...

    def close(self) -> None: ...

    # ---- stylelens check -----------------------------------------------------------------
    @classmethod
    def inspect(cls, where, settings, checkup: "Checkup") -> "Database | None":
        """Open the database at ``where`` for a check (a missing index raises its not-found error); None when the
        check cannot go on (e.g. a schema this stylelens does not know: a finding says so)."""

    def check(self, checkup: "Checkup") -> "CheckedCatalog":
        """Check the manifest, the catalog rows (``checkup.check_rows``) and this database's own files, adding
        findings (and, under ``checkup.repair``, repairing what only it can); answer what it read."""


# kind -> "module:Class", asked in this order: the folder, which takes any path, last.
DATABASES: dict[str, str] = {
    "postgres": "stylelens.index.postgres:PostgresDatabase",
    "folder": "stylelens.index.folder_db:FolderDatabase",
}


def database_class(kind: str):
    module, _, name = DATABASES[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def database_kind(location) -> str:
    """The database kind a location names."""
    for kind in DATABASES:
        if database_class(kind).accepts(location):
            return kind
    raise InvalidArgumentError(f"Unknown index location '{location}'. Use a folder or postgresql://USER@HOST:PORT/DB.",
                               code="bad_option")


def open_database(location, settings, create: bool = False) -> Database:
    """The database of the index at ``location`` (a folder, or a server's by its scheme)."""
    cls = database_class(database_kind(location))
    return cls(cls.locate(location, settings), settings, create=create)


def open_events(location) -> Events:
    """The shopper events of the index at ``location`` (the folder's users.sqlite, or the database's table)."""
    return database_class(database_kind(location)).open_events(location)


SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
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


def check_artifact_name(name: str) -> str:
    if not isinstance(name, str) or not ARTIFACT_NAME.match(name) or name in RESERVED or name.startswith(RESERVED_PREFIXES):
        raise InvalidArgumentError(f"Artifact name {str(name)[:40]!r} is not allowed: use letters, digits, '.', '_' and '-', "
                                   "and not a name the index uses for itself.", code="bad_option")
    return name
