"""Approximate nearest neighbours with FAISS for large catalogs (extra 'ann').

An inverted-file index with product-quantized codes (``IVF{nlist},PQ{m}``, inner product) finds
candidates; they are re-ranked with the store's exact float32 vectors, so returned scores are true
cosines and the compressed codes only have to get the right rows into the candidate list. FAISS ids
are the store's vector rows, so the store stays the key.

Used by the folder backend only (``store`` below is that backend: ``matrix``, ``columns``, ``n_rows``,
``dim``, ``generation_name``, ``catalog``, ``folder``). The index lives in the index folder: ``ann.json`` (what it covers) names ``ann-<token>.faiss`` and
``ann-<token>.keys.npy`` (per row, a 64-bit hash of product id + image hash; 0 = not in the index).
``sync`` brings it up to date with the store: new rows are added, deleted rows removed, and after
``compact()`` renumbered the rows, ids are remapped through the keys instead of re-encoding everything.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from pathlib import Path

import numpy as np

from ..errors import InvalidArgumentError, import_extra
from ..files import write_json_atomic
from .backend import top_k

ANN_META = "ann.json"
FORMAT = 1
ADD_CHUNK = 65_536
# Filters letting through at most this many rows are answered exactly over just those rows.
EXACT_BELOW = 8_192
# Catalogs from this size get product-quantized codes (PQ needs ~10k points to train its codebooks).
PQ_FROM = 65_536


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _import_faiss():
    return import_extra("faiss", "faiss-cpu", "ann", "Approximate nearest-neighbour search")


def factory_for(n_rows: int, dim: int) -> tuple[str, int]:
    """FAISS index_factory string and nlist for a catalog of n_rows.

    nlist ~ sqrt(n) (1M rows: 1024 lists of ~1000; training and adding cost grows with nlist, and two
    cores must build a 1M index in minutes), at most n/32 so k-means has points to place.
    Codes: 8-bit scalar quantization below PQ_FROM rows (no codebooks to train; 4x smaller than
    float32), product quantization from there (8 dimensions per 8-bit code: 2048-d -> 256 bytes, 32x)."""
    n = max(int(n_rows), 1)
    nlist = int(2 ** round(np.log2(max(1.0, np.sqrt(n)))))
    nlist = max(1, min(nlist, n // 32))
    if n < PQ_FROM or dim % 8:
        return f"IVF{nlist},SQ8", nlist
    return f"IVF{nlist},PQ{dim // 8}", nlist


def _keys(ids, shas) -> np.ndarray:
    """64-bit key per row from (product id, image sha256); 0 is reserved for 'not in the index'."""
    out = np.zeros(len(ids), np.uint64)
    for i, (pid, sha) in enumerate(zip(ids, shas)):
        if pid is not None:
            digest = hashlib.blake2b(f"{pid}\x00{sha}".encode(), digest_size=8).digest()
            out[i] = int.from_bytes(digest, "little") or 1
    return out


def store_keys(store, start: int = 0) -> np.ndarray:
    """Keys of rows ``start`` .. n_rows-1 (0 for dead rows)."""
    n = store.n_rows - start
    ids, shas = [None] * max(n, 0), [None] * max(n, 0)
    for row, pid, sha in store.catalog.db.execute("SELECT row, id, image_sha256 FROM products WHERE row >= ?", (start,)):
        ids[row - start], shas[row - start] = pid, sha
    return _keys(ids, shas)


class AnnIndex:
    """The FAISS index of one store, with the bookkeeping that keeps it in step with the store."""

    def __init__(self, index, keys: np.ndarray, meta: dict):
        self.index = index
        self.keys = keys  # per covered row
        self.meta = meta

    @property
    def ivf(self):
        faiss = _import_faiss()
        return faiss.downcast_index(faiss.extract_index_ivf(self.index))

    def memory_bytes(self) -> int:
        """Bytes the index holds in RAM: codes + ids + coarse centroids + PQ tables."""
        ivf = self.ivf
        pq = getattr(ivf, "pq", None)
        tables = pq.M * pq.ksub * pq.dsub * 4 if pq is not None else 0
        return int(ivf.ntotal * (ivf.code_size + 8) + ivf.nlist * ivf.d * 4 + tables + self.keys.nbytes)

    # ---- building --------------------------------------------------------------------------
    @classmethod
    def build(cls, store, factory: str | None = None, train_rows: int | None = None, seed: int = 0) -> "AnnIndex":
        faiss = _import_faiss()
        live_rows = np.flatnonzero(store.columns.live)
        auto_factory, nlist = factory_for(len(live_rows), store.dim)
        factory = factory or auto_factory
        index = faiss.index_factory(store.dim, factory, faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        if hasattr(ivf, "do_polysemous_training"):
            ivf.do_polysemous_training = False  # codes for Hamming pre-filtering we never use; slow to train
        ivf.cp.niter = 10  # coarse k-means: recall barely moves past 10 iterations, training time does
        # k-means wants ~40-256 points per list; more only slows training down.
        train_rows = train_rows or min(len(live_rows), max(40 * ivf.nlist, 65_536))
        if len(live_rows) < max(ivf.nlist, 1) or len(live_rows) == 0:
            raise InvalidArgumentError(f"An ANN index with {ivf.nlist} lists needs at least that many products; this index has "
                                       f"{len(live_rows)}. Use --search exact for small catalogs.", code="bad_option")
        sample = np.sort(np.random.default_rng(seed).choice(live_rows, size=min(train_rows, len(live_rows)), replace=False))
        started = time.perf_counter()
        index.train(np.ascontiguousarray(store.matrix[sample], dtype=np.float32))
        meta = {"format": FORMAT, "factory": factory, "dim": store.dim, "generation": store.generation_name,
                "rows": 0, "trained_on": int(len(sample)), "train_seconds": round(time.perf_counter() - started, 1)}
        ann = cls(index, np.zeros(0, np.uint64), meta)
        ann.sync(store)
        return ann

    def sync(self, store) -> bool:
        """Bring the index up to date with the store; True when anything changed."""
        faiss = _import_faiss()
        changed = False
        if self.meta["generation"] != store.generation_name or store.n_rows < len(self.keys):
            self._remap(store_keys(store))  # rows were renumbered by compact()
            self.meta["generation"] = store.generation_name
            changed = True
        # Within a generation a row never comes back to life: dead now means deleted since.
        live = store.columns.live
        covered = len(self.keys)
        gone = np.flatnonzero((self.keys != 0) & ~live[:covered])
        if len(gone):
            self.index.remove_ids(faiss.IDSelectorBatch(gone.astype(np.int64)))
            self.keys[gone] = 0
            changed = True
        if store.n_rows > covered:
            keys = np.concatenate([self.keys, store_keys(store, covered)])
            new_rows = covered + np.flatnonzero(keys[covered:] != 0)
            for start in range(0, len(new_rows), ADD_CHUNK):
                rows = new_rows[start : start + ADD_CHUNK]
                self.index.add_with_ids(np.ascontiguousarray(store.matrix[rows], dtype=np.float32), rows.astype(np.int64))
            self.keys = keys
            changed = True
        self.meta["rows"] = int(len(self.keys))
        self.meta["vectors"] = int(self.index.ntotal)
        return changed

    def _remap(self, current: np.ndarray) -> None:
        """Rows were renumbered (compaction): move every id to the row now holding the same key."""
        faiss = _import_faiss()
        order = np.argsort(current, kind="stable")
        pos = np.clip(np.searchsorted(current[order], self.keys), 0, max(len(current) - 1, 0))
        found = (self.keys != 0) & (current[order][pos] == self.keys) if len(current) else np.zeros(len(self.keys), bool)
        mapping = np.where(found, order[pos] if len(current) else -1, -1).astype(np.int64)
        stale = np.flatnonzero((self.keys != 0) & ~found)
        if len(stale):
            self.index.remove_ids(faiss.IDSelectorBatch(stale.astype(np.int64)))
        invlists = self.ivf.invlists
        for list_no in range(invlists.nlist):
            size = invlists.list_size(list_no)
            if size:
                ids = faiss.rev_swig_ptr(invlists.get_ids(list_no), size)
                ids[:] = mapping[ids]
        keys = np.zeros(len(current), np.uint64)
        keys[mapping[found]] = self.keys[found]
        self.keys = keys

    # ---- files ------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Atomic: new token files first, then ann.json names them, then the old ones go."""
        faiss = _import_faiss()
        folder = Path(folder)
        token = secrets.token_hex(4)
        old = _read_meta(folder)
        faiss.write_index(self.index, str(folder / f"ann-{token}.faiss"))
        np.save(folder / f"ann-{token}.keys.npy", self.keys)
        meta = dict(self.meta, token=token, saved=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        write_json_atomic(folder / ANN_META, meta)
        self.meta = meta
        if old and old.get("token") != token:
            for suffix in (".faiss", ".keys.npy"):
                (folder / f"ann-{old['token']}{suffix}").unlink(missing_ok=True)

    @classmethod
    def load(cls, folder: Path) -> "AnnIndex | None":
        faiss = _import_faiss()
        meta = _read_meta(folder)
        if not meta or meta.get("format") != FORMAT:
            return None
        try:
            index = faiss.read_index(str(Path(folder) / f"ann-{meta['token']}.faiss"))
            keys = np.load(Path(folder) / f"ann-{meta['token']}.keys.npy")
        except (OSError, RuntimeError, ValueError):
            return None  # half-written or deleted: rebuilt by the caller
        return cls(index, keys, meta)


def _read_meta(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / ANN_META).read_text())
    except (OSError, ValueError):
        return None


