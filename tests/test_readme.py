"""The README's Python snippet, saved as a plain script (no main guard), runs to the end."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_catalog

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def readme_snippet() -> str:
    section = ROOT.joinpath("README.md").read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_snippet_runs_as_a_plain_script(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    write_catalog(tmp_path / "catalog", n=80)
    # The snippet names product 15970 and photo.jpg: give the generated catalog both.
    feed = tmp_path / "catalog" / "products.csv"
    feed.write_text(re.sub(r"^1000,", "15970,", feed.read_text(), flags=re.M))
    (tmp_path / "catalog" / "images" / "1000.jpg").rename(tmp_path / "catalog" / "images" / "15970.jpg")
    shutil.copy(tmp_path / "catalog" / "images" / "1001.jpg", tmp_path / "photo.jpg")
    script = tmp_path / "shop.py"
    script.write_text(readme_snippet())
    # Offline here: the settings pick the backbone that needs no download (the snippet itself is unchanged).
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "STYLELENS_BACKBONE": "efficientnet-lite0", "STYLELENS_WEIGHTS": "random", "STYLELENS_RUNTIME": "torch"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("indexed 80, unchanged 0, skipped 0") and "Traceback" not in done.stderr
