"""int8 (NNCF post-training quantization) of the embedding network, two recipes side by side: speed and
quality against torch fp32 by the one rule (``models.precision.keeps_quality``: cosine >= 0.99 every
image, recall@10 of fp32's top-5 >= 0.95, P@5 / identify >= 99 % of fp32's with real weights).
``precision auto`` ships NNCF's default recipe, calibrated on catalog images; this script compares it
with a more careful one.

    .venv/bin/pip install 'stylelens[fast]'   # NNCF comes with the fast extra
    .venv/bin/python bench/int8.py      # writes bench/out/int8.json
    .venv/bin/python bench/int8.py --backbone efficientnet-lite0 --parity-images 64 --calibration-images 32   # a quick look

Calibration uses fashion-small images disjoint from the 300 parity images. Variants: NNCF's defaults,
and a more careful one (first and last convolutions kept in f32, full bias correction, more calibration
images), which is the usual recipe when the defaults lose accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from run import CATALOG_SIZE, FASHION, OUT, image_ids  # noqa: E402


def pixels_for(ids, pre) -> np.ndarray:
    from stylelens.models import prepare
    from stylelens.intake.images import load_image

    return np.stack([prepare(load_image(FASHION / "images" / f"{i}.jpg"), pre) for i in ids])


def speed(compiled_model, pixels: np.ndarray) -> tuple[float, float]:
    """(img/s with a batch of 64 split over the optimal number of requests, batch-1 latency in ms)."""
    import openvino as ov

    queue = ov.AsyncInferQueue(compiled_model, max(1, compiled_model.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    batch = pixels[:64]
    parts = np.array_split(batch, len(queue))
    for _ in range(2):
        for i, part in enumerate(parts):
            queue.start_async({0: part}, i)
        queue.wait_all()
    started = time.perf_counter()
    for _ in range(3):
        for i, part in enumerate(parts):
            queue.start_async({0: part}, i)
        queue.wait_all()
    img_s = 3 * len(batch) / (time.perf_counter() - started)
    request = compiled_model.create_infer_request()
    request.infer({0: pixels[:1]})
    started = time.perf_counter()
    for i in range(10):
        request.infer({0: pixels[i : i + 1]})
    return round(img_s, 1), round((time.perf_counter() - started) * 100, 1)


BACKBONES = {"resnet50": "random", "efficientnet-lite0": "imagenet"}  # backbone -> the weights measured


def run_backbone(backbone: str, weights: str, n_parity: int = 300, n_calib: int = 300) -> dict:
    import nncf
    import openvino as ov

    from stylelens import Embedder
    from stylelens.intake.catalog import load_catalog
    from stylelens.models.precision import keeps_quality, quality
    from stylelens.models.runtimes import _openvino_ir

    reference = Embedder(backbone, weights=weights, runtime="torch")
    ids = image_ids(FASHION)
    parity_ids = ids[3::max(1, CATALOG_SIZE // n_parity)][:n_parity]
    taken = set(parity_ids)
    calib_ids = [i for i in ids[11::max(1, CATALOG_SIZE // (2 * n_calib))] if i not in taken][:n_calib]
    pixels = pixels_for(parity_ids, reference.preprocess)
    calib = pixels_for(calib_ids, reference.preprocess)
    truth = reference.embed_prepared(pixels)
    catalog = load_catalog(FASHION)
    labels = [str(catalog.record(pid).get("type") or "") for pid in parity_ids] if weights != "random" else None
    fp32_quality = quality(truth, truth, labels)

    core = ov.Core()
    ir = _openvino_ir(reference, ov)
    model = core.read_model(str(ir))
    convs = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    out: dict = {"backbone": backbone, "weights": weights, "parity_images": len(pixels), "calibration_images": len(calib),
                 "nncf": nncf.__version__, "openvino": ov.__version__}
    f32 = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "THROUGHPUT"})
    out["f32_img_s"], out["f32_batch1_ms"] = speed(f32, pixels)

    variants = {
        "int8 default": dict(subset_size=min(300, len(calib))),
        "int8 careful": dict(subset_size=len(calib), fast_bias_correction=False,
                             ignored_scope=nncf.IgnoredScope(names=[convs[0], convs[-1]])),
    }
    for name, options in variants.items():
        started = time.perf_counter()
        dataset = nncf.Dataset([calib[i : i + 1] for i in range(len(calib))])
        quantized = nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.MIXED, **options)
        seconds = time.perf_counter() - started
        compiled = core.compile_model(quantized, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
        vectors = np.concatenate([compiled(pixels[i : i + 32])[0] for i in range(0, len(pixels), 32)])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        # The quantized graph's own L2 step is approximate (norms 0.998-1.32 here); a runtime would renormalise.
        vectors = vectors / norms
        img_s, batch1_ms = speed(compiled, pixels)
        q = quality(vectors, truth, labels)
        out[name] = dict(q, passes=keeps_quality(q, fp32_quality)[0], img_s=img_s, batch1_ms=batch1_ms,
                         quantize_seconds=round(seconds, 1), raw_norm_range=[round(float(norms.min()), 4), round(float(norms.max()), 4)])
        print(name, backbone, out[name], flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", action="append", choices=sorted(BACKBONES),
                        help="measure this backbone (repeatable; default: both)")
    parser.add_argument("--parity-images", type=int, default=300, help="images the parity is measured on (default 300)")
    parser.add_argument("--calibration-images", type=int, default=300, help="images NNCF calibrates on (default 300)")
    parser.add_argument("--out", type=Path, default=OUT / "int8.json")
    args = parser.parse_args(argv)
    try:
        import nncf  # noqa: F401
    except ImportError:
        print("This experiment needs NNCF: .venv/bin/pip install 'stylelens[fast]'", file=sys.stderr)
        return 2
    backbones = args.backbone or list(BACKBONES)
    results = {"runs": [run_backbone(b, BACKBONES[b], args.parity_images, args.calibration_images) for b in backbones]}
    target = args.out
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2) + "\n")
    for run in results["runs"]:
        print(f"\n{run['backbone']} ({run['weights']}): f32 {run['f32_img_s']} img/s, batch-1 {run['f32_batch1_ms']} ms")
        for name in ("int8 default", "int8 careful"):
            x = run[name]
            print(f"  {name:13s} {x['img_s']:6.1f} img/s  batch-1 {x['batch1_ms']:5.1f} ms  cosine min {x['cosine_min']:.4f} "
                  f"mean {x['cosine_mean']:.4f}  recall@10 {x['recall_at_10']:.3f}  P@5 {x.get('p_at_5', '-')}  passes {x['passes']}")
    print(f"\nwrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
