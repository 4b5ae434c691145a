import json

import numpy as np
import pytest

from quality_catalog import add_near_duplicates, build, outfit_catalog, write_feed
from stylelens.query.diversity import near_duplicate_groups
from stylelens.query.stages.neighbours import neighbours
from stylelens.errors import InvalidArgumentError
from stylelens.quality.evaluate import evaluate, label_metrics, parse_ks, write_report


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalshop")
    rows = outfit_catalog(root / "catalog", n=48)
    add_near_duplicates(root / "catalog", rows, "o001", 2)
    index = build(root / "catalog", root / "index")
    return index, rows, root


def test_metrics_on_a_hand_example():
    rel = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 1]], bool)
    out = label_metrics(rel, np.array([2, 0, 5]), ks=(1, 3))
    assert out["queries"] == 2, "a query with nothing relevant in the index is left out"
    assert out["precision@1"] == pytest.approx(0.5)
    assert out["precision@3"] == pytest.approx((2 / 3 + 2 / 3) / 2, abs=1e-4)
    # AP@3: (1/1 + 2/3) / min(3, 2) and (1/2 + 2/3) / min(3, 5)
    assert out["mAP@3"] == pytest.approx(((1 + 2 / 3) / 2 + (1 / 2 + 2 / 3) / 3) / 2, abs=1e-4)


def test_parse_ks():
    assert parse_ks("10,5, 5") == (5, 10)
    for bad in ("", "a,b", "0", "500"):
        with pytest.raises(InvalidArgumentError):
            parse_ks(bad)


def test_leave_one_out_agrees_with_the_library_search(labelled):
    """The blocked matrix products give what Index.similar / identify give one product at a time."""
    index, rows, _ = labelled
    report = evaluate(index, ks=(3,), latency_samples=3)
    cols = index.store.columns
    precisions, hits = [], []
    for pid, row in rows.items():
        same = sum(1 for r in rows.values() if r["articleType"] == row["articleType"]) - 1
        result = index.similar(pid, k=3, include_out_of_stock=True)
        if same > 0:
            precisions.append(np.mean([rows[p]["articleType"] == row["articleType"] for p in result.ids]))
        vector = index.vector(pid)
        hits.append(index.identify_vector(vector, index.product(pid)["image_sha256"], [index.row(pid)]).type == row["articleType"])
    assert report["mode"] == "leave-one-out" and report["queries"] == len(rows) == len(cols.row_of)
    assert report["type"]["queries"] == len(precisions)
    assert report["type"]["precision@3"] == pytest.approx(np.mean(precisions), abs=1e-4)
    assert report["type"]["identify_accuracy"] == pytest.approx(np.mean(hits), abs=1e-4)
    chance = np.mean([(sum(r["articleType"] == row["articleType"] for r in rows.values()) - 1) / (len(rows) - 1)
                      for row in rows.values()])
    assert report["type"]["precision@3"] > 2 * chance, "shapes are visible to a real ImageNet network"
    assert {"precision@3", "mAP@3", "identify_accuracy"} <= set(report["gender"]) and "colour" in report
    # Without the identified-type boost: the bare neighbours, as the exact search ranks them.
    bare = []
    for pid, row in rows.items():
        vector = index.vector(pid)
        near = neighbours(index.snapshot(), vector, 3 + 3, sha=index.product(pid)["image_sha256"], exclude_rows=[index.row(pid)])
        _, others = near.others()
        near = [others[:3]]
        if sum(r["articleType"] == row["articleType"] for r in rows.values()) > 1:
            bare.append(np.mean([rows[cols.ids[r]]["articleType"] == row["articleType"] for r in near[0]]))
    assert report["type_nearest_neighbours"]["precision@3"] == pytest.approx(np.mean(bare), abs=1e-4)


