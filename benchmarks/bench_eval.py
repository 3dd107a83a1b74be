"""Ten-crop evaluation time of a FER2013 PrivateTest-sized split (3,589 faces x 10 crops).

    python benchmarks/bench_eval.py                    # CPU: thin net
    python benchmarks/bench_eval.py --device cuda --width 1

Prints a table and writes JSON (benchmarks/results/eval-<device>.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lkr.config import Config  # noqa: E402
from lkr.evaluate import predict  # noqa: E402
from lkr.model import build_model  # noqa: E402
from lkr.device import resolve_device  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default=None)
    ap.add_argument("--width", type=float, default=None)
    ap.add_argument("--n", type=int, default=3589)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    dev = resolve_device(args.device)
    cpu = dev.type == "cpu"
    width = args.width if args.width is not None else (0.125 if cpu else 1.0)
    repeats = args.repeats or (1 if cpu else 5)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (args.n, 48, 48), dtype=np.uint8)).to(dev)
    masks = torch.from_numpy(rng.random((args.n, 48, 48), dtype=np.float32)).to(dev)
    rows = []
    for variant in ("vgg19", "lkrnet"):
        cfg = Config.for_variant(variant, width=width)
        model = build_model(cfg).to(dev)
        if dev.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        m = masks if cfg.local_branch else None
        predict(model, images[:256], None if m is None else m[:256], amp=cfg.amp,
                channels_last=not cpu, max_crops=10 * args.batch)  # warm-up
        times = []
        for _ in range(repeats):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            predict(model, images, m, amp=cfg.amp, channels_last=not cpu, max_crops=10 * args.batch)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        rows.append({"config": variant, "seconds": float(np.median(times)), "faces": args.n,
                     "crops_per_s": 10 * args.n / float(np.median(times))})
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    out = {"device": name, "torch": torch.__version__, "width": width, "date": time.strftime("%Y-%m-%d"),
           "rows": rows}
    path = Path(args.json or Path(__file__).parent / "results" / f"eval-{'cpu' if cpu else 'cuda'}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"device {name}, width {width}: ten-crop evaluation of {args.n} faces")
    print(f"{'config':<9}{'seconds':>9}{'crops/s':>10}")
    for r in rows:
        print(f"{r['config']:<9}{r['seconds']:>9.2f}{r['crops_per_s']:>10.0f}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
