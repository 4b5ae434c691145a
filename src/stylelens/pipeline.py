"""Catalog folder -> index: reader (bytes + content hash) -> decode workers -> embedder -> store writer.

Incremental: only images whose content hash is new or changed are embedded; products gone from the
catalog are removed. Each committed batch is durable, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import csv
import multiprocessing as mp
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from . import config
from .catalog import load_catalog
from .embedder import Embedder, Preprocess, library_versions, prepare
from .errors import ImageError
from .images import content_hash, load_image, read_bytes
from .store import IndexStore

ERRORS_CSV = "errors.csv"


@dataclass
class BuildReport:
    indexed: int = 0
    unchanged: int = 0
    skipped: int = 0
    removed: int = 0
    seconds: float = 0.0
    errors: list[tuple[str, str, str, str]] = field(default_factory=list)  # id, path, code, message
    without_image: list[str] = field(default_factory=list)
    without_product: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors_csv: Path | None = None

    @property
    def images_per_s(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        text = (f"indexed {self.indexed:,}, unchanged {self.unchanged:,}, skipped {self.skipped:,}"
                + (f" (see {self.errors_csv})" if self.errors_csv and self.skipped else "")
                + f", removed {self.removed:,} in {self.seconds:.1f} s ({self.images_per_s:.1f} img/s)")
        if self.without_image:
            text += f"; {len(self.without_image):,} products have no image"
        if self.without_product:
            text += f"; {len(self.without_product):,} images have no product row"
        return text

    def to_dict(self) -> dict:
        return {"indexed": self.indexed, "unchanged": self.unchanged, "skipped": self.skipped, "removed": self.removed,
                "seconds": round(self.seconds, 3), "images_per_s": round(self.images_per_s, 2),
                "without_image": len(self.without_image), "without_product": len(self.without_product),
                "errors_csv": str(self.errors_csv) if self.errors_csv else None}


@dataclass
class Job:
    pid: str
    path: str
    data: bytes
    sha256: str


def _prepare_job(args: tuple[Job, Preprocess, int]):
    """Runs in a worker process: bytes -> uint8 network input, or the reason it cannot be."""
    job, pre, max_pixels = args
    try:
        return job, prepare(load_image(job.data, max_pixels=max_pixels), pre), None
    except ImageError as exc:
        return job, None, (exc.code, exc.message)
    except Exception as exc:  # a decoder bug must not stop the whole catalog
        return job, None, ("corrupt", f"{type(exc).__name__}: {exc}")


def prepared_stream(jobs: Iterable[Job], pre: Preprocess, workers: int, max_pixels: int) -> Iterator:
    """Decode and resize in worker processes, overlapping the caller's inference; order is kept."""
    args = ((job, pre, max_pixels) for job in jobs)
    if workers <= 0:
        yield from map(_prepare_job, args)
        return
    # Back-pressure: Pool's feeder thread would otherwise decode the whole catalog into memory
    # while inference lags behind. At most `in_flight` prepared images exist at once.
    in_flight = threading.Semaphore(max(256, workers * 128))

    def bounded():
        for item in args:
            in_flight.acquire()
            yield item

    # spawn, not fork: forking a process that already runs torch's thread pools can deadlock.
    with mp.get_context("spawn").Pool(workers) as pool:
        for result in pool.imap(_prepare_job, bounded(), chunksize=16):
            in_flight.release()
            yield result


def _progress(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc=desc, disable=not enabled, smoothing=0.1, dynamic_ncols=True)


def build_index(
    catalog_dir,
    out,
    products=None,
    *,
    backbone: str | None = None,
    weights: str | None = None,
    pooling: str | None = None,
    device: str | None = None,
    runtime: str | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    embedder: Embedder | None = None,
) -> BuildReport:
    """Index (or update) the catalog in ``catalog_dir`` into the index folder ``out``."""
    started = time.perf_counter()
    progress = config.get("progress") if progress is None else progress
    workers = config.get("workers") if workers is None else workers
    max_pixels = config.get("max_pixels")
    catalog = load_catalog(catalog_dir, products)
    embedder = embedder or Embedder(backbone, weights, pooling, device=device, runtime=runtime, batch_size=batch_size)
    store = IndexStore.create(out, embedder.fingerprint(), library_versions())
    report = BuildReport(without_image=catalog.without_image, without_product=catalog.without_product, warnings=catalog.warnings)
    try:
        known = store.image_hashes()
        report.removed = store.delete([pid for pid in known if pid not in catalog.images])

        jobs, unchanged = [], []
        for pid, path in catalog.images.items():
            try:
                data = read_bytes(path)
            except ImageError as exc:
                report.errors.append((pid, str(path), exc.code, exc.message))
                continue
            sha = content_hash(data)
            if known.get(pid) == sha:
                unchanged.append(pid)
            else:
                jobs.append(Job(pid, str(path), data, sha))
        report.unchanged = len(unchanged)
        # Feed fields (price, stock, names) may change without the image changing.
        store.update_records([catalog.record(pid) for pid in unchanged])

        commit_every = max(embedder.batch_size, 256)
        batch: list[tuple[Job, np.ndarray]] = []

        def flush():
            pixels = np.stack([px for _, px in batch])
            vectors = embedder.embed_prepared(pixels)
            records = [dict(catalog.record(job.pid), image_path=job.path, image_sha256=job.sha256) for job, _ in batch]
            store.add(records, vectors)
            report.indexed += len(batch)
            bar.update(len(batch))
            batch.clear()

        with _progress(len(jobs), progress, "indexing") as bar:
            for job, pixels, error in prepared_stream(jobs, embedder.preprocess, workers if len(jobs) > 64 else 0, max_pixels):
                if error is not None:
                    report.errors.append((job.pid, job.path, *error))
                    bar.total -= 1
                    continue
                batch.append((job, pixels))
                if len(batch) >= commit_every:
                    flush()
            if batch:
                flush()
        report.skipped = len(report.errors)
        report.seconds = time.perf_counter() - started
        report.errors_csv = _write_errors(Path(out), report.errors)
        store.set_manifest(catalog={"folder": str(Path(catalog_dir).resolve()),
                                    "feed": str(Path(catalog.feed).resolve()) if catalog.feed else None},
                           last_build=report.to_dict(), runtime=embedder.runtime_name)
    finally:
        store.close()
    return report


def _write_errors(folder: Path, errors) -> Path | None:
    path = folder / ERRORS_CSV
    if not errors:
        path.unlink(missing_ok=True)
        return None
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "path", "code", "message"])
        writer.writerows(errors)
    return path
