"""stylelens check [--repair]: every kind of damage is named in one line, the safe ones are repaired, and
the next `stylelens index` re-embeds exactly the products whose vectors could not be trusted."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest
from conftest import write_catalog

from stylelens.cli import main
from stylelens.errors import IndexBusyError, IndexNotFoundError, InvalidArgumentError
from stylelens.index import create_store, open_store
from stylelens.index.check import check
from stylelens.index.lock import WriterLock

FP = {"backbone": "toy", "weights": {"source": "random", "sha256": None, "detail": "seed=0"}, "pooling": "max",
      "preprocess": {"size": 8}, "dim": 4, "normalized": "l2"}
IDS = ["a", "b", "c", "d", "e"]


def unit(n, d=4, seed=0):
    v = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def toy(tmp_path):
    """A 5-product index with a 4-dimensional toy embedder: structure only (no images to re-embed)."""
    store = create_store(tmp_path / "ix", FP, {})
    store.add([{"id": i, "name": f"p{i}", "image_sha256": f"hash-{i}"} for i in IDS], unit(5))
    store.close()
    return tmp_path / "ix"


def vectors_of(folder):
    return next(folder.glob("vectors-*.f32"))


def catalog_pairs(folder, sql: str) -> dict:
    """Two-column rows of the index's catalog.sqlite as a dict, read without the library."""
    db = sqlite3.connect(folder / "catalog.sqlite")
    try:
        return dict(db.execute(sql))
    finally:
        db.close()


def hashes(folder):
    return catalog_pairs(folder, "SELECT id, image_sha256 FROM products")


def codes(report):
    return [f.code for f in report.findings]


def one_line_each(report):
    for f in report.findings:
        assert "\n" not in f.message and f.file in f.line()


# ---- structure: a toy index ------------------------------------------------------------------

def test_a_clean_index_is_ok(toy):
    report = check(toy)
    assert report.summary() == "ok" and report.ok and report.exit_code == 0
    assert report.counts["vectors_checked"] == 5
    assert any("re-embed check skipped" in n for n in report.notes)


def test_an_uncommitted_tail_is_cut_off(toy):
    f = vectors_of(toy)
    size = f.stat().st_size
    with open(f, "ab") as fh:
        fh.write(unit(2, seed=9).tobytes())
    report = check(toy)
    assert codes(report) == ["vectors_tail"] and report.exit_code == 1 and report.findings[0].repairable
    assert f.stat().st_size == size + 32  # checking alone changes nothing
    one_line_each(report)
    repaired = check(toy, repair=True)
    assert repaired.summary() == "1 problem (1 repaired)" and repaired.exit_code == 0
    assert f.stat().st_size == size and check(toy).summary() == "ok"


def test_stale_generations_and_temp_files_are_deleted(toy):
    (toy / "vectors-7.f32").write_bytes(b"\0" * 16)
    (toy / "manifest.json.4242.tmp").write_text("{")
    report = check(toy)
    assert sorted(codes(report)) == ["stale_generation", "temp_file"]
    assert {f.file for f in report.findings} == {"vectors-7.f32", "manifest.json.4242.tmp"}
    assert check(toy, repair=True).exit_code == 0
    assert not (toy / "vectors-7.f32").exists() and not (toy / "manifest.json.4242.tmp").exists()
    assert check(toy).ok


@pytest.mark.parametrize("value", [0.0, np.nan])
def test_zeroed_or_nan_rows_are_damaged_and_repair_forgets_exactly_their_hashes(toy, value):
    m = np.memmap(vectors_of(toy), dtype=np.float32, mode="r+", shape=(5, 4))
    m[[1, 3]] = value
    m.flush()
    del m
    report = check(toy)
    assert codes(report) == ["vectors_damaged"] and sorted(report.findings[0].products) == ["b", "d"]
    assert "vectors-0.f32" in report.findings[0].line()
    repaired = check(toy, repair=True)
    assert repaired.exit_code == 0 and repaired.findings[0].repaired
    assert [pid for pid, sha in hashes(toy).items() if sha is None] == ["b", "d"]
    after = check(toy)  # until `stylelens index` re-embeds them, the check says so
    assert codes(after) == ["pending"] and after.exit_code == 1 and "stylelens index" in after.findings[0].message


def test_truncated_vectors_are_padded_and_the_lost_products_forgotten(toy):
    f = vectors_of(toy)
    f.write_bytes(f.read_bytes()[: 3 * 16 + 5])  # 3 whole rows and a torn one
    report = check(toy)
    assert codes(report) == ["vectors_short"] and sorted(report.findings[0].products) == ["d", "e"]
    assert "holds 3 of the 5" in report.findings[0].message
    with pytest.raises(Exception, match="stylelens check .* --repair"):
        open_store(toy).search(unit(1), 3)
    assert check(toy, repair=True).exit_code == 0
    assert f.stat().st_size == 5 * 16
    assert sorted(pid for pid, sha in hashes(toy).items() if sha is None) == ["d", "e"]
    open_store(toy, writable=True).close()  # a writer opens it again


