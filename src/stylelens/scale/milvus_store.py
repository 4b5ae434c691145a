"""Milvus as the vector store: the index folder keeps manifest + catalog, the vectors live in a collection.

One collection per index, keyed by product id, holding the unit vector and the scalar fields that
filters read (labels, price, in_stock), so a filtered top-k runs inside Milvus as a boolean
expression. Metric: inner product on unit vectors (= cosine, as the exact store). Index type: FLAT
(exact) by default on Milvus Lite, HNSW on a server; IVF_FLAT / IVF_PQ / AUTOINDEX by ``?index=``.

Crash safety mirrors the folder store: before a batch is sent to Milvus its ids are written to
catalog.sqlite as 'pending'; the SQLite commit that makes them visible clears the mark. Opening for
writing deletes pending ids that never committed, so an interrupted build resumes without orphans.
The collection carries the embedder fingerprint and the owning index's id as properties; a
mismatch is refused like a mismatched index folder.
"""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

import numpy as np

from .. import config
from ..errors import (CatalogError, IndexMismatchError, IndexNotFoundError, InvalidArgumentError, VectorStoreUnavailable,
                      import_extra)
from ..store import LABEL_COLUMNS, PRODUCT_COLUMNS, IndexStore, check_compatible
from . import MilvusLocation, parse_location

FILTER_LABELS = ("gender", "type", "colour")  # what Filters narrows by, besides price and stock
MAX_ID = 512
MAX_LABEL = 1024
MAX_REQUEST_BYTES = 16 << 20  # keep each insert well under gRPC's 64 MiB message limit
EXPR_IDS = 4096  # most ids written into one filter expression
MILVUS_TOP_K = 16384  # Milvus's largest search limit
PENDING = "milvus_pending"
TOKEN_ENV = config.SETTINGS["milvus_token"].env
PROP_EMBEDDER = "stylelens.embedder"
PROP_OWNER = "stylelens.owner"
INDEX_PARAMS = {"FLAT": {}, "HNSW": {"M": 16, "efConstruction": 200}, "IVF_FLAT": {"nlist": 1024},
                "IVF_PQ": {"nlist": 1024, "nbits": 8}, "AUTOINDEX": {}}


def _milvus_client():
    return import_extra("pymilvus", "pymilvus", "milvus", "Keeping vectors in Milvus").MilvusClient


