"""The trainer: data, masks and augmentation live on the training device; one run folder per run.

A step is: draw anchors (and, with a triplet loss, a positive and a negative per anchor) from the
training split, augment the batch on the device (crop, flip, black blocks; the mask follows),
forward, loss, SGD step. There is no per-image Python and no host synchronisation inside an
epoch: losses are summed on the device and read once per epoch.

Protocol: the epoch is selected on a split that is never reported (FER2013: PublicTest; CK+: a
validation part of the fold's training subjects); the selected weights are evaluated with
ten-crop on the reported split (FER2013: PrivateTest; CK+: the fold's test subjects). The parts
come from :mod:`lkr.prepare`.

A run, as :func:`_train` reads: open the run folder, put the data on the device, build the
network and its optimizer, resume from the checkpoint, then per epoch train, select (ten-crop
accuracy on the selection split; the best epoch's weights are kept) and checkpoint; finally
evaluate the selected weights on the reported split and write the rest of the run folder. The
folder's files and how they are written and read are :mod:`lkr.runfolder`'s.

Randomness is seeded per epoch from ``cfg.seed`` and the epoch number, so a run resumed from
any checkpoint follows the same path as an uninterrupted one: on the CPU a run killed at any
moment (SIGKILL included) and started again with the same command ends with bit-identical
weights and metrics (same torch build and thread count; see docs/determinism.md).

Faults: every file is written atomically (:mod:`lkr.runfolder`), so a kill leaves either the old
file or the new one, never half a file; temporaries a killed write left behind are deleted when
the next run opens the folder. ``metrics.json`` is written last: a folder without it is not
finished and the next run resumes from ``checkpoint.pt`` (after the last epoch it only
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

import lkr
from lkr import distributed
from lkr.augment import train_augment
from lkr.config import FINE_TUNE, Config, scale_preset
from lkr.dataset import FaceDataset
from lkr.device import autocast_for, device_name, resolve_device
from lkr.errors import ConfigError, RunError, TrainingError
from lkr.evaluate import classification_metrics, predict, test_crops
from lkr import cpu
from lkr.losses import class_balanced_batch, lkr_loss, sample_triplets
from lkr.model import build_model
from lkr.prepare import Prepared, prepare_data, split_indices
from lkr.runfolder import (init_source, source_lineage, init_weights_from, load_checkpoint, open_run_folder, save_npz, save_torch,
                           write_json)


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
    (the last partial batch is dropped: static shapes); with random triplets each anchor gets a
    positive and a negative (:func:`lkr.losses.sample_triplets`); with in-batch mining and
    ``cfg.batch_classes = P`` each batch is P classes x B/P images
    (:func:`lkr.losses.class_balanced_batch`) instead of a slice of the permutation; then the
    batch is augmented (:func:`lkr.augment.train_augment`). Every process of a data-parallel run
    calls this with the same seed and gets the same batches.

    Args:
        prepared: the data on the device.
        cfg: uses ``triplet_lambda``, ``triplet_mining``, ``batch_classes``, ``num_classes`` and
            the augmentation fields.
        generator: on the data's device.
        batch_size: B anchors per batch (<= the training part's size).

    Yields:
        (x (M,1,crop,crop) float32, m (M,1,crop,crop) float32 in [0,1] or None, y (M,) int64),
        M = 3B laid out [anchors; positives; negatives] with random triplets, else M = B
        (P * (B // P) with ``batch_classes``).
    """
    train_idx = prepared.index["train"]
    train_labels = prepared.labels[train_idx]
    n_train = len(train_idx)
    steps = max(n_train // batch_size, 1)
    perm = torch.randperm(n_train, device=train_idx.device, generator=generator)
    for s in range(steps):
        a = perm[s * batch_size:(s + 1) * batch_size]
        if cfg.batch_classes:  # every configuration that sets it: the same class mix for the cross-entropy
            a = class_balanced_batch(train_labels, batch_size, cfg.batch_classes, generator, cfg.num_classes)
        if cfg.images_per_anchor == 3:
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
    threads: int | None = None,
    precision: dict[str, Any] | None = None,
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
        threads: CPU only: torch threads for this run (None: the process's, see
            :func:`lkr.cpu.use_threads`); set at the start, recorded in metrics.json.
        precision: how this run's precision was decided for it, as
            :func:`lkr.cpu.resolve_precision` returns it (an experiment set decides once for all
            its runs, :func:`lkr.experiments.run_experiments`); None: the run decides itself. A
            resumed run keeps the precision it started with either way.

    Returns:
        The metrics dict written to ``out/metrics.json`` (or {"stopped_at": epoch} when
        ``stop_after`` ended the call early); the same on every process.

    Raises:
        TrainingError: on a non-finite loss (the last good checkpoint is kept), or a batch size
            that the processes cannot share evenly.
        RunError: when ``out`` holds a run of another config or of another kit version.
    """
    cfg.check_trainable()
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    group = distributed.current()
    if group.world_size > 1 and dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    n_threads = cpu.use_threads(threads) if dev.type == "cpu" else torch.get_num_threads()
    slot = cpu.training_slot(n_threads, str(out)) if dev.type == "cpu" else contextlib.nullcontext()
    with slot, deterministic_mode(cfg.deterministic, dev):
        return _train(ds, cfg, Path(out), dev, group, fold=fold, folds=folds, progress=progress and group.is_main,
                      resume=resume, data_ref=data_ref, stop_after=stop_after, threads=n_threads,
                      precision=precision)


@dataclass
class _Run:
    """The fixed parts of one training run, built once per call of :func:`train`."""

    cfg: Config
    out: Path
    dev: torch.device
    group: distributed.DistInfo
    prepared: Prepared
    info: dict[str, Any]  # stored in every checkpoint and in metrics.json
    notes: list[str]  # for the user; stored in metrics.json
    model: torch.nn.Module  # the weights that are saved and evaluated
    step_model: torch.nn.Module  # what a training step calls: the model, or DDP / compiled around it
    opt: torch.optim.Optimizer
    use_cl: bool  # channels_last model and inputs
    bf16: bool  # bf16 autocast (CUDA: cfg.amp; CPU: lkr.cpu.resolve_precision)
    batch: int  # global batch of anchors, a multiple of the number of processes
    steps: int  # steps per epoch (the last partial batch is dropped: static shapes)
    rows: torch.Tensor | None  # this process's rows of a global batch (data parallel), else None


@dataclass
class _State:
    """What changes from epoch to epoch besides the weights; a checkpoint holds it."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": -1, "select_accuracy": -1.0})
    best_state: dict[str, torch.Tensor] | None = None  # the selected weights (rank 0 only)
    epoch: int = 0  # epochs done
    precision: dict[str, Any] | None = None  # how the run's precision was decided (kept on resume)


