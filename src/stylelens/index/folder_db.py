"""The embedded default ``Database``: an index folder's own files.

manifest.json, catalog.sqlite (products and meta), users.sqlite (shopper events), artifact files and
writer.lock, all in the index folder. One machine; readers follow writers through SQLite's data version.
Its check reads the catalog read-only (SQLite's integrity check first) and deletes temporary files that an
interrupted write left; the vector files are the folder backend's (``index.folder``).
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

from ..errors import IndexNotFoundError
from ..files import write_bytes_atomic
from .catalog_db import CATALOG_DB, CatalogDB
from .checkup import REBUILD, CheckedCatalog, Checkup
from .database import check_artifact_name, is_database
from .events import SqliteEvents
from .lock import LOCK_FILE, WriterLock
from .manifest import MANIFEST, read_manifest, write_manifest

# What a new index's folder may already hold: a catalog and lock an interrupted create left.
_NEW_FOLDER_OK = {CATALOG_DB, CATALOG_DB + "-wal", CATALOG_DB + "-shm", LOCK_FILE}


class FolderDatabase:
    """Files in the index folder."""

    shared = False  # replicas on other machines do not see it

    def __init__(self, folder: Path, settings=None, create: bool = False):
        self.location = Path(folder)

    @classmethod
    def accepts(cls, location) -> bool:
        return not is_database(location)

    @classmethod
    def locate(cls, location, settings=None) -> Path:
        return Path(location)

    @classmethod
    def open_events(cls, location) -> SqliteEvents:
        return SqliteEvents(location)

    def exists(self) -> bool:
        return read_manifest(self.location) is not None and (self.location / CATALOG_DB).is_file()

    def not_found(self) -> IndexNotFoundError:
        return IndexNotFoundError(f"No stylelens index at {self.location}. Build one with: stylelens index CATALOG_DIR --out {self.location}")

    def prepare(self, vectors_kind: str) -> None:
        """A new or empty folder only: never write an index over someone's files."""
        path = self.location
        if path.exists() and not path.is_dir():
            raise IndexNotFoundError(f"{path} is a file, not a folder. Choose a new or empty --out folder.", code="not_an_index")
        path.mkdir(parents=True, exist_ok=True)
        if {p.name for p in path.iterdir()} - _NEW_FOLDER_OK:
            raise IndexNotFoundError(f"{path} is not empty and is not a stylelens index. Choose a new or empty --out folder.",
                                     code="not_an_index")

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

    def announce(self, catalog, what: str) -> None:
        """The files are not in the catalog: a meta row moves its version, so readers read the manifest again."""
        catalog.set_meta(f"{what}_updated", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + f" {time.time_ns()}")

    def events(self) -> SqliteEvents:
        return SqliteEvents(self.location)

    def close(self) -> None:
        """Nothing held: the catalog and events close themselves."""

    # ---- stylelens check -----------------------------------------------------------------
    @classmethod
    def inspect(cls, where: Path, settings, checkup: Checkup) -> "FolderDatabase":
        if not where.is_dir() or not ((where / MANIFEST).exists() or (where / CATALOG_DB).exists()):
            raise IndexNotFoundError(f"No stylelens index at {where} (no manifest.json or catalog.sqlite). Check the path.")
        return cls(where)

    def check(self, checkup: Checkup) -> CheckedCatalog:
        manifest = checkup.check_manifest(lambda: read_manifest(self.location))
        meta, n_rows, generation = self._check_catalog(checkup)
        self._check_temp_files(checkup)
        return CheckedCatalog(CATALOG_DB, manifest, meta, n_rows, generation)

    def _check_catalog(self, checkup: Checkup) -> tuple[dict, int | None, int | None]:
        path = self.location / CATALOG_DB
        if not path.is_file():
            checkup.add(CATALOG_DB, "catalog_missing", f"it is missing; {REBUILD}.")
            return {}, None, None
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            checkup.add(CATALOG_DB, "catalog_unreadable", f"it cannot be opened ({exc}); {REBUILD}.")
            return {}, None, None
        try:
            problems = [r[0] for r in db.execute("PRAGMA integrity_check(5)")]
            if problems != ["ok"]:
                checkup.add(CATALOG_DB, "catalog_integrity", f"SQLite integrity check failed ({'; '.join(problems)[:200]}); "
                            f"{REBUILD}.")
                return {}, None, None
            meta = dict(db.execute("SELECT key, value FROM meta"))
            rows = db.execute("SELECT id, row, image_path, image_sha256 FROM products").fetchall()
        except sqlite3.Error as exc:
            checkup.add(CATALOG_DB, "catalog_unreadable", f"it is not a readable stylelens catalog ({exc}); {REBUILD}.")
            return {}, None, None
        finally:
            db.close()
        n_rows, generation = checkup.check_rows(CATALOG_DB, meta, rows)
        return meta, n_rows, generation

    def _check_temp_files(self, checkup: Checkup) -> None:
        for f in sorted(self.location.iterdir()):
            if not (f.name.endswith(".tmp") or f.name.startswith(".tmp-")):
                continue
            finding = checkup.add(f.name, "temp_file", "a temporary file left by an interrupted write; run stylelens check "
                                  "INDEX --repair to delete it.", True)
            if checkup.repair:
                if f.is_dir():
                    shutil.rmtree(f)
                else:
                    f.unlink()
                checkup.repaired(finding, "deleted (a leftover temporary file)")


__all__ = ["FolderDatabase"]
