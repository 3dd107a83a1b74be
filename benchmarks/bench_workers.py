"""Folds in parallel processes against one process with all threads, on this machine's cores:
``run_experiments(..., workers=N)`` on CK+-shaped data (the demo set by default, or a CK+ path),
the same folds and configuration each way.

    python benchmarks/bench_workers.py                       # demo CK+-shaped set, 4 folds, vgg19
    python benchmarks/bench_workers.py --data ../shared/data/CK+48.zip --scale cpu --epochs 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lkr.cpu import available_cores, cpu_name  # noqa: E402
from lkr.experiments import run_experiments  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="demo-ckplus")
    ap.add_argument("--config", default="vgg19")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--scale", default="full")
    args = ap.parse_args()
    cores = available_cores()
    print(f"{cpu_name()}, {cores} cores: {args.folds} folds of {args.config} on {args.data}")
    for workers in (1, cores):
        torch.set_num_threads(cores)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run_experiments(args.data, tmp, [args.config], folds=list(range(args.folds)), epochs=args.epochs,
                            scale=args.scale, device="cpu", workers=workers, progress=False)
            wall = time.perf_counter() - t0
        print(f"workers={workers} ({cores // workers} threads each): {wall:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
