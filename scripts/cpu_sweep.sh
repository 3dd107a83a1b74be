#!/usr/bin/env bash
# The measured sweep that chose the CPU scale (docs/cpu-runs.md): VGG19 on real FER2013 at two
# widths for about the same wall time each, epochs selected on PublicTest (centre crop), the
# decision taken on PublicTest only. Runs go to ~/lkr-runs/sweep (resumable: run it again).
#   bash scripts/cpu_sweep.sh path/to/fer2013.zip
set -euo pipefail
data=${1:?usage: bash scripts/cpu_sweep.sh path/to/fer2013.zip}
root=${LKR_RUNS:-$HOME/lkr-runs}/sweep
py=${PYTHON:-.venv/bin/python}
common=(--data "$data" --variant vgg19 --schedule cosine --warmup-epochs 1 --lr 0.05 --quiet
        --set select_crops=center --set eval_every=1)
for spec in "0.25 12" "0.125 28"; do
  set -- $spec
  out="$root/vgg19-w$1-e$2"
  /usr/bin/time -f "$out: %e s wall" "$py" -m lkr train "${common[@]}" --width "$1" --epochs "$2" --out "$out"
done
