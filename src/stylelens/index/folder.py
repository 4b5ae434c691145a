"""The embedded default backend: vectors in the index folder, memory-mapped, searched exactly or with FAISS.

Crash safety: vectors are appended to ``vectors-<generation>.f32`` and fsync'd *before* the catalog
transaction that makes their rows visible commits. Rows past the committed ``n_rows`` belong to a
batch that never committed and are cut off by ``recover``. A row is never rewritten in place;
deletes and updates leave dead rows that ``compact`` removes by writing a new generation.

Its check (``FolderBackend.check``) holds the vectors file against the catalog's committed rows: a
tail past them is cut off, a short file is padded and its lost products re-embedded by the next build,
and files of other generations are deleted.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import IndexDamagedError, InvalidArgumentError
from .backend import all_scores, exact_search
from .checkup import REINDEX, CheckedCatalog, Checkup, VectorRows

LOCAL = "local"
_VECTORS = re.compile(r"vectors-(\d+)\.f32$")


class FolderBackend:
    server_filters = False

    def __init__(self, store):
        self.store = store  # the front: catalog, columns, settings (read when needed: they change with writes)
        self.folder = Path(store.path)
        self.catalog = store.catalog
        self.dim = store.dim
        self.settings = store.settings
        self._matrices: dict[tuple[int, int], np.ndarray] = {}
        self._searcher = None
        self.method = self._method(self.settings.search)

    @staticmethod
    def accepts(location: str | None) -> bool:
        return location in (None, "", LOCAL)

    @staticmethod
    def place(location: str | None):
        """What identifies where the vectors live: the folder itself."""
        return None

    def committed_meta(self) -> dict:
        return {}

    @classmethod
    def prepare(cls, folder, manifest: dict, location, settings) -> None:
        """A new index: nothing to set up outside the folder; the manifest names no vector location."""

    @property
    def name(self) -> str:
        return self.method

    # ---- files ---------------------------------------------------------------------------
    @property
    def columns(self):
        return self.store.columns

    @property
    def n_rows(self) -> int:
        return self.catalog.n_rows

    @property
    def generation_name(self) -> str:
        return f"vectors-{self.catalog.generation}.f32"

    @property
    def vectors_file(self) -> Path:
        return self.folder / self.generation_name

    @property
    def matrix(self) -> np.ndarray:
        """All rows (live and dead) of the current view, memory-mapped read-only."""
        return self.matrix_for(self.columns)

    def matrix_for(self, columns) -> np.ndarray:
        """The vectors of one view (generation, rows). A view keeps its map while a query holds it, even after
        a compaction replaced the file: Linux keeps an unlinked file's pages for the maps that use them."""
        key = (columns.generation, columns.n_rows)
        matrix = self._matrices.get(key)
        if matrix is None:
            n = columns.n_rows
            if n == 0:
                matrix = np.zeros((0, self.dim), np.float32)
            else:
                f = self.folder / f"vectors-{columns.generation}.f32"
                size = f.stat().st_size if f.is_file() else -1
                if size < n * self.dim * 4:
                    what = "is missing" if size < 0 else f"holds {size // (self.dim * 4):,} of {n:,} vectors"
                    raise IndexDamagedError(f"The index file {f} {what}. Run stylelens check {self.folder} --repair, then "
                                            f"stylelens index CATALOG --out {self.folder} to re-embed the products it lost. "
                                            "Rebuild the index into a new folder (stylelens index CATALOG --out NEW_FOLDER) "
                                            "only if the check cannot repair it.")
                matrix = np.memmap(f, dtype=np.float32, mode="r", shape=(n, self.dim))
            self._matrices = {key: matrix}  # the latest view only; older ones live on in the queries using them
        return matrix

    def changed(self) -> None:
        self._searcher = None

    # ---- reading -------------------------------------------------------------------------
    def get(self, rows, columns) -> np.ndarray:
        return np.array(self.matrix_for(columns)[np.asarray(rows, dtype=np.int64)], dtype=np.float32)

    def all_vectors(self) -> np.ndarray:
        return self.matrix

    def search(self, queries, k, mask=None, filters=None, columns=None):
        columns = columns or self.columns
        if mask is None:
            mask = columns.live
        if self.method == "ann":
            if self._searcher is None:
                from .ann import AnnSearcher

                self._searcher = AnnSearcher(self, self.settings.ann_nprobe, self.settings.ann_candidates)
            return self._searcher.search(queries, k, mask)
        return exact_search(self.matrix_for(columns), queries, k, mask)

    def scores(self, queries, columns, rows=None) -> np.ndarray | None:
        """Every row's (or ``rows``') cosine to each query (``backend.all_scores``) when this index searches
        exactly; None with ANN."""
        return all_scores(self.matrix_for(columns), queries, rows) if self.method == "exact" else None

    def _method(self, asked: str) -> str:
        if asked == "milvus":
            raise InvalidArgumentError(
                f"Index {self.folder} keeps its vectors in the index folder; search 'milvus' needs an index built with "
                "--store milvus-lite:///path/file.db or --store milvus://HOST:PORT/COLLECTION.", code="bad_option")
        if asked == "auto":
            from .ann import faiss_available

            return "ann" if self.n_rows >= self.settings.ann_threshold and faiss_available() else "exact"
        if asked == "ann":
            from .ann import _import_faiss

            _import_faiss()  # names the extra to install, now rather than on the first query
        return asked

    # ---- writing -------------------------------------------------------------------------
    def add(self, start_row: int, records: list[dict], vectors: np.ndarray) -> None:
        with open(self.vectors_file, "ab") as fh:
            if fh.tell() != start_row * self.dim * 4:
                raise IndexDamagedError(f"The index file {self.vectors_file} holds {fh.tell() // (self.dim * 4):,} vectors where "
                                        f"{start_row:,} were committed. Run stylelens check {self.folder} --repair, then this "
                                        "command again. Rebuild the index into a new folder (stylelens index CATALOG --out "
                                        "NEW_FOLDER) only if the check cannot repair it.")
            fh.write(vectors.tobytes())
            fh.flush()
            os.fsync(fh.fileno())

    def recover(self) -> None:
        f = self.vectors_file
        size = self.catalog.n_rows * self.dim * 4
        have = f.stat().st_size if f.exists() else 0
        if have < size:  # committed vectors missing: never "unchanged" over a damaged file
            raise IndexDamagedError(f"The index file {f} holds {have // (self.dim * 4):,} of the {self.catalog.n_rows:,} "
                                    f"committed vectors. Run stylelens check {self.folder} --repair, then this command again "
                                    "to re-embed the products it lost. Rebuild the index into a new folder (stylelens index "
                                    "CATALOG --out NEW_FOLDER) only if the check cannot repair it.")
        if have > size:
            with open(f, "r+b") as fh:
                fh.truncate(size)
        for stale in self.folder.glob("vectors-*.f32"):  # left by an interrupted compaction
            if stale != f:
                stale.unlink()

    def delete(self, ids, rows) -> None:
        """Rows go dead with the catalog commit; compaction reclaims them."""

    def update_fields(self, records, before) -> None:
        """Filters read the catalog's columns here: nothing to copy."""

    def compact(self) -> int:
        """Rewrite the vectors without dead rows: a new generation file, then one catalog commit."""
        catalog = self.catalog
        live = catalog.live_rows()
        n_dead = catalog.n_rows - len(live)
        if n_dead == 0:
            return 0
        old_file = self.vectors_file
        generation = catalog.generation + 1
        new_file = self.folder / f"vectors-{generation}.f32"
        vecs = self.matrix
        with open(new_file, "wb") as fh:
            for start in range(0, len(live), 4096):
                fh.write(np.ascontiguousarray(vecs[[r for _, r in live[start:start + 4096]]]).tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        catalog.renumber([pid for pid, _ in live], generation)
        self._matrices = {}
        old_file.unlink(missing_ok=True)
        return n_dead

    def maintain(self) -> None:
        from .ann import maintain

        maintain(self, self.settings.search, self.settings.ann_threshold)

    def close(self) -> None:
        self._matrices = {}
        self._searcher = None

    # ---- stylelens check -----------------------------------------------------------------
    @classmethod
    def check(cls, checkup: Checkup, database, catalog: CheckedCatalog) -> VectorRows | None:
        """The vector files of the index folder against the catalog's committed rows and generation."""
        folder = Path(database.location)
        n_rows, generation = catalog.n_rows, catalog.generation
        _check_generations(checkup, folder, generation)
        dim = _dim(checkup, folder, catalog)
        if dim is None or n_rows is None:
            return None
        return _check_vectors_file(checkup, folder / f"vectors-{generation}.f32", n_rows, dim)


def _check_generations(checkup: Checkup, folder: Path, generation: int | None) -> None:
    if generation is None:
        return
    for f in sorted(folder.iterdir()):
        m = _VECTORS.match(f.name)
        if m and int(m.group(1)) != generation and f.is_file():
            finding = checkup.add(f.name, "stale_generation", f"a vectors file of generation {m.group(1)} (the catalog uses "
                                  f"{generation}) that nothing reads; run stylelens check INDEX --repair to delete it.", True)
            if checkup.repair:
                f.unlink()
                checkup.repaired(finding, "deleted (a stale vectors generation)")


def _dim(checkup: Checkup, folder: Path, catalog: CheckedCatalog) -> int | None:
    """The manifest's dimension; without a manifest, the one backbone dimension the file's size fits."""
    if catalog.manifest is not None:
        return int(catalog.manifest["embedder"]["dim"])
    if not catalog.n_rows or catalog.generation is None:
        return None
    from ..models import BACKBONES

    f = folder / f"vectors-{catalog.generation}.f32"
    size = f.stat().st_size if f.is_file() else 0
    fits = sorted({spec.dim for spec in BACKBONES.values() if size == catalog.n_rows * spec.dim * 4})
    if len(fits) == 1:
        return fits[0]
    checkup.note("vectors not checked: without a manifest their dimension cannot be told from the file")
    return None


def _check_vectors_file(checkup: Checkup, f: Path, n_rows: int, dim: int) -> VectorRows | None:
    row_bytes = dim * 4
    need = n_rows * row_bytes
    have = f.stat().st_size if f.is_file() else -1
    complete = max(have, 0) // row_bytes
    if have < need:
        lost = [p.id for p in checkup.products if p.row is not None and p.row >= complete]
        what = "is missing" if have < 0 else f"holds {complete:,} of the {n_rows:,} committed vectors"
        finding = checkup.add(f.name, "vectors_short", f"it {what} ({len(lost)} product(s) without a vector); run stylelens "
                              f"check INDEX --repair, then {REINDEX} re-embeds them.", True, lost)
        if checkup.repair:
            with open(f, "ab") as fh:  # zero rows in place of the lost ones: the build appends after them
                fh.truncate(need)
                fh.flush()
                os.fsync(fh.fileno())
            checkup.forget.update(dict.fromkeys(lost, finding))
            complete = n_rows
        elif complete == 0:
            return None
    elif have > need:
        extra = (have - need) / row_bytes
        finding = checkup.add(f.name, "vectors_tail", f"it holds {extra:g} vector row(s) past the {n_rows:,} committed ones "
                              "(a batch that never committed); run stylelens check INDEX --repair to cut them off.", True)
        if checkup.repair:
            with open(f, "r+b") as fh:
                fh.truncate(need)
                fh.flush()
                os.fsync(fh.fileno())
            checkup.repaired(finding, f"cut off {extra:g} uncommitted vector row(s)")
    rows = min(complete, n_rows)
    matrix = np.memmap(f, dtype=np.float32, mode="r", shape=(rows, dim)) if rows else np.zeros((0, dim), np.float32)
    return VectorRows(matrix, f.name)
