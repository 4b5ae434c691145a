"""Milvus as the vector backend: the index folder keeps manifest + catalog, the vectors live in a collection.

Where the vectors live is one string, the ``store`` setting:

    "milvus-lite:///path/to/file.db"         Milvus Lite, embedded in this process, one file
    "milvus://HOST:PORT/COLLECTION"          a Milvus server or cluster ("milvus+https://" for TLS)

One collection per index, keyed by product id, holding the unit vector and the scalar fields that
filters read (labels, price, in_stock), so a filtered top-k runs inside Milvus as a boolean
expression. Metric: inner product on unit vectors (= cosine, as the folder backend). Index type: FLAT
(exact) by default on Milvus Lite, HNSW on a server; IVF_FLAT / IVF_PQ / AUTOINDEX by ``?index=``.

Crash safety mirrors the folder backend: before a batch is sent to Milvus its ids are written to
catalog.sqlite as 'pending'; the catalog commit that makes them visible clears the mark. Opening for
writing deletes pending ids that never committed, so an interrupted build resumes without orphans.
The collection carries the embedder fingerprint and the owning index's id as properties; a
mismatch is refused like a mismatched index folder. pymilvus is imported only when a collection opens.

Its check (``MilvusBackend.check``) holds the collection against the catalog, whichever database keeps
it: a vector for every product, none that no product owns, none twice, no batch left uncommitted. It reads
with Strong consistency (a check right after a build sees every vector the build wrote), by id, in
bounded chunks, and repairs by deleting what no product owns and making the next build re-embed the rest.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ..errors import (CatalogError, IndexMismatchError, IndexNotFoundError, InvalidArgumentError, VectorStoreUnavailable,
                      import_extra)
from ..settings import SETTINGS
from .catalog_db import LABEL_COLUMNS
from .checkup import REINDEX, CheckedCatalog, Checkup, Finding, VectorRows, few
from .manifest import check_compatible

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
    if location in (None, "", "local"):
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


FILTER_LABELS = ("gender", "type", "colour")  # what Filters narrows by, besides price and stock
MAX_ID = 512
MAX_LABEL = 1024
MAX_REQUEST_BYTES = 16 << 20  # keep each insert well under gRPC's 64 MiB message limit
EXPR_IDS = 4096  # most ids written into one filter expression
MILVUS_TOP_K = 16384  # Milvus's largest search limit
PENDING = "milvus_pending"
TOKEN_ENV = SETTINGS["milvus_token"].env
READ_IDS = 1000  # ids per read: ~8 MB of 2048-d vectors
STRONG = {"consistency_level": "Strong"}  # what a check reads with: every write done so far
UNIT_READS = 10_000  # vectors a check reads for their length unless --sample 0 (all)
NEAREST = 8  # neighbours a check asks for, to find the closest trusted product's vector
PROP_EMBEDDER = "stylelens.embedder"
PROP_OWNER = "stylelens.owner"
INDEX_PARAMS = {"FLAT": {}, "HNSW": {"M": 16, "efConstruction": 200}, "IVF_FLAT": {"nlist": 1024},
                "IVF_PQ": {"nlist": 1024, "nbits": 8}, "AUTOINDEX": {}}


def _milvus_client():
    return import_extra("pymilvus", "pymilvus", "milvus", "Keeping vectors in Milvus").MilvusClient


class MilvusCollection:
    """The Milvus side of one index: a thin layer over MilvusClient speaking product ids and numpy."""

    def __init__(self, location: MilvusLocation, token: str = ""):
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
            self.client = client_class(uri=location.uri, token=token)
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
                f"Rebuild it: stylelens index CATALOG_DIR --out NEW_LOCATION (a new folder or database) --store {where.split('?')[0]}"
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
        """Change scalar fields, vectors untouched: a partial upsert on Milvus >= 2.6; an older server
        (the embedded 2.3 server of the tests) gets whole rows with the vectors it holds."""
        if not self.partial_upserts():
            found = self.vectors([str(r["id"]) for r in records])
            kept = [r for r in records if str(r["id"]) in found]
            if kept:
                self.upsert(kept, np.stack([found[str(r["id"])] for r in kept]))
            return
        rows = [_scalar_fields(rec) for rec in records]
        for start in range(0, len(rows), 10_000):
            self.client.upsert(self.name, rows[start:start + 10_000], partial_update=True)

    def partial_upserts(self) -> bool:
        if self.location.lite:
            return True
        version = re.findall(r"\d+", str(self.client.get_server_version()))[:2]
        return len(version) < 2 or (int(version[0]), int(version[1])) >= (2, 6)

    def flush(self) -> None:
        self.client.flush(self.name)

    def delete(self, ids: list[str]) -> None:
        for start in range(0, len(ids), EXPR_IDS):
            self.client.delete(self.name, ids=ids[start:start + EXPR_IDS])

    def vectors(self, ids: list[str], **options) -> dict[str, np.ndarray]:
        found = {}
        for start in range(0, len(ids), READ_IDS):
            for hit in self.client.get(self.name, ids=ids[start:start + READ_IDS], output_fields=["vector"], **options):
                found[hit["id"]] = np.asarray(hit["vector"], dtype=np.float32)
        return found

    def ids(self, **options) -> set[str]:
        """Every distinct id the collection holds (Milvus answers each id once, however often it is held)."""
        ids: set[str] = set()
        it = self.client.query_iterator(self.name, batch_size=READ_IDS * 10, output_fields=["id"], **options)
        try:
            while batch := it.next():
                ids.update(hit["id"] for hit in batch)
        finally:
            it.close()
        return ids

    def duplicated(self, ids: list[str], **options) -> list[str]:
        """The ids among ``ids`` held more than once: chunks whose count exceeds their ids, halved down to the id."""
        found: list[str] = []

        def walk(chunk: list[str]) -> None:
            if self.count(f"id in {json.dumps(chunk)}", **options) <= len(chunk):
                return
            if len(chunk) == 1:
                found.append(chunk[0])
                return
            walk(chunk[:len(chunk) // 2])
            walk(chunk[len(chunk) // 2:])

        for start in range(0, len(ids), EXPR_IDS):
            walk(ids[start:start + EXPR_IDS])
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

    def count(self, expr: str = "", **options) -> int:
        return int(self.client.query(self.name, filter=expr, output_fields=["count(*)"], **options)[0]["count(*)"])

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


class MilvusBackend:
    """Vectors of an index in a Milvus collection. Products, manifest and columns stay in the folder."""

    server_filters = True
    name = "milvus"

    def __init__(self, store):
        self.store = store  # the front: catalog, columns, manifest, settings
        self.catalog = store.catalog
        self.writable = store.writable
        self.location = parse_location(store.manifest["vectors"]["location"])
        self._milvus: MilvusCollection | None = None
        self._unflushed = False
        if store.settings.search not in ("auto", "milvus"):
            raise InvalidArgumentError(f"Index {store.path} keeps its vectors in Milvus; search '{store.settings.search}' "
                                       "is for vectors in the index folder. Use --search auto or milvus.", code="bad_option")
        self.milvus  # connect and check now: an unreachable Milvus fails when the index opens, not on the first query

    @staticmethod
    def accepts(location: str | None) -> bool:
        return parse_location(location) is not None

    @staticmethod
    def place(location: str | None):
        """What identifies where the vectors live (the index type may differ between runs without moving them)."""
        where = parse_location(location)
        return (where.kind, where.uri, where.collection)

    @classmethod
    def prepare(cls, folder, manifest: dict, location: str, settings) -> None:
        """A new index: claim a collection that does not exist yet, and name it in the manifest."""
        where = parse_location(location)
        collection = MilvusCollection(where, settings.milvus_token)
        try:
            if collection.exists():
                raise IndexMismatchError(
                    f"Milvus collection '{where.collection}' at {where.canonical()} already exists and a new index cannot adopt it. "
                    "Choose another collection name (?collection=NAME), or update the index folder that owns it.")
        finally:
            collection.close()
        # Manifest first: a crash before the collection exists leaves an empty index that creates it next time.
        manifest["vectors"] = {"location": where.canonical(), "owner": uuid.uuid4().hex}

    @property
    def milvus(self) -> MilvusCollection:
        if self._milvus is None:
            self._milvus = MilvusCollection(self.location, self.store.settings.milvus_token)
        if not self._milvus.checked:
            manifest = self.store.manifest
            owner = manifest["vectors"]["owner"]
            if self.writable and self.catalog.n_rows == 0 and not self._milvus.exists():
                self._milvus.create(self.store.dim, manifest["embedder"], owner)
            self._milvus.check(manifest["embedder"], owner, self.store.path)
        return self._milvus

    # ---- reading ---------------------------------------------------------------------------------
    def get(self, rows, columns) -> np.ndarray:
        """Vectors fetched by product id: 'more like this' and re-ranking read a few, never the collection."""
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        ids = columns.ids[rows]
        found = self.milvus.vectors([pid for pid in ids if pid is not None])
        out = np.zeros((len(rows), self.store.dim), np.float32)  # dead rows read as zero vectors
        for i, pid in enumerate(ids):
            if pid in found:
                out[i] = found[pid]
        return out

    def all_vectors(self) -> np.ndarray:
        """The whole collection by row, fetched in batches: for evaluation and export, never for serving."""
        row_of = self.store.columns.row_of
        out = np.zeros((self.catalog.n_rows, self.store.dim), np.float32)
        for pid, vector in self.milvus.all_vectors():
            if pid in row_of:
                out[row_of[pid]] = vector
        return out

    def search(self, queries, k, mask=None, filters=None, columns=None):
        """Top-k inside Milvus. With ``filters`` the filter runs server-side as a boolean expression;
        a bare ``mask`` (any bool array over rows) is sent as id lists, exactly but at more cost."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.store.dim)
        cols = columns or self.store.columns
        exprs = [""]
        if filters is not None:
            allowed = filters.mask(cols)  # validates values exactly as the folder backend does
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
            for q, hits in enumerate(self.milvus.search(queries, limit, expr)):
                merged[q].extend(hits)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        rows = np.full((len(queries), k), -1, np.int64)
        for q, hits in enumerate(merged):
            ranked = [(s, cols.row_of[pid]) for pid, s in sorted(hits, key=lambda h: -h[1]) if pid in cols.row_of]
            for j, (score, row) in enumerate(ranked[:k]):
                scores[q, j], rows[q, j] = score, row
        return scores, rows

    # ---- writing ---------------------------------------------------------------------------------
    def add(self, start_row: int, records: list[dict], vectors: np.ndarray) -> None:
        """Pending ids first, then the vectors: the catalog commit that follows clears the mark."""
        self.catalog.set_meta(PENDING, json.dumps([str(r["id"]) for r in records]))
        self.milvus.upsert(records, vectors)
        self._unflushed = True

    def committed_meta(self) -> dict:
        """Meta changes that go with the catalog commit of a batch."""
        return {PENDING: None}

    def recover(self) -> None:
        if self.catalog.meta(PENDING) is not None:
            clear_batch(self.catalog, self.milvus)

    def update_fields(self, records: list[dict], before: dict[str, dict]) -> None:
        """Feed fields the filters read are copied to Milvus when they changed."""
        changed = [r for r in records if str(r["id"]) in before and _scalar_fields(r) != _scalar_fields(before[str(r["id"])])]
        if changed:
            self.milvus.update_fields(changed)
            self._unflushed = True

    FILTERED_FIELDS = LABEL_COLUMNS + ("price", "in_stock")

    def delete(self, ids, rows) -> None:
        if ids:
            self.milvus.delete(list(ids))  # first: a crash in between leaves a product without a vector, never a stray vector
            self._unflushed = True

    def compact(self) -> int:
        """Nothing to rewrite here: Milvus compacts its own segments. Row numbers stay as handles."""
        return 0

    def maintain(self) -> None:
        """Seal what was written: Milvus searches growing (unsealed) segments by brute force, and slowly
        (seconds per query at 10k x 2048-d on Milvus Lite, against ~0.1 s sealed)."""
        if self._unflushed and self._milvus is not None:
            self._milvus.flush()
        self._unflushed = False

    def changed(self) -> None:
        """Nothing cached from the rows here."""

    def close(self) -> None:
        if self._milvus is not None:
            self.maintain()
            self._milvus.close()
            self._milvus = None

    # ---- stylelens check -----------------------------------------------------------------
    @classmethod
    def check(cls, checkup: Checkup, database, catalog: CheckedCatalog) -> "MilvusRows | None":
        """The collection the manifest names against the catalog's products."""
        if catalog.manifest is None or catalog.n_rows is None:
            return None
        vectors = catalog.manifest.get("vectors") or {}
        file = str(vectors.get("location") or "vectors").split("?")[0]
        collection = MilvusCollection(parse_location(vectors.get("location")), checkup.settings.milvus_token)
        try:
            collection.check(catalog.manifest["embedder"], vectors.get("owner"), database.location)
        except (IndexNotFoundError, IndexMismatchError, InvalidArgumentError) as exc:
            collection.close()
            checkup.add(file, "vectors_collection", exc.message)
            return None
        rows = MilvusRows(collection, file, {p.row: p.id for p in checkup.products}, catalog.n_rows,
                          int(catalog.manifest["embedder"]["dim"]), UNIT_READS if checkup.sample else None)
        try:
            rows.check(checkup, catalog.meta)
        except BaseException:
            rows.close()
            raise
        return rows


