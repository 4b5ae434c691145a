"""Catalog folder -> index: reader (bytes + content hash) -> decode workers -> embedder -> store writer.

Incremental: only images whose content hash is new or changed are embedded; products gone from the
catalog are removed. Each committed batch is durable, so a killed run resumes where it stopped.
``Build`` holds what every runner shares (plan, skip, commit, report); the runner decides where
reading, decoding and embedding happen: here (``run_local``) or on a Ray cluster (stylelens.scale).
"""

from __future__ import annotations

import csv
import itertools
import multiprocessing as mp
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from . import config
from .catalog import load_catalog
from .embedder import Embedder, Preprocess, library_versions, prepare
from .errors import ImageError, InvalidArgumentError
from .images import content_hash, load_image, read_bytes

ERRORS_CSV = "errors.csv"
RUNNERS = ("local", "ray")


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


def prepare_bytes(data: bytes, pre: Preprocess, max_pixels: int) -> tuple[np.ndarray | None, tuple[str, str] | None]:
    """Image bytes -> (uint8 network input, None), or (None, (code, message)) saying why it cannot be."""
    try:
        return prepare(load_image(data, max_pixels=max_pixels), pre), None
    except ImageError as exc:
        return None, (exc.code, exc.message)
    except Exception as exc:  # a decoder bug must not stop the whole catalog
        return None, ("corrupt", f"{type(exc).__name__}: {exc}")


def _prepare_job(args: tuple[Job, Preprocess, int]):
    """Bytes -> uint8 network input, or the reason it cannot be (in this process, or pickled back)."""
    job, pre, max_pixels = args
    return (job, *prepare_bytes(job.data, pre, max_pixels))


DECODE_CHUNK = 16  # images per task sent to a decode worker

# In a decode worker: the shared-memory slots it writes network inputs into (see _SharedSlots), and
# the preprocessing, sent once rather than with every image.
_worker: dict = {}


def _attach_slots(name: str, shape: tuple[int, ...], pre: Preprocess, max_pixels: int) -> None:
    shm = shared_memory.SharedMemory(name=name)
    _worker.update(shm=shm, slots=np.ndarray(shape, np.uint8, buffer=shm.buf), pre=pre, max_pixels=max_pixels)


def _prepare_into_slots(task: tuple[int, list[bytes]]) -> list:
    """A chunk of images into consecutive slots from ``first``; answers an error or None per image."""
    first, chunk = task
    errors = []
    for offset, data in enumerate(chunk):
        pixels, error = prepare_bytes(data, _worker["pre"], _worker["max_pixels"])
        if error is None:
            _worker["slots"][first + offset] = pixels
        errors.append(error)
    return errors


class _SharedSlots:
    """Network-input slots in shared memory. A worker decodes a chunk of images into consecutive slots and
    answers with an error or None per image; this process copies each image out once. Pickling the 150 KB
    arrays back through the pipe instead kept this process busy ~350-600 us per image; measured here
    (2 cores, decoding only): 780 -> 1,900 images/s with one worker, 1,500 -> 2,900 with two."""

    def __init__(self, n: int, size: int):
        self.shape = (n, size, size, 3)
        self.shm = shared_memory.SharedMemory(create=True, size=int(np.prod(self.shape)))
        self.view = np.ndarray(self.shape, np.uint8, buffer=self.shm.buf)

    @staticmethod
    def fit(n: int, size: int) -> bool:
        """Whether /dev/shm has room to spare: writing past a full tmpfs kills the process (SIGBUS)."""
        try:
            return shutil.disk_usage("/dev/shm").free > 2 * n * size * size * 3
        except OSError:
            return False

    def close(self) -> None:
        del self.view
        self.shm.close()
        self.shm.unlink()