def test_garbage_catalog_is_found_and_not_repairable(toy):
    (toy / "catalog.sqlite").write_bytes(b"not a database at all" * 100)
    for extra in toy.glob("catalog.sqlite-*"):
        extra.unlink()
    report = check(toy, repair=True)
    assert "catalog_unreadable" in codes(report) and report.exit_code == 1
    assert "rebuild the index into a new folder" in report.findings[0].message
    one_line_each(report)


def test_rows_outside_the_vectors_are_removed_by_repair(toy):
    db = sqlite3.connect(toy / "catalog.sqlite")
    db.execute("UPDATE products SET row=99 WHERE id='c'")
    db.commit()
    db.close()
    with pytest.raises(Exception, match="stylelens check .* --repair"):
        open_store(toy).columns
    report = check(toy)
    assert codes(report) == ["catalog_rows"] and report.findings[0].products == ["c"]
    assert check(toy, repair=True).exit_code == 0
    assert sorted(hashes(toy)) == ["a", "b", "d", "e"] and check(toy).ok
    assert len(open_store(toy)) == 4


@pytest.mark.parametrize("text", ["{", "[1, 2]", json.dumps({"format_version": 1})])
def test_a_broken_manifest_without_images_cannot_be_rebuilt_and_says_rebuild(toy, text):
    (toy / "manifest.json").write_text(text)
    with pytest.raises(Exception, match="stylelens check .* --repair"):
        open_store(toy)
    report = check(toy, repair=True)
    assert codes(report) == ["manifest_damaged"] and report.exit_code == 1
    assert "cannot be inferred" in report.findings[0].message and "stylelens index CATALOG --out NEW_FOLDER" in report.findings[0].message


def test_a_tuned_head_that_is_missing_damaged_or_not_the_one_tune_wrote_is_named(toy):
    from stylelens.models.head import Head, sha256

    manifest = json.loads((toy / "manifest.json").read_text())
    head = Head(np.zeros(4, np.float32), np.eye(4, dtype=np.float32), np.ones((4, 3), np.float32), np.zeros(3, np.float32),
                np.ones((3, 2), np.float32), np.zeros(2, np.float32), 0.0)
    manifest["head"] = {"artifact": "head.npz", "sha256": sha256(head.to_bytes())}
    (toy / "manifest.json").write_text(json.dumps(manifest))
    report = check(toy)
    assert codes(report) == ["head_missing"] and "stylelens tune" in report.findings[0].message
    (toy / "head.npz").write_bytes(b"garbage")
    report = check(toy, repair=True)  # nothing to repair: tune trains it again
    assert codes(report) == ["head_damaged"] and report.exit_code == 1 and report.findings[0].line().startswith("problem   head.npz: ")
    other = Head(head.mean, head.whiten, head.w1, head.b1, head.w2, np.ones(2, np.float32), 0.0)
    (toy / "head.npz").write_bytes(other.to_bytes())  # loads, but is not the head the manifest records
    report = check(toy)
    assert codes(report) == ["head_damaged"] and "sha256" in report.findings[0].message
    (toy / "head.npz").write_bytes(head.to_bytes())
    assert check(toy).summary() == "ok"


