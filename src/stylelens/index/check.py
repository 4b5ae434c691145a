"""``stylelens check``: verify an index, and repair what is safe to repair.

The check asks each storage of the index to check itself, then runs what holds for every store:

1. the database (``index.database``: the folder's files, or PostgreSQL's tables): its schema, manifest,
   catalog rows and own files (``Database.inspect`` and ``Database.check``);
2. the vector backend the manifest names (``index.backend``: the folder's vectors file, or a Milvus
   collection): its vectors against the catalog (``VectorBackend.check``);
3. here: every vector a finite unit vector, a seeded sample of products re-embedded from their images
   and compared with their stored vectors, the tuned head the manifest names; a manifest rebuilt from
   the catalog and vectors when the database allows it.

Each finding names the file (for a database: the table, artifact or collection) and what is wrong in one
line. Repairs never invent vectors: they cut what was never committed, delete what no view reads, and
make the next ``stylelens index`` re-embed the products whose vectors cannot be trusted (their image
hash is forgotten, so the build sees them as changed). Everything else is reported with the command
that fixes it."""

from __future__ import annotations

import random

import numpy as np

from ..errors import (ImageError, IndexDamagedError, InvalidArgumentError, MissingExtraError, StylelensError,
                      WeightsError)
from ..intake.images import content_hash, load_image, read_bytes
from ..settings import Settings, settings_or_default
from .backend import backend_class, kind_of
from .checkup import REBUILD, REINDEX, CheckedCatalog, CheckedProduct, Checkup, CheckReport, Finding, VectorRows, few
from .database import Database, database_class, database_kind
from .manifest import new_manifest

MATCH = 0.99  # cosine of a re-embedded image to its stored vector; the same weights and input give ~1.0
UNIT_TOLERANCE = 1e-3
DRIFT = 1e-4  # runtimes and precisions move a re-embedded vector by less (bf16: ~2e-5 in cosine)
SYSTEMATIC = 0.25  # this share of a partial sample mismatched: the whole file is suspect, not a few rows
TUNE = "run stylelens tune INDEX to train it again (or search with --no-tune until then)"


def check(path, repair: bool = False, sample: int = 64, *, settings: Settings | None = None, embedder=None) -> CheckReport:
    """Verify the index at ``path`` (a folder, or a database location); with ``repair``, take the writer
    lock and fix what is safe.

    ``sample`` products (seeded; 0 = all) are re-embedded from their images and compared with their
    stored vectors. ``embedder``: the one to re-embed with (default: made from the manifest).
    """
    if sample < 0:
        raise InvalidArgumentError(f"sample must be 0 (every product) or more, got {sample}.", code="bad_option")
    settings = settings_or_default(settings)
    cls = database_class(database_kind(path))
    where = cls.locate(path, settings)  # a malformed location: one line, as every command
    checkup = Checkup(str(where), repair, sample, settings, embedder)
    database = cls.inspect(where, settings, checkup)  # a down server or a wrong password: one line too
    if database is None:
        return checkup.report
    try:
        lock = database.writer_lock().acquire() if repair else None
        try:
            return _Check(checkup, database).run()
        finally:
            if lock is not None:
                lock.release()
    finally:
        database.close()


