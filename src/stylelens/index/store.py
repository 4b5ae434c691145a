"""The front of one index: manifest + catalog + artifacts + events in a ``Database`` (``index.database``: the
index folder's files, or PostgreSQL, chosen by location) + a ``VectorBackend`` (``index.backend``), chosen by
the manifest. It speaks to both through their protocols only.

``open_store(location)`` for reading, ``open_store(location, writable=True)`` to change it,
``create_store(location, ...)`` to start one (or update an existing one). Every write goes through
here, in the order that keeps a crash safe: the backend makes vectors durable, then one catalog commit
makes them visible. Readers follow: when the catalog's version moves (any writer, any process, any
machine for a database), the next ``columns`` is a new view, and the manifest is read again with it.
"""

from __future__ import annotations

import threading

import numpy as np

from ..errors import DatabaseUnavailable, IndexMismatchError
from ..settings import Settings, settings_or_default
from .backend import backend_class, kind_of, open_backend
from .catalog_db import Columns
from .database import Database, open_database
from .manifest import MANIFEST, check_compatible, new_manifest


class IndexStore:
    """An opened index: its database (manifest, catalog, artifacts, events, lock) and its vector backend.
    ``settings`` are required: they are built once by the caller (``open_store``, ``open_index``, a shell)."""

    def __init__(self, path, *, settings: Settings, writable: bool = False, expect: dict | None = None,
                 writer_lock=None, database: Database | None = None):
        self.settings = settings
        self.database: Database = database or open_database(path, self.settings)
        self.path = self.database.location  # a folder (Path), or a DatabaseLocation
        self.writable = writable
        self.catalog = None
        self.writer_lock = None
        try:
            manifest = self.database.read_manifest()
            if manifest is None or not self.database.exists():
                raise self.database.not_found()
            if expect is not None:
                check_compatible(manifest["embedder"], expect, self.path)
            # One writer at a time: taken before anything is read for writing, held until close().
            self.writer_lock = (writer_lock or self.database.writer_lock().acquire()) if writable else None
            self.manifest = self.database.read_manifest() if writable else manifest  # as the lock holder sees it
            self._columns: Columns | None = None
            self._lock = threading.Lock()
            self.catalog = self.database.catalog(writable)
            self.kind = kind_of((self.manifest.get("vectors") or {}).get("location"))
            self.backend = open_backend(self.kind, self)
            if writable:
                self.backend.recover()
        except BaseException:
            if self.catalog is not None:
                self.catalog.close()
            if self.writer_lock is not None:
                self.writer_lock.release()
            if database is None:
                self.database.close()
            raise

    # ---- reading -------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.manifest["embedder"]["dim"])

    @property
    def n_rows(self) -> int:
        return self.catalog.n_rows

    @property
    def columns(self) -> Columns:
        """The catalog as it is now, one consistent view. A reader follows writers in other processes:
        when anyone committed since, a new view is read (queries that hold the old one finish on it)."""
        columns = self._columns
        if columns is None or columns.version != self.catalog.version():
            with self._lock:
                columns = self._columns
                if columns is None or columns.version != self.catalog.version():
                    if not self.writable:  # e.g. a field tune wrote, also between opening and the first view
                        self.manifest = self.database.read_manifest() or self.manifest
                    columns = self._columns = self.catalog.columns()
                    self.backend.changed()
        return columns

    @property
    def generation(self) -> tuple:
        """What /api/health reports: (vectors generation, rows, catalog version)."""
        columns = self.columns
        return (columns.generation, columns.n_rows, columns.version)

    def __len__(self) -> int:
        return self.catalog.count()

    def dead_rows(self) -> int:
        return self.n_rows - len(self)

    def vectors(self, rows, columns: Columns | None = None) -> np.ndarray:
        """(len(rows), dim) float32 vectors of these rows (of the view ``columns``, default the current one)."""
        return self.backend.get(rows, columns or self.columns)

    def all_vectors(self) -> np.ndarray:
        """Every row's vector, (n_rows, dim): for evaluation and export, which read them all on purpose."""
        return self.backend.all_vectors()

    def search(self, queries, k: int, mask=None, filters=None, columns: Columns | None = None):
        """(scores, rows) of the top k rows of the view ``columns`` (default the current one) where
        ``mask`` is True; ``filters`` go to a backend that runs them itself."""
        columns = columns or self.columns
        return self.backend.search(queries, k, columns.fit(mask), filters if self.backend.server_filters else None, columns)

    def scores(self, queries, columns: Columns | None = None, rows=None) -> np.ndarray | None:
        """(Q, n_rows) cosines of every row of the view to each query in one pass (``rows``: only those, (Q,
        len(rows))), where the backend searches exactly in memory; None where it searches on its own (ANN, Milvus)."""
        scorer = getattr(self.backend, "scores", None)
        return None if scorer is None else scorer(queries, columns or self.columns, rows)

    def product(self, pid: str) -> dict:
        return self.catalog.product(pid)

    def products(self, pids) -> list[dict]:
        return self.catalog.products(pids)

    def image_hashes(self) -> dict[str, str]:
        return self.catalog.image_hashes()

    def ids_with_hash(self, sha256: str) -> list[str]:
        return self.catalog.ids_with_hash(sha256)

    def counts(self) -> dict:
        """Products (a product's further pictures, its views, are rows too: counted apart), rows, dead rows."""
        rows = len(self)
        cols = self.columns
        views = 0 if cols.owner is None else int((cols.live & (cols.owner != np.arange(cols.n_rows))).sum())
        counts = {"products": rows - views, "vector_rows": self.n_rows, "dead_rows": self.n_rows - rows}
        return dict(counts, views=views) if views else counts

    # ---- writing -------------------------------------------------------------------------
    def add(self, records: list[dict], vectors: np.ndarray) -> None:
        """Insert or replace products with their vectors, atomically (a crash keeps all or none)."""
        self._check_writable()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(records), self.dim):
            raise ValueError(f"expected {len(records)} vectors of dim {self.dim}, got {vectors.shape}")
        start = self.n_rows
        self.backend.add(start, records, vectors)
        self.catalog.insert(records, start, self.backend.committed_meta())
        self._changed()

    def update_records(self, records: list[dict]) -> None:
        """Change product fields (price, stock, name...) without touching vectors."""
        self._check_writable()
        fields = getattr(self.backend, "FILTERED_FIELDS", ())
        before = self.catalog.scalar_fields([r["id"] for r in records], fields) if fields else {}
        self.catalog.update(records)
        self.backend.update_fields(records, before)
        self._changed()

    def delete(self, pids) -> int:
        """Remove products; returns how many existed. Folder rows stay dead until compact()."""
        self._check_writable()
        pids = [str(p) for p in pids]
        row_of = self.columns.row_of
        known = [p for p in pids if p in row_of]
        self.backend.delete(known, np.array([row_of[p] for p in known], dtype=np.int64))
        removed = self.catalog.delete(known)
        self._changed()
        return removed

    def compact(self) -> int:
        self._check_writable()
        n = self.backend.compact()
        self._changed()
        return n

    def maintain(self) -> None:
        """Bring derived search structures up to date after writes (the ANN file, sealed Milvus segments)."""
        self.backend.maintain()

    def save_manifest(self, **fields) -> None:
        """Update manifest fields and write it where every reader of this index finds it (they read it
        again with their next view)."""
        self._check_writable()
        self.manifest.update(fields)
        self.manifest["counts"] = self.counts()
        self.database.write_manifest(self.manifest)
        self._announce("manifest")

    set_manifest = save_manifest

    def read_artifact(self, name: str) -> bytes | None:
        """A named blob kept with the index (e.g. what ``tune`` trained), None when there is none."""
        return self.database.read_artifact(name)

    def write_artifact(self, name: str, data: bytes) -> None:
        """Keep a named blob with the index, atomically (readers get the old or the new bytes, never
        half); every reader's next view follows."""
        self._check_writable()
        self.database.write_artifact(name, data)
        self._announce("artifacts")

    def close(self) -> None:
        self.backend.close()
        self.catalog.close()
        if self.writer_lock is not None:
            self.writer_lock.release()
            self.writer_lock = None
        self.database.close()

    def _announce(self, what: str) -> None:
        """Move the catalog version so readers in other processes take a new view (a database moves it
        in the write's own transaction)."""
        self.database.announce(self.catalog, what)
        self._changed()

    def _changed(self) -> None:
        self._columns = None
        self.backend.changed()

    def _check_writable(self) -> None:
        if not self.writable:
            raise RuntimeError("open the store with writable=True to change it")


