"""The positive control (:mod:`lkr.control`): every arm over seeds on the synthetic control set,
into ``results/control/synthetic/<arm>/seed<s>/`` (small files), with the share of test
predictions that follow the spurious cue in each ``metrics.json``.

    python scripts/control.py                      # every arm (11) x seeds 0-4, 2 workers of 1 thread
    python scripts/control.py --seeds 0 1 --arms vgg19 lkrnet
    python scripts/control.py --ck ../shared/data/CK+48.zip   # the same arms on real faces (fold 0)

With ``--ck``: CK+48 with a spurious border cue (:func:`lkr.control.with_cue`) that follows the
label on fold 0's training and selection subjects and is random on its test subjects; every arm
at the kit's CPU scale (1/8 width, 50 epochs, no flips), fold 0 of 10 subject folds drawn with
the seed, into ``results/control/ckplus/``.

Each seed draws the set and the network anew. On the synthetic set every arm trains the same
thin VGG (the demo's stack), the same epochs, batch and images per step (semi-hard mining inside the batch for
LKRNet), selects its epoch on PublicTest (distributed as the training images: the cue follows the
label there) and is reported once on PrivateTest (the cue at random), five-crop without flips
(as it trained). Runs go to ``~/lkr-runs/runs/control/`` and resume when started again; a
finished run started again is tested again from its selected weights (nothing retrained), with
this kit's test crops.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from lkr.config import Config  # noqa: E402
from lkr.control import ARMS, cue_classes, make_control, with_landmarks  # noqa: E402

CONTROL_OVERRIDES = {
    "vgg_cfg": (8, "M", 16, "M", 32, "M", 64, "M", 64, "M"), "width": 1.0, "fc_dims": (256, 256),
    "epochs": 60, "batch_size": 28, "lr": 0.05, "schedule": "cosine", "warmup_epochs": 1, "dropout": 0.1,
    "flip_p": 0.0,  # a flip would move the cue to another class's place and mirror the codes
    "triplet_mining": "semi_hard", "select_crops": "center", "eval_every": 1, "cpu_precision": "fp32",
    "embed_samples": 100, "scale": "custom",
}
"""The control's training preset: the demo's thin stack (5 convs, not VGG19's 16), 60 epochs of 10
steps of 28 images, no horizontal flip."""


def arm_config(arm: str, seed: int) -> Config:
    spec = {k: v for k, v in ARMS[arm].items() if k not in ("variant", "landmarks")}
    return Config.for_variant(ARMS[arm]["variant"], **CONTROL_OVERRIDES, **spec, seed=seed)


def ck_arm_config(ds, arm: str, seed: int) -> Config:
    from lkr.train import config_for

    spec = {k: v for k, v in ARMS[arm].items() if k not in ("variant", "landmarks")}
    return config_for(ds, ARMS[arm]["variant"], scale="cpu", **spec, seed=seed, flip_p=0.0)


def branch_accuracies(run: Path, ds) -> dict:
    """Test accuracy of each branch's own logits (the prediction is their mean), with the crops the
    run is tested with (five-crop: the control trains without flips), so the table can say which
    branch does the work; {} for a single-branch run."""
    import torch

    from lkr.augment import ten_crop
    from lkr.evaluate import test_crops
    from lkr.prepare import prepare_data
    from lkr.runfolder import load_run_model

    model, cfg, info = load_run_model(run)
    if not cfg.local_branch:
        return {}
    prepared = prepare_data(ds, cfg, fold=info.get("fold"), folds=info.get("folds", 10), device="cpu")
    test = prepared.index["test"]
    flip = test_crops(cfg) == "ten"
    out = {"global": [], "local": []}
    with torch.no_grad():
        for s in range(0, len(test), 64):
            idx = test[s:s + 64]
            x, m = ten_crop(prepared.images[idx], prepared.masks[idx], crop=cfg.crop, flip=flip)
            n, b = x.shape[:2]
            o = model(x.reshape(n * b, *x.shape[2:]), m.reshape(n * b, *m.shape[2:]))
            for k in out:
                out[k].append(torch.softmax(o[f"logits_{k}"].float(), 1).view(n, b, -1).mean(0).argmax(1))
    labels = prepared.labels[test]
    return {f"accuracy_{k}_branch": float((torch.cat(v) == labels).float().mean()) for k, v in out.items()}


def slim_export(dest: Path) -> None:
    """Keep a control run's committed files small (55 runs or more): config, metrics and the
    predictions without their probabilities; the per-epoch history stays in the run folder."""
    from lkr.runfolder import save_npz

    (dest / "history.json").unlink(missing_ok=True)
    with np.load(dest / "predictions.npz") as z:
        keep = {k: z[k] for k in z.files if k != "probs"}
    save_npz(dest / "predictions.npz", **keep)


def run_arm(arm: str, seed: int, runs: str, results: str, device: str = "cpu", ck: str | None = None) -> dict:
    """Train one arm at one seed (module level: a worker runs it); export its small files."""
    from lkr.results import export_run
    from lkr.runfolder import write_json
    from lkr.train import train

    run = Path(runs) / arm / f"seed{seed}"
    t0 = time.perf_counter()
    if ck is None:
        ds = make_control(seed)
        ds_arm = with_landmarks(ds, ARMS[arm].get("landmarks", "true"), seed)
        m = train(ds_arm, arm_config(arm, seed), run, device=device, progress=False, data_ref=f"control:{seed}")
        cues = cue_classes(ds)
    else:
        from lkr.control import ck_cue_plan, with_cue
        from lkr.folds import fold_split
        from lkr.landmarks import attach_landmarks
        from lkr.readers import load_dataset

        real = attach_landmarks(load_dataset(ck), progress=False)
        test = fold_split(real.subjects, real.labels, 0, k=10, seed=seed)["test"]  # as the run draws its folds
        ds = with_cue(real, ~test, seed)
        ds_arm = with_landmarks(ds, ARMS[arm].get("landmarks", "true"), seed)
        m = train(ds_arm, ck_arm_config(ds, arm, seed), run, device=device, fold=0, folds=10, progress=False,
                  data_ref=f"{ck} + cue")
        cues = ck_cue_plan(real.labels, ~test, len(real.class_names), seed)  # as with_cue stamped them
    z = np.load(run / "predictions.npz")
    cue = cues[z["index"]]
    m["cue_follow_rate"] = float((z["pred"] == cue).mean())  # test predictions that name the cue's class
    m["cue_agrees_with_label"] = float((cue == z["label"]).mean())  # how often the cue happens to be right
    m["control_arm"] = arm
    m["control_landmarks"] = ARMS[arm].get("landmarks", "true")
    m.update(branch_accuracies(run, ds_arm))
    write_json(run / "metrics.json", m)
    dest = Path(results) / arm / f"seed{seed}"
    export_run(run, dest, embeddings=False)
    slim_export(dest)
    return {"arm": arm, "seed": seed, "accuracy": m["accuracy"], "cue": m["cue_follow_rate"],
            "seconds": time.perf_counter() - t0}


def main() -> int:
    try:
        return _main()
    except Exception as e:  # noqa: BLE001 - a bad path or argument: one line, not a traceback
        from lkr.errors import LkrError

        if isinstance(e, (LkrError, FileNotFoundError)):
            raise SystemExit(f"control: error: {e}") from None
        raise


def _main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--runs", default=os.path.join(os.environ.get("LKR_RUNS", str(Path.home() / "lkr-runs")),
                                                   "runs", "control", "synthetic"))
    ap.add_argument("--results", default=str(REPO / "results" / "control" / "synthetic"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ck", default=None, help="CK+48: the same arms on real faces with a spurious cue (fold 0)")
    args = ap.parse_args()
    from lkr.distributed import run_jobs

    if args.ck:
        args.runs = args.runs.replace("/synthetic", "/ckplus")
        args.results = args.results.replace("/synthetic", "/ckplus")
    jobs = [{"arm": a, "seed": s} for s in args.seeds for a in args.arms]
    t0 = time.perf_counter()
    out = run_jobs(run_arm, jobs, workers=args.workers, device="cpu",
                   common={"runs": args.runs, "results": args.results, "ck": args.ck})
    for r in out:
        print(f"{r['arm']:<20} seed {r['seed']}: test {100 * r['accuracy']:.1f}%, follows the cue on "
              f"{100 * r['cue']:.1f}% ({r['seconds']:.0f} s)")
    print(json.dumps({"runs": len(out), "seconds": round(time.perf_counter() - t0)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
