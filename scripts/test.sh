#!/usr/bin/env bash
# Set up venv/ with every extra, Chromium for the browser test, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
fi
bash scripts/setup_env.sh serve,qdrant,postgres,landmarks,test
venv/bin/ruff check src tests benchmarks
# One torch thread per process: on a small shared machine two OpenMP threads are often several times slower.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# Two pytest workers, whole files each (a file's fixtures are built once); `-n 0` after this runs in one process.
exec venv/bin/python -m pytest tests -n "${FASHIONREC_TEST_WORKERS:-2}" --dist loadfile "$@"
