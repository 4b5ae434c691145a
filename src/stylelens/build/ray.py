"""Ray Data runner: the local build, spread over a Ray cluster.

    catalog rows (id, path, hash already indexed)
      -> read + hash + decode tasks (CPU; unchanged images stop here)
      -> embedding actors (CPU or GPU; each builds the Embedder once)
      -> the driver: Build.skip / Build.keep / Build.commit, one store commit per batch, as run_local

Only the placement differs from run_local: the decode (``plan.prepare_bytes``), the network
(``Embedder.embed_prepared``) and the incremental, crash-safe writing (``plan.Build``) are the
same code, so the same images give the same vectors and an interrupted run resumes without redoing
committed batches. Catalog paths must be readable on every node (shared file system).
"""

from __future__ import annotations

import logging
import math
import socket
from contextlib import contextmanager

import numpy as np

from ..errors import ImageError, InvalidArgumentError, RayRunError, StylelensError, import_extra
from ..intake.images import content_hash, read_bytes
from ..index.manifest import check_compatible
from ..settings import Settings
from .plan import Build, prepare_bytes, progress_bar

DECODE_BLOCK_ROWS = (16, 1024)  # rows per read/decode task: enough tasks to spread, few enough to be cheap
CPU_SHARE_FOR_INFERENCE = 0.75  # on CPU clusters the rest of the cores decode


def _ray():
    import_extra("ray.data", "ray[data]", "scale", "The Ray runner (--runner ray)")
    return import_extra("ray", "ray[data]", "scale", "The Ray runner (--runner ray)")


