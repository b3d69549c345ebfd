#!/usr/bin/env bash
# Create venv/ (where the original system's resume-training guide, its Vietnamese "Hướng dẫn Resume Training"
# document, expects it) and install fashionrec into it with the given extras.
#   scripts/setup_env.sh [EXTRAS]      e.g. scripts/setup_env.sh serve,test
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-serve}
python=${PYTHON:-python3}
[ -x venv/bin/python ] || "$python" -m venv venv
venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned to the release this project is tested with (its CUDA build also runs on CPUs).
venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
venv/bin/python -m pip install -q -e ".[$extras]"
