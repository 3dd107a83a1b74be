"""MTCNN landmark extraction speed on FER2013 faces (all passes, as ``lkr landmarks`` runs them).

    python benchmarks/bench_landmarks.py --data ../shared/data/fer2013.zip --n 2000
    python benchmarks/bench_landmarks.py --data ../shared/data/fer2013.zip --device cuda

Without ``--data`` it uses the synthetic demo faces. Prints a table, writes JSON
(benchmarks/results/landmarks-<device>.json). The cache is bypassed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lkr.landmarks import detect_landmarks  # noqa: E402
from lkr.readers import load_dataset  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="demo")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    ds = load_dataset(args.data)
    idx = np.sort(np.random.default_rng(0).choice(len(ds), size=min(args.n, len(ds)), replace=False))
    images = ds.images[idx]
    t0 = time.perf_counter()
    _, _, detected = detect_landmarks(images, device=args.device, progress=False)
    dt = time.perf_counter() - t0
    import torch

    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    row = {"data": ds.name, "images": len(images), "seconds": dt, "images_per_s": len(images) / dt,
           "detected": float(detected.mean()), "device": name, "date": time.strftime("%Y-%m-%d")}
    path = Path(args.json or Path(__file__).parent / "results" / f"landmarks-{args.device.split(':')[0]}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, indent=2))
    print(f"{'data':<14}{'device':<8}{'images':>8}{'seconds':>9}{'images/s':>10}{'detected':>10}")
    print(f"{row['data']:<14}{args.device:<8}{row['images']:>8}{dt:>9.1f}{row['images_per_s']:>10.1f}"
          f"{100 * row['detected']:>9.1f}%")
    full = 35887 / row["images_per_s"]
    print(f"all of FER2013 at this rate: {full / 60:.1f} min")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
