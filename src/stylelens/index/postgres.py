"""An index in PostgreSQL: catalog, manifest, artifacts and shopper events shared by every replica.

The tables (``migrations/``, applied with Alembic when an index opens, so an upgrade never needs a
rebuild) mirror an index folder: ``products`` is catalog.sqlite's table, ``artifacts`` holds
manifest.json and what ``tune`` writes, ``events`` is users.sqlite's. ``meta.version`` grows by one
in every transaction that changes anything; a replica compares it (at most every VERSION_POLL_S)
with the view it serves and reads a new one when it moved: the folder's live reload, over the network.
One writer at a time holds a PostgreSQL advisory lock, released by the server when its session ends
(a killed writer included). SQLAlchemy Core over psycopg 3, imported only when a location names it.

Its check reads the schema revision before opening (opening migrates), then the manifest and the catalog
rows from one snapshot; the vectors are the Milvus backend's to check.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import (DatabaseUnavailable, IndexBusyError, IndexDamagedError, IndexNotFoundError, InvalidArgumentError,
                      StylelensError, import_extra)
from .catalog_db import PRODUCT_COLUMNS, VIEW_FIELDS, CatalogMeta, Columns, columns_from, product_record
from .checkup import CheckedCatalog, Checkup
from .database import check_artifact_name, is_database, parse_database
from .manifest import MANIFEST, check_manifest, now

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_POLL_S = 0.5  # how stale a replica's view may be: one small query per this, not per search
LOCK_KEY = 0x5354594C454E53  # pg_advisory_lock key of an index's writer ("STYLENS")
_STORED = PRODUCT_COLUMNS + ("row", "image_path", "image_sha256", "extra")
_PRODUCT_SELECT = ", ".join(f'"{c}"' for c in PRODUCT_COLUMNS) + ", image_path, image_sha256, extra"
_BUMP = "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'version'"
REBUILD_DATABASE = ("rebuild the index into a new database (stylelens index CATALOG --out postgresql://USER@HOST:PORT/NEW_DB "
                    "--store milvus://HOST:PORT/NEW_COLLECTION)")


def _sqlalchemy():
    import_extra("psycopg", "psycopg[binary]", "postgres", "An index in PostgreSQL")
    return import_extra("sqlalchemy", "sqlalchemy", "postgres", "An index in PostgreSQL")


def make_engine(where, pool_size: int = 5):
    sa = _sqlalchemy()
    url = sa.engine.URL.create("postgresql+psycopg", username=where.user, host=where.host, port=where.port,
                               database=where.dbname)
    args = {"connect_timeout": 5, "application_name": "stylelens"}
    if where.password:
        args["password"] = where.password
    # pre_ping: a replica outlives a database restart (a dead pooled connection is replaced, not served).
    return sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_recycle=1800,
                            connect_args=args)


def unavailable(where, exc) -> DatabaseUnavailable:
    """One line saying what happened and what to do: PostgreSQL's own first line, without the driver's noise."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "password" in reason.lower() or "authentication" in reason.lower():
        hint = "Set STYLELENS_DATABASE_PASSWORD (or ~/.pgpass) to this user's password."
    elif "does not exist" in reason:
        hint = f"Create it (createdb -h {where.host} -p {where.port} {where.dbname}) or build the index there with stylelens index."
    else:
        hint = "Check that PostgreSQL is running and reachable at that address."
    missing = f'database "{where.dbname}" does not exist' in reason
    return DatabaseUnavailable(f"PostgreSQL at {where} failed: {reason}. {hint}", code="database_missing" if missing else None)


