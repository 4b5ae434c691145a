import json

import numpy as np
import pytest

from stylelens.errors import IndexMismatchError, IndexNotFoundError, ProductNotFoundError
from stylelens.index import create_store, open_store, remove_products
from stylelens.index.manifest import check_compatible

FP = {"backbone": "toy", "weights": {"source": "random", "sha256": None, "detail": "seed=0"}, "pooling": "max",
      "preprocess": {"size": 8}, "dim": 4, "normalized": "l2"}


def unit(rng, n, d=4):
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def recs(ids, **fields):
    return [{"id": i, "name": f"p{i}", "type": "Shirts", "gender": "Men", "in_stock": True, **fields} for i in ids]


def test_vectors_are_float32_on_disk_and_memory_mapped(tmp_path):
    rng = np.random.default_rng(0)
    store = create_store(tmp_path / "ix", FP, {"numpy": np.__version__})
    vecs = unit(rng, 5)
    store.add(recs("abcde"), vecs)
    store.close()
    raw = np.fromfile(next((tmp_path / "ix").glob("vectors-*.f32")), dtype=np.float32).reshape(-1, 4)
    np.testing.assert_array_equal(raw, vecs)
    opened = open_store(tmp_path / "ix")
    assert isinstance(opened.backend.matrix, np.memmap)
    np.testing.assert_array_equal(opened.all_vectors(), vecs)
    assert opened.product("c")["name"] == "pc"
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert manifest["embedder"] == FP and manifest["format_version"] == 1
    assert not list((tmp_path / "ix").glob("*.pkl")) and not list((tmp_path / "ix").glob("*.pickle"))


def test_update_replaces_the_vector_and_delete_then_compact_keeps_the_rest(tmp_path):
    rng = np.random.default_rng(1)
    store = create_store(tmp_path / "ix", FP, {})
    vecs = unit(rng, 4)
    store.add(recs("abcd"), vecs)
    new_b = unit(rng, 1)
    store.add(recs("b", price=9.5), new_b)
    assert len(store) == 4 and store.n_rows == 5 and store.dead_rows() == 1
    assert store.delete(["a", "zz"]) == 1
    cols = store.columns
    assert cols.live.sum() == 3 and cols.price[cols.row_of["b"]] == 9.5
    assert store.compact() == 2
    assert store.n_rows == 3 and store.dead_rows() == 0
    cols = store.columns
    np.testing.assert_array_equal(store.vectors([cols.row_of["b"]])[0], new_b[0])
    np.testing.assert_array_equal(store.vectors([cols.row_of["d"]])[0], vecs[3])
    assert len(list((tmp_path / "ix").glob("vectors-*.f32"))) == 1
    with pytest.raises(ProductNotFoundError, match="No product with id 'a'"):
        store.product("a")


def test_rows_of_an_uncommitted_batch_are_cut_off_on_reopen(tmp_path):
    rng = np.random.default_rng(2)
    store = create_store(tmp_path / "ix", FP, {})
    store.add(recs("ab"), unit(rng, 2))
    with open(store.backend.vectors_file, "ab") as fh:  # a batch written but never committed (killed here)
        fh.write(unit(rng, 3).tobytes())
    store.close()
    again = open_store(tmp_path / "ix", writable=True)
    assert again.backend.vectors_file.stat().st_size == 2 * 4 * 4
    again.add(recs("c"), unit(rng, 1))
    assert again.n_rows == 3 and sorted(again.columns.row_of) == ["a", "b", "c"]


def test_a_different_embedder_is_refused_with_the_setting_named(tmp_path):
    create_store(tmp_path / "ix", FP, {}).close()
    for change, word in [({"pooling": "avg"}, "pooling"), ({"backbone": "other"}, "backbone"),
                         ({"weights": {"source": "file", "sha256": "ab" * 32, "detail": "x.pth"}}, "weights")]:
        with pytest.raises(IndexMismatchError, match=word):
            open_store(tmp_path / "ix", expect={**FP, **change})
    check_compatible(FP, dict(FP), tmp_path)  # same settings pass


def test_missing_or_foreign_folders_are_explained(tmp_path):
    with pytest.raises(IndexNotFoundError, match="stylelens index"):
        open_store(tmp_path / "nothing")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "thesis.docx").write_text("keep me")
    with pytest.raises(IndexNotFoundError, match="not empty"):
        create_store(tmp_path / "full", FP, {})
    assert (tmp_path / "full" / "thesis.docx").read_text() == "keep me"


