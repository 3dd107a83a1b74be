"""The trainer: data, masks and augmentation live on the training device; one run folder per run.

A step is: draw anchors (and, with a triplet loss, a positive and a negative per anchor) from the
training split, augment the batch on the device (crop, flip, black blocks; the mask follows),
forward, loss, SGD step. There is no per-image Python and no host synchronisation inside an
epoch: losses are summed on the device and read once per epoch.

Protocol: the epoch is selected on a split that is never reported (FER2013: PublicTest; CK+: a
validation part of the fold's training subjects); the selected weights are evaluated with
ten-crop on the reported split (FER2013: PrivateTest; CK+: the fold's test subjects).

Run folder::

    config.json       the Config (also inside every checkpoint)
    history.json      per epoch: lr, loss parts, selection accuracy, seconds
    checkpoint.pt     last state, for resuming (model, optimizer, history, best so far)
    best.pt           the selected weights and their config
    metrics.json      test metrics of the selected weights (+ selection split, timing, data)
    predictions.npz   test: dataset index, label, prediction, probabilities (float16)
    embeddings.npz    256-d test embeddings of a fixed subsample (float16)

Randomness is seeded per epoch from ``cfg.seed`` and the epoch number, so a run resumed from
any checkpoint follows the same path as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import lkr
from lkr.augment import train_augment
from lkr.config import DEMO_OVERRIDES, Config
from lkr.dataset import FaceDataset
from lkr.errors import RunError, TrainingError
from lkr.evaluate import autocast_for, classification_metrics, predict_ten_crop
from lkr.losses import lkr_loss, sample_triplets
from lkr.model import build_model


# --- small I/O helpers: every file a later run trusts is written atomically ----------------
def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically."""
    _atomic(Path(path), lambda f: f.write(json.dumps(obj, indent=2, default=_json_default).encode()))


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def save_torch(path: Path, obj: Any) -> None:
    """``torch.save`` atomically."""
    _atomic(Path(path), lambda f: torch.save(obj, f))


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` atomically."""
    _atomic(Path(path), lambda f: np.savez_compressed(f, **arrays))


def resolve_device(device: str | None) -> torch.device:
    """"cpu", "cuda", or None for CUDA when present."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(device)


# --- data on the device ---------------------------------------------------------------------
@dataclass
class Prepared:
    """A dataset moved to the training device.

    images (N,48,48) uint8, masks (N,48,48) float32 in [0,1] or None, labels (N,) int64, and
    ``index``: {"train", "select", "test"} -> int64 tensors of dataset positions.
    """

    images: torch.Tensor
    masks: torch.Tensor | None
    labels: torch.Tensor
    index: dict[str, torch.Tensor]
    split_names: dict[str, str]
    notes: list[str]


def is_fold_dataset(ds: FaceDataset) -> bool:
    """True for CK+-like data (no official splits; evaluated by subject-independent folds)."""
    return "Training" not in ds.split_names


def split_indices(ds: FaceDataset, cfg: Config, *, fold: int | None = None, folds: int = 10
                  ) -> tuple[dict[str, np.ndarray], dict[str, str], list[str]]:
    """Dataset positions of the train / select / test parts, their names, and notes."""
    notes: list[str] = []
    if not is_fold_dataset(ds):
        train = np.flatnonzero(ds.splits == "Training")
        names = ds.split_names
        if cfg.select_split in names and cfg.select_split != "Training":
            select = np.flatnonzero(ds.splits == cfg.select_split)
            sel_name = cfg.select_split
        else:
            # No official selection split (e.g. an image-folder release without prefixes):
            # hold out a seeded, stratified part of Training. Never select on the test split.
            from sklearn.model_selection import train_test_split

            train, select = train_test_split(train, test_size=cfg.val_fraction, random_state=cfg.seed,
                                             stratify=ds.labels[train])
            train, select = np.sort(train), np.sort(select)
            sel_name = f"Training-holdout-{cfg.val_fraction:g}"
            notes.append(f"no {cfg.select_split} split: epochs are selected on {sel_name}")
        test_name = cfg.test_split if cfg.test_split in names else ("Test" if "Test" in names else None)
        if test_name is None:
            raise TrainingError(f"{ds.source}: no test split ({cfg.test_split} or Test) to report")
        test = np.flatnonzero(ds.splits == test_name)
        return {"train": train, "select": select, "test": test}, \
            {"train": "Training", "select": sel_name, "test": test_name}, notes
    from lkr.folds import fold_split

    if fold is None:
        fold = 0
        notes.append("no --fold given: fold 0 is used")
    subjects = ds.subjects if (ds.subjects != "").all() else ds.sequences
    parts = fold_split(subjects, ds.labels, fold, k=folds, seed=cfg.seed, val_fraction=cfg.val_fraction)
    idx = {"train": np.flatnonzero(parts["train"]), "select": np.flatnonzero(parts["val"]),
           "test": np.flatnonzero(parts["test"])}
    names = {"train": f"fold{fold}-train", "select": f"fold{fold}-val", "test": f"fold{fold}-test"}
    return idx, names, notes


def prepare_data(ds: FaceDataset, cfg: Config, *, fold: int | None = None, folds: int = 10,
                 device: torch.device | str = "cpu", progress: bool = False) -> Prepared:
    """Landmarks (computed and cached when missing), masks, splits, all moved to ``device``."""
    device = torch.device(device)
    masks = None
    if cfg.local_branch:
        if not ds.has_landmarks:
            from lkr.landmarks import attach_landmarks

            ds = attach_landmarks(ds, progress=progress)
        from lkr.regions import region_masks

        masks = torch.from_numpy(region_masks(ds.boxes, ds.points, alpha=cfg.alpha, size=ds.images.shape[1],
                                              merge=cfg.mask_merge)).to(device)
    idx, names, notes = split_indices(ds, cfg, fold=fold, folds=folds)
    return Prepared(
        images=torch.from_numpy(ds.images).to(device),
        masks=masks,
        labels=torch.from_numpy(ds.labels).to(device),
        index={k: torch.from_numpy(v).long().to(device) for k, v in idx.items()},
        split_names=names,
        notes=notes,
    )


# --- schedule -------------------------------------------------------------------------------
def lr_at(cfg: Config, epoch_float: float) -> float:
    """Learning rate at a (fractional) epoch.

    "paper": warmup_lr for the first warmup_epochs, then lr (Sec. 4.2, Table 1).
    "cosine": linear from warmup_lr to lr over warmup_epochs, then cosine decay to 0.
    """
    if cfg.schedule == "paper":
        return cfg.warmup_lr if epoch_float < cfg.warmup_epochs else cfg.lr
    if cfg.schedule == "cosine":
        if epoch_float < cfg.warmup_epochs:
            return cfg.warmup_lr + (cfg.lr - cfg.warmup_lr) * epoch_float / max(cfg.warmup_epochs, 1e-9)
        t = (epoch_float - cfg.warmup_epochs) / max(cfg.epochs - cfg.warmup_epochs, 1e-9)
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0)))
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


def _epoch_seed(cfg: Config, epoch: int) -> int:
    return (cfg.seed * 1_000_003 + epoch * 7919) % (2**63 - 1)


# --- the run --------------------------------------------------------------------------------
def train(
    ds: FaceDataset,
    cfg: Config,
    out: str | Path,
    *,
    device: str | torch.device | None = None,
    fold: int | None = None,
    folds: int = 10,
    progress: bool = True,
    resume: bool = True,
    data_ref: str | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train one configuration and write its run folder.

    Args:
        ds: the dataset (FER2013-like with official splits, or CK+-like evaluated by folds).
        cfg: the configuration.
        out: run folder (created). An existing checkpoint with the same config is resumed.
        device: "cpu", "cuda" or None (CUDA when present).
        fold, folds: CK+-like data: which subject-independent fold is the test part.
        progress: tqdm bars.
        resume: continue from ``out/checkpoint.pt`` when present.
        data_ref: how to load the data again (stored for ``lkr evaluate``); default ds.source.
        stop_after: stop (as if killed) after this many epochs of this call; for tests.

    Returns:
        The metrics dict written to ``out/metrics.json`` (or {"stopped_at": epoch} when
        ``stop_after`` ended the call early).

    Raises:
        TrainingError: on a non-finite loss (the last good checkpoint is kept).
        RunError: when ``out`` holds a run of another config.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    info = {"data": data_ref or ds.source, "dataset": ds.name, "kind": ds.kind, "fold": fold, "folds": folds,
            "kit_version": lkr.__version__}

    if progress:
        print(f"[lkr] {cfg.variant} (lambda={cfg.triplet_lambda}) on {ds.name} ({len(ds)} images), device {dev}")
        print(f"[lkr] config: {json.dumps(cfg.to_dict(), default=str)}")
    prepared = prepare_data(ds, cfg, fold=fold, folds=folds, device=dev, progress=progress)
    if prepared.notes and progress:
        for n in prepared.notes:
            print(f"[lkr] note: {n}")
    train_idx = prepared.index["train"]
    train_labels = prepared.labels[train_idx]
    n_train = len(train_idx)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(dev)
    use_cl = cfg.channels_last and dev.type == "cuda"
    if use_cl:
        model = model.to(memory_format=torch.channels_last)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                          **({"fused": True} if dev.type == "cuda" else {}))
    step_model = torch.compile(model) if (cfg.compile and dev.type == "cuda") else model

    history: list[dict[str, Any]] = []
    best = {"epoch": -1, "select_accuracy": -1.0}
    best_state: dict[str, torch.Tensor] | None = None
    start_epoch = 0
    ckpt_path, best_path = out / "checkpoint.pt", out / "best.pt"
    if resume and ckpt_path.exists():
        ck = _load_checkpoint(ckpt_path, dev)
        if Config.from_dict(ck["config"]).to_dict() != cfg.to_dict():
            raise RunError(f"{out}: holds a run of another config; choose a new --out or delete it")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        history, best, start_epoch = ck["history"], ck["best"], ck["epoch"]
        best_state = ck.get("best_model")
        if progress:
            print(f"[lkr] resuming {out} after epoch {start_epoch}")
    write_json(out / "config.json", cfg.to_dict())

    triplet = cfg.uses_triplet
    bsz = min(cfg.batch_size, n_train)
    steps = max(n_train // bsz, 1)  # drop the last partial batch: static shapes
    gen = torch.Generator(device=dev)
    t_train = 0.0
    bar = tqdm(range(start_epoch, cfg.epochs), desc=f"{cfg.variant}", disable=not progress,
               initial=start_epoch, total=cfg.epochs, unit="ep")
    done_this_call = 0
    for epoch in bar:
        seed = _epoch_seed(cfg, epoch)
        gen.manual_seed(seed)
        torch.manual_seed(seed)  # dropout
        model.train()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        perm = torch.randperm(n_train, device=dev, generator=gen)
        sums = torch.zeros(3, device=dev)
        correct = torch.zeros((), device=dev)
        for s in range(steps):
            opt.param_groups[0]["lr"] = lr_at(cfg, epoch + s / steps)
            a = perm[s * bsz:(s + 1) * bsz]
            if triplet:
                p, n = sample_triplets(train_labels, a, gen, cfg.num_classes)
                pos = torch.cat([a, p, n])
            else:
                pos = a
            idx = train_idx[pos]
            x, m = train_augment(prepared.images[idx], None if prepared.masks is None else prepared.masks[idx],
                                 cfg, gen)
            if use_cl:
                x = x.contiguous(memory_format=torch.channels_last)
            y = prepared.labels[idx]
            with autocast_for(dev, cfg.amp):
                o = step_model(x, m)
                loss, parts = lkr_loss(o, y, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums += torch.stack([parts["total"].float(), parts["ce"].float(), parts["triplet"].float()])
            correct += (o["logits"].detach().argmax(1) == y).float().mean()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t_epoch = time.perf_counter() - t0
        t_train += t_epoch
        loss_total, loss_ce, loss_tri = (sums / steps).tolist()
        if not all(math.isfinite(v) for v in (loss_total, loss_ce, loss_tri)):
            raise TrainingError(f"non-finite loss at epoch {epoch + 1}; the last good checkpoint "
                                f"({start_epoch + done_this_call} epochs) is kept in {out}")
        rec: dict[str, Any] = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "loss": loss_total,
                               "ce": loss_ce, "triplet": loss_tri, "train_accuracy": float(correct) / steps,
                               "seconds": t_epoch,
                               "images_per_s": steps * bsz * (3 if triplet else 1) / t_epoch}
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            sel = prepared.index["select"]
            probs, _ = predict_ten_crop(model, prepared.images[sel],
                                        None if prepared.masks is None else prepared.masks[sel],
                                        crop=cfg.crop, amp=cfg.amp, channels_last=use_cl)
            acc = float((probs.argmax(1) == prepared.labels[sel]).float().mean())
            rec["select_accuracy"] = acc
            if acc > best["select_accuracy"]:
                best = {"epoch": epoch + 1, "select_accuracy": acc}
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history.append(rec)
        bar.set_postfix(loss=f"{loss_total:.3f}", sel=f"{rec.get('select_accuracy', float('nan')):.3f}")
        done_this_call += 1
        last = epoch + 1 == cfg.epochs
        if last or (epoch + 1) % cfg.checkpoint_every == 0 or (stop_after and done_this_call >= stop_after):
            # One file holds the whole state (the best weights too), so a kill between two
            # writes can never pair a checkpoint with a best.pt of another epoch.
            save_torch(ckpt_path, {"config": cfg.to_dict(), "model": model.state_dict(),
                                   "optimizer": opt.state_dict(), "history": history, "best": best,
                                   "best_model": best_state, "epoch": epoch + 1, "info": info})
            write_json(out / "history.json", history)
        if stop_after and done_this_call >= stop_after and not last:
            bar.close()
            return {"stopped_at": epoch + 1}
    bar.close()

    # Evaluate the selected weights on the reported split.
    if best_state is not None:
        model.load_state_dict(best_state)
    save_torch(best_path, {"config": cfg.to_dict(), "model": model.state_dict(), "epoch": best["epoch"],
                           "select_accuracy": best["select_accuracy"], "info": info})
    test = prepared.index["test"]
    t0 = time.perf_counter()
    probs, emb = predict_ten_crop(model, prepared.images[test],
                                  None if prepared.masks is None else prepared.masks[test],
                                  crop=cfg.crop, amp=cfg.amp, channels_last=use_cl, with_embeddings=True)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_eval = time.perf_counter() - t0
    labels = prepared.labels[test].cpu().numpy()
    probs_np = probs.float().cpu().numpy()
    preds = probs_np.argmax(1)
    metrics = classification_metrics(labels, preds, tuple(ds.class_names))
    metrics.update({
        "variant": cfg.variant, "triplet_lambda": cfg.triplet_lambda, "local_branch": cfg.local_branch,
        "test_split": prepared.split_names["test"], "select_split": prepared.split_names["select"],
        "best_epoch": best["epoch"], "select_accuracy": best["select_accuracy"], "epochs": cfg.epochs,
        "n_train": int(n_train), "n_select": int(len(prepared.index["select"])),
        "train_seconds": t_train, "eval_seconds": t_eval, "device": _device_name(dev),
        "torch": torch.__version__, "notes": prepared.notes, **info,
    })
    test_np = test.cpu().numpy()
    save_npz(out / "predictions.npz", index=test_np, label=labels.astype(np.int8), pred=preds.astype(np.int8),
             probs=probs_np.astype(np.float16), class_names=np.array(ds.class_names))
    rng = np.random.default_rng(cfg.seed)
    keep = np.sort(rng.choice(len(test_np), size=min(cfg.embed_samples, len(test_np)), replace=False))
    save_npz(out / "embeddings.npz", index=test_np[keep], label=labels[keep].astype(np.int8),
             embedding=emb[torch.from_numpy(keep).to(emb.device)].float().cpu().numpy().astype(np.float16))
    write_json(out / "history.json", history)
    write_json(out / "metrics.json", metrics)
    if progress:
        print(f"[lkr] {cfg.variant}: {metrics['test_split']} ten-crop accuracy {100 * metrics['accuracy']:.2f}% "
              f"(epoch {best['epoch']} selected on {metrics['select_split']} at {100 * best['select_accuracy']:.2f}%)")
    return metrics


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as e:
        raise RunError(f"{path}: unreadable checkpoint ({type(e).__name__}); delete it to start over") from None


def load_run_model(run: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, Config, dict]:
    """The selected weights of a trained run folder, in eval mode.

    Raises:
        RunError: if ``run`` is not a trained run folder.
    """
    run = Path(run)
    best = run / "best.pt"
    if not run.is_dir() or not best.exists():
        raise RunError(f"{run}: not a trained run folder (no best.pt)")
    ck = _load_checkpoint(best, torch.device(device))
    cfg = Config.from_dict(ck["config"])
    model = build_model(cfg).to(device)
    model.load_state_dict(ck["model"])
    model.eval()
    return model, cfg, ck.get("info", {})


# --- CLI ------------------------------------------------------------------------------------
def _parse_set(items: list[str]) -> dict[str, Any]:
    types = {f.name: f for f in dataclasses.fields(Config)}
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise TrainingError(f"--set {item!r}: expected FIELD=VALUE")
        k, v = item.split("=", 1)
        if k not in types:
            raise TrainingError(f"--set {k}: no such config field")
        default = getattr(Config(), k)
        try:
            if isinstance(default, bool):
                out[k] = v.lower() in ("1", "true", "yes", "on")
            elif isinstance(default, int):
                out[k] = int(v)
            elif isinstance(default, float):
                out[k] = float(v)
            elif isinstance(default, tuple):
                out[k] = tuple(int(x) if x.strip().lstrip("-").isdigit() else x.strip() for x in v.split(","))
            else:
                out[k] = v
        except ValueError:
            raise TrainingError(f"--set {k}={v}: not a valid {type(default).__name__}") from None
    return out


def config_for(ds: FaceDataset, variant: str, **overrides: Any) -> Config:
    """The config of ``variant`` for this dataset: demo data gets the thin CPU preset, CK+-like
    data selects on a validation part of the fold's training subjects."""
    kw: dict[str, Any] = {}
    if ds.kind == "demo":
        kw.update(DEMO_OVERRIDES)
    if is_fold_dataset(ds):
        kw.update(select_split="val", test_split="test")
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return Config.for_variant(variant, **kw)


def train_cli(args: argparse.Namespace) -> int:
    from lkr.readers import load_dataset

    ds = load_dataset(args.data)
    cfg = config_for(ds, args.variant, triplet_lambda=args.lam, epochs=args.epochs, batch_size=args.batch_size,
                     lr=args.lr, schedule=args.schedule, warmup_epochs=args.warmup_epochs,
                     mask_stage=args.mask_stage, seed=args.seed, **_parse_set(args.set))
    m = train(ds, cfg, args.out, device=args.device, fold=args.fold, folds=args.folds, progress=not args.quiet,
              data_ref=args.data)
    print(f"{args.out}: {cfg.variant} {m['test_split']} accuracy {100 * m['accuracy']:.2f}% "
          f"(selected epoch {m['best_epoch']} on {m['select_split']})")
    return 0
