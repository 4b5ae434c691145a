"""catalog.sqlite: the product records of an index and the row each one's vector sits at.

A row is the product's handle into the vector backend (a position in the folder's vectors file; a
local number for Milvus). ``meta`` holds ``n_rows`` (rows ever written, live or dead) and the vectors
``generation``; a batch becomes visible in one transaction.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import IndexDamagedError, ProductNotFoundError

CATALOG_DB = "catalog.sqlite"
# Columns with a fixed meaning; anything else from the feed lives in 'extra' (JSON).
PRODUCT_COLUMNS = ("id", "name", "type", "gender", "colour", "price", "currency", "url", "in_stock",
                   "category", "subcategory", "season", "usage")
LABEL_COLUMNS = ("type", "gender", "colour", "category", "subcategory", "season", "usage")
_STORED = PRODUCT_COLUMNS + ("row", "image_path", "image_sha256", "extra")
_SQL_VARIABLES = 900  # below SQLite's bound-parameter limit
# A product's further pictures (a feed's additional images) are rows of their own, "views", with the product's
# fields copied (filters work on them unchanged) and the id PRODUCT_ID + VIEW_MARK + n. Queries fold a product's
# views into one result (``Columns.owner``). The mark holds a unit separator, which no feed id may hold
# (ids with control characters are refused), so a shop's own id is never read as a view.
VIEW_MARK = "\x1fview"

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


CODES_KEPT = 4096  # label values a view remembers the code of (``Columns.code``)
MASKS_KEPT = 64  # sets of label codes a view remembers the rows of (``Columns.rows_with``: groups, narrowed types)


@dataclass
class Columns:
    """Per-row arrays for vectorised filtering and voting (row = the vector's handle)."""

    ids: np.ndarray  # object, None for dead rows
    live: np.ndarray  # bool
    price: np.ndarray  # float64, NaN when unknown
    in_stock: np.ndarray  # bool
    codes: dict[str, np.ndarray]  # label column -> int32 codes (-1 unknown)
    vocab: dict[str, list[str]]  # label column -> values by code
    row_of: dict[str, int]
    generation: int = 0  # of the vectors file these rows index
    version: tuple = ()  # the catalog state they were read at (CatalogDB.version)
    owner: np.ndarray | None = None  # int64: the row standing for each row's product (its own row but for a view)
    views_per_product: int = 1  # the most rows one product has (1: no views); searches fetch that many times more

    # (column, value) -> code, as ``code`` answered it: a view's vocabulary never changes, and a shop-the-look
    # query asks for every type the type model knows per garment (a scan of the vocabulary each, ~50 ms a photo).
    _codes: dict = field(default_factory=dict, repr=False, compare=False)
    # (column, codes) -> the rows with one of those codes (``rows_with``); a worn garment asks for its group's
    # types three times a query (its pass, its neighbours, its results), each a scan of every row.
    _masks: dict = field(default_factory=dict, repr=False, compare=False)
    _members: tuple | None = field(default=None, repr=False, compare=False)  # ``_product_members``, made once

    def owners(self, rows: np.ndarray) -> np.ndarray:
        """Each row's product row (a view's product; -1 padding stays)."""
        rows = np.asarray(rows, np.int64)
        if self.owner is None or self.views_per_product == 1:
            return rows
        return np.where(rows >= 0, self.owner[np.maximum(rows, 0)], rows)

    def rows_of_product(self, row: int) -> np.ndarray:
        """A product's live rows: its own first, then its views in row order."""
        if self.owner is None or self.views_per_product == 1:
            return np.asarray([row], np.int64)
        others = self._members_of(row)
        return np.concatenate([[row], others[others != row]]).astype(np.int64)

    def product_views(self, rows: np.ndarray) -> dict[int, list[int]]:
        """The live rows of each of these products (rows standing for them) that has views: its own row first,
        then its views in row order, by its row, the products in the order of their lowest live row; {} in a
        catalog without views."""
        rows = np.asarray(rows, np.int64)
        if self.owner is None or self.views_per_product == 1 or not len(rows):
            return {}
        members = {row: self._members_of(row) for row in np.unique(rows[rows >= 0]).tolist()}
        return {row: [row] + [r for r in rs.tolist() if r != row]
                for row, rs in sorted(((row, rs) for row, rs in members.items() if len(rs)), key=lambda m: m[1][0])
                if len(rs) > 1 or product_of(self.ids[row]) != self.ids[row]}

    def _members_of(self, row: int) -> np.ndarray:
        """The live rows whose product ``row`` stands for, in row order (a slice of ``_product_members``)."""
        if self._members is None:
            self._members = self._product_members()
        order, owners = self._members
        return order[np.searchsorted(owners, row, "left"):np.searchsorted(owners, row, "right")]

    def _product_members(self) -> tuple[np.ndarray, np.ndarray]:
        """Every live row sorted by the row standing for its product, then by row, and those rows alike: a
        product's rows are one slice, found by bisection instead of a scan of every row per product."""
        live = np.flatnonzero(self.live)
        owners = self.owner[live]
        by_owner = np.argsort(owners, kind="stable")
        return live[by_owner], owners[by_owner]

    def rows_with(self, column: str, codes) -> np.ndarray:
        """The rows (live or dead) whose ``column`` code is one of ``codes``, read-only, remembered per view."""
        key = (column, tuple(sorted(set(codes))))
        mask = self._masks.get(key)
        if mask is None:
            mask = np.isin(self.codes[column], key[1])
            mask.flags.writeable = False  # shared by every query on this view
            if len(self._masks) < MASKS_KEPT:
                self._masks[key] = mask
        return mask

    @property
    def n_rows(self) -> int:
        return len(self.live)

    def fit(self, mask):
        """A row mask made on an older view, fitted to this one: rows it did not have are not searched, dead ones
        neither. A mask of this view's size is returned as it is."""
        if mask is None or len(mask) == self.n_rows:
            return mask
        fitted = np.zeros(self.n_rows, bool)
        n = min(len(mask), self.n_rows)
        fitted[:n] = mask[:n]
        return fitted & self.live

    def code(self, column: str, value: str) -> int | None:
        """A label value's code, matched leniently: case, punctuation and a plural 's' do not matter
        ('tshirt' finds 'Tshirts', 't-shirts' too). An exact (case-insensitive) match wins."""
        key = (column, value)
        if key in self._codes:
            return self._codes[key]
        code = self._find_code(column, value)
        if len(self._codes) < CODES_KEPT:  # values typed by shoppers are unbounded: the memo is not
            self._codes[key] = code
        return code

    def _find_code(self, column: str, value: str) -> int | None:
        wanted = value.strip().lower()
        forms = label_forms(wanted)
        loose = None
        for i, v in enumerate(self.vocab[column]):
            if v.lower() == wanted:
                return i
            if loose is None and forms & label_forms(v):
                loose = i
        return loose


def columns_from(records, n: int, generation: int, version: tuple, where) -> Columns:
    """Columns from (row, id, price, in_stock, *LABEL_COLUMNS) records of one consistent read of any catalog."""
    ids = np.full(n, None, dtype=object)
    live = np.zeros(n, bool)
    price = np.full(n, np.nan)
    in_stock = np.ones(n, bool)
    codes = {c: np.full(n, -1, np.int32) for c in LABEL_COLUMNS}
    vocab: dict[str, list[str]] = {c: [] for c in LABEL_COLUMNS}
    index: dict[str, dict[str, int]] = {c: {} for c in LABEL_COLUMNS}
    for rec in records:
        r = rec[0]
        if not 0 <= r < n:
            raise IndexDamagedError(f"The index at {where} is damaged: product {rec[1]} points at vector row {r} of {n}. "
                                    f"Run stylelens check {where} --repair, then stylelens index CATALOG --out "
                                    f"{where} to add such products again. Rebuild the index into a new folder or "
                                    "database (stylelens index CATALOG --out NEW_LOCATION) only if the check cannot repair it.")
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
    owner, most = view_owners(ids, row_of)
    return Columns(ids, live, price, in_stock, codes, vocab, row_of, generation, version, owner, most)


def view_id(pid: str, n: int) -> str:
    """The id of a product's n-th further picture (n >= 1: the feed's images after the main one)."""
    return f"{pid}{VIEW_MARK}{n}"


def product_of(row_id: str) -> str:
    """The product a row's id belongs to: a view's product, else the id itself."""
    return row_id.split(VIEW_MARK, 1)[0] if VIEW_MARK in row_id else row_id


def view_owners(ids: np.ndarray, row_of: dict[str, int]) -> tuple[np.ndarray | None, int]:
    """(row -> the row standing for its product, the most rows of one product). A view whose product has no
    row of its own (its main picture could not be had) stands for the product: its product's lowest view row."""
    views = [(r, pid) for r, pid in enumerate(ids) if pid is not None and VIEW_MARK in pid]
    if not views:
        return None, 1
    owner = np.arange(len(ids), dtype=np.int64)
    count: dict[int, int] = {}
    for r, pid in views:
        product = product_of(pid)
        main = row_of.get(product)
        if main is None:
            main = row_of[product] = r  # the first view found (lowest row) stands for it; later ones join it
        owner[r] = main
        count[main] = count.get(main, 1) + (main != r)
    return owner, max(count.values())


def label_key(value: str) -> str:
    """A label value as shoppers may type it: lower case, letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", value.lower())


def label_forms(value: str) -> set[str]:
    """The key and its singulars ('dresses' -> dresse, dress; 'accessories' -> accessory): two values
    name the same label when their forms meet."""
    key = label_key(value)
    forms = {key}
    if key.endswith("ies") and len(key) > 4:
        forms.add(key[:-3] + "y")
    for ending in ("es", "s"):
        if key.endswith(ending) and len(key) > len(ending) + 2:
            forms.add(key[: -len(ending)])
    return forms


# The per-row fields a catalog view is made of, in the order ``columns_from`` reads them.
VIEW_FIELDS = ("row", "id", "price", "in_stock") + LABEL_COLUMNS


class CatalogMeta:
    """What every catalog (SQLite here, PostgreSQL in ``postgres``) derives from its meta table and its
    ``products`` lookup."""

    def meta(self, key: str, default: str | None = None) -> str | None:
        raise NotImplementedError

    def products(self, pids) -> list[dict]:
        raise NotImplementedError

    def product(self, pid: str) -> dict:
        found = self.products([pid])
        if not found:
            raise ProductNotFoundError(f"No product with id '{pid}' in this index. Check the id (stylelens info lists counts).")
        return found[0]

    @property
    def n_rows(self) -> int:
        return int(self.meta("n_rows"))

    @property
    def generation(self) -> int:
        return int(self.meta("generation", "0"))


class CatalogDB(CatalogMeta):
    """The SQLite catalog of one index folder."""

    def __init__(self, folder: Path, writable: bool):
        self.path = Path(folder) / CATALOG_DB
        self.writable = writable
        self.local_writes = 0  # data_version does not count this connection's own commits
        try:
            self.db = self._connect()
            self.db.execute("SELECT value FROM meta WHERE key='n_rows'").fetchone()[0]
        except (sqlite3.DatabaseError, TypeError) as exc:  # TypeError: no n_rows row
            raise IndexDamagedError(f"The index file {self.path} is damaged ({_reason(exc)}). Rebuild the index into a new "
                                    f"folder (stylelens index CATALOG --out NEW_FOLDER).") from None

    @staticmethod
    def create(folder: Path) -> None:
        db = sqlite3.connect(Path(folder) / CATALOG_DB, isolation_level=None)
        db.executescript(_SCHEMA)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('n_rows', '0'), ('generation', '0')")
        db.close()

    def _connect(self) -> sqlite3.Connection:
        if self.writable:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            return db
        # Readers never write: a read-only folder (a mounted volume, a shared snapshot) can be served.
        mode = "ro" if os.access(self.path.parent, os.W_OK) else "ro&immutable=1"
        return sqlite3.connect(f"file:{self.path}?mode={mode}", uri=True, check_same_thread=False, isolation_level=None)

    def close(self) -> None:
        if self.writable:
            # Everything into the main file: a copy, a backup or a read-only mount of the folder then holds
            # the whole catalog (an immutable reader does not look at the -wal file).
            try:
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError:  # a reader is mid-transaction: the next writer's close does it
                pass
            except sqlite3.ProgrammingError:  # closed already: closing twice is fine
                return
        self.db.close()

    # ---- meta ----------------------------------------------------------------------------
    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else row[0]

    def set_meta(self, key: str, value: str | None) -> None:
        self.local_writes += 1
        with self.db:
            if value is None:
                self.db.execute("DELETE FROM meta WHERE key=?", (key,))
            else:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # ---- reading -------------------------------------------------------------------------
    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM products").fetchone()[0]

    def version(self) -> tuple:
        """Changes whenever anyone commits: another process (SQLite's data_version) or this connection."""
        return (self.db.execute("PRAGMA data_version").fetchone()[0], self.local_writes)

    def columns(self) -> Columns:
        """Every row's arrays, read in one transaction: a consistent view of the catalog."""
        with self.db:
            self.db.execute("BEGIN")
            return self._columns()

    def _columns(self) -> Columns:
        cols = ", ".join(VIEW_FIELDS)
        return columns_from(self.db.execute(f"SELECT {cols} FROM products WHERE row IS NOT NULL"), self.n_rows,
                            self.generation, self.version(), self.path.parent)

    def products(self, pids) -> list[dict]:
        """Records of the given ids, in the order given (unknown ids left out), in one query per 900 ids."""
        pids = [str(p) for p in pids]
        by_id = {}
        for start in range(0, len(pids), _SQL_VARIABLES):
            chunk = pids[start:start + _SQL_VARIABLES]
            sql = (f"SELECT {', '.join(PRODUCT_COLUMNS)}, image_path, image_sha256, extra FROM products "
                   f"WHERE id IN ({', '.join('?' * len(chunk))})")
            for rec in self.db.execute(sql, chunk):
                by_id[rec[0]] = product_record(rec)
        return [dict(by_id[p]) for p in pids if p in by_id]

    def image_hashes(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT id, image_sha256 FROM products"))

    def ids_with_hash(self, sha256: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM products WHERE image_sha256=?", (sha256,))]

    def live_rows(self) -> list[tuple[str, int]]:
        return list(self.db.execute("SELECT id, row FROM products ORDER BY row"))

    def scalar_fields(self, pids, fields) -> dict[str, dict]:
        out = {}
        pids = [str(p) for p in pids]
        for start in range(0, len(pids), _SQL_VARIABLES):
            chunk = pids[start:start + _SQL_VARIABLES]
            sql = f"SELECT id, {', '.join(fields)} FROM products WHERE id IN ({', '.join('?' * len(chunk))})"
            for rec in self.db.execute(sql, chunk):
                out[rec[0]] = dict(zip(("id",) + tuple(fields), rec))
        return out

    # ---- writing -------------------------------------------------------------------------
    def insert(self, records: list[dict], start: int, meta: dict[str, str | None] | None = None) -> None:
        """Make records visible at rows start.. in one transaction, with ``meta`` changes (None deletes a key)."""
        self.local_writes += 1
        rows = [tuple(rec.get(c) for c in PRODUCT_COLUMNS[:8]) + (1 if rec.get("in_stock", True) else 0,)
                + tuple(rec.get(c) for c in PRODUCT_COLUMNS[9:])
                + (start + i, rec.get("image_path"), rec.get("image_sha256"), json.dumps(rec.get("extra") or {}, default=str))
                for i, rec in enumerate(records)]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(f"INSERT OR REPLACE INTO products ({', '.join(_STORED)}) VALUES ({', '.join('?' * len(_STORED))})", rows)
            self.db.execute("UPDATE meta SET value=? WHERE key='n_rows'", (str(start + len(records)),))
            self._meta_in_transaction(meta or {})

    def update(self, records: list[dict]) -> None:
        """Change product fields (price, stock, name...) without touching rows."""
        self.local_writes += 1
        cols = PRODUCT_COLUMNS[1:]
        with self.db:
            self.db.execute("BEGIN")
            for rec in records:
                values = [rec.get(c) if c != "in_stock" else (1 if rec.get("in_stock", True) else 0) for c in cols]
                self.db.execute(f"UPDATE products SET {', '.join(c + '=?' for c in cols)}, extra=? WHERE id=?",
                                values + [json.dumps(rec.get("extra") or {}, default=str), rec["id"]])

    def delete(self, pids) -> int:
        self.local_writes += 1
        with self.db:
            self.db.execute("BEGIN")
            return sum(self.db.execute("DELETE FROM products WHERE id=?", (str(pid),)).rowcount for pid in pids)

    def forget_hashes(self, pids) -> None:
        """The next build embeds these products again."""
        self.local_writes += 1
        with self.db:
            self.db.executemany("UPDATE products SET image_sha256=NULL WHERE id=?", [(str(p),) for p in pids])

    def renumber(self, live_ids: list[str], generation: int) -> None:
        """Rows 0.. in the order given, with a new vectors generation, in one transaction."""
        self.local_writes += 1
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("UPDATE products SET row = -row - 1")  # avoid UNIQUE clashes while renumbering
            self.db.executemany("UPDATE products SET row=? WHERE id=?", [(i, pid) for i, pid in enumerate(live_ids)])
            self.db.execute("UPDATE meta SET value=? WHERE key='n_rows'", (str(len(live_ids)),))
            self._meta_in_transaction({"generation": str(generation)})

    def _meta_in_transaction(self, meta: dict[str, str | None]) -> None:
        for key, value in meta.items():
            if value is None:
                self.db.execute("DELETE FROM meta WHERE key=?", (key,))
            else:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


def product_record(rec) -> dict:
    """A product dict from a row of PRODUCT_COLUMNS + (image_path, image_sha256, extra)."""
    product = dict(zip(PRODUCT_COLUMNS, rec[: len(PRODUCT_COLUMNS)]))
    product["in_stock"] = bool(product["in_stock"])
    n = len(PRODUCT_COLUMNS)
    product["image_path"], product["image_sha256"] = rec[n], rec[n + 1]
    product["extra"] = json.loads(rec[n + 2] or "{}")
    return product


def _reason(exc: Exception) -> str:
    return "no row count in its meta table" if isinstance(exc, TypeError) else str(exc)
