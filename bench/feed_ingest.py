"""Feed ingest over HTTP against the same images from a folder, in one run on one machine.

    .venv/bin/python bench/feed_ingest.py                 # 300 fashion-small images, EfficientNet-Lite0
    .venv/bin/python bench/feed_ingest.py -n 1000 --backbone resnet50 --weights random --runtime torch

The images (the first N of ../shared/data/fashion-small, or generated ones with --generated) are copied into
a temporary folder, which is indexed (the folder form) and also served by a local HTTP server
(http.server, threads, on 127.0.0.1, in its own process) and listed in a Merchant Center TSV feed, which is indexed from its URL
(``build_index(feed_url, ...)``: the feed is downloaded, then each image, then the same build). A third run
refreshes the feed index (conditional requests only, nothing re-embedded), beside a re-run of the folder. Each index is built from empty,
folder and feed alternately, ``--repeats`` times; the best rate of each is reported (other processes share
the machine). Prints a table and one JSON line; images/s = indexed images / the whole build_index call.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FASHION = ROOT.parent / "shared" / "data" / "fashion-small" / "images"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(folder: Path) -> tuple[ThreadingHTTPServer, str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def serve_elsewhere(folder: Path) -> tuple[subprocess.Popen, str]:
    """The shop's server in its own process (as it would be on its own machine): it does not share this
    process's interpreter lock with the indexing threads; it still shares the CPU cores."""
    code = ("import functools, sys; sys.path.insert(0, sys.argv[2]); from feed_ingest import serve; "
            "httpd, base = serve(__import__('pathlib').Path(sys.argv[1])); print(base, flush=True); "
            "__import__('threading').Event().wait()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder), str(Path(__file__).parent)], stdout=subprocess.PIPE,
                            text=True)
    return proc, proc.stdout.readline().strip()


def images(folder: Path, n: int, generated: bool) -> list[Path]:
    folder.mkdir(parents=True)
    if not generated and FASHION.is_dir():
        sources = sorted(FASHION.glob("*.jpg"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)[:n]
        return [Path(shutil.copy(src, folder / src.name)) for src in sources]
    sys.path.insert(0, str(ROOT / "tests"))
    from imagegen import make_image

    return [make_image(folder / f"{1000 + i}.jpg", size=(300, 400), pattern_seed=i) or folder / f"{1000 + i}.jpg"
            for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=300, help="Images (default 300).")
    ap.add_argument("--backbone", default="efficientnet-lite0")
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--generated", action="store_true", help="Generated 300x400 JPEGs instead of fashion-small's.")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from stylelens import Embedder, build_index

    work = Path(tempfile.mkdtemp(prefix="stylelens-feed-bench-"))
    try:
        files = images(work / "catalog", args.n, args.generated)
        server, base = serve_elsewhere(work / "catalog")
        feed = work / "catalog" / "google.tsv"
        rows = ["id\ttitle\timage_link\tavailability\tprice"] + [
            f"{p.stem}\tItem {p.stem}\t{base}/{p.name}\tin_stock\t19.90 EUR" for p in files]
        feed.write_text("\n".join(rows) + "\n")
        feed_url = f"{base}/google.tsv"
        folder = work / "folder-only"
        folder.mkdir()
        for p in files:
            os.link(p, folder / p.name)
        embedder = Embedder(args.backbone, args.weights, runtime=args.runtime)
        embedder.embed([files[0]])  # load and warm the model outside the timed runs
        common = dict(embedder=embedder, progress=False, allow_private_hosts=True)
        rates: dict[str, list[float]] = {"folder": [], "feed": []}
        refresh = None
        for r in range(args.repeats):
            for kind in ("folder", "feed"):
                out = work / f"index-{kind}-{r}"
                report = build_index(folder if kind == "folder" else feed_url, out, **common)
                assert report.indexed == len(files) and not report.errors, report.summary()
                rates[kind].append(report.images_per_s)
            started = time.perf_counter()
            again = build_index(feed_url, work / f"index-feed-{r}", **common)
            refresh = {"seconds": round(time.perf_counter() - started, 2), "indexed": again.indexed,
                       "unchanged": again.unchanged}
            started = time.perf_counter()
            build_index(folder, work / f"index-folder-{r}", **common)
            refresh["folder_seconds"] = round(time.perf_counter() - started, 2)
        server.kill()
        best = {kind: max(values) for kind, values in rates.items()}
        result = {"images": len(files), "backbone": embedder.spec.name, "runtime": embedder.runtime_name,
                  "folder_img_s": round(best["folder"], 1), "feed_img_s": round(best["feed"], 1),
                  "feed_vs_folder": round(best["feed"] / best["folder"], 3), "all_runs": rates, "refresh": refresh,
                  "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
        print(f"{'source':<28}{'img/s (best of ' + str(args.repeats) + ')':>22}")
        print(f"{'folder of JPEG files':<28}{best['folder']:>22.1f}")
        print(f"{'feed over local HTTP':<28}{best['feed']:>22.1f}")
        print(f"feed / folder = {best['feed'] / best['folder']:.1%}; refresh with nothing changed: "
              f"{refresh['seconds']} s ({refresh['unchanged']} unchanged, {refresh['indexed']} embedded; the folder's "
              f"{refresh['folder_seconds']} s)")
        print(json.dumps(result))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
