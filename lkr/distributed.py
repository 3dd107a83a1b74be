"""Several processes: data-parallel training under torchrun (PyTorch DDP), and independent jobs
(CK+ folds, configurations) spread over GPUs or CPU processes.

Data parallel (one run, N processes)::

    torchrun --standalone --nproc_per_node 4 -m lkr train --data fer2013.zip --out runs/x
    lkr train --nproc 4 --data fer2013.zip --out runs/x        # the same; lkr starts torchrun

Each process calls :func:`init_from_env` (through :func:`process_group`), which reads
torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` and joins the process group: NCCL with one
GPU per process when CUDA is there, gloo on the CPU. :func:`lkr.train.train` sees the group and
splits every global batch over the processes (:func:`shard_rows`); only rank 0 writes files.

Independent jobs (many runs, N workers)::

    run_jobs(fn, [{"fold": 0}, {"fold": 1}, ...], workers=4, device="cuda")

runs ``fn(**common, **job, device=<the worker's device>)`` in N spawned processes, worker i on
GPU i (modulo the GPUs present), or all on the CPU; results come back in job order.
"""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.distributed as dist

from lkr.errors import TrainingError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the process group.

    Attributes:
        rank: 0..world_size-1 (0 when not distributed).
        world_size: number of processes (1 when not distributed).
        local_rank: index of this process on its node (its GPU index under NCCL).
        backend: "nccl", "gloo", or None when not distributed.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """True for the process that prints and writes files (rank 0)."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True in a process that torchrun started (its environment names a rank and a world)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def current() -> DistInfo:
    """The process group this process is in (a single-process :class:`DistInfo` when none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(),
                    local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())), backend=dist.get_backend())


def init_from_env(device: str | None = None) -> DistInfo:
    """Join the process group that torchrun's environment describes.

    Without torchrun (or with ``WORLD_SIZE=1``) nothing is initialised and a single-process
    :class:`DistInfo` is returned. A group that already exists is returned as it is.

    Args:
        device: "cpu" forces gloo; "cuda" or None use NCCL, one GPU per process
            (``cuda:LOCAL_RANK``, made the current device), when CUDA is present, else gloo.

    Returns:
        This process's :class:`DistInfo`.

    Raises:
        TrainingError: "cuda" asked for without CUDA, or more processes on a node than GPUs.
    """
    if dist.is_available() and dist.is_initialized():
        return current()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    wants_cuda = device is None or device == "auto" or device.startswith("cuda")
    if device is not None and device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for, but no CUDA device is available")
    if wants_cuda and torch.cuda.is_available():
        n = torch.cuda.device_count()
        if local >= n:
            raise TrainingError(f"process {local} of this node has no GPU: {n} GPU(s) here; "
                                f"start at most {n} processes per node, or use --device cpu")
        torch.cuda.set_device(local)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local, backend=backend)


def cleanup() -> None:
    """Leave the process group (no-op when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device: str | None = None) -> Iterator[DistInfo]:
    """:func:`init_from_env` on entry; on exit, leave the group if this call created it."""
    created = launched_by_torchrun() and not (dist.is_available() and dist.is_initialized())
    info = init_from_env(device)
    try:
        yield info
    except BaseException:
        if created:
            cleanup()  # no barrier: the other ranks may never reach it
        raise
    if created:
        # Leave together: objects that still hold the group (a DDP reducer in a reference cycle)
        # are freed first, and no rank tears its connections down while another is still
        # writing files. Without this, gloo's teardown at exit aborted a rank now and then
        # ("terminate called without an active exception") after a run had finished.
        gc.collect()
        try:
            barrier()
        finally:
            cleanup()  # also when the barrier fails (a rank died): never leave the group behind


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks (e.g. to fill a cache once).

    A no-op outside a process group.
    """
    info = current()
    if info.world_size > 1 and not info.is_main:
        dist.barrier()
    try:
        yield
    finally:
        if info.world_size > 1 and info.is_main:
            dist.barrier()


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if current().world_size > 1:
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (any picklable object; returned as is when single)."""
    if current().world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_mean_(t: torch.Tensor) -> torch.Tensor:
    """Average ``t`` over the ranks, in place (unchanged when single). Returns ``t``."""
    w = current().world_size
    if w > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= w
    return t


def shard_rows(n_anchors: int, groups: int, rank: int, world_size: int,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """Rows of a global batch that process ``rank`` trains on.

    The global batch is ``groups`` consecutive blocks of ``n_anchors`` rows (1 block: plain
    images; 3 blocks: anchors, positives, negatives). Process r takes anchors r, r+W, r+2W, ...
    and the same positions of every block, so a triplet stays in one process and the local
    batch keeps the [anchors; positives; negatives] layout.

    Args:
        n_anchors: B, divisible by ``world_size``.
        groups: number of blocks (1 or 3).
        rank, world_size: r and W.
        device: where the index lives.

    Returns:
        (groups * B / W,) int64 row indices.

    Raises:
        TrainingError: when B is not divisible by W.
    """
    if n_anchors % world_size:
        raise TrainingError(f"a batch of {n_anchors} anchors cannot be split evenly over {world_size} "
                            f"processes; choose a batch size that is a multiple of {world_size}")
    mine = torch.arange(rank, n_anchors, world_size, device=device)  # (B/W,)
    return torch.cat([mine + g * n_anchors for g in range(groups)])


def relaunch_with_torchrun(nproc: int, argv: Sequence[str]) -> int:
    """Run ``python -m lkr <argv>`` in ``nproc`` processes under torchrun (single node).

    Args:
        nproc: processes (one per GPU with CUDA; CPU processes otherwise).
        argv: the ``lkr`` arguments, without ``--nproc``.

    Returns:
        0 when every process succeeded.

    Raises:
        TrainingError: when torchrun or a process failed (their messages are printed above).
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={int(nproc)}",
           "-m", "lkr", *argv]
    rc = subprocess.call(cmd)
    if rc != 0:
        raise TrainingError(f"torchrun with {nproc} processes failed (exit status {rc}); see the messages above")
    return 0