def open_ann(store, persist: bool = True, factory: str | None = None) -> AnnIndex:
    """The store's ANN index, loaded and synced, or built; saved back when it changed and ``persist``."""
    ann = AnnIndex.load(store.folder)
    if ann is not None and (ann.meta.get("dim") != store.dim or (factory and ann.meta.get("factory") != factory)):
        ann = None
    if ann is not None and _outgrown(ann, store):
        ann = None
    if ann is None:
        ann = AnnIndex.build(store, factory)
        changed = True
    else:
        changed = ann.sync(store)
    if changed and persist:
        try:
            ann.save(store.folder)
        except OSError:
            pass  # a read-only index folder: the synced index still serves from memory
    return ann


def maintain(store, method: str, threshold: int) -> AnnIndex | None:
    """After the vectors changed (build, remove): update the ANN index, or build one when the settings
    call for it (search 'ann', or 'auto' at ``threshold`` products and more)."""
    wanted = method == "ann" or (method == "auto" and store.n_rows >= threshold)
    if not (wanted or (Path(store.folder) / ANN_META).exists()) or not faiss_available() or not store.columns.live.any():
        return None
    return open_ann(store, persist=True)


def _outgrown(ann: AnnIndex, store) -> bool:
    """Retrain when the catalog grew so much that the lists are far too long for the nlist trained."""
    _, wanted = factory_for(int(store.columns.live.sum()), store.dim)
    return wanted >= 4 * ann.ivf.nlist