def prepared_stream(jobs: Iterable[Job], pre: Preprocess, workers: int, max_pixels: int) -> Iterator:
    """Decode and resize in worker processes, overlapping the caller's inference; order is kept.
    Yields (job, uint8 pixels or None, None or (code, message))."""
    if workers <= 0:
        yield from map(_prepare_job, ((job, pre, max_pixels) for job in jobs))
        return
    # Back-pressure: Pool's feeder thread would otherwise decode the whole catalog into memory
    # while inference lags behind. At most `in_flight` chunks of prepared images exist at once.
    chunks_max = max(8, workers * 3)
    in_flight = threading.Semaphore(chunks_max)
    context = mp.get_context("spawn")  # not fork: forking a process that runs torch's thread pools can deadlock
    if not _SharedSlots.fit(chunks_max * DECODE_CHUNK, pre.size):  # pickled back through the pipe instead
        images_in_flight = threading.Semaphore(chunks_max * DECODE_CHUNK)

        def bounded_jobs():
            for job in jobs:
                images_in_flight.acquire()
                yield job, pre, max_pixels

        with context.Pool(workers) as pool:
            for result in pool.imap(_prepare_job, bounded_jobs(), chunksize=DECODE_CHUNK):
                images_in_flight.release()
                yield result
        return

    slots = _SharedSlots(chunks_max * DECODE_CHUNK, pre.size)
    pending: deque[list[Job]] = deque()  # dispatched chunks, in order; imap answers in the same order

    def bounded_chunks():
        source = iter(jobs)
        for number in itertools.count():
            chunk = list(itertools.islice(source, DECODE_CHUNK))
            if not chunk:
                return
            in_flight.acquire()  # this chunk's slots are free: the images that used them were copied out
            pending.append(chunk)
            yield (number % chunks_max) * DECODE_CHUNK, [job.data for job in chunk]

    try:
        with context.Pool(workers, initializer=_attach_slots,
                          initargs=(slots.shm.name, slots.shape, pre, max_pixels)) as pool:
            for number, errors in enumerate(pool.imap(_prepare_into_slots, bounded_chunks())):
                first = (number % chunks_max) * DECODE_CHUNK
                done = [(job, None if error is not None else slots.view[first + offset].copy(), error)
                        for offset, (job, error) in enumerate(zip(pending.popleft(), errors))]
                in_flight.release()
                yield from done
    finally:
        slots.close()


def _progress(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc=desc, disable=not enabled, smoothing=0.1, dynamic_ncols=True)


class Build:
    """One indexing run, whatever the runner: the catalog, the store it writes to, what it already
    holds (product id -> image hash) and the report. Runners feed it skips, unchanged ids and
    embedded batches; every batch is committed to the store before the next one is taken."""

    def __init__(self, catalog, store, report: BuildReport, progress: bool, commit_every: int):
        self.catalog = catalog
        self.store = store
        self.report = report
        self.progress = progress
        self.commit_every = commit_every
        self.known = store.image_hashes()

    def is_unchanged(self, pid: str, sha256: str) -> bool:
        return self.known.get(pid) == sha256

    def skip(self, pid: str, path: str, code: str, message: str) -> None:
        self.report.errors.append((pid, path, code, message))

    def keep(self, pids: list[str]) -> None:
        """Products whose image is unchanged: feed fields (price, stock, names) may still have changed."""
        self.store.update_records([self.catalog.record(pid) for pid in pids])
        self.report.unchanged += len(pids)

    def commit(self, items: list[tuple[str, str, str]], vectors: np.ndarray) -> None:
        """(product id, image path, image sha256) per row of ``vectors``; durable when this returns."""
        records = [dict(self.catalog.record(pid), image_path=path, image_sha256=sha) for pid, path, sha in items]
        self.store.add(records, vectors)
        self.report.indexed += len(items)


