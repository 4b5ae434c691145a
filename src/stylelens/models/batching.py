"""Dynamic batching for serving: concurrent callers' images are embedded together, in one model call.

``MicroBatcher(embedder)`` stands in for the embedder (same ``embed`` / ``embed_prepared`` / attributes).
A caller puts its pixels in a queue and blocks on a future; one thread takes the first waiting request,
collects whatever else arrives within ``max_wait_ms`` (up to ``max_batch`` images), runs the embedder
once and hands each caller its own rows. As Triton's and Ray Serve's dynamic batchers do: under load a
batch uses the runtime's throughput path (every core busy on parallel streams) instead of requests
queueing one by one for the same cores; alone, a request waits at most ``max_wait_ms``.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Iterable

import numpy as np

_STOP = object()


class MicroBatcher:
    def __init__(self, embedder, max_batch: int = 32, max_wait_ms: float = 2.0):
        self.embedder = embedder
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.batches = 0  # model calls made
        self.requests = 0  # callers served
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="stylelens-batcher", daemon=True)
        self._thread.start()

    def __getattr__(self, name):  # everything else is the embedder's (fingerprint, preprocess, prepare, ...)
        return getattr(self.embedder, name)

    def embed_prepared(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) -> (N, dim), embedded in one batch with whatever else is waiting."""
        if len(pixels) == 0:
            return self.embedder.embed_prepared(pixels)
        if not self._thread.is_alive():
            raise RuntimeError("the micro-batcher is closed")
        future: Future = Future()
        self._queue.put((np.asarray(pixels), future))
        return future.result()

    def embed(self, images: Iterable) -> np.ndarray:
        return self.embed_prepared(np.stack([self.embedder.prepare(im) for im in images]))

    def embed_one(self, image) -> np.ndarray:
        return self.embed([image])[0]

    def close(self) -> None:
        """Serve what is queued, then stop the thread; returns once it has."""
        self._queue.put(_STOP)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, n = [first], len(first[0])
            deadline = time.monotonic() + self.max_wait
            stop = False
            while n < self.max_batch:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic())) if self.max_wait else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
                n += len(item[0])
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list) -> None:
        try:
            vectors = self.embedder.embed_prepared(np.concatenate([pixels for pixels, _ in batch]))
        except BaseException as exc:  # every waiting caller gets the error, none waits forever
            for _, future in batch:
                future.set_exception(exc)
            return
        self.batches += 1
        self.requests += len(batch)
        start = 0
        for pixels, future in batch:
            future.set_result(vectors[start : start + len(pixels)])
            start += len(pixels)
