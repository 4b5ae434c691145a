"""stylelens check on a database index: a real PostgreSQL 15 and the embedded Milvus server on 127.0.0.1.

Damage is done straight to the servers (a vector deleted from Milvus, one that no product owns, a batch
left uncommitted, a broken head); the check names each in one line, --repair fixes what is safe, and the
next `stylelens index` re-embeds exactly what it must."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from conftest import write_catalog
from replica_fixtures import PASSWORD, cli, cli_environment, db_url, milvus_server, postgres, postgres_server  # noqa: F401
from service_fixtures import free_port

pytestmark = pytest.mark.scale
sa = pytest.importorskip("sqlalchemy", reason="the postgres extra is not installed: pip install 'stylelens[postgres]'")
pytest.importorskip("psycopg", reason="the postgres extra is not installed: pip install 'stylelens[postgres]'")
pymilvus = pytest.importorskip("pymilvus", reason="the milvus extra is not installed: pip install 'stylelens[milvus]'")

COLLECTION = "checked"


@pytest.fixture(scope="module")
def shop(postgres, milvus_server, tmp_path_factory):
    """One database index of 8 generated products, built by the CLI; the servers' own clients to damage it."""
    from stylelens.index.database import parse_database
    from stylelens.index.postgres import make_engine

    root = tmp_path_factory.mktemp("dbcheck")
    write_catalog(root / "catalog", n=8)
    location = db_url(postgres, "checked")
    vectors = f"milvus://127.0.0.1:{milvus_server}/{COLLECTION}"
    env = cli_environment()
    built = cli(env, "index", root / "catalog", "--out", location, "--store", vectors, "--weights", "random", "--workers", "0")
    assert built.returncode == 0, built.stderr
    engine = make_engine(parse_database(location, PASSWORD), 1)
    milvus = pymilvus.MilvusClient(uri=f"http://127.0.0.1:{milvus_server}")
    try:
        yield SimpleNamespace(location=location, vectors=vectors, catalog=root / "catalog", env=env, engine=engine,
                              milvus=milvus)
    finally:
        milvus.close()
        engine.dispose()


@pytest.fixture
def api(shop, random_embedder):
    """stylelens.index.check.check on the shop, in this process (the model built once), re-embedding 2 products."""
    from stylelens.index.check import check
    from stylelens.settings import Settings

    settings = Settings.load(database_password=PASSWORD)
    defaults = {"sample": 2, "settings": settings, "embedder": random_embedder}
    return lambda **kw: check(shop.location, **dict(defaults, **kw))


def run_check(shop, *args):
    """`stylelens check` as a process: (exit code, stdout lines, stderr)."""
    done = cli(shop.env, "check", shop.location, "--sample", "2", *args)
    return done.returncode, done.stdout.strip().splitlines(), done.stderr


def sql(shop, statement: str, **params):
    with shop.engine.begin() as conn:
        rows = conn.execute(sa.text(statement), params)
        return rows.fetchall() if rows.returns_rows else None


def held(shop, ids) -> list[str]:
    return sorted(hit["id"] for hit in shop.milvus.get(COLLECTION, ids=list(ids), output_fields=["id"], consistency_level="Strong"))


def codes(report):
    return [f.code for f in report.findings]


def copy_of(shop, pid: str, new_id: str) -> dict:
    """A whole Milvus row of product ``pid`` (vector and filter fields) under another id."""
    return dict(shop.milvus.get(COLLECTION, ids=[pid], output_fields=["*"], consistency_level="Strong")[0], id=new_id)


def test_replica_check_of_a_healthy_database_index_is_ok(shop):
    code, lines, err = run_check(shop, "--json")
    report = json.loads("\n".join(lines))
    assert code == 0 and report["summary"] == "ok" and "Traceback" not in err, err
    assert report["path"] == shop.location and report["counts"]["products"] == 8 and report["counts"]["vectors_held"] == 8
    assert report["counts"]["vectors_checked"] == 8 and report["counts"]["sampled"] == 2
    assert report["counts"]["lowest_cosine"] >= 0.99