class PostgresDatabase:
    """The database of one index (one PostgreSQL database per index)."""

    shared = True

    def __init__(self, where, settings=None, create: bool = False, pool_size: int | None = None):
        self.location = where
        self.engine = make_engine(where, pool_size or (settings.database_pool if settings is not None else 5))
        try:
            self._connect_once()
        except DatabaseUnavailable:
            if not (create and self._last_error.code == "database_missing"):
                self.engine.dispose()
                raise
            self._create_database()
            self._connect_once()
        migrate(self)

    @classmethod
    def accepts(cls, location) -> bool:
        return is_database(location)

    @classmethod
    def locate(cls, location, settings):
        return parse_database(location, settings.database_password)

    @classmethod
    def open_events(cls, location) -> "PostgresEvents":
        return PostgresEvents(cls(parse_database(location), pool_size=2), owns=True)

    @contextmanager
    def begin(self):
        """A transaction; anything the driver raises becomes DatabaseUnavailable (503, one line)."""
        sa = _sqlalchemy()
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.DBAPIError as exc:
            raise unavailable(self.location, exc) from None

    def snapshot(self, products_sql: str) -> tuple[dict, list[tuple]]:
        """The meta table and one query of the products, from one snapshot (REPEATABLE READ): a writer that
        commits between the two reads cannot make them disagree."""
        sa = _sqlalchemy()
        with self.begin() as conn:
            conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            meta = dict(conn.execute(sa.text("SELECT key, value FROM meta")).fetchall())
            return meta, [tuple(r) for r in conn.execute(sa.text(products_sql)).fetchall()]

    def _connect_once(self) -> None:
        self._last_error = None
        sa = _sqlalchemy()
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.DBAPIError as exc:
            self._last_error = unavailable(self.location, exc)
            raise self._last_error from None

    def _create_database(self) -> None:
        """A new index on a server where its database does not exist yet: create it (as `createdb` would)."""
        from dataclasses import replace

        sa = _sqlalchemy()
        admin = make_engine(replace(self.location, dbname="postgres"), 1)
        try:
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{self.location.dbname}"'))
        except sa.exc.DBAPIError as exc:
            raise unavailable(self.location, exc) from None
        finally:
            admin.dispose()

    # ---- the Database protocol (index.database) ---------------------------------------------
    def exists(self) -> bool:
        return self.read_manifest() is not None

    def not_found(self) -> IndexNotFoundError:
        return IndexNotFoundError(f"No stylelens index in {self.location}. Build one with: stylelens index CATALOG_DIR "
                                  f"--out {self.location} --store milvus://HOST:PORT/COLLECTION")

    def prepare(self, vectors_kind: str) -> None:
        """Every replica reads this index: its vectors must be where every replica reaches them too."""
        if vectors_kind == "folder":
            raise InvalidArgumentError(f"An index in {self.location} keeps its vectors in a Milvus server, which every "
                                       "replica reaches: add --store milvus://HOST:PORT/COLLECTION.", code="bad_option")

    def read_manifest(self) -> dict | None:
        data = self._artifact(MANIFEST)
        if data is None:
            return None
        def damaged(why: str) -> IndexDamagedError:
            return IndexDamagedError(f"The manifest of the index in {self.location} is damaged: {why}. "
                                     "Rebuild the index into a new database.")

        try:
            manifest = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise damaged(f"it is not readable JSON ({type(exc).__name__})") from None
        return check_manifest(manifest, self.location, damaged)

    def write_manifest(self, manifest: dict) -> None:
        manifest["updated"] = now()
        self._put(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, default=str).encode())

    def catalog(self, writable: bool) -> "PostgresCatalog":
        return PostgresCatalog(self, writable)

    def create_catalog(self) -> None:
        """The tables exist from the migrations on."""

    def writer_lock(self) -> "PostgresLock":
        return PostgresLock(self)

    def read_artifact(self, name: str) -> bytes | None:
        return self._artifact(check_artifact_name(name))

    def write_artifact(self, name: str, data: bytes) -> None:
        self._put(check_artifact_name(name), bytes(data))

    def announce(self, catalog, what: str) -> None:
        """Nothing to do: every write moved the version in its own transaction."""

    def events(self) -> "PostgresEvents":
        return PostgresEvents(self, owns=False)

    def close(self) -> None:
        self.engine.dispose()

    def _artifact(self, name: str) -> bytes | None:
        sa = _sqlalchemy()
        with self.begin() as conn:
            row = conn.execute(sa.text("SELECT data FROM artifacts WHERE name = :n"), {"n": name}).fetchone()
        return None if row is None else bytes(row[0])

    def _put(self, name: str, data: bytes) -> None:
        """Written and made visible to every replica in one transaction (the version moves with it)."""
        sa = _sqlalchemy()
        with self.begin() as conn:
            conn.execute(sa.text("INSERT INTO artifacts (name, data, updated) VALUES (:n, :d, now()) "
                                 "ON CONFLICT (name) DO UPDATE SET data = EXCLUDED.data, updated = now()"), {"n": name, "d": data})
            conn.execute(sa.text(_BUMP))

    # ---- stylelens check -----------------------------------------------------------------
    @classmethod
    def inspect(cls, where, settings, checkup: Checkup) -> "PostgresDatabase | None":
        """The schema is at this stylelens's Alembic revision. An older one is migrated by the next command that opens
        the index (--repair: now); a newer one is left to the stylelens that wrote it. None: nothing more to check."""
        checkup.rebuild = REBUILD_DATABASE
        found = schema_revision(where)
        if found is None:
            raise _check_not_found(where)
        head, known = revisions()
        if found == head:
            return cls(where, settings)
        if found not in known:
            checkup.add("schema", "schema_unknown", f"it is at revision {found}, which this stylelens does not know (a newer "
                        "stylelens wrote it); check the index with that version. Nothing else was checked.")
            return None
        finding = checkup.add("schema", "schema_old", f"it is at revision {found}, this stylelens's is {head}: the next "
                              "command that opens the index migrates it (stylelens check INDEX --repair does it now). Nothing "
                              "else was checked.", repairable=True)
        if not checkup.repair:
            return None
        db = cls(where, settings)  # opening migrates
        checkup.repaired(finding, f"migrated the schema from revision {found} to {head}")
        return db

    def check(self, checkup: Checkup) -> CheckedCatalog:
        """The manifest and the catalog rows, read from one snapshot."""
        meta, rows = self.snapshot('SELECT id, "row", image_path, image_sha256 FROM products ORDER BY "row", id')
        if not rows and not self._has_manifest():
            raise _check_not_found(self.location)
        manifest = checkup.check_manifest(self.read_manifest, REBUILD_DATABASE, repairable=False)
        n_rows, generation = checkup.check_rows("products", meta, rows)
        return CheckedCatalog("products", manifest, meta, n_rows, generation)

    def _has_manifest(self) -> bool:
        try:
            return self.read_manifest() is not None
        except StylelensError:
            return True  # there, but damaged: a finding