def run_local(build: Build, embedder: Embedder, workers: int, max_pixels: int) -> str:
    """Read and hash here, decode in a spawn worker pool, embed in this process. Returns the runtime used."""
    jobs, unchanged = [], []
    for pid, path in build.catalog.images.items():
        try:
            data = read_bytes(path)
        except ImageError as exc:
            build.skip(pid, str(path), exc.code, exc.message)
            continue
        sha = content_hash(data)
        if build.is_unchanged(pid, sha):
            unchanged.append(pid)
        else:
            jobs.append(Job(pid, str(path), data, sha))
    build.keep(unchanged)

    batch: list[tuple[Job, np.ndarray]] = []

    def flush():
        vectors = embedder.embed_prepared(np.stack([px for _, px in batch]))
        build.commit([(job.pid, job.path, job.sha256) for job, _ in batch], vectors)
        bar.update(len(batch))
        batch.clear()

    with _progress(len(jobs), build.progress, "indexing") as bar:
        for job, pixels, error in prepared_stream(jobs, embedder.preprocess, workers if len(jobs) > 64 else 0, max_pixels):
            if error is not None:
                build.skip(job.pid, job.path, *error)
                bar.total -= 1
                continue
            batch.append((job, pixels))
            if len(batch) >= build.commit_every:
                flush()
        if batch:
            flush()
    return embedder.runtime_name


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
    runner: str | None = None,
    ray_address: str | None = None,
    actors: int | None = None,
    store: str | None = None,
) -> BuildReport:
    """Index (or update) the catalog in ``catalog_dir`` into the index folder ``out``.

    ``runner``: "local" (this process) or "ray" (a Ray cluster: ``ray_address`` "auto", "ray://HOST:10001",
    or None to start one here; ``actors`` embedding actors, one per GPU by default). ``store``: where the
    vectors live: None/"local" (the index folder), "milvus-lite:///path/file.db" or "milvus://HOST:PORT/COLLECTION".
    """
    from .scale import create_store

    started = time.perf_counter()
    runner = runner or config.get("runner")
    ray_address = ray_address or config.get("ray_address") or None
    store = store or config.get("store") or None
    if runner not in RUNNERS:
        raise InvalidArgumentError(f"Unknown runner '{runner}'. Choose one of: {', '.join(RUNNERS)}.", code="bad_option")
    progress = config.get("progress") if progress is None else progress
    workers = config.get("workers") if workers is None else workers
    max_pixels = config.get("max_pixels")
    catalog = load_catalog(catalog_dir, products)
    if runner == "ray" and embedder is None:
        # The driver only needs the fingerprint; the actors build the real thing on their device.
        embedder = Embedder(backbone, weights, pooling, device="cpu", runtime="torch", batch_size=batch_size)
    elif runner == "ray":  # the actors rebuild the caller's embedder as it is
        device, runtime = device or embedder.device, runtime or embedder.runtime_name
    embedder = embedder or Embedder(backbone, weights, pooling, device=device, runtime=runtime, batch_size=batch_size)
    index_store = create_store(out, embedder.fingerprint(), library_versions(), store)
    report = BuildReport(without_image=catalog.without_image, without_product=catalog.without_product, warnings=catalog.warnings)
    try:
        build = Build(catalog, index_store, report, progress, embedder.batch_size)
        report.removed = index_store.delete([pid for pid in build.known if pid not in catalog.images])
        if runner == "ray":
            from .scale.ray_runner import run_ray

            runtime_name = run_ray(build, embedder, address=ray_address, actors=actors, device=device,
                                   runtime=runtime, max_pixels=max_pixels)
        else:
            runtime_name = run_local(build, embedder, workers, max_pixels)
        report.skipped = len(report.errors)
        report.seconds = time.perf_counter() - started
        from .ann import maintain

        maintain(index_store)  # the ANN index file, when this index has or wants one
        report.errors_csv = _write_errors(Path(out), report.errors)
        index_store.set_manifest(catalog={"folder": str(Path(catalog_dir).resolve()),
                                          "feed": str(Path(catalog.feed).resolve()) if catalog.feed else None},
                                 last_build=dict(report.to_dict(), runner=runner), runtime=runtime_name)
    finally:
        index_store.close()
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
