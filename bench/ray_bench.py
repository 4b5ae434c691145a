"""Scale-out measurements on this machine, for the benchmark table and docs/scaling.md.

    python bench/ray_bench.py                      # Ray runner vs local runner, same images, same model
    python bench/ray_bench.py --stores             # also: vector-store costs (exact, Milvus Lite, FAISS HNSW)
    python bench/ray_bench.py --decode --no-runners  # decode + resize cost per CPU core (feeds a GPU)

Runners: N images of fashion-small are indexed by the local runner and by the Ray runner on a local
Ray cluster (all CPUs), alternately, ``--repeats`` times; both commit once per embedder batch
(``--batch-size`` images), as every build does.
"end to end" is what ``stylelens index`` reports (catalog scan, model build, decode, inference,
commits; for Ray also the actors' start-up); Ray's own start-up (``ray.init``) is timed apart.
"CPU s/img" is the CPU time all processes of the run used (this one, its decode workers, Ray's
actors, tasks and daemons; sampled every 0.25 s) per image: on a shared machine wall-clock rates
depend on how many processes compete, CPU time per image much less. The load average is printed
with each run. Ray Data buffers embedded batches ahead of the driver's commits, so rates between
commits say nothing about Ray's throughput; only whole runs are compared.

Decode: ``build.plan.prepare_bytes`` (decode, EXIF, RGB, letterbox to the network's input) in one
process, on fashion-small's 60x80 JPEGs and on generated 1200x1600 product photos (quality 90), the
size shops upload: images per second per core, what a GPU runner needs in CPU cores per GPU.

Stores: generated unit vectors (seeded) of the backbone's dimension, or with ``--real INDEX`` the
vectors of an existing index (queries are held-out catalog vectors); insert rate and single-query
top-10 latency (median of ``--queries``) of the exact in-process search, Milvus Lite (FLAT, with and
without a filter) and FAISS HNSW (M=16, efSearch=64, the bytes of the serialised index as its memory,
recall@10 against exact). Random high-dimensional vectors are the hardest case for HNSW; real
embeddings show the recall to expect.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-small"


def load() -> str:
    return "load %.1f/%.1f/%.1f" % os.getloadavg()


class CpuMeter:
    """CPU seconds used by this process and all its descendants (Ray's daemons and workers included)
    while the block runs; processes that end in between are counted up to their last sample."""

    def __init__(self, period_s: float = 0.25):
        import psutil

        self.psutil, self.period_s = psutil, period_s
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}

    def _sample(self) -> None:
        me = self.psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                times = proc.cpu_times()
            except self.psutil.Error:
                continue
            used = times.user + times.system
            self.first.setdefault(proc.pid, used if self.started else 0.0)
            self.last[proc.pid] = used

    def __enter__(self):
        import threading

        self.started = True
        self._sample()  # what existing processes had used before: not counted
        self.started = False
        self.stop = threading.Event()

        def loop():
            while not self.stop.wait(self.period_s):
                self._sample()

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self._sample()
        self.seconds = sum(self.last[pid] - self.first[pid] for pid in self.last)


def subset_catalog(data: Path, n: int, folder: Path) -> Path:
    """A catalog of the first n images (by name), as symbolic links: nothing is copied."""
    images = sorted((data / "images").glob("*.jpg"))[:n]
    if len(images) < n:
        sys.exit(f"only {len(images)} images under {data / 'images'}")
    (folder / "images").mkdir(parents=True)
    for path in images:
        (folder / "images" / path.name).symlink_to(path)
    return folder


def bench_runners(args, work: Path) -> list[dict]:
    import ray

    from stylelens.build import build_index

    catalog = subset_catalog(args.data, args.images, work / "catalog")
    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, object_store_memory=512 * 1024**2, log_to_driver=False)
    ray_start = time.perf_counter() - started
    print(f"ray.init (local cluster, {os.cpu_count()} CPUs): {ray_start:.1f} s")
    rows = []
    try:
        for repeat in range(args.repeats):
            for runner in ("local", "ray"):
                out = work / f"{runner}-{repeat}"
                before = load()
                with CpuMeter() as cpu:
                    report = build_index(catalog, out, backbone=args.backbone, weights="random", runtime=args.runtime,
                                         batch_size=args.batch_size, runner=runner, progress=False)
                row = {"runner": runner, "repeat": repeat, "images": report.indexed, "seconds": round(report.seconds, 2),
                       "images_per_s": round(report.images_per_s, 2),
                       "cpu_s_per_image": round(cpu.seconds / max(1, report.indexed), 3),
                       "load_before": before, "load_after": load()}
                rows.append(row)
                print(f"{runner:5s} #{repeat}: {report.summary()}; {row['cpu_s_per_image']} CPU s/img  "
                      f"[{before} -> {row['load_after']}]", flush=True)
                shutil.rmtree(out)
    finally:
        ray.shutdown()
    summary = {}
    for key in ("images_per_s", "cpu_s_per_image"):
        summary[key] = {runner: statistics.median(r[key] for r in rows if r["runner"] == runner) for runner in ("local", "ray")}
        print(f"median {key}: local {summary[key]['local']:.2f}, ray {summary[key]['ray']:.2f}, "
              f"ray/local = {summary[key]['ray'] / summary[key]['local']:.2f}")
    print(f"({args.backbone}, runtime {args.runtime}, {args.images} images, batches and commits of {args.batch_size})")
    return rows + [{"summary": summary, "ray_init_s": round(ray_start, 2)}]


def bench_decode(args, work: Path) -> dict:
    from PIL import Image

    from stylelens.models import BACKBONES
    from stylelens.build.plan import prepare_bytes

    pre = BACKBONES[args.backbone].preprocess
    small = [p.read_bytes() for p in sorted((args.data / "images").glob("*.jpg"))[:500]]
    rng = np.random.default_rng(0)
    large = []
    for i in range(20):
        # A smooth product-like photo (noise would make the JPEG, and its decode, unrealistically heavy).
        y, x = np.mgrid[0:1600, 0:1200]
        pixels = np.stack([(x * (i + 1) // 9) % 256, (y // 7 + i * 10) % 256, ((x + y) // 11) % 256], axis=-1).astype(np.uint8)
        path = work / f"large{i}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        large.append(path.read_bytes())
    out = {"load": load()}
    for name, blobs, rounds in (("fashion_small_60x80", small, 2), ("photo_1200x1600", large, 3)):
        started = time.perf_counter()
        for _ in range(rounds):
            for data in blobs:
                prepare_bytes(data, pre, 50_000_000)
        out[f"{name}_per_s_per_core"] = round(rounds * len(blobs) / (time.perf_counter() - started), 1)
        out[f"{name}_kb"] = round(sum(map(len, blobs)) / len(blobs) / 1024, 1)
    # Not the pipeline's path (yet): let libjpeg decode at 1/2..1/8 scale, just above the network's input size.
    import io

    from stylelens.models import prepare

    started = time.perf_counter()
    for _ in range(3):
        for data in large:
            image = Image.open(io.BytesIO(data))
            image.draft("RGB", (pre.size, pre.size))
            prepare(image.convert("RGB"), pre)
    out["photo_1200x1600_draft_per_s_per_core"] = round(3 * len(large) / (time.perf_counter() - started), 1)
    print(json.dumps(out), flush=True)
    return out


def median_ms(fn, queries: int) -> float:
    times = []
    for i in range(queries):
        started = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


def bench_stores(args, work: Path) -> list[dict]:
    import faiss

    from stylelens.index import create_store, open_store
    from stylelens.index.backend import exact_search
    from stylelens.query import Filters
    from stylelens.settings import Settings

    dim = {"resnet50": 2048, "efficientnet-lite0": 1280}[args.backbone]
    fp = {"backbone": "bench", "weights": {"source": "random", "sha256": None, "detail": "seed"}, "pooling": "max",
          "preprocess": {}, "dim": dim, "normalized": "l2"}
    rows = []
    for n in ([None] if args.real else args.sizes):
        if args.real:
            index = open_store(args.real)
            every = index.vectors(np.flatnonzero(index.columns.live))
            index.close()
            rng = np.random.default_rng(0)
            held_out = rng.choice(len(every), args.queries, replace=False)
            queries, vectors = every[held_out], np.delete(every, held_out, axis=0)
            n, dim = vectors.shape
            fp["dim"] = dim
        else:
            rng = np.random.default_rng(n)
            vectors = rng.standard_normal((n, dim), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            queries = vectors[rng.choice(n, args.queries, replace=False)] + 0.01 * rng.standard_normal((args.queries, dim), dtype=np.float32)
        records = [{"id": f"p{i}", "gender": ("Men", "Women")[i % 2], "type": f"T{i % 20}", "colour": f"C{i % 12}",
                    "price": float(i % 300), "in_stock": i % 10 != 0} for i in range(n)]
        row = {"n": n, "dim": dim, "vectors": str(args.real) if args.real else "random", "load": load()}

        folder = create_store(work / f"folder-{n}", fp, {})
        started = time.perf_counter()
        for start in range(0, n, args.batch_size):  # a build commits once per embedder batch
            folder.add(records[start:start + args.batch_size], vectors[start:start + args.batch_size])
        row["folder_store_insert_per_s"] = round(n / (time.perf_counter() - started))
        folder.close()
        # What the serving front keeps per product whatever the vector store: catalog rows and filter columns.
        row["catalog_sqlite_bytes_per_product"] = round((work / f"folder-{n}" / "catalog.sqlite").stat().st_size / n)
        folder = open_store(work / f"folder-{n}")
        tracemalloc.start()
        folder.columns
        row["columns_bytes_per_product"] = round(tracemalloc.get_traced_memory()[1] / n)
        tracemalloc.stop()
        folder.close()

        row["exact_ms"] = median_ms(lambda i: exact_search(vectors, queries[i:i + 1], 10), args.queries)

        milvus_settings = Settings.load(search="auto")  # the milvus backend refuses search exact/ann
        store = create_store(work / f"milvus-{n}", fp, {}, f"milvus-lite://{work / f'milvus-{n}.db'}", settings=milvus_settings)
        started = time.perf_counter()
        for start in range(0, n, 2000):
            store.add(records[start:start + 2000], vectors[start:start + 2000])
        row["milvus_lite_insert_per_s"] = round(n / (time.perf_counter() - started))
        started = time.perf_counter()
        store.maintain()  # seal the segments, as a build does at its end
        row["milvus_lite_flush_s"] = round(time.perf_counter() - started, 1)
        women = Filters(gender="Women", max_price=100)
        # The front's search: the milvus backend runs the filters server-side as a boolean expression.
        row["milvus_lite_flat_ms"] = median_ms(lambda i: store.search(queries[i:i + 1], 10), args.queries)
        row["milvus_lite_flat_filtered_ms"] = median_ms(lambda i: store.search(queries[i:i + 1], 10, filters=women), args.queries)
        store.close()

        started = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(dim, 16, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 200
        hnsw.add(vectors)
        row["faiss_hnsw_build_s"] = round(time.perf_counter() - started, 1)
        hnsw.hnsw.efSearch = 64
        row["faiss_hnsw_ms"] = median_ms(lambda i: hnsw.search(queries[i:i + 1], 10), args.queries)
        row["faiss_hnsw_bytes_per_vector"] = round(len(faiss.serialize_index(hnsw)) / n)
        truth = exact_search(vectors, queries, 10)[1]
        found = hnsw.search(queries, 10)[1]
        row["faiss_hnsw_recall_at_10"] = round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)])), 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--runtime", default="torch", help="the same runtime for both runners: this compares runners")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="images per inference batch, and so per catalog commit (both runners; --stores: rows per folder-store add)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-runners", action="store_true")
    parser.add_argument("--stores", action="store_true")
    parser.add_argument("--decode", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--real", type=Path, metavar="INDEX", help="--stores on the vectors of this index instead of random ones")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("STYLELENS_PROGRESS", "0")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").exists() else platform.machine()
    print(f"{cpu}, {os.cpu_count()} CPUs, {load()}")
    results: dict = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="stylelens-scale-bench-") as tmp:
        if not args.no_runners:
            results["runners"] = bench_runners(args, Path(tmp))
        if args.decode:
            results["decode"] = bench_decode(args, Path(tmp))
        if args.stores:
            results["stores"] = bench_stores(args, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
