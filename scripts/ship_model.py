"""Make the model that ships inside the package (lkr/data/model/, :mod:`lkr.shipped`).

    python scripts/ship_model.py --fer ../shared/data/fer2013.zip --ck ../shared/data/CK+48.zip

1. Trains (or resumes, or finds finished) the compact LKRNet run in ``--run`` (default
   ``~/lkr-runs/runs/ship/fer2013/lkrnet-quarter-fc256``) with the ``lkr train`` command of
   :func:`lkr.shipped.train_args`.
2. Packs its selected weights (weight-only int8, :data:`lkr.shipped.SHIP_DTYPE`; at most
   :data:`lkr.shipped.MAX_BYTES`) into a staging folder beside ``--dest`` and measures that file
   itself: FER2013 PrivateTest, ten-crop, and FER2013 -> CK+48 over the six shared classes.
3. Replaces the shipped model only when :func:`lkr.shipped.better_on_publictest` says so (the
   PublicTest accuracy of the selected epoch; PrivateTest chooses nothing): ``lkr/data/model/``
   (``best.pt``, ``metrics.json``, ``card.json``), the sha256 pin, ``docs/model-card.md`` and
   ``results/shipped/`` follow, and the replaced model's predictions and card go to
   ``results/shipped/before/`` (its card row and the paired differences are checked on them).
   Otherwise the shipped model stays and the candidate's card and measurements are filed under
   ``results/shipped/candidate/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402


def pin_sha256(sha: str) -> None:
    """Write the new file's sha256 into the pin the code reads (lkr/data/shipped-model.sha256)."""
    from lkr.shipped import PIN_FILE

    PIN_FILE.write_text(sha + "\n")