def _check_not_found(where) -> IndexNotFoundError:
    return IndexNotFoundError(f"No stylelens index in {where}. Check the location, or build one there: "
                              f"stylelens index CATALOG --out {where} --store milvus://HOST:PORT/COLLECTION")


def schema_revision(where) -> str | None:
    """The schema's Alembic revision, None when the database has no stylelens tables (read without migrating)."""
    sa = _sqlalchemy()
    engine = make_engine(where, 1)
    try:
        with engine.connect() as conn:
            if conn.execute(sa.text("SELECT to_regclass('alembic_version')")).scalar() is None:
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except sa.exc.DBAPIError as exc:
        raise unavailable(where, exc) from None
    finally:
        engine.dispose()


def revisions() -> tuple[str, set[str]]:
    """(the newest schema revision this stylelens knows, every revision it knows)."""
    alembic_config = import_extra("alembic.config", "alembic", "postgres", "An index in PostgreSQL")
    from alembic.script import ScriptDirectory

    config = alembic_config.Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    return script.get_current_head(), {r.revision for r in script.walk_revisions()}


def migrate(db: PostgresDatabase) -> None:
    """Bring the schema to the newest revision; replicas starting together migrate once (advisory lock)."""
    sa = _sqlalchemy()
    alembic_config = import_extra("alembic.config", "alembic", "postgres", "An index in PostgreSQL")
    from alembic import command
    from alembic.script import ScriptDirectory

    config = alembic_config.Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    with db.begin() as conn:
        if conn.execute(sa.text("SELECT to_regclass('alembic_version')")).scalar() is not None:
            if conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == head:
                return
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY + 1})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


class PostgresLock:
    """The one writer of an index: a session-level advisory lock on a connection held until release."""

    def __init__(self, db: PostgresDatabase):
        self.db = db
        self.conn = None

    def acquire(self) -> "PostgresLock":
        sa = _sqlalchemy()
        try:
            conn = self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar():
                holder = conn.execute(sa.text("SELECT value FROM meta WHERE key = 'writer'")).scalar()
                conn.close()
                raise IndexBusyError(f"Index {self.db.location} is being changed by another writer ({_holder(holder)}). Wait "
                                     "for it to finish or stop it, then run this again; searching and serving are not affected.")
            conn.execute(sa.text("INSERT INTO meta VALUES ('writer', :v) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"),
                         {"v": json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                           "command": " ".join(sys.argv)[:300], "since": now()})})
        except sa.exc.DBAPIError as exc:
            raise unavailable(self.db.location, exc) from None
        self.conn = conn
        return self

    def release(self) -> None:
        if self.conn is not None:
            sa = _sqlalchemy()
            try:
                self.conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            except sa.exc.DBAPIError:  # the session is gone, and the lock with it
                pass
            self.conn.close()
            self.conn = None


