#!/usr/bin/env bash
# The paper's scale on a bare GPU machine, in one call (scripts/gpu_run.py says what it runs and
# in which order). Needs, in the checkout: .data/fer2013.tar.xz (the zip packed with
# `gpu_run.py --pack-data`: the zip itself does not fit the carry) and .data/CK+48.zip, .data/fer2013-landmarks.npz and .data/ckplus-landmarks.npz (scripts/export_landmarks.py,
# on a CPU: the GPU image has no facenet-pytorch), and .whl/ with the wheels the GPU image lacks
# (grad-cam, ttach). Everything it returns goes to $OUT (default out/gpu): at most 7 files.
#
#   bash scripts/gpu_run.sh [args for scripts/gpu_run.py]              # the GPU call
#   PYTHON=.venv/bin/python bash scripts/gpu_run.sh --dry-run --out /tmp/dry   # the same on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-out/gpu}
export OUT
mkdir -p "$OUT"
# (find_spec: whether they are there, without importing torch twice)
if ! "$PY" -c "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, ('pytorch_grad_cam', 'ttach'))))"; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "gpu_run.sh: error: no pytorch_grad_cam here and no wheels in .whl/ (docs/gpu-runs.md: carry .whl)" >&2
    exit 2
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 LKR_CACHE_DIR=${LKR_CACHE_DIR:-/tmp/lkr-cache}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"; } \
  | tee "$OUT/log.txt"
"$PY" scripts/gpu_run.py --out "$OUT" "$@" 2>&1 | tee -a "$OUT/log.txt"
