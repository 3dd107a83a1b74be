#!/usr/bin/env bash
# FER2013 on a bare GPU machine: VGG19 and LKRNet, epochs selected on PublicTest, PrivateTest
# reported with ten-crop. Needs, in the checkout: .data/fer2013.zip (a copy of the archive),
# .data/fer2013-landmarks.npz (from `python scripts/export_landmarks.py`, computed on a CPU), and
# .whl/ with the wheels the GPU image lacks (grad-cam, ttach). Artifacts go to $OUT (default out/gpu).
#
#   bash scripts/gpu_fer2013.sh [extra args for scripts/gpu_fer2013.py]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
if ! python3 -c "import pytorch_grad_cam" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 LKR_CACHE_DIR=${LKR_CACHE_DIR:-/tmp/lkr-cache}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 scripts/gpu_fer2013.py --data .data/fer2013.zip --landmarks .data/fer2013-landmarks.npz \
  --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