def _holder(text) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']}, `{info['command']}`, since {info['since']}"
    except (TypeError, ValueError, KeyError):
        return "a process that has just started"


class PostgresCatalog(CatalogMeta):
    """catalog.sqlite's interface (``CatalogDB``) over the index's PostgreSQL tables."""

    def __init__(self, db: PostgresDatabase, writable: bool):
        self.db = db
        self.path = db.location  # what messages name
        self.writable = writable
        self._version = None
        self._version_at = 0.0
        self._version_lock = threading.Lock()
        self.n_rows  # noqa: B018 (fails now, with the one-line message, when the tables are not there)

    def close(self) -> None:
        """The engine belongs to the database."""

    def _q(self, sql: str, params: dict | None = None, *, write: bool = False):
        sa = _sqlalchemy()
        with self.db.begin() as conn:
            rows = conn.execute(sa.text(sql), params or {})
            out = rows.fetchall() if rows.returns_rows else rows.rowcount
            if write:
                conn.execute(sa.text(_BUMP))
        if write:
            self._version_at = 0.0  # a writer sees its own change at once
        return out

    def _write(self, statements) -> None:
        """(sql, params or list of params) pairs in one transaction that moves the version."""
        sa = _sqlalchemy()
        with self.db.begin() as conn:
            for sql, params in statements:
                if isinstance(params, list) and not params:
                    continue
                conn.execute(sa.text(sql), params)
            conn.execute(sa.text(_BUMP))
        self._version_at = 0.0

    # ---- meta ----------------------------------------------------------------------------
    def meta(self, key: str, default: str | None = None) -> str | None:
        rows = self._q("SELECT value FROM meta WHERE key = :k", {"k": key})
        return default if not rows else rows[0][0]

    def set_meta(self, key: str, value: str | None) -> None:
        self._write(_meta_statements({key: value}))

    def version(self) -> tuple:
        """The change counter, read at most every VERSION_POLL_S (a replica is that stale at most)."""
        if time.monotonic() - self._version_at > VERSION_POLL_S:
            with self._version_lock:
                if time.monotonic() - self._version_at > VERSION_POLL_S:
                    self._version = int(self.meta("version", "0"))
                    self._version_at = time.monotonic()
        return (self._version,)

    # ---- reading -------------------------------------------------------------------------
    def count(self) -> int:
        return self._q("SELECT count(*) FROM products")[0][0]

    def columns(self) -> Columns:
        """Every row's arrays from one snapshot: a consistent view of the catalog."""
        cols = ", ".join(f'"{c}"' for c in VIEW_FIELDS)
        meta, records = self.db.snapshot(f'SELECT {cols} FROM products WHERE "row" IS NOT NULL')
        version = (int(meta.get("version", 0)),)
        return columns_from(records, int(meta["n_rows"]), int(meta.get("generation", 0)), version, self.path)

    def products(self, pids) -> list[dict]:
        pids = [str(p) for p in pids]
        sql = f"SELECT {_PRODUCT_SELECT} FROM products WHERE id = ANY(:ids)"
        by_id = {rec[0]: product_record(rec) for rec in self._q(sql, {"ids": pids})} if pids else {}
        return [dict(by_id[p]) for p in pids if p in by_id]

    def image_hashes(self) -> dict[str, str]:
        return dict(self._q("SELECT id, image_sha256 FROM products"))

    def ids_with_hash(self, sha256: str) -> list[str]:
        return [r[0] for r in self._q("SELECT id FROM products WHERE image_sha256 = :s", {"s": sha256})]

    def live_rows(self) -> list[tuple[str, int]]:
        return [tuple(r) for r in self._q('SELECT id, "row" FROM products ORDER BY "row"')]

    def scalar_fields(self, pids, fields) -> dict[str, dict]:
        pids = [str(p) for p in pids]
        names = ", ".join(f'"{c}"' for c in fields)
        rows = self._q(f"SELECT id, {names} FROM products WHERE id = ANY(:ids)", {"ids": pids}) if pids else []
        return {rec[0]: dict(zip(("id",) + tuple(fields), rec)) for rec in rows}

    # ---- writing -------------------------------------------------------------------------
    def insert(self, records: list[dict], start: int, meta: dict[str, str | None] | None = None) -> None:
        rows = [dict({c: rec.get(c) for c in PRODUCT_COLUMNS}, in_stock=bool(rec.get("in_stock", True)), row=start + i,
                     image_path=rec.get("image_path"), image_sha256=rec.get("image_sha256"),
                     extra=json.dumps(rec.get("extra") or {}, default=str))
                for i, rec in enumerate(records)]
        columns = ", ".join(f'"{c}"' for c in _STORED)
        updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in _STORED if c != "id")
        self._write([(f"INSERT INTO products ({columns}) VALUES ({', '.join(':' + c for c in _STORED)}) "
                      f"ON CONFLICT (id) DO UPDATE SET {updates}", rows)]
                    + _meta_statements(dict(meta or {}, n_rows=str(start + len(records)))))

    def update(self, records: list[dict]) -> None:
        cols = PRODUCT_COLUMNS[1:]
        rows = [dict({c: rec.get(c) for c in cols}, in_stock=bool(rec.get("in_stock", True)), id=rec["id"],
                     extra=json.dumps(rec.get("extra") or {}, default=str)) for rec in records]
        sets = ", ".join(f'"{c}" = :{c}' for c in cols)
        self._write([(f"UPDATE products SET {sets}, extra = :extra WHERE id = :id", rows)])

    def delete(self, pids) -> int:
        pids = [str(p) for p in pids]
        if not pids:
            return 0
        sa = _sqlalchemy()
        with self.db.begin() as conn:
            n = conn.execute(sa.text("DELETE FROM products WHERE id = ANY(:ids)"), {"ids": pids}).rowcount
            conn.execute(sa.text(_BUMP))
        self._version_at = 0.0
        return n

    def forget_hashes(self, pids) -> None:
        self._write([("UPDATE products SET image_sha256 = NULL WHERE id = ANY(:ids)", {"ids": [str(p) for p in pids]})])

    def renumber(self, live_ids: list[str], generation: int) -> None:
        self._write([('UPDATE products SET "row" = -"row" - 1', {}),
                     ('UPDATE products SET "row" = :r WHERE id = :id', [{"r": i, "id": pid} for i, pid in enumerate(live_ids)])]
                    + _meta_statements({"n_rows": str(len(live_ids)), "generation": str(generation)}))


