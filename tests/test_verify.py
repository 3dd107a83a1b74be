"""lkr verify: every committed accuracy recomputed from predictions.npz and the user's archives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lkr.cli import main
from lkr.demo import make_demo
from lkr.evaluate import classification_metrics
from lkr.runfolder import save_npz, write_json

REPO = Path(__file__).resolve().parents[1]


def _fake_run(d: Path, ds, idx: np.ndarray, hits: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    lab = ds.labels[idx].astype(np.int64)
    pred = np.where(rng.random(len(idx)) < hits, lab, (lab + 1) % 7)
    d.mkdir(parents=True)
    save_npz(d / "predictions.npz", index=idx, label=lab.astype(np.int8), pred=pred.astype(np.int8),
             class_names=np.array(ds.class_names))
    write_json(d / "metrics.json", classification_metrics(lab, pred, tuple(ds.class_names)))


def test_verify_finds_each_tampered_number(tmp_path, capsys):
    ds = make_demo("fer2013")  # what "demo" loads
    test = np.flatnonzero(ds.splits == "PrivateTest")
    root = tmp_path / "results"
    _fake_run(root / "demo" / "fer2013" / "vgg19", ds, test, 0.7)
    _fake_run(root / "demo" / "fer2013" / "vgg19" / "seed1", ds, test, 0.6, seed=1)
    assert main(["verify", str(root), "--fer", "demo"]) == 0
    out = capsys.readouterr().out
    assert "checked 2 runs" in out and "all match" in out
    # a hand-edited accuracy, a label that is not the archive's, a run tested on part of the split
    m = root / "demo" / "fer2013" / "vgg19" / "metrics.json"
    rec = json.loads(m.read_text())
    rec["accuracy"] += 0.01
    m.write_text(json.dumps(rec))
    p = root / "demo" / "fer2013" / "vgg19" / "seed1" / "predictions.npz"
    z = dict(np.load(p))
    z["label"][0] = (z["label"][0] + 1) % 7
    save_npz(p, **z)
    _fake_run(root / "demo" / "fer2013" / "lkrnet", ds, test[:-5], 0.7)
    assert main(["verify", str(root), "--fer", "demo"]) == 1
    out = capsys.readouterr().out
    assert f"MISMATCH {m}: accuracy" in out
    assert f"MISMATCH {p}: 1 of {len(test)} stored labels differ" in out
    assert f"not the {len(test)} of PrivateTest" in out and "3 mismatches" in out


def test_verify_pools_ckplus_folds_and_needs_an_archive(tmp_path, capsys):
    ds = make_demo("ckplus")
    root = tmp_path / "results"
    parts = np.array_split(np.arange(len(ds.labels)), 2)
    cfg = root / "demo" / "ckplus" / "lkrnet"
    for k, idx in enumerate(parts):
        _fake_run(cfg / f"fold{k}", ds, idx, 0.8, seed=k)
    preds = [np.load(cfg / f"fold{k}" / "predictions.npz") for k in range(2)]
    lab = np.concatenate([z["label"] for z in preds]).astype(np.int64)
    write_json(cfg / "metrics.json", classification_metrics(lab, np.concatenate([z["pred"] for z in preds]),
                                                             tuple(ds.class_names)))
    assert main(["verify", str(root), "--ck", "demo-ckplus"]) == 0
    assert "checked 2 runs" in capsys.readouterr().out
    assert main(["verify", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert "give --fer and/or --ck" in err and "\n" not in err


def test_the_committed_results_match_the_real_archives(fer2013_zip, ckplus48_zip, capsys):
    """Every committed accuracy, class count and confusion matrix, from the real labels."""
    assert main(["verify", str(REPO / "results"), "--fer", str(fer2013_zip), "--ck", str(ckplus48_zip)]) == 0
    out = capsys.readouterr().out
    assert "all match" in out and "MISMATCH" not in out


def test_verify_checks_the_synthetic_control_with_no_archive(tmp_path, capsys):
    """The control's set is drawn again from each run's seed: its runs are checked even when no
    archive is given for the datasets (and a tampered one is named)."""
    from lkr.control import make_control

    ds = make_control(1)
    test = np.flatnonzero(ds.splits == "PrivateTest")
    root = tmp_path / "results"
    _fake_run(root / "control" / "synthetic" / "vgg19" / "seed1", ds, test, 0.5)
    _fake_run(root / "cpu" / "fer2013" / "vgg19", make_demo("fer2013"), np.flatnonzero(make_demo("fer2013").splits
                                                                                          == "PrivateTest"), 0.6)
    assert main(["verify", str(root), "--fer", "demo"]) == 0
    assert "checked 2 runs" in capsys.readouterr().out
    m = root / "control" / "synthetic" / "vgg19" / "seed1" / "metrics.json"
    rec = json.loads(m.read_text())
    rec["accuracy"] = 0.99
    m.write_text(json.dumps(rec))
    assert main(["verify", str(root), "--fer", "demo"]) == 1
    assert f"MISMATCH {m}: accuracy" in capsys.readouterr().out


def test_verify_checks_the_region_control_runs_and_names_a_tampered_file(tmp_path):
    """results/control-v2: each run's test images and labels against the set drawn again from its
    seed, and its recorded accuracy and share of predictions that follow the cue (the cue plan
    drawn again) against its predictions."""
    import json

    from lkr import verify as V
    from lkr.control import control_cues, make_control

    ds = make_control(1, cue="inner")
    idx = np.flatnonzero(ds.splits == "PrivateTest")
    label = ds.labels[idx].astype(np.int8)
    pred = label.copy()
    pred[:70] = (pred[:70] + 1) % 7
    cue = control_cues(1, "inner")[idx]
    d = tmp_path / "control-v2" / "synthetic-inner" / "key-s1-l02"
    d.mkdir(parents=True)
    np.savez(d / "predictions.npz", seed=np.full(len(idx), 1, np.int8), fold=np.full(len(idx), -1, np.int8),
             index=idx.astype(np.int16), label=label, pred=pred)
    run = {"seed": 1, "fold": None, "accuracy": 0.9, "cue_follow_rate": float((pred == cue).mean()),
           "cue_agrees_with_label": float((cue == label).mean())}
    from lkr.control import design_arms

    spec = design_arms("synthetic-inner")["key-s1-l02"]
    config = {k: v for k, v in spec.items() if k != "landmarks"}
    saved = {"common": {"n": len(idx)}, "runs": [run], "config": config}

    def check(runs=None):
        (d / "runs.json").write_text(json.dumps(saved))
        rep = V.Report()
        V._verify_design(tmp_path / "control-v2", None, rep)
        return rep

    rep = check()
    assert rep.runs == 1 and not rep.problems, rep.problems
    run["accuracy"] = 0.99  # a number typed over the record
    rep = check()
    assert len(rep.problems) == 1 and "runs.json" in rep.problems[0] and "accuracy 99.00%" in rep.problems[0]
    run["accuracy"], run["cue_follow_rate"] = 0.9, run["cue_follow_rate"] + 0.01
    rep = check()
    assert len(rep.problems) == 1 and "cue_follow_rate" in rep.problems[0]
    run["cue_follow_rate"] -= 0.01
    np.savez(d / "predictions.npz", seed=np.full(len(idx), 1, np.int8), fold=np.full(len(idx), -1, np.int8),
             index=idx.astype(np.int16), label=(label + 1) % 7, pred=pred)
    rep = check()
    assert any("stored labels differ" in p and "predictions.npz" in p for p in rep.problems)
    saved["config"] = config | {"mask_source": "face"}  # a run of another arm filed under this one
    rep = check()
    assert any("its config is not the design's arm (mask_source)" in p for p in rep.problems)
    saved["config"] = config
    # a CK+48 arm without the archive is named as skipped, not passed over
    (tmp_path / "control-v2" / "ckplus-border" / "vgg19").mkdir(parents=True)
    (tmp_path / "control-v2" / "ckplus-border" / "vgg19" / "runs.json").write_text('{"runs": []}')
    np.savez(tmp_path / "control-v2" / "ckplus-border" / "vgg19" / "predictions.npz", seed=np.zeros(0))
    rep = check()
    assert any("ckplus-border/vgg19" in s for s in rep.skipped)


def test_verify_reads_every_results_file_and_names_each_tampered_one(fer2013_zip, ckplus48_zip, tmp_path, capsys):
    """One tampered file of each kind the first verify passed over (the first CK+48 control, a
    FER2013 -> CK+48 evaluation, the shipped model's, the ten-crop history, a per-class number),
    and a results file no check reads: each is named, and the command fails."""
    import json
    import shutil

    repo = Path(__file__).resolve().parents[1]
    res = tmp_path / "results"
    for part in ("control/ckplus", "control/ckplus-ten-crop", "cpu-quarter/fer2013/vgg19", "shipped"):
        shutil.copytree(repo / "results" / part, res / part)
    assert main(["verify", str(res), "--fer", str(fer2013_zip), "--ck", str(ckplus48_zip)]) == 0
    capsys.readouterr()

    def edit_json(path, fn):
        m = json.loads(path.read_text())
        fn(m)
        path.write_text(json.dumps(m))

    tampered = {
        res / "control/ckplus/lkrnet-stage1/seed0/metrics.json": lambda m: m.update(accuracy=0.99),
        res / "control/ckplus-ten-crop/vgg19/seed1/metrics.json": lambda m: m.update(accuracy=0.99),
        res / "cpu-quarter/fer2013/vgg19/seed1/metrics.json":
            lambda m: m["per_class"].update(anger=m["per_class"]["anger"] + 0.01),
    }
    for path, fn in tampered.items():
        edit_json(path, fn)
    cross = res / "cpu-quarter/fer2013/vgg19/cross/ckplus/predictions.npz"
    with np.load(cross) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["pred"][:40] = (arrays["pred"][:40] + 1) % len(arrays["class_names"])
    np.savez(cross, **arrays)
    shipped = res / "shipped/fer2013/predictions.npz"
    with np.load(shipped) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["label"][:5] = (arrays["label"][:5] + 1) % 7
    np.savez(shipped, **arrays)
    stray = res / "cpu-quarter/somewhere/metrics.json"
    stray.parent.mkdir(parents=True)
    stray.write_text('{"accuracy": 0.9}')
    assert main(["verify", str(res), "--fer", str(fer2013_zip), "--ck", str(ckplus48_zip)]) == 1
    out = capsys.readouterr().out
    for path in tampered:
        assert f"MISMATCH {path}" in out, path
    assert f"MISMATCH {cross.parent / 'metrics.json'}" in out  # its accuracy is no longer the predictions'
    assert f"MISMATCH {shipped}: its labels are not PrivateTest's" in out
    assert f"UNCHECKED {stray}: no check reads it" in out


def test_verify_checks_the_replaced_models_predictions_against_its_kept_metrics(fer2013_zip, ckplus48_zip, tmp_path,
                                                                                capsys):
    """results/shipped/before/ (the model a new shipped one replaced, scripts/ship_model.py): its
    predictions are checked against the archives and the model's metrics.json kept with them; a
    changed number there is named, and a folder without its metrics is a problem."""
    import json
    import shutil

    repo = Path(__file__).resolve().parents[1]
    res = tmp_path / "results"
    shutil.copytree(repo / "results" / "shipped", res / "shipped")
    before = res / "shipped" / "before"
    if not before.is_dir():  # until a model replaces the first one: build the folder from the shipped one
        before.mkdir()
        for part in ("fer2013", "cross"):
            shutil.copytree(repo / "results" / "shipped" / part, before / part)
        for f in ("card.json", "metrics.json"):
            shutil.copy2(repo / "lkr" / "data" / "model" / f, before / f)
    assert main(["verify", str(res), "--fer", str(fer2013_zip), "--ck", str(ckplus48_zip)]) == 0
    capsys.readouterr()
    m = json.loads((before / "metrics.json").read_text())
    m["accuracy"] += 0.01
    (before / "metrics.json").write_text(json.dumps(m))
    assert main(["verify", str(res), "--fer", str(fer2013_zip), "--ck", str(ckplus48_zip)]) == 1
    assert "before/metrics.json: accuracy" in capsys.readouterr().out
    (before / "metrics.json").unlink()
    assert main(["verify", str(res), "--fer", str(fer2013_zip), "--ck", str(ckplus48_zip)]) == 1
    assert "no metrics.json (its model's) to check its predictions against" in capsys.readouterr().out