def _train(ds: FaceDataset, cfg: Config, out: Path, dev: torch.device, group: distributed.DistInfo, *,
           fold: int | None, folds: int, progress: bool, resume: bool, data_ref: str | None,
           stop_after: int | None, threads: int, precision: dict[str, Any] | None = None) -> dict[str, Any]:
    """The training procedure (Sec. 4.2) step by step; every process of a group runs it."""
    _check_batch_split(cfg, group.world_size)
    _open_run_folder(out, group)
    info = {"data": data_ref or ds.source, "dataset": ds.name, "kind": ds.kind, "fold": fold, "folds": folds,
            "kit_version": lkr.__version__, "world_size": group.world_size, "threads": threads,
            "cpu_model": cpu.cpu_name()}
    _announce(ds, cfg, dev, group.world_size, progress, out)
    if cfg.init_from:  # refused when trained on this dataset; its weights' hash joins the record
        src, info["init_sha256"] = init_source(cfg.init_from, ds.name)
        info["init_lineage"] = [[str(src), json.loads((src / "metrics.json").read_text())["dataset"]],
                                *map(list, source_lineage(src))]
    prepared, template = _data_on_device(ds, cfg, dev, fold=fold, folds=folds, progress=progress)
    if template is not None:
        info["landmark_template"] = template
    resuming = resume and (out / "checkpoint.pt").exists()  # its weights replace any init_from copy
    model, opt, notes, use_cl = _build(cfg, dev, group.world_size, prepared.notes, progress, copy_init=not resuming)
    state = _resume(cfg, out, dev, model, opt, info, group.is_main, progress) if resume else _State()
    if not state.precision or state.precision.get("device", dev.type) != dev.type:
        given = precision if precision and precision.get("device") == dev.type else None
        state.precision = _precision(cfg, dev, threads, progress, given)  # new run, or resumed on another device
    info["precision"] = state.precision
    if group.is_main:
        write_json(out / "config.json", cfg.to_dict())
    batch, steps, rows = _batching(cfg, len(prepared.index["train"]), dev, group)
    run = _Run(cfg=cfg, out=out, dev=dev, group=group, prepared=prepared, info=info, notes=notes, model=model,
               step_model=_step_model(model, cfg, dev, group.world_size), opt=opt, use_cl=use_cl,
               bf16=state.precision["precision"] == "bf16", batch=batch,
               steps=steps, rows=rows)

    gen = torch.Generator(device=dev)
    bar = tqdm(range(state.epoch, cfg.epochs), desc=f"{cfg.variant}", disable=not progress,
               initial=state.epoch, total=cfg.epochs, unit="ep")
    done_this_call = 0
    for epoch in bar:
        rec = _train_epoch(run, gen, epoch)
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            _select(run, state, rec, epoch)
        state.history.append(rec)
        state.epoch = epoch + 1
        bar.set_postfix(loss=f"{rec['loss']:.3f}", sel=f"{rec.get('select_accuracy', float('nan')):.3f}")
        done_this_call += 1
        last = epoch + 1 == cfg.epochs
        stop = bool(stop_after) and done_this_call >= stop_after
        if group.is_main and (last or (epoch + 1) % cfg.checkpoint_every == 0 or stop):
            _checkpoint(run, state)
        if stop and not last:
            bar.close()
            distributed.barrier()
            return {"stopped_at": epoch + 1}
    bar.close()
    metrics = _finish(ds, run, state, progress) if group.is_main else None
    return distributed.broadcast_object(metrics)


