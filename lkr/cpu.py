"""The CPU path: one thread count per process, and bf16 only where it measures faster.

Threads: :func:`use_threads` sets torch's intra-op threads to an explicit number (default: the
cores this process may run on) and the trainer calls it at the start of every run and
evaluation, so a library that changed the count in between (umap-learn's numba, a notebook
cell) cannot leave a later run on another count. CPU results depend on the thread count
(docs/determinism.md), so every run records it.

Precision: bf16 autocast on a CPU is a gamble: on a Xeon without AMX it measured 15-35% slower
than fp32, on an AMD EPYC with AVX-512 BF16 about twice as fast (docs/performance.md).
``Config.cpu_precision="auto"`` therefore times training steps of the run's own model in both
precisions on this machine (:func:`calibrate_precision`: the median of at least 5 steps each) and
takes bf16 only when it is at least :data:`BF16_MARGIN` times faster; the answer is cached per
machine, model and thread count, an experiment set decides it once for all its runs
(:func:`lkr.experiments.run_experiments`), and every run records what it used (``precision`` in
metrics.json, with the CPU model and threads); "fp32" and "bf16" force one. A resumed run keeps the
precision it started with.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

PRECISIONS = ("auto", "fp32", "bf16")
BF16_MARGIN = 1.15
"""``auto`` takes bf16 only when a bf16 step is at least this many times faster than fp32: a
smaller gain is within timing noise and not worth bf16's rounding."""
CALIBRATION_STEPS = 5
"""Timed steps per precision (the median is kept)."""


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def process_threads() -> int:
    """This process's thread count: ``$LKR_THREADS``, else ``$OMP_NUM_THREADS`` (torchrun and the
    demo's notebook kernels set it), else :func:`available_cores`."""
    for var in ("LKR_THREADS", "OMP_NUM_THREADS"):
        v = os.environ.get(var, "").strip()
        if v.isdigit() and int(v) > 0:
            return int(v)
    return available_cores()


