"""Precision chosen by quality (models.precision + the OpenVINO runner's measurement), the serving
micro-batcher (models.batching), and a forced precision recorded in the manifest."""

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from stylelens.models.batching import MicroBatcher
from stylelens.models.precision import MIN_COSINE, catalog_probe, choose, describe, keeps_quality, quality
from stylelens.settings import Settings


def clustered(n_types=6, per_type=12, dim=32, seed=0):
    """Unit vectors in ``n_types`` tight clusters, and each one's type label."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_types, dim))
    vectors = np.repeat(centres, per_type, axis=0) + 0.35 * rng.standard_normal((n_types * per_type, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = [f"type{i}" for i in range(n_types) for _ in range(per_type)]
    return vectors.astype(np.float32), labels


def nudged(vectors, scale, seed=1):
    rng = np.random.default_rng(seed)
    out = vectors + scale * rng.standard_normal(vectors.shape).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


# ---- the rule -----------------------------------------------------------------------------------
def test_quality_of_fp32_against_itself_is_perfect():
    fp32, labels = clustered()
    q = quality(fp32, fp32, labels)
    assert q["cosine_min"] == pytest.approx(1.0) and q["recall_at_10"] == 1.0
    assert q["p_at_5"] > 0.9 and q["identify"] > 0.9  # tight clusters: the labels are recoverable
    assert keeps_quality(q, q) == (True, "keeps fp32's quality")


def test_the_rule_accepts_a_precision_that_keeps_quality():
    fp32, labels = clustered()
    reference = quality(fp32, fp32, labels)
    close = quality(nudged(fp32, 0.002), fp32, labels)  # rounding-sized differences
    assert close["cosine_min"] > 0.999 and close["recall_at_10"] >= 0.95
    assert keeps_quality(close, reference)[0]


def test_the_rule_rejects_each_kind_of_loss():
    fp32, labels = clustered()
    reference = quality(fp32, fp32, labels)
    broken = quality(nudged(fp32, 0.5), fp32, labels)  # a quantization that lost the picture
    passes, why = keeps_quality(broken, reference)
    assert not passes and "cosine" in why
    # Every image close (cosine) but the neighbours lost: recall decides.
    assert keeps_quality({"cosine_min": 0.999, "recall_at_10": 0.9}, reference) == (False, "recall@10 of fp32's top-5 0.9 < 0.95")
    # Close vectors and neighbours, but P@5 below 99 % of fp32's: the labels decide.
    slipping = {"cosine_min": 0.999, "recall_at_10": 0.99, "p_at_5": reference["p_at_5"] * 0.97, "identify": reference["identify"]}
    assert "p_at_5" in keeps_quality(slipping, reference)[1]
    # Without labels (random weights, a catalog without types), cosine and recall decide alone.
    assert keeps_quality({"cosine_min": MIN_COSINE, "recall_at_10": 0.95}, {"cosine_min": 1.0, "recall_at_10": 1.0})[0]


def test_choose_takes_the_fastest_that_passes():
    measured = {"fp32": {"img_s": 25, "passes": True}, "bf16": {"img_s": 50, "passes": True},
                "int8": {"img_s": 90, "passes": False}}
    assert choose(measured) == "bf16"
    assert choose({"int8": {"img_s": 90, "passes": False}}) == "fp32"


# ---- the measurement, through the OpenVINO runner's code with fake compiled models -------------
class FakeRunner:
    """What ``measure_precisions`` uses of an OpenVINORunner: ``_compile(precision)`` -> a model. Each
    model maps probe "pixels" (row indexes) to vectors; slower ones sleep, the int8 one is corrupted."""

    def __init__(self, fp32, broken_int8=True):
        self.emb = SimpleNamespace(settings=Settings.load(environ={}))
        self.core = SimpleNamespace(get_property=lambda *_: ["FP32", "BF16", "INT8"])
        self.fp32 = fp32
        self.broken_int8 = broken_int8

    def _compile(self, precision, calibration=None):
        vectors = {"fp32": self.fp32, "bf16": nudged(self.fp32, 0.002),
                   "int8": nudged(self.fp32, 0.5 if self.broken_int8 else 0.003, seed=2)}[precision]
        pause = {"fp32": 0.004, "bf16": 0.002, "int8": 0.0}[precision]

        def run(pixels):
            time.sleep(pause * len(pixels))
            return vectors[pixels[:, 0, 0, 0].astype(int)]

        return run


def probe_rows(n):
    pixels = np.zeros((n, 2, 2, 3), np.uint8)
    pixels[:, 0, 0, 0] = np.arange(n)
    return pixels


def test_measured_auto_rejects_a_corrupted_int8_and_takes_the_next_fastest():
    from stylelens.models.runtimes import measure_precisions

    fp32, labels = clustered()
    record, compiled = measure_precisions(FakeRunner(fp32), probe_rows(len(fp32)), labels, None, "catalog")
    c = record["candidates"]
    assert c["int8"]["img_s"] > c["bf16"]["img_s"] > c["fp32"]["img_s"]
    assert not c["int8"]["passes"] and "cosine" in c["int8"]["why"]
    assert c["bf16"]["passes"] and record["chosen"] == "bf16" and "bf16" in compiled
    assert record["probe"] == {"source": "catalog", "images": len(fp32), "labelled": True, "calibration": None}
    assert describe(record).startswith("bf16 (auto on 72 catalog images, labelled")

    healthy, _ = measure_precisions(FakeRunner(fp32, broken_int8=False), probe_rows(len(fp32)), labels, None, "catalog")
    assert healthy["chosen"] == "int8"


def test_a_candidate_that_cannot_run_is_recorded_and_skipped():
    from stylelens.models.runtimes import measure_precisions

    class NoNNCF(FakeRunner):
        def _compile(self, precision, calibration=None):
            if precision == "int8":
                raise RuntimeError("int8 precision needs the 'fast' extra: pip install 'stylelens[fast]'")
            return super()._compile(precision)

    fp32, _ = clustered()
    record, _ = measure_precisions(NoNNCF(fp32), probe_rows(len(fp32)), None, None, "generated")
    assert record["chosen"] == "bf16" and not record["probe"]["labelled"]
    assert record["candidates"]["int8"] == {"passes": False, "why": "unavailable: RuntimeError: int8 precision needs the 'fast' "
                                                                    "extra: pip install 'stylelens[fast]'"}


def test_catalog_probe_is_spread_disjoint_and_labelled():
    ids = [str(i) for i in range(1000, 3000)]
    catalog = SimpleNamespace(images={pid: f"/c/{pid}.jpg" for pid in ids},
                              record=lambda pid: {"type": "Tshirts" if int(pid) % 2 else "Shoes"})
    probe, labels, calib = catalog_probe(catalog, probe=50, calibration=30)
    assert len(probe) == len(labels) == 50 and len(calib) == 30 and not set(probe) & set(calib)
    assert probe[0] == "/c/1000.jpg" and probe[-1] > "/c/2900.jpg"  # across the whole catalog
    assert set(labels) == {"Tshirts", "Shoes"}
    unlabelled = SimpleNamespace(images=catalog.images, record=lambda pid: {"id": pid})
    assert catalog_probe(unlabelled, 10, 5)[1] is None


def test_f32_is_accepted_as_fp32():
    assert Settings.load(environ={"STYLELENS_PRECISION": "f32"}).precision == "fp32"
    assert Settings.load(environ={}, precision="int8").precision == "int8"


# ---- the micro-batcher -------------------------------------------------------------------------
class SlowEmbedder:
    """Vector = the pixels' first value, one-hot; each call takes a while, like a model."""

    def __init__(self, delay=0.02):
        self.delay, self.calls, self.lock = delay, [], threading.Lock()
        self.dim = 64

    def prepare(self, image):
        return np.full((2, 2, 3), int(image), np.uint8)

    def embed_prepared(self, pixels):
        with self.lock:  # a model call is not re-entrant: any overlap would show as a wrong vector
            self.calls.append(len(pixels))
            time.sleep(self.delay)
            out = np.zeros((len(pixels), self.dim), np.float32)
            out[np.arange(len(pixels)), pixels[:, 0, 0, 0]] = 1.0
            return out


