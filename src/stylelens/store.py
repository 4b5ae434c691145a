"""The index folder: vectors (float32, memory-mapped), the catalog table (SQLite) and manifest.json.

Crash safety: vectors are appended to ``vectors-<generation>.f32`` and fsync'd *before* the SQLite
transaction that makes them visible (products -> row, meta.n_rows) commits. Rows past the committed
``n_rows`` belong to a batch that never committed and are cut off when the store is next opened for
writing. A vector row is never rewritten in place; deletes and updates leave dead rows that
``compact()`` removes by writing a new generation.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import IndexMismatchError, IndexNotFoundError, ProductNotFoundError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CATALOG_DB = "catalog.sqlite"
# Columns with a fixed meaning; anything else from the feed lives in 'extra' (JSON).
PRODUCT_COLUMNS = ("id", "name", "type", "gender", "colour", "price", "currency", "url", "in_stock",
                   "category", "subcategory", "season", "usage")
LABEL_COLUMNS = ("type", "gender", "colour", "category", "subcategory", "season", "usage")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    id TEXT PRIMARY KEY, row INTEGER UNIQUE,
    name TEXT, type TEXT, gender TEXT, colour TEXT, price REAL, currency TEXT, url TEXT,
    in_stock INTEGER NOT NULL DEFAULT 1, category TEXT, subcategory TEXT, season TEXT, usage TEXT,
    image_path TEXT, image_sha256 TEXT, extra TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Every query looks its upload up by image hash (is it a catalog photo?): without this, a table scan.
CREATE INDEX IF NOT EXISTS products_image_sha256 ON products (image_sha256);
"""


@dataclass
class Columns:
    """Per-row arrays for vectorised filtering and voting (row = position in the vectors file)."""

    ids: np.ndarray  # object, None for dead rows
    live: np.ndarray  # bool
    price: np.ndarray  # float64, NaN when unknown
    in_stock: np.ndarray  # bool
    codes: dict[str, np.ndarray]  # label column -> int32 codes (-1 unknown)
    vocab: dict[str, list[str]]  # label column -> values by code
    row_of: dict[str, int]

    def code(self, column: str, value: str) -> int | None:
        """Case-insensitive lookup of a label value's code."""
        wanted = value.strip().lower()
        for i, v in enumerate(self.vocab[column]):
            if v.lower() == wanted:
                return i
        return None


