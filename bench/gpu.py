"""GPU indexing benchmark: one short script for a CUDA machine (none is lent to the CPU benchmark).

    .venv/bin/python bench/gpu.py [--images DIR] [--n 20000] [--batch 512] [--compile] [--out bench/out/gpu.json]

Measures, on the first CUDA device:
  model alone   uint8 NHWC batches already on the GPU -> unit vectors (bf16 autocast, channels_last),
                with and without torch.compile: the ceiling
  end to end    JPEG files -> vectors in an index folder with build_index(device="cuda"): read + hash
                here, decode/resize in --workers decode threads, inference on the GPU, store writes
Prints a table and writes JSON. Target (issue 4): >= 20,000 img/s end to end for resnet50.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FASHION = ROOT.parent / "shared" / "data" / "fashion-small"


def model_alone(backbone: str, batch: int, seconds: float, compile_model: bool) -> dict:
    import torch

    from stylelens import Embedder

    emb = Embedder(backbone, weights="random", device="cuda", runtime="torch", batch_size=batch)
    net = emb.net.to("cuda").to(memory_format=torch.channels_last)
    if compile_model:
        net = torch.compile(net, mode="max-autotune-no-cudagraphs")
    size = emb.preprocess.size
    x = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, device="cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(5):
            net(x)
        torch.cuda.synchronize()
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            net(x)
            n += batch
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
    return {"backbone": backbone, "batch": batch, "compiled": compile_model, "img_s": round(n / elapsed, 1),
            "gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def end_to_end(backbone: str, images: Path, n: int, batch: int, workers: int) -> dict:
    from stylelens import Embedder, build_index

    with tempfile.TemporaryDirectory() as tmp:
        catalog = Path(tmp) / "catalog"
        (catalog / "images").mkdir(parents=True)
        files = sorted(images.glob("*.jpg"))[:n]
        for f in files:
            os.symlink(f, catalog / "images" / f.name)
        emb = Embedder(backbone, weights="random", device="cuda", runtime="torch", batch_size=batch)
        emb.embed_prepared(np.zeros((batch, emb.preprocess.size, emb.preprocess.size, 3), np.uint8))  # warm: cuDNN autotune
        report = build_index(catalog, Path(tmp) / "index", embedder=emb, workers=workers, progress=False)
        shutil.rmtree(Path(tmp) / "index", ignore_errors=True)
    return {"backbone": backbone, "images": report.indexed, "skipped": report.skipped, "batch": batch, "workers": workers,
            "seconds": round(report.seconds, 2), "img_s": round(report.images_per_s, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=FASHION / "images", help="folder of JPEG files")
    parser.add_argument("--n", type=int, default=20_000, help="images for the end-to-end run")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="decode threads of the build")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compiling)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each model-alone run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "gpu.json")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("no CUDA device visible: run this on a GPU machine (see bench/run.py for the CPU benchmark)", file=sys.stderr)
        return 2
    os.environ.setdefault("STYLELENS_PROGRESS", "0")
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "cpu_cores": os.cpu_count(), "model_alone": [], "end_to_end": []}
    for backbone in ("resnet50", "efficientnet-lite0"):
        for compiled in ((False, True) if args.compile else (False,)):
            result["model_alone"].append(model_alone(backbone, args.batch, args.seconds, compiled))
            print(result["model_alone"][-1], flush=True)
    if args.images.is_dir():
        result["end_to_end"].append(end_to_end("resnet50", args.images, args.n, args.batch, args.workers))
        print(result["end_to_end"][-1], flush=True)
    else:
        result["end_to_end_skipped"] = f"no image folder at {args.images}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{result['device']}, torch {result['torch']}")
    print(f"{'run':34s} {'img/s':>10s}")
    for r in result["model_alone"]:
        print(f"{'model alone ' + r['backbone'] + (' compiled' if r['compiled'] else ''):34s} {r['img_s']:10.0f}")
    for r in result["end_to_end"]:
        print(f"{'end to end ' + r['backbone'] + ' (' + str(r['images']) + ' JPEGs)':34s} {r['img_s']:10.0f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