@contextmanager
def ray_session(address: str | None):
    """Use the Ray already initialised in this process, else connect to ``address`` (or start one here)."""
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is None:
        kwargs["include_dashboard"] = False
    try:
        _probe(address)
        ray.init(address=address, **kwargs)
    except Exception as exc:  # ConnectionError, OSError, ValueError and Ray's own types
        raise RayRunError(
            f"Could not connect to the Ray cluster at '{address}': {exc}. Start one with 'ray start --head' "
            "(then ray_address='auto', CLI: --ray-address auto), or leave ray_address empty to run Ray on this machine.", code="ray_unavailable"
        ) from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def _probe(address: str | None, timeout_s: float = 5.0) -> None:
    """Ray waits minutes on an address where nothing listens; a plain TCP connect says so in seconds."""
    if address in (None, "auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if host and port.isdigit():
        socket.create_connection((host, int(port)), timeout=timeout_s).close()


def read_and_prepare(batch: dict, pre, max_pixels: int) -> dict:
    """Ray task: read, hash, and (for new or changed images) decode to the network's uint8 input."""
    n = len(batch["id"])
    out = {"id": batch["id"], "path": batch["path"], "sha": [""] * n, "status": ["embed"] * n,
           "code": [""] * n, "message": [""] * n, "pixels": [b""] * n}
    for i in range(n):
        try:
            data = read_bytes(batch["path"][i])
        except ImageError as exc:
            out["status"][i], out["code"][i], out["message"][i] = "error", exc.code, exc.message
            continue
        out["sha"][i] = content_hash(data)
        if out["sha"][i] == batch["known"][i]:
            out["status"][i] = "unchanged"
            continue
        pixels, error = prepare_bytes(data, pre, max_pixels)
        if error is not None:
            out["status"][i], (out["code"][i], out["message"][i]) = "error", error
        else:
            out["pixels"][i] = pixels.tobytes()
    return out


class EmbedActor:
    """Ray actor: builds the Embedder once, then embeds batches of prepared images."""

    def __init__(self, options: dict, settings: dict, fingerprint: dict, index_path: str, threads: int | None):
        if threads:
            import torch

            torch.set_num_threads(threads)
        from ..models import Embedder

        self.embedder = Embedder(**options, settings=Settings(settings))
        # A node with other weights (say, a different file at the same path) must not mix its vectors in.
        check_compatible(fingerprint, self.embedder.fingerprint(), index_path)
        self.size = self.embedder.preprocess.size

    def __call__(self, batch: dict) -> dict:
        n = len(batch["id"])
        todo = np.flatnonzero(batch["status"] == "embed")
        vectors = [b""] * n
        if len(todo):
            pixels = np.stack([np.frombuffer(batch["pixels"][i], np.uint8).reshape(self.size, self.size, 3) for i in todo])
            for i, vector in zip(todo, self.embedder.embed_prepared(pixels)):
                vectors[i] = vector.tobytes()
        return {"id": batch["id"], "path": batch["path"], "sha": batch["sha"], "status": batch["status"],
                "code": batch["code"], "message": batch["message"], "vector": vectors,
                "runtime": [self.embedder.runtime_name] * n}


def plan_resources(ray, device: str, actors: int | None) -> dict:
    """Actor count and the CPUs/GPUs each stage asks Ray for."""
    resources = ray.cluster_resources()
    cpus, gpus = float(resources.get("CPU", 1)), int(resources.get("GPU", 0))
    if device.startswith("cuda"):
        if gpus < 1:
            raise InvalidArgumentError("--device cuda with --runner ray needs GPUs in the Ray cluster, and it has none. "
                                       "Add GPU nodes or use --device cpu.", code="bad_option")
        actors = actors or gpus
        return {"actors": actors, "actor": {"num_gpus": 1, "num_cpus": 1}, "threads": None, "decode_cpus": 1}
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    actors = actors or max(1, nodes)
    if actors < 1:
        raise InvalidArgumentError(f"--actors must be 1 or more, got {actors}.", code="bad_option")
    per_actor = min(cpus * CPU_SHARE_FOR_INFERENCE, cpus - 0.25) / actors
    return {"actors": actors, "actor": {"num_cpus": per_actor}, "threads": max(1, math.ceil(per_actor)), "decode_cpus": 0.25}


def run_ray(build: Build, embedder, *, settings: Settings, actors: int | None = None) -> str:
    """Embed the catalog's new and changed images on a Ray cluster; commit here. Returns the runtime used.
    The actors rebuild ``embedder`` (same backbone, weights, pooling) with ``settings``' device and runtime."""
    import pyarrow as pa

    device, max_pixels = settings.device, settings.max_pixels
    options = {name: value for name, value in embedder.options().items() if name in ("backbone", "weights", "pooling")}
    runtimes = set()
    with ray_session(settings.ray_address or None) as ray, _quiet_ray_data(ray):
        plan = plan_resources(ray, device, actors)
        ids = list(build.catalog.images)
        table = pa.table({"id": ids, "path": [str(build.catalog.images[pid]) for pid in ids],
                          "known": [build.known.get(pid, "") for pid in ids]})
        step = int(np.clip(len(ids) // (4 * max(1, plan["actors"])), *DECODE_BLOCK_ROWS))
        ds = ray.data.from_arrow([table.slice(start, step) for start in range(0, len(ids), step)])
        ds = ds.map_batches(read_and_prepare, fn_kwargs={"pre": embedder.preprocess, "max_pixels": max_pixels},
                            batch_size=None, batch_format="numpy", num_cpus=plan["decode_cpus"])
        ds = ds.map_batches(EmbedActor, batch_size=embedder.batch_size, batch_format="numpy",
                            fn_constructor_kwargs={"options": options, "settings": settings.to_dict(),
                                                   "fingerprint": embedder.fingerprint(),
                                                   "index_path": str(build.store.path), "threads": plan["threads"]},
                            compute=ray.data.ActorPoolStrategy(size=plan["actors"]), **plan["actor"])
        with progress_bar(len(ids), build.progress, "indexing (ray)") as bar:
            try:
                for batch in ds.iter_batches(batch_size=build.commit_every, batch_format="numpy"):
                    _take(build, batch)
                    runtimes.update(batch["runtime"][batch["status"] == "embed"].tolist())
                    bar.update(len(batch["id"]))
            except StylelensError:
                raise
            except Exception as exc:
                raise _explain(exc) from exc
    return "/".join(sorted(runtimes)) or embedder.runtime_name


def _take(build: Build, batch: dict) -> None:
    """One batch back from the cluster: skips, unchanged products and one store commit."""
    status = batch["status"]
    for i in np.flatnonzero(status == "error"):
        build.skip(str(batch["id"][i]), str(batch["path"][i]), str(batch["code"][i]), str(batch["message"][i]))
    unchanged = np.flatnonzero(status == "unchanged")
    if len(unchanged):
        build.keep([str(batch["id"][i]) for i in unchanged])
    todo = np.flatnonzero(status == "embed")
    if len(todo):
        vectors = np.stack([np.frombuffer(batch["vector"][i], np.float32) for i in todo])
        build.commit([(str(batch["id"][i]), str(batch["path"][i]), str(batch["sha"][i])) for i in todo], vectors)


def _explain(exc: Exception) -> StylelensError:
    """Ray wraps errors raised in tasks and actors; hand back ours, or one saying what to do."""
    seen = exc
    while seen is not None:
        for candidate in (seen, getattr(seen, "cause", None)):
            if isinstance(candidate, StylelensError):
                return candidate
        seen = seen.__cause__ or seen.__context__
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RayRunError(f"The Ray run failed: {first_line[:300]}. Work committed so far is kept; "
                       "run the same command again to resume.")


@contextmanager
def _quiet_ray_data(ray):
    """Our progress bar and summary replace Ray Data's per-run logging; restored afterwards."""
    ctx = ray.data.DataContext.get_current()
    saved = {name: getattr(ctx, name) for name in ("enable_progress_bars", "print_on_execution_start", "enable_auto_log_stats")
             if hasattr(ctx, name)}
    logger = logging.getLogger("ray.data")
    level = logger.level
    for name in saved:
        setattr(ctx, name, False)
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(ctx, name, value)
        logger.setLevel(level)
