#!/usr/bin/env bash
# Set up venv/ and run the whole pipeline on generated demo data (CPU, a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh serve,landmarks
exec venv/bin/fashionrec demo "$@"