def paired_differences(before: dict, labels: np.ndarray, pred: np.ndarray, results: Path, bootstrap) -> dict:
    """This file − the replaced one on the same images: FER2013 PrivateTest (images resampled) and
    FER2013 -> CK+48 (subjects resampled), each with its bootstrap interval and sign-flip p. One seed
    of each model: the seed noise is not measured."""
    from lkr.stats import sign_flip_test

    out = {}
    old = before.get("privatetest")
    if old is not None and np.array_equal(old["label"], labels):
        a, b = (pred == labels).astype(float), (old["pred"] == old["label"]).astype(float)
        d, lo, hi = bootstrap(a, b)
        out["privatetest"] = {"difference": d, "ci_low": lo, "ci_high": hi, "p": sign_flip_test(a - b),
                              "n": int(len(a)), "resampled": "images"}
    old, new_f = before.get("cross"), results / "cross" / "ckplus" / "predictions.npz"
    if old is not None and new_f.is_file():
        with np.load(new_f) as z:
            new = {k: z[k].copy() for k in z.files}
        if np.array_equal(old["index"], new["index"]) and np.array_equal(old["label"], new["label"]):
            a, b = (new["pred"] == new["label"]).astype(float), (old["pred"] == old["label"]).astype(float)
            d, lo, hi = bootstrap(a, b, groups=new["subject"])
            out["FER2013 -> CK+48"] = {"difference": d, "ci_low": lo, "ci_high": hi,
                                       "p": sign_flip_test(a - b, new["subject"]), "n": int(len(a)),
                                       "resampled": "subjects"}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fer", required=True, help="FER2013 (the training data and PrivateTest)")
    ap.add_argument("--ck", default=None, help="CK+48 for the cross-dataset figure")
    ap.add_argument("--run", default=os.path.join(os.environ.get("LKR_RUNS", str(Path.home() / "lkr-runs")),
                                                  "runs", "ship", "fer2013", "lkrnet-quarter-fc256"))
    ap.add_argument("--dest", default=str(REPO / "lkr" / "data" / "model"))
    ap.add_argument("--results", default=None, help="where its measurements go (default: results/shipped for the "
                    "package's model, <dest>/results for a try-out elsewhere)")
    ap.add_argument("--other-run", action="store_true", help="pack a run the ship command did not train (a try-out; "
                    "its card still names the ship command)")
    args = ap.parse_args()

    from lkr.shipped import MODEL_DIR

    dest = Path(args.dest)
    packaged = dest.resolve() == MODEL_DIR.resolve()
    if packaged and args.other_run:
        raise SystemExit("ship_model: --other-run is a try-out: give --dest a folder outside the package")
    results = Path(args.results) if args.results else (REPO / "results" / "shipped" if packaged else dest / "results")
    dest.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".ship-", dir=dest.parent))  # beside dest: os.replace stays on one disk
    try:
        return ship(args, Path(args.run), dest, results, stage, packaged)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def ship(args: argparse.Namespace, run: Path, dest: Path, results: Path, stage: Path, packaged: bool) -> int:
    """Train (or find) the run, pack and measure it in ``stage``, then either replace the shipped
    model (:func:`lkr.shipped.better_on_publictest`) or keep it and file the candidate's
    measurements under ``results/candidate/``."""
    from lkr.cli import main as lkr_main
    from lkr.config import _fraction
    from lkr.evaluate import classification_metrics, evaluate_cross, run_test_probabilities
    from lkr.model import build_model
    from lkr.results import load_config_result, slim
    from lkr.runfolder import config_of_record, load_checkpoint, save_npz, write_json
    from lkr.shipped import (MAX_BYTES, SHIP_DTYPE, SHIP_FC_DIMS, SHIP_SCALE, SHIP_SEED, TARGET, better_on_publictest,
                             card_name, model_card, pack, read_card, sha256_of, train_args)
    from lkr.stats import bootstrap_difference
    import torch

    t0 = time.perf_counter()
    if not (run / "metrics.json").exists():
        rc = lkr_main(train_args(args.fer, str(run)))
        if rc:
            return rc
    trained = json.loads((run / "metrics.json").read_text())
    said = json.loads((run / "config.json").read_text())
    want = {"variant": "lkrnet", "scale": SHIP_SCALE, "fc_dims": list(SHIP_FC_DIMS), "seed": SHIP_SEED}
    off = {k: said.get(k) for k, v in want.items() if said.get(k) != v}
    if off and not args.other_run:
        raise SystemExit(f"ship_model: {run} was not trained by the ship command ({off}); --other-run packs it "
                         "into another --dest (a try-out)")
    history = json.loads((run / "history.json").read_text())  # one entry per epoch
    with np.load(run / "predictions.npz") as z:
        run_names, run_pred = tuple(str(c) for c in z["class_names"]), z["pred"].copy()

    old = read_card(dest) if (dest / "card.json").is_file() else None
    replace = args.other_run or better_on_publictest(trained.get("select_accuracy"), old)
    files = ("fer2013/predictions.npz", "cross/ckplus/metrics.json", "cross/ckplus/predictions.npz")
    before = {}  # the shipped model's predictions, for the paired differences
    if old and (results / files[0]).is_file():
        with np.load(results / files[0]) as z:
            b = {k: z[k].copy() for k in z.files}
        if abs(float((b["pred"] == b["label"]).mean()) - old["privatetest"]["accuracy"]) < 1e-6:
            before["privatetest"] = b
            if (results / files[2]).is_file():
                with np.load(results / files[2]) as z:
                    before["cross"] = {k: z[k].copy() for k in z.files}
        else:
            print(f"ship_model: {results / files[0]} is not the shipped model's (its accuracy differs from the "
                  "card's): no paired differences", file=sys.stderr)

    model_dir, staged = stage / "model", stage / "results"
    best = pack(run, model_dir, class_names=run_names, dtype=SHIP_DTYPE)
    if best.stat().st_size > MAX_BYTES:
        raise SystemExit(f"ship_model: {run} packs into {best.stat().st_size:,} bytes, over the "
                         f"{MAX_BYTES:,} allowed; the shipped model is unchanged")

    # FER2013 PrivateTest with the packed file (its stored weights, run in float32)
    probs, labels, names = run_test_probabilities(model_dir, data=args.fer, device="cpu")
    pred = probs.argmax(1)
    m = classification_metrics(labels, pred, names)
    right = (pred == labels).astype(float)
    _, lo, hi = bootstrap_difference(right, np.zeros_like(right))
    m.update({"ci_low": lo, "ci_high": hi, "test_split": "PrivateTest", "crops": "ten",
              "dataset": "fer2013", "kind": "fer2013", "measured_with": "lkr/data/model/best.pt"})
    if trained.get("landmark_template"):  # lkr evaluate --shipped then reads PrivateTest alone
        m["landmark_template"] = trained["landmark_template"]
    write_json(model_dir / "metrics.json", m)
    (staged / "fer2013").mkdir(parents=True, exist_ok=True)
    save_npz(staged / "fer2013" / "predictions.npz", label=labels.astype(np.int8), pred=pred.astype(np.int8),
             class_names=np.array(names))
    cross = {}
    if args.ck:
        c = evaluate_cross(model_dir, args.ck, device="cpu", out=staged / "cross" / "ckplus")
        cross["FER2013 -> CK+48"] = {k: c[k] for k in ("accuracy", "ci_low", "ci_high", "n", "shared_classes",
                                                       "left_out", "resampled", "per_class")}

    ck = load_checkpoint(best, torch.device("cpu"))
    cfg = config_of_record(ck["config"], best)
    n_params = sum(p.numel() for p in build_model(cfg).parameters())
    seconds = sum(float(trained.get(k) or 0) for k in ("train_seconds", "select_seconds", "eval_seconds"))
    card = {
        "name": card_name(ck["config"]),
        "file": "lkr/data/model/best.pt", "sha256": sha256_of(best), "bytes": best.stat().st_size,
        "dtype": SHIP_DTYPE, "parameters": int(n_params), "target": TARGET,
        "config": {k: ck["config"][k] for k in ("variant", "width", "fc_dims", "triplet_lambda", "triplet_mining",
                                               "epochs", "batch_size", "lr", "schedule", "alpha", "mask_stage",
                                               "crop", "seed") if k in ck["config"]},
        "training": {
            "command": "lkr " + " ".join(train_args("fer2013.zip", "<run>")),
            "machine": f"{trained.get('cpu_model') or trained.get('device', '?')}, {trained.get('threads', '?')} "
                       f"thread{'' if trained.get('threads') == 1 else 's'}",
            "precision": (trained.get("precision") or {}).get("precision") if isinstance(trained.get("precision"), dict)
            else trained.get("precision"),
            "wall_s": round(seconds), "epochs_run": len(history),
            "train_images": trained.get("n_train"),
            "best_epoch": trained.get("best_epoch"), "select_split": trained.get("select_split"),
            "select_accuracy": trained.get("select_accuracy"),
            "float32_run_privatetest": trained.get("accuracy"),
            "kit_version": trained.get("kit_version"),
        },
        "privatetest": {k: m[k] for k in ("accuracy", "ci_low", "ci_high", "n", "per_class", "class_counts")},
        "cross": cross,
    }
    card["training"]["changed_predictions"] = (int((run_pred != pred).sum()) if run_pred.shape == pred.shape
                                               else None)  # the storage, run in float32 (None: another test set)
    if old:
        card["replaces" if replace else "kept"] = {
            "name": old.get("name"), "sha256": old.get("sha256"), "bytes": old.get("bytes"),
            "dtype": old.get("dtype"), "parameters": old.get("parameters"),
            "select_accuracy": old["training"].get("select_accuracy"),
            "privatetest": {k: old["privatetest"][k] for k in ("accuracy", "ci_low", "ci_high", "n")},
            "cross": {k: {f: v[f] for f in ("accuracy", "ci_low", "ci_high", "n")} for k, v in old.get("cross", {}).items()},
            "differences": paired_differences(before, labels, pred, staged, bootstrap_difference)}
    ref = load_config_result(REPO / "results" / SHIP_SCALE / "fer2013" / "lkrnet")  # the paper's heads, same scale
    if ref is not None and len(ref.by_seed()) >= 2:
        accs = {s: 100 * r.metrics["accuracy"] for s, r in ref.by_seed().items()}
        card["reference"] = {"label": f"the {_fraction(ck['config'].get('width', 1.0))}-width LKRNet with the "
                                      "paper's FC 4096 heads",
                             "mean": float(np.mean(list(accs.values()))),
                             "sd": float(np.std(list(accs.values()), ddof=1)),
                             "seeds": ",".join(str(k) for k in accs),
                             "results": f"results/{SHIP_SCALE}/fer2013/lkrnet"}
    write_json(model_dir / "card.json", card, digits=6)
    summary = (f"PrivateTest {100 * m['accuracy']:.2f}% (the float32 run: {100 * (trained.get('accuracy') or 0):.2f}%)"
               + "".join(f"; {k} {100 * v['accuracy']:.2f}%" for k, v in cross.items())
               + f" [{time.perf_counter() - t0:.0f} s]")

    if not replace:  # the shipped model stays; the candidate's measurements are filed beside it
        cand = results / "candidate"
        shutil.rmtree(cand, ignore_errors=True)
        for f in files:
            if (staged / f).is_file():
                (cand / f).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged / f, cand / f)
        for f in ("card.json", "metrics.json"):
            os.replace(model_dir / f, cand / f)
        slim(results)
        print(f"ship_model: kept the shipped model: the new run reached {100 * (trained.get('select_accuracy') or 0):.2f}% "
              f"on PublicTest, the shipped one {100 * (old['training'].get('select_accuracy') or 0):.2f}% (PrivateTest "
              f"chooses nothing); the candidate's measurements are in {cand}: {summary}")
        return 0

    keep = stage / "before"  # the replaced model's predictions and card, kept one model back
    if old:
        for f in files:
            if (results / f).is_file():
                (keep / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(results / f, keep / f)
        for f in ("card.json", "metrics.json"):  # its card's row and the metrics its predictions are checked on
            shutil.copy2(dest / f, keep / f)
    for f in ("best.pt", "metrics.json", "card.json"):  # the model, then what measured it
        os.replace(model_dir / f, dest / f)
    if packaged:  # the package's own model: its pin and the docs' card follow at once
        pin_sha256(card["sha256"])
        (REPO / "docs" / "model-card.md").write_text(model_card(read_card(dest)))  # from the file, as the test does
    else:  # a try-out elsewhere: its card beside it; the package's pin and docs stay
        (dest / "model-card.md").write_text(model_card(read_card(dest)))
    for f in files:
        if (staged / f).is_file():
            (results / f).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged / f, results / f)
    shutil.rmtree(results / "candidate", ignore_errors=True)  # a kept candidate's record is history now
    if old:
        shutil.rmtree(results / "before", ignore_errors=True)
        os.replace(keep, results / "before")
    slim(results)  # results/ keeps its files small (metrics on one line), as every export does
    print(f"shipped {dest / 'best.pt'} ({card['bytes']:,} bytes, sha256 {card['sha256'][:16]}...): {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