def _check_batch_split(cfg: Config, world: int) -> None:
    """The global batch must split evenly over the processes."""
    if world > 1 and cfg.batch_size % world:
        raise TrainingError(f"--batch-size {cfg.batch_size} cannot be split evenly over {world} processes; "
                            f"choose a multiple of {world}")


def _open_run_folder(out: Path, group: distributed.DistInfo) -> None:
    """Rank 0 creates the folder and clears stale temporaries; the others wait for it."""
    if group.is_main:
        open_run_folder(out)
    distributed.barrier()


def _announce(ds: FaceDataset, cfg: Config, dev: torch.device, world: int, progress: bool, out: Path) -> None:
    """Print what is trained, on what, where, in two lines (rank 0, with ``progress``); the whole
    config is in the run folder's ``config.json``."""
    if progress:
        print(f"[lkr] {cfg.variant} (lambda={cfg.triplet_lambda}) on {ds.name} ({len(ds)} images), device {dev}"
              + (f", {world} processes" if world > 1 else ""))
        print(f"[lkr] scale {cfg.scale}, width {cfg.width:g}, {cfg.epochs} epochs, batch {cfg.batch_size}, "
              f"lr {cfg.lr:g} ({cfg.schedule}), mask at stage {cfg.mask_stage}, seed {cfg.seed}; "
              f"the whole config: {Path(out) / 'config.json'}")


def _data_on_device(ds: FaceDataset, cfg: Config, dev: torch.device, *, fold: int | None, folds: int,
                    progress: bool) -> tuple[Prepared, dict[str, Any] | None]:
    """Landmarks when the local branch needs them (rank 0 fills the cache first), masks and the
    train / select / test parts, on ``dev`` (:func:`lkr.prepare.prepare_data`); and, for data with
    official splits, the template of the undetected faces (:func:`lkr.landmarks.template_record`)."""
    split_indices(ds, cfg, fold=fold, folds=folds)  # a split or fold error comes before any MTCNN work
    if cfg.local_branch and not ds.has_landmarks:
        from lkr.landmarks import attach_landmarks

        with distributed.main_first():  # rank 0 fills the landmark cache, the others read it
            ds = attach_landmarks(ds, progress=progress)
    template = None
    if cfg.local_branch and ds.evaluation != "folds" and ds.detected is not None:
        from lkr.landmarks import template_record

        template = template_record(ds)  # recorded: lkr evaluate then reads the test split only
    return prepare_data(ds, cfg, fold=fold, folds=folds, device=dev, progress=progress), template


