"""``lkr verify``: recompute every committed accuracy from the predictions and the user's own copy
of the datasets, and say which file or number does not match.

For every run of every scale in a results folder (``results/<scale>/<key>/<config>[/seed<s>]
[/fold<k>]``), with the labels of the user's archive at the dataset positions the run stored
(``predictions.npz``'s ``index``):

- the stored test labels (and, for CK+, subject ids) are the archive's;
- the run's test images are the reported split (FER2013: all of PrivateTest; CK+: each image once
  over the ten folds);
- ``metrics.json``'s accuracy, class counts and confusion matrix equal what the stored
  predictions give against the archive's labels (and the pooled CK+ record what its folds give).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lkr.errors import LkrError


@dataclass
class Report:
    """What :func:`verify` checked and found."""

    runs: int = 0
    numbers: int = 0
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    checked: set[Path] = field(default_factory=set)
    unchecked: list[str] = field(default_factory=list)


def _load(path: str | None, what: str):
    if path is None:
        return None
    from lkr.readers import load_dataset

    return load_dataset(path)


def _check_run(d: Path, ds: Any, rep: Report, split: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    """One run folder (predictions.npz + metrics.json); returns (index, pred) when readable."""
    from lkr.evaluate import classification_metrics

    pred_f, met_f = d / "predictions.npz", d / "metrics.json"
    if not pred_f.exists() or not met_f.exists():
        return None
    rep.runs += 1
    rep.checked |= {pred_f.resolve(), met_f.resolve()}
    try:
        with np.load(pred_f, allow_pickle=False) as z:
            z = {k: z[k] for k in z.files}
        m = json.loads(met_f.read_text())
    except (OSError, ValueError) as e:
        rep.problems.append(f"{d}: cannot be read ({type(e).__name__})")
        return None
    if "index" not in z:
        rep.problems.append(f"{pred_f}: no dataset index stored; cannot be checked against the archive")
        return None
    idx, pred = z["index"].astype(np.int64), z["pred"].astype(np.int64)
    if idx.min(initial=0) < 0 or idx.max(initial=-1) >= len(ds.labels):
        rep.problems.append(f"{pred_f}: index outside the archive's {len(ds.labels)} images (another dataset?)")
        return None
    real = np.asarray(ds.labels)[idx].astype(np.int64)
    rep.numbers += 1
    if not np.array_equal(z["label"].astype(np.int64), real):
        rep.problems.append(f"{pred_f}: {(z['label'] != real).sum()} of {len(real)} stored labels differ from the "
                            "archive's")
    if "subject" in z and ds.subjects is not None:
        rep.numbers += 1
        if not np.array_equal(z["subject"].astype(str), np.asarray(ds.subjects)[idx].astype(str)):
            rep.problems.append(f"{pred_f}: stored subject ids differ from the archive's")
    if split is not None:
        rep.numbers += 1
        want = np.flatnonzero(np.asarray(ds.splits) == split)
        if not np.array_equal(np.sort(idx), want):
            rep.problems.append(f"{pred_f}: tested on {len(idx)} images, not the {len(want)} of {split}")
    names = tuple(str(c) for c in z.get("class_names", ds.class_names))
    again = classification_metrics(real, pred, names)
    _compare(met_f, m, again, rep)
    return idx, pred


def _compare(met_f: Path, m: dict[str, Any], again: dict[str, Any], rep: Report) -> None:
    rep.numbers += 4
    rep.checked.add(met_f.resolve())
    per = m.get("per_class")
    if per is not None and (set(per) != set(again["per_class"]) or any(
            (per[c] is None) != (again["per_class"][c] is None)
            or (per[c] is not None and abs(per[c] - again["per_class"][c]) > 1e-9) for c in per)):
        rep.problems.append(f"{met_f}: per-class accuracy differs from its predictions'")
    if abs(float(m.get("accuracy", -1)) - again["accuracy"]) > 1e-9:
        rep.problems.append(f"{met_f}: accuracy {100 * float(m.get('accuracy', 0)):.2f}% but its predictions give "
                            f"{100 * again['accuracy']:.2f}%")
    if m.get("class_counts") != again["class_counts"]:
        rep.problems.append(f"{met_f}: class counts {m.get('class_counts')} but the archive gives {again['class_counts']}")
    if m.get("confusion") != again["confusion"]:
        rep.problems.append(f"{met_f}: confusion matrix differs from its predictions'")


def _seed_dirs(cfg_dir: Path) -> list[Path]:
    return [cfg_dir] + sorted(p for p in cfg_dir.glob("seed*") if p.is_dir() and p.name[4:].isdigit())


def verify(results: str | Path, *, fer: str | None = None, ck: str | None = None) -> Report:
    """Check every run under ``results`` against the archives given (see the module docstring).

    Raises:
        LkrError: ``results`` is not a folder, or neither archive is given (one line).
    """
    from lkr.evaluate import classification_metrics

    root = Path(results)
    if not root.is_dir():
        raise LkrError(f"{root}: no such results folder")
    if fer is None and ck is None:
        raise LkrError("give --fer and/or --ck: the archives whose labels the committed predictions are checked against")
    data = {"fer2013": _load(fer, "FER2013"), "ckplus": _load(ck, "CK+")}
    rep = Report()
    _verify_control(root / "control" / "synthetic", rep)  # generated here: needs no archive
    _verify_first_ck_control(root / "control" / "ckplus", data["ckplus"], rep)
    _verify_ten_crop_history(root / "control" / "ckplus-ten-crop", rep)
    _verify_design(root / "control-v2", data["ckplus"], rep)
    _verify_shipped(root / "shipped", data, rep)
    for scale_dir in sorted(p for p in root.iterdir()
                            if p.is_dir() and p.name not in ("control", "control-v2", "shipped")):
        for key, ds in data.items():
            kdir = scale_dir / key
            if not kdir.is_dir():
                continue
            for cfg_dir in sorted(p for p in kdir.iterdir() if p.is_dir()):
                for d in _seed_dirs(cfg_dir):
                    if (d / "cross" / "ckplus").is_dir():  # FER2013 runs on CK+48's images: needs CK+48 only
                        if data["ckplus"] is None:
                            rep.skipped.append(f"{d / 'cross' / 'ckplus'} (no --ck given)")
                        else:
                            _check_cross(d / "cross" / "ckplus", data["ckplus"], rep)
            if ds is None:
                rep.skipped.append(f"{kdir} (no --{'fer' if key == 'fer2013' else 'ck'} given)")
                continue
            for cfg_dir in sorted(p for p in kdir.iterdir() if p.is_dir()):
                for d in _seed_dirs(cfg_dir):
                    folds = sorted((p for p in d.glob("fold*") if p.is_dir()), key=lambda p: int(p.name[4:]))
                    if key == "fer2013" or not folds:
                        _check_run(d, ds, rep, "PrivateTest" if key == "fer2013" else None)
                        continue
                    got = [r for f in folds if (r := _check_run(f, ds, rep, None)) is not None]
                    if not got or not (d / "metrics.json").exists():
                        continue
                    idx = np.concatenate([g[0] for g in got])
                    pred = np.concatenate([g[1] for g in got])
                    rep.numbers += 1
                    if len(folds) == 10 and not np.array_equal(np.sort(idx), np.arange(len(ds.labels))):
                        rep.problems.append(f"{d}: its ten folds do not test every image once "
                                            f"({len(np.unique(idx))} distinct of {len(ds.labels)})")
                    real = np.asarray(ds.labels)[idx].astype(np.int64)
                    _compare(d / "metrics.json", json.loads((d / "metrics.json").read_text()),
                             classification_metrics(real, pred, tuple(ds.class_names)), rep)
    _inventory(root, data, rep)
    return rep


NUMBER_FILES = ("metrics.json", "predictions.npz", "runs.json")
"""The committed files that carry results (configs, histories, embeddings and CAM arrays are
what a run made, not what it claims)."""


def _inventory(root: Path, data: dict[str, Any], rep: Report) -> None:
    """Every results file of :data:`NUMBER_FILES` that no check read: named with why (an archive
    not given: skipped; else unchecked, which fails ``lkr verify``)."""
    given = {"fer2013": data["fer2013"] is not None, "ckplus": data["ckplus"] is not None}
    for f in sorted(p for name in NUMBER_FILES for p in root.rglob(name)):
        if f.resolve() in rep.checked:
            continue
        parts = set(f.relative_to(root).parts)
        needs = [k for k in ("fer2013", "ckplus") if any(p == k or p.startswith(f"{k}-") for p in parts)]
        if needs and not all(given[k] for k in needs):
            continue  # its folder is already named under skipped
        rep.unchecked.append(f"{f}: no check reads it")


def _check_cross(d: Path, ds: Any, rep: Report) -> None:
    """A FER2013 run on CK+48's images (``lkr evaluate --data``): the stored images are every CK+48
    image of a shared class, their labels and subjects the archive's, and the metrics (accuracy,
    counts, confusion, per class, the subject-resampled interval) what the predictions give."""
    from lkr.evaluate import classification_metrics
    from lkr.stats import bootstrap_difference

    pred_f, met_f = d / "predictions.npz", d / "metrics.json"
    if not pred_f.is_file() or not met_f.is_file():
        rep.problems.append(f"{d}: predictions.npz or metrics.json missing")
        return
    rep.runs += 1
    rep.checked |= {pred_f.resolve(), met_f.resolve()}
    with np.load(pred_f, allow_pickle=False) as z:
        z = {k: z[k] for k in z.files}
    m = json.loads(met_f.read_text())
    shared = [str(c) for c in z["class_names"]]
    names = np.asarray(ds.class_names)
    want = np.flatnonzero(np.isin(names[ds.labels], shared))
    idx = z["index"].astype(np.int64)
    rep.numbers += 3
    if not np.array_equal(np.sort(idx), want):
        rep.problems.append(f"{pred_f}: not every CK+48 image of the shared classes ({len(idx)} of {len(want)})")
        return
    if not np.array_equal(np.asarray(shared)[z["label"]], names[ds.labels[idx]]):
        rep.problems.append(f"{pred_f}: stored labels differ from the archive's")
    if "subject" in z and not np.array_equal(z["subject"].astype(str), np.asarray(ds.subjects)[idx].astype(str)):
        rep.problems.append(f"{pred_f}: stored subject ids differ from the archive's")
    again = classification_metrics(z["label"].astype(np.int64), z["pred"].astype(np.int64), tuple(shared))
    _compare(met_f, m, again, rep)
    right = (z["label"] == z["pred"]).astype(float)
    groups = z["subject"].astype(str) if "subject" in z else None
    _, low, high = bootstrap_difference(right, np.zeros_like(right), groups=groups)
    rep.numbers += 1
    if abs(m.get("ci_low", -1) - low) > 1e-9 or abs(m.get("ci_high", -1) - high) > 1e-9:
        rep.problems.append(f"{met_f}: its 95% interval is not what its predictions give")


def _verify_first_ck_control(base: Path, ck: Any, rep: Report) -> None:
    """The first CK+48 control (fold 0 of each seed): each run against the archive, tested on its
    seed's fold-0 subjects."""
    if not base.is_dir():
        return
    if ck is None:
        rep.skipped.append(f"{base} (no --ck given)")
        return
    from lkr.folds import fold_split

    for d in sorted(base.glob("*/seed*")):
        got = _check_run(d, ck, rep, None)
        if got is None:
            continue
        rep.numbers += 1
        want = np.flatnonzero(fold_split(ck.subjects, ck.labels, 0, k=10, seed=int(d.name[4:]))["test"])
        if not np.array_equal(np.sort(got[0]), want):
            rep.problems.append(f"{d / 'predictions.npz'}: not the test subjects of fold 0 of seed {d.name[4:]}")