class _Check:
    def __init__(self, checkup: Checkup, database: Database):
        self.checkup = checkup
        self.database = database

    def run(self) -> CheckReport:
        c = self.checkup
        catalog = self.database.check(c)
        rows = self.vectors(catalog)
        try:
            pending = c.pending()
            if rows is not None:
                self.check_unit(rows, pending)
            manifest = catalog.manifest
            if manifest is None and c.repair:
                manifest = self.rebuild_manifest(rows)
            self.check_backbone(manifest)
            if rows is not None:
                self.check_sample(manifest, rows, pending)
            self.check_head(manifest)
            self.apply_repairs(rows)
        finally:
            if rows is not None:
                rows.close()
        if pending:
            ids = [p.id for p in c.products if p.id in pending]
            c.add(catalog.file, "pending", f"{len(ids)} product(s) wait to be re-embedded (image hash forgotten, e.g. by a "
                  f"repair): {few(ids)}. Run {REINDEX}.", products=ids)
        c.report.counts.update(products=len(c.products), vector_rows=catalog.n_rows)
        return c.report

    def vectors(self, catalog: CheckedCatalog) -> VectorRows | None:
        """The backend the manifest names checks its vectors. Without a manifest, a folder's vectors are in
        the folder; a shared database's are somewhere only the manifest says."""
        if catalog.manifest is None and self.database.shared:
            return None
        location = ((catalog.manifest or {}).get("vectors") or {}).get("location")
        return backend_class(kind_of(location)).check(self.checkup, self.database, catalog)

    # ---- unit length ---------------------------------------------------------------------
    def check_unit(self, matrix: VectorRows, pending: set[str]) -> None:
        c = self.checkup
        live = [p for p in c.products if p.row is not None and p.row < len(matrix) and p.id not in pending
                and p.id not in c.forget]
        if matrix.unit_limit is not None and len(live) > matrix.unit_limit:
            c.note(f"the length of {matrix.unit_limit:,} of {len(live):,} vectors checked (seeded; stylelens check INDEX "
                   "--sample 0 reads every vector)")
            live = sorted(random.Random(0).sample(live, matrix.unit_limit), key=lambda p: p.row)
        bad = []
        for start in range(0, len(live), 4096):
            chunk = live[start:start + 4096]
            vecs = matrix[[p.row for p in chunk]]
            with np.errstate(all="ignore"):
                norms = np.linalg.norm(vecs, axis=1)
                wrong = ~np.isfinite(vecs).all(axis=1) | ~(np.abs(norms - 1) <= UNIT_TOLERANCE)
            bad += [p.id for p, w in zip(chunk, wrong) if w]
        c.report.counts["vectors_checked"] = len(live)
        if bad:
            finding = c.add(matrix.file, "vectors_damaged", f"{len(bad)} of {len(live)} vectors are not finite unit "
                            f"vectors (zeroed or NaN rows): {few(bad)}; run stylelens check INDEX --repair, then "
                            f"{REINDEX} re-embeds them.", True, bad)
            c.forget.update(dict.fromkeys(bad, finding))

    # ---- re-embedded sample --------------------------------------------------------------
    def check_backbone(self, manifest: dict | None) -> None:
        """The manifest's backbone is one this stylelens knows and can load: else no search can embed a photo."""
        c = self.checkup
        backbone = ((manifest or {}).get("embedder") or {}).get("backbone")
        if manifest is None or c.embedder is not None or not any(p.image_path for p in c.products):
            return  # vectors a caller added without images (imports, structure tests) need no backbone here
        from ..models import BACKBONES, Embedder

        if backbone not in BACKBONES:
            c.add("manifest.json", "backbone_unknown", f"the manifest names backbone {str(backbone)[:40]!r}, which this "
                  f"stylelens does not know ({', '.join(sorted(BACKBONES))}): serve the index with the stylelens that "
                  f"built it, or {REBUILD}.")
            return
        try:
            c.embedder = Embedder.from_fingerprint(manifest["embedder"], settings=c.settings)
        except (WeightsError, MissingExtraError):
            return  # weights or an extra this machine lacks, not a fault of the index: check_sample notes it
        except StylelensError as exc:
            c.add("manifest.json", "backbone_unloadable", f"its backbone {backbone!r} cannot be loaded ({exc.message}); "
                  "searches would fail: fix the weights or rebuild the index.")

    def check_sample(self, manifest: dict | None, matrix: VectorRows, pending: set[str]) -> None:
        c = self.checkup
        if manifest is None:
            c.note("re-embed check skipped: it needs the manifest's embedder")
            return
        candidates = [p for p in c.products if p.row is not None and p.row < len(matrix) and p.id not in pending
                      and p.id not in c.forget and p.image_path and p.sha256]
        random.Random(0).shuffle(candidates)
        if not candidates:
            if c.products:
                c.note("re-embed check skipped: no product records an image file and its hash")
            return
        embedder = c.embedder
        if embedder is None:
            from ..models import Embedder

            try:
                embedder = c.embedder = Embedder.from_fingerprint(manifest["embedder"], settings=c.settings)
            except (WeightsError, MissingExtraError) as exc:
                c.note(f"re-embed check skipped: the embedder's weights are unavailable ({exc.message})")
                return
            except StylelensError as exc:
                c.note(f"re-embed check skipped: the manifest's embedder cannot be made ({exc.message})")
                return
        wanted = c.sample or len(candidates)
        picked, pixels = [], []
        for p in candidates:
            if len(picked) >= wanted:
                break
            image = self._prepared(p, embedder)
            if image is not None:
                picked.append(p)
                pixels.append(image)
        c.report.counts.update(sampled=len(picked), sample_candidates=len(candidates))
        if not picked:
            c.note("re-embed check skipped: no product's image file is still there unchanged")
            return
        fresh = embedder.embed_prepared(np.stack(pixels))
        stored = matrix[[p.row for p in picked]]
        fresh /= np.maximum(np.linalg.norm(fresh, axis=1, keepdims=True), 1e-12)
        cos = np.sum(fresh * stored, axis=1) / np.maximum(np.linalg.norm(stored, axis=1), 1e-12)
        trusted = {p.id: p.row for p in c.products if p.row is not None and p.row < len(matrix)
                   and p.id not in pending and p.id not in c.forget}
        best_cos, best_row = matrix.best(fresh, trusted)
        # A weak backbone (random weights) makes every image's vector alike, far above MATCH: a swapped
        # row then shows as another product's vector fitting this image clearly better than its own.
        wrong = [p.id for p, cs, bc, br in zip(picked, cos, best_cos, best_row)
                 if not cs >= MATCH or (br != p.row and bc > cs + DRIFT)]
        c.report.counts["lowest_cosine"] = round(float(np.nanmin(cos)), 4)
        if not wrong:
            return
        partial = len(picked) < len(candidates)
        systematic = partial and len(wrong) >= SYSTEMATIC * len(picked)
        if systematic:  # shuffled or foreign vectors: the unsampled products cannot be trusted either
            affected = [p.id for p in candidates]
            scope = (f"; the whole {matrix.whole} looks shuffled or foreign, so all {len(affected)} are re-embedded by "
                     "the repair")
        else:
            affected = wrong
            scope = ("; the rest were not compared (stylelens check INDEX --sample 0 compares every product)"
                     if partial else "")
        finding = c.add(matrix.file, "vectors_mismatch",
                        f"{len(wrong)} of {len(picked)} re-embedded products do not match their stored vectors (cosine < "
                        f"{MATCH} or another product's vector fits better, lowest {float(np.nanmin(cos)):.4f}: rows point at "
                        f"the wrong vectors): {few(wrong)}{scope}; "
                        f"run stylelens check INDEX --repair, then {REINDEX} re-embeds them.", True, affected)
        c.forget.update(dict.fromkeys(affected, finding))

    def _prepared(self, p: CheckedProduct, embedder) -> np.ndarray | None:
        """The network input of a product's image, when the file is still the one its vector was made from."""
        from ..models import prepare

        try:
            data = read_bytes(p.image_path)
            if content_hash(data) != p.sha256:
                return None
            return prepare(load_image(data, max_pixels=self.checkup.settings.max_pixels), embedder.preprocess)
        except ImageError:
            return None

    # ---- the tuned head ------------------------------------------------------------------
    def check_head(self, manifest: dict | None) -> None:
        """The head the manifest names (stylelens tune) is there, loads, and is the one tune wrote."""
        head = (manifest or {}).get("head")
        if not isinstance(head, dict):
            return
        from ..models.head import HEAD_ARTIFACT, Head, sha256

        name = str(head.get("artifact") or HEAD_ARTIFACT)
        try:
            data = self.database.read_artifact(name)
        except (InvalidArgumentError, OSError):
            data = None
        c = self.checkup
        if data is None:
            c.add(name, "head_missing", f"the manifest names a tuned head that is not there (searches fall back to the raw "
                  f"space); {TUNE}.")
            return
        try:
            Head.from_bytes(data)
        except IndexDamagedError:
            c.add(name, "head_damaged", f"it does not load as a tuned head, so searching the tuned space fails; {TUNE}.")
            return
        if head.get("sha256") and sha256(data) != head["sha256"]:
            c.add(name, "head_damaged", f"it is not the head tune wrote (its sha256 differs from the manifest's); {TUNE}.")

    # ---- repairs -------------------------------------------------------------------------
    def rebuild_manifest(self, matrix: VectorRows | None) -> dict | None:
        """A missing or damaged manifest, written again from the catalog and the vectors (where the database
        made the finding repairable): the embedder is the one whose vectors of a few images equal the stored ones."""
        c = self.checkup
        finding = c.manifest_finding
        if finding is None or not finding.repairable:
            return None
        problems = [f for f in c.report.findings if not f.repaired and f is not finding and f.code != "pending"]
        if not c.catalog_ok or problems:
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
        manifest["counts"] = {"products": len(c.products), "vector_rows": len(matrix),
                              "dead_rows": len(matrix) - len(c.products)}
        self.database.write_manifest(manifest)
        fp = manifest["embedder"]
        c.repaired(finding, f"rebuilt from the catalog and vectors (embedder inferred: {fp['backbone']}, weights "
                            f"{fp['weights']['source']}, pooling {fp['pooling']})")
        return manifest

    def infer_embedder(self, matrix: VectorRows):
        """The embedder whose vectors of a few catalog images equal the stored ones."""
        from ..models import BACKBONES, Embedder

        c = self.checkup
        candidates = [p for p in c.products if p.row is not None and p.row < len(matrix) and p.image_path and p.sha256]
        random.Random(0).shuffle(candidates)
        dim = matrix.dim
        tries = [c.embedder] if c.embedder is not None else []
        for name, spec in BACKBONES.items():
            if spec.dim != dim:
                continue
            for weights in dict.fromkeys((c.settings.weights, "imagenet", "random")):
                for pooling in ("max", "avg"):
                    tries.append((name, weights, pooling))
        for attempt in tries:
            if isinstance(attempt, tuple):
                name, weights, pooling = attempt
                try:
                    embedder = Embedder(name, weights=weights, pooling=pooling, settings=c.settings)
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
            stored = matrix[[p.row for p in picked]]
            if np.all(np.sum(fresh * stored, axis=1) >= MATCH):
                c.embedder = embedder
                return embedder
        return None

    def apply_repairs(self, rows: VectorRows | None) -> None:
        """The vector store's repairs, then the catalog's: remove the products that cannot stay, and forget the
        image hash of those to re-embed."""
        c = self.checkup
        if not c.repair or not (c.forget or c.remove or (rows is not None and rows.needs_repair(c))):
            return
        catalog = self.database.catalog(writable=True)
        try:
            if rows is not None:
                rows.repair(c, catalog)
            if c.remove:
                catalog.delete(list(c.remove))
                for finding in {id(f): f for f in c.remove.values()}.values():
                    c.repaired(finding, f"removed {len(finding.products)} product(s) from the catalog; {REINDEX} adds "
                                        "them again")
            if c.forget:
                catalog.forget_hashes(list(c.forget))
                for finding in {id(f): f for f in c.forget.values()}.values():
                    n = sum(1 for f in c.forget.values() if f is finding)
                    what = "padded the file to its committed size and " if finding.code == "vectors_short" else ""
                    c.repaired(finding, f"{what}forgot the image hash of {n} product(s): {REINDEX} re-embeds exactly them")
        finally:
            catalog.close()


__all__ = ["CheckReport", "Finding", "check"]
