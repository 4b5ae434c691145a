"""A real PostgreSQL 15 and the embedded Milvus 2.3.5 server, started on 127.0.0.1 for the replica tests.

A plain module: test modules import the fixtures by name (``from replica_fixtures import postgres_server``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from service_fixtures import free_port

PASSWORD = "s3cret-for-tests"
CLI = [sys.executable, "-c", "import sys; from stylelens.cli import main; sys.exit(main())"]


def _as_postgres_user() -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as (apt-get install postgresql)")
    return ["runuser", "-u", "postgres", "--"]


class Postgres:
    """A PostgreSQL 15 server of its own in ``root``, password authentication on TCP."""

    def __init__(self, root: Path, as_user: list[str]):
        self.root, self.as_user = root, as_user
        self.port = free_port()
        self.data = root / "data"
        (root / "pw").write_text(PASSWORD + "\n")
        subprocess.run(as_user + [shutil.which("initdb"), "-D", str(self.data), "-U", "stylelens", "-E", "UTF8", "--no-sync",
                                  "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={root / 'pw'}"],
                       check=True, capture_output=True)

    def start(self) -> None:
        subprocess.run(self.as_user + [shutil.which("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o",
                                       f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run(self.as_user + [shutil.which("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True)


@pytest.fixture(scope="module")
def postgres_server():
    if not (shutil.which("initdb") and shutil.which("pg_ctl")):
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl on PATH): apt-get install postgresql (scripts/test.sh does)")
    as_user = _as_postgres_user()
    # As root the data folder cannot sit under pytest's tmp_path (mode 0700, root's): a folder of its own in /tmp.
    root = Path(tempfile.mkdtemp(prefix="stylelens-pg-"))
    if as_user:
        shutil.chown(root, "postgres", "postgres")
    server = Postgres(root, as_user)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres(postgres_server) -> int:
    return postgres_server.port


_MILVUS: dict = {"users": 0, "server": None}


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """The embedded Milvus 2.3.5 server (`pip install milvus`): its port. One per test session, on ports of its own
    and in its own data folder, so that two sessions beside each other (two checkouts, two helpers) never meet. The
    package's ``default_server`` cannot: its embedded etcd always listens on 2380, so a second server dies at start
    (the session waits 180 s, then "Milvus not started"); started at the same moment, both pick the same free ports
    and the second session's health check finds the first's server, which it then uses, and loses when that one
    stops. Each test module that imports this fixture gets its own copy of it: the first starts the server, the
    last to finish stops it."""
    milvus = pytest.importorskip("milvus", reason="the embedded Milvus server is not installed: pip install 'stylelens[milvus-server]'")
    if _MILVUS["users"] == 0:
        _MILVUS["server"] = _own_milvus(milvus, tmp_path_factory.mktemp("milvus"))
        _MILVUS["server"].start()
    _MILVUS["users"] += 1
    try:
        yield _MILVUS["server"].listen_port
    finally:
        _MILVUS["users"] -= 1
        if _MILVUS["users"] == 0:
            _MILVUS["server"].stop()
            _MILVUS["server"] = None


def _own_milvus(milvus, root: Path):
    """A Milvus server whose every port is free now (grpc ports, metrics, embedded etcd's client and peer) and whose
    files are under ``root``. The etcd ports are not in the package's template: an etcd config file names them
    (Milvus reads ``etcd.config.path`` for its embedded etcd)."""
    config = milvus.MilvusServerConfig()
    keys = [key for key in config.configurable_items if key.endswith("_port")]
    ports = dict(zip(keys + ["metrics", "etcd_peer"], _free_ports(len(keys) + 2)))
    etcd = root / "etcd.yaml"
    peer, client = f"http://127.0.0.1:{ports['etcd_peer']}", f"http://127.0.0.1:{ports['etcd_port']}"
    etcd.write_text(f"name: default\nlisten-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
                    f"initial-cluster: default={peer}\nlisten-client-urls: {client}\nadvertise-client-urls: {client}\n")
    # The package's own template with one line more (its template= argument is broken in 2.3.5: no glog.conf).
    assert "\netcd:\n  endpoints:" in config.template_text, "the milvus package's config template changed: see _own_milvus"
    config.template_text = config.template_text.replace("\netcd:\n  endpoints:",
                                                        f"\netcd:\n  config:\n    path: {etcd}\n  endpoints:", 1)
    server = milvus.MilvusServer(config, data_dir=str(root / "data"), **{key: ports[key] for key in keys})
    server.webservice_port = ports["metrics"]  # where it answers its health check: ours, not another session's
    return server


def _free_ports(n: int) -> list[int]:
    """n different ports free on 127.0.0.1 now (held together while chosen, so none is handed out twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def cli_environment() -> dict:
    """The environment of a `stylelens` subprocess: the database password, torch, no progress bars."""
    return dict(os.environ, STYLELENS_DATABASE_PASSWORD=PASSWORD, STYLELENS_RUNTIME="torch", STYLELENS_PROGRESS="0",
                PYTHONPATH=os.pathsep.join(sys.path))


@pytest.fixture
def environment(monkeypatch):
    monkeypatch.setenv("STYLELENS_DATABASE_PASSWORD", PASSWORD)
    return cli_environment()


def db_url(port: int, name: str) -> str:
    return f"postgresql://stylelens@127.0.0.1:{port}/{name}"


def cli(env, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + [str(a) for a in args], env=env, capture_output=True, text=True, timeout=timeout)


def eventually(check, timeout: float = 30.0):
    """A store or replica that lags shows a write within seconds: poll until ``check()`` is truthy (its last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.25)
