"""Ray Serve against plain replicas: the same photo searches, side by side, in one run.

    python bench/ray_serve.py [--products 300] [--requests 200] [--clients 1,8,32] [--out bench/out/ray_serve.json]

Indexes a generated catalog (ResNet-50, seeded random weights: the cost does not depend on their values),
then sends bench/load.py's request mix (POST /api/search of catalog photos, k = 12) to three setups in turn:

- 1, then 2 `stylelens serve` processes, requests sent in turn (as a round-robin load balancer);
- a Ray Serve application on a local Ray cluster (2 CPUs): an ingress deployment that runs stylelens's own
  web app (upload, decode, localise, top-k, records) with the embedding step handed to an ``Embed``
  deployment of 2 replicas, which embeds concurrent requests together (``@serve.batch``).

Every setup does the same work per request with the same library code; the bench checks that one query
gets the same top ids from each. Reports throughput, latency, and CPU seconds per request of every
process the bench started (the servers, or the whole Ray cluster: GCS, raylet, controller, proxy,
replicas), the cores those processes keep busy at rest (measured for 5 s before the load), the load
average and the CPU model. Needs ``pip install "ray[serve]"`` and psutil.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import load  # noqa: E402
from conftest import write_catalog  # noqa: E402

EMBED_REPLICAS = 2
MAX_BATCH = 16
BATCH_WAIT_S = 0.005
IDLE_S = 5.0


def started_cpu() -> float:
    """CPU seconds of the live processes this one started (servers or the Ray cluster); the load clients
    run in this process and are left out."""
    import psutil

    return load.process_tree_cpu([child.pid for child in psutil.Process().children()])


def measure(arm: str, urls: list[str], index: Path, photos: dict[str, bytes], args) -> list[dict]:
    before = started_cpu()
    time.sleep(IDLE_S)
    idle = round((started_cpu() - before) / IDLE_S, 3)  # cores kept busy with no request in flight
    rows = []
    for clients in args.clients:
        opts = load.parse_args([str(index), "--requests", str(args.requests)])
        opts.clients = clients
        before = started_cpu()
        report = asyncio.run(load.run_load(urls, photos, opts))
        sent = report["requests"] + load.WARMUP_REQUESTS * len(urls)  # run_load's warm-up is inside the window
        rows.append({"arm": arm, "clients": clients, "requests": report["requests"], "errors": report["errors"],
                     "req_s": report["requests_per_s"], "p50_ms": report["latency"].get("p50_ms"),
                     "p99_ms": report["latency"].get("p99_ms"),
                     "search_took_p50_ms": report["by_kind"]["search"]["server_took_p50_ms"],
                     "cpu_s_per_request": round((started_cpu() - before) / sent, 4),
                     "idle_cpu_cores": idle, "load_avg_1m": round(os.getloadavg()[0], 2)})
        print_row(rows[-1])
    return rows


def top_ids(url: str, photo: bytes) -> list[str]:
    r = httpx.post(url + "/api/search", files={"image": ("q.jpg", photo, "image/jpeg")}, data={"k": "12"}, timeout=60)
    return [p["id"] for p in r.raise_for_status().json()["results"]]


def serve_app(index: Path, fingerprint: dict):
    """The Ray Serve application: stylelens's web app as the ingress, the network in a batching deployment."""
    from ray import serve

    @serve.deployment(num_replicas=EMBED_REPLICAS, max_ongoing_requests=2 * MAX_BATCH, ray_actor_options={"num_cpus": 1})
    class Embed:
        def __init__(self, fingerprint: dict):
            from stylelens import Embedder

            self.embedder = Embedder.from_fingerprint(fingerprint)
            self.embedder.warm()

        def runtime(self) -> str:
            return self.embedder.runtime_name

        @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
        async def embed(self, requests: list[np.ndarray]) -> list[np.ndarray]:
            vectors = self.embedder.embed_prepared(np.concatenate(requests))
            return np.split(vectors, np.cumsum([len(p) for p in requests])[:-1])

    class RemoteEmbedder:
        """Stands in for the ingress's embedder (as models.MicroBatcher does in `stylelens serve`): pixels are
        prepared here, the network runs in an Embed replica."""

        def __init__(self, embedder, handle, runtime: str):
            self.embedder, self.handle, self.runtime_name = embedder, handle, f"ray serve {runtime}"

        def __getattr__(self, name):
            return getattr(self.embedder, name)

        def warm(self) -> None:  # the Embed replicas warmed themselves
            pass

        def embed_prepared(self, pixels: np.ndarray) -> np.ndarray:
            return self.handle.embed.remote(pixels).result()  # called from the app's worker threads

        def embed(self, images) -> np.ndarray:
            return self.embed_prepared(np.stack([self.embedder.prepare(im) for im in images]))

    @serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0})
    @serve.ingress()
    class Web:
        async def __init__(self, index: str, embed):
            from stylelens import open_index

            # The library's own micro-batcher off (Embed batches); the local model is only read, never run.
            self.index = open_index(index, batch_wait_ms=0, runtime="torch")
            self.index.embedder = RemoteEmbedder(self.index.embedder, embed, await embed.runtime.remote())

        def __serve_build_asgi_app__(self):
            from stylelens.service import create_app

            return create_app(self.index)

    return Web.bind(str(index), Embed.bind(fingerprint))


