"""The local runner: catalog images stream through read -> hash -> decode (threads) -> embed -> commit.

Memory stays flat whatever the catalog size: decode threads work at most ``window`` images ahead of
the embedder, an image's bytes live only while its thread decodes it, and each batch is committed
(durable) before the next is taken. Threads, not processes: Pillow and hashlib release the GIL while
they decode, resize and hash, so a plain script that calls ``build_index`` needs no ``__main__`` guard.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from ..errors import ImageError
from ..intake.images import content_hash, read_bytes
from ..models import Preprocess
from .plan import Build, prepare_bytes, progress_bar


@dataclass
class Item:
    """One catalog image after reading: ``status`` is "embed" (with ``pixels``), "unchanged" or "error"."""

    pid: str
    path: str
    sha256: str | None
    status: str
    pixels: np.ndarray | None = None
    error: tuple[str, str] | None = None  # (code, message)


def read_and_prepare(pid: str, path, known_sha256: str | None, pre: Preprocess, max_pixels: int) -> Item:
    """Read and hash one image, and decode it to the network's input unless its content is unchanged."""
    try:
        data = read_bytes(path)
    except ImageError as exc:
        return Item(pid, str(path), None, "error", error=(exc.code, exc.message))
    sha = content_hash(data)
    if sha == known_sha256:
        return Item(pid, str(path), sha, "unchanged")
    pixels, error = prepare_bytes(data, pre, max_pixels)
    return Item(pid, str(path), sha, "embed" if error is None else "error", pixels, error)


def window_for(commit_every: int, workers: int) -> int:
    """Images in flight: enough for the threads to prepare the next batch while this one is embedded."""
    return max(2 * commit_every, 4 * workers)


def stream(images: Iterable[tuple[str, object]], known: dict[str, str], pre: Preprocess, workers: int, max_pixels: int,
           window: int) -> Iterator[Item]:
    """``Item``s in the order of ``images`` (id, path). ``workers`` threads read and decode; at most
    ``window`` images are taken from ``images`` ahead of the consumer. 0 workers: all in this thread."""
    if workers <= 0:
        for pid, path in images:
            yield read_and_prepare(pid, path, known.get(pid), pre, max_pixels)
        return
    pending: deque = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="stylelens-decode") as pool:
        try:
            for pid, path in images:
                pending.append(pool.submit(read_and_prepare, pid, path, known.get(pid), pre, max_pixels))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # the consumer stopped early (an error): do not decode what nobody will take
            for future in pending:
                future.cancel()


def run_local(build: Build, embedder, workers: int, max_pixels: int) -> str:
    """Embed the catalog's new and changed images in this process. Returns the runtime used."""
    batch: list[Item] = []
    unchanged: list[str] = []
    with progress_bar(build.total, build.progress, "indexing") as bar:

        def flush():
            if batch:
                vectors = embedder.embed_prepared(np.stack([item.pixels for item in batch]))
                build.commit([(item.pid, item.path, item.sha256) for item in batch], vectors)
                bar.update(len(batch))
                batch.clear()
            build.keep(unchanged)
            unchanged.clear()

        items = stream(build.images(), build.known, embedder.preprocess, workers, max_pixels,
                       window_for(build.commit_every, workers))
        for item in items:
            if item.status == "embed":
                batch.append(item)
                if len(batch) >= build.commit_every:
                    flush()
                continue
            if item.status == "unchanged":
                unchanged.append(item.pid)
            else:
                build.skip(item.pid, item.path, *item.error)
            bar.update(1)
            if len(unchanged) >= build.commit_every:
                build.keep(unchanged)
                unchanged.clear()
        flush()
    return embedder.runtime_name
