"""The Ray runner on a real local Ray cluster: same vectors, skips and counts as the local runner; resumable."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing

import numpy as np
import pytest

from stylelens.build import build_index
from stylelens.errors import InvalidArgumentError
from stylelens.index.store import open_store

pytestmark = pytest.mark.scale
ray = pytest.importorskip("ray")

BAD = {"scan.jpg": b"Order 1234: two shirts\n" * 10, "cut.png": b"\x89PNG\r\n\x1a\n" + b"\0" * 40}
N = 32


@pytest.fixture(scope="module")
def ray_cluster():
    """A local two-CPU Ray cluster with a small object store, shut down after this module."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=150 * 1024**2, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def lite0():
    pytest.importorskip("efficientnet_lite_pytorch")
    from stylelens.models import Embedder

    return Embedder("efficientnet-lite0", weights="random", runtime="torch", batch_size=8)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, lite0):
    """N products with images and feed, two files that are not images, and the local runner's index of them."""
    from conftest import write_catalog

    root = tmp_path_factory.mktemp("raycat")
    write_catalog(root / "catalog", n=N)
    for name, data in BAD.items():
        (root / "catalog" / "images" / name).write_bytes(data)
    report = build_index(root / "catalog", root / "local", embedder=lite0, workers=0, progress=False)
    assert (report.indexed, report.skipped) == (N, 2)
    return root, report


def vectors_by_id(path) -> dict[str, np.ndarray]:
    store = open_store(path)
    cols = store.columns
    rows = sorted(cols.row_of.values())
    vectors = np.asarray(store.vectors(rows))
    out = {cols.ids[r]: vectors[i] for i, r in enumerate(rows)}
    store.close()
    return out


def test_ray_runner_gives_the_local_runners_vectors_skips_and_counts(ray_cluster, catalog, lite0, tmp_path):
    root, local = catalog
    report = build_index(root / "catalog", tmp_path / "ray", embedder=lite0, runner="ray", actors=1, progress=False)
    assert (report.indexed, report.skipped, report.unchanged, report.removed) == (N, 2, 0, 0)
    assert sorted(report.errors) == sorted(local.errors)
    assert (tmp_path / "ray" / "errors.csv").read_text().count("\n") == 3
    expected, got = vectors_by_id(root / "local"), vectors_by_id(tmp_path / "ray")
    assert sorted(got) == sorted(expected)
    for pid in expected:
        np.testing.assert_array_equal(got[pid], expected[pid])  # bit-identical: the same network on the same pixels
    store = open_store(tmp_path / "ray")
    assert store.manifest["last_build"]["runner"] == "ray" and store.manifest["runtime"] == "torch"
    store.close()

    # Incremental, as locally: nothing new -> nothing embedded; one changed image, one product gone.
    again = build_index(root / "catalog", tmp_path / "ray", embedder=lite0, runner="ray", progress=False)
    assert (again.indexed, again.unchanged, again.skipped) == (0, N, 2)
    from imagegen import make_image

    changed = tmp_path / "catalog2"
    subprocess.run(["cp", "-r", str(root / "catalog"), str(changed)], check=True)
    make_image(changed / "images" / "1001.jpg", color=(250, 200, 0), pattern_seed=99)
    (changed / "images" / "1002.jpg").unlink()
    third = build_index(changed, tmp_path / "ray", embedder=lite0, runner="ray", progress=False, replace=True)
    assert (third.indexed, third.unchanged, third.removed, third.skipped) == (1, N - 2, 1, 2)
    after = vectors_by_id(tmp_path / "ray")
    assert "1002" not in after and not np.array_equal(after["1001"], expected["1001"])


def test_a_killed_ray_run_resumes_without_redoing_or_duplicating_work(ray_cluster, catalog, lite0, tmp_path):
    """The CLI's Ray run into Milvus Lite is killed after two committed batches; the rerun finishes the rest."""
    root, _ = catalog
    out, location = tmp_path / "ix", f"milvus-lite://{tmp_path / 'vectors.db'}"
    # Small commits (8) and a pause after each give the test a window to kill the run between batches.
    script = textwrap.dedent(f"""
        import sys, time
        from stylelens.build import plan
        from stylelens.cli import main
        commit = plan.Build.commit
        def slow_commit(self, items, vectors):
            commit(self, items, vectors)
            time.sleep(1.0)
        plan.Build.commit = slow_commit
        sys.exit(main(["index", {str(root / "catalog")!r}, "--out", {str(out)!r}, "--runner", "ray",
                       "--ray-address", {ray_cluster!r}, "--actors", "1", "--store", {location!r},
                       "--backbone", "efficientnet-lite0", "--weights", "random", "--runtime", "torch", "--batch-size", "8",
                       "--no-progress"]))
    """)
    child = subprocess.Popen([sys.executable, "-c", script])
    committed = 0
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and child.poll() is None:
            try:
                with closing(sqlite3.connect(f"file:{out / 'catalog.sqlite'}?mode=ro", uri=True, timeout=5)) as db:
                    committed = db.execute("SELECT COUNT(*) FROM products").fetchone()[0]
            except sqlite3.OperationalError:  # not created yet
                committed = 0
            else:
                if committed >= 16:
                    os.kill(child.pid, signal.SIGKILL)
                    break
            time.sleep(0.1)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL, "the run ended before it could be interrupted"
    assert 16 <= committed < N

    report = build_index(root / "catalog", out, embedder=lite0, runner="ray", progress=False)  # same --store, kept
    assert report.unchanged == committed and report.indexed == N - committed and report.skipped == 2
    store = open_store(out)
    assert len(store) == N and store.n_rows == N  # each image embedded and stored exactly once
    assert store.backend.milvus.count() == N
    store.close()
    expected, got = vectors_by_id(root / "local"), vectors_by_id(out)
    assert sorted(got) == sorted(expected)
    for pid in expected:
        np.testing.assert_array_equal(got[pid], expected[pid])


def test_ray_errors_say_what_to_do(ray_cluster, catalog, lite0, tmp_path):
    root, _ = catalog
    with pytest.raises(InvalidArgumentError, match="needs GPUs in the Ray cluster"):
        build_index(root / "catalog", tmp_path / "gpu", embedder=lite0, runner="ray", device="cuda", progress=False)
    with pytest.raises(InvalidArgumentError, match="runner .*spark"):
        build_index(root / "catalog", tmp_path / "x", embedder=lite0, runner="spark", progress=False)
    # Nothing listens at the address: a fast, clear error instead of Ray's minutes of retries (a fresh process).
    cli = subprocess.run([sys.executable, "-c", "import sys; from stylelens.cli import main; sys.exit(main())", "index", str(root / "catalog"), "--out", str(tmp_path / "y"),
                          "--runner", "ray", "--ray-address", "127.0.0.1:1", "--backbone", "efficientnet-lite0",
                          "--weights", "random"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    assert "Could not connect to the Ray cluster at '127.0.0.1:1'" in cli.stderr and "ray start --head" in cli.stderr
