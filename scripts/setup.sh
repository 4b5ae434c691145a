#!/usr/bin/env bash
# Create .venv in the repository and install stylelens into it (editable) with the extras given.
# Usage: scripts/setup.sh [EXTRAS]   e.g. scripts/setup.sh all   (default: offline,fast,ann)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-offline,fast,ann}"
# A full disk fails pip deep in its output: say it first, in one line (the venv with torch is about 7 GB).
need_gb=8
if [ ! -d .venv/lib ] || ! ls .venv/lib/python*/site-packages/torch >/dev/null 2>&1; then
    free_gb=$(df -Pk . | awk 'NR==2 {print int($4 / 1048576)}')
    if [ "${free_gb:-0}" -lt "$need_gb" ]; then
        echo "error: only ${free_gb} GB free on $(df -P . | awk 'NR==2 {print $6}'); installing needs about ${need_gb} GB (torch alone takes 5.6 GB). Free some space and run this again." >&2
        exit 1
    fi
fi
# One line per step with its time: a first install takes minutes, and pip -q alone shows nothing meanwhile.
step() {
    local what="$1"; shift
    local start=$SECONDS
    echo "setup: ${what} ..."
    "$@"
    echo "setup: ${what}: done in $((SECONDS - start)) s"
}
if [ ! -x .venv/bin/python ]; then
    step "creating .venv" python3 -m venv .venv
fi
step "1/3 upgrading pip" .venv/bin/python -m pip install -q --upgrade pip
# torch/torchvision pinned: the versions tested here (and served from local disk on the build machines).
step "2/3 installing torch and torchvision (the largest step: a few minutes the first time)" \
    .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
step "3/3 installing stylelens with extras [${extras}]" .venv/bin/python -m pip install -q -e ".[${extras}]"
echo "stylelens installed in .venv with extras [${extras}] in ${SECONDS} s"
