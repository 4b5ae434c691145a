"""The server's memory stays bounded under hostile uploads: ten concurrent 49-megapixel PNGs."""

import io
import os
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image
from service_fixtures import build_demo_index, free_port

pytestmark = pytest.mark.slow
psutil = pytest.importorskip("psutil")

RSS_GROWTH_BOUND = 1200 * 2**20  # 10 decodes at once took 7.3 GB before the decode gate and pixel budget


def big_png() -> bytes:
    """7000 x 7000 pixels (49 MP, under the 50 MP bomb limit) that compress to a few hundred KB."""
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 255, (70, 70, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(np.tile(tile, (100, 100, 1))).save(out, "PNG", optimize=False, compress_level=9)
    return out.getvalue()


def test_ten_concurrent_49_megapixel_uploads_keep_the_server_rss_bounded(tmp_path):
    index = build_demo_index(tmp_path, n=12)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "stylelens", "serve", str(index), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        proc = psutil.Process(server.pid)
        baseline = proc.memory_info().rss
        png = big_png()
        assert len(png) < 10 * 2**20
        peak, stop = [baseline], threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        answers = []

        def upload():
            answers.append(httpx.post(f"{url}/api/search", files={"image": ("big.png", png, "image/png")}, timeout=300).status_code)

        uploads = [threading.Thread(target=upload) for _ in range(10)]
        for t in uploads:
            t.start()
        for t in uploads:
            t.join()
        stop.set()
        sampler.join()
        assert answers == [200] * 10
        growth = peak[0] - baseline
        print(f"server RSS growth under 10 concurrent 49 MP uploads: {growth / 2**20:.0f} MB")
        assert growth < RSS_GROWTH_BOUND, f"server RSS grew by {growth / 2**20:.0f} MB"
    finally:
        server.terminate()
        server.wait(timeout=30)