def _build(cfg: Config, dev: torch.device, world: int, data_notes: list[str], progress: bool, *,
           copy_init: bool = True) -> tuple[torch.nn.Module, torch.optim.Optimizer, list[str], bool]:
    """The network (seeded with ``cfg.seed``; with ``cfg.init_from`` and ``copy_init`` the source
    run's weights but the class layers) on ``dev`` and its SGD optimizer (Table 1).

    Returns:
        (model, optimizer, notes: ``data_notes`` and this step's, channels_last in use).
    """
    notes = list(data_notes)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    if cfg.init_from and copy_init:  # fine-tuning: a trained run's weights, fresh class layers
        notes.append(init_weights_from(model, cfg.init_from))
    elif cfg.init_from:
        notes.append(f"resumed from its checkpoint; its weights were first copied from {cfg.init_from}, "
                     "all but the class layers")
    model = model.to(dev)
    if world > 1 and dev.type == "cuda" and cfg.batch_norm:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # same state_dict keys
    elif world > 1 and cfg.batch_norm:
        notes.append(f"{world} CPU processes: BatchNorm statistics are per process "
                     "(PyTorch's SyncBatchNorm needs GPUs)")
    if progress:
        for n in notes:
            print(f"[lkr] note: {n}")
    use_cl = cfg.channels_last and dev.type in ("cuda", "cpu")
    if use_cl:
        model = model.to(memory_format=torch.channels_last)
    # fused on CUDA; on the CPU foreach (one multi-tensor update instead of a loop per tensor)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                          **({"fused": True} if dev.type == "cuda" else {"foreach": True}))
    return model, opt, notes, use_cl


def _precision(cfg: Config, dev: torch.device, threads: int, progress: bool,
               given: dict[str, Any] | None = None) -> dict[str, Any]:
    """fp32 or bf16 for a new run: ``given`` (decided by the experiment set), else
    :func:`lkr.cpu.resolve_precision`; said when measured."""
    if given is None and distributed.current().is_main:
        given = cpu.resolve_precision(cfg, dev, threads)
    p = distributed.broadcast_object(given if distributed.current().is_main else None)  # rank 0 decides for all
    if progress:
        print(f"[lkr] precision: {p['precision']} ({p['decided_by']})")
    return p


def _resume(cfg: Config, out: Path, dev: torch.device, model: torch.nn.Module, opt: torch.optim.Optimizer,
            info: dict[str, Any], main: bool, progress: bool) -> _State:
    """Load ``out/checkpoint.pt`` into the model and optimizer when there is one; its state.

    Raises:
        RunError: when the checkpoint is of another config, dataset, fold or kit version.
    """
    ckpt_path = out / "checkpoint.pt"
    if not ckpt_path.exists():
        return _State()
    ck = load_checkpoint(ckpt_path, dev)
    _check_same_run(ck, cfg, info, out)
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    state = _State(history=ck["history"], best=ck["best"], best_state=ck.get("best_model") if main else None,
                   epoch=ck["epoch"], precision=ck.get("info", {}).get("precision"))
    del ck
    if progress:
        print(f"[lkr] resuming {out} after epoch {state.epoch}")
    return state