def test_replica_check_finds_stray_and_missing_vectors_and_the_next_index_re_embeds_exactly_the_missing_one(shop, api):
    shop.milvus.insert(COLLECTION, [copy_of(shop, "1003", "ghost")])
    shop.milvus.delete(COLLECTION, ids=["1005"])
    code, lines, err = run_check(shop)
    assert code == 1 and "Traceback" not in err, err
    problems = [line for line in lines if line.startswith("problem")]
    assert len(problems) == 2 and lines[-1] == "2 problems (0 repaired)", lines
    assert lines[:2] == problems  # one line per finding, then the summary
    orphan = next(line for line in problems if "ghost" in line)
    missing = next(line for line in problems if "1005" in line)
    assert orphan.startswith(f"problem   {shop.vectors}: ") and missing.startswith(f"problem   {shop.vectors}: ")
    assert "--repair" in orphan and "stylelens index" in missing
    assert held(shop, ["ghost"]) == ["ghost"]  # checking alone changes nothing

    code, lines, err = run_check(shop, "--repair")
    assert code == 0 and lines[-1] == "2 problems (2 repaired)", (lines, err)
    assert all(line.startswith("repaired") for line in lines[:-1])
    assert held(shop, ["ghost", "1005"]) == []
    forgotten = [pid for pid, sha in sql(shop, "SELECT id, image_sha256 FROM products") if sha is None]
    assert forgotten == ["1005"]
    after = api()
    assert codes(after) == ["pending"] and after.findings[0].products == ["1005"] and after.exit_code == 1

    indexed = cli(shop.env, "index", shop.catalog, "--out", shop.location, "--weights", "random", "--workers", "0")
    assert indexed.returncode == 0 and "indexed 1," in indexed.stdout, indexed.stdout + indexed.stderr
    assert held(shop, ["1005"]) == ["1005"]
    assert api().summary() == "ok"


def test_replica_check_clears_a_batch_that_never_committed(shop, api):
    [(sha,)] = sql(shop, "SELECT image_sha256 FROM products WHERE id = '1002'")
    shop.milvus.insert(COLLECTION, [copy_of(shop, "1002", "stray")])
    sql(shop, "INSERT INTO meta VALUES ('milvus_pending', :v)", v=json.dumps(["stray", "1002"]))
    report = api()
    assert codes(report) == ["vectors_uncommitted"] and report.findings[0].products == ["stray", "1002"]
    assert api(repair=True).exit_code == 0
    assert held(shop, ["stray"]) == [] and sql(shop, "SELECT value FROM meta WHERE key = 'milvus_pending'") == []
    # 1002 was in the batch but committed: its vector cannot be trusted, so the next index re-embeds it.
    after = api()
    assert codes(after) == ["pending"] and after.findings[0].products == ["1002"]
    sql(shop, "UPDATE products SET image_sha256 = :s WHERE id = '1002'", s=sha)  # as if re-embedded
    assert api().summary() == "ok"


def test_replica_check_finds_a_product_held_twice_and_one_outside_the_catalog_rows(shop, api):
    [(sha,)] = sql(shop, "SELECT image_sha256 FROM products WHERE id = '1003'")
    [(row,)] = sql(shop, 'SELECT "row" FROM products WHERE id = \'1006\'')
    shop.milvus.insert(COLLECTION, [copy_of(shop, "1003", "1003")])  # Milvus keeps both: its ids are not unique
    sql(shop, 'UPDATE products SET "row" = 999 WHERE id = \'1006\'')
    try:
        report = api()
        found = {f.code: f.products for f in report.findings}
        assert found == {"catalog_rows": ["1006"], "vectors_duplicate": ["1003"]}, [f.line() for f in report.findings]
    finally:
        sql(shop, 'UPDATE products SET "row" = :r WHERE id = \'1006\'', r=row)
    repaired = api(repair=True)
    assert codes(repaired) == ["vectors_duplicate"] and repaired.exit_code == 0
    assert sql(shop, "SELECT image_sha256 FROM products WHERE id = '1003'") == [(None,)]
    # What the next stylelens index does for 1003: one upsert of its vector, its image hash recorded again.
    shop.milvus.upsert(COLLECTION, [copy_of(shop, "1003", "1003")])
    sql(shop, "UPDATE products SET image_sha256 = :s WHERE id = '1003'", s=sha)
    assert api().summary() == "ok"


