"""``stylelens check``: verify an index file by file, and repair what is safe to repair.

A database index (PostgreSQL + its Milvus collection) is checked table by table: its schema revision,
manifest, tuned head and catalog rows, then the collection against the catalog (a vector for every
product, none that no product owns, no batch left uncommitted), with the same unit length and
re-embedded sample checks, reading Milvus by id in bounded chunks (``check_database``).

Each check names the file (for a database: the table, artifact or collection) and what is wrong in one
line. Repairs never invent vectors: they cut what was never committed, delete what no view reads, and
make the next ``stylelens index`` re-embed the products whose vectors cannot be trusted (their image
hash is forgotten, so the build sees them as changed). Everything else is reported with the command
that fixes it."""

from __future__ import annotations

import os
import random
import re
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import (ImageError, IndexDamagedError, IndexMismatchError, IndexNotFoundError, InvalidArgumentError,
                      MissingExtraError, StylelensError, WeightsError)
from ..intake.images import content_hash, load_image, read_bytes
from ..settings import Settings, settings_or_default
from .backend import kind_of
from .catalog_db import CATALOG_DB, CatalogDB
from .check_database import DatabaseIndex, MilvusRows
from .database import FolderDatabase, is_database
from .lock import WriterLock
from .manifest import FORMAT, MANIFEST, new_manifest, read_manifest, write_manifest
from .store import open_store

MATCH = 0.99  # cosine of a re-embedded image to its stored vector; the same weights and input give ~1.0
UNIT_TOLERANCE = 1e-3
DRIFT = 1e-4  # runtimes and precisions move a re-embedded vector by less (bf16: ~2e-5 in cosine)
SYSTEMATIC = 0.25  # this share of a partial sample mismatched: the whole file is suspect, not a few rows
REBUILD = "rebuild the index into a new folder (stylelens index CATALOG --out NEW_FOLDER)"
REBUILD_DATABASE = ("rebuild the index into a new database (stylelens index CATALOG --out postgresql://USER@HOST:PORT/NEW_DB "
                    "--store milvus://HOST:PORT/NEW_COLLECTION)")
TUNE = "run stylelens tune INDEX to train it again (or search with --no-tune until then)"
UNIT_READS = 10_000  # vectors a database check reads for their length unless --sample 0 (all)
NEAREST = 8  # neighbours a database check asks Milvus for, to find the closest trusted product's vector
REINDEX = "stylelens index CATALOG --out INDEX"
_VECTORS = re.compile(r"vectors-(\d+)\.f32$")


@dataclass
class Finding:
    """One problem: the file, a stable code, one line saying what is wrong and what to do."""

    file: str
    code: str
    message: str
    repairable: bool = False
    repaired: bool = False
    done: str = ""  # what the repair did
    products: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"repaired  {self.file}: {self.done}" if self.repaired else f"problem   {self.file}: {self.message}"


@dataclass
class CheckReport:
    path: str
    repair: bool
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)

    @property
    def problems(self) -> int:
        return len(self.findings)

    @property
    def repaired(self) -> int:
        return sum(f.repaired for f in self.findings)

    @property
    def ok(self) -> bool:
        """Nothing wrong is left (nothing found, or everything found was repaired)."""
        return self.repaired == self.problems

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def summary(self) -> str:
        if not self.findings:
            return "ok"
        return f"{self.problems} problem{'s' if self.problems != 1 else ''} ({self.repaired} repaired)"

    def to_dict(self) -> dict:
        return {"path": self.path, "ok": self.ok, "summary": self.summary(), "problems": self.problems,
                "repaired": self.repaired, "findings": [asdict(f) for f in self.findings], "notes": self.notes,
                "counts": self.counts}


@dataclass
class _Product:
    id: str
    row: int | None
    image_path: str | None
    sha256: str | None