def _check_same_run(ck: dict[str, Any], cfg: Config, info: dict[str, Any], out: Path) -> None:
    """A checkpoint is resumed only by the run that wrote it: same config, data, fold, kit."""
    if not Config.from_dict(ck["config"]).trains_like(cfg):
        raise RunError(f"{out}: holds a run of another config; choose a new --out or delete it")
    old = ck.get("info", {})
    for k in ("dataset", "kind", "fold", "folds"):
        if k in old and old[k] != info[k]:
            raise RunError(f"{out}: holds a run with {k}={old[k]!r}, not {info[k]!r}; "
                           "choose a new --out or delete it")
    if old.get("init_sha256") and old["init_sha256"] != info.get("init_sha256"):
        raise RunError(f"{out}: was started from weights (sha256 {old['init_sha256'][:16]}) that its source "
                       f"{cfg.init_from} no longer holds; choose a new --out or delete it")
    ck_version = ck.get("info", {}).get("kit_version", lkr.__version__)
    if ck_version != lkr.__version__:
        raise RunError(f"{out}: its checkpoint was written by lkr {ck_version}, this is lkr {lkr.__version__}; "
                       "choose a new --out or delete it")


def _step_model(model: torch.nn.Module, cfg: Config, dev: torch.device, world: int) -> torch.nn.Module:
    """What a training step calls: DistributedDataParallel around the model with several
    processes, compiled on CUDA when ``cfg.compile``; else the model itself."""
    step_model: torch.nn.Module = model
    if world > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if cfg.compile and dev.type == "cuda":
        step_model = torch.compile(step_model)
    return step_model