def _verify_ten_crop_history(base: Path, rep: Report) -> None:
    """The first CK+48 control as first tested (history: its numbers as the git commit that held
    them has them, :func:`lkr.control_results.ten_crop_history`)."""
    if not base.is_dir():
        return
    from lkr.control_results import ten_crop_history

    try:
        history = ten_crop_history(Path(__file__).resolve().parents[1])  # the kit's own git history
    except LkrError as e:  # a shallow clone, a download without .git: said, like an archive not given
        rep.skipped.append(f"{base} ({e})")
        rep.checked |= {f.resolve() for f in base.rglob("metrics.json")}
        return
    for rel in sorted(set(history) - {str(f.relative_to(base)) for f in base.rglob("metrics.json")}):
        rep.problems.append(f"{base / rel}: missing (the commit it was taken from has it)")
    for f in sorted(base.rglob("metrics.json")):
        rep.runs += 1
        rep.numbers += 1
        rep.checked.add(f.resolve())
        rel = str(f.relative_to(base))
        if rel not in history or json.loads(f.read_text()) != history[rel]:
            rep.problems.append(f"{f}: differs from the commit it was taken from")


def _verify_shipped(base: Path, data: dict[str, Any], rep: Report) -> None:
    """The shipped model: its PrivateTest predictions against the FER2013 archive and its metrics
    (``lkr/data/model/metrics.json``), its CK+48 evaluation as any cross-dataset one; the same for
    the model it replaced (``before/``) and a candidate it kept out (``candidate/``), each against
    the model's ``metrics.json`` kept beside them."""
    from lkr.shipped import MODEL_DIR

    _verify_shipped_folder(base, MODEL_DIR / "metrics.json", data, rep)
    for sub in ("before", "candidate"):
        if (base / sub).is_dir():
            met_f = base / sub / "metrics.json"
            if not met_f.is_file():
                rep.problems.append(f"{base / sub}: no metrics.json (its model's) to check its predictions against")
                continue
            _verify_shipped_folder(base / sub, met_f, data, rep)