class MilvusCollection:
    """The Milvus side of one index: a thin layer over MilvusClient speaking product ids and numpy."""

    def __init__(self, location: MilvusLocation):
        client_class = _milvus_client()
        self.location = location
        self.name = location.collection
        self.checked = False
        if location.lite:
            import_extra("milvus_lite", "milvus-lite", "milvus", "Milvus Lite (--store milvus-lite://)")  # pymilvus starts it for a .db path
            if not location.uri.endswith(".db"):
                raise InvalidArgumentError(f"Milvus Lite keeps its data in a file ending in .db, not {location.uri}. Write milvus-lite:///path/to/file.db.", code="bad_option")
            Path(location.uri).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client = client_class(uri=location.uri, token=config.get("milvus_token"))
        except Exception as exc:  # pymilvus raises its own and gRPC's error types
            raise VectorStoreUnavailable(
                f"Could not connect to Milvus at {location.canonical()}: {exc}. "
                + ("Check that no other process has the file open." if location.lite else
                   f"Check that Milvus is running and reachable, and {TOKEN_ENV} if it needs credentials.")
            ) from exc

    def close(self) -> None:
        self.client.close()

    # ---- the collection itself ---------------------------------------------------------------
    def exists(self) -> bool:
        return self.client.has_collection(self.name)

    def create(self, dim: int, fingerprint: dict, owner: str) -> None:
        from pymilvus import DataType

        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        for column in LABEL_COLUMNS:
            schema.add_field(column, DataType.VARCHAR, max_length=MAX_LABEL, nullable=True)
        schema.add_field("price", DataType.DOUBLE, nullable=True)
        schema.add_field("in_stock", DataType.BOOL)
        params = self.client.prepare_index_params()
        index_params = dict(INDEX_PARAMS[self.location.index])
        if self.location.index == "IVF_PQ":
            index_params["m"] = next(m for m in (64, 32, 16, 8, 4, 2, 1) if dim % m == 0)
        params.add_index("vector", index_type=self.location.index, metric_type="IP", params=index_params)
        # Lite serves one process: read-your-writes costs nothing. A cluster answers faster with Bounded.
        self.client.create_collection(self.name, schema=schema, index_params=params,
                                      consistency_level="Strong" if self.location.lite else "Bounded",
                                      properties={PROP_EMBEDDER: json.dumps(fingerprint, sort_keys=True), PROP_OWNER: owner})

    def check(self, fingerprint: dict, owner: str, index_path) -> None:
        """Refuse a collection made by another embedder or owned by another index; load it for search."""
        where = self.location.canonical()
        if not self.exists():
            raise IndexNotFoundError(
                f"Index {index_path} keeps its vectors in {where}, but that collection does not exist. "
                f"Rebuild it: stylelens index CATALOG_DIR --out NEW_FOLDER --store {where.split('?')[0]}"
            )
        props = self.client.describe_collection(self.name).get("properties") or {}
        if PROP_EMBEDDER not in props:
            raise IndexMismatchError(f"Milvus collection '{self.name}' at {where} was not made by stylelens. Choose another collection name (?collection=NAME).")
        check_compatible(json.loads(props[PROP_EMBEDDER]), fingerprint, where)
        if props.get(PROP_OWNER) != owner:
            raise IndexMismatchError(
                f"Milvus collection '{self.name}' at {where} holds the vectors of another stylelens index. "
                "Choose another collection name (?collection=NAME), or update the index folder that owns it."
            )
        state = str(self.client.get_load_state(self.name).get("state", ""))
        if "Loaded" not in state:
            self.client.load_collection(self.name)
        self.checked = True

    # ---- rows ------------------------------------------------------------------------------------
    def upsert(self, records: list[dict], vectors: np.ndarray) -> None:
        rows = [dict(_scalar_fields(rec), vector=vec) for rec, vec in zip(records, vectors)]
        step = max(1, MAX_REQUEST_BYTES // (vectors.shape[1] * 4 + 2048))
        for start in range(0, len(rows), step):
            self.client.upsert(self.name, rows[start:start + step])

    def update_fields(self, records: list[dict]) -> None:
        """Change scalar fields in place (Milvus >= 2.6 partial upsert), vectors untouched."""
        rows = [_scalar_fields(rec) for rec in records]
        for start in range(0, len(rows), 10_000):
            self.client.upsert(self.name, rows[start:start + 10_000], partial_update=True)

    def flush(self) -> None:
        self.client.flush(self.name)

    def delete(self, ids: list[str]) -> None:
        for start in range(0, len(ids), EXPR_IDS):
            self.client.delete(self.name, ids=ids[start:start + EXPR_IDS])

    def vectors(self, ids: list[str]) -> dict[str, np.ndarray]:
        found = {}
        for start in range(0, len(ids), 1000):
            for hit in self.client.get(self.name, ids=ids[start:start + 1000], output_fields=["vector"]):
                found[hit["id"]] = np.asarray(hit["vector"], dtype=np.float32)
        return found

    def all_vectors(self):
        """(id, vector) for every entity, in batches: for export and exact cross-checks, not for serving."""
        it = self.client.query_iterator(self.name, batch_size=1000, output_fields=["id", "vector"])
        try:
            while batch := it.next():
                for hit in batch:
                    yield hit["id"], np.asarray(hit["vector"], dtype=np.float32)
        finally:
            it.close()

    def count(self) -> int:
        return int(self.client.query(self.name, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def search(self, queries: np.ndarray, limit: int, expr: str) -> list[list[tuple[str, float]]]:
        params = {"HNSW": {"ef": max(64, limit)}, "IVF_FLAT": {"nprobe": 32}, "IVF_PQ": {"nprobe": 32}}.get(self.location.index, {})
        hits = self.client.search(self.name, data=[np.asarray(q, dtype=np.float32) for q in queries], limit=limit,
                                  filter=expr, search_params={"metric_type": "IP", "params": params})
        return [[(hit["id"], float(hit["distance"])) for hit in per_query] for per_query in hits]


def _scalar_fields(rec: dict) -> dict:
    pid = str(rec["id"])
    if len(pid) > MAX_ID:
        raise CatalogError(f"Product id '{pid[:40]}...' is longer than {MAX_ID} characters; Milvus cannot key it. Shorten the ids in the feed.")
    row = {"id": pid}
    for column in LABEL_COLUMNS:
        value = rec.get(column)
        row[column] = None if value is None else str(value)
        if row[column] is not None and len(row[column]) > MAX_LABEL:
            raise CatalogError(f"Product {pid}: its {column} is longer than {MAX_LABEL} characters. Shorten it in the feed.")
    price = rec.get("price")
    row["price"] = None if price is None or (isinstance(price, float) and math.isnan(price)) else float(price)
    row["in_stock"] = bool(rec.get("in_stock", True))
    return row


class MilvusVectors:
    """``store.vectors`` of a Milvus-backed index: rows are fetched by product id when indexed,
    so 'more like this' and re-ranking read a few vectors, never the whole collection."""

    dtype = np.dtype(np.float32)

    def __init__(self, store: "MilvusIndexStore"):
        self.store = store
        self.shape = (store.n_rows, store.dim)
        self._all: np.ndarray | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows):
        single = isinstance(rows, (int, np.integer))
        rows = np.atleast_1d(np.arange(self.shape[0])[rows])
        ids = self.store.columns.ids[rows]
        found = self.store.milvus.vectors([pid for pid in ids if pid is not None])
        out = np.zeros((len(rows), self.shape[1]), np.float32)  # dead rows read as zero vectors
        for i, pid in enumerate(ids):
            if pid in found:
                out[i] = found[pid]
        return out[0] if single else out

    def __array__(self, dtype=None, copy=None):
        if self._all is None:  # the whole collection, once: for export and exact cross-checks
            self._all = np.zeros(self.shape, np.float32)
            row_of = self.store.columns.row_of
            for pid, vector in self.store.milvus.all_vectors():
                if pid in row_of:
                    self._all[row_of[pid]] = vector
        return self._all if dtype is None or np.dtype(dtype) == self.dtype else self._all.astype(dtype)

    @property
    def T(self):
        return np.asarray(self).T


class MilvusIndexStore(IndexStore):
    """An index folder whose vectors live in Milvus. Products, manifest and columns stay in the folder."""

    search_method = "milvus"  # what search='auto' uses on this store

    def __init__(self, path, db, manifest, writable):
        super().__init__(path, db, manifest, writable)
        self._milvus: MilvusCollection | None = None
        self._unflushed = False

    @classmethod
    def create_at(cls, path, fingerprint: dict, versions: dict, location: MilvusLocation) -> "MilvusIndexStore":
        store = cls.create(path, fingerprint, versions)
        try:
            if "vectors" not in store.manifest:  # a new folder (or an empty one left by an interrupted first run)
                if store.n_rows:
                    raise IndexMismatchError(f"Index {path} keeps its vectors in the index folder. Choose a new --out folder for --store {location.canonical()}.")
                store._milvus = MilvusCollection(location)
                if store._milvus.exists():
                    raise IndexMismatchError(
                        f"Milvus collection '{location.collection}' at {location.canonical()} already exists and a new index cannot adopt it. "
                        "Choose another collection name (?collection=NAME), or update the index folder that owns it.")
                # Manifest first: a crash before the collection exists leaves an empty index that creates it next time.
                store.set_manifest(vectors={"location": location.canonical(), "owner": uuid.uuid4().hex})
            store.milvus  # connect and check now: a bad location fails before any work starts
        except BaseException:
            store.close()
            raise
        return store

    @property
    def milvus(self) -> MilvusCollection:
        if self._milvus is None:
            vectors = self.manifest["vectors"]
            self._milvus = MilvusCollection(parse_location(vectors["location"]))
        if not self._milvus.checked:
            owner = self.manifest["vectors"]["owner"]
            if self.writable and self.n_rows == 0 and not self._milvus.exists():
                self._milvus.create(self.dim, self.manifest["embedder"], owner)
            self._milvus.check(self.manifest["embedder"], owner, self.path)
        return self._milvus

    def flush(self) -> None:
        """Seal what was written: Milvus searches growing (unsealed) segments by brute force, and slowly
        (seconds per query at 10k x 2048-d on Milvus Lite, against ~0.1 s sealed). Done on close after writes."""
        if self._unflushed and self._milvus is not None:
            self._milvus.flush()
        self._unflushed = False

    def close(self) -> None:
        if self._milvus is not None:
            self.flush()
            self._milvus.close()
            self._milvus = None
        super().close()

    def _changed(self) -> None:
        super()._changed()
        self._unflushed = self.writable

    @property
    def vectors(self) -> MilvusVectors:
        if self._vectors is None or len(self._vectors) != self.n_rows:  # IndexStore._changed() resets it
            self._vectors = MilvusVectors(self)
        return self._vectors

    # ---- writing ---------------------------------------------------------------------------------
    def _truncate_uncommitted(self) -> None:
        if "vectors" not in self.manifest:
            return
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (PENDING,)).fetchone()
        if row is None:
            return
        pending = json.loads(row[0])
        committed = set(self.image_hashes())
        orphans = [pid for pid in pending if pid not in committed]
        if orphans:
            self.milvus.delete(orphans)
        with self.db:
            self.db.execute("BEGIN")
            # Committed products of the lost batch may now have the new vector in Milvus under the old
            # record: forgetting their image hash makes the next build embed them again.
            self.db.executemany("UPDATE products SET image_sha256=NULL WHERE id=?", [(pid,) for pid in pending if pid in committed])
            self.db.execute("DELETE FROM meta WHERE key=?", (PENDING,))

    def add(self, records: list[dict], vectors: np.ndarray) -> None:
        """Vectors to Milvus, then one SQLite commit makes the products visible (crash: all or none)."""
        assert self.writable, "open the store with writable=True"
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(records), self.dim):
            raise ValueError(f"expected {len(records)} vectors of dim {self.dim}, got {vectors.shape}")
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (PENDING, json.dumps([str(r["id"]) for r in records])))
        self.milvus.upsert(records, vectors)
        start = self.n_rows
        # Same row layout as IndexStore.add; row numbers are local handles into the columns.
        rows = [tuple(rec.get(c) for c in PRODUCT_COLUMNS[:8]) + (1 if rec.get("in_stock", True) else 0,)
                + tuple(rec.get(c) for c in PRODUCT_COLUMNS[9:])
                + (start + i, rec.get("image_path"), rec.get("image_sha256"), json.dumps(rec.get("extra") or {}, default=str))
                for i, rec in enumerate(records)]
        cols = PRODUCT_COLUMNS + ("row", "image_path", "image_sha256", "extra")
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(f"INSERT OR REPLACE INTO products ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
            self.db.execute("UPDATE meta SET value=? WHERE key='n_rows'", (str(start + len(records)),))
            self.db.execute("DELETE FROM meta WHERE key=?", (PENDING,))
        self._changed()

    def update_records(self, records: list[dict]) -> None:
        """Feed fields change in the catalog; the ones filters read are copied to Milvus when they changed."""
        fields = LABEL_COLUMNS + ("price", "in_stock")
        before = {}
        ids = [str(r["id"]) for r in records]
        for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
            chunk = ids[start:start + 900]
            query = f"SELECT id, {', '.join(fields)} FROM products WHERE id IN ({', '.join('?' * len(chunk))})"
            for rec in self.db.execute(query, chunk):
                before[rec[0]] = _scalar_fields(dict(zip(("id",) + fields, rec)))
        super().update_records(records)
        changed = [r for r in records if str(r["id"]) in before and _scalar_fields(r) != before[str(r["id"])]]
        if changed:
            self.milvus.update_fields(changed)

    def delete(self, pids) -> int:
        pids = [str(p) for p in pids]
        if pids:
            self.milvus.delete(pids)  # first: a crash in between leaves a product without a vector, never a stray vector
        return super().delete(pids)

    def compact(self) -> int:
        """Nothing to rewrite here: Milvus compacts its own segments. Row numbers stay as handles."""
        return 0


class MilvusSearcher:
    """Top-k inside Milvus. With ``filters`` the filter runs server-side as a boolean expression;
    a bare ``mask`` (any bool array over rows) is sent as id lists, exactly but at more cost."""

    name = "milvus"
    server_filters = True

    def __init__(self, store):
        if not isinstance(store, MilvusIndexStore):
            raise InvalidArgumentError(
                f"Index {store.path} keeps its vectors in the index folder; search 'milvus' needs an index built with "
                "--store milvus-lite:///path/file.db or --store milvus://HOST:PORT/COLLECTION.", code="bad_option")
        self.store = store
        store.milvus  # connect now: an unreachable Milvus fails when the index opens, not on the first query

    def search(self, queries, k, mask=None, filters=None):
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.store.dim)
        cols = self.store.columns
        exprs = [""]
        if filters is not None:
            allowed = filters.mask(cols)  # validates values exactly as the embedded store does
            extra = allowed & ~mask if mask is not None else np.zeros(len(allowed), bool)
            if extra.sum() <= EXPR_IDS:
                exprs = [_and(filter_expression(filters, cols), _ids("not in", cols.ids[extra]))]
            else:
                exprs = _mask_expressions(mask, cols)
        elif mask is not None:
            exprs = _mask_expressions(mask, cols)
        limit = min(k, MILVUS_TOP_K)
        merged: list[list] = [[] for _ in range(len(queries))]
        for expr in exprs:
            for q, hits in enumerate(self.store.milvus.search(queries, limit, expr)):
                merged[q].extend(hits)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        rows = np.full((len(queries), k), -1, np.int64)
        for q, hits in enumerate(merged):
            ranked = [(s, cols.row_of[pid]) for pid, s in sorted(hits, key=lambda h: -h[1]) if pid in cols.row_of]
            for j, (score, row) in enumerate(ranked[:k]):
                scores[q, j], rows[q, j] = score, row
        return scores, rows


