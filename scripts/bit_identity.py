"""Weights of the same run trained by this kit and by an earlier commit's: bit-identical or not.

Issue 14 moved the run folder into its own module and split the trainer into named steps; it
was to change no number. This trains demo LKRNet runs (random triplets, masks, augmentation, selection
all exercised; a FER2013-shaped set and fold 1 of a CK+-shaped one) with this checkout and with ``--ref`` (default ``a7965bd``, the commit
before the refactor) checked out in a temporary git worktree, each in a fresh interpreter with
one thread, and compares a SHA-256 of the final weights (and the per-epoch losses)::

    python scripts/bit_identity.py                 # a7965bd against this checkout, 2 epochs
    python scripts/bit_identity.py --ref HEAD~3 --epochs 3

The later kit added fields whose defaults differ from the old behaviour (``cpu_precision``,
``triplet_mining``, ``mask_pool``, ``select_crops``): they are set to the old behaviour
(fp32, random triplets, the grid mask, ten-crop selection), and channels-last is off on both
sides. Threads: the later trainer sets its threads per run (``--threads``), the old one used
torch's; both get 1. Exit status 0 when the hashes agree, 1 when they differ.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import hashlib, inspect, json, sys, tempfile
import torch
torch.set_num_threads(1)
import lkr, lkr.config
from lkr.demo import make_demo
from lkr.train import config_for, train
fields = lkr.config.Config.__dataclass_fields__
shape = sys.argv[2]
ds = make_demo(shape, n=400 if shape == "fer2013" else 240)
kw = dict(epochs=int(sys.argv[1]), channels_last=False, seed=0, warmup_epochs=0, schedule="cosine")
old_behaviour = dict(cpu_precision="fp32", triplet_mining="random", mask_pool="grid", select_crops="ten")
kw.update({k: v for k, v in old_behaviour.items() if k in fields})
cfg = config_for(ds, "lkrnet", **kw)
extra = {"threads": 1} if "threads" in inspect.signature(train).parameters else {}
if shape == "ckplus":
    extra.update(fold=1, folds=5)
with tempfile.TemporaryDirectory() as d:
    m = train(ds, cfg, d, device="cpu", progress=False, **extra)
    hist = json.load(open(f"{d}/history.json"))
    sd = torch.load(f"{d}/checkpoint.pt", map_location="cpu", weights_only=True)["model"]
h = hashlib.sha256()
for k in sorted(sd):
    h.update(k.encode())
    h.update(sd[k].detach().contiguous().numpy().tobytes())
print(json.dumps({"kit": lkr.__file__, "sha256": h.hexdigest(), "accuracy": m["accuracy"],
                  "loss": [r["loss"] for r in hist], "threads": torch.get_num_threads()}))
"""


def run_kit(root: Path, epochs: int, shape: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root), "LKR_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(epochs), shape], cwd=root, env=env, capture_output=True,
                         text=True)
    if out.returncode:
        last = (out.stderr.strip().splitlines() or ["no message"])[-1]
        raise SystemExit(f"bit_identity: the run with {root} failed: {last}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(r["kit"]).resolve().is_relative_to(root.resolve()):  # the kit of this side, not another
        raise SystemExit(f"bit_identity: the run meant for {root} imported {r['kit']}")
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default="a7965bd", help="the earlier commit (default a7965bd)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--shapes", nargs="+", default=["fer2013", "ckplus"], choices=["fer2013", "ckplus"],
                    help="demo sets: FER2013-shaped (official splits) and CK+-shaped (fold 1 of 5)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wt = Path(tmp) / "old"
        made = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(wt), args.ref],
                              capture_output=True, text=True)
        if made.returncode:
            raise SystemExit(f"bit_identity: --ref {args.ref}: {(made.stderr.strip().splitlines() or ['failed'])[-1]}")
        try:
            old = {s: run_kit(wt, args.epochs, s) for s in args.shapes}
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(wt)], capture_output=True)
    new = {s: run_kit(REPO, args.epochs, s) for s in args.shapes}
    same = all(old[s]["sha256"] == new[s]["sha256"] for s in args.shapes)
    for name, r, s in [(n, r[s], s) for s in args.shapes for n, r in ((args.ref, old), ("this checkout", new))]:
        print(f"{s:>7} {name:>14} ({Path(r['kit']).parent.parent}): weights sha256 {r['sha256'][:16]}  losses {[round(x, 6) for x in r['loss']]}  "
              f"accuracy {r['accuracy']:.3f}  threads {r['threads']}")
    print("bit-identical weights" if same else "the weights DIFFER")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