def check(path, repair: bool = False, sample: int = 64, *, settings: Settings | None = None, embedder=None) -> CheckReport:
    """Verify the index at ``path`` (a folder, or a database location); with ``repair``, take the writer
    lock and fix what is safe.

    ``sample`` products (seeded; 0 = all) are re-embedded from their images and compared with their
    stored vectors. ``embedder``: the one to re-embed with (default: made from the manifest).
    """
    if sample < 0:
        raise InvalidArgumentError(f"sample must be 0 (every product) or more, got {sample}.", code="bad_option")
    settings = settings_or_default(settings)
    if is_database(path):
        index = DatabaseIndex(path, settings)  # a down server or a wrong password: one line, as every command
        try:
            return _DatabaseChecker(index, repair, sample, settings, embedder).run()
        finally:
            index.close()
    folder = Path(path)
    if not folder.is_dir() or not ((folder / MANIFEST).exists() or (folder / CATALOG_DB).exists()):
        raise IndexNotFoundError(f"No stylelens index at {folder} (no manifest.json or catalog.sqlite). Check the path.")
    lock = WriterLock(folder).acquire() if repair else None
    try:
        return _Checker(folder, repair, sample, settings, embedder).run()
    finally:
        if lock is not None:
            lock.release()


class _Checker:
    def __init__(self, folder: Path, repair: bool, sample: int, settings: Settings, embedder):
        self.folder = folder
        self.repair = repair
        self.sample = sample
        self.settings = settings
        self.embedder = embedder
        self.report = CheckReport(str(folder), repair)
        self.forget: dict[str, Finding] = {}  # product id -> the finding whose repair forgets its hash
        self.remove: dict[str, Finding] = {}  # product id -> the finding whose repair removes it from the catalog
        self.products: list[_Product] = []
        self.catalog_ok = False
        self.vectors_ok = False
        self.manifest_finding: Finding | None = None
        self.vectors_file = "vectors"
        self.rebuild = REBUILD
        self.whole = "file"  # what a systematic mismatch condemns
        self.unit_limit: int | None = None  # vectors read for their length (None: all)

    def run(self) -> CheckReport:
        manifest = self.check_manifest()
        n_rows, generation = self.check_catalog()
        kind = kind_of(((manifest or {}).get("vectors") or {}).get("location"))
        dim = self.dim(manifest, n_rows, generation)
        matrix = None
        if kind == "folder":
            self.check_leftovers(generation)
            if dim is not None and n_rows is not None:
                matrix = self.check_vectors_file(n_rows, generation, dim)
        else:
            self.report.notes.append(f"vectors kept in {kind} ({manifest['vectors'].get('location')}): its file checks are "
                                     "that store's own; vectors read through it")
            matrix = self.store_vectors(manifest)
        pending = [p for p in self.products if p.sha256 is None and p.row is not None]
        if matrix is not None:
            self.check_unit(matrix, {p.id for p in pending})
        if manifest is None and self.repair:
            manifest = self.rebuild_manifest(matrix)
        if matrix is not None:
            self.check_sample(manifest, matrix, {p.id for p in pending})
        self.check_head(manifest, FolderDatabase(self.folder).read_artifact)
        self.apply_catalog_repairs()
        self.report_pending(CATALOG_DB, pending)
        self.report.counts.update(products=len(self.products), vector_rows=n_rows)
        return self.report

    def report_pending(self, file: str, pending: list[_Product]) -> None:
        if pending:
            ids = [p.id for p in pending]
            self.add(file, "pending", f"{len(ids)} product(s) wait to be re-embedded (image hash forgotten, e.g. by a "
                     f"repair): {_few(ids)}. Run {REINDEX}.", products=ids)

    # ---- findings ------------------------------------------------------------------------
    def add(self, file: str, code: str, message: str, repairable: bool = False, products=()) -> Finding:
        finding = Finding(file, code, message, repairable, products=list(products))
        self.report.findings.append(finding)
        return finding

    def repaired(self, finding: Finding, done: str) -> None:
        finding.repaired, finding.done = True, done

    # ---- 1. manifest ---------------------------------------------------------------------
    def check_manifest(self, read=None, fix: str = "run stylelens check INDEX --repair to rebuild it from the catalog and "
                       "vectors", repairable: bool = True) -> dict | None:
        """The manifest (``read()``, default the folder's file): readable, our format, naming its embedder."""
        try:
            manifest = read() if read is not None else read_manifest(self.folder)
        except IndexDamagedError as exc:
            why = exc.message.split(": ", 1)[-1].split(". ", 1)[0]
            self.manifest_finding = self.add(MANIFEST, "manifest_damaged", f"{why}; {fix}.", repairable=repairable)
            return None
        except IndexMismatchError:
            self.add(MANIFEST, "manifest_version", f"it was written by another stylelens format version; use that version "
                     f"or {self.rebuild}.")
            return None
        if manifest is None:
            self.manifest_finding = self.add(MANIFEST, "manifest_missing", f"it is missing; {fix}.", repairable=repairable)
            return None
        if manifest.get("format") != FORMAT:
            self.add(MANIFEST, "manifest_format", f"its format is {manifest.get('format')!r}, not {FORMAT!r}; {self.rebuild}.")
        dim = manifest["embedder"].get("dim")
        if not isinstance(dim, int) or dim <= 0:
            self.add(MANIFEST, "manifest_dim", f"its embedder dimension {dim!r} is not a positive number; {self.rebuild}.")
            return None
        return manifest

    # ---- 2. catalog ----------------------------------------------------------------------
    def check_catalog(self) -> tuple[int | None, int | None]:
        path = self.folder / CATALOG_DB
        if not path.is_file():
            self.add(CATALOG_DB, "catalog_missing", f"it is missing; {REBUILD}.")
            return None, None
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            self.add(CATALOG_DB, "catalog_unreadable", f"it cannot be opened ({exc}); {REBUILD}.")
            return None, None
        try:
            problems = [r[0] for r in db.execute("PRAGMA integrity_check(5)")]
            if problems != ["ok"]:
                self.add(CATALOG_DB, "catalog_integrity", f"SQLite integrity check failed ({'; '.join(problems)[:200]}); "
                         f"{REBUILD}.")
                return None, None
            meta = dict(db.execute("SELECT key, value FROM meta"))
            rows = db.execute("SELECT id, row, image_path, image_sha256 FROM products").fetchall()
        except sqlite3.Error as exc:
            self.add(CATALOG_DB, "catalog_unreadable", f"it is not a readable stylelens catalog ({exc}); {REBUILD}.")
            return None, None
        finally:
            db.close()
        return self.check_rows(CATALOG_DB, meta, rows)

    def check_rows(self, file: str, meta: dict, rows: list[tuple]) -> tuple[int | None, int | None]:
        """The catalog's meta and its (id, row, image_path, image_sha256) rows: every product at its own row."""
        n_rows = _int(meta.get("n_rows"))
        generation = _int(meta.get("generation"))
        if n_rows is None or generation is None:
            missing = " and ".join(k for k, v in (("n_rows", n_rows), ("generation", generation)) if v is None)
            self.add(file, "catalog_meta", f"its meta table has no valid {missing}; {self.rebuild}.")
            return None, None
        self.products = [_Product(str(pid), row, path_, sha) for pid, row, path_, sha in rows]
        outside = [p.id for p in self.products if p.row is None or not 0 <= p.row < n_rows]
        if outside:
            self.remove.update(dict.fromkeys(outside, self.add(
                file, "catalog_rows", f"{len(outside)} product(s) point outside vector rows 0..{n_rows - 1}: {_few(outside)}; "
                "run stylelens check INDEX --repair to remove them, then " + REINDEX + " adds them again.",
                repairable=True, products=outside)))
        by_row: dict[int, list[str]] = {}
        for p in self.products:
            if p.row is not None and p.id not in self.remove:
                by_row.setdefault(p.row, []).append(p.id)
        shared = sorted(pid for ids in by_row.values() if len(ids) > 1 for pid in ids)
        if shared:
            self.remove.update(dict.fromkeys(shared, self.add(
                file, "catalog_shared_rows", f"{len(shared)} product(s) share vector rows: {_few(shared)}; run stylelens "
                "check INDEX --repair to remove them, then " + REINDEX + " adds them again.", repairable=True, products=shared)))
        self.products = [p for p in self.products if p.id not in self.remove]
        self.catalog_ok = True
        return n_rows, generation

    # ---- 3. files ------------------------------------------------------------------------
    def check_leftovers(self, generation: int | None) -> None:
        for f in sorted(self.folder.iterdir()):
            m = _VECTORS.match(f.name)
            if m and generation is not None and int(m.group(1)) != generation and f.is_file():
                finding = self.add(f.name, "stale_generation", f"a vectors file of generation {m.group(1)} (the catalog uses "
                                   f"{generation}) that nothing reads; run stylelens check INDEX --repair to delete it.", True)
                if self.repair:
                    f.unlink()
                    self.repaired(finding, "deleted (a stale vectors generation)")
            elif f.name.endswith(".tmp") or f.name.startswith(".tmp-"):
                finding = self.add(f.name, "temp_file", "a temporary file left by an interrupted write; run stylelens check "
                                   "INDEX --repair to delete it.", True)
                if self.repair:
                    if f.is_dir():
                        import shutil

                        shutil.rmtree(f)
                    else:
                        f.unlink()
                    self.repaired(finding, "deleted (a leftover temporary file)")

    def check_vectors_file(self, n_rows: int, generation: int, dim: int) -> np.ndarray | None:
        f = self.folder / f"vectors-{generation}.f32"
        row_bytes = dim * 4
        need = n_rows * row_bytes
        have = f.stat().st_size if f.is_file() else -1
        complete = max(have, 0) // row_bytes
        if have < need:
            lost = [p.id for p in self.products if p.row is not None and p.row >= complete]
            what = "is missing" if have < 0 else f"holds {complete:,} of the {n_rows:,} committed vectors"
            finding = self.add(f.name, "vectors_short", f"it {what} ({len(lost)} product(s) without a vector); run stylelens "
                               f"check INDEX --repair, then {REINDEX} re-embeds them.", True, lost)
            if self.repair:
                with open(f, "ab") as fh:  # zero rows in place of the lost ones: the build appends after them
                    fh.truncate(need)
                    fh.flush()
                    os.fsync(fh.fileno())
                self.forget.update(dict.fromkeys(lost, finding))
                complete = n_rows
            elif complete == 0:
                return None
        elif have > need:
            extra = (have - need) / row_bytes
            finding = self.add(f.name, "vectors_tail", f"it holds {extra:g} vector row(s) past the {n_rows:,} committed ones "
                               "(a batch that never committed); run stylelens check INDEX --repair to cut them off.", True)
            if self.repair:
                with open(f, "r+b") as fh:
                    fh.truncate(need)
                    fh.flush()
                    os.fsync(fh.fileno())
                self.repaired(finding, f"cut off {extra:g} uncommitted vector row(s)")
        self.vectors_file = f.name
        rows = min(complete, n_rows)
        return np.memmap(f, dtype=np.float32, mode="r", shape=(rows, dim)) if rows else np.zeros((0, dim), np.float32)

    def store_vectors(self, manifest: dict) -> np.ndarray | None:
        self.vectors_file = "vectors"
        try:
            store = open_store(self.folder, settings=self.settings)
        except StylelensError as exc:
            self.add("vectors", "vectors_unreadable", f"{exc.message}")
            return None
        try:
            live = [p for p in self.products if p.row is not None]
            rows = np.array([p.row for p in live], dtype=np.int64)
            out = np.zeros((max([p.row for p in live], default=-1) + 1, store.dim), np.float32)
            out[rows] = store.vectors(rows)
            return out
        finally:
            store.close()

    def dim(self, manifest: dict | None, n_rows: int | None, generation: int | None) -> int | None:
        if manifest is not None:
            return int(manifest["embedder"]["dim"])
        if not n_rows or generation is None:
            return None
        from ..models import BACKBONES

        f = self.folder / f"vectors-{generation}.f32"
        size = f.stat().st_size if f.is_file() else 0
        fits = sorted({spec.dim for spec in BACKBONES.values() if size == n_rows * spec.dim * 4})
        if len(fits) == 1:
            return fits[0]
        self.report.notes.append("vectors not checked: without a manifest their dimension cannot be told from the file")
        return None

    # ---- 4. unit length ------------------------------------------------------------------
    def check_unit(self, matrix: np.ndarray, pending: set[str]) -> None:
        live = [p for p in self.products if p.row is not None and p.row < len(matrix) and p.id not in pending
                and p.id not in self.forget]
        if self.unit_limit is not None and len(live) > self.unit_limit:
            self.report.notes.append(f"the length of {self.unit_limit:,} of {len(live):,} vectors checked (seeded; "
                                     "stylelens check INDEX --sample 0 reads every vector)")
            live = sorted(random.Random(0).sample(live, self.unit_limit), key=lambda p: p.row)
        bad = []
        for start in range(0, len(live), 4096):
            chunk = live[start:start + 4096]
            vecs = np.asarray(matrix[[p.row for p in chunk]], dtype=np.float32)
            with np.errstate(all="ignore"):
                norms = np.linalg.norm(vecs, axis=1)
                wrong = ~np.isfinite(vecs).all(axis=1) | ~(np.abs(norms - 1) <= UNIT_TOLERANCE)
            bad += [p.id for p, w in zip(chunk, wrong) if w]
        self.report.counts["vectors_checked"] = len(live)
        self.vectors_ok = not bad
        if bad:
            finding = self.add(self.vectors_file, "vectors_damaged", f"{len(bad)} of {len(live)} vectors are not finite unit "
                               f"vectors (zeroed or NaN rows): {_few(bad)}; run stylelens check INDEX --repair, then "
                               f"{REINDEX} re-embeds them.", True, bad)
            self.forget.update(dict.fromkeys(bad, finding))

    # ---- 5. re-embedded sample -----------------------------------------------------------
    def check_sample(self, manifest: dict | None, matrix: np.ndarray, pending: set[str]) -> None:
        if manifest is None:
            self.report.notes.append("re-embed check skipped: it needs the manifest's embedder")
            return
        candidates = [p for p in self.products if p.row is not None and p.row < len(matrix) and p.id not in pending
                      and p.id not in self.forget and p.image_path and p.sha256]
        random.Random(0).shuffle(candidates)
        if not candidates:
            if self.products:
                self.report.notes.append("re-embed check skipped: no product records an image file and its hash")
            return
        embedder = self.embedder
        if embedder is None:
            from ..models import Embedder

            try:
                embedder = self.embedder = Embedder.from_fingerprint(manifest["embedder"], settings=self.settings)
            except (WeightsError, MissingExtraError) as exc:
                self.report.notes.append(f"re-embed check skipped: the embedder's weights are unavailable ({exc.message})")
                return
            except StylelensError as exc:
                self.report.notes.append(f"re-embed check skipped: the manifest's embedder cannot be made ({exc.message})")
                return
        wanted = self.sample or len(candidates)
        picked, pixels = [], []
        for p in candidates:
            if len(picked) >= wanted:
                break
            image = self._prepared(p, embedder)
            if image is not None:
                picked.append(p)
                pixels.append(image)
        self.report.counts.update(sampled=len(picked), sample_candidates=len(candidates))
        if not picked:
            self.report.notes.append("re-embed check skipped: no product's image file is still there unchanged")
            return
        fresh = embedder.embed_prepared(np.stack(pixels))
        stored = np.asarray(matrix[[p.row for p in picked]], dtype=np.float32)
        fresh /= np.maximum(np.linalg.norm(fresh, axis=1, keepdims=True), 1e-12)
        cos = np.sum(fresh * stored, axis=1) / np.maximum(np.linalg.norm(stored, axis=1), 1e-12)
        best_cos, best_row = self._best(matrix, fresh, pending)
        # A weak backbone (random weights) makes every image's vector alike, far above MATCH: a swapped
        # row then shows as another product's vector fitting this image clearly better than its own.
        wrong = [p.id for p, c, bc, br in zip(picked, cos, best_cos, best_row)
                 if not c >= MATCH or (br != p.row and bc > c + DRIFT)]
        self.report.counts["lowest_cosine"] = round(float(np.nanmin(cos)), 4)
        if not wrong:
            return
        partial = len(picked) < len(candidates)
        systematic = partial and len(wrong) >= SYSTEMATIC * len(picked)
        if systematic:  # shuffled or foreign vectors: the unsampled products cannot be trusted either
            affected = [p.id for p in candidates]
            scope = (f"; the whole {self.whole} looks shuffled or foreign, so all {len(affected)} are re-embedded by "
                     "the repair")
        else:
            affected = wrong
            scope = ("; the rest were not compared (stylelens check INDEX --sample 0 compares every product)"
                     if partial else "")
        finding = self.add(self.vectors_file, "vectors_mismatch",
                           f"{len(wrong)} of {len(picked)} re-embedded products do not match their stored vectors (cosine < "
                           f"{MATCH} or another product's vector fits better, lowest {float(np.nanmin(cos)):.4f}: rows point at the wrong "
                           f"vectors): {_few(wrong)}{scope}; "
                           f"run stylelens check INDEX --repair, then {REINDEX} re-embeds them.", True, affected)
        self.forget.update(dict.fromkeys(affected, finding))

    def _best(self, matrix: np.ndarray, fresh: np.ndarray, pending: set[str]) -> tuple[np.ndarray, np.ndarray]:
        """For each fresh vector, the cosine and row of the closest stored vector of a trusted product."""
        rows = np.array(sorted(p.row for p in self.products if p.row is not None and p.row < len(matrix)
                               and p.id not in pending and p.id not in self.forget), dtype=np.int64)
        best_cos = np.full(len(fresh), -np.inf, np.float32)
        best_row = np.full(len(fresh), -1, np.int64)
        for start in range(0, len(rows), 8192):
            chunk = rows[start:start + 8192]
            with np.errstate(all="ignore"):
                scores = fresh @ np.asarray(matrix[chunk], dtype=np.float32).T
            scores = np.nan_to_num(scores, nan=-np.inf)
            top = scores.argmax(axis=1)
            better = scores[np.arange(len(fresh)), top] > best_cos
            best_cos[better] = scores[np.arange(len(fresh)), top][better]
            best_row[better] = chunk[top][better]
        return best_cos, best_row

    def _prepared(self, p: _Product, embedder) -> np.ndarray | None:
        """The network input of a product's image, when the file is still the one its vector was made from."""
        from ..models import prepare

        try:
            data = read_bytes(p.image_path)
            if content_hash(data) != p.sha256:
                return None
            return prepare(load_image(data, max_pixels=self.settings.max_pixels), embedder.preprocess)
        except ImageError:
            return None

    # ---- 6. the tuned head ---------------------------------------------------------------
    def check_head(self, manifest: dict | None, read_artifact) -> None:
        """The head the manifest names (stylelens tune) is there, loads, and is the one tune wrote."""
        head = (manifest or {}).get("head")
        if not isinstance(head, dict):
            return
        from ..models.head import HEAD_ARTIFACT, Head, sha256

        name = str(head.get("artifact") or HEAD_ARTIFACT)
        try:
            data = read_artifact(name)
        except (InvalidArgumentError, OSError):
            data = None
        if data is None:
            self.add(name, "head_missing", f"the manifest names a tuned head that is not there (searches fall back to the "
                     f"raw space); {TUNE}.")
            return
        try:
            Head.from_bytes(data)
        except IndexDamagedError:
            self.add(name, "head_damaged", f"it does not load as a tuned head, so searching the tuned space fails; {TUNE}.")
            return
        if head.get("sha256") and sha256(data) != head["sha256"]:
            self.add(name, "head_damaged", f"it is not the head tune wrote (its sha256 differs from the manifest's); {TUNE}.")

    # ---- repairs -------------------------------------------------------------------------
    def rebuild_manifest(self, matrix: np.ndarray | None) -> dict | None:
        finding = self.manifest_finding
        if finding is None:
            return None
        problems = [f for f in self.report.findings if not f.repaired and f is not finding and f.code != "pending"]
        if not self.catalog_ok or problems:
            finding.repairable = False
            finding.message = finding.message.split("; ")[0] + f"; the catalog or vectors are damaged too, so {REBUILD}."
            return None
        embedder = self.infer_embedder(matrix) if matrix is not None and len(matrix) else None
        if embedder is None:
            finding.repairable = False
            finding.message = (finding.message.split("; ")[0] + "; the embedder that made the vectors cannot be inferred "
                               f"(no backbone, weights and pooling re-embed the images to their vectors), so {REBUILD}.")
            return None
        from ..models import library_versions

        manifest = new_manifest(embedder.fingerprint(), library_versions())
        manifest["counts"] = {"products": len(self.products), "vector_rows": len(matrix),
                              "dead_rows": len(matrix) - len(self.products)}
        write_manifest(self.folder, manifest)
        fp = manifest["embedder"]
        self.repaired(finding, f"rebuilt from the catalog and vectors (embedder inferred: {fp['backbone']}, weights "
                               f"{fp['weights']['source']}, pooling {fp['pooling']})")
        return manifest

    def infer_embedder(self, matrix: np.ndarray):
        """The embedder whose vectors of a few catalog images equal the stored ones."""
        from ..models import BACKBONES, Embedder

        candidates = [p for p in self.products if p.row is not None and p.row < len(matrix) and p.image_path and p.sha256]
        random.Random(0).shuffle(candidates)
        dim = matrix.shape[1]
        tries = [self.embedder] if self.embedder is not None else []
        for name, spec in BACKBONES.items():
            if spec.dim != dim:
                continue
            for weights in dict.fromkeys((self.settings.weights, "imagenet", "random")):
                for pooling in ("max", "avg"):
                    tries.append((name, weights, pooling))
        for attempt in tries:
            if isinstance(attempt, tuple):
                name, weights, pooling = attempt
                try:
                    embedder = Embedder(name, weights=weights, pooling=pooling, settings=self.settings)
                except StylelensError:
                    continue
            else:
                embedder = attempt
            if embedder.dim != dim:
                continue
            picked, pixels = [], []
            for p in candidates:
                image = self._prepared(p, embedder)
                if image is not None:
                    picked.append(p)
                    pixels.append(image)
                if len(picked) == 4:
                    break
            if not picked:
                return None
            fresh = embedder.embed_prepared(np.stack(pixels))
            stored = np.asarray(matrix[[p.row for p in picked]], dtype=np.float32)
            if np.all(np.sum(fresh * stored, axis=1) >= MATCH):
                self.embedder = embedder
                return embedder
        return None

    def apply_catalog_repairs(self) -> None:
        if not self.repair or not (self.forget or self.remove):
            return
        db = CatalogDB(self.folder, writable=True)
        try:
            self.repair_catalog(db)
        finally:
            db.close()

    def repair_catalog(self, catalog) -> None:
        """Remove the products that cannot stay, and forget the image hash of those to re-embed."""
        if self.remove:
            catalog.delete(list(self.remove))
            for finding in {id(f): f for f in self.remove.values()}.values():
                self.repaired(finding, f"removed {len(finding.products)} product(s) from the catalog; {REINDEX} adds "
                                       "them again")
        if self.forget:
            catalog.forget_hashes(list(self.forget))
            for finding in {id(f): f for f in self.forget.values()}.values():
                n = sum(1 for f in self.forget.values() if f is finding)
                what = "padded the file to its committed size and " if finding.code == "vectors_short" else ""
                self.repaired(finding, f"{what}forgot the image hash of {n} product(s): {REINDEX} re-embeds exactly them")


