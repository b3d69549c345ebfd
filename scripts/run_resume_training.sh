#!/usr/bin/env bash
# Resume training from a checkpoint with the settings of the original system's resume-training guide (its
# Vietnamese "Hướng dẫn Resume Training" document): batch 32, gradient accumulation 2, mixed precision and
# fast validation.
#   ./run_resume_training.sh <checkpoint> <annotations> <images> [batch=32] [epochs=100]
# <checkpoint> may be a file or a folder (the newest valid checkpoint in it is used).
# Extra flags after the five positional arguments are passed on to `fashionrec resume`.
set -euo pipefail

usage() {
    echo "usage: $0 <checkpoint_path> <data_file> <data_folder> [batch=32] [epochs=100] [extra resume flags...]" >&2
    exit 2
}

[ $# -ge 3 ] || usage
checkpoint=$1 annotations=$2 images=$3
batch=${4:-32}
epochs=${5:-100}
shift $(( $# < 5 ? $# : 5 ))

[ -e "$checkpoint" ] || { echo "error: Checkpoint not found: $checkpoint" >&2; exit 2; }
[ -d "$annotations" ] || { echo "error: annotations folder not found: $annotations" >&2; exit 2; }
[ -d "$images" ] || { echo "error: images folder not found: $images" >&2; exit 2; }
[[ "$batch" =~ ^[1-9][0-9]*$ ]] || { echo "error: batch must be a positive integer, got '$batch'" >&2; exit 2; }
[[ "$epochs" =~ ^[1-9][0-9]*$ ]] || { echo "error: epochs must be a positive integer, got '$epochs'" >&2; exit 2; }

repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "$repo/venv/bin/activate" ]; then
    # shellcheck disable=SC1091
    source "$repo/venv/bin/activate"
fi

echo "Resume training"
echo "  checkpoint:            $checkpoint"
echo "  annotations:           $annotations"
echo "  images:                $images"
echo "  batch:                 $batch"
echo "  epochs (total):        $epochs"
echo "  gradient accumulation: 2"
echo "  mixed precision:       on"
echo "  fast validation:       on"

exec python -m fashionrec resume \
    --checkpoint "$checkpoint" --path-file "$annotations" --path-folder "$images" \
    --batch "$batch" --epochs "$epochs" --gradient-accumulation 2 --mixed-precision --fast-validation "$@"
