#!/usr/bin/env bash
# Install everything the tests need from scratch, then run the whole test suite.
# Usage: scripts/test.sh [pytest options]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh all
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "note: chromium is not installed; the browser tests will be skipped (apt-get install chromium)" >&2
    fi
fi
# PostgreSQL 15 for the replica tests (tests/test_replica.py starts its own server with initdb/pg_ctl).
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
        echo "note: PostgreSQL is not installed; the replica tests will be skipped (apt-get install postgresql)" >&2
    fi
fi
# Debian keeps initdb and pg_ctl out of PATH.
for bin in /usr/lib/postgresql/*/bin; do
    [ -d "$bin" ] && PATH="$PATH:$bin"
done
export PATH
# The layers contract (pyproject.toml, [tool.importlinter]): no upward import, no cycle.
.venv/bin/lint-imports --no-cache
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "error: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
