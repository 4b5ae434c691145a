#!/usr/bin/env bash
# Create bench/.seed-venv (tensorflow-cpu + scikit-learn) for seed_bench.py. Safe to re-run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$(dirname "$here")/.seed-venv"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
echo "seed venv ready: $venv"
echo "run: $venv/bin/python $here/seed_bench.py --help"