class AnnSearcher:
    """IVF-PQ candidates from FAISS, re-ranked with exact float32 vectors; filters via IDSelectorBitmap."""

    name = "ann"

    def __init__(self, store, nprobe: int, candidates: int, ann: AnnIndex | None = None):
        self.faiss = _import_faiss()
        self.store = store  # the folder backend: matrix, columns, n_rows, dim
        self.ann = ann or (open_ann(store) if store.columns.live.any() else None)
        self.nprobe = nprobe
        self.candidates = candidates
        self._lock = threading.Lock()

    def search(self, queries, k, mask=None):
        faiss = self.faiss
        vectors = self.store.matrix
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, vectors.shape[1])
        live = self.store.columns.live
        if self.ann is None:  # nothing indexed yet
            return _exact_over(vectors, queries, k, np.zeros(0, np.int64))
        if mask is None and not live.all():
            mask = live  # the FAISS index may still hold rows deleted since it was synced
        params = faiss.SearchParametersIVF()
        nprobe = self.nprobe
        if mask is not None:
            passing = int(np.count_nonzero(mask))
            if passing <= max(EXACT_BELOW, k):
                return _exact_over(vectors, queries, k, np.flatnonzero(mask))
            bitmap = np.packbits(np.asarray(mask, bool), bitorder="little")
            params.sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bitmap))
            # Lists visited hold about nprobe/nlist of the rows, and only this share of them passes.
            nprobe = int(min(self.ann.ivf.nlist, np.ceil(nprobe * min(8.0, len(mask) / max(passing, 1)))))
        params.nprobe = min(nprobe, self.ann.ivf.nlist)
        fetch = max(self.candidates, 4 * k)
        _, cand = self.ann.index.search(queries, fetch, params=params)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        rows = np.full((len(queries), k), -1, np.int64)
        for qi, found in enumerate(cand):
            found = np.sort(found[found >= 0])
            if len(found) < k and mask is not None and np.count_nonzero(mask) > len(found):
                # The visited lists ran short of passing rows: answer this query exactly.
                s, r = _exact_over(vectors, queries[qi : qi + 1], k, np.flatnonzero(mask))
            else:
                exact = np.asarray(vectors[found], dtype=np.float32) @ queries[qi]
                s, r = top_k(exact[None], k)
                r = np.where(r >= 0, found[np.clip(r, 0, None)] if len(found) else -1, -1)
            scores[qi], rows[qi] = s[0], r[0]
        return scores, rows


def _exact_over(vectors, queries, k, rows: np.ndarray):
    """Exact search restricted to ``rows`` (ascending): cost grows with the rows, not the catalog."""
    if len(rows) == 0:
        return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
    scores = queries @ np.asarray(vectors[rows], dtype=np.float32).T
    best, idx = top_k(scores, k)
    return best, np.where(idx >= 0, rows[np.clip(idx, 0, None)], -1)