def open_store(path, writable: bool = False, settings: Settings | None = None, expect: dict | None = None) -> IndexStore:
    """Open an index's storage; ``settings`` default to this process's (``Settings.load()``): an entry point."""
    return IndexStore(path, writable=writable, settings=settings_or_default(settings), expect=expect)


def create_store(path, fingerprint: dict, versions: dict, location: str | None = None, *,
                 settings: Settings | None = None) -> IndexStore:
    """Create an index (a folder, or a database location) with its vectors at ``location`` (the ``store``
    setting), or open the existing one to update it. An existing index keeps the place it was built
    with; naming another one is an error, not a move."""
    settings = settings_or_default(settings)
    database = open_database(path, settings, create=True)
    try:
        def reopen() -> IndexStore:
            return IndexStore(path, writable=True, settings=settings, expect=fingerprint, database=database)

        existing = database.read_manifest()
        if existing is not None:
            _check_same_place(database.location, existing, location)
            return reopen()
        database.prepare(kind_of(location))
        return _create(database, fingerprint, versions, location, settings, retry=reopen)
    except BaseException:
        database.close()
        raise


def _create(database, fingerprint, versions, location, settings, retry) -> IndexStore:
    lock = database.writer_lock().acquire()
    try:
        if database.read_manifest() is not None:  # another writer created it while we waited for the lock
            lock.release()
            return retry()
        manifest = new_manifest(fingerprint, versions)
        backend_class(kind_of(location)).prepare(database.location, manifest, location, settings)
        database.create_catalog()
        database.write_manifest(manifest)  # last: a manifest makes an index
        return IndexStore(database.location, writable=True, settings=settings, writer_lock=lock, database=database)
    except BaseException:
        lock.release()
        raise


