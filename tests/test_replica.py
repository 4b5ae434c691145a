"""Stateless replicas: an index in a real PostgreSQL 15 + the vectors in a real (embedded) Milvus server,
served by `stylelens serve` processes that share nothing but those two. All on 127.0.0.1, started here."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import write_catalog
from replica_fixtures import (CLI, PASSWORD, cli, db_url, environment, eventually, milvus_server,  # noqa: F401
                              postgres, postgres_server)
from service_fixtures import free_port

pytestmark = pytest.mark.scale
pytest.importorskip("sqlalchemy", reason="the postgres extra is not installed: pip install 'stylelens[postgres]'")
pytest.importorskip("psycopg", reason="the postgres extra is not installed: pip install 'stylelens[postgres]'")


# One browser's shopper cookie, sent to every replica: issued by one, accepted by all (the secret is the index's).
SHOPPER = httpx.Cookies()


class Replica:
    """`stylelens serve LOCATION` as a real process on a free port."""

    def __init__(self, location: str, env: dict, log: Path, *options):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "w") as fh:
            self.proc = subprocess.Popen(CLI + ["serve", location, "--port", str(self.port), *options], env=env, stdout=fh,
                                         stderr=subprocess.STDOUT)

    def wait(self, timeout=180) -> "Replica":
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"stylelens serve exited: {self.log.read_text()}"
            try:
                if httpx.get(self.url + "/api/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"stylelens serve did not start: {self.log.read_text()}"
            time.sleep(0.3)

    def get(self, path, **params):
        return httpx.get(self.url + path, params=params, timeout=60, cookies=SHOPPER)

    def post(self, path, **kwargs):
        return httpx.post(self.url + path, timeout=60, cookies=SHOPPER, **kwargs)

    def stop(self, sig=signal.SIGINT):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()




def set_price(catalog: Path, pid: str, price: str) -> None:
    with open(catalog / "products.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
        header = list(rows[0])
    for row in rows:
        if row["id"] == pid:
            row["price"] = price
    with open(catalog / "products.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def test_two_replicas_share_one_index_and_lose_nothing_when_one_dies(postgres_server, milvus_server, tmp_path, environment):
    postgres = postgres_server.port
    catalog = tmp_path / "catalog"
    rows = write_catalog(catalog, n=24)
    location = db_url(postgres, "shop")
    store = f"milvus://127.0.0.1:{milvus_server}/products"
    built = cli(environment, "index", catalog, "--out", location, "--store", store, "--weights", "random", "--workers", "0")
    assert built.returncode == 0, built.stderr
    a = Replica(location, environment, tmp_path / "a.log")
    b = Replica(location, environment, tmp_path / "b.log", "--workers", "2")  # B: two processes on one port
    try:
        a.wait(), b.wait()
        # The same photo, the same answer from either replica.
        photo = (catalog / "images" / "1003.jpg").read_bytes()
        answers = [r.post("/api/search", files={"image": ("q.jpg", photo, "image/jpeg")}, data={"k": "5"}).json() for r in (a, b)]
        assert [p["id"] for p in answers[0]["results"]] == [p["id"] for p in answers[1]["results"]]
        assert answers[0]["results"] and all(len(x["results"]) == 5 for x in answers)
        # A like recorded by A is B's "For you" seed; the shopper's cookie comes from A, B accepts it.
        SHOPPER.update(a.get("/api/shoppers/me").cookies)
        liked = a.post("/api/users/me/events", json={"product_id": "1003", "event": "like"})
        assert liked.status_code == 200 and liked.json()["counts"]["like"] == 1
        for_you = b.get("/api/users/me/recommendations", k=5)
        assert for_you.status_code == 200 and for_you.json()["results"], for_you.text
        assert "1003" not in [p["id"] for p in for_you.json()["results"]]  # liked already: not recommended again
        # A feed update by a writer on its own: both replicas show the new price within seconds.
        assert a.get("/api/products/1007").json()["price"] == float(rows["1007"]["price"])
        set_price(catalog, "1007", "999.00")
        updated = cli(environment, "index", catalog, "--out", location, "--weights", "random", "--workers", "0")
        assert updated.returncode == 0, updated.stderr
        for replica in (a, b):
            assert eventually(lambda r=replica: r.get("/api/products/1007").json()["price"] == 999.0)
        # ... and the price filter that Milvus runs follows too (its scalar fields were updated).
        similar = lambda r: [p["id"] for p in r.get("/api/products/1006/similar", k=30, min_price=900,  # noqa: E731
                                                     include_out_of_stock="true").json()["results"]]
        assert eventually(lambda: similar(b) == ["1007"]), similar(b)
        # A removal through the CLI: gone from both.
        removed = cli(environment, "remove", location, "1010")
        assert removed.returncode == 0, removed.stderr
        for replica in (a, b):
            assert eventually(lambda r=replica: r.get("/api/products/1010").status_code == 404)
        # stylelens tune on the database, from a third process: both replicas search the new head within seconds
        # (B's two workers each follow it), and still agree.
        assert a.get("/api/health").json()["space"] == "raw" and a.get("/api/health").json()["head"] is None
        tuned = cli(environment, "tune", location, "--tune-views", "8")
        assert tuned.returncode == 0, tuned.stderr
        # The head serves only the aspects it measured better for (quality.tuning): every replica follows the head
        # tune wrote, and searches the spaces it adopted.
        head = json.loads(cli(environment, "info", location, "--json").stdout)["head"]
        want = {"head": head["sha256"][:12], "space": "tuned" if head["adopted"].get("type") else "raw",
                "colour_vote": "tuned" if head["adopted"].get("colour") else "raw"}
        assert eventually(lambda: all({k: r.get("/api/health").json()[k] for k in want} == want for r in (a, b, b, b, b)))
        answers = [r.post("/api/search", files={"image": ("q.jpg", photo, "image/jpeg")}, data={"k": "5"}).json() for r in (a, b)]
        assert answers[0]["results"][0]["id"] == "1003"
        assert [p["id"] for p in answers[0]["results"]] == [p["id"] for p in answers[1]["results"]]
        # A dies without warning; B keeps serving, with everything A recorded.
        a.stop(signal.SIGKILL)
        assert b.get("/api/health").json()["products"] == 23
        assert b.get("/api/products/1007").json()["price"] == 999.0
        after = b.post("/api/search", files={"image": ("q.jpg", photo, "image/jpeg")}, data={"k": "5"}).json()
        assert [p["id"] for p in after["results"]] == [p["id"] for p in answers[0]["results"]]
        again = b.post("/api/users/me/events", json={"product_id": "1005", "event": "like"})
        assert again.json()["counts"]["like"] == 2  # A's like is there, nothing lost
    finally:
        a.stop()
        b.stop()
    # A new replica started from nothing but the location has it all.
    c = Replica(location, environment, tmp_path / "c.log").wait()
    try:
        assert c.get("/api/health").json()["products"] == 23
        assert c.post("/api/users/me/events", json={"product_id": "1011", "event": "view"}).json()["counts"] == \
            {"like": 2, "dislike": 0, "view": 1, "upload": 0}
        # The database goes down: one line and a 503 for the client, never a 500; back when it is.
        postgres_server.stop()
        try:
            down = c.get("/api/products/1007")
            assert down.status_code == 503 and down.json()["error"]["code"] == "database_unavailable"
            assert "PostgreSQL at postgresql://stylelens@127.0.0.1" in down.json()["error"]["message"]
        finally:
            postgres_server.start()
        assert eventually(lambda: c.get("/api/products/1007").status_code == 200)
    finally:
        c.stop()


FP = {"backbone": "toy", "weights": {"source": "random", "sha256": None, "detail": "seed=0"}, "pooling": "max",
      "preprocess": {"size": 8}, "dim": 8, "normalized": "l2"}


def test_replica_store_in_postgres_keeps_manifest_artifacts_and_events(postgres, tmp_path):
    """The database interface on its own (Milvus Lite for the vectors): a writer's manifest field and
    artifact reach a reader opened before them; a second writer is refused; the schema is versioned."""
    import numpy as np

    from stylelens.errors import IndexBusyError
    from stylelens.index import create_store, open_store
    from stylelens.query.personalize import Shoppers
    from stylelens.settings import Settings

    settings = Settings.load(database_password=PASSWORD)
    location = db_url(postgres, "artifacts")
    writer = create_store(location, FP, {}, f"milvus-lite://{tmp_path / 'v.db'}", settings=settings)
    try:
        vectors = np.eye(8, dtype=np.float32)[:3]
        writer.add([{"id": str(i), "name": f"p{i}", "price": 10.0 * i} for i in range(3)], vectors)
        writer.save_manifest(note="first")
        reader = open_store(location, settings=settings)
        assert len(reader) == 3 and reader.read_artifact("head.bin") is None and reader.manifest["note"] == "first"
        before = reader.columns.version
        with pytest.raises(IndexBusyError, match="another writer"):
            open_store(location, writable=True, settings=settings)
        writer.write_artifact("head.bin", b"\x00weights\xff")
        writer.save_manifest(note="second")
        writer.update_records([{"id": "1", "name": "p1", "price": 99.0}])
        assert eventually(lambda: reader.columns.version != before, timeout=5)
        assert reader.manifest["note"] == "second" and reader.read_artifact("head.bin") == b"\x00weights\xff"
        assert reader.product("1")["price"] == 99.0 and reader.columns.price[reader.columns.row_of["1"]] == 99.0
        shoppers = Shoppers(reader.path)
        shoppers.record("ann", "like", product_id="2")
        assert Shoppers(reader.path).history("ann").liked == ["2"]
        reader.close()
    finally:
        writer.close()
    # The schema carries its Alembic revision: opening again migrates nothing and keeps everything.
    import sqlalchemy as sa

    from stylelens.index.database import parse_database
    from stylelens.index.postgres import make_engine

    engine = make_engine(parse_database(location, PASSWORD))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0001"
    engine.dispose()


def test_replica_artifacts_and_manifest_of_a_folder_index_reach_its_readers(tmp_path):
    """The same artifacts API on the embedded default: files in the index folder, written atomically."""
    import numpy as np

    from stylelens.errors import InvalidArgumentError
    from stylelens.index import create_store, open_store

    writer = create_store(tmp_path / "idx", FP, {})
    try:
        writer.add([{"id": "a", "name": "a"}], np.eye(8, dtype=np.float32)[:1])
        reader = open_store(tmp_path / "idx")
        before = reader.columns.version
        writer.write_artifact("head.bin", b"\x01\x02")
        writer.save_manifest(head={"name": "head.bin"})
        assert (tmp_path / "idx" / "head.bin").read_bytes() == b"\x01\x02"
        assert reader.columns.version != before and reader.manifest["head"] == {"name": "head.bin"}
        assert reader.read_artifact("head.bin") == b"\x01\x02" and reader.read_artifact("other.bin") is None
        for name in ("manifest.json", "catalog.sqlite", "../x", "vectors-0.f32", ""):
            with pytest.raises(InvalidArgumentError):
                writer.write_artifact(name, b"x")
        with pytest.raises(RuntimeError):
            reader.write_artifact("head.bin", b"x")
        reader.close()
    finally:
        writer.close()


def test_replica_locations_and_a_wrong_password_fail_in_one_line(postgres, tmp_path, environment):
    bad_password = dict(environment, STYLELENS_DATABASE_PASSWORD="wrong")
    result = cli(bad_password, "info", db_url(postgres, "shop"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "password authentication failed" in result.stderr and "STYLELENS_DATABASE_PASSWORD" in result.stderr
    result = cli(environment, "info", f"postgresql://stylelens:{PASSWORD}@127.0.0.1:{postgres}/shop")
    assert result.returncode != 0 and "Do not put the database password in the location" in result.stderr
    assert PASSWORD not in result.stderr
    down = cli(environment, "info", db_url(free_port(), "shop"))
    assert down.returncode != 0 and "Traceback" not in down.stderr and "Check that PostgreSQL is running" in down.stderr
    folder = cli(environment, "index", tmp_path / "none", "--out", db_url(postgres, "nofolder"), "--weights", "random")
    assert folder.returncode != 0 and "Traceback" not in folder.stderr
