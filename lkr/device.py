"""The compute device: which one a run uses, bf16 autocast on it, and its name in the metrics."""

from __future__ import annotations

import contextlib

import torch

from lkr.errors import TrainingError


def resolve_device(device: str | None) -> torch.device:
    """"cpu", "cuda", "cuda:N", or None / "auto" for CUDA when present.

    Raises:
        TrainingError: for a name torch does not know, or CUDA asked for where there is none.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        raise TrainingError(f"--device {device}: expected cpu, cuda or cuda:N") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(device)


def autocast_for(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` (CUDA or CPU) when enabled; a no-op otherwise.

    Callers decide ``enabled``: on CUDA the config's ``amp``, on a CPU the precision the run
    measured (:func:`lkr.cpu.resolve_precision`), never ``amp`` alone.
    """
    if enabled and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_bf16(cfg, info: dict, device: torch.device) -> bool:
    """Whether a trained run's weights are evaluated in bf16 on ``device``: on CUDA the config's
    ``amp``; on a CPU the precision the run trained in (``info["precision"]``), else fp32."""
    if device.type == "cuda":
        return bool(cfg.amp)
    p = (info or {}).get("precision") or {}
    return device.type == "cpu" and p.get("precision") == "bf16"


def device_name(dev: torch.device) -> str:
    """The GPU's name, or "cpu (<processor>, <n> threads)"."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    from lkr.cpu import cpu_name

    n = torch.get_num_threads()
    return f"cpu ({cpu_name()}, {n} thread{'' if n == 1 else 's'})"