def _verify_shipped_folder(base: Path, met_f: Path, data: dict[str, Any], rep: Report) -> None:
    fer_f = base / "fer2013" / "predictions.npz"
    if fer_f.is_file():
        if data["fer2013"] is None:
            rep.skipped.append(f"{base / 'fer2013'} (no --fer given)")
        else:
            from lkr.evaluate import classification_metrics

            ds = data["fer2013"]
            rep.runs += 1
            rep.checked.add(fer_f.resolve())
            with np.load(fer_f, allow_pickle=False) as z:
                z = {k: z[k] for k in z.files}
            real = np.asarray(ds.labels)[np.asarray(ds.splits) == "PrivateTest"].astype(np.int64)
            rep.numbers += 1
            if not np.array_equal(z["label"].astype(np.int64), real):
                rep.problems.append(f"{fer_f}: its labels are not PrivateTest's, in order")
            else:
                _compare(met_f, json.loads(met_f.read_text()), classification_metrics(real, z["pred"].astype(np.int64), tuple(ds.class_names)), rep)
    if (base / "cross" / "ckplus").is_dir():
        if data["ckplus"] is None:
            rep.skipped.append(f"{base / 'cross' / 'ckplus'} (no --ck given)")
        else:
            _check_cross(base / "cross" / "ckplus", data["ckplus"], rep)


