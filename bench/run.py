"""stylelens benchmark: the seed approach and stylelens, measured side by side in one run on one machine.

    .venv/bin/python bench/run.py            # full run; the first one builds and caches two 40k-product
                                             # indexes and a 1M-vector store in bench/out/ (git-ignored)
    .venv/bin/python bench/run.py --quick    # a smaller run: 200-image slices, 4k catalog, 200k vectors

Prints a table and writes bench/out/results.json (--out to change). Every configuration runs in its
own process, so peak memory is measured per configuration. Sections:

  precision precision auto on fashion-small's probe: fp32, bf16, int8 (NNCF) speed and quality (P@5, identify,
            recall@10 of fp32's top-5, cosine), the rule's verdict and the choice (models.precision)
  size      input size 224/192/160: EfficientNet-Lite0 P@5 / identify (leave-one-out) and speed
  indexing  JPEG files -> vectors in the index, img/s: the seed's code path (Keras, one predict per image,
            in its own venv), stylelens torch, OpenVINO fp32 and precision auto; resnet50 (random weights: same speed)
            and efficientnet-lite0 (real weights) for reference
  query     image bytes -> ranked products on the full 39,665-product catalog, p50/p99, with where the
            time goes; the seed path (predict + NearestNeighbors re-fit) on the same number of vectors
  search    1M x 2048 synthetic unit vectors: exact vs ANN (FAISS IVF-PQ + exact re-rank), p50, recall@10, memory
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
FASHION = ROOT.parent / "shared" / "data" / "fashion-small"
SEED_VENV = HERE / ".seed-venv"
CATALOG_SIZE = 39_665


# ---- helpers ----------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class RssSampler:
    """Samples this process and its children (the decode workers) every 50 ms: the largest worker's RSS
    and the largest sum over all. getrusage(RUSAGE_CHILDREN) cannot say this: on Linux a spawned child's
    ru_maxrss starts from the parent's RSS at fork time, before exec (it read 1.1 GB for a 60 MB worker)."""

    def __init__(self, interval: float = 0.05):
        import threading

        self.interval = interval
        self.workers_peak_mb = 0.0
        self.total_peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            try:
                children = [c.memory_info().rss for c in me.children(recursive=True)]
                total = me.memory_info().rss + sum(children)
            except psutil.Error:  # a worker exited between listing and reading
                continue
            self.workers_peak_mb = max(self.workers_peak_mb, round(max(children, default=0) / 2**20, 1))
            self.total_peak_mb = max(self.total_peak_mb, round(total / 2**20, 1))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def pct(values, q) -> float:
    return round(float(np.percentile(np.asarray(values) * 1000.0, q)), 2)


def image_ids(folder: Path) -> list[str]:
    return sorted((p.stem for p in (folder / "images").glob("*.jpg")), key=lambda s: (len(s), s))


def make_slice(n: int, dest: Path) -> Path:
    """A catalog of the first n fashion-small images (by id): symlinked images + their styles.csv rows."""
    if (dest / "styles.csv").is_file() and len(list((dest / "images").glob("*.jpg"))) == n:
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "images").mkdir(parents=True)
    ids = image_ids(FASHION)[:n]
    for pid in ids:
        os.symlink(FASHION / "images" / f"{pid}.jpg", dest / "images" / f"{pid}.jpg")
    wanted = set(ids)
    with open(FASHION / "styles.csv", newline="") as src, open(dest / "styles.csv", "w", newline="") as dst:
        reader = csv.reader(src)
        writer = csv.writer(dst)
        writer.writerow(next(reader))
        writer.writerows(row for row in reader if row and row[0] in wanted)
    return dest