def test_tables_duplicates_and_latency(labelled):
    index, rows, _ = labelled
    report = evaluate(index, ks=(5, 10), latency_samples=4)
    support = {}
    for r in rows.values():
        support[r["articleType"]] = support.get(r["articleType"], 0) + 1
    table = report["per_type"]
    assert [t["support"] for t in table] == sorted(support.values(), reverse=True)[:20]
    assert all(t["support"] == support[t["type"]] for t in table)
    for pair in report["confused_types"]:
        assert pair["type"] != pair["identified_as"] and 0 < pair["share"] <= 1
    assert report["near_duplicates"] == {**near_duplicate_groups(index.store.all_vectors(), index.store.columns.live, index.settings.duplicate_cosine)}
    assert report["near_duplicates"]["largest_group"] >= 3
    lat = report["latency_ms"]
    assert lat["queries"] == 4 and 0 < lat["p50"] <= lat["p95"] and lat["search_only_p50"] > 0
    assert "ann_recall@10" not in report, "exact search has nothing to recall against"


def test_sample_evaluates_a_seeded_subset(labelled):
    index, _, _ = labelled
    a = evaluate(index, sample=20, latency_samples=0, duplicates=False)
    b = evaluate(index, sample=20, latency_samples=0, duplicates=False)
    assert a["queries"] == 20 and a["type"] == b["type"] and a["latency_ms"] is None


def test_held_out_queries_with_a_bad_file(labelled, tmp_path, monkeypatch):
    import stylelens.quality.evaluate

    monkeypatch.setattr(stylelens.quality.evaluate, "QUERY_CHUNK", 5)  # several embedding chunks
    index, _, _ = labelled
    queries = outfit_catalog(tmp_path / "queries", n=12, seed=99)
    (tmp_path / "queries" / "images" / "broken.jpg").write_bytes(b"not a picture")
    queries["broken"] = dict(next(iter(queries.values())), id="broken")
    queries["newtype"] = dict(next(iter(queries.values())), id="newtype", articleType="Kimonos")
    (tmp_path / "queries" / "images" / "o000.jpg").rename(tmp_path / "queries" / "images" / "newtype.jpg")
    del queries["o000"]
    write_feed(tmp_path / "labels.csv", queries.values())
    report = evaluate(index, tmp_path / "queries" / "images", tmp_path / "labels.csv", ks=(5,), latency_samples=2)
    assert report["mode"] == "queries" and report["queries"] == 12 and report["queries_skipped"] == 1
    assert report["type"]["queries"] == 11, "a type the catalog lacks cannot be retrieved: left out"
    assert report["type"]["identify_accuracy"] < 1.0
    assert report["type"]["precision@5"] > 0.4


def test_report_files(labelled, tmp_path):
    index, _, _ = labelled
    report = evaluate(index, latency_samples=2)
    json_path, png_path = write_report(report, tmp_path / "out")
    assert json.loads(json_path.read_text())["type"] == report["type"]
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png_path.stat().st_size > 10_000


def test_ann_recall_when_an_ann_searcher_is_available(tmp_path):
    """Arrays in: 3,000 clustered vectors (FAISS needs more than a tiny catalog to train)."""
    pytest.importorskip("faiss")
    from quality_catalog import lite_embedder
    from stylelens.models.embedder import library_versions
    from stylelens.query import open_index
    from stylelens.index import create_store

    emb = lite_embedder()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, emb.dim))
    labels = rng.integers(0, 30, 3000)
    vectors = centres[labels] + 0.6 * rng.normal(size=(3000, emb.dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    store = create_store(tmp_path / "big", emb.fingerprint(), library_versions())
    store.add([{"id": f"v{i}", "type": f"T{t}"} for i, t in enumerate(labels)], vectors)
    store.set_manifest()
    store.close()
    ann_index = open_index(tmp_path / "big", embedder=emb, search="ann")
    assert ann_index.store.backend.name != "exact"
    report = evaluate(ann_index, ks=(5,), sample=300, latency_samples=0, duplicates=False)
    assert 0.5 <= report["ann_recall@10"] <= 1.0
    assert report["type"]["precision@5"] > 0.5


def test_cli_eval(labelled, tmp_path, capsys):
    from stylelens.cli import main

    index, _, root = labelled
    out = tmp_path / "report"
    assert main(["eval", str(root / "index"), "--k", "3,5", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "per articleType" in text and "near-duplicate groups" in text and "P@5" in text
    assert (out / "eval.json").is_file() and (out / "eval.png").is_file()
    assert main(["eval", str(root / "index"), "--queries", str(tmp_path)]) == 2
    assert "--queries and --labels go together" in capsys.readouterr().err
    assert main(["eval", str(root / "index"), "--k", "x"]) == 2