def _check_same_place(path, existing: dict, location) -> None:
    built = (existing.get("vectors") or {}).get("location")
    if location not in (None, "") and _place(location) != _place(built):
        raise IndexMismatchError(
            f"Index {path} keeps its vectors in {built or 'the index folder'}, not {location}. "
            f"Pass --store {built or 'local'} (or no --store) to update it, or choose a new --out folder.")


def read_manifest_at(location, settings: Settings) -> dict | None:
    """The manifest of the index at a folder or database location, None when there is none yet."""
    try:
        database = open_database(location, settings)
    except DatabaseUnavailable as exc:
        if exc.code == "database_missing":  # a new index: `stylelens index` creates the database
            return None
        raise
    try:
        return database.read_manifest()
    finally:
        database.close()


def _place(location: str | None):
    return backend_class(kind_of(location)).place(location)


def remove_products(index_path, ids, settings: Settings | None = None) -> tuple[int, list[str]]:
    """Delete products by id wherever the index keeps its vectors; compact, and bring the ANN index
    in step. Returns (removed, ids not found)."""
    store = open_store(index_path, writable=True, settings=settings)
    try:
        ids = [str(i) for i in ids]
        known = set(store.columns.row_of)
        missing = [i for i in ids if i not in known]
        removed = store.delete([i for i in ids if i in known])
        store.compact()
        store.maintain()
        store.set_manifest()
        return removed, missing
    finally:
        store.close()


__all__ = ["IndexStore", "open_store", "create_store", "read_manifest_at", "remove_products", "MANIFEST"]
