#!/usr/bin/env bash
# The main job: install, index a catalog (default ../shared/data/fashion-small), show a sample search,
# then serve the web page on http://127.0.0.1:8000/.  Usage: scripts/demo.sh [CATALOG_DIR] [stylelens demo options]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh offline,fast,ann
exec .venv/bin/stylelens demo "$@"