def filter_expression(filters, columns) -> str:
    """Filters -> Milvus boolean expression over the scalar fields. Call ``filters.mask`` first to validate."""
    parts = []
    for column in FILTER_LABELS:
        wanted = getattr(filters, column)
        if wanted in (None, ""):
            continue
        values = [columns.vocab[column][columns.code(column, v)] for v in str(wanted).split(",")]
        parts.append(f"{column} in {json.dumps(values)}")
    if filters.min_price is not None:
        parts.append(f"price >= {float(filters.min_price)!r}")
    if filters.max_price is not None:
        parts.append(f"price <= {float(filters.max_price)!r}")
    if not filters.include_out_of_stock:
        parts.append("in_stock == true")
    return " and ".join(parts)


def _ids(op: str, ids) -> str:
    ids = [str(i) for i in ids if i is not None]
    return f"id {op} {json.dumps(ids)}" if ids or op == "in" else ""


def _and(*exprs: str) -> str:
    return " and ".join(f"({e})" for e in exprs if e)


def _mask_expressions(mask: np.ndarray, cols) -> list[str]:
    """An arbitrary row mask as few id-list expressions: the excluded ids if few, else chunks of the allowed ones."""
    excluded = cols.ids[cols.live & ~mask]
    if len(excluded) <= EXPR_IDS:
        return [_ids("not in", excluded)]
    allowed = cols.ids[cols.live & mask]
    return [_ids("in", allowed[start:start + EXPR_IDS]) for start in range(0, len(allowed), EXPR_IDS)]
