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
any checkpoint follows the same path as an uninterrupted one: on the CPU a run killed at any
moment (SIGKILL included) and started again with the same command ends with bit-identical
weights and metrics (same torch build and thread count; see docs/determinism.md).

Faults: every file is written to a temporary file in the run folder, flushed, fsynced and then
renamed over its name (``os.replace``), so a kill leaves either the old file or the new one,
never half a file; temporaries a killed write left behind (``<name>*.tmp``) are never read and
are deleted when the next run starts. ``metrics.json`` is written last: a folder without it is
not finished and the next run resumes from ``checkpoint.pt`` (after the last epoch it only
evaluates again). A non-finite loss stops the run before that epoch is checkpointed.

Several processes: under torchrun (:mod:`lkr.distributed`) every process draws the same global
batch (:func:`epoch_batches`: same anchors, triplet partners and augmentation) and trains on its
share of the anchors with their positives and negatives (:func:`lkr.distributed.shard_rows`);
DistributedDataParallel averages the gradients, and on GPUs BatchNorm is SyncBatchNorm, so a
step equals the one-process step on the whole batch up to float summation order. Rank 0
evaluates, writes every file and tells the others the selection accuracy.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

import lkr
from lkr import distributed
from lkr.atomic import atomic_write
from lkr.augment import train_augment
from lkr.config import DEMO_OVERRIDES, Config
from lkr.dataset import FaceDataset
from lkr.errors import RunError, TrainingError
from lkr.evaluate import autocast_for, classification_metrics, predict_ten_crop
from lkr.losses import lkr_loss, sample_triplets
from lkr.model import build_model


# --- small I/O helpers: every file a later run trusts is written atomically ----------------
RUN_FILES = ("config.json", "history.json", "checkpoint.pt", "best.pt", "metrics.json", "predictions.npz",
             "embeddings.npz")
"""The files of a run folder (see the module docstring)."""