def clear_batch(catalog, collection: MilvusCollection) -> list[str]:
    """Undo a batch whose catalog commit never happened: delete the vectors no product owns, and make the next
    build re-embed the committed products of the batch. Answers the ids of the batch."""
    pending = _pending(catalog.meta(PENDING))
    committed = set(catalog.image_hashes())
    orphans = [pid for pid in pending if pid not in committed]
    if orphans:
        collection.delete(orphans)
    # Committed products of the lost batch may now have the new vector in Milvus under the old
    # record: forgetting their image hash makes the next build embed them again.
    catalog.forget_hashes([pid for pid in pending if pid in committed])
    catalog.set_meta(PENDING, None)
    return pending


def _pending(text) -> list[str]:
    try:
        return [str(pid) for pid in json.loads(text or "[]")]
    except (TypeError, ValueError):
        return []


class MilvusRows(VectorRows):
    """What a check reads of a collection: vectors by catalog row, fetched by product id when indexed (a row
    without a vector there reads as zeros), and the collection's own search for the closest trusted vector."""

    whole = "collection"

    def __init__(self, collection: MilvusCollection, file: str, id_of_row: dict[int, str], n_rows: int, dim: int,
                 unit_limit: int | None):
        super().__init__(None, file)
        self.collection = collection
        self.id_of_row = id_of_row
        self.n_rows = n_rows
        self._dim = dim
        self.unit_limit = unit_limit
        self.batch: Finding | None = None  # its repair clears the uncommitted batch, as the next build would
        self.orphans: Finding | None = None  # its repair deletes its products' vectors

    def __len__(self) -> int:
        return self.n_rows

    def __getitem__(self, rows) -> np.ndarray:
        ids = [self.id_of_row.get(int(r)) for r in rows]
        found = self.collection.vectors([pid for pid in ids if pid is not None], **STRONG)
        out = np.zeros((len(ids), self._dim), np.float32)
        for i, pid in enumerate(ids):
            if pid in found:
                out[i] = found[pid]
        return out

    @property
    def dim(self) -> int:
        return self._dim

    def check(self, checkup: Checkup, meta: dict) -> None:
        """One vector for every product of the catalog, none that no product owns, no batch whose catalog commit
        never happened."""
        ids = self.collection.ids(**STRONG)
        held = self.collection.count("", **STRONG)
        checkup.report.counts["vectors_held"] = held
        catalog = {p.id for p in checkup.products} | set(checkup.remove)
        batch = _pending(meta.get(PENDING))
        if batch:
            self.batch = checkup.add(self.file, "vectors_uncommitted", f"{len(batch)} vector(s) of a batch whose catalog "
                                     f"commit never happened (a stylelens index interrupted, or running now): {few(batch)}; "
                                     f"run stylelens check INDEX --repair (or {REINDEX}) to clear it.", True, batch)
        orphans = sorted(ids - catalog - set(batch))
        if orphans:
            self.orphans = checkup.add(self.file, "vectors_orphan", f"{len(orphans)} vector(s) that no product of the catalog "
                                       f"owns, found by searches and then dropped: {few(orphans)}; run stylelens check INDEX "
                                       "--repair to delete them.", True, orphans)
        missing = [p.id for p in checkup.products if p.id not in ids and p.sha256 is not None]
        if missing:
            checkup.forget.update(dict.fromkeys(missing, checkup.add(
                self.file, "vectors_missing", f"{len(missing)} product(s) have no vector in it, so no search finds them: "
                f"{few(missing)}; run stylelens check INDEX --repair, then {REINDEX} re-embeds them.", True, missing)))
        if held > len(ids):
            live = {p.id for p in checkup.products}
            twice = [pid for pid in self.collection.duplicated(sorted(ids), **STRONG) if pid in live
                     and pid not in checkup.forget]
            if twice:
                checkup.forget.update(dict.fromkeys(twice, checkup.add(
                    self.file, "vectors_duplicate", f"{len(twice)} product(s) have more than one vector in it: {few(twice)}; "
                    f"run stylelens check INDEX --repair, then {REINDEX} re-embeds them (one vector each).", True, twice)))

    def best(self, fresh: np.ndarray, trusted: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        """The collection's own top k (exact or approximate, as its index type is) for each fresh vector."""
        best_cos = np.full(len(fresh), -np.inf, np.float32)
        best_row = np.full(len(fresh), -1, np.int64)
        for i, hits in enumerate(self.collection.search(fresh, NEAREST, "")):
            found = [(score, trusted[pid]) for pid, score in hits if pid in trusted]
            if found:
                best_cos[i], best_row[i] = found[0]
        return best_cos, best_row

    def needs_repair(self, checkup: Checkup) -> bool:
        return self.batch is not None or self.orphans is not None or bool(checkup.remove)

    def repair(self, checkup: Checkup, catalog) -> None:
        if self.batch is not None:
            clear_batch(catalog, self.collection)
            checkup.repaired(self.batch, "deleted the batch's vectors that no product owns, and forgot the image hash of "
                                         f"its products in the catalog: {REINDEX} re-embeds them")
        if self.orphans is not None:
            self.collection.delete(self.orphans.products)
            checkup.repaired(self.orphans, f"deleted {len(self.orphans.products)} vector(s) that no product owns")
        if checkup.remove:
            self.collection.delete(list(checkup.remove))

    def close(self) -> None:
        if self.collection is not None:
            self.collection.close()
            self.collection = None


def filter_expression(filters, columns) -> str:
    """Filters -> Milvus boolean expression over the scalar fields, as the catalog applies them (``filters.applied``:
    shoppers' words as its values, a price filter it cannot apply left out), the same rows as ``filters.mask``."""
    filters = filters.applied(columns)
    parts = []
    for column in FILTER_LABELS:
        wanted = getattr(filters, column)
        if wanted in (None, ""):
            continue
        parts.append(f"{column} in {json.dumps(wanted.split(','))}")
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