def query_images(n: int, offset: int = 7) -> list[bytes]:
    """Shopper uploads: catalog photos mirrored and re-encoded, so none is byte-identical to a product."""
    from PIL import Image, ImageOps

    ids = image_ids(FASHION)[offset::max(1, CATALOG_SIZE // n)][:n]
    out = []
    for pid in ids:
        with Image.open(FASHION / "images" / f"{pid}.jpg") as im:
            buf = io.BytesIO()
            ImageOps.mirror(im.convert("RGB")).save(buf, "JPEG", quality=90)
            out.append(buf.getvalue())
    return out


def run_worker(name: str, params: dict, timeout: int = 7200) -> dict:
    """Run one measurement in a fresh process; its last stdout line is the JSON result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "_worker", name, json.dumps(params)]
    env = dict(os.environ, STYLELENS_PROGRESS="0", PYTHONWARNINGS="ignore")
    # The worker imports numpy before stylelens, so it sets what `import stylelens` sets in the CLI and server.
    env.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-3000:]
        print(f"  ! {name} {params.get('label', '')} failed:\n{tail}", file=sys.stderr)
        return {"error": tail.strip().splitlines()[-1] if tail.strip() else f"exit {proc.returncode}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def checkpoint(results: dict, out: Path) -> None:
    """What is measured so far, kept beside the final file: a long run stopped half-way keeps its sections."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".partial.json").write_text(json.dumps(results, indent=2) + "\n")


def log(text: str) -> None:
    print(text, flush=True)


# ---- workers (each runs in its own process) --------------------------------------------------
def _embedder(p: dict):
    from stylelens.models import Embedder

    return Embedder(p["backbone"], weights=p["weights"], runtime=p["runtime"], batch_size=p.get("batch_size", 32),
                    precision=p.get("precision") or None, input_size=p.get("input_size"))


def _settle(emb, catalog: str, remeasure: bool = False) -> dict:
    """precision auto decided on the catalog's own probe images, before any timing (what build_index does)."""
    from stylelens.intake.catalog import load_catalog
    from stylelens.models.precision import catalog_probe

    return emb.settle_precision(*catalog_probe(load_catalog(catalog)), remeasure=remeasure)


def worker_precision(p: dict) -> dict:
    """precision auto, measured afresh on fashion-small's probe (300 images, 200 more calibrate int8):
    each candidate's speed and quality against fp32, and the choice. The decision is cached for the
    indexing and query runs that follow."""
    emb = _embedder(dict(p, runtime="openvino", precision="auto"))
    return _settle(emb, str(FASHION), remeasure=True)


def worker_input_size(p: dict) -> dict:
    """One backbone at several input sizes: leave-one-out articleType P@5 and identify accuracy over
    n labelled fashion-small images (fp32), and model speed (img/s in batches of 64, ms at batch 1)."""
    from stylelens.intake.catalog import load_catalog
    from stylelens.models.precision import quality

    catalog = load_catalog(FASHION)
    ids = image_ids(FASHION)[1::max(1, CATALOG_SIZE // p["n"])][: p["n"]]
    labels = [str(catalog.record(pid).get("type") or "") for pid in ids]
    out = {}
    for size in p["sizes"]:
        emb = _embedder(dict(p, input_size=size))
        pixels = np.stack([emb.prepare(FASHION / "images" / f"{pid}.jpg") for pid in ids])
        emb.warm()
        started = time.perf_counter()
        vectors = emb.embed_prepared(pixels)
        img_s = len(pixels) / (time.perf_counter() - started)
        started = time.perf_counter()
        for i in range(10):
            emb.embed_prepared(pixels[i : i + 1])
        q = quality(vectors, vectors, labels)
        out[str(size)] = {"runtime": emb.runtime_name, "p_at_5": q["p_at_5"], "identify": q["identify"], "img_s": round(img_s, 1),
                          "batch1_ms": round((time.perf_counter() - started) * 100, 1), "images": len(ids)}
    return out


def worker_index(p: dict) -> dict:
    """build_index over a catalog folder with a warm embedder: files -> vectors in the store."""
    from stylelens import build_index

    emb = _embedder(p)
    _settle(emb, p["catalog"])  # auto's choice (cached by the precision section) outside the timing
    emb.warm()
    out = Path(p["out"])
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_SELF)
    with RssSampler() as rss:
        report = build_index(p["catalog"], out, embedder=emb, workers=p.get("workers"), progress=False)
    after = resource.getrusage(resource.RUSAGE_SELF)
    if p.get("discard", True):
        shutil.rmtree(out, ignore_errors=True)
    return {"runtime": emb.runtime_name, "precision": emb.precision_record, "indexed": report.indexed, "skipped": report.skipped, "seconds": round(report.seconds, 2),
            "img_s": round(report.images_per_s, 2), "user_s": round(after.ru_utime - before.ru_utime, 1),
            "sys_s": round(after.ru_stime - before.ru_stime, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
            "workers_peak_rss_mb": rss.workers_peak_mb, "total_peak_rss_mb": rss.total_peak_mb, "batch_size": emb.batch_size}


def worker_query(p: dict) -> dict:
    """Index.search(image bytes) end to end, plus where the time goes."""
    from stylelens import open_index
    from stylelens.intake.images import load_image
    from stylelens.models import prepare

    index = open_index(p["index"], search=p["search"], runtime=p["runtime"], precision=p.get("precision"))
    index.embedder.warm()  # as the server does at start (precision auto: the cached decision)
    uploads = query_images(p["queries"] + 5)
    for data in uploads[:5]:
        index.search(data, k=p["k"])  # warm: model, columns, page cache
    total, decode, embed, search = [], [], [], []
    for data in uploads[5:]:
        t0 = time.perf_counter()
        result = index.search(data, k=p["k"])
        total.append(time.perf_counter() - t0)
        assert len(result.products) == p["k"]
        t0 = time.perf_counter()
        pixels = prepare(load_image(data), index.embedder.preprocess)
        t1 = time.perf_counter()
        vector = index.embedder.embed_prepared(pixels[None])[0]
        t2 = time.perf_counter()
        index.search_vector(vector, p["k"])  # the one neighbour pass, vote, ranking and records, as search() runs them
        t3 = time.perf_counter()
        decode.append(t1 - t0)
        embed.append(t2 - t1)
        search.append(t3 - t2)
    return {"runtime": index.embedder.runtime_name, "search": index.store.backend.name, "products": len(index), "queries": len(total),
            "p50_ms": pct(total, 50), "p99_ms": pct(total, 99), "decode_p50_ms": pct(decode, 50), "embed_p50_ms": pct(embed, 50),
            "search_p50_ms": pct(search, 50), "peak_rss_mb": round(peak_rss_mb(), 1)}


def worker_synthetic(p: dict) -> dict:
    """Write n synthetic 2048-d unit vectors into an index store (see synthetic_vectors)."""
    from stylelens.index import create_store

    folder = Path(p["store"])
    shutil.rmtree(folder, ignore_errors=True)
    base, types = base_vectors(p["base_index"], p["dim"])
    fingerprint = {"backbone": "synthetic", "weights": {"source": "random", "sha256": None, "detail": p["recipe"]}, "pooling": "max",
                   "preprocess": {}, "dim": p["dim"], "normalized": "l2"}
    store = create_store(folder, fingerprint, {})
    started = time.perf_counter()
    neighbours = base_neighbours(base)
    chunk = 50_000
    for start in range(0, p["n"], chunk):
        n = min(chunk, p["n"] - start)
        vectors, seeds = synthetic_vectors(base, neighbours, n, seed=1000 + start // chunk)
        store.add([{"id": f"s{start + i}", "type": types[s]} for i, s in enumerate(seeds)], vectors)
    store.set_manifest()
    store.close()
    queries, _ = synthetic_vectors(base, neighbours, p["queries"], seed=7)
    np.save(folder / "queries.npy", queries)
    return {"n": p["n"], "seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}


def base_vectors(index_path: str, dim: int):
    """Real embeddings (a 40k index) lifted isometrically to ``dim`` by a seeded orthonormal map."""
    from stylelens.index import open_store

    store = open_store(index_path)
    live = np.flatnonzero(store.columns.live)
    vectors = np.asarray(store.vectors(live), np.float32)
    codes, vocab = store.columns.codes["type"][live], store.columns.vocab["type"]
    types = [vocab[c] if c >= 0 else None for c in codes]
    store.close()
    if vectors.shape[1] < dim:
        basis, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((dim, vectors.shape[1])).astype(np.float32))
        vectors = vectors @ basis.T
    return np.ascontiguousarray(vectors[:, :dim], np.float32), types


def base_neighbours(base: np.ndarray, k: int = 10) -> np.ndarray:
    out = np.empty((len(base), k), np.int64)
    for start in range(0, len(base), 2048):
        scores = base[start : start + 2048] @ base.T
        scores[np.arange(len(scores)), np.arange(start, start + len(scores))] = -np.inf
        out[start : start + 2048] = np.argpartition(-scores, k, axis=1)[:, :k]
    return out


def synthetic_vectors(base: np.ndarray, neighbours: np.ndarray, n: int, seed: int):
    """Points on the real data's manifold: a real embedding moved part-way (t ~ U(0, 0.5)) towards one of
    its 10 nearest real neighbours, plus isotropic noise (norm 0.25), renormalised."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(base), n)
    b = neighbours[a, rng.integers(0, neighbours.shape[1], n)]
    t = rng.uniform(0, 0.5, (n, 1)).astype(np.float32)
    v = (1 - t) * base[a] + t * base[b]
    v += rng.standard_normal(v.shape, dtype=np.float32) * (0.25 / np.sqrt(base.shape[1]))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float32), a


def worker_ann(p: dict) -> dict:
    """Exact vs ANN on a synthetic store: latency, recall@10 against exact, memory."""
    import faiss

    from stylelens.index import ann, open_store
    from stylelens.index.backend import top_k
    from stylelens.settings import Settings

    # search="exact": the folder backend answers store.search with BLAS over its memmap, as it serves.
    store = open_store(p["store"], settings=Settings.load(search="exact"))
    backend = store.backend  # the folder backend: what the FAISS index is built over and re-ranks from
    queries = np.load(Path(p["store"]) / "queries.npy")
    k = 10
    # Ground truth in one pass over the vectors, in row chunks.
    started = time.perf_counter()
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_r = np.full((len(queries), k), -1, np.int64)
    vectors = store.all_vectors()  # (n_rows, dim) float32 memmap
    for start in range(0, len(vectors), 100_000):
        s, r = top_k(queries @ np.asarray(vectors[start : start + 100_000]).T, k)
        merged_s, merged_r = np.concatenate([best_s, s], 1), np.concatenate([best_r, r + start], 1)
        order = np.argsort(-merged_s, axis=1)[:, :k]
        best_s, best_r = np.take_along_axis(merged_s, order, 1), np.take_along_axis(merged_r, order, 1)
    truth_seconds = time.perf_counter() - started

    exact_times = []
    for q in queries[: p["exact_queries"]]:
        t0 = time.perf_counter()
        store.search(q[None], k)
        exact_times.append(time.perf_counter() - t0)

    rss_before = peak_rss_mb()
    started = time.perf_counter()
    index = ann.open_ann(backend)  # built once and saved in the store folder, then loaded
    open_seconds = time.perf_counter() - started
    out = {"n": int(store.n_rows), "dim": int(store.dim), "factory": index.meta["factory"],
           "ann_build_seconds": index.meta.get("train_seconds"), "ann_open_seconds": round(open_seconds, 1),
           "ann_memory_mb": round(index.memory_bytes() / 2**20, 1), "vectors_file_mb": round(vectors.nbytes / 2**20),
           "exact_p50_ms": pct(exact_times, 50), "exact_queries": len(exact_times), "truth_seconds": round(truth_seconds, 1),
           "faiss": faiss.__version__, "sweep": []}
    for nprobe, candidates in p["sweep"]:
        searcher = ann.AnnSearcher(backend, nprobe=nprobe, candidates=candidates, ann=index)
        times, rows = [], []
        for q in queries:
            t0 = time.perf_counter()
            _, r = searcher.search(q[None], k)
            times.append(time.perf_counter() - t0)
            rows.append(r[0])
        recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(rows, best_r)])
        out["sweep"].append({"nprobe": nprobe, "candidates": candidates, "p50_ms": pct(times, 50), "p99_ms": pct(times, 99),
                             "recall_at_10": round(float(recall), 4)})
    out["process_peak_rss_mb"] = round(peak_rss_mb(), 1)
    out["rss_before_ann_mb"] = round(rss_before, 1)
    out["rss_anon_mb"] = _proc_status_mb("RssAnon")
    store.close()
    return out


def _proc_status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


WORKERS = {"precision": worker_precision, "input_size": worker_input_size, "index": worker_index, "query": worker_query, "synthetic": worker_synthetic, "ann": worker_ann}


# ---- the seed ----------------------------------------------------------------------------------
def seed_python() -> Path | None:
    python = SEED_VENV / "bin" / "python"
    if not python.exists():
        log("setting up the seed's venv (tensorflow-cpu, scikit-learn): bash bench/seed/setup.sh")
        if subprocess.run(["bash", str(HERE / "seed" / "setup.sh")]).returncode != 0:
            return None
    return python


def run_seed(n_index: int, queries: int) -> dict:
    python = seed_python()
    if python is None:
        return {"error": "seed venv could not be set up"}
    ids = image_ids(FASHION)
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "images.txt"
        # The same first n images the stylelens runs index, then query images after them.
        listing.write_text("\n".join(str(FASHION / "images" / f"{i}.jpg") for i in ids[: n_index + 3 + queries]) + "\n")
        out = Path(tmp) / "seed.json"
        started = time.perf_counter()
        proc = subprocess.run([str(python), str(HERE / "seed" / "seed_bench.py"), "--images", str(listing), "--index-n", str(n_index),
                               "--queries", str(queries), "--catalog-size", str(CATALOG_SIZE), "--out", str(out)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            return {"error": proc.stderr[-2000:]}
        result = json.loads(out.read_text())
        result["wall_s"] = round(time.perf_counter() - started, 1)
        return result


# ---- orchestration --------------------------------------------------------------------------
def machine() -> dict:
    import openvino
    import torch

    flags = ""
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line
    except OSError:
        pass
    try:
        import faiss

        faiss_version = faiss.__version__
    except ImportError:
        faiss_version = None
    return {"cpu": model, "cores": os.cpu_count(), "ram_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "avx512_bf16": "avx512_bf16" in flags, "avx512_vnni": "avx512_vnni" in flags, "device": "cpu",
            "python": platform.python_version(), "torch": torch.__version__, "openvino": openvino.__version__, "faiss": faiss_version,
            "loadavg_start": [round(x, 2) for x in os.getloadavg()]}


def ensure_catalog_index(backbone: str, weights: str, n: int, results: dict, runtime: str, precision: str, rebuild: bool) -> Path:
    """The query catalog: fashion-small (or its first n) indexed once with the fast runtime, cached in bench/out."""
    name = f"index-{backbone}-{weights}" + ("" if n >= CATALOG_SIZE else f"-{n}")
    folder = OUT / name
    record = OUT / f"{name}.build.json"
    if not rebuild and record.is_file() and (folder / "manifest.json").is_file():
        results["catalog_builds"][name] = dict(json.loads(record.read_text()), cached=True)
        return folder
    catalog = FASHION if n >= CATALOG_SIZE else make_slice(n, OUT / "slices" / f"fashion-{n}")
    log(f"building the {n:,}-product {backbone} catalog index once (cached in {folder.relative_to(ROOT)}) ...")
    build = run_worker("index", {"label": name, "backbone": backbone, "weights": weights, "runtime": runtime, "precision": precision,
                                 "catalog": str(catalog), "out": str(folder), "discard": False, "batch_size": 32}, timeout=4 * 3600)
    if "error" in build:
        raise SystemExit(f"could not build the catalog index {name}: {build['error']}")
    build["built"] = time.strftime("%Y-%m-%d %H:%M")
    record.write_text(json.dumps(build, indent=2))
    results["catalog_builds"][name] = dict(build, cached=False)
    return folder


def ensure_synthetic(n: int, base_index: Path, queries: int) -> Path:
    folder = OUT / f"synthetic-{n // 1000}k"
    recipe = "lite0-40k-lifted-2048:t~U(0,0.5)-to-1-of-10-nn:noise0.25:seed1000+"
    meta = folder / "manifest.json"
    if meta.is_file() and (folder / "queries.npy").is_file() and json.loads(meta.read_text())["embedder"]["weights"]["detail"] == recipe \
            and len(np.load(folder / "queries.npy")) >= queries:
        return folder
    log(f"writing {n:,} synthetic 2048-d vectors once (cached in {folder.relative_to(ROOT)}) ...")
    result = run_worker("synthetic", {"store": str(folder), "n": n, "dim": 2048, "base_index": str(base_index), "queries": queries,
                                      "recipe": recipe, "label": "synthetic"}, timeout=4 * 3600)
    if "error" in result:
        raise SystemExit(f"could not write the synthetic store: {result['error']}")
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller slices and a 200k-vector ANN run")
    parser.add_argument("--out", type=Path, default=OUT / "results.json")
    parser.add_argument("--index-images", type=int, help="images per indexing run (default 1000, quick 200)")
    parser.add_argument("--queries", type=int, help="timed queries per configuration (default 200, quick 50)")
    parser.add_argument("--ann-n", type=int, help="vectors in the search-alone run (default 1,000,000, quick 200,000)")
    parser.add_argument("--catalog-products", type=int, help="products in the query catalog (default all 39,665, quick 4,000)")
    parser.add_argument("--size-images", type=int, default=2000, help="labelled images per input-size run (default 2000)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached 40k catalog indexes (their build is timed too)")
    parser.add_argument("--skip", action="append", default=[], choices=["seed", "precision", "size", "index", "query", "ann"], help="leave a section out")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                        help="combine results of runs made section by section (later files win) into --out and print the table")
    args = parser.parse_args(argv)
    if args.merge:
        merged: dict = {"runs": []}
        for path in args.merge:
            part = json.loads(path.read_text())
            merged["runs"].append({"file": path.name, "machine": part.get("machine"), "settings": part.get("settings"), "seconds": part.get("seconds")})
            for key, value in part.items():
                if key == "machine" and "machine" in merged:
                    continue  # the first run's; each run's own is kept under "runs"
                if isinstance(value, dict) and isinstance(merged.get(key), dict):
                    merged[key].update(value)
                else:
                    merged[key] = value
        args.out.write_text(json.dumps(merged, indent=2) + "\n")
        print(render(merged))
        print(f"\nwrote {args.out}")
        return 0
    n_index = args.index_images or (200 if args.quick else 1000)
    n_queries = args.queries or (50 if args.quick else 200)
    ann_n = args.ann_n or (200_000 if args.quick else 1_000_000)
    catalog_n = min(args.catalog_products or (4000 if args.quick else CATALOG_SIZE), CATALOG_SIZE)
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("STYLELENS_CACHE_DIR", str(OUT / "cache"))
    results = {"machine": machine(), "settings": {"quick": args.quick, "index_images": n_index, "queries": n_queries, "ann_n": ann_n,
                                                   "catalog_products": catalog_n, "size_images": args.size_images},
               "catalog_builds": {}}
    started = time.perf_counter()
    log(f"stylelens benchmark on {results['machine']['cpu']}, {results['machine']['cores']} cores"
        f"{' (quick)' if args.quick else ''}; load average {results['machine']['loadavg_start']}")

    if "seed" not in args.skip:
        seed_queries = max(10, n_queries // 4)
        log(f"seed: index {n_index} images one predict at a time, {seed_queries} queries with NearestNeighbors re-fit ...")
        results["seed"] = run_seed(n_index, seed_queries)
        checkpoint(results, args.out)

    if "precision" not in args.skip:
        results["precision"] = {}
        for backbone, weights in (("resnet50", "random"), ("efficientnet-lite0", "imagenet")):
            log(f"precision: {backbone} ({weights}) fp32 / bf16 / int8 measured on fashion-small's probe ...")
            results["precision"][backbone] = run_worker("precision", {"label": backbone, "backbone": backbone, "weights": weights})
            checkpoint(results, args.out)

    if "size" not in args.skip:
        log(f"input size: efficientnet-lite0 at 224/192/160 on {args.size_images} labelled images ...")
        results["input_size"] = run_worker("input_size", {"label": "size", "backbone": "efficientnet-lite0", "weights": "imagenet",
                                                          "runtime": "openvino", "precision": "fp32", "n": args.size_images,
                                                          "sizes": [224, 192, 160]})
        checkpoint(results, args.out)

    if "index" not in args.skip:
        slice_dir = make_slice(n_index, OUT / "slices" / f"fashion-{n_index}")
        results["indexing"] = {}
        configs = [("resnet50", "random", "torch", None), ("resnet50", "random", "openvino", "fp32"),
                   ("resnet50", "random", "openvino", "auto"), ("efficientnet-lite0", "imagenet", "openvino", "fp32"),
                   ("efficientnet-lite0", "imagenet", "openvino", "auto")]
        for backbone, weights, runtime, precision in configs:
            label = f"{backbone} {runtime}" + (f":{precision}" if precision else "")
            log(f"indexing: {label} on {n_index} fashion-small images ...")
            results["indexing"][label] = run_worker("index", {"label": label, "backbone": backbone, "weights": weights, "runtime": runtime,
                                                              "precision": precision, "catalog": str(slice_dir),
                                                              "out": str(OUT / "tmp-index")})
            checkpoint(results, args.out)

    if "query" not in args.skip or "ann" not in args.skip:
        r50 = ensure_catalog_index("resnet50", "random", catalog_n, results, "openvino", "auto", args.rebuild)
        lite = ensure_catalog_index("efficientnet-lite0", "imagenet", catalog_n, results, "openvino", "auto", args.rebuild)

    if "query" not in args.skip:
        results["query"] = {}
        for label, index, runtime, precision, search in [
            ("resnet50 fp32 exact", r50, "openvino", "fp32", "exact"),
            ("resnet50 auto exact", r50, "openvino", "auto", "exact"),
            ("resnet50 auto ann", r50, "openvino", "auto", "ann"),
            ("efficientnet-lite0 fp32 exact", lite, "openvino", "fp32", "exact"),
            ("efficientnet-lite0 auto exact", lite, "openvino", "auto", "exact"),
        ]:
            log(f"query: {label} on {catalog_n:,} products, {n_queries} uploads ...")
            results["query"][label] = run_worker("query", {"label": label, "index": str(index), "runtime": runtime, "precision": precision,
                                                           "search": search, "queries": n_queries, "k": 5})
            checkpoint(results, args.out)

    if "ann" not in args.skip:
        store = ensure_synthetic(ann_n, lite, 200)
        log(f"search alone: {ann_n:,} x 2048 synthetic vectors, exact vs ANN (builds the FAISS index once) ...")
        results["ann"] = run_worker("ann", {"label": "ann", "store": str(store), "exact_queries": 5 if ann_n >= 500_000 else 20,
                                            "sweep": [[8, 100], [16, 100], [16, 200], [32, 200], [64, 200], [64, 400]]},
                                    timeout=4 * 3600)

    results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(render(results))
    print(f"\nwrote {args.out}")
    return 0


# ---- the table --------------------------------------------------------------------------------
def _num(value) -> str:
    return f"{value:6.3f}" if value is not None else f"{'-':>6s}"


def render(r: dict) -> str:
    lines = []
    m = r["machine"]
    lines.append(f"machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM, avx512_bf16={m['avx512_bf16']}, device cpu; "
                 f"torch {m['torch']}, openvino {m['openvino']}, faiss {m['faiss']}; load avg {m['loadavg_start']} -> {m.get('loadavg_end')}")
    seed = r.get("seed") or {}
    seed_rate = seed.get("index_img_per_s")
    idx = r.get("indexing") or {}
    if idx or seed:
        lines += ["", f"INDEXING  fashion-small, first {r['settings']['index_images']} images, JPEG files -> vectors (img/s, higher is better)",
                  f"{'path':38s} {'runtime':16s} {'img/s':>8s} {'x seed':>7s} {'peak RSS MB':>12s} {'user/sys s':>11s}"]
        lines.append("  (peak RSS: the indexing process and any child processes together; user/sys: the main process)")
        if seed_rate:
            lines.append(f"{'seed (Keras, 1 predict per image)':38s} {'tensorflow ' + seed.get('tensorflow', ''):16s} {seed_rate:8.1f} {1:7.1f}x "
                         f"{seed.get('peak_rss_mb', 0):12.0f}")
        elif seed:
            lines.append(f"seed: {seed.get('error', 'not run')}")
        for label, x in idx.items():
            if "error" in x:
                lines.append(f"{label:38s} error: {x['error'][:80]}")
                continue
            ratio = f"{x['img_s'] / seed_rate:6.1f}x" if seed_rate else "     -"
            lines.append(f"{'stylelens ' + label:38s} {x['runtime']:16s} {x['img_s']:8.1f} {ratio} {x.get('total_peak_rss_mb') or x['peak_rss_mb']:12.0f} "
                         f"{x['user_s']:5.0f}/{x['sys_s']:<5.0f}")
    builds = r.get("catalog_builds") or {}
    for name, b in builds.items():
        if "img_s" in b:
            total = f", all processes together {b['total_peak_rss_mb']:.0f} MB" if b.get("total_peak_rss_mb") else ""
            # Decoding runs in threads of the indexing process now; a worker column only where a run had child processes.
            workers = f", largest decode worker {b['workers_peak_rss_mb']:.0f} MB" if b.get("workers_peak_rss_mb") else ""
            lines.append(f"  catalog {name}: {b['indexed']:,} images at {b['img_s']:.1f} img/s ({b['runtime']}), peak RSS "
                         f"{b['peak_rss_mb']:.0f} MB{workers}{total}"
                         + (f" (built {b.get('built')}, cached)" if b.get("cached") else ""))
    q = r.get("query") or {}
    if q or seed:
        lines += ["", f"QUERY  image bytes -> 5 ranked products, {r['settings']['catalog_products']:,}-product catalog (ms, lower is better)",
                  f"{'path':34s} {'runtime':16s} {'search':7s} {'p50':>7s} {'p99':>7s} {'x seed':>7s} {'decode':>7s} {'embed':>7s} {'search':>7s} {'RSS MB':>7s}"]
        seed_p50 = seed.get("query_p50_ms")
        if seed_p50:
            lines.append(f"{'seed (predict + NN re-fit)':34s} {'tensorflow':16s} {'sklearn':7s} {seed_p50:7.1f} {seed['query_p99_ms']:7.1f} "
                         f"{1:6.1f}x {'':7s} {'':7s} {seed['query_nn_p50_ms']:7.1f}")
        for label, x in q.items():
            if "error" in x:
                lines.append(f"{label:34s} error: {x['error'][:80]}")
                continue
            ratio = f"{seed_p50 / x['p50_ms']:6.1f}x" if seed_p50 else "     -"
            lines.append(f"{'stylelens ' + label:34s} {x['runtime']:16s} {x['search']:7s} {x['p50_ms']:7.1f} {x['p99_ms']:7.1f} {ratio} "
                         f"{x['decode_p50_ms']:7.1f} {x['embed_p50_ms']:7.1f} {x['search_p50_ms']:7.1f} {x['peak_rss_mb']:7.0f}")
    a = r.get("ann")
    if a and "error" not in a:
        lines += ["", f"SEARCH ALONE  {a['n']:,} x {a['dim']} synthetic unit vectors (real lite0 embeddings lifted to 2048-d, "
                      f"moved towards a real neighbour + noise), 200 queries, k=10",
                  f"exact (BLAS over float32 memmap, {a['vectors_file_mb']:,} MB): p50 {a['exact_p50_ms']:.1f} ms over {a['exact_queries']} queries",
                  f"ANN {a['factory']} + exact re-rank: FAISS index {a['ann_memory_mb']:,.0f} MB in RAM, trained in {a['ann_build_seconds']} s; "
                  f"serving process peak RSS {a['process_peak_rss_mb']:,.0f} MB (anon {a['rss_anon_mb']} MB)",
                  f"{'nprobe':>7s} {'re-rank':>8s} {'p50 ms':>7s} {'p99 ms':>7s} {'recall@10':>10s}"]
        for s in a["sweep"]:
            lines.append(f"{s['nprobe']:7d} {s['candidates']:8d} {s['p50_ms']:7.2f} {s['p99_ms']:7.2f} {s['recall_at_10']:10.3f}")
    elif a:
        lines.append(f"ann: {a['error']}")
    prec = r.get("precision") or {}
    if prec:
        lines += ["", "PRECISION auto  measured on fashion-small's probe (300 images; 200 more calibrate int8); rule: cosine >= 0.99 every "
                      "image, recall@10 of fp32's top-5 >= 0.95, P@5 and identify >= 99% of fp32's (labelled, real weights only)",
                  f"{'backbone':20s} {'precision':9s} {'img/s':>7s} {'b1 ms':>6s} {'P@5':>6s} {'ident':>6s} {'rec@10':>7s} {'cos min':>8s}  verdict"]
        for backbone, rec in prec.items():
            if "error" in rec:
                lines.append(f"{backbone}: {rec['error']}")
                continue
            for name, m in rec["candidates"].items():
                if "img_s" not in m:
                    lines.append(f"{backbone:20s} {name:9s} {m.get('why', '')}")
                    continue
                mark = "  <- auto" if name == rec["chosen"] else ""
                lines.append(f"{backbone:20s} {name:9s} {m['img_s']:7.1f} {m['batch1_ms']:6.1f} {_num(m.get('p_at_5'))} {_num(m.get('identify'))} "
                             f"{m['recall_at_10']:7.3f} {m['cosine_min']:8.4f}  {'passes' if m['passes'] else 'fails: ' + m['why']}{mark}")
    size = r.get("input_size") or {}
    if size and "error" not in size:
        first = next(v for v in size.values() if isinstance(v, dict))
        lines += ["", f"INPUT SIZE  efficientnet-lite0 (ImageNet), {first['images']:,} labelled fashion-small images, leave-one-out, fp32",
                  f"{'size':>5s} {'P@5':>6s} {'ident':>6s} {'img/s':>7s} {'b1 ms':>6s}"]
        for px, m in size.items():
            if not isinstance(m, dict):
                continue  # wall_s
            lines.append(f"{px:>5s} {m['p_at_5']:6.3f} {m['identify']:6.3f} {m['img_s']:7.1f} {m['batch1_ms']:6.1f}")
    elif size:
        lines.append(f"input size: {size['error']}")
    lines.append(f"\nGPU: none on this machine; bench/gpu.py is the prepared script for a CUDA machine.  total {r.get('seconds')} s")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "_worker":
        sys.path.insert(0, str(ROOT / "src"))
        result = WORKERS[sys.argv[2]](json.loads(sys.argv[3]))
        print(json.dumps(result))
        sys.exit(0)
    sys.exit(main())