def start_ray_serve(index: Path, root: Path) -> str:
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise SystemExit(f'Ray Serve is not installed ({exc}): pip install "ray[serve]"') from None
    from stylelens.index import open_store

    store = open_store(index)
    fingerprint = store.manifest["embedder"]
    store.close()
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(root / "ray"), logging_level="warning",
             log_to_driver=False)
    port = load.free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config={"enable_access_log": False})
    serve.run(serve_app(index, fingerprint), name="stylelens", route_prefix="/",
              logging_config={"enable_access_log": False, "log_level": "WARNING"})
    url = f"http://127.0.0.1:{port}"
    httpx.get(url + "/api/health", timeout=60).raise_for_status()
    return url


def stop_started() -> None:
    """Ray Serve and the Ray cluster, if started, then any process of ours still running."""
    import psutil

    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        from ray import serve

        serve.shutdown()
        sys.modules["ray"].shutdown()
    for q in psutil.Process().children(recursive=True):
        q.terminate()


COLUMNS = {"clients": "clients", "req_s": "req/s", "p50_ms": "p50 ms", "p99_ms": "p99 ms", "search_took_p50_ms": "took p50",
           "cpu_s_per_request": "CPU s/req", "idle_cpu_cores": "idle CPU", "load_avg_1m": "load 1m", "errors": "errors"}


def print_row(r: dict) -> None:
    print(f"{r['arm']:28s} " + " ".join(f"{r[key]:>9}" for key in COLUMNS), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--products", type=int, default=300)
    p.add_argument("--requests", type=int, default=200, help="Measured requests per arm and client count (default 200).")
    p.add_argument("--clients", default="1,8,32", help="Concurrent clients, comma-separated (default 1,8,32).")
    p.add_argument("--out", default=str(HERE / "out" / "ray_serve.json"))
    args = p.parse_args(argv)
    args.clients = [int(c) for c in args.clients.split(",")]
    os.environ.setdefault("STYLELENS_PROGRESS", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    root = Path(tempfile.mkdtemp(prefix="stylelens-rayserve-"))
    index = root / "index"
    procs = []
    try:
        rows = write_catalog(root / "catalog", n=args.products)
        subprocess.run([sys.executable, "-m", "stylelens", "index", str(root / "catalog"), "--out", str(index),
                        "--weights", "random"], check=True, stdout=subprocess.DEVNULL)
        photos = {pid: (root / "catalog" / "images" / f"{pid}.jpg").read_bytes() for pid in load.sample_ids(str(index), 50, 0)}
        probe = photos[sorted(photos)[0]]
        print(f"{load.cpu_name()}, {os.cpu_count()} cores; {len(rows)} products; POST /api/search, k = 12, "
              f"{args.requests} requests per line")
        print(f"{'arm':28s} " + " ".join(f"{title:>9s}" for title in COLUMNS.values()))
        results, tops, runtimes = [], {}, {}
        for n in (1, 2):
            arm = f"stylelens serve x{n}"
            procs, urls = load.start_servers(str(index), n, root / "serve.log")
            tops[arm] = top_ids(urls[0], probe)
            runtimes[arm] = httpx.get(urls[0] + "/api/health").json()["runtime"]
            results += measure(arm, urls, index, photos, args)
            for proc in procs:
                load.stop_server(proc)
            procs = []
        arm = f"Ray Serve, {EMBED_REPLICAS} Embed replicas"
        started = time.monotonic()
        url = start_ray_serve(index, root)
        ray_start_s = round(time.monotonic() - started, 1)
        tops[arm] = top_ids(url, probe)
        runtimes[arm] = httpx.get(url + "/api/health").json().get("runtime")
        results += measure(arm, [url], index, photos, args)
    finally:
        for proc in procs:
            load.stop_server(proc)
        stop_started()
        shutil.rmtree(root, ignore_errors=True)

    same = all(ids == tops["stylelens serve x1"] for ids in tops.values())
    print(f"same top-12 ids for one query in every arm: {same}; runtimes: {runtimes}; Ray cluster + Serve start {ray_start_s} s")
    report = {"machine": {"cpu": load.cpu_name(), "cpus": os.cpu_count()}, "products": args.products,
              "requests_per_line": args.requests, "embed_replicas": EMBED_REPLICAS, "max_batch_size": MAX_BATCH,
              "batch_wait_timeout_s": BATCH_WAIT_S, "ray_start_s": ray_start_s, "runtimes": runtimes,
              "same_top_ids": same, "top_ids": tops, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if same and not any(r["errors"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
