"""What one ``stylelens check`` has found so far: the findings, the report, and the state the parts share.

A check asks each storage of an index to check itself (the database: its manifest, catalog rows and own
files; the vector backend: its vectors against the catalog), then runs the checks that hold for every
store (unit length, a re-embedded sample, the tuned head). They all write here: one ``Checkup`` per run,
holding the catalog's products and the products each repair removes or makes the next build re-embed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import IndexDamagedError, IndexMismatchError
from .manifest import FORMAT, MANIFEST

REBUILD = "rebuild the index into a new folder (stylelens index CATALOG --out NEW_FOLDER)"
REINDEX = "stylelens index CATALOG --out INDEX"
REPAIR = "stylelens check INDEX --repair"


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
class CheckedProduct:
    id: str
    row: int | None
    image_path: str | None
    sha256: str | None


@dataclass
class CheckedCatalog:
    """What a database's own check read: the manifest (None when unusable), the catalog's meta table and
    its committed vector rows and generation (None when the catalog is unusable)."""

    file: str  # what findings about the catalog name: catalog.sqlite, or the products table
    manifest: dict | None
    meta: dict
    n_rows: int | None
    generation: int | None


class VectorRows:
    """The vectors a backend's check read, by catalog row (``matrix[rows]``): here a plain array or memmap.
    A backend that cannot read every row at once subclasses it (Milvus reads by id, in chunks)."""

    whole = "file"  # what a systematic mismatch condemns
    unit_limit: int | None = None  # vectors read for their length (None: all)

    def __init__(self, matrix, file: str):
        self.matrix = matrix
        self.file = file  # what findings about the vectors name

    def __len__(self) -> int:
        return len(self.matrix)

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]

    def __getitem__(self, rows) -> np.ndarray:
        return np.asarray(self.matrix[rows], dtype=np.float32)

    def best(self, fresh: np.ndarray, trusted: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        """For each fresh vector, the cosine and row of the closest stored vector of a trusted product (id → row)."""
        rows = np.array(sorted(trusted.values()), dtype=np.int64)
        best_cos = np.full(len(fresh), -np.inf, np.float32)
        best_row = np.full(len(fresh), -1, np.int64)
        for start in range(0, len(rows), 8192):
            chunk = rows[start:start + 8192]
            with np.errstate(all="ignore"):
                scores = fresh @ self[chunk].T
            scores = np.nan_to_num(scores, nan=-np.inf)
            top = scores.argmax(axis=1)
            better = scores[np.arange(len(fresh)), top] > best_cos
            best_cos[better] = scores[np.arange(len(fresh)), top][better]
            best_row[better] = chunk[top][better]
        return best_cos, best_row

    def needs_repair(self, checkup: "Checkup") -> bool:
        """Something only this store can repair is left (its repairs wait for the catalog's)."""
        return False

    def repair(self, checkup: "Checkup", catalog) -> None:
        """Apply this store's repairs before the catalog's, with the writable ``catalog``; the products the
        check removes from the catalog are in ``checkup.remove``."""

    def close(self) -> None:
        """Nothing held."""


class Checkup:
    """The state of one check: its report, the catalog's products, what the repairs remove and forget."""

    def __init__(self, path: str, repair: bool, sample: int, settings, embedder=None):
        self.report = CheckReport(path, repair)
        self.repair = repair
        self.sample = sample
        self.settings = settings
        self.embedder = embedder
        self.rebuild = REBUILD  # what the findings that only a rebuild fixes say (a database says its own)
        self.products: list[CheckedProduct] = []
        self.forget: dict[str, Finding] = {}  # product id -> the finding whose repair forgets its hash
        self.remove: dict[str, Finding] = {}  # product id -> the finding whose repair removes it from the catalog
        self.catalog_ok = False
        self.manifest_finding: Finding | None = None

    # ---- findings ------------------------------------------------------------------------
    def add(self, file: str, code: str, message: str, repairable: bool = False, products=()) -> Finding:
        finding = Finding(file, code, message, repairable, products=list(products))
        self.report.findings.append(finding)
        return finding

    def repaired(self, finding: Finding, done: str) -> None:
        finding.repaired, finding.done = True, done

    def note(self, text: str) -> None:
        self.report.notes.append(text)

    # ---- the parts every database checks the same way ----------------------------------------
    def check_manifest(self, read, fix: str = f"run {REPAIR} to rebuild it from the catalog and vectors",
                       repairable: bool = True) -> dict | None:
        """The manifest ``read()`` answers: readable, our format, naming its embedder."""
        try:
            manifest = read()
        except IndexDamagedError as exc:
            why = exc.message.split(": ", 1)[-1].split(". ", 1)[0]
            self.manifest_finding = self.add(MANIFEST, "manifest_damaged", f"{why}; {fix}.", repairable=repairable)
            return None
        except IndexMismatchError:
            self.add(MANIFEST, "manifest_version", f"it was written by another stylelens format version; use that "
                     f"version or {self.rebuild}.")
            return None
        if manifest is None:
            self.manifest_finding = self.add(MANIFEST, "manifest_missing", f"it is missing; {fix}.",
                                             repairable=repairable)
            return None
        if manifest.get("format") != FORMAT:
            self.add(MANIFEST, "manifest_format", f"its format is {manifest.get('format')!r}, not {FORMAT!r}; "
                     f"{self.rebuild}.")
        dim = manifest["embedder"].get("dim")
        if not isinstance(dim, int) or dim <= 0:
            self.add(MANIFEST, "manifest_dim", f"its embedder dimension {dim!r} is not a positive number; "
                     f"{self.rebuild}.")
            return None
        return manifest

    def check_rows(self, file: str, meta: dict, rows: list[tuple]) -> tuple[int | None, int | None]:
        """The catalog's meta and its (id, row, image_path, image_sha256) rows: every product at its own row."""
        n_rows = _int(meta.get("n_rows"))
        generation = _int(meta.get("generation"))
        if n_rows is None or generation is None:
            missing = " and ".join(k for k, v in (("n_rows", n_rows), ("generation", generation)) if v is None)
            self.add(file, "catalog_meta", f"its meta table has no valid {missing}; {self.rebuild}.")
            return None, None
        self.products = [CheckedProduct(str(pid), row, path_, sha) for pid, row, path_, sha in rows]
        outside = [p.id for p in self.products if p.row is None or not 0 <= p.row < n_rows]
        if outside:
            self.remove.update(dict.fromkeys(outside, self.add(
                file, "catalog_rows", f"{len(outside)} product(s) point outside vector rows 0..{n_rows - 1}: {few(outside)}; "
                f"run {REPAIR} to remove them, then {REINDEX} adds them again.", repairable=True, products=outside)))
        by_row: dict[int, list[str]] = {}
        for p in self.products:
            if p.row is not None and p.id not in self.remove:
                by_row.setdefault(p.row, []).append(p.id)
        shared = sorted(pid for ids in by_row.values() if len(ids) > 1 for pid in ids)
        if shared:
            self.remove.update(dict.fromkeys(shared, self.add(
                file, "catalog_shared_rows", f"{len(shared)} product(s) share vector rows: {few(shared)}; run {REPAIR} to "
                f"remove them, then {REINDEX} adds them again.", repairable=True, products=shared)))
        self.products = [p for p in self.products if p.id not in self.remove]
        self.catalog_ok = True
        return n_rows, generation

    def pending(self) -> set[str]:
        """Products whose image hash is forgotten: the next build re-embeds them, their vectors are not judged."""
        return {p.id for p in self.products if p.sha256 is None and p.row is not None}


def _int(value) -> int | None:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n >= 0 else None


def few(ids, n: int = 5) -> str:
    ids = list(ids)
    return ", ".join(ids[:n]) + (f" and {len(ids) - n} more" if len(ids) > n else "")


__all__ = ["CheckReport", "CheckedCatalog", "CheckedProduct", "Checkup", "Finding", "VectorRows", "few"]
