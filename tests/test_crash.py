"""kill -9 in the middle of indexing loses at most the batch in flight; rerunning resumes cleanly."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import write_catalog
from stylelens.index.store import open_store

pytestmark = pytest.mark.slow


def committed_rows(index) -> int:
    try:
        with sqlite3.connect(index / "catalog.sqlite", timeout=1) as db:
            return int(db.execute("SELECT value FROM meta WHERE key='n_rows'").fetchone()[0])
    except (sqlite3.Error, TypeError):
        return 0


def index_command(catalog, index):
    return [sys.executable, "-m", "stylelens.cli", "index", str(catalog), "--out", str(index), "--backbone", "resnet50",
            "--weights", "random", "--runtime", "torch", "--batch-size", "8", "--workers", "0", "--no-progress"]


def test_sigkill_mid_run_then_resume_is_complete_and_duplicate_free(tmp_path):
    rows = write_catalog(tmp_path / "catalog", n=96, seed=4)
    index = tmp_path / "index"
    proc = subprocess.Popen(index_command(tmp_path / "catalog", index), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while committed_rows(index) < 24 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "indexing finished before it could be killed; use more images"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = committed_rows(index)
    assert 24 <= at_kill < len(rows)

    resumed = subprocess.run(index_command(tmp_path / "catalog", index), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"unchanged {at_kill}" in resumed.stdout  # nothing committed before the kill is embedded again
    assert f"indexed {len(rows) - at_kill}" in resumed.stdout

    store = open_store(index)
    assert len(store) == len(rows) and store.n_rows == len(rows)  # no duplicate or orphan rows
    ids = [i for i in store.columns.ids if i is not None]
    assert sorted(ids) == sorted(rows)
    assert store.backend.vectors_file.stat().st_size == len(rows) * store.dim * 4  # no orphan vectors either

    clean = tmp_path / "clean"
    subprocess.run(index_command(tmp_path / "catalog", clean), check=True, capture_output=True, timeout=600)
    reference = open_store(clean)
    for pid in rows:
        np.testing.assert_allclose(store.vectors([store.columns.row_of[pid]])[0],
                                   reference.vectors([reference.columns.row_of[pid]])[0], atol=1e-5)