def test_each_concurrent_caller_gets_its_own_vector_and_callers_share_batches():
    inner = SlowEmbedder()
    batcher = MicroBatcher(inner, max_batch=16, max_wait_ms=5)
    results, errors = {}, []
    start = threading.Barrier(32)

    def caller(i):
        try:
            start.wait()
            results[i] = batcher.embed([i % 60])[0] if i % 3 else batcher.embed_prepared(np.stack([inner.prepare(i % 60)] * 2))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    assert not errors
    for i, vectors in results.items():
        rows = vectors.reshape(-1, inner.dim)
        assert rows.shape[0] == (1 if i % 3 else 2)
        assert (rows.argmax(axis=1) == i % 60).all()  # its own image's vector, not a neighbour's
    assert sum(inner.calls) == sum(1 if i % 3 else 2 for i in range(32))
    assert len(inner.calls) < 32 and max(inner.calls) > 1  # overlapping callers were embedded together
    assert batcher.requests == 32 and batcher.batches == len(inner.calls)


def test_a_lone_caller_is_not_held_and_errors_reach_every_caller():
    inner = SlowEmbedder(delay=0.0)
    batcher = MicroBatcher(inner, max_wait_ms=2)
    assert batcher.embed_one(7).argmax() == 7 and inner.calls == [1]
    assert batcher.dim == 64  # everything else is the embedder's
    inner.embed_prepared = lambda pixels: (_ for _ in ()).throw(ValueError("model failed"))
    with pytest.raises(ValueError, match="model failed"):
        batcher.embed_one(3)
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.embed_one(3)


# ---- a forced precision, recorded in the manifest ---------------------------------------------
@pytest.mark.slow  # quantizes a small network with NNCF once (about 20 s)
def test_forced_int8_index_records_it_in_the_manifest(tmp_path, capsys, monkeypatch):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    pytest.importorskip("efficientnet_lite_pytorch")
    from conftest import write_catalog
    from stylelens.cli import main
    from stylelens.index.manifest import read_manifest

    monkeypatch.setenv("STYLELENS_CACHE_DIR", str(tmp_path / "cache"))
    write_catalog(tmp_path / "catalog", n=12, seed=3)
    args = ["index", str(tmp_path / "catalog"), "--out", str(tmp_path / "index"), "--workers", "0", "--no-progress",
            "--backbone", "efficientnet-lite0", "--weights", "random", "--runtime", "openvino", "--precision", "int8",
            "--input-size", "64"]
    assert main(args) == 0
    manifest = read_manifest(tmp_path / "index")
    assert manifest["precision"]["chosen"] == "int8" and manifest["precision"]["asked"] == "int8"
    assert manifest["runtime"] == "openvino-int8"
    assert manifest["embedder"]["preprocess"]["size"] == 64  # the input size is part of the fingerprint
    calibration = next((tmp_path / "cache" / "compiled").glob("openvino-efficientnet-lite0-int8-*/calibration.json"))
    assert '"source": "catalog"' in calibration.read_text()  # calibrated on the catalog's own images
    capsys.readouterr()
    assert main(["info", str(tmp_path / "index")]) == 0
    assert "precision  int8 (forced)" in capsys.readouterr().out