def test_replica_check_finds_a_vector_that_is_not_unit_length(shop, api):
    original = copy_of(shop, "1004", "1004")
    shop.milvus.upsert(COLLECTION, [dict(original, vector=[2 * x for x in original["vector"]])])
    try:
        report = api()
        assert codes(report) == ["vectors_damaged"] and report.findings[0].products == ["1004"]
        assert report.findings[0].file == shop.vectors and "stylelens index" in report.findings[0].message
    finally:
        shop.milvus.upsert(COLLECTION, [original])
    assert api().summary() == "ok"


def test_replica_check_names_a_damaged_head_and_a_schema_it_does_not_know(shop, api):
    from stylelens.index import open_store
    from stylelens.settings import Settings

    store = open_store(shop.location, writable=True, settings=Settings.load(database_password=PASSWORD))
    try:
        store.write_artifact("head.npz", b"not a head at all")
        store.save_manifest(head={"artifact": "head.npz", "sha256": "0" * 64})
        code, lines, err = run_check(shop)
        assert code == 1 and "Traceback" not in err and lines[-1] == "1 problem (0 repaired)", (lines, err)
        assert lines[0].startswith("problem   head.npz: ") and "stylelens tune" in lines[0]
    finally:
        store.save_manifest(head=None)
        store.close()
    assert api().summary() == "ok"
    sql(shop, "UPDATE alembic_version SET version_num = '9999'")
    try:
        report = api()
        assert codes(report) == ["schema_unknown"] and "9999" in report.findings[0].message
    finally:
        sql(shop, "UPDATE alembic_version SET version_num = '0001'")


def test_replica_check_repair_waits_for_no_writer_and_errors_are_one_line(shop, postgres, api):
    from stylelens.index import open_store
    from stylelens.settings import Settings

    writer = open_store(shop.location, writable=True, settings=Settings.load(database_password=PASSWORD))
    try:
        code, lines, err = run_check(shop, "--repair")
        assert code == 2 and "another writer" in err and len(err.strip().splitlines()) == 1, err
        assert api().ok  # checking without repairing takes no lock
    finally:
        writer.close()
    wrong = cli(dict(shop.env, STYLELENS_DATABASE_PASSWORD="wrong"), "check", shop.location)
    assert wrong.returncode == 2 and "password authentication failed" in wrong.stderr and "Traceback" not in wrong.stderr
    down = cli(shop.env, "check", db_url(free_port(), "checked"))
    assert down.returncode == 2 and "Check that PostgreSQL is running" in down.stderr and "Traceback" not in down.stderr
    empty = cli(shop.env, "check", db_url(postgres, "postgres"))
    assert empty.returncode == 2 and "No stylelens index in" in empty.stderr and "Traceback" not in empty.stderr


def test_replica_a_damaged_manifest_in_the_database_is_one_line(shop):
    saved = sql(shop, "SELECT data FROM artifacts WHERE name = 'manifest.json'")[0][0]
    sql(shop, "UPDATE artifacts SET data = :d WHERE name = 'manifest.json'", d=b'{"format_version": 1, "embed')
    try:
        for command in ("check", "info"):
            done = cli(shop.env, command, shop.location)
            assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
            assert "manifest" in done.stderr + done.stdout and "not readable JSON" in done.stderr + done.stdout, done
    finally:
        sql(shop, "UPDATE artifacts SET data = :d WHERE name = 'manifest.json'", d=bytes(saved))
