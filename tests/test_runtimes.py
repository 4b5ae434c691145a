"""Fast CPU runtimes (OpenVINO, ONNX Runtime): same input, same unit vectors as torch fp32, cached once."""

import threading
import warnings

import numpy as np
import pytest

from imagegen import make_image
from stylelens.errors import InvalidArgumentError, MissingExtraError
from stylelens.models import Embedder, runtimes
from stylelens.models.precision import quality
from stylelens.models.runtimes import probe_pixels
from stylelens.settings import Settings

pytest.importorskip("openvino")
pytest.importorskip("efficientnet_lite_pytorch")


@pytest.fixture(scope="module")
def compiled_cache(tmp_path_factory):
    """One cache folder for the module: each model is converted once here, never in ~/.cache."""
    return tmp_path_factory.mktemp("stylelens-cache")


@pytest.fixture(scope="module")
def settings(compiled_cache):
    """Passed to every embedder here: the runtimes take the cache folder from the embedder's settings."""
    return Settings.load(environ={}, cache_dir=str(compiled_cache), backbone="efficientnet-lite0", weights="imagenet")


def Lite(settings, **kw):
    return Embedder(settings=settings, **kw)


@pytest.fixture(scope="module")
def product_pixels(tmp_path_factory, settings):
    """40 generated product photos (three shapes, four colours), prepared like catalog images."""
    folder = tmp_path_factory.mktemp("products")
    colours = [(200, 30, 40), (30, 60, 200), (40, 160, 60), (20, 20, 20)]
    paths = [make_image(folder / f"{i}.jpg", color=colours[i % 4], pattern_seed=i) for i in range(40)]
    lite = Lite(settings, runtime="torch")
    return np.stack([lite.prepare(p) for p in paths])


@pytest.fixture(scope="module")
def lite_torch(settings):
    return Lite(settings, runtime="torch", batch_size=16)


@pytest.fixture(scope="module")
def lite_f32(settings):
    return Lite(settings, runtime="openvino", precision="fp32", batch_size=16)


def test_openvino_matches_torch_on_real_weights(lite_torch, lite_f32, product_pixels):
    """EfficientNet-Lite0 with its ImageNet weights: the meaningful model for the comparison."""
    assert lite_f32.runtime_name == "openvino-fp32"
    report = quality(lite_f32.embed_prepared(product_pixels), lite_torch.embed_prepared(product_pixels))
    assert report["cosine_min"] >= 0.9999 and report["recall_at_10"] >= 0.99, report


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


def test_converted_model_is_cached_and_keyed_by_fingerprint(compiled_cache, settings, lite_f32):
    folders = sorted((compiled_cache / "compiled").glob("openvino-efficientnet-lite0-fp32-*"))
    assert len(folders) == 1
    xml = folders[0] / "model.xml"
    stamp = xml.stat().st_mtime_ns
    again = Lite(settings, runtime="openvino", precision="fp32")
    assert xml.stat().st_mtime_ns == stamp  # reused, not converted again
    Lite(settings, pooling="avg", runtime="openvino", precision="fp32")
    assert len(list((compiled_cache / "compiled").glob("openvino-efficientnet-lite0-fp32-*"))) == 2
    assert again.runtime_name == lite_f32.runtime_name


def test_auto_precision_is_measured_once_and_recorded(settings):
    """Without a catalog (no build), auto decides on generated product pictures at the first call: each
    candidate measured against fp32, the fastest that keeps quality chosen, the decision cached per
    model and CPU. A 96-pixel input keeps the three compiles and the int8 calibration short."""
    auto = Lite(settings, runtime="auto", input_size=96)
    assert auto.runtime_name == "openvino-auto" and auto.precision_record["chosen"] is None
    auto.warm()
    record = auto.precision_record
    assert record["probe"]["source"] == "generated" and not record["probe"]["labelled"]
    assert set(record["candidates"]) == {"fp32", "bf16", "int8"}
    assert record["candidates"]["fp32"]["passes"] and record["candidates"]["fp32"]["recall_at_10"] == 1.0
    assert record["candidates"][record["chosen"]]["passes"]
    assert auto.runtime_name == f"openvino-{record['chosen']}"
    again = Lite(settings, runtime="auto", input_size=96)
    assert again.precision_record == record  # read from the cache, not measured again


def test_explicit_bf16_is_close_but_reported_as_bf16(settings, lite_torch, product_pixels):
    bf16 = Lite(settings.replace(precision="bf16"), runtime="openvino")
    assert bf16.runtime_name == "openvino-bf16"
    report = quality(bf16.embed_prepared(product_pixels), lite_torch.embed_prepared(product_pixels))
    assert report["cosine_min"] > 0.98 and report["recall_at_10"] >= 0.9


def test_precision_comes_from_the_embedders_settings_not_the_environment(settings, monkeypatch):
    monkeypatch.setenv("STYLELENS_PRECISION", "bf16")  # read by Settings.load() only, never by a runtime
    assert Lite(settings.replace(precision="f32"), runtime="openvino").runtime_name == "openvino-fp32"  # f32: old name
    with pytest.raises(InvalidArgumentError, match="precision"):
        Lite(settings, runtime="openvino", precision="fp8")


def test_onnx_runtime_matches_torch(settings, lite_torch, product_pixels):
    pytest.importorskip("onnxruntime")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converting must not show users torch's deprecation notices
        onnx = Lite(settings, runtime="onnx")
    assert onnx.runtime_name == "onnx"
    report = quality(onnx.embed_prepared(product_pixels), lite_torch.embed_prepared(product_pixels))
    assert report["cosine_min"] >= 0.9999 and report["recall_at_10"] >= 0.99, report


def test_auto_falls_back_when_a_fast_runtime_fails(settings, monkeypatch):
    def broken(emb):
        raise RuntimeError("converter crashed")

    monkeypatch.setitem(runtimes.RUNTIMES, "openvino", broken)
    monkeypatch.setattr(runtimes, "AUTO_ORDER", ["openvino", "torch"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb = Lite(settings, runtime="auto")
    assert emb.runtime_name == "torch"
    assert any("converter crashed" in str(w.message) for w in caught)


def test_missing_extra_is_named_and_auto_skips_it(settings, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # as if the 'fast' extra were not installed
    with pytest.raises(MissingExtraError, match="fast"):
        Lite(settings, runtime="openvino")
    monkeypatch.setattr(runtimes, "AUTO_ORDER", ["openvino", "torch"])
    assert Lite(settings, runtime="auto").runtime_name == "torch"


def test_probe_pixels_are_deterministic_product_like_inputs(lite_torch):
    a, b = probe_pixels(lite_torch.prepare, n=6), probe_pixels(lite_torch.prepare, n=6)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (6, 224, 224, 3) and a.dtype == np.uint8
    assert (a[:, 0, 0] == 255).all()  # white around the product, like the letterboxed catalog


@pytest.mark.slow
def test_resnet50_random_weights_openvino_f32_matches_torch(settings, product_pixels):
    """ResNet-50 with seeded random weights: every vector within the bar. Its neighbours are not asserted:
    random-weight features are nearly collinear (pairwise cosine ~0.997), so neighbour order hangs on
    1e-5 differences; the real-weight model above carries the ranking check."""
    torch_net = Embedder("resnet50", weights="random", runtime="torch", batch_size=8, settings=settings)
    fast = Embedder("resnet50", weights="random", runtime="openvino", precision="fp32", batch_size=8, settings=settings)
    x = product_pixels[:12]
    report = quality(fast.embed_prepared(x), torch_net.embed_prepared(x))
    assert report["cosine_min"] >= 0.9999, report
