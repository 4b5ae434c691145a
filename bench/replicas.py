"""Cost per query of stateless replicas: a PostgreSQL index + Milvus vectors, served by 1 then 2 replicas.

    python bench/replicas.py [--products 300] [--requests 120] [--clients 4] [--out bench/out/replicas.json]

Starts a throwaway PostgreSQL (initdb in a temporary folder; as the postgres user when run as root) and the
embedded Milvus server (`pip install 'stylelens[postgres,milvus-server]'`), indexes a generated catalog
(ResNet-50, seeded random weights: the cost per query does not depend on the weights' values), then runs
bench/load.py against 1 and against 2 `stylelens serve` replicas in the same run, requests sent in turn as
a round-robin load balancer would. Reports throughput, latency and the replicas' CPU seconds per request.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import load  # noqa: E402
from conftest import write_catalog  # noqa: E402

PASSWORD = "bench"


def start_postgres(root: Path) -> tuple[int, list[str]]:
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(root, "postgres", "postgres")
    (root / "pw").write_text(PASSWORD + "\n")
    port = load.free_port()
    subprocess.run(as_user + ["initdb", "-D", str(root / "data"), "-U", "stylelens", "--no-sync", "--auth-local=trust",
                              "--auth-host=scram-sha-256", f"--pwfile={root / 'pw'}"], check=True, capture_output=True)
    subprocess.run(as_user + ["pg_ctl", "-D", str(root / "data"), "-l", str(root / "log"), "-w", "-o",
                              f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    return port, as_user


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--products", type=int, default=300)
    p.add_argument("--requests", type=int, default=120)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--out", default=str(HERE / "out" / "replicas.json"))
    args = p.parse_args(argv)
    from milvus import default_server

    root = Path(tempfile.mkdtemp(prefix="stylelens-replicas-"))
    pg_root = Path(tempfile.mkdtemp(prefix="stylelens-replicas-pg-"))  # its own: the postgres user must enter it
    port, as_user = start_postgres(pg_root)
    default_server.set_base_dir(str(root / "milvus"))
    default_server.start()
    os.environ["STYLELENS_DATABASE_PASSWORD"] = PASSWORD
    os.environ.setdefault("STYLELENS_PROGRESS", "0")
    location = f"postgresql://stylelens@127.0.0.1:{port}/shop"
    try:
        write_catalog(root / "catalog", n=args.products)
        subprocess.run([sys.executable, "-m", "stylelens", "index", str(root / "catalog"), "--out", location,
                        "--store", f"milvus://127.0.0.1:{default_server.listen_port}/bench", "--weights", "random"], check=True)
        reports = {}
        backends = {"postgres": int((pg_root / "data" / "postmaster.pid").read_text().split()[0]),
                    "milvus": default_server.server_proc.pid}
        for n in (1, 2):
            out = root / f"load-{n}.json"
            # Cumulative over the run (replica start-up, warm-up, load): an upper bound on the backends' share.
            before = {name: load.process_tree_cpu([pid], reaped=True) for name, pid in backends.items()}
            load.main([location, "--replicas", str(n), "--requests", str(args.requests), "--clients", str(args.clients),
                       "--out", str(out)])
            reports[f"{n}_replicas"] = report = json.loads(out.read_text())
            report["backend_cpu_s_per_request_upper_bound"] = {
                name: round((load.process_tree_cpu([pid], reaped=True) - before[name]) / report["requests"], 4) for name, pid in backends.items()}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(reports, indent=2) + "\n")
        for name, r in reports.items():
            print(f"{name}: {r['requests_per_s']} req/s, p50 {r['latency']['p50_ms']} ms, p90 {r['latency']['p90_ms']} ms, "
                  f"server CPU {r.get('server_cpu_s_per_request')} s/request, backends (upper bound) "
                  f"{r['backend_cpu_s_per_request_upper_bound']}, errors {r['errors']}, "
                  f"load avg {r['machine']['load_avg_1m']}")
    finally:
        default_server.stop()
        subprocess.run(as_user + ["pg_ctl", "-D", str(pg_root / "data"), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(pg_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