def _meta_statements(meta: dict[str, str | None]) -> list[tuple[str, dict]]:
    return [("DELETE FROM meta WHERE key = :k", {"k": key}) if value is None else
            ("INSERT INTO meta VALUES (:k, :v) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", {"k": key, "v": value})
            for key, value in meta.items()]


class PostgresEvents:
    """users.sqlite's interface (``index.events.SqliteEvents``) over the ``events`` table: every replica's likes."""

    def __init__(self, db: PostgresDatabase, owns: bool):
        self.db = db
        self.owns = owns

    def close(self) -> None:
        if self.owns:
            self.db.close()

    def append(self, user: str, kind: str, product_id: str | None, sha256: str | None, vector: bytes | None) -> None:
        sa = _sqlalchemy()
        with self.db.begin() as conn:
            if kind == "upload" and sha256:
                conn.execute(sa.text("DELETE FROM events WHERE shopper = :u AND kind = 'upload' AND sha256 = :s"),
                             {"u": user, "s": sha256})
            conn.execute(sa.text("INSERT INTO events (shopper, kind, product_id, sha256, vector, at) "
                                 "VALUES (:u, :k, :p, :s, :v, :at)"),
                         {"u": user, "k": kind, "p": product_id, "s": sha256, "v": vector, "at": time.time()})

    def rows(self, user: str) -> list[tuple[str, str | None, bytes | None]]:
        sa = _sqlalchemy()
        with self.db.begin() as conn:
            rows = conn.execute(sa.text("SELECT kind, product_id, vector FROM events WHERE shopper = :u ORDER BY seq"),
                                {"u": user}).fetchall()
        return [(k, p, None if v is None else bytes(v)) for k, p, v in rows]

    def forget(self, user: str) -> int:
        sa = _sqlalchemy()
        with self.db.begin() as conn:
            return conn.execute(sa.text("DELETE FROM events WHERE shopper = :u"), {"u": user}).rowcount

    def users(self) -> list[str]:
        sa = _sqlalchemy()
        with self.db.begin() as conn:
            return [r[0] for r in conn.execute(sa.text("SELECT DISTINCT shopper FROM events ORDER BY shopper"))]
