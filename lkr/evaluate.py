"""Ten-crop evaluation (four corners and centre, each also flipped), metrics, and re-evaluation
of a saved run folder (``lkr evaluate RUN``).

Re-evaluation reads the run folder through :mod:`lkr.runfolder` and takes the reported split
from :mod:`lkr.prepare`, as the trainer did; it never imports the trainer."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lkr.augment import center_crop, five_crop, ten_crop
from lkr.device import autocast_for, resolve_device, run_bf16
from lkr.prepare import prepare_data
from lkr.runfolder import load_run_model


CROPS = ("ten", "five", "center")
"""How an image is predicted: "ten" = ten-crop (four corners and centre, each also flipped,
softmax averaged; the reported split), "five" = the same five crops unflipped (the reported split
of a run trained without flips, :func:`test_crops`), "center" = the centre crop alone (a tenth
of the cost; epoch selection with ``Config.select_crops="center"``)."""


def test_crops(cfg: Any) -> str:
    """The crops a run's reported split is predicted with: ten-crop, or five-crop when the run
    trained without horizontal flips (``flip_p == 0``: the positive control, whose cue and codes a
    flip would move to another class's)."""
    return "ten" if cfg.flip_p > 0 else "five"


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor | None,
    *,
    crops: str = "ten",
    crop: int = 44,
    amp: bool = False,
    channels_last: bool = False,
    with_embeddings: bool = False,
    max_crops: int = 1280,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Class probabilities of each image: ten-crop (softmax averaged over the crops) or the
    centre crop. The one inference loop of the kit (evaluation, selection, prediction, export
    checks).

    Memory is bounded: a forward pass holds at most ``max_crops`` crops (at full width the first
    conv's output of 1280 crops of 44x44 is 0.6 GB), whatever the number of images.

    Args:
        model: an :class:`lkr.model.LKRNet` (any mode; it is put in eval mode and restored).
        images: (N, 48, 48) uint8 on the model's device.
        masks: (N, 48, 48) float in [0, 1] on the same device, or None for single-branch models.
        crops: "ten", "five" or "center" (:data:`CROPS`).
        crop: crop side.
        amp: bf16 autocast (see :func:`lkr.device.autocast_for`); pass what the run trained with
            (:func:`lkr.device.run_bf16`).
        channels_last: NHWC input (for a channels_last model).
        with_embeddings: also return the 256-d embedding (averaged over the crops).
        max_crops: at most this many crops per forward pass (>= 10 for ten-crop).

    Returns:
        probs (N, K) float32 and, if asked, embeddings (N, D) float32 (else None).
    """
    if crops not in CROPS:
        raise ValueError(f"crops must be one of {', '.join(CROPS)}, got {crops!r}")
    n_crops = {"ten": 10, "five": 5, "center": 1}[crops]
    if crops == "center":
        def cut(i, m, crop):
            return tuple(None if t is None else t.unsqueeze(0) for t in center_crop(i, m, crop=crop))
    else:
        def cut(i, m, crop):
            return (ten_crop if crops == "ten" else five_crop)(i, m, crop=crop)
    was_training = model.training
    model.eval()
    device = images.device
    probs, embs = [], []
    chunk = max(1, max_crops // n_crops)  # images per forward pass
    for s in range(0, len(images), chunk):
        img = images[s:s + chunk]
        msk = None if masks is None else masks[s:s + chunk]
        x, m = cut(img, msk, crop=crop)  # (n_crops, B, 1, c, c)
        b = x.shape[1]
        x = x.reshape(n_crops * b, *x.shape[2:])
        if m is not None:
            m = m.reshape(n_crops * b, *m.shape[2:])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_for(device, amp):
            out = model(x, m)
        probs.append(F.softmax(out["logits"].float(), dim=1).view(n_crops, b, -1).mean(0))
        if with_embeddings:
            embs.append(out["embedding"].float().view(n_crops, b, -1).mean(0))
    model.train(was_training)
    p = torch.cat(probs) if probs else torch.zeros(0, 0, device=device)
    e = torch.cat(embs) if with_embeddings and embs else None
    return p, e


def classification_metrics(labels: np.ndarray, preds: np.ndarray, class_names: tuple[str, ...]) -> dict[str, Any]:
    """Overall accuracy, per-class accuracy (recall) and the confusion matrix.

    Args:
        labels, preds: (N,) ints in [0, K).
        class_names: K names.

    Returns:
        {"accuracy": float, "per_class": {name: float | None}, "confusion": K x K list (rows =
        true class, columns = predicted), "n": N, "class_counts": {name: int}}.
    """
    from sklearn.metrics import confusion_matrix  # here: the import costs ~1.5 s per new process

    k = len(class_names)
    cm = confusion_matrix(labels, preds, labels=list(range(k)))
    support = cm.sum(1)
    per_class = {c: (float(cm[i, i] / support[i]) if support[i] else None) for i, c in enumerate(class_names)}
    return {
        "accuracy": float((labels == preds).mean()) if len(labels) else 0.0,
        "per_class": per_class,
        "confusion": cm.tolist(),
        "n": int(len(labels)),
        "class_counts": {c: int(support[i]) for i, c in enumerate(class_names)},
    }


def run_test_probabilities(run: str | Path, *, data: str | None = None, device: str | None = None
                           ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """A trained run folder's selected weights on its test split, ten-crop, as the trainer
    evaluated them (same thread count, precision and memory format: on the same machine the
    probabilities are the run's own, bit for bit).

    Returns:
        (probs (N, K) float32, labels (N,) int, class names).

    Raises:
        RunError: if the folder is not a trained run.
    """
    run = Path(run)
    model, cfg, info = load_run_model(run, device=resolve_device(device))
    dev = next(model.parameters()).device
    if dev.type == "cpu":
        from lkr.cpu import use_threads

        use_threads(info.get("threads"))  # the run's own thread count: its metrics again, bit for bit
    ds_path = data or info["data"]
    part = _test_split_only(ds_path, cfg, info, run)
    if part is not None:  # the scored split alone: decoded and its landmarks found, nothing else
        ds, images, masks, labels = part
        images, labels = images.to(dev), labels.to(dev)
        masks = None if masks is None else masks.to(dev)
    else:
        from lkr.readers import load_dataset

        ds = load_dataset(ds_path)
        prepared = prepare_data(ds, cfg, fold=info.get("fold"), folds=info.get("folds", 10), device=dev)
        test = prepared.index["test"]
        images, labels = prepared.images[test], prepared.labels[test]
        masks = None if prepared.masks is None else prepared.masks[test]
    if not len(labels):
        from lkr.errors import LkrError

        raise LkrError(f"{data or info.get('data')}: the run's test split holds no image of this dataset")
    probs, _ = predict(model, images, masks, crops=test_crops(cfg), crop=cfg.crop,
                       amp=run_bf16(cfg, info, dev), channels_last=cfg.channels_last)
    return probs.float().cpu().numpy(), labels.cpu().numpy(), tuple(ds.class_names)


def run_template(run: str | Path, info: dict[str, Any]) -> dict[str, Any] | None:
    """The landmark template a run recorded (:func:`lkr.landmarks.template_record`): in its
    checkpoint's info, else in its ``metrics.json`` (the shipped model's); None for runs trained
    before it was recorded, and for data evaluated by folds."""
    if isinstance(info.get("landmark_template"), dict):
        return info["landmark_template"]
    try:
        t = json.loads((Path(run) / "metrics.json").read_text()).get("landmark_template")
    except (OSError, ValueError):
        return None
    return t if isinstance(t, dict) else None


def _test_split_only(ds_path: str, cfg: Any, info: dict[str, Any], run: str | Path
                     ) -> tuple[Any, torch.Tensor, torch.Tensor | None, torch.Tensor] | None:
    """(dataset part, images, masks, labels) of the run's test split read alone, for data with
    official splits (FER2013) and a run that recorded its landmark template (or needs none); None
    where the whole dataset must be read (subject folds, the demo set, older runs)."""
    from lkr.readers import load_dataset

    if info.get("fold") is not None or str(ds_path) in ("demo", "demo-ckplus") or info.get("kind") in ("ckplus48", "ckplus-full"):
        return None  # subject folds, the built-in demo set (its own landmarks), CK+: read whole
    template = run_template(run, info) if cfg.local_branch else None
    if cfg.local_branch and template is None:
        return None
    ds = load_dataset(ds_path, splits={cfg.test_split})
    if set(ds.split_names) != {cfg.test_split}:
        return None  # no such split here (e.g. a release without file-name prefixes): as before
    masks = None
    if cfg.local_branch:
        from lkr.landmarks import attach_landmarks
        from lkr.regions import run_masks

        ds = attach_landmarks(ds, progress=False, template=template, part=True)
        masks = torch.from_numpy(run_masks(cfg, ds.boxes, ds.points, size=ds.images.shape[1]))
    return ds, torch.from_numpy(ds.images), masks, torch.from_numpy(ds.labels)


def evaluate_run(run: str | Path, *, data: str | None = None, device: str | None = None) -> dict[str, Any]:
    """Re-evaluate a trained run folder's selected weights on its test split with ten-crop.

    Raises:
        RunError: if the folder is not a trained run.
    """
    probs, labels, names = run_test_probabilities(run, data=data, device=device)
    return classification_metrics(labels, probs.argmax(1), names)


def evaluate_cross(run: str | Path, data: str, *, device: str | None = None, ds: Any = None,
                   out: str | Path | None = None) -> dict[str, Any]:
    """A trained run on another dataset's images (FER2013 -> CK+48, CK+48 -> FER2013), written to
    ``out`` (default ``<run>/cross/<dataset>/``; never over the run's own metrics).

    Classes are matched by name; images of a class the model never learned (contempt for a
    FER2013 model, neutral for a CK+ model) are left out and counted; the prediction is the
    argmax of the ten-crop probabilities over the shared classes. The images: FER2013's
    PrivateTest, or every CK+ image (the model never saw either). On CK+, the 95% interval
    resamples subjects (a subject's frames are not independent; :mod:`lkr.stats`).

    Returns:
        metrics ({"accuracy", "per_class", "confusion", "n", ...} over the shared classes, plus
        "left_out" {class: images}, "shared_classes", "ci_low", "ci_high", "resampled",
        "dataset", "source_dataset").

    Raises:
        RunError: not a trained run; LkrError: the data cannot be read, or shares no class.
    """
    from lkr.errors import LkrError
    from lkr.landmarks import attach_landmarks
    from lkr.runfolder import run_class_names
    from lkr.readers import load_dataset
    from lkr.runfolder import save_npz, write_json
    from lkr.stats import bootstrap_difference

    run = Path(run)
    model, cfg, info = load_run_model(run, device=resolve_device(device))
    dev = next(model.parameters()).device
    if dev.type == "cpu":
        from lkr.cpu import use_threads

        use_threads(info.get("threads"))
    names = run_class_names(run, cfg.num_classes, info)
    ds = load_dataset(data) if ds is None else ds
    from lkr.runfolder import dataset_identity

    if info.get("dataset") is not None and dataset_identity(ds.name) == dataset_identity(info["dataset"]):
        raise LkrError(f"{data}: the run was trained on {info['dataset']} ({dataset_identity(ds.name)}) itself; use "
                       f"lkr evaluate {run} without --data for its own test split")
    shared = [c for c in ds.class_names if c in names]
    if not shared:
        raise LkrError(f"{data}: none of its classes ({', '.join(ds.class_names)}) is one the run learned")
    if ds.evaluation == "splits":  # the reported split: PrivateTest, or Test of a folder without prefixes
        split = "PrivateTest" if (ds.splits == "PrivateTest").any() else "Test"
        pick = np.flatnonzero(ds.splits == split)
        if not len(pick):
            raise LkrError(f"{data}: no PrivateTest (or Test) images to evaluate on; its splits are "
                           f"{', '.join(sorted(set(map(str, ds.splits))))}")
    else:
        pick = np.arange(len(ds.labels))
    target = np.asarray(ds.class_names)[ds.labels[pick]]
    keep = np.isin(target, shared)
    left_out = {c: int((target == c).sum()) for c in ds.class_names if c not in shared}
    idx = pick[keep]
    if cfg.local_branch and not ds.has_landmarks:
        ds = attach_landmarks(ds, progress=False)
    masks = None
    if cfg.local_branch:
        from lkr.regions import run_masks

        masks = torch.from_numpy(run_masks(cfg, ds.boxes[idx], ds.points[idx], size=ds.images.shape[1])).to(dev)
    probs, _ = predict(model, torch.from_numpy(ds.images[idx]).to(dev), masks, crops=test_crops(cfg), crop=cfg.crop,
                       amp=run_bf16(cfg, info, dev), channels_last=cfg.channels_last)
    cols = [names.index(c) for c in shared]  # the model's columns of the shared classes
    pred_shared = probs[:, cols].argmax(1).cpu().numpy()
    label_shared = np.array([shared.index(c) for c in np.asarray(ds.class_names)[ds.labels[idx]]])
    m = classification_metrics(label_shared, pred_shared, tuple(shared))
    right = (label_shared == pred_shared).astype(float)
    groups = ds.subjects[idx].astype(str) if ds.evaluation == "folds" and all(ds.subjects[idx]) else None
    _, low, high = bootstrap_difference(right, np.zeros_like(right), groups=groups)
    m.update({"left_out": left_out, "shared_classes": shared, "ci_low": low, "ci_high": high,
              "resampled": "subjects" if groups is not None else "images", "dataset": ds.name, "data": str(data),
              "source_dataset": info.get("dataset"), "images": split if ds.evaluation == "splits" else "all"})
    out = run / "cross" / ds.name if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    extra = {"subject": groups} if groups is not None else {}
    save_npz(out / "predictions.npz", index=idx, label=label_shared.astype(np.int8), pred=pred_shared.astype(np.int8),
             class_names=np.array(shared), **extra)
    write_json(out / "metrics.json", m)
    return m


def _trained_on(run: str | Path) -> str | None:
    try:
        return json.loads((Path(run) / "metrics.json").read_text()).get("dataset")
    except (OSError, ValueError):
        return None


def evaluate_cli(args: argparse.Namespace) -> int:
    from lkr.errors import LkrError

    from lkr.shipped import is_shipped

    if args.run is not None and is_shipped(args.run) and not args.shipped:  # the package's folder by its path
        args.run, args.shipped = None, True
    if args.shipped == (args.run is not None):
        raise LkrError("lkr evaluate: give a run folder or --shipped (not both)")
    if args.shipped:
        from lkr.shipped import shipped_run

        if not args.data:
            raise LkrError("lkr evaluate --shipped: give --data (FER2013 for its PrivateTest, CK+48 for the "
                           "cross-dataset evaluation)")
        args.run = shipped_run()
    other = None
    if args.data:  # another dataset than the run's own: the cross-dataset evaluation
        from lkr.readers import load_dataset

        from lkr.runfolder import dataset_identity

        # which dataset it is: FER2013's PrivateTest is enough to tell (and what a re-evaluation
        # of a FER2013 run reads anyway); data without that split is read whole
        other = load_dataset(args.data, splits={"PrivateTest"})
        trained = _trained_on(args.run)
        if trained is not None and dataset_identity(other.name) == dataset_identity(trained):
            other = None  # the run's own dataset (a cue-stamped copy too): its own test split
        elif "Training" not in other.split_names and "PrivateTest" in other.split_names:
            other = load_dataset(args.data)  # into FER2013: whole (its template is its Training faces')
    if other is not None:
        out = args.out
        if out is not None and (Path(out).resolve() == Path(args.run).resolve() or (Path(out) / "best.pt").exists()):
            raise LkrError(f"--out {out}: a run folder; its own metrics.json is not overwritten (give another folder)")
        if out is None and args.shipped:
            out = Path("out") / "shipped" / "cross" / other.name  # never inside the installed package
        m = evaluate_cross(args.run, args.data, device=args.device, ds=other, out=out)
        if args.json:
            print(json.dumps(m, indent=2))
            return 0
        lo = ", ".join(f"{c} {n}" for c, n in m["left_out"].items()) or "none"
        print(f"{'the shipped model' if args.shipped else args.run} on {m['dataset']} ({m['images']} images): "
              f"{100 * m['accuracy']:.2f}% over the {len(m['shared_classes'])} shared classes, 95% interval "
              f"{100 * m['ci_low']:.1f}-{100 * m['ci_high']:.1f} (resampling {m['resampled']}); {m['n']} images, "
              f"left out: {lo}; written to {out or Path(args.run) / 'cross' / m['dataset']}")
        for c, a in m["per_class"].items():
            print(f"  {c:<10} {'-' if a is None else f'{100 * a:5.1f}%'}  (n={m['class_counts'][c]})")
        return 0
    m = evaluate_run(args.run, data=args.data, device=args.device)
    if args.out:  # the re-evaluation's metrics where asked (never over the run's own)
        from lkr.runfolder import write_json

        if Path(args.out).resolve() == Path(args.run).resolve() or (Path(args.out) / "best.pt").exists():
            raise LkrError(f"--out {args.out}: a run folder; its own metrics.json is not overwritten (give another folder)")
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_json(Path(args.out) / "metrics.json", m)
    if args.json:
        print(json.dumps(m, indent=2))
        return 0
    print(f"{'the shipped model' if args.shipped else args.run}: ten-crop accuracy {100 * m['accuracy']:.2f}% on "
          f"{m['n']} test images" + (f"; written to {Path(args.out) / 'metrics.json'}" if args.out else ""))
    for c, a in m["per_class"].items():
        print(f"  {c:<10} {'-' if a is None else f'{100 * a:5.1f}%'}  (n={m['class_counts'][c]})")
    return 0
