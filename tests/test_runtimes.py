"""Fast CPU runtimes (OpenVINO, ONNX Runtime): same input, same unit vectors as torch fp32, cached once."""

import json
import os
import threading
import warnings

import numpy as np
import pytest

from imagegen import make_image
from stylelens import Embedder, InvalidArgumentError, MissingExtraError
from stylelens import embedder as embedder_module
from stylelens.runtimes import PARITY_MIN_COSINE, parity, probe_pixels

pytest.importorskip("openvino")


@pytest.fixture(scope="module", autouse=True)
def compiled_cache(tmp_path_factory):
    """One cache folder for the module: each model is converted once here, never in ~/.cache."""
    folder = tmp_path_factory.mktemp("stylelens-cache")
    old = os.environ.get("STYLELENS_CACHE_DIR")
    os.environ["STYLELENS_CACHE_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("STYLELENS_CACHE_DIR", None)
    else:
        os.environ["STYLELENS_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def product_pixels(tmp_path_factory):
    """40 generated product photos (three shapes, four colours), prepared like catalog images."""
    folder = tmp_path_factory.mktemp("products")
    colours = [(200, 30, 40), (30, 60, 200), (40, 160, 60), (20, 20, 20)]
    paths = [make_image(folder / f"{i}.jpg", color=colours[i % 4], pattern_seed=i) for i in range(40)]
    lite = Embedder("efficientnet-lite0", weights="imagenet", runtime="torch")
    return np.stack([lite.prepare(p) for p in paths])


@pytest.fixture(scope="module")
def lite_torch():
    return Embedder("efficientnet-lite0", weights="imagenet", runtime="torch", batch_size=16)


@pytest.fixture(scope="module")
def lite_f32():
    return Embedder("efficientnet-lite0", weights="imagenet", runtime="openvino", batch_size=16)


def test_parity_measures_cosine_and_top5():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((30, 16)).astype(np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    same = parity(ref.copy(), ref, queries=30)
    assert same["passes"] and same["cosine_min"] == pytest.approx(1.0) and same["top5_identical"] == 1.0
    noisy = ref + rng.standard_normal(ref.shape).astype(np.float32) * 0.2
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    report = parity(noisy, ref, queries=30)
    assert not report["passes"] and report["cosine_min"] < PARITY_MIN_COSINE and report["top5_identical"] < 1.0


def test_openvino_matches_torch_on_real_weights(lite_torch, lite_f32, product_pixels):
    """EfficientNet-Lite0 with its ImageNet weights: the meaningful model for parity."""
    assert lite_f32.runtime_name.startswith("openvino")
    report = parity(lite_f32.embed_prepared(product_pixels), lite_torch.embed_prepared(product_pixels), queries=40)
    assert report["passes"], report
    assert report["cosine_min"] >= 0.9999


def test_any_batch_size_and_threads_give_the_same_vectors(lite_f32, product_pixels):
    whole = lite_f32.embed_prepared(product_pixels[:8])
    ones = np.concatenate([lite_f32.embed_prepared(product_pixels[i : i + 1]) for i in range(8)])
    np.testing.assert_allclose(ones, whole, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-5)
    assert whole.dtype == np.float32 and whole.shape == (8, 1280)

    results = {}

    def worker(i):
        results[i] = lite_f32.embed_prepared(product_pixels[i : i + 1])[0]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_allclose(np.stack([results[i] for i in range(8)]), whole, atol=1e-5)


def test_converted_model_is_cached_and_keyed_by_fingerprint(compiled_cache, lite_f32):
    folders = sorted((compiled_cache / "compiled").glob("openvino-efficientnet-lite0-fp32-*"))
    assert len(folders) == 1
    xml = folders[0] / "model.xml"
    stamp = xml.stat().st_mtime_ns
    again = Embedder("efficientnet-lite0", weights="imagenet", runtime="openvino")
    assert xml.stat().st_mtime_ns == stamp  # reused, not converted again
    Embedder("efficientnet-lite0", weights="imagenet", pooling="avg", runtime="openvino")
    assert len(list((compiled_cache / "compiled").glob("openvino-efficientnet-lite0-fp32-*"))) == 2
    assert again.runtime_name == lite_f32.runtime_name


def test_auto_precision_uses_bf16_only_when_it_keeps_parity(compiled_cache, lite_f32):
    """Measured on this machine: bf16 EfficientNet-Lite0 drifts below 0.999 cosine, so auto stays f32.
    On a CPU without native bf16 auto is f32 without checking."""
    import openvino as ov

    auto = Embedder("efficientnet-lite0", weights="imagenet", runtime="auto")
    has_bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    check_file = auto._run.model_path.parent / "bf16-check.json"
    if not has_bf16:
        assert auto.runtime_name == "openvino-f32" and not check_file.exists()
        return
    check = json.loads(check_file.read_text())
    assert check["images"] >= 32 and 0.9 < check["cosine_min"] <= 1.0
    assert auto.runtime_name == ("openvino-bf16" if check["passes"] else "openvino-f32")
    stamp = check_file.stat().st_mtime_ns
    Embedder("efficientnet-lite0", weights="imagenet", runtime="auto")
    assert check_file.stat().st_mtime_ns == stamp  # checked once per model


def test_explicit_bf16_is_close_but_reported_as_bf16(lite_torch, product_pixels, monkeypatch):
    monkeypatch.setenv("STYLELENS_PRECISION", "bf16")
    bf16 = Embedder("efficientnet-lite0", weights="imagenet", runtime="openvino")
    assert bf16.runtime_name == "openvino-bf16"
    report = parity(bf16.embed_prepared(product_pixels), lite_torch.embed_prepared(product_pixels), queries=40)
    assert report["cosine_min"] > 0.98  # close, not at the parity bar (see the benchmark's parity table)


def test_unknown_precision_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("STYLELENS_PRECISION", "fp8")
    with pytest.raises(InvalidArgumentError, match="Unknown precision 'fp8'"):
        Embedder("efficientnet-lite0", weights="imagenet", runtime="openvino")


def test_onnx_runtime_matches_torch(lite_torch, product_pixels):
    pytest.importorskip("onnxruntime")
    onnx = Embedder("efficientnet-lite0", weights="imagenet", runtime="onnx")
    assert onnx.runtime_name == "onnx"
    report = parity(onnx.embed_prepared(product_pixels), lite_torch.embed_prepared(product_pixels), queries=40)
    assert report["passes"], report


def test_auto_falls_back_when_a_fast_runtime_fails(monkeypatch):
    def broken(emb):
        raise RuntimeError("converter crashed")

    monkeypatch.setitem(embedder_module.RUNTIMES, "openvino", broken)
    monkeypatch.setattr(embedder_module, "AUTO_ORDER", ["openvino", "torch"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb = Embedder("efficientnet-lite0", weights="imagenet", runtime="auto")
    assert emb.runtime_name == "torch"
    assert any("converter crashed" in str(w.message) for w in caught)


def test_missing_extra_is_named_and_auto_skips_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # as if the 'fast' extra were not installed
    with pytest.raises(MissingExtraError, match="fast"):
        Embedder("efficientnet-lite0", weights="imagenet", runtime="openvino")
    monkeypatch.setattr(embedder_module, "AUTO_ORDER", ["openvino", "torch"])
    assert Embedder("efficientnet-lite0", weights="imagenet", runtime="auto").runtime_name == "torch"


def test_probe_pixels_are_deterministic_product_like_inputs():
    pre = embedder_module.BACKBONES["resnet50"].preprocess
    a, b = probe_pixels(pre, n=6), probe_pixels(pre, n=6)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (6, 224, 224, 3) and a.dtype == np.uint8
    assert (a[:, 0, 0] == 255).all()  # white around the product, like the letterboxed catalog


@pytest.mark.slow
def test_resnet50_random_weights_openvino_f32_matches_torch(product_pixels):
    """ResNet-50 with seeded random weights: every vector within the bar. Its top-5 is not asserted:
    random-weight features are nearly collinear (pairwise cosine ~0.997), so neighbour order hangs on
    1e-5 differences; the real-weight model above carries the ranking check."""
    torch_net = Embedder("resnet50", weights="random", runtime="torch", batch_size=8)
    fast = Embedder("resnet50", weights="random", runtime="openvino", batch_size=8)
    x = product_pixels[:12]
    report = parity(fast.embed_prepared(x), torch_net.embed_prepared(x), queries=12)
    assert report["cosine_min"] >= 0.9999, report
