#!/usr/bin/env bash
# Create .venv in the repository and install stylelens into it (editable) with the extras given.
# Usage: scripts/setup.sh [EXTRAS]   e.g. scripts/setup.sh all   (default: offline,fast,ann)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-offline,fast,ann}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch/torchvision pinned: the versions tested here (and served from local disk on the build machines).
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[${extras}]"
echo "stylelens installed in .venv with extras [${extras}]"