def remove_stale_temps(out: str | Path) -> list[Path]:
    """Delete the temporary files that killed writes left in a run folder.

    Only ``<run file><random>.tmp`` names of :data:`RUN_FILES` are touched. No other process
    may be writing into ``out`` at the same time (one run per folder).

    Returns:
        The deleted paths.
    """
    gone = []
    for f in Path(out).glob("*.tmp"):
        if f.is_file() and any(f.name.startswith(n) for n in RUN_FILES):
            try:
                f.unlink()
                gone.append(f)
            except FileNotFoundError:
                pass
    return gone


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically."""
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, default=_json_default).encode()))


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
    atomic_write(path, lambda f: torch.save(obj, f))


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` atomically."""
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def resolve_device(device: str | None) -> torch.device:
    """"cpu", "cuda", or None for CUDA when present."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        raise TrainingError(f"--device {device}: expected cpu, cuda or cuda:N") from None
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
        if sel_name == test_name:
            raise TrainingError(f"select_split {sel_name} is the reported split: epochs are never selected on it")
        test = np.flatnonzero(ds.splits == test_name)
        if len(select) == 0:
            raise TrainingError(f"{ds.source}: the selection split {sel_name} is empty")
        return {"train": train, "select": select, "test": test}, \
            {"train": "Training", "select": sel_name, "test": test_name}, notes
    from lkr.folds import fold_split

    if fold is None:
        fold = 0
        notes.append("no --fold given: fold 0 is used")
    # Folds by subject only: without subject ids fold_split refuses (one line), rather than
    # splitting a subject's sequences over train and test.
    parts = fold_split(ds.subjects, ds.labels, fold, k=folds, seed=cfg.seed, val_fraction=cfg.val_fraction)
    idx = {"train": np.flatnonzero(parts["train"]), "select": np.flatnonzero(parts["val"]),
           "test": np.flatnonzero(parts["test"])}
    if len(idx["select"]) == 0:
        raise TrainingError(f"{ds.source}: fold {fold} has no selection subjects (val_fraction="
                            f"{cfg.val_fraction}); epochs are never selected on the test subjects")
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


def epoch_batches(prepared: Prepared, cfg: Config, generator: torch.Generator, batch_size: int
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
    """The global training batches of one epoch, drawn from ``generator`` (seeded by the caller).

    A permutation of the training part, cut into ``n_train // batch_size`` batches of anchors
    (the last partial batch is dropped: static shapes); with a triplet loss each anchor gets a
    positive and a negative (:func:`lkr.losses.sample_triplets`); then the batch is augmented
    (:func:`lkr.augment.train_augment`). Every process of a data-parallel run calls this with
    the same seed and gets the same batches.

    Args:
        prepared: the data on the device.
        cfg: uses ``triplet_lambda``, ``num_classes`` and the augmentation fields.
        generator: on the data's device.
        batch_size: B anchors per batch (<= the training part's size).

    Yields:
        (x (M,1,crop,crop) float32, m (M,1,crop,crop) float32 in [0,1] or None, y (M,) int64),
        M = 3B laid out [anchors; positives; negatives] with a triplet loss, else M = B.
    """
    train_idx = prepared.index["train"]
    train_labels = prepared.labels[train_idx]
    n_train = len(train_idx)
    steps = max(n_train // batch_size, 1)
    perm = torch.randperm(n_train, device=train_idx.device, generator=generator)
    for s in range(steps):
        a = perm[s * batch_size:(s + 1) * batch_size]
        if cfg.uses_triplet:
            p, n = sample_triplets(train_labels, a, generator, cfg.num_classes)
            pos = torch.cat([a, p, n])
        else:
            pos = a
        idx = train_idx[pos]
        x, m = train_augment(prepared.images[idx], None if prepared.masks is None else prepared.masks[idx],
                             cfg, generator)
        yield x, m, prepared.labels[idx]


CUBLAS_WORKSPACE = ":4096:8"
"""``CUBLAS_WORKSPACE_CONFIG`` set by the deterministic mode (cuBLAS needs it for repeatable matmuls)."""


@contextlib.contextmanager
def deterministic_mode(enabled: bool, device: torch.device) -> Iterator[None]:
    """Deterministic GPU algorithms for the block (``Config.deterministic``); flags restored after.

    When enabled: ``torch.use_deterministic_algorithms(True, warn_only=True)`` (an op without a
    deterministic implementation warns instead of stopping the run), cuDNN benchmarking off and
    deterministic cuDNN, and on CUDA ``CUBLAS_WORKSPACE_CONFIG`` (when not set already). When
    disabled on CUDA, cuDNN benchmarking is on (faster, not bit-exact). On the CPU the run is
    bit-exact either way; see docs/determinism.md.
    """
    cudnn = torch.backends.cudnn
    old = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
           cudnn.benchmark, cudnn.deterministic)
    if enabled:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.use_deterministic_algorithms(True, warn_only=True)
        cudnn.benchmark, cudnn.deterministic = False, True
    elif device.type == "cuda":
        cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old[0], warn_only=old[1])
        cudnn.benchmark, cudnn.deterministic = old[2], old[3]


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

    Inside a process group (torchrun, see :mod:`lkr.distributed`) every process calls this with
    the same arguments; the global batch of ``cfg.batch_size`` anchors is split over them.

    Args:
        ds: the dataset (FER2013-like with official splits, or CK+-like evaluated by folds).
        cfg: the configuration.
        out: run folder (created). An existing checkpoint with the same config is resumed.
        device: "cpu", "cuda" or None (CUDA when present). Under NCCL each process uses its
            own GPU.
        fold, folds: CK+-like data: which subject-independent fold is the test part.
        progress: tqdm bars (rank 0 only).
        resume: continue from ``out/checkpoint.pt`` when present.
        data_ref: how to load the data again (stored for ``lkr evaluate``); default ds.source.
        stop_after: stop (as if killed) after this many epochs of this call; for tests.

    Returns:
        The metrics dict written to ``out/metrics.json`` (or {"stopped_at": epoch} when
        ``stop_after`` ended the call early); the same on every process.

    Raises:
        TrainingError: on a non-finite loss (the last good checkpoint is kept), or a batch size
            that the processes cannot share evenly.
        RunError: when ``out`` holds a run of another config or of another kit version.
    """
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    group = distributed.current()
    if group.world_size > 1 and dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    with deterministic_mode(cfg.deterministic, dev):
        return _train(ds, cfg, Path(out), dev, group, fold=fold, folds=folds, progress=progress and group.is_main,
                      resume=resume, data_ref=data_ref, stop_after=stop_after)


def _train(ds: FaceDataset, cfg: Config, out: Path, dev: torch.device, group: distributed.DistInfo, *,
           fold: int | None, folds: int, progress: bool, resume: bool, data_ref: str | None,
           stop_after: int | None) -> dict[str, Any]:
    rank, world, main = group.rank, group.world_size, group.is_main
    if world > 1 and cfg.batch_size % world:
        raise TrainingError(f"--batch-size {cfg.batch_size} cannot be split evenly over {world} processes; "
                            f"choose a multiple of {world}")
    if main:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"{out}: cannot create the run folder ({e.strerror})") from None
        remove_stale_temps(out)
    distributed.barrier()
    info = {"data": data_ref or ds.source, "dataset": ds.name, "kind": ds.kind, "fold": fold, "folds": folds,
            "kit_version": lkr.__version__, "world_size": world}

    if progress:
        print(f"[lkr] {cfg.variant} (lambda={cfg.triplet_lambda}) on {ds.name} ({len(ds)} images), device {dev}"
              + (f", {world} processes" if world > 1 else ""))
        print(f"[lkr] config: {json.dumps(cfg.to_dict(), default=str)}")
    if cfg.local_branch and not ds.has_landmarks:
        from lkr.landmarks import attach_landmarks

        with distributed.main_first():  # rank 0 fills the landmark cache, the others read it
            ds = attach_landmarks(ds, progress=progress)
    prepared = prepare_data(ds, cfg, fold=fold, folds=folds, device=dev, progress=progress)
    notes = list(prepared.notes)
    n_train = len(prepared.index["train"])

    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(dev)
    if world > 1 and dev.type == "cuda" and cfg.batch_norm:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # same state_dict keys
    elif world > 1 and cfg.batch_norm:
        notes.append(f"{world} CPU processes: BatchNorm statistics are per process "
                     "(PyTorch's SyncBatchNorm needs GPUs)")
    if progress:
        for n in notes:
            print(f"[lkr] note: {n}")
    use_cl = cfg.channels_last and dev.type == "cuda"
    if use_cl:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                          **({"fused": True} if dev.type == "cuda" else {}))

    history: list[dict[str, Any]] = []
    best = {"epoch": -1, "select_accuracy": -1.0}
    best_state: dict[str, torch.Tensor] | None = None
    start_epoch = 0
    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.exists():
        ck = _load_checkpoint(ckpt_path, dev)
        if Config.from_dict(ck["config"]).to_dict() != cfg.to_dict():
            raise RunError(f"{out}: holds a run of another config; choose a new --out or delete it")
        old = ck.get("info", {})
        for k in ("dataset", "kind", "fold", "folds"):
            if k in old and old[k] != info[k]:
                raise RunError(f"{out}: holds a run with {k}={old[k]!r}, not {info[k]!r}; "
                               "choose a new --out or delete it")
        ck_version = ck.get("info", {}).get("kit_version", lkr.__version__)
        if ck_version != lkr.__version__:
            raise RunError(f"{out}: its checkpoint was written by lkr {ck_version}, this is lkr {lkr.__version__}; "
                           "choose a new --out or delete it")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        history, best, start_epoch = ck["history"], ck["best"], ck["epoch"]
        best_state = ck.get("best_model") if main else None
        del ck
        if progress:
            print(f"[lkr] resuming {out} after epoch {start_epoch}")
    if main:
        write_json(out / "config.json", cfg.to_dict())

    step_model: torch.nn.Module = model
    if world > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if cfg.compile and dev.type == "cuda":
        step_model = torch.compile(step_model)

    triplet = cfg.uses_triplet
    bsz = min(cfg.batch_size, n_train)
    bsz -= bsz % world
    steps = max(n_train // bsz, 1)  # drop the last partial batch: static shapes
    rows = distributed.shard_rows(bsz, 3 if triplet else 1, rank, world, dev) if world > 1 else None
    gen = torch.Generator(device=dev)
    bar = tqdm(range(start_epoch, cfg.epochs), desc=f"{cfg.variant}", disable=not progress,
               initial=start_epoch, total=cfg.epochs, unit="ep")
    done_this_call = 0
    for epoch in bar:
        seed = _epoch_seed(cfg, epoch)
        gen.manual_seed(seed)  # the batches: the same on every process
        torch.manual_seed(seed + rank)  # dropout: independent per process
        model.train()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        sums = torch.zeros(4, device=dev)  # total, ce, triplet, train accuracy
        for s, (x, m, y) in enumerate(epoch_batches(prepared, cfg, gen, bsz)):
            opt.param_groups[0]["lr"] = lr_at(cfg, epoch + s / steps)
            if rows is not None:  # this process's share: anchors r::W with their partners
                x, y = x[rows], y[rows]
                m = None if m is None else m[rows]
            if use_cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast_for(dev, cfg.amp):
                o = step_model(x, m)
                loss, parts = lkr_loss(o, y, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            acc = (o["logits"].detach().argmax(1) == y).float().mean()
            sums += torch.stack([parts["total"].float(), parts["ce"].float(), parts["triplet"].float(), acc])
        distributed.all_mean_(sums)  # every process sees the same numbers (and stops together)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t_epoch = time.perf_counter() - t0
        loss_total, loss_ce, loss_tri, train_acc = (sums / steps).tolist()
        if not all(math.isfinite(v) for v in (loss_total, loss_ce, loss_tri)):
            raise TrainingError(f"non-finite loss at epoch {epoch + 1} (loss {loss_total}, ce {loss_ce}, triplet "
                                f"{loss_tri}); the last good checkpoint ({start_epoch + done_this_call} epochs) "
                                f"is kept in {out}; a rerun resumes from it, a lower --lr may avoid it")
        rec: dict[str, Any] = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "loss": loss_total,
                               "ce": loss_ce, "triplet": loss_tri, "train_accuracy": train_acc,
                               "seconds": t_epoch,
                               "images_per_s": steps * bsz * (3 if triplet else 1) / t_epoch}
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            acc = None
            if main:
                sel = prepared.index["select"]
                probs, _ = predict_ten_crop(model, prepared.images[sel],
                                            None if prepared.masks is None else prepared.masks[sel],
                                            crop=cfg.crop, amp=cfg.amp, channels_last=use_cl)
                acc = float((probs.argmax(1) == prepared.labels[sel]).float().mean())
            acc = distributed.broadcast_object(acc)  # rank 0's number decides on every process
            rec["select_accuracy"] = acc
            if acc > best["select_accuracy"]:
                best = {"epoch": epoch + 1, "select_accuracy": acc}
                if main:
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history.append(rec)
        bar.set_postfix(loss=f"{loss_total:.3f}", sel=f"{rec.get('select_accuracy', float('nan')):.3f}")
        done_this_call += 1
        last = epoch + 1 == cfg.epochs
        if main and (last or (epoch + 1) % cfg.checkpoint_every == 0 or (stop_after and done_this_call >= stop_after)):
            # One file holds the whole state (the best weights too), so a kill between two
            # writes can never pair a checkpoint with a best.pt of another epoch.
            save_torch(ckpt_path, {"config": cfg.to_dict(), "model": model.state_dict(),
                                   "optimizer": opt.state_dict(), "history": history, "best": best,
                                   "best_model": best_state, "epoch": epoch + 1, "info": info})
            write_json(out / "history.json", history)
        if stop_after and done_this_call >= stop_after and not last:
            bar.close()
            distributed.barrier()
            return {"stopped_at": epoch + 1}
    bar.close()

    metrics = None
    if main:
        metrics = _finish(ds, cfg, out, dev, model, prepared, best, best_state, history, info, notes, use_cl,
                          progress)
    return distributed.broadcast_object(metrics)


def _finish(ds: FaceDataset, cfg: Config, out: Path, dev: torch.device, model: torch.nn.Module,
            prepared: Prepared, best: dict[str, Any], best_state: dict[str, torch.Tensor] | None,
            history: list[dict[str, Any]], info: dict[str, Any], notes: list[str], use_cl: bool,
            progress: bool) -> dict[str, Any]:
    """Evaluate the selected weights on the reported split and write the rest of the run folder."""
    if best_state is not None:
        model.load_state_dict(best_state)
    save_torch(out / "best.pt", {"config": cfg.to_dict(), "model": model.state_dict(), "epoch": best["epoch"],
                                 "select_accuracy": best["select_accuracy"], "info": info})
    test = prepared.index["test"]
    t0 = time.perf_counter()
    probs, emb = predict_ten_crop(model, prepared.images[test],
                                  None if prepared.masks is None else prepared.masks[test],
                                  crop=cfg.crop, amp=cfg.amp, channels_last=use_cl, with_embeddings=True)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t_eval = time.perf_counter() - t0
    labels = prepared.labels[test].cpu().numpy()
    probs_np = probs.float().cpu().numpy()
    preds = probs_np.argmax(1)
    metrics = classification_metrics(labels, preds, tuple(ds.class_names))
    metrics.update({
        "variant": cfg.variant, "triplet_lambda": cfg.triplet_lambda, "local_branch": cfg.local_branch,
        "test_split": prepared.split_names["test"], "select_split": prepared.split_names["select"],
        "best_epoch": best["epoch"], "select_accuracy": best["select_accuracy"], "epochs": cfg.epochs,
        "n_train": int(len(prepared.index["train"])), "n_select": int(len(prepared.index["select"])),
        "train_seconds": float(sum(h["seconds"] for h in history)), "eval_seconds": t_eval,
        "device": _device_name(dev), "torch": torch.__version__, "notes": notes, **info,
    })
    test_np = test.cpu().numpy()
    save_npz(out / "predictions.npz", index=test_np, label=labels.astype(np.int8), pred=preds.astype(np.int8),
             probs=probs_np.astype(np.float16), class_names=np.array(ds.class_names))
    rng = np.random.default_rng(cfg.seed)
    keep = np.sort(rng.choice(len(test_np), size=min(cfg.embed_samples, len(test_np)), replace=False))
    save_npz(out / "embeddings.npz", index=test_np[keep], label=labels[keep].astype(np.int8),
             embedding=emb[torch.from_numpy(keep).to(emb.device)].float().cpu().numpy().astype(np.float16))
    write_json(out / "history.json", history)
    write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run
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


def _without_nproc(argv: list[str]) -> list[str]:
    """``argv`` with every ``--nproc N`` / ``--nproc=N`` removed."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def train_cli(args: argparse.Namespace) -> int:
    """``lkr train``: one process, or ``--nproc N`` processes under torchrun (data parallel)."""
    from lkr.readers import load_dataset

    nproc = int(getattr(args, "nproc", 1) or 1)
    if nproc < 1:
        raise TrainingError(f"--nproc {nproc}: expected 1 or more processes")
    if nproc > 1 and not distributed.launched_by_torchrun():
        if args.batch_size is not None and args.batch_size % nproc:
            raise TrainingError(f"--batch-size {args.batch_size} cannot be split evenly over {nproc} processes; "
                                f"choose a multiple of {nproc}")
        argv = getattr(args, "argv", None)
        if argv is None:
            raise TrainingError("--nproc needs the command line; run torchrun --nproc_per_node N -m lkr train ...")
        return distributed.relaunch_with_torchrun(nproc, _without_nproc(list(argv)))
    overrides = _parse_set(args.set)
    with distributed.process_group(args.device) as group:
        with distributed.main_first():  # rank 0 fills the decode cache, the others read it
            ds = load_dataset(args.data)
        flags = dict(triplet_lambda=args.lam, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                     schedule=args.schedule, warmup_epochs=args.warmup_epochs, mask_stage=args.mask_stage,
                     seed=args.seed)
        cfg = config_for(ds, args.variant, **{**flags, **overrides})  # --set FIELD=VALUE wins
        m = train(ds, cfg, args.out, device=args.device, fold=args.fold, folds=args.folds,
                  progress=not args.quiet, data_ref=args.data)
    if group.is_main:
        print(f"{args.out}: {cfg.variant} {m['test_split']} accuracy {100 * m['accuracy']:.2f}% "
              f"(selected epoch {m['best_epoch']} on {m['select_split']})"
              + (f", {group.world_size} processes" if group.world_size > 1 else ""))
    return 0
