"""FER2013 on one GPU: train configurations on Training, select each one's epoch on PublicTest,
report PrivateTest with ten-crop, and write the small artifacts after each configuration.

Usage (see scripts/gpu_fer2013.sh, which prepares a bare GPU machine and calls this):

    python scripts/gpu_fer2013.py --data .data/fer2013.zip --landmarks .data/fer2013-landmarks.npz \
        --out $OUT --configs lkrnet,vgg19 --budget-s 400

``--epochs auto`` (the default) measures one epoch of each configuration first and then gives
every configuration the same number of epochs, the most that fits ``--budget-s`` of training.
Landmarks can be computed beforehand on a CPU (``lkr landmarks``) and travel as a small file
keyed by image path (``--landmarks``), since the GPU machine may not have facenet-pytorch.
Each configuration's artifacts are packed as ``OUT/<config>.tar.gz`` as soon as it finishes, so
a run cut short still returns what finished; a summary table is printed last.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from lkr.experiments import config_of  # noqa: E402
from lkr.readers import load_dataset  # noqa: E402
from lkr.results import export_gradcam, export_run, gradcam_faces  # noqa: E402
from lkr.train import _parse_set, train  # noqa: E402


def attach_landmarks_file(ds, path: Path):
    """Attach boxes/points/detected from a file written by ``export_landmarks`` (matched by path)."""
    with np.load(path, allow_pickle=False) as z:
        where = {p: i for i, p in enumerate(z["paths"].tolist())}
        idx = np.array([where[p] for p in ds.relative_paths().tolist()])
        ds.boxes, ds.points, ds.detected = z["boxes"][idx], z["points"][idx], z["detected"][idx].astype(bool)
    # The template rows are set here again (Training faces only), so a file exported when the
    # template was the mean of all splits gives the same masks as attach_landmarks now does.
    from lkr.landmarks import dataset_template

    tb, tp, _ = dataset_template(ds, ds.boxes, ds.points, ds.detected)
    ds.boxes[~ds.detected], ds.points[~ds.detected] = tb, tp
    return ds


def pack(out: Path, name: str, result: Path) -> Path:
    """``OUT/<name>.tar.gz`` holding the configuration's results folder (small files only)."""
    dst = out / f"{name}.tar.gz"
    with tarfile.open(dst, "w:gz") as tar:
        tar.add(result, arcname=name)
    return dst


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=".data/fer2013.zip")
    ap.add_argument("--landmarks", default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", default="/tmp/lkr-runs")
    ap.add_argument("--results", default="/tmp/lkr-results/fer2013")
    ap.add_argument("--configs", default="lkrnet,vgg19")
    ap.add_argument("--epochs", default="auto")
    ap.add_argument("--budget-s", type=float, default=400.0, help="training seconds for all configs (auto)")
    ap.add_argument("--max-epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], help="Config FIELD=VALUE for every config")
    ap.add_argument("--subset", type=int, default=0, help="CPU trial: keep this many images per split")
    ap.add_argument("--gradcam", type=int, default=16, help="Grad-CAM arrays of this many PrivateTest faces")
    args = ap.parse_args()
    out, runs = Path(args.out), Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device: {torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'}  torch {torch.__version__}",
          flush=True)

    t0 = time.perf_counter()
    ds = load_dataset(args.data)
    if args.landmarks:
        ds = attach_landmarks_file(ds, Path(args.landmarks))
    if args.subset:
        rng = np.random.default_rng(0)
        keep = np.concatenate([rng.permutation(np.flatnonzero(ds.splits == s))[:args.subset] for s in ds.split_names])
        ds = ds.subset(np.sort(keep))
    print(f"data: {len(ds)} images, splits {ds.summary()['splits']}, loaded in {time.perf_counter() - t0:.1f}s",
          flush=True)

    names = args.configs.split(",")
    overrides = {**_parse_set(args.set), "seed": args.seed}
    cfgs = {n: config_of(ds, n, **overrides) for n in names}

    # Epochs: measured, the same for every configuration, fitted to the budget.
    if args.epochs == "auto":
        per_epoch = {}
        for n, cfg in cfgs.items():
            probe = cfg.__class__(**{**cfg.to_dict(), "epochs": 2, "eval_every": 1})
            shutil.rmtree(runs / f"probe-{n}", ignore_errors=True)
            train(ds, probe, runs / f"probe-{n}", device=dev, progress=False, resume=False, stop_after=2)
            hist = json.loads((runs / f"probe-{n}" / "history.json").read_text())
            per_epoch[n] = hist[-1]["seconds"] + 0.6  # + selection eval and bookkeeping
            print(f"probe {n}: {hist[-1]['seconds']:.2f}s/epoch ({hist[-1]['images_per_s']:.0f} images/s)", flush=True)
        epochs = int(min(args.max_epochs, math.floor(args.budget_s / sum(per_epoch.values()))))
        epochs = max(epochs, 1)
    else:
        epochs = int(args.epochs)
    print(f"epochs per configuration: {epochs}", flush=True)

    rows = []
    for n, cfg in cfgs.items():
        cfg = cfg.__class__(**{**cfg.to_dict(), "epochs": epochs, "checkpoint_every": max(epochs, 1)})
        run = runs / n
        shutil.rmtree(run, ignore_errors=True)
        t0 = time.perf_counter()
        m = train(ds, cfg, run, device=dev, progress=True, resume=False, data_ref=args.data)
        wall = time.perf_counter() - t0
        result = export_run(run, Path(args.results) / n)
        if args.gradcam:
            test = np.flatnonzero(ds.splits == cfg.test_split)
            export_gradcam(run, result, ds, gradcam_faces(ds, test, n=args.gradcam, seed=0), device=str(dev))
        pack(out, n, result)
        hist = json.loads((run / "history.json").read_text())
        rows.append((n, m["accuracy"], m["select_accuracy"], m["best_epoch"], epochs,
                     float(np.median([h["seconds"] for h in hist])), float(np.median([h["images_per_s"] for h in hist])),
                     m["eval_seconds"], wall, m["per_class"]))
        (out / "summary.json").write_text(json.dumps([dict(zip(
            ["config", "private_test", "public_test", "best_epoch", "epochs", "s_per_epoch", "images_per_s",
             "eval_s", "wall_s", "per_class"], r)) for r in rows], indent=2))

    print(f"\ntotal wall {time.perf_counter() - t_start:.0f}s on "
          f"{torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'}")
    print(f"{'config':<12}{'PrivateTest':>12}{'PublicTest':>11}{'best':>6}{'epochs':>7}{'s/ep':>7}{'img/s':>8}"
          f"{'eval s':>8}{'wall s':>8}")
    for n, acc, sel, be, ep, spe, ips, ev, wall, _ in rows:
        print(f"{n:<12}{100 * acc:>11.2f}%{100 * sel:>10.2f}%{be:>6}{ep:>7}{spe:>7.2f}{ips:>8.0f}{ev:>8.2f}{wall:>8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