def test_a_held_writer_lock_makes_repair_refuse_in_one_line(toy, capsys):
    lock = WriterLock(toy).acquire()
    try:
        with pytest.raises(IndexBusyError):
            check(toy, repair=True)
        assert main(["check", str(toy), "--repair"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "another writer" in err
        assert check(toy).ok  # checking without repairing takes no lock
    finally:
        lock.release()


def test_cli_exit_codes_and_json(toy, tmp_path, capsys):
    assert main(["check", str(toy)]) == 0 and capsys.readouterr().out.strip().endswith("ok")
    (toy / "vectors-3.f32").write_bytes(b"")
    assert main(["check", str(toy)]) == 1
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "1 problem (0 repaired)" and "vectors-3.f32" in out
    assert main(["check", str(toy), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["problems"] == 1 and data["findings"][0]["code"] == "stale_generation" and not data["ok"]
    assert main(["check", str(toy), "--repair"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "1 problem (1 repaired)"
    assert main(["check", str(tmp_path / "nowhere")]) == 2
    assert main(["check", str(toy), "--sample", "-1"]) == 2
    with pytest.raises(SystemExit) as usage:
        main(["check"])
    assert usage.value.code == 2
    with pytest.raises(IndexNotFoundError):
        check(tmp_path / "nowhere")
    with pytest.raises(InvalidArgumentError):
        check(toy, sample=-1)


# ---- a real index: re-embedding catches vectors at the wrong rows -----------------------------

@pytest.fixture(scope="module")
def real(tmp_path_factory, random_embedder):
    from stylelens import build_index

    root = tmp_path_factory.mktemp("check")
    write_catalog(root / "catalog", n=16)
    build_index(root / "catalog", root / "index", embedder=random_embedder, workers=0, progress=False)
    return root


@pytest.fixture
def index(real, tmp_path):
    """A private copy of the real index (its catalog stays where the index says it is)."""
    shutil.copytree(real / "index", tmp_path / "index")
    return tmp_path / "index"


def reindex(real, index, capsys) -> str:
    capsys.readouterr()
    assert main(["index", str(real / "catalog"), "--out", str(index), "--no-progress", "--runtime", "torch"]) == 0
    return capsys.readouterr().out


def rows_of(index):
    return catalog_pairs(index, "SELECT row, id FROM products")


def test_a_clean_real_index_re_embeds_its_sample_and_says_ok(index, random_embedder):
    report = check(index, embedder=random_embedder)
    assert report.summary() == "ok"
    assert report.counts["sampled"] == 16 and report.counts["lowest_cosine"] >= 0.99


def test_shuffled_vectors_are_caught_and_only_those_products_re_embedded(real, index, random_embedder, capsys):
    m = np.memmap(vectors_of(index), dtype=np.float32, mode="r+").reshape(-1, 2048)
    m[[2, 5, 9]] = m[[5, 9, 2]]
    m.flush()
    del m
    rows = rows_of(index)
    report = check(index, embedder=random_embedder)
    assert codes(report) == ["vectors_mismatch"]  # unit length, so only the re-embedding sees it
    assert sorted(report.findings[0].products) == sorted(rows[r] for r in (2, 5, 9))
    one_line_each(report)
    assert check(index, repair=True, embedder=random_embedder).exit_code == 0
    assert "indexed 3," in reindex(real, index, capsys)
    assert check(index, embedder=random_embedder).summary() == "ok"


def test_a_small_sample_that_finds_a_shuffled_file_forgets_every_product(index, random_embedder):
    m = np.memmap(vectors_of(index), dtype=np.float32, mode="r+").reshape(-1, 2048)
    m[:] = np.roll(np.array(m), 1, axis=0)
    m.flush()
    del m
    report = check(index, repair=True, sample=4, embedder=random_embedder)
    assert codes(report) == ["vectors_mismatch"] and "whole file" in report.findings[0].message
    assert all(sha is None for sha in hashes(index).values())


def test_zeroed_rows_are_re_embedded_by_the_next_index(real, index, random_embedder, capsys):
    m = np.memmap(vectors_of(index), dtype=np.float32, mode="r+").reshape(-1, 2048)
    m[[0, 7]] = 0
    m.flush()
    del m
    capsys.readouterr()
    assert main(["check", str(index), "--repair", "--runtime", "torch"]) == 0
    assert "2 problems (2 repaired)" not in capsys.readouterr().out  # one finding: the two damaged rows
    assert "indexed 2," in reindex(real, index, capsys)
    assert check(index, embedder=random_embedder).summary() == "ok"


def test_truncated_real_vectors_are_re_embedded_by_the_next_index(real, index, random_embedder, capsys):
    f = vectors_of(index)
    f.write_bytes(f.read_bytes()[: 13 * 2048 * 4])
    report = check(index, repair=True, embedder=random_embedder)
    assert codes(report) == ["vectors_short"] and report.exit_code == 0
    assert "indexed 3," in reindex(real, index, capsys)
    assert check(index, embedder=random_embedder).summary() == "ok"


def test_a_broken_manifest_is_rebuilt_when_the_embedder_can_be_inferred(index, random_embedder):
    from stylelens import open_index

    before = json.loads((index / "manifest.json").read_text())
    (index / "manifest.json").write_text("{ broken")
    report = check(index)
    assert codes(report) == ["manifest_damaged"] and report.exit_code == 1
    repaired = check(index, repair=True, embedder=random_embedder)
    assert repaired.exit_code == 0 and "resnet50" in repaired.findings[0].done
    assert json.loads((index / "manifest.json").read_text())["embedder"] == before["embedder"]
    assert len(open_index(index, embedder=random_embedder)) == 16
    assert check(index, embedder=random_embedder).summary() == "ok"


def test_a_check_without_the_weights_skips_the_re_embedding_with_a_note(index):
    manifest = json.loads((index / "manifest.json").read_text())
    manifest["embedder"]["weights"] = {"source": "file", "sha256": None, "detail": str(index / "gone.pth")}
    (index / "manifest.json").write_text(json.dumps(manifest))
    report = check(index)
    assert report.ok and any("re-embed check skipped" in n for n in report.notes)
