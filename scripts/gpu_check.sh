#!/usr/bin/env bash
# The CUDA checks, for a machine with one GPU: the tests marked `gpu` (tests/gpu: SIGKILL + resume bit-exact
# with --deterministic, bf16, fp16 + GradScaler, --compile, the OOM fallback under a memory cap), then
# benchmarks/gpu_paper.py (paper preset samples/s and peak memory), in under 8 minutes; one summary table at
# the end. Exit status 1 when a check failed. Without CUDA it says so and exits 0.
#
#   bash scripts/gpu_check.sh
#   GPU_PAPER_VARIANTS=fp32,bf16,bf16+compile bash scripts/gpu_check.sh     # adds 2-3 min of compilation
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-venv/bin/python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: CUDA is not available on this machine: no GPU check ran (the gpu tests skip themselves)"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
started=$SECONDS

echo "== tests marked gpu (at most 300 s)"
timeout 300 "$PY" -m pytest -m gpu tests/gpu -q -p no:cacheprovider --junitxml="$work/tests.xml"
tests_rc=$?

echo "== benchmarks/gpu_paper.py (at most 150 s)"
timeout 150 "$PY" benchmarks/gpu_paper.py --variants "${GPU_PAPER_VARIANTS:-fp32,bf16}" --budget-s 60 \
    | tee "$work/paper.txt"
paper_rc=${PIPESTATUS[0]}

"$PY" - "$work/tests.xml" "$work/paper.txt" "$tests_rc" "$paper_rc" "$((SECONDS - started))" <<'EOF'
"""One table: each test's outcome and time, then each benchmark variant's figures."""
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

tests_xml, paper_txt, tests_rc, paper_rc, elapsed = sys.argv[1:]
rows = []
if Path(tests_xml).exists():
    for case in ET.parse(tests_xml).iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                message = (node.get("message") or "").splitlines()
                outcome = f"{tag}: {message[0][:80]}" if message else tag
        rows.append((f"test {case.get('name')}", outcome, f"{float(case.get('time', 0)):.1f} s"))
else:
    rows.append(("tests", f"no report (pytest exit {tests_rc}, timed out?)", ""))
bench = [line for line in Path(paper_txt).read_text().splitlines() if line.startswith("| ") and "---" not in line]
for line in bench[1:]:  # after the header row
    cells = [c.strip() for c in line.strip("|").split("|")]
    variant, samples, _ms, _vs, peak, _weights, _first, note = (cells + [""] * 8)[:8]
    rows.append((f"gpu_paper {variant}", note or "ran", f"{samples} samples/s, peak {peak} GiB"))
if not bench:
    rows.append(("gpu_paper", f"no table (exit {paper_rc}, timed out?)", ""))
print("\n| check | result | figures |\n|---|---|---|")
for row in rows:
    print("| " + " | ".join(row) + " |")
print(f"\ngpu_check: {elapsed} s in all; tests exit {tests_rc}, gpu_paper exit {paper_rc}")
EOF

[ "$tests_rc" -eq 0 ] && [ "$paper_rc" -eq 0 ]
