"""A database index as ``stylelens check`` reads it: PostgreSQL (schema revision, manifest, artifacts, catalog
rows) and the Milvus collection its manifest names, read without changing either.

The schema revision is read before the database is opened, because opening migrates it. Milvus is read with
Strong consistency (a check right after a build sees every vector the build wrote), by id, in bounded
chunks. Repairs go through the index's own store, opened for writing under the check's writer lock.
"""

from __future__ import annotations

import json

import numpy as np

from ..errors import IndexNotFoundError, import_extra
from ..settings import Settings
from .database import parse_database
from .milvus import EXPR_IDS, PENDING, MilvusCollection, parse_location
from .postgres import MIGRATIONS, PostgresDatabase, _sqlalchemy, make_engine, unavailable
from .store import IndexStore

READ_IDS = 1000  # ids per Milvus read: ~8 MB of 2048-d vectors
STRONG = {"consistency_level": "Strong"}


class DatabaseIndex:
    """One database index for the check: connected (a down server or a wrong password fails in one line),
    opened only when ``open`` is called."""

    def __init__(self, location, settings: Settings):
        self.settings = settings
        self.location = parse_database(location, settings.database_password)
        self.db: PostgresDatabase | None = None
        self.lock = None
        self.collection: MilvusCollection | None = None
        self.revision = self._read_revision()

    def _read_revision(self) -> str | None:
        """The schema's Alembic revision, None when the database has no stylelens tables."""
        sa = _sqlalchemy()
        engine = make_engine(self.location, 1)
        try:
            with engine.connect() as conn:
                if conn.execute(sa.text("SELECT to_regclass('alembic_version')")).scalar() is None:
                    return None
                return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        except sa.exc.DBAPIError as exc:
            raise unavailable(self.location, exc) from None
        finally:
            engine.dispose()

    def not_found(self) -> IndexNotFoundError:
        return IndexNotFoundError(f"No stylelens index in {self.location}. Check the location, or build one there: "
                                  f"stylelens index CATALOG --out {self.location} --store milvus://HOST:PORT/COLLECTION")

    @staticmethod
    def revisions() -> tuple[str, set[str]]:
        """(the newest schema revision this stylelens knows, every revision it knows)."""
        alembic_config = import_extra("alembic.config", "alembic", "postgres", "An index in PostgreSQL")
        from alembic.script import ScriptDirectory

        config = alembic_config.Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        script = ScriptDirectory.from_config(config)
        return script.get_current_head(), {r.revision for r in script.walk_revisions()}

    def open(self, lock: bool) -> None:
        """Open the database (an older schema is migrated here), and take the writer lock when ``lock``."""
        self.db = PostgresDatabase(self.location, self.settings)
        if lock:
            self.lock = self.db.writer_lock().acquire()

    # ---- PostgreSQL ----------------------------------------------------------------------
    def manifest(self) -> dict | None:
        return self.db.read_manifest()

    def artifact(self, name: str) -> bytes | None:
        return self.db.read_artifact(name)

    def catalog(self) -> tuple[dict, list[tuple]]:
        """(meta, (id, row, image_path, image_sha256) of every product), from one snapshot."""
        return self.db.snapshot('SELECT id, "row", image_path, image_sha256 FROM products ORDER BY "row", id')

    @staticmethod
    def pending_batch(meta: dict) -> list[str]:
        """Ids of a batch sent to Milvus whose catalog commit has not happened (the backend's crash mark)."""
        try:
            return [str(pid) for pid in json.loads(meta.get(PENDING) or "[]")]
        except (TypeError, ValueError):
            return []

    # ---- Milvus --------------------------------------------------------------------------
    def open_collection(self, manifest: dict) -> None:
        """Connect to the manifest's collection, and check that it is this index's (embedder and owner)."""
        vectors = manifest.get("vectors") or {}
        where = parse_location(vectors.get("location"))
        if where is None:
            raise IndexNotFoundError(f"The manifest names no Milvus collection for the vectors ({vectors.get('location')!r}). "
                                     "Rebuild the index into a new database with --store milvus://HOST:PORT/COLLECTION.")
        self.collection = MilvusCollection(where, self.settings.milvus_token)
        self.collection.check(manifest["embedder"], vectors.get("owner"), self.location)

    def vector_ids(self) -> tuple[set[str], int]:
        """(every distinct id the collection holds, how many vectors it holds): Milvus answers each id once."""
        client, name = self.collection.client, self.collection.name
        ids: set[str] = set()
        it = client.query_iterator(name, batch_size=READ_IDS * 10, output_fields=["id"], **STRONG)
        try:
            while batch := it.next():
                ids.update(hit["id"] for hit in batch)
        finally:
            it.close()
        return ids, self._count("")

    def duplicated(self, ids: list[str]) -> list[str]:
        """The ids among ``ids`` held more than once: chunks whose count exceeds their ids, halved down to the id."""
        found: list[str] = []

        def walk(chunk: list[str]) -> None:
            if self._count(f"id in {json.dumps(chunk)}") <= len(chunk):
                return
            if len(chunk) == 1:
                found.append(chunk[0])
                return
            walk(chunk[:len(chunk) // 2])
            walk(chunk[len(chunk) // 2:])

        for start in range(0, len(ids), EXPR_IDS):
            walk(ids[start:start + EXPR_IDS])
        return found

    def _count(self, expr: str) -> int:
        client, name = self.collection.client, self.collection.name
        return int(client.query(name, filter=expr, output_fields=["count(*)"], **STRONG)[0]["count(*)"])

    def vectors(self, ids: list[str]) -> dict[str, np.ndarray]:
        client, name = self.collection.client, self.collection.name
        found = {}
        for start in range(0, len(ids), READ_IDS):
            for hit in client.get(name, ids=ids[start:start + READ_IDS], output_fields=["vector"], **STRONG):
                found[hit["id"]] = np.asarray(hit["vector"], dtype=np.float32)
        return found

    def nearest(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """The collection's own top k (exact or approximate, as its index type is) for each query."""
        return self.collection.search(queries, k, "")

    # ---- repairs -------------------------------------------------------------------------
    def writable_store(self) -> IndexStore:
        """The index's store, opened for writing under the check's lock (opening clears an uncommitted batch, as a
        build does). Closing it releases the lock and the database."""
        store = IndexStore(self.location, writable=True, settings=self.settings, writer_lock=self.lock, database=self.db)
        self.lock = self.db = None  # the store's now
        return store

    def close(self) -> None:
        if self.collection is not None:
            self.collection.close()
            self.collection = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if self.db is not None:
            self.db.close()
            self.db = None


class MilvusRows:
    """The check's ``matrix`` of a database index: vectors by catalog row, read from Milvus by product id when
    indexed (a row without a vector there reads as zeros)."""

    def __init__(self, index: DatabaseIndex, id_of_row: dict[int, str], n_rows: int, dim: int):
        self.index = index
        self.id_of_row = id_of_row
        self.n_rows = n_rows
        self.dim = dim

    def __len__(self) -> int:
        return self.n_rows

    def __getitem__(self, rows) -> np.ndarray:
        ids = [self.id_of_row.get(int(r)) for r in rows]
        found = self.index.vectors([pid for pid in ids if pid is not None])
        out = np.zeros((len(ids), self.dim), np.float32)
        for i, pid in enumerate(ids):
            if pid in found:
                out[i] = found[pid]
        return out


__all__ = ["DatabaseIndex", "MilvusRows"]