def _verify_control(base: Path, rep: Report) -> None:
    """The synthetic positive control's runs against the set :func:`lkr.control.make_control`
    draws again from each run's seed."""
    if not base.is_dir():
        return
    from lkr.control import make_control

    sets: dict[int, Any] = {}
    for d in sorted(base.glob("*/seed*")):
        s = int(d.name[4:])
        if s not in sets:
            sets[s] = make_control(s)
        _check_run(d, sets[s], rep, "PrivateTest")


def _verify_design(base: Path, ck: Any, rep: Report) -> None:
    """The second region control (``results/control-v2/<set>/<arm>/``): each run's stored labels,
    test images and cue classes against the set drawn again (synthetic: from its seed; CK+48: the
    archive, the seed's folds and cue plan), and each run's recorded accuracy against its
    predictions; a CK+48 seed with all ten folds tests every image once."""
    if not base.is_dir():
        return
    from lkr.control import ck_cue_plan, control_cues, make_control
    from lkr.folds import fold_split

    sets: dict[tuple, Any] = {}
    for arm_dir in sorted(p for p in base.glob("*/*") if p.is_dir()):
        dataset = arm_dir.parent.name
        runs_f, pred_f = arm_dir / "runs.json", arm_dir / "predictions.npz"
        if not runs_f.is_file() or not pred_f.is_file():
            rep.problems.append(f"{arm_dir}: runs.json or predictions.npz missing")
            continue
        if dataset.startswith("ckplus") and ck is None:
            rep.skipped.append(f"{arm_dir} (no --ck given)")
            continue
        rep.checked |= {runs_f.resolve(), pred_f.resolve()}
        from lkr.control_results import read_runs

        try:
            records = read_runs(runs_f)[1]
            with np.load(pred_f, allow_pickle=False) as z:
                z = {k: z[k] for k in z.files}
            if not {"seed", "fold", "index", "label", "pred"} <= set(z):
                raise KeyError("predictions.npz lacks seed, fold, index, label or pred")
        except (OSError, ValueError, KeyError) as e:
            rep.problems.append(f"{arm_dir}: cannot be read ({type(e).__name__}: {e})")
            continue
        from lkr.control import DESIGN_SETS

        if dataset not in DESIGN_SETS:
            rep.problems.append(f"{arm_dir}: {dataset} is no set of the region control")
            continue
        seen: dict[int, list[np.ndarray]] = {}
        rows = {(int(a), int(b)) for a, b in zip(z["seed"], z["fold"])}
        runs_said = {(r["seed"], -1 if r["fold"] is None else r["fold"]) for r in records}
        rep.numbers += 3
        if rows != runs_said:
            rep.problems.append(f"{pred_f}: predictions of runs its runs.json does not record "
                                f"({sorted(rows - runs_said)[:3]}...) or records without predictions")
        from lkr.control import design_arms

        saved_cfg = json.loads(runs_f.read_text()).get("config") or {}
        spec = design_arms(dataset).get(arm_dir.name)
        if spec is None:
            rep.problems.append(f"{runs_f}: {arm_dir.name} is no arm of {dataset}")
        else:
            want = {k: v for k, v in spec.items() if k not in ("variant", "landmarks")} | {"variant": spec["variant"]}
            if spec["variant"] == "vgg19":
                want = {"variant": "vgg19"}
            bad = [k for k, v in want.items() if saved_cfg.get(k) != v]
            if bad:
                rep.problems.append(f"{runs_f}: its config is not the design's arm ({', '.join(bad)})")
            for r in records:  # the arm's fields each run recorded, where it did
                bad = [k for k in ("mask_source", "mask_stage", "mask_band") if k in r and k in want and r[k] != want[k]]
                if bad:
                    rep.problems.append(f"{runs_f} (seed {r['seed']}, fold {r['fold']}): trained as another arm "
                                        f"({', '.join(bad)})")
        if len({r.get("design_commit") for r in records}) > 1:
            rep.problems.append(f"{runs_f}: its runs name more than one design commit")
        for r in records:
            rep.runs += 1
            fold = -1 if r["fold"] is None else r["fold"]
            sel = (z["seed"] == r["seed"]) & (z["fold"] == fold)
            idx, pred = z["index"][sel].astype(np.int64), z["pred"][sel].astype(np.int64)
            where = f"{pred_f} (seed {r['seed']}{'' if r['fold'] is None else f', fold {fold}'})"
            if dataset.startswith("synthetic"):
                cue_kind = "inner" if dataset.endswith("inner") else "border"
                key = (cue_kind, r["seed"])
                if key not in sets:
                    sets[key] = (make_control(r["seed"], cue=cue_kind), control_cues(r["seed"], cue_kind))
                ds, cues = sets[key]
                want_idx = np.flatnonzero(np.asarray(ds.splits) == "PrivateTest")
            else:
                ds = ck
                test = fold_split(ck.subjects, ck.labels, fold, k=10, seed=r["seed"])["test"]
                cues = ck_cue_plan(ck.labels, ~test, len(ck.class_names), r["seed"])
                want_idx = np.flatnonzero(test)
                seen.setdefault(r["seed"], []).append(idx)
            rep.numbers += 5
            if not np.array_equal(np.sort(idx), want_idx):
                rep.problems.append(f"{where}: tested on {len(idx)} images, not the {len(want_idx)} of its test part")
                continue
            real = np.asarray(ds.labels)[idx]
            if not np.array_equal(z["label"][sel].astype(np.int64), real):
                rep.problems.append(f"{where}: {(z['label'][sel] != real).sum()} stored labels differ from the set's")
            rec = f"{runs_f} (seed {r['seed']}{'' if r['fold'] is None else f', fold {fold}'})"
            checks = [("accuracy", float((pred == real).mean())),
                      ("cue_follow_rate", float((pred == cues[idx]).mean())),  # the cue as the plan stamped it
                      ("cue_agrees_with_label", float((cues[idx] == real).mean()))]
            for branch in ("global", "local"):  # each branch's own prediction, where stored
                if f"pred_{branch}" in z and f"accuracy_{branch}_branch" in r:
                    bp = z[f"pred_{branch}"][sel].astype(np.int64)
                    checks.append((f"accuracy_{branch}_branch", float((bp == real).mean()) if (bp >= 0).all() else -9.0))
                elif f"accuracy_{branch}_branch" in r:
                    rep.unchecked.append(f"{rec}: accuracy_{branch}_branch has no stored prediction to check it")
            rep.numbers += len(checks) - 3
            for name, got in checks:
                if abs(float(r.get(name, -1)) - got) > 1e-5:  # runs.json keeps 6 digits
                    rep.problems.append(f"{rec}: {name} {100 * float(r.get(name, 0)):.2f}% but its predictions "
                                        f"give {100 * got:.2f}%")
            if "subject" in z:
                rep.numbers += 1
                if not np.array_equal(z["subject"][sel].astype(str), np.asarray(ds.subjects)[idx].astype(str)):
                    rep.problems.append(f"{where}: stored subject ids differ from the archive's")
        for seed, parts in seen.items():
            if len(parts) == 10:
                rep.numbers += 1
                idx = np.sort(np.concatenate(parts))
                if not np.array_equal(idx, np.arange(len(ck.labels))):
                    rep.problems.append(f"{pred_f} (seed {seed}): its ten folds do not test every image once")


def verify_cli(args: Any) -> int:
    rep = verify(args.results, fer=args.fer, ck=args.ck)
    for s in rep.skipped:
        print(f"skipped: {s}")
    for p in rep.problems:
        print(f"MISMATCH {p}")
    for u in rep.unchecked:
        print(f"UNCHECKED {u}")
    if rep.runs == 0:
        print(f"{args.results}: no run with predictions to check")
        return 1
    verdict = "all match" if not rep.problems else f"{len(rep.problems)} mismatches"
    if rep.unchecked:
        verdict += f"; {len(rep.unchecked)} files no check reads"
    print(f"checked {rep.runs} runs ({rep.numbers} checks) in {args.results}: {verdict}")
    return 1 if rep.problems or rep.unchecked else 0
