"""Load check of the web API: N concurrent clients on loopback send a bounded number of searches.

    python bench/load.py INDEX [--url URL ...] [--replicas N] [--clients 20] [--requests 400] [--out load.json]
    python bench/load.py INDEX --clients 1,8,32 --batching both     # before/after batching, one run

Without --url it starts ``--replicas`` (default 1) ``stylelens serve INDEX`` processes on free loopback
ports and stops them afterwards; requests go to them (or to the --url servers) in turn, as a
round-robin load balancer would send them, and the report adds the servers' CPU seconds per request
(``--batching both``: once with the micro-batcher off, STYLELENS_BATCH_WAIT_MS=0, once on).
Query photos are catalog images of the index, fetched over HTTP from /images/<id> (sampled with a
fixed seed), so the request mix is the same on every run. Reports client-side latency p50/p90/p99,
throughput and errors (any non-200 is an error; the exit code is 1 if there were any), prints it and
writes it as JSON with --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

WARMUP_REQUESTS = 4
START_TIMEOUT_S = 180


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("index", help="Index folder (its product ids are the query photos).")
    p.add_argument("--url", action="append", help="A running server; repeat for several replicas (default: start them).")
    p.add_argument("--replicas", type=int, default=1, help="Servers to start when no --url is given (default 1).")
    p.add_argument("--clients", default="20", help="Concurrent clients, or a comma-separated list run in turn (default 20).")
    p.add_argument("--batching", choices=("server", "off", "on", "both"), default="server",
                   help="Started servers' micro-batching: as their settings say, off, on, or both in turn (default server).")
    p.add_argument("--requests", type=int, default=400, help="Measured requests in all (default 400).")
    p.add_argument("--photos", type=int, default=50, help="Distinct query photos (default 50).")
    p.add_argument("--similar-share", type=float, default=0.0,
                   help="Share of requests that are 'more like this' (GET similar) instead of photo searches.")
    p.add_argument("-k", type=int, default=12, help="Products per answer (default 12).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="Write the report as JSON here.")
    return p.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_servers(index: str, n: int, log_path: Path, env: dict | None = None) -> tuple[list[subprocess.Popen], list[str]]:
    procs, urls = [], []
    try:
        for i in range(n):  # one after the other: two model loads at once on 2 cores only slow both
            proc, url = start_server(index, log_path.with_suffix(f".{i}.log"), env)
            procs.append(proc)
            urls.append(url)
    except BaseException:
        for proc in procs:
            stop_server(proc)
        raise
    return procs, urls


def process_tree_cpu(pids, reaped: bool = False) -> float | None:
    """User + system CPU seconds so far of these processes and their live descendants (a process that exits
    while being read is skipped); ``reaped`` adds the children each one has already waited for (PostgreSQL's
    backends, which exit with their connection). None without psutil."""
    try:
        import psutil
    except ImportError:
        return None
    total = 0.0
    for pid in pids:
        try:
            family = [psutil.Process(pid)]
            family += family[0].children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for i, q in enumerate(family):
            try:
                t = q.cpu_times()
            except psutil.NoSuchProcess:  # a child that exited between listing and reading
                continue
            total += t.user + t.system
            if reaped and i == 0:
                total += t.children_user + t.children_system
    return total


def cpu_seconds(procs: list[subprocess.Popen]) -> float | None:
    """CPU of the started server processes (and their children) so far; None without psutil."""
    return process_tree_cpu([proc.pid for proc in procs])


def start_server(index: str, log_path: Path, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-c", "import sys; from stylelens.cli import main; sys.exit(main())",
           "serve", index, "--port", str(port), "--log-level", "warning"]
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, **(env or {})))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}; see {log_path}:\n{log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"the server did not answer within {START_TIMEOUT_S} s; see {log_path}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)  # uvicorn shuts down cleanly on SIGINT
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def sample_ids(index: str, n: int, seed: int) -> list[str]:
    from stylelens.index import open_store

    store = open_store(index)
    try:
        ids = sorted(store.columns.row_of)
    finally:
        store.close()
    if not ids:
        raise SystemExit(f"index {index} has no products")
    return random.Random(seed).sample(ids, min(n, len(ids)))


async def run_load(urls: list[str], photos: dict[str, bytes], args, procs=()) -> dict:
    rng = random.Random(args.seed)
    ids = sorted(photos)
    plan = [("similar" if rng.random() < args.similar_share else "search", rng.choice(ids)) for _ in range(args.requests)]
    results: list[tuple[str, float, int, str, float | None]] = []  # kind, seconds, status, error code, server took_ms
    next_item = 0
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)

    turn = 0

    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        async def request(kind: str, pid: str):
            nonlocal turn
            url = urls[turn % len(urls)]  # round robin, as a load balancer in front of the replicas
            turn += 1
            if kind == "search":
                return await client.post(url + "/api/search", files={"image": ("q.jpg", photos[pid], "image/jpeg")},
                                         data={"k": str(args.k)})
            return await client.get(f"{url}/api/products/{pid}/similar", params={"k": args.k})

        for kind, pid in plan[:WARMUP_REQUESTS * len(urls)]:
            (await request(kind, pid)).raise_for_status()

        async def worker():
            nonlocal next_item
            while next_item < len(plan):
                kind, pid = plan[next_item]
                next_item += 1
                started = time.perf_counter()
                try:
                    r = await request(kind, pid)
                    status = r.status_code
                    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
                    code = "" if status == 200 else (body.get("error") or {}).get("code", f"http_{status}")
                    took = body.get("took_ms") if status == 200 else None
                except httpx.HTTPError as exc:
                    status, code, took = 0, type(exc).__name__, None
                results.append((kind, time.perf_counter() - started, status, code, took))

        cpu_before = cpu_seconds(list(procs)) if procs else None
        started = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(args.clients)])
        wall = time.perf_counter() - started
        cpu_after = cpu_seconds(list(procs)) if procs else None
    report = summarize(results, wall, args)
    report["replicas"] = len(urls)
    if cpu_before is not None and cpu_after is not None:
        report["server_cpu_s_per_request"] = round((cpu_after - cpu_before) / max(1, len(results)), 4)
    return report


def stats(seconds: list[float]) -> dict:
    if not seconds:
        return {}
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p90_ms": round(float(np.percentile(ms, 90)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "max_ms": round(float(ms.max()), 1),
            "mean_ms": round(float(ms.mean()), 1)}


def summarize(results, wall: float, args) -> dict:
    errors = [(kind, status, code) for kind, _, status, code, _ in results if status != 200]
    report = {
        "requests": len(results), "clients": args.clients, "errors": len(errors),
        "error_codes": sorted({f"{kind}:{code or status}" for kind, status, code in errors}),
        "seconds": round(wall, 2), "requests_per_s": round(len(results) / wall, 2),
        "latency": stats([s for _, s, status, _, _ in results if status == 200]),
        "by_kind": {},
    }
    for kind in sorted({r[0] for r in results}):
        mine = [r for r in results if r[0] == kind and r[2] == 200]
        took = [r[4] for r in mine if r[4] is not None]
        report["by_kind"][kind] = {"requests": sum(r[0] == kind for r in results), **stats([r[1] for r in mine]),
                                   "server_took_p50_ms": round(float(np.median(took)), 1) if took else None}
    return report


BATCH_WAIT = {"off": "0", "on": "2"}  # STYLELENS_BATCH_WAIT_MS for started servers


def one_setup(args, clients: list[int], mode: str) -> list[dict]:
    """Start (or use) the servers and run the load once per client count against them."""
    procs: list[subprocess.Popen] = []
    log_path = Path(tempfile.gettempdir()) / f"stylelens-load-{os.getpid()}.log"
    urls = args.url
    try:
        if not urls:
            print(f"starting {args.replicas} x stylelens serve {args.index} (batching {mode}) ...", file=sys.stderr)
            env = {"STYLELENS_BATCH_WAIT_MS": BATCH_WAIT[mode]} if mode in BATCH_WAIT else None
            procs, urls = start_servers(args.index, args.replicas, log_path, env)
        urls = [u.rstrip("/") for u in urls]
        health = httpx.get(urls[0] + "/api/health", timeout=10).json()
        ids = sample_ids(args.index, args.photos, args.seed)
        with httpx.Client(base_url=urls[0], timeout=30) as c:
            photos = {pid: c.get(f"/images/{pid}").raise_for_status().content for pid in ids}
        reports = []
        for n in clients:
            args.clients = n
            print(f"{n} clients, {args.requests} requests against {', '.join(urls)} "
                  f"({health['products']:,} products, {health['backbone']}, {health['search']} search, batching {mode})",
                  file=sys.stderr)
            report = asyncio.run(run_load(urls, photos, args, procs))
            report.update({
                "batching": mode,
                "server": {k: health.get(k) for k in ("products", "backbone", "dimension", "search", "runtime", "version")},
                "k": args.k, "photos": len(photos), "similar_share": args.similar_share,
                "machine": {"cpu": cpu_name(), "cpus": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform(), "load_avg_1m": round(os.getloadavg()[0], 2)},
                "started_server": bool(procs),
            })
            print_report(report)
            reports.append(report)
        for log in log_path.parent.glob(log_path.stem + ".*.log"):  # kept only when a run failed (errors name it)
            log.unlink(missing_ok=True)
        return reports
    finally:
        for proc in procs:
            stop_server(proc)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main(argv=None) -> int:
    args = parse_args(argv)
    clients = [int(c) for c in str(args.clients).split(",") if c.strip()]
    if not clients or min(clients) < 1 or args.requests < 1:
        raise SystemExit("--clients and --requests must be at least 1")
    modes = ["off", "on"] if args.batching == "both" else [args.batching]
    reports = [r for mode in modes for r in one_setup(args, clients, mode)]
    if len(reports) > 1:
        print_table(reports)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(reports[0] if len(reports) == 1 else {"runs": reports}, indent=2) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 1 if any(r["errors"] for r in reports) else 0


def print_table(reports: list[dict]) -> None:
    first = reports[0]
    print(f"\nLOAD  POST /api/search, {first['server']['products']:,} products, {first['server']['backbone']} "
          f"({first['server']['runtime']}), {first['server']['search']} search, k={first['k']}, {first['replicas']} replica(s); "
          f"{first['machine']['cpu']}, {first['machine']['cpus']} cores")
    print(f"{'batching':9s} {'clients':>7s} {'req/s':>7s} {'p50 ms':>7s} {'p99 ms':>7s} {'errors':>6s}")
    for r in reports:
        lat = r["latency"]
        print(f"{r['batching']:9s} {r['clients']:7d} {r['requests_per_s']:7.1f} {lat.get('p50_ms', 0):7.1f} "
              f"{lat.get('p99_ms', 0):7.1f} {r['errors']:6d}")


def print_report(report: dict) -> None:
    lat = report["latency"]
    print(f"requests {report['requests']}  clients {report['clients']}  errors {report['errors']}"
          + (f" {report['error_codes']}" if report["errors"] else ""))
    print(f"throughput {report['requests_per_s']} req/s over {report['seconds']} s from {report['replicas']} replica(s)"
          + (f", server CPU {report['server_cpu_s_per_request']} s per request" if "server_cpu_s_per_request" in report else ""))
    if lat:
        print(f"latency p50 {lat['p50_ms']} ms  p90 {lat['p90_ms']} ms  p99 {lat['p99_ms']} ms  max {lat['max_ms']} ms")
    for kind, s in report["by_kind"].items():
        if "p50_ms" in s:
            print(f"  {kind:8s} {s['requests']:5d} requests  p50 {s['p50_ms']} ms  p99 {s['p99_ms']} ms  "
                  f"server work p50 {s['server_took_p50_ms']} ms")


if __name__ == "__main__":
    sys.exit(main())