def use_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads and return the number.

    Args:
        threads: the count; None or 0 = :func:`process_threads` (the same for every run of the
            process, whatever a library did to torch's count in between).

    Returns:
        The number of threads now in force.
    """
    n = int(threads) if threads else process_threads()
    if n < 1:
        from lkr.errors import ConfigError

        raise ConfigError(f"--threads {threads}: expected 1 or more")
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux), for records and cache keys."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or platform.machine()


def bf16_supported() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX-512 BF16 or AMX) that oneDNN uses."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # pragma: no cover
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _cache_file() -> Path:
    root = os.environ.get("LKR_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "lkr")
    return Path(root) / "cpu-precision.json"


def _time_steps(model: torch.nn.Module, x: torch.Tensor, m: torch.Tensor | None, y: torch.Tensor,
                bf16: bool, steps: int) -> float:
    """Median seconds of one training step (forward, cross-entropy, backward, SGD) over ``steps``
    timed steps, after one warm-up step."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9, foreach=True)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x, m)
        loss = torch.nn.functional.cross_entropy(out["logits"].float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return float(statistics.median(times))


def calibrate_precision(cfg: Any, threads: int, *, batch: int = 64, steps: int = CALIBRATION_STEPS,
                        use_cache: bool = True) -> dict[str, Any]:
    """Time training steps of ``cfg``'s model in fp32 and bf16 on this CPU; bf16 wins only when its
    median step is at least :data:`BF16_MARGIN` times faster than fp32's.

    Only called for ``cfg.cpu_precision == "auto"`` on a CPU with native bf16
    (:func:`bf16_supported`); elsewhere fp32 is used without measuring. The model timed is the
    single-branch network of ``cfg``'s conv stack and width, so that every configuration of an
    experiment set (with or without the local branch) gets the same answer on one machine. The
    answer is cached in ``$LKR_CACHE_DIR/cpu-precision.json`` per CPU model, torch version,
    thread count, conv stack, width and crop.

    Args:
        cfg: a :class:`lkr.config.Config`.
        threads: the run's torch threads (already in force).
        batch: images per timed step; steps: timed steps per precision (at least 5: the median
            of them is compared).
        use_cache: read and write the cache.

    Returns:
        {"precision": "fp32" | "bf16", "fp32_s": seconds a step, "bf16_s": seconds a step,
        "batch": batch, "cached": bool}.
    """
    from lkr.model import build_model

    steps = max(int(steps), CALIBRATION_STEPS)
    key = json.dumps([cpu_name(), torch.__version__, threads, list(cfg.vgg_cfg), cfg.width, cfg.crop, batch,
                      f"median of {steps}", BF16_MARGIN])
    path = _cache_file()
    cache: dict[str, Any] = {}
    if use_cache and path.exists():
        try:
            cache = json.loads(path.read_text())
        except (OSError, ValueError):
            cache = {}
        if key in cache:
            return {**cache[key], "cached": True}
    rng = torch.get_rng_state()
    try:
        torch.manual_seed(0)
        single = dataclasses.replace(cfg, local_branch=False, triplet_lambda=0.0)
        model = build_model(single).to(memory_format=torch.channels_last)
        x = torch.randn(batch, 1, cfg.crop, cfg.crop).contiguous(memory_format=torch.channels_last)
        m = None
        y = torch.randint(0, cfg.num_classes, (batch,))
        t32 = _time_steps(model, x, m, y, False, steps)
        t16 = _time_steps(model, x, m, y, True, steps)
    finally:
        torch.set_rng_state(rng)  # the run's own random stream is untouched
    ans = {"precision": "bf16" if t32 >= BF16_MARGIN * t16 else "fp32", "fp32_s": t32, "bf16_s": t16,
           "batch": batch, "steps": steps}
    if use_cache:
        cache[key] = ans
        try:
            from lkr.atomic import atomic_write

            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f: f.write(json.dumps(cache, indent=1).encode()))
        except OSError:
            pass  # an unwritable cache only costs a new measurement next time
    return {**ans, "cached": False}


def resolve_precision(cfg: Any, device: torch.device, threads: int) -> dict[str, Any]:
    """The precision a run uses: {"precision": "fp32" | "bf16", ...how it was decided}.

    CUDA: bf16 when ``cfg.amp``. CPU: ``cfg.cpu_precision`` ("fp32", "bf16", or "auto" =
    :func:`calibrate_precision` where the CPU has native bf16, else fp32). The answer names the
    device type it holds for (a run resumed on another kind of device decides again).
    """
    d = {"device": device.type}
    if device.type == "cuda":
        return {"precision": "bf16" if cfg.amp else "fp32", "decided_by": "amp", **d}
    if device.type != "cpu":
        return {"precision": "fp32", "decided_by": "device", **d}
    if cfg.cpu_precision != "auto":
        return {"precision": cfg.cpu_precision, "decided_by": "config", **d}
    if not bf16_supported():
        return {"precision": "fp32", "decided_by": "no native bf16 on this CPU", **d}
    c = calibrate_precision(cfg, threads)
    return {"precision": c["precision"], "decided_by": describe_calibration(c, threads), **d}


def describe_calibration(c: dict[str, Any], threads: int) -> str:
    """One line saying what :func:`calibrate_precision` measured and why it chose what it did."""
    ratio = c["fp32_s"] / c["bf16_s"] if c["bf16_s"] > 0 else float("inf")
    why = "at least" if c["precision"] == "bf16" else "under"
    return (f"measured on {cpu_name()} at {threads} thread{'' if threads == 1 else 's'}: a {c['batch']}-image step "
            f"took {c['fp32_s']:.3f} s in fp32, {c['bf16_s']:.3f} s in bf16 (median of {c.get('steps', 3)}; "
            f"bf16 {ratio:.2f}x, {why} the {BF16_MARGIN:g}x margin)")


# --- one training at a time -------------------------------------------------------------------
class OversubscribedWarning(UserWarning):
    """Other kit trainings hold threads that, with this run's, exceed the cores."""


def _registry() -> Path:
    root = os.environ.get("LKR_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "lkr")
    return Path(root) / "training"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def trainings_elsewhere() -> list[dict[str, Any]]:
    """The kit's CPU trainings running in other processes ({"pid", "threads", "out"}); records of
    processes that ended (even killed) are removed."""
    found = []
    d = _registry()
    for f in d.glob("*.json") if d.is_dir() else []:
        try:
            rec = json.loads(f.read_text())
            pid = int(rec["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if pid == os.getpid():
            continue
        if not _alive(pid):
            f.unlink(missing_ok=True)
            continue
        found.append(rec)
    return found


class training_slot:
    """Context manager around a CPU training: warns (one line) when other kit trainings already
    hold threads that, with this one's, exceed the cores (two trainings of every core each on 2
    cores did 3.3x less work than one after the other, measured), and records this one while it
    runs (``$LKR_CACHE_DIR/training/<pid>.json``)."""

    def __init__(self, threads: int, out: str):
        self.threads, self.out = int(threads), str(out)
        self.path = _registry() / f"{os.getpid()}.json"

    def __enter__(self) -> "training_slot":
        import warnings

        others = trainings_elsewhere()
        busy = sum(int(o.get("threads") or 1) for o in others)
        cores = available_cores()
        if others and busy + self.threads > cores:
            warnings.warn(
                f"{len(others)} other lkr training{'s' if len(others) > 1 else ''} already use{'' if len(others) > 1 else 's'} "
                f"{busy} thread{'s' if busy != 1 else ''} on this machine's {cores} cores, and this run adds "
                f"{self.threads}: each will run several times slower (measured: 3.3x less work on 2 cores). Train "
                "one run at a time, or give each --threads 1 (or workers= of run_experiments)",
                OversubscribedWarning, stacklevel=3)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"pid": os.getpid(), "threads": self.threads, "out": self.out}))
        except OSError:
            pass  # the warning is a courtesy; an unwritable cache costs nothing else
        return self

    def __exit__(self, *exc: Any) -> None:
        self.path.unlink(missing_ok=True)