# --- independent jobs over devices ----------------------------------------------------------
def worker_devices(workers: int, device: str | None = None) -> list[str]:
    """The device of each of ``workers`` job workers: GPU i modulo the GPUs present, or "cpu".

    Args:
        workers: number of workers (>= 1).
        device: "cpu", "cuda" or None (CUDA when present).
    """
    cuda = (device is None or device == "auto" or device.startswith("cuda")) and torch.cuda.is_available()
    if device is not None and device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for, but no CUDA device is available")
    if not cuda:
        return ["cpu"] * workers
    n = torch.cuda.device_count()
    return [f"cuda:{i % n}" for i in range(workers)]


_WORKER: dict[str, Any] = {}


def _init_worker(devices, threads: int, common: dict[str, Any]) -> None:
    _WORKER["device"] = devices.get()
    if _WORKER["device"].startswith("cuda"):
        torch.cuda.set_device(_WORKER["device"])  # no context on GPU 0 from every worker
    _WORKER["common"] = common
    os.environ["LKR_THREADS"] = str(threads)  # the runs of this worker keep its share (lkr.cpu)
    torch.set_num_threads(threads)


def _call(fn: Callable[..., Any], job: dict[str, Any]) -> Any:
    return fn(**_WORKER["common"], **job, device=_WORKER["device"])


def run_jobs(fn: Callable[..., Any], jobs: Sequence[dict[str, Any]], *, workers: int,
             device: str | None = None, common: dict[str, Any] | None = None,
             threads: int | None = None) -> list[Any]:
    """``fn(**common, **job, device=d)`` for every job, in ``workers`` spawned processes.

    Worker i runs on ``worker_devices(workers, device)[i]`` (GPU i modulo the GPUs present, or
    the CPU). ``common`` (e.g. the dataset) is sent to each worker once. A job's result is
    the same as in this process when the device and the number of CPU threads are the same
    (CPU results depend on the thread count; see docs/determinism.md).

    Args:
        fn: a module-level function (it is pickled by name).
        jobs: keyword arguments of each call.
        workers: processes (>= 1; at most ``len(jobs)`` are started).
        device: "cpu", "cuda" or None (CUDA when present).
        common: keyword arguments shared by every call.
        threads: torch CPU threads per worker (default: this process's threads / workers, >= 1).

    Returns:
        The results in job order. An exception in a job is raised here.
    """
    import multiprocessing as mp

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not jobs:
        return []
    workers = min(workers, len(jobs))
    ctx = mp.get_context("spawn")  # CUDA and torch's thread pools do not survive fork
    devices = ctx.Queue()
    for d in worker_devices(workers, device):
        devices.put(d)
    from lkr.cpu import process_threads

    threads = threads or max(1, process_threads() // workers)  # not torch's count: a library may have moved it
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(devices, threads, dict(common or {}))) as pool:
        futures = [pool.submit(_call, fn, dict(job)) for job in jobs]
        return [f.result() for f in futures]