def _batching(cfg: Config, n_train: int, dev: torch.device, group: distributed.DistInfo
              ) -> tuple[int, int, torch.Tensor | None]:
    """(global batch of anchors, steps per epoch, this process's rows of a batch or None)."""
    world = group.world_size
    bsz = min(cfg.batch_size, n_train)
    bsz -= bsz % world
    steps = max(n_train // bsz, 1)  # drop the last partial batch: static shapes
    rows = distributed.shard_rows(bsz, cfg.images_per_anchor, group.rank, world, dev) if world > 1 else None
    return bsz, steps, rows


def _train_epoch(run: _Run, gen: torch.Generator, epoch: int) -> dict[str, Any]:
    """One epoch of SGD steps on this process's share of every global batch.

    Returns:
        The epoch's history record: epoch (1-based), lr, loss, ce, triplet, triplet_active (the
        share of triplets with a positive loss), train_accuracy (means over the steps and
        processes), seconds, images_per_s.

    Raises:
        TrainingError: on a non-finite loss (nothing of this epoch is checkpointed).
    """
    cfg, dev, model, opt = run.cfg, run.dev, run.model, run.opt
    seed = _epoch_seed(cfg, epoch)
    gen.manual_seed(seed)  # the batches: the same on every process
    torch.manual_seed(seed + run.group.rank)  # dropout: independent per process
    model.train()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    sums = torch.zeros(5, device=dev)  # total, ce, triplet, triplet active share, train accuracy
    for s, (x, m, y) in enumerate(epoch_batches(run.prepared, cfg, gen, run.batch)):
        opt.param_groups[0]["lr"] = lr_at(cfg, epoch + s / run.steps)
        if run.rows is not None:  # this process's share: anchors r::W with their partners
            x, y = x[run.rows], y[run.rows]
            m = None if m is None else m[run.rows]
        if run.use_cl:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_for(dev, run.bf16):
            o = run.step_model(x, m)
            loss, parts = lkr_loss(o, y, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc = (o["logits"].detach().argmax(1) == y).float().mean()
        sums += torch.stack([parts["total"].float(), parts["ce"].float(), parts["triplet"].float(),
                             parts["active"].float(), acc])
    distributed.all_mean_(sums)  # every process sees the same numbers (and stops together)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t_epoch = time.perf_counter() - t0
    loss_total, loss_ce, loss_tri, active, train_acc = (sums / run.steps).tolist()
    if not all(math.isfinite(v) for v in (loss_total, loss_ce, loss_tri)):
        raise TrainingError(f"non-finite loss at epoch {epoch + 1} (loss {loss_total}, ce {loss_ce}, triplet "
                            f"{loss_tri}); the last good checkpoint ({epoch} epochs) "
                            f"is kept in {run.out}; a rerun resumes from it, a lower --lr may avoid it")
    return {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "loss": loss_total, "ce": loss_ce,
            "triplet": loss_tri, "triplet_active": active, "train_accuracy": train_acc, "seconds": t_epoch,
            "threads": torch.get_num_threads() if dev.type == "cpu" else None,
            "images_per_s": run.steps * run.batch * cfg.images_per_anchor / t_epoch}


def _select(run: _Run, state: _State, rec: dict[str, Any], epoch: int) -> None:
    """Accuracy on the selection split (ten-crop, or the centre crop with
    ``cfg.select_crops="center"``; rank 0's number for every process) into ``rec``; a better
    epoch than the best so far becomes the best and its weights are kept."""
    acc = None
    if run.group.is_main:
        sel = run.prepared.index["select"]
        t0 = time.perf_counter()
        probs, _ = predict(run.model, run.prepared.images[sel],
                           None if run.prepared.masks is None else run.prepared.masks[sel],
                           crops=run.cfg.select_crops, crop=run.cfg.crop, amp=run.bf16, channels_last=run.use_cl)
        acc = float((probs.argmax(1) == run.prepared.labels[sel]).float().mean())
        rec["select_seconds"] = time.perf_counter() - t0
    acc = distributed.broadcast_object(acc)  # rank 0's number decides on every process
    rec["select_accuracy"] = acc
    if acc > state.best["select_accuracy"]:
        state.best = {"epoch": epoch + 1, "select_accuracy": acc}
        if run.group.is_main:
            state.best_state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def _checkpoint(run: _Run, state: _State) -> None:
    """Write ``checkpoint.pt`` and ``history.json`` (rank 0).

    One file holds the whole state (the best weights too), so a kill between two writes can
    never pair a checkpoint with a best.pt of another epoch.
    """
    save_torch(run.out / "checkpoint.pt", {
        "config": run.cfg.to_dict(), "model": run.model.state_dict(), "optimizer": run.opt.state_dict(),
        "history": state.history, "best": state.best, "best_model": state.best_state, "epoch": state.epoch,
        "info": run.info})
    write_json(run.out / "history.json", state.history)


def _finish(ds: FaceDataset, run: _Run, state: _State, progress: bool) -> dict[str, Any]:
    """Evaluate the selected weights on the reported split and write the rest of the run folder
    (rank 0): best.pt, predictions.npz, embeddings.npz, history.json, and metrics.json last."""
    cfg, dev, model, prepared, best = run.cfg, run.dev, run.model, run.prepared, state.best
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    save_torch(run.out / "best.pt", {"config": cfg.to_dict(), "model": model.state_dict(), "epoch": best["epoch"],
                                     "select_accuracy": best["select_accuracy"], "info": run.info})
    test = prepared.index["test"]
    t0 = time.perf_counter()
    probs, emb = predict(model, prepared.images[test], None if prepared.masks is None else prepared.masks[test],
                         crops=test_crops(cfg), crop=cfg.crop, amp=run.bf16, channels_last=run.use_cl,
                         with_embeddings=True)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t_eval = time.perf_counter() - t0
    labels = prepared.labels[test].cpu().numpy()
    probs_np = probs.float().cpu().numpy()
    preds = probs_np.argmax(1)
    metrics = classification_metrics(labels, preds, tuple(ds.class_names))
    metrics.update({
        "variant": cfg.variant, "scale": cfg.scale, "width": cfg.width, "triplet_lambda": cfg.triplet_lambda,
        "local_branch": cfg.local_branch,
        "test_split": prepared.split_names["test"], "test_crops": test_crops(cfg),
        "select_split": prepared.split_names["select"],
        "best_epoch": best["epoch"], "select_accuracy": best["select_accuracy"], "epochs": cfg.epochs,
        "n_train": int(len(prepared.index["train"])), "n_select": int(len(prepared.index["select"])),
        "train_seconds": float(sum(h["seconds"] for h in state.history)),
        "select_seconds": float(sum(h.get("select_seconds", 0.0) for h in state.history)), "eval_seconds": t_eval,
        "device": device_name(dev), "torch": torch.__version__, "notes": run.notes, **run.info,
    })
    test_np = test.cpu().numpy()
    # CK+-like data: each test image's subject id, so that paired tests can resample subjects
    # (a subject's frames are not independent; lkr.stats); ids only, no pixels.
    subjects = ds.subjects[test_np].astype(str) if ds.evaluation == "folds" else np.array([], dtype=str)
    extra = {"subject": subjects} if len(subjects) and all(subjects) else {}
    save_npz(run.out / "predictions.npz", index=test_np, label=labels.astype(np.int8), pred=preds.astype(np.int8),
             probs=probs_np.astype(np.float16), class_names=np.array(ds.class_names), **extra)
    rng = np.random.default_rng(cfg.seed)
    keep = np.sort(rng.choice(len(test_np), size=min(cfg.embed_samples, len(test_np)), replace=False))
    save_npz(run.out / "embeddings.npz", index=test_np[keep], label=labels[keep].astype(np.int8),
             embedding=emb[torch.from_numpy(keep).to(emb.device)].float().cpu().numpy().astype(np.float16))
    write_json(run.out / "history.json", state.history)
    write_json(run.out / "metrics.json", metrics)  # last: its presence marks a finished run
    if progress:
        print(f"[lkr] {cfg.variant}: {metrics['test_split']} ten-crop accuracy {100 * metrics['accuracy']:.2f}% "
              f"(epoch {best['epoch']} selected on {metrics['select_split']} at {100 * best['select_accuracy']:.2f}%)")
    return metrics


# --- CLI ------------------------------------------------------------------------------------
def _parse_set_values(items: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` items as a dict, each value read as JSON when it is (numbers, true/false,
    null, lists), else kept as text; for parameters that are not Config fields.

    Raises:
        TrainingError: an item without "=".
    """
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise TrainingError(f"--set {item!r}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def _parse_set(items: list[str]) -> dict[str, Any]:
    types = {f.name: f for f in dataclasses.fields(Config)}
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise TrainingError(f"--set {item!r}: expected FIELD=VALUE")
        k, v = item.split("=", 1)
        if k not in types:
            raise TrainingError(f"--set {k}: no such config field")
        if k == "scale":
            raise TrainingError("--set scale: the scale is chosen with --scale (it names the preset the "
                                "config starts from; flags and --set change fields of it)")
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


def config_for(ds: FaceDataset, variant: str, *, scale: str = "full", **overrides: Any) -> Config:
    """The config of ``variant`` for this dataset at a named scale.

    The scale's preset (:data:`lkr.config.SCALES`) comes first; demo data always gets the thin
    demo preset (scale "demo", whatever ``scale`` asks); CK+-like data selects on a validation
    part of the fold's training subjects; then ``overrides`` (None values are skipped) change
    any field. ``cfg.scale`` records the preset's name.

    Raises:
        ConfigError: for an unknown scale (or "demo" for other data), an invalid field, or a
            fine-tuning scale (:data:`lkr.config.FINE_TUNE`) without ``init_from``.
    """
    name, preset = scale_preset(scale, demo=ds.kind == "demo")
    kw: dict[str, Any] = {**preset, "scale": name}
    if ds.evaluation == "folds":
        kw.update(select_split="val", test_split="test")
    kw.update({k: v for k, v in overrides.items() if v is not None})
    if name in FINE_TUNE and not kw.get("init_from"):
        src_scale, src_key = FINE_TUNE[name]
        raise ConfigError(f"scale {name} starts from the same configuration's {src_key} run at scale {src_scale}: "
                          "pass --set init_from=<that run folder> (lkr reproduce and scripts/cpu_results.py "
                          "find it themselves)")
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
                     seed=args.seed, width=args.width)
        # the scale's preset, then the flags, then --set FIELD=VALUE
        cfg = config_for(ds, args.variant, scale=getattr(args, "scale", "full"), **{**flags, **overrides})
        m = train(ds, cfg, args.out, device=args.device, fold=args.fold, folds=args.folds, threads=args.threads,
                  progress=not args.quiet, data_ref=args.data)
    if group.is_main:
        print(f"{args.out}: {cfg.variant} {m['test_split']} accuracy {100 * m['accuracy']:.2f}% "
              f"(selected epoch {m['best_epoch']} on {m['select_split']})"
              + (f", {group.world_size} processes" if group.world_size > 1 else ""))
    return 0
