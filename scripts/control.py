"""The region control (:mod:`lkr.control`): every arm over seeds (and CK+48 folds), into small
committed files.

Second design (``docs/control-design.md``; the default)::

    python scripts/control.py --set synthetic-border synthetic-inner        # every arm, seeds 0-4
    python scripts/control.py --set ckplus-border --ck ../shared/data/CK+48.zip \\
        --stages 1 --lambdas l02                                             # seeds 0-2 x 10 folds
    python scripts/control.py --collect --set ckplus-border                  # results/ from the runs

Runs go to ``~/lkr-runs/runs/control-v2/<set>/<arm>/seed<s>[/fold<f>]`` and resume when started
again (a finished run is only tested again). After the runs, each arm's runs are gathered into
``results/control-v2/<set>/<arm>/`` (``runs.json``: one record a run, with the design commit it ran
under; ``predictions.npz``: every run's test predictions and the class of each test image's
cue), merged with what is committed there. The script refuses to train while
``docs/control-design.md`` has uncommitted changes: every run names the design it ran under.

First design (``--first-design``; its committed tables are history, ``results/control/``): the
eleven arms of :data:`lkr.control.ARMS`, fold 0 on CK+48, one folder a run.

Each run is made in steps: the set (:func:`make_set`), training (:func:`train_arm`), the share of
test predictions that name the cue's class (:func:`tally_cue`), each branch's own accuracy in the
precision the run used (:func:`branch_accuracies`), and the small files (:func:`export_arm_run`).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from lkr.config import Config  # noqa: E402
from lkr.control import (ARMS, DESIGN_SETS, cue_classes, design_arms, make_control,  # noqa: E402
                         with_landmarks)

CONTROL_OVERRIDES = {
    "vgg_cfg": (8, "M", 16, "M", 32, "M", 64, "M", 64, "M"), "width": 1.0, "fc_dims": (256, 256),
    "epochs": 60, "batch_size": 28, "lr": 0.05, "schedule": "cosine", "warmup_epochs": 1, "dropout": 0.1,
    "flip_p": 0.0,  # a flip would move the cue to another class's place and mirror the codes
    "triplet_mining": "semi_hard", "select_crops": "center", "eval_every": 1, "cpu_precision": "fp32",
    "embed_samples": 100, "scale": "custom",
}
"""The control's training preset on the synthetic sets: the demo's thin stack (5 convs, not
VGG19's 16), 60 epochs of 10 steps of 28 images, no horizontal flip."""

DESIGN_DOC = "docs/control-design.md"
RUNS_ROOT = Path(os.environ.get("LKR_RUNS", str(Path.home() / "lkr-runs"))) / "runs"
CK_FOLDS = 10


def _spec(arms: dict, arm: str) -> dict:
    return {k: v for k, v in arms[arm].items() if k not in ("variant", "landmarks")}


def arm_config(arm: str, seed: int, arms: dict | None = None) -> Config:
    """An arm's configuration on a synthetic set (the thin control preset)."""
    arms = ARMS if arms is None else arms
    return Config.for_variant(arms[arm]["variant"], **CONTROL_OVERRIDES, **_spec(arms, arm), seed=seed)


def ck_arm_config(ds, arm: str, seed: int, arms: dict | None = None) -> Config:
    """An arm's configuration on CK+48: the kit's ``cpu`` scale, no flips."""
    from lkr.train import config_for

    arms = ARMS if arms is None else arms
    return config_for(ds, arms[arm]["variant"], scale="cpu", **_spec(arms, arm), seed=seed, flip_p=0.0)


def design_commit(repo: Path = REPO) -> str:
    """The commit that last changed the design document (:func:`lkr.control_results.design_commit`)."""
    from lkr.control_results import design_commit as commit_of

    return commit_of(DESIGN_DOC, repo)


# --- step 1: the set ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _ck(path: str):
    from lkr.landmarks import attach_landmarks
    from lkr.readers import load_dataset

    return attach_landmarks(load_dataset(path), progress=False)


def make_set(dataset: str, seed: int, fold: int | None = None, ck: str | None = None):
    """(the set at this seed and fold with its cue stamped in, each image's cue class as stamped,
    how to load it again). CK+48: the cue follows the label on the fold's training and
    selection subjects and is random on its test subjects (the folds drawn with the seed, as
    the run draws them)."""
    from lkr.control import ck_cue_plan, control_cues, with_cue, with_inner_cue

    if dataset.startswith("synthetic") or dataset == "synthetic":
        cue = "inner" if dataset.endswith("inner") else "border"
        return make_control(seed, cue=cue), control_cues(seed, cue), f"control:{seed}:{cue}"
    if ck is None:
        from lkr.errors import LkrError

        raise LkrError(f"{dataset} needs the CK+48 archive: give --ck path/to/CK+48.zip")
    from lkr.folds import fold_split

    real = _ck(ck)
    test = fold_split(real.subjects, real.labels, fold, k=CK_FOLDS, seed=seed)["test"]
    stamp = with_inner_cue if dataset.endswith("inner") else with_cue
    ds = stamp(real, ~test, seed)
    return ds, ck_cue_plan(real.labels, ~test, len(real.class_names), seed), f"{ck} + {dataset} cue"


# --- step 2: training --------------------------------------------------------------------------
def train_arm(ds, cfg: Config, run: Path, *, landmarks: str, seed: int, fold: int | None, device: str,
              data_ref: str, precision: dict | None = None) -> dict:
    """Train (or resume, or only test again) one arm's run; its metrics."""
    from lkr.train import train

    ds_arm = with_landmarks(ds, landmarks, seed)
    kw = {} if fold is None else {"fold": fold, "folds": CK_FOLDS}
    return train(ds_arm, cfg, run, device=device, progress=False, data_ref=data_ref, precision=precision, **kw)


# --- step 3: the cue -----------------------------------------------------------------------------
def tally_cue(run: Path, cues: np.ndarray) -> dict:
    """The share of test predictions that name the cue's class, and how often the cue happens to
    be right on the test images."""
    with np.load(run / "predictions.npz") as z:
        cue = cues[z["index"]]
        return {"cue_follow_rate": float((z["pred"] == cue).mean()),
                "cue_agrees_with_label": float((cue == z["label"]).mean())}


# --- step 4: each branch ------------------------------------------------------------------------
def branch_predictions(run: Path, ds) -> dict[str, np.ndarray]:
    """Each branch's own prediction on the test images (the run's prediction is the mean of their
    logits), through the kit's one inference loop (:func:`lkr.evaluate.predict`) with the crops and
    precision the run was tested with, in the order of its ``predictions.npz``; {} for a
    single-branch run."""
    import torch

    from lkr.device import run_bf16
    from lkr.evaluate import predict, test_crops
    from lkr.prepare import prepare_data
    from lkr.runfolder import load_run_model

    model, cfg, info = load_run_model(run)
    if not cfg.local_branch:
        return {}
    metrics = json.loads((run / "metrics.json").read_text())
    amp = run_bf16(cfg, {"precision": metrics.get("precision")}, torch.device("cpu"))
    prepared = prepare_data(ds, cfg, fold=info.get("fold"), folds=info.get("folds", CK_FOLDS), device="cpu")
    test = prepared.index["test"]
    with np.load(run / "predictions.npz") as z:
        if not np.array_equal(np.asarray(z["index"]), np.asarray(test)):
            raise ValueError(f"{run}: its predictions are not in the order of its test split")

    class Branch(torch.nn.Module):
        def __init__(self, net, key):
            super().__init__()
            self.net, self.key = net, key

        def forward(self, x, m):
            return {"logits": self.net(x, m)[f"logits_{self.key}"]}

    out = {}
    for key in ("global", "local"):
        probs, _ = predict(Branch(model, key), prepared.images[test], prepared.masks[test], crops=test_crops(cfg),
                           crop=cfg.crop, amp=amp, channels_last=bool(getattr(cfg, "channels_last", False)))
        out[f"pred_{key}"] = probs.argmax(1).numpy().astype(np.int8)
    return out


def branch_accuracies(preds: dict[str, np.ndarray], labels: np.ndarray) -> dict:
    """Test accuracy of each branch's own prediction (:func:`branch_predictions`)."""
    return {f"accuracy_{k[5:]}_branch": float((v == labels).mean()) for k, v in preds.items()}


# --- step 5: the small files --------------------------------------------------------------------
RECORD_KEYS = ("accuracy", "n", "best_epoch", "select_accuracy", "epochs", "train_seconds", "precision", "device",
               "cpu_model", "threads", "test_crops", "select_split", "test_split", "dataset", "mask_source",
               "mask_stage", "mask_band")


def export_arm_run(run: Path, m: dict, *, arm: str, seed: int, fold: int | None, landmarks: str, commit: str,
                   seconds: float) -> dict:
    """Write the run's record (``control.json``) into the run folder (:func:`run_arm` writes its
    predictions, ``control.npz``); :func:`collect` gathers both into ``results/``."""
    from lkr.runfolder import save_npz, write_json

    rec = {"arm": arm, "seed": seed, "fold": fold, "landmarks": landmarks, "design_commit": commit,
           "seconds": round(seconds, 1)}
    rec |= {k: m[k] for k in RECORD_KEYS if k in m}
    rec |= {k: m[k] for k in m if k.startswith("accuracy_") or k.startswith("cue_")}
    write_json(run / "control.json", rec)
    return rec


def run_arm(arm: str, seed: int, dataset: str, runs: str, device: str = "cpu", fold: int | None = None,
            ck: str | None = None, commit: str = "", precision: dict | None = None) -> dict:
    """One run of the second design (module level: a worker runs it), in the steps above."""
    from lkr.runfolder import save_npz, write_json

    arms = design_arms(dataset)
    run = Path(runs) / dataset / arm / f"seed{seed}" / ("" if fold is None else f"fold{fold}")
    t0 = time.perf_counter()
    before = json.loads((run / "control.json").read_text()) if (run / "control.json").is_file() else None
    ds, cues, data_ref = make_set(dataset, seed, fold, ck)
    cfg = arm_config(arm, seed, arms) if dataset.startswith("synthetic") else ck_arm_config(ds, arm, seed, arms)
    landmarks = arms[arm].get("landmarks", "true")
    m = train_arm(ds, cfg, run, landmarks=landmarks, seed=seed, fold=fold, device=device, data_ref=data_ref,
                  precision=precision)
    m |= tally_cue(run, cues)
    branches = branch_predictions(run, with_landmarks(ds, landmarks, seed))
    with np.load(run / "predictions.npz") as z:
        keep = {k: z[k] for k in ("index", "label", "pred", "subject") if k in z.files}
    m |= branch_accuracies(branches, keep["label"])
    m["control_arm"], m["control_landmarks"], m["design_commit"] = arm, landmarks, commit
    m |= {"mask_source": cfg.mask_source, "mask_stage": cfg.mask_stage, "mask_band": cfg.mask_band}
    write_json(run / "metrics.json", m)
    save_npz(run / "control.npz", **keep, **branches, cue=cues[keep["index"]].astype(np.int8))
    seconds = time.perf_counter() - t0
    if before is not None:  # a finished run tested again: it was trained under its own design, in its own time
        commit, seconds = before.get("design_commit", commit), before.get("seconds", seconds)
        m["design_commit"] = commit
        write_json(run / "metrics.json", m)
    rec = export_arm_run(run, m, arm=arm, seed=seed, fold=fold, landmarks=landmarks, commit=commit,
                         seconds=seconds)
    return rec


def collect(dataset: str, runs: Path, results: Path) -> list[str]:
    """Gather every finished run of ``dataset`` under ``runs`` into
    ``results/<arm>/{runs.json, predictions.npz}``, merged with the committed records (a run
    found in both is taken from the run folder). Returns the arms written.

    Small on purpose (many arms are committed): ``runs.json`` holds once what every run shares
    (``common``) and per run only what differs, floats to 6 digits; ``predictions.npz`` holds per
    test image and run the seed, fold, dataset index, label, prediction (and CK+ subject), in
    small integer types. Each image's cue class is not stored: the set's seed (and fold) give it
    again (:func:`make_set`; ``lkr verify`` recomputes it and the share that follows it)."""
    from lkr.control_results import read_runs
    from lkr.runfolder import save_npz, write_json

    written = []
    for arm in design_arms(dataset):
        found = sorted((runs / dataset / arm).glob("seed*/**/control.json"))
        if not found:
            continue
        dest = results / dataset / arm
        recs, preds, config = {}, {}, None
        if (dest / "runs.json").is_file():
            saved, records = read_runs(dest / "runs.json")
            with np.load(dest / "predictions.npz") as z:
                arrays = {k: z[k] for k in z.files}
            for r in records:
                key = (r["seed"], r["fold"])
                recs[key] = r
                sel = (arrays["seed"] == r["seed"]) & (arrays["fold"] == (-1 if r["fold"] is None else r["fold"]))
                preds[key] = {k: v[sel] for k, v in arrays.items() if k not in ("seed", "fold")}
            config = saved["config"]
        for f in found:
            rec = json.loads(f.read_text())
            key = (rec["seed"], rec["fold"])
            rec["precision"] = (rec.get("precision") or {}).get("precision", rec.get("precision"))
            recs[key] = rec
            with np.load(f.parent / "control.npz") as z:
                preds[key] = {k: z[k] for k in z.files if k != "cue"}
            if config is None:
                config = json.loads((f.parent / "config.json").read_text())
                config.pop("seed", None)
        keys = sorted(recs, key=lambda k: (k[0], -1 if k[1] is None else k[1]))
        cols: dict[str, list] = {}
        for k in keys:
            p = preds[k]
            n = len(p["index"])
            cols.setdefault("seed", []).append(np.full(n, k[0], np.int8))
            cols.setdefault("fold", []).append(np.full(n, -1 if k[1] is None else k[1], np.int8))
            cols.setdefault("index", []).append(p["index"].astype(np.int16))
            cols.setdefault("label", []).append(p["label"].astype(np.int8))
            cols.setdefault("pred", []).append(p["pred"].astype(np.int8))
            for k in ("pred_global", "pred_local"):  # every run of an arm has them, or none does
                if any(k in preds[x] for x in keys):
                    cols.setdefault(k, []).append(p[k].astype(np.int8) if k in p else np.full(n, -1, np.int8))
            if "subject" in p:
                cols.setdefault("subject", []).append(p["subject"])
        rows = [recs[k] for k in keys]
        shared = {k: rows[0][k] for k in rows[0] if k not in ("seed", "fold")
                  and all(k in r and r[k] == rows[0][k] for r in rows)}
        dest.mkdir(parents=True, exist_ok=True)
        write_json(dest / "runs.json", {"arm": arm, "dataset": dataset, "design": DESIGN_DOC, "config": config,
                                        "common": shared,
                                        "runs": [{k: v for k, v in r.items() if k not in shared} for r in rows]},
                   digits=6)
        save_npz(dest / "predictions.npz", **{k: np.concatenate(v) for k, v in cols.items()})
        written.append(arm)
    return written


# --- the first design (history) -----------------------------------------------------------------
def slim_export(dest: Path) -> None:
    """Keep a first-design run's committed files small: config, metrics and the predictions
    without their probabilities; the per-epoch history stays in the run folder."""
    from lkr.runfolder import save_npz

    (dest / "history.json").unlink(missing_ok=True)
    with np.load(dest / "predictions.npz") as z:
        keep = {k: z[k] for k in z.files if k != "probs"}
    save_npz(dest / "predictions.npz", **keep)


def run_first_design(arm: str, seed: int, runs: str, results: str, device: str = "cpu", ck: str | None = None) -> dict:
    """One run of the first design (fold 0 on CK+48), one committed folder a run."""
    from lkr.results import export_run
    from lkr.runfolder import write_json

    run = Path(runs) / arm / f"seed{seed}"
    t0 = time.perf_counter()
    if ck is None:
        ds, cues, ref = make_control(seed), None, f"control:{seed}"
        cues = cue_classes(ds)
        cfg = arm_config(arm, seed)
        fold = None
    else:
        ds, cues, ref = make_set("ckplus-border", seed, 0, ck)
        cfg = ck_arm_config(ds, arm, seed)
        fold = 0
    landmarks = ARMS[arm].get("landmarks", "true")
    m = train_arm(ds, cfg, run, landmarks=landmarks, seed=seed, fold=fold, device=device, data_ref=ref)
    m |= tally_cue(run, cues)
    m["control_arm"], m["control_landmarks"] = arm, landmarks
    with np.load(run / "predictions.npz") as z:
        labels = z["label"]
    m |= branch_accuracies(branch_predictions(run, with_landmarks(ds, landmarks, seed)), labels)
    write_json(run / "metrics.json", m)
    dest = Path(results) / arm / f"seed{seed}"
    export_run(run, dest, embeddings=False)
    slim_export(dest)
    return {"arm": arm, "seed": seed, "accuracy": m["accuracy"], "cue_follow_rate": m["cue_follow_rate"],
            "seconds": time.perf_counter() - t0}


# --- the command ----------------------------------------------------------------------------------
def main() -> int:
    try:
        return _main()
    except Exception as e:  # noqa: BLE001 - a bad path or argument: one line, not a traceback
        from lkr.errors import LkrError

        if isinstance(e, (LkrError, FileNotFoundError)):
            raise SystemExit(f"control: error: {e}") from None
        raise


def decide_precisions(jobs: list[dict], ck: str | None, workers: int) -> dict[str, dict]:
    """CK+48 runs: bf16 or fp32 decided once for the whole set before any worker starts
    (:func:`lkr.experiments.decide_precision`), so no arm's runs mix precisions."""
    from lkr.experiments import decide_precision

    cfgs = {}
    for j in jobs:
        if j["dataset"].startswith("ckplus") and j["arm"] not in cfgs:
            ds, _, _ = make_set(j["dataset"], 0, 0, ck)
            cfgs[j["arm"]] = ck_arm_config(ds, j["arm"], 0, design_arms(j["dataset"]))
    return decide_precision(cfgs, "cpu", workers=workers)


def _main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", nargs="+", dest="sets", default=["synthetic-border", "synthetic-inner"],
                    choices=list(DESIGN_SETS))
    ap.add_argument("--arms", nargs="+", default=None, help="arm names (default: every arm of the set)")
    ap.add_argument("--stages", nargs="+", type=int, default=None, help="only these mask stages (VGG19 always)")
    ap.add_argument("--lambdas", nargs="+", default=None, choices=["l0", "l02"], help="only these λ tags")
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 0-4 synthetic, 0-2 CK+48")
    ap.add_argument("--folds", nargs="+", type=int, default=list(range(CK_FOLDS)))
    ap.add_argument("--runs", default=str(RUNS_ROOT / "control-v2"))
    ap.add_argument("--results", default=str(REPO / "results" / "control-v2"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ck", default=None, help="the CK+48 archive (ckplus-* sets)")
    ap.add_argument("--collect", action="store_true", help="only gather finished runs into results/")
    ap.add_argument("--first-design", choices=["synthetic", "ckplus"], default=None,
                    help="the first design's eleven arms (history; results/control/)")
    args = ap.parse_args()
    from lkr.distributed import run_jobs

    if args.first_design:
        name = args.first_design
        jobs = [{"arm": a, "seed": s} for s in (args.seeds or [0, 1, 2, 3, 4]) for a in (args.arms or list(ARMS))]
        out = run_jobs(run_first_design, jobs, workers=args.workers, device="cpu",
                       common={"runs": str(RUNS_ROOT / "control" / name),
                               "results": str(REPO / "results" / "control" / name),
                               "ck": args.ck if name == "ckplus" else None})
        for r in out:
            print(f"{r['arm']:<22} seed {r['seed']}: test {100 * r['accuracy']:.1f}%")
        return 0

    runs, results = Path(args.runs), Path(args.results)
    if args.collect:
        for d in args.sets:
            print(f"{d}: {', '.join(collect(d, runs, results)) or 'no finished runs'}")
        return 0
    commit = design_commit()
    jobs = []
    for d in args.sets:
        arms = design_arms(d)
        names = [a for a in arms if (args.arms is None or a in args.arms)
                 and (a == "vgg19" or args.stages is None or arms[a].get("mask_stage") in args.stages)
                 and (a == "vgg19" or args.lambdas is None or any(a.endswith("-" + t) for t in args.lambdas))]
        if args.arms:
            unknown = sorted(set(args.arms) - set(arms))
            if unknown:
                raise SystemExit(f"control: error: {d} has no arm {', '.join(unknown)}")
        ck_set = d.startswith("ckplus")
        seeds = args.seeds or ([0, 1, 2] if ck_set else [0, 1, 2, 3, 4])
        for a in names:  # arm by arm: an arm's runs finish together
            for s in seeds:
                for f in (args.folds if ck_set else [None]):
                    jobs.append({"dataset": d, "arm": a, "seed": s, "fold": f})
    precision = decide_precisions(jobs, args.ck, args.workers) if any(j["dataset"].startswith("ckplus")
                                                                        for j in jobs) else {}
    for j in jobs:
        j["precision"] = precision.get(j["arm"]) if j["dataset"].startswith("ckplus") else None
    t0 = time.perf_counter()
    print(f"{len(jobs)} runs under design {commit[:10]}, {args.workers} workers", flush=True)
    out = run_jobs(run_arm, jobs, workers=args.workers, device="cpu",
                   common={"runs": str(runs), "ck": args.ck, "commit": commit})
    for r in out:
        fold = "" if r["fold"] is None else f" fold {r['fold']}"
        print(f"{r['arm']:<22} seed {r['seed']}{fold}: test {100 * r['accuracy']:.1f}%, follows the cue on "
              f"{100 * r['cue_follow_rate']:.1f}% ({r['seconds']:.0f} s)")
    for d in args.sets:
        collect(d, runs, results)
    print(json.dumps({"runs": len(out), "seconds": round(time.perf_counter() - t0)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
