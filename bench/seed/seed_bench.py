"""Time the seed approach: the typical GitHub fashion recommender, reproduced as-is.

Keras ResNet50(include_top=False) + GlobalMaxPooling2D, one ``model.predict`` per image,
L2-normalised; each query re-fits ``NearestNeighbors`` on the whole feature list.
Runs in its own virtualenv (``bash bench/seed/setup.sh``) so tensorflow never meets stylelens.

Weights are random (seeded): nothing can be downloaded here, and weights do not change speed.
The catalog the query searches is random unit vectors for the same reason.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
WARMUP_PREDICTS = 3
DIM = 2048


def list_images(source: Path) -> list[Path]:
    """A folder (files sorted by name) or a text file with one path per line."""
    if source.is_dir():
        return sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    lines = source.read_text().splitlines()
    return [Path(line.strip()) for line in lines if line.strip()]


def import_tensorflow():
    """Import tensorflow with its C++ start-up chatter hidden.

    TF 2.21 prints oneDNN notices through absl before TF_CPP_MIN_LOG_LEVEL is read, so the
    environment variable alone cannot silence them; stderr is muted for the import only.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf


def build_model():
    # Imported late so --help stays instant.
    tf = import_tensorflow()
    from tensorflow.keras.applications.resnet50 import ResNet50
    from tensorflow.keras.layers import GlobalMaxPooling2D

    tf.keras.utils.set_random_seed(0)
    base = ResNet50(weights=None, include_top=False, input_shape=(224, 224, 3))
    base.trainable = False
    return tf.keras.Sequential([base, GlobalMaxPooling2D()])


def extract_features(img_path: Path, model) -> np.ndarray:
    """The seed's feature extractor, line for line (bar verbose=0, which silences the progress bar)."""
    from tensorflow.keras.applications.resnet50 import preprocess_input
    from tensorflow.keras.preprocessing import image

    img = image.load_img(str(img_path), target_size=(224, 224))
    img_array = image.img_to_array(img)
    expanded_img_array = np.expand_dims(img_array, axis=0)
    preprocessed_img = preprocess_input(expanded_img_array)
    result = model.predict(preprocessed_img, verbose=0).flatten()
    return result / np.linalg.norm(result)


def recommend(features: np.ndarray, feature_list: np.ndarray) -> list[int]:
    """The seed's query: re-fit brute-force NearestNeighbors every time, keep five."""
    from sklearn.neighbors import NearestNeighbors

    neighbors = NearestNeighbors(n_neighbors=6, algorithm="brute", metric="euclidean")
    neighbors.fit(feature_list)
    _, indices = neighbors.kneighbors([features])
    return [int(i) for i in indices[0][:5]]  # the seed's app shows indices[0][0..4]


def random_catalog(size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((size, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000.0, q))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def run(images: list[Path], index_n: int, catalog_size: int, queries: int) -> dict:
    tf = import_tensorflow()

    if len(images) < WARMUP_PREDICTS + 1:
        raise SystemExit(f"need at least {WARMUP_PREDICTS + 1} images, found {len(images)}")
    if len(images) < index_n:
        raise SystemExit(f"--index-n {index_n} but only {len(images)} images given")
    model = build_model()

    for path in images[:WARMUP_PREDICTS]:
        extract_features(path, model)

    to_index = images[:index_n]
    start = time.perf_counter()
    for path in to_index:
        extract_features(path, model)
    index_seconds = time.perf_counter() - start

    feature_list = random_catalog(catalog_size)
    # Query with images the index pass did not see (cycling if the list runs out).
    pool = images[index_n:] or images
    latencies, nn_latencies = [], []
    for i in range(queries):
        path = pool[i % len(pool)]
        start = time.perf_counter()
        features = extract_features(path, model)
        mid = time.perf_counter()
        recommend(features, feature_list)
        end = time.perf_counter()
        latencies.append(end - start)
        nn_latencies.append(end - mid)

    return {
        "index_img_per_s": round(index_n / index_seconds, 3),
        "index_n": index_n,
        "query_p50_ms": round(percentile_ms(latencies, 50), 2),
        "query_p99_ms": round(percentile_ms(latencies, 99), 2),
        "query_nn_p50_ms": round(percentile_ms(nn_latencies, 50), 2),  # re-fit + kneighbors alone
        "queries": queries,
        "catalog_size": catalog_size,
        "catalog": "random unit vectors (seed 0, dim 2048); only speed is measured",
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "tensorflow": tf.__version__,
        "weights": "random",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True,
                        help="folder of images (sorted by name) or a text file of paths")
    parser.add_argument("--index-n", type=int, default=200, help="images to index, one predict each")
    parser.add_argument("--catalog-size", type=int, default=39665,
                        help="rows in the feature list each query re-fits on")
    parser.add_argument("--queries", type=int, default=30, help="number of timed queries")
    parser.add_argument("--out", type=Path, help="write the result here as JSON")
    args = parser.parse_args(argv)
    if args.index_n < 1 or args.queries < 1 or args.catalog_size < 6:
        parser.error("--index-n and --queries must be >= 1, --catalog-size >= 6")

    result = run(list_images(args.images), args.index_n, args.catalog_size, args.queries)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"seed (keras, tf {result['tensorflow']}, random weights): "
        f"index {result['index_img_per_s']:.2f} img/s over {result['index_n']}, "
        f"query p50 {result['query_p50_ms']:.0f} ms / p99 {result['query_p99_ms']:.0f} ms "
        f"(NearestNeighbors re-fit p50 {result['query_nn_p50_ms']:.0f} ms) "
        f"over {result['queries']} (catalog {result['catalog_size']:,} random unit vectors), "
        f"peak RSS {result['peak_rss_mb']:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