def test_remove_products_reports_unknown_ids(tmp_path):
    rng = np.random.default_rng(3)
    store = create_store(tmp_path / "ix", FP, {})
    store.add(recs("abc"), unit(rng, 3))
    store.close()
    removed, missing = remove_products(tmp_path / "ix", ["a", "q"])
    assert removed == 1 and missing == ["q"]
    store = open_store(tmp_path / "ix")
    assert sorted(store.columns.row_of) == ["b", "c"] and store.n_rows == 2


def test_one_writer_at_a_time_and_the_second_is_told_who_holds_the_index(tmp_path):
    import os
    import subprocess
    import sys

    store = create_store(tmp_path / "ix", FP, {})
    store.add(recs("ab"), unit(np.random.default_rng(5), 2))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    remove = [sys.executable, "-m", "stylelens", "remove", str(tmp_path / "ix"), "a"]
    refused = subprocess.run(remove, capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode == 2 and refused.stdout == ""
    err = refused.stderr.strip()
    assert len(err.splitlines()) == 1 and f"pid {os.getpid()}" in err and "another writer" in err
    reader = open_store(tmp_path / "ix")  # readers never wait
    assert len(reader) == 2
    store.close()
    assert subprocess.run(remove, capture_output=True, text=True, env=env, timeout=120).returncode == 0
    assert len(open_store(tmp_path / "ix")) == 1


def test_a_killed_writer_leaves_no_lock_behind(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    create_store(tmp_path / "ix", FP, {}).close()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from stylelens.index import open_store; "
                               f"open_store({str(tmp_path / 'ix')!r}, writable=True); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout.readline().strip() == "held"
    from stylelens.errors import IndexBusyError

    with pytest.raises(IndexBusyError, match=f"pid {holder.pid}"):
        open_store(tmp_path / "ix", writable=True)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    open_store(tmp_path / "ix", writable=True).close()  # the lock died with its process


@pytest.mark.parametrize("damage", ["truncated vectors", "missing vectors", "list manifest", "empty manifest",
                                    "manifest without embedder", "garbage catalog", "empty meta"])
def test_a_damaged_index_is_named_in_one_line_never_answered_from(tmp_path, damage):
    import sqlite3

    from stylelens.errors import IndexDamagedError

    store = create_store(tmp_path / "ix", FP, {})
    store.add(recs("abcde"), unit(np.random.default_rng(4), 5))
    store.close()
    folder = tmp_path / "ix"
    vectors = next(folder.glob("vectors-*.f32"))
    if damage == "truncated vectors":
        vectors.write_bytes(vectors.read_bytes()[: 2 * 4 * 4])
    elif damage == "missing vectors":
        vectors.unlink()
    elif damage == "list manifest":
        (folder / "manifest.json").write_text("[1, 2]")
    elif damage == "empty manifest":
        (folder / "manifest.json").write_text("")
    elif damage == "manifest without embedder":
        (folder / "manifest.json").write_text(json.dumps({"format_version": 1}))
    elif damage == "garbage catalog":
        (folder / "catalog.sqlite").write_bytes(b"not a database at all" * 100)
        for extra in folder.glob("catalog.sqlite-*"):
            extra.unlink()
    elif damage == "empty meta":
        db = sqlite3.connect(folder / "catalog.sqlite")
        db.execute("DELETE FROM meta")
        db.commit()
        db.close()
    for writable in (False, True):
        with pytest.raises(IndexDamagedError) as caught:
            opened = open_store(folder, writable=writable)
            opened.search(unit(np.random.default_rng(1), 1), 3)  # a reader finds a damaged vectors file on use
        message = caught.value.message
        assert "\n" not in message and str(folder) in message and "Rebuild" in message


def test_a_read_only_index_folder_is_searched_and_served(tmp_path):
    """A read-only mount of an index (a shared volume, a snapshot) answers as the writable folder does."""
    import subprocess

    store = create_store(tmp_path / "ix", FP, {})
    vecs = unit(np.random.default_rng(8), 5)
    store.add(recs("abcde"), vecs)
    store.close()
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(tmp_path / "ix"), str(ro)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here ({mounted.stderr.decode().strip()[:80]}); needs root")
    try:
        assert subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], capture_output=True).returncode == 0
        with pytest.raises(OSError):
            (ro / "probe").write_text("x")
        reader = open_store(ro)
        scores, rows = reader.search(vecs[2:3], 2)
        assert len(reader) == 5 and reader.columns.ids[rows[0][0]] == "c" and scores[0][0] == pytest.approx(1.0)
        assert reader.product("e")["name"] == "pe"
        reader.close()
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