class IndexStore:
    """One index folder. ``open(path)`` for reading (vectors memory-mapped); ``open(path, writable=True)`` to change it."""

    def __init__(self, path: Path, db: sqlite3.Connection, manifest: dict, writable: bool):
        self.path = path
        self.db = db
        self.manifest = manifest
        self.writable = writable
        self._columns: Columns | None = None
        self._vectors: np.ndarray | None = None

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def create(cls, path, fingerprint: dict, versions: dict) -> "IndexStore":
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if (path / MANIFEST).exists():
            return cls.open(path, writable=True, expect=fingerprint)
        if any(path.iterdir()):
            raise IndexNotFoundError(f"{path} is not empty and is not a stylelens index. Choose a new or empty --out folder.", code="not_an_index")
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        manifest = {"format": "stylelens-index", "format_version": FORMAT_VERSION, "embedder": fingerprint,
                    "versions": versions, "created": now, "updated": now, "counts": {"products": 0}}
        db = cls._connect(path)
        with db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('n_rows', '0'), ('generation', '0')")
        write_json_atomic(path / MANIFEST, manifest)
        return cls(path, db, manifest, writable=True)

    @classmethod
    def open(cls, path, writable: bool = False, expect: dict | None = None) -> "IndexStore":
        path = Path(path)
        if not (path / MANIFEST).is_file() or not (path / CATALOG_DB).is_file():
            raise IndexNotFoundError(f"No stylelens index at {path}. Build one with: stylelens index CATALOG_DIR --out {path}")
        manifest = json.loads((path / MANIFEST).read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise IndexMismatchError(f"Index {path} has format version {manifest.get('format_version')}; this stylelens reads {FORMAT_VERSION}. Rebuild the index.")
        if expect is not None:
            check_compatible(manifest["embedder"], expect, path)
        if cls is IndexStore and (manifest.get("vectors") or {}).get("location"):
            from .scale import store_class  # vectors kept elsewhere (Milvus): that store class opens the folder

            cls = store_class(manifest["vectors"]["location"])
        store = cls(path, cls._connect(path), manifest, writable)
        if writable:
            store._truncate_uncommitted()
        return store

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path / CATALOG_DB, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        return db

    def close(self) -> None:
        self._vectors = None
        self.db.close()

    # ---- meta ----------------------------------------------------------------------------
    def _meta(self, key: str) -> str:
        return self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0]

    @property
    def dim(self) -> int:
        return int(self.manifest["embedder"]["dim"])

    @property
    def n_rows(self) -> int:
        return int(self._meta("n_rows"))

    @property
    def vectors_file(self) -> Path:
        return self.path / f"vectors-{self._meta('generation')}.f32"

    def _truncate_uncommitted(self) -> None:
        f = self.vectors_file
        size = self.n_rows * self.dim * 4
        if f.exists() and f.stat().st_size > size:
            with open(f, "r+b") as fh:
                fh.truncate(size)
        for stale in self.path.glob("vectors-*.f32"):  # left by an interrupted compaction
            if stale != f:
                stale.unlink()

    # ---- reading -------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM products").fetchone()[0]

    @property
    def vectors(self) -> np.ndarray:
        """All rows (live and dead), memory-mapped read-only. Use ``columns.live`` to tell them apart."""
        if self._vectors is None or len(self._vectors) != self.n_rows:
            n = self.n_rows
            if n == 0:
                self._vectors = np.zeros((0, self.dim), np.float32)
            else:
                self._vectors = np.memmap(self.vectors_file, dtype=np.float32, mode="r", shape=(n, self.dim))
        return self._vectors

    @property
    def columns(self) -> Columns:
        if self._columns is None:
            self._columns = self._load_columns()
        return self._columns

    def _load_columns(self) -> Columns:
        n = self.n_rows
        ids = np.full(n, None, dtype=object)
        live = np.zeros(n, bool)
        price = np.full(n, np.nan)
        in_stock = np.ones(n, bool)
        codes = {c: np.full(n, -1, np.int32) for c in LABEL_COLUMNS}
        vocab: dict[str, list[str]] = {c: [] for c in LABEL_COLUMNS}
        index: dict[str, dict[str, int]] = {c: {} for c in LABEL_COLUMNS}
        cols = ", ".join(("row", "id", "price", "in_stock") + LABEL_COLUMNS)
        for rec in self.db.execute(f"SELECT {cols} FROM products WHERE row IS NOT NULL"):
            r = rec[0]
            ids[r], live[r] = rec[1], True
            price[r] = np.nan if rec[2] is None else rec[2]
            in_stock[r] = bool(rec[3])
            for c, value in zip(LABEL_COLUMNS, rec[4:]):
                if value is not None:
                    code = index[c].get(value)
                    if code is None:
                        code = index[c][value] = len(vocab[c])
                        vocab[c].append(value)
                    codes[c][r] = code
        row_of = {pid: r for r, pid in enumerate(ids) if pid is not None}
        return Columns(ids, live, price, in_stock, codes, vocab, row_of)

    def product(self, pid: str) -> dict:
        cur = self.db.execute(f"SELECT {', '.join(PRODUCT_COLUMNS)}, image_path, image_sha256, extra FROM products WHERE id=?", (str(pid),))
        rec = cur.fetchone()
        if rec is None:
            raise ProductNotFoundError(f"No product with id '{pid}' in this index. Check the id (stylelens info lists counts).")
        return _row_to_product(rec)

    def products(self, pids) -> list[dict]:
        return [self.product(p) for p in pids]

    def image_hashes(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT id, image_sha256 FROM products"))

    def ids_with_hash(self, sha256: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM products WHERE image_sha256=?", (sha256,))]

    # ---- writing -------------------------------------------------------------------------
    def add(self, records: list[dict], vectors: np.ndarray) -> None:
        """Insert or replace products with their vectors, atomically (a crash keeps all or none)."""
        assert self.writable, "open the store with writable=True"
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(records), self.dim):
            raise ValueError(f"expected {len(records)} vectors of dim {self.dim}, got {vectors.shape}")
        start = self.n_rows
        with open(self.vectors_file, "ab") as fh:
            fh.write(vectors.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        self._insert_products(records, start)

    def _insert_products(self, records: list[dict], start: int, *extra_sql: str) -> None:
        """Make records visible at rows start.. in one transaction (with ``extra_sql`` statements)."""
        rows = []
        for i, rec in enumerate(records):
            rows.append(tuple(rec.get(c) for c in PRODUCT_COLUMNS[:8]) + (1 if rec.get("in_stock", True) else 0,)
                        + tuple(rec.get(c) for c in PRODUCT_COLUMNS[9:])
                        + (start + i, rec.get("image_path"), rec.get("image_sha256"), json.dumps(rec.get("extra") or {}, default=str)))
        cols = PRODUCT_COLUMNS + ("row", "image_path", "image_sha256", "extra")
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(f"INSERT OR REPLACE INTO products ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
            self.db.execute("UPDATE meta SET value=? WHERE key='n_rows'", (str(start + len(records)),))
            for sql in extra_sql:
                self.db.execute(sql)
        self._changed()

    def update_records(self, records: list[dict]) -> None:
        """Change product fields (price, stock, name...) without touching vectors."""
        cols = [c for c in PRODUCT_COLUMNS[1:]]
        with self.db:
            self.db.execute("BEGIN")
            for rec in records:
                values = [rec.get(c) if c != "in_stock" else (1 if rec.get("in_stock", True) else 0) for c in cols]
                self.db.execute(f"UPDATE products SET {', '.join(c + '=?' for c in cols)}, extra=? WHERE id=?",
                                values + [json.dumps(rec.get("extra") or {}, default=str), rec["id"]])
        self._changed()

    def delete(self, pids) -> int:
        """Remove products; returns how many existed. Their vector rows become dead until compact()."""
        pids = [str(p) for p in pids]
        with self.db:
            self.db.execute("BEGIN")
            n = 0
            for pid in pids:
                n += self.db.execute("DELETE FROM products WHERE id=?", (pid,)).rowcount
        self._changed()
        return n

    def dead_rows(self) -> int:
        return self.n_rows - len(self)

    def compact(self) -> int:
        """Rewrite the vectors without dead rows. Crash-safe: a new generation file, then one commit."""
        n_dead = self.dead_rows()
        if n_dead == 0:
            return 0
        old_file = self.vectors_file
        gen = int(self._meta("generation")) + 1
        new_file = self.path / f"vectors-{gen}.f32"
        live = list(self.db.execute("SELECT id, row FROM products ORDER BY row"))
        vecs = self.vectors
        with open(new_file, "wb") as fh:
            for start in range(0, len(live), 4096):
                fh.write(np.ascontiguousarray(vecs[[r for _, r in live[start:start + 4096]]]).tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("UPDATE products SET row = -row - 1")  # avoid UNIQUE clashes while renumbering
            self.db.executemany("UPDATE products SET row=? WHERE id=?", [(i, pid) for i, (pid, _) in enumerate(live)])
            self.db.execute("UPDATE meta SET value=? WHERE key='n_rows'", (str(len(live)),))
            self.db.execute("UPDATE meta SET value=? WHERE key='generation'", (str(gen),))
        self._vectors = None
        old_file.unlink(missing_ok=True)
        self._changed()
        return n_dead

    def set_manifest(self, **fields) -> None:
        self.manifest.update(fields)
        self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.manifest["counts"] = {"products": len(self), "vector_rows": self.n_rows, "dead_rows": self.dead_rows()}
        write_json_atomic(self.path / MANIFEST, self.manifest)

    def _changed(self) -> None:
        self._columns = None
        self._vectors = None


def remove_products(index_path, ids) -> tuple[int, list[str]]:
    """Delete products by id, wherever the index keeps its vectors; compact them and bring the ANN
    index up to date. Returns (removed, ids not found)."""
    from .ann import maintain

    store = IndexStore.open(index_path, writable=True)
    try:
        ids = [str(i) for i in ids]
        known = set(store.columns.row_of)
        missing = [i for i in ids if i not in known]
        removed = store.delete([i for i in ids if i in known])
        store.compact()
        maintain(store)
        store.set_manifest()
        return removed, missing
    finally:
        store.close()


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


def _row_to_product(rec) -> dict:
    product = dict(zip(PRODUCT_COLUMNS, rec[: len(PRODUCT_COLUMNS)]))
    product["in_stock"] = bool(product["in_stock"])
    n = len(PRODUCT_COLUMNS)
    product["image_path"], product["image_sha256"] = rec[n], rec[n + 1]
    product["extra"] = json.loads(rec[n + 2] or "{}")
    return product


def write_json_atomic(path: Path, data: dict) -> None:
    """Readers see the old file or the new one, never half of one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)