class _DatabaseChecker(_Checker):
    """The same checks on a database index: PostgreSQL's schema, manifest, head and catalog rows, and the
    Milvus collection against the catalog. Repairs go through the index's store, under the writer lock."""

    def __init__(self, index: DatabaseIndex, repair: bool, sample: int, settings: Settings, embedder):
        super().__init__(index.location, repair, sample, settings, embedder)
        self.index = index
        self.rebuild = REBUILD_DATABASE
        self.whole = "collection"
        self.unit_limit = UNIT_READS if sample else None
        self.orphans: Finding | None = None  # its repair deletes its products' vectors
        self.batch: Finding | None = None  # its repair clears the uncommitted batch, as the next build would

    def run(self) -> CheckReport:
        if not self.check_schema():
            return self.report
        meta, rows = self.index.catalog()
        if not rows and not self.has_manifest():
            raise self.index.not_found()
        manifest = self.check_manifest(self.index.manifest, self.rebuild, repairable=False)
        n_rows, _ = self.check_rows("products", meta, rows)
        self.check_head(manifest, self.index.artifact)
        pending = [p for p in self.products if p.sha256 is None and p.row is not None]
        if manifest is not None and n_rows is not None:
            matrix = self.check_collection(manifest, meta, n_rows)
            if matrix is not None:
                self.check_unit(matrix, {p.id for p in pending})
                self.check_sample(manifest, matrix, {p.id for p in pending})
        self.apply_catalog_repairs()
        self.report_pending("products", pending)
        self.report.counts.update(products=len(self.products), vector_rows=n_rows)
        return self.report

    def has_manifest(self) -> bool:
        try:
            return self.index.manifest() is not None
        except StylelensError:
            return True  # there, but damaged: a finding

    # ---- 0. schema -------------------------------------------------------------------------
    def check_schema(self) -> bool:
        """The schema is at this stylelens's Alembic revision. An older one is migrated by the next command that opens
        the index (--repair: now); a newer one is left to the stylelens that wrote it. True: go on checking."""
        found = self.index.revision
        if found is None:
            raise self.index.not_found()
        head, known = self.index.revisions()
        if found == head:
            self.index.open(lock=self.repair)
            return True
        if found not in known:
            self.add("schema", "schema_unknown", f"it is at revision {found}, which this stylelens does not know (a newer "
                     "stylelens wrote it); check the index with that version. Nothing else was checked.")
            return False
        finding = self.add("schema", "schema_old", f"it is at revision {found}, this stylelens's is {head}: the next command "
                           "that opens the index migrates it (stylelens check INDEX --repair does it now). Nothing else was "
                           "checked.", repairable=True)
        if not self.repair:
            return False
        self.index.open(lock=True)  # opening migrates
        self.repaired(finding, f"migrated the schema from revision {found} to {head}")
        return True

    # ---- 3. the collection -----------------------------------------------------------------
    def check_collection(self, manifest: dict, meta: dict, n_rows: int) -> MilvusRows | None:
        """Milvus holds one vector for every product of the catalog, none that no product owns, and no batch
        whose catalog commit never happened."""
        self.vectors_file = str((manifest.get("vectors") or {}).get("location") or "vectors").split("?")[0]
        try:
            self.index.open_collection(manifest)
        except (IndexNotFoundError, IndexMismatchError, InvalidArgumentError) as exc:
            self.add(self.vectors_file, "vectors_collection", exc.message)
            return None
        ids, held = self.index.vector_ids()
        self.report.counts["vectors_held"] = held
        catalog = {p.id for p in self.products} | set(self.remove)
        batch = self.index.pending_batch(meta)
        if batch:
            self.batch = self.add(self.vectors_file, "vectors_uncommitted", f"{len(batch)} vector(s) of a batch whose "
                                  f"catalog commit never happened (a stylelens index interrupted, or running now): "
                                  f"{_few(batch)}; run stylelens check INDEX --repair (or {REINDEX}) to clear it.", True, batch)
        orphans = sorted(ids - catalog - set(batch))
        if orphans:
            self.orphans = self.add(self.vectors_file, "vectors_orphan", f"{len(orphans)} vector(s) that no product of the "
                                    f"catalog owns, found by searches and then dropped: {_few(orphans)}; run stylelens check "
                                    "INDEX --repair to delete them.", True, orphans)
        missing = [p.id for p in self.products if p.id not in ids and p.sha256 is not None]
        if missing:
            self.forget.update(dict.fromkeys(missing, self.add(
                self.vectors_file, "vectors_missing", f"{len(missing)} product(s) have no vector in it, so no search finds "
                f"them: {_few(missing)}; run stylelens check INDEX --repair, then {REINDEX} re-embeds them.", True, missing)))
        if held > len(ids):
            live = {p.id for p in self.products}
            twice = [pid for pid in self.index.duplicated(sorted(ids)) if pid in live and pid not in self.forget]
            if twice:
                self.forget.update(dict.fromkeys(twice, self.add(
                    self.vectors_file, "vectors_duplicate", f"{len(twice)} product(s) have more than one vector in it: "
                    f"{_few(twice)}; run stylelens check INDEX --repair, then {REINDEX} re-embeds them (one vector each).",
                    True, twice)))
        return MilvusRows(self.index, {p.row: p.id for p in self.products}, n_rows, int(manifest["embedder"]["dim"]))

    def _best(self, matrix, fresh: np.ndarray, pending: set[str]) -> tuple[np.ndarray, np.ndarray]:
        """For each fresh vector, the cosine and row of the closest trusted product's vector: the collection's own search."""
        row_of = {p.id: p.row for p in self.products if p.id not in pending and p.id not in self.forget}
        best_cos = np.full(len(fresh), -np.inf, np.float32)
        best_row = np.full(len(fresh), -1, np.int64)
        for i, hits in enumerate(self.index.nearest(fresh, NEAREST)):
            trusted = [(score, row_of[pid]) for pid, score in hits if pid in row_of]
            if trusted:
                best_cos[i], best_row[i] = trusted[0]
        return best_cos, best_row

    # ---- repairs -------------------------------------------------------------------------
    def apply_catalog_repairs(self) -> None:
        if not self.repair or not (self.forget or self.remove or self.orphans or self.batch):
            return
        store = self.index.writable_store()  # opening it for writing clears an uncommitted batch, as a build does
        try:
            if self.batch is not None:
                self.repaired(self.batch, "deleted the batch's vectors that no product owns, and forgot the image hash of "
                                          f"its products in the catalog: {REINDEX} re-embeds them")
            if self.orphans is not None:
                store.backend.delete(self.orphans.products, np.empty(0, np.int64))
                self.repaired(self.orphans, f"deleted {len(self.orphans.products)} vector(s) that no product owns")
            if self.remove:
                store.backend.delete(list(self.remove), np.empty(0, np.int64))
            self.repair_catalog(store.catalog)
        finally:
            store.close()


def _int(value) -> int | None:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n >= 0 else None


def _few(ids, n: int = 5) -> str:
    ids = list(ids)
    return ", ".join(ids[:n]) + (f" and {len(ids) - n} more" if len(ids) > n else "")


__all__ = ["CheckReport", "Finding", "check"]
