"""What each CPU choice is worth: one training step (forward, cross-entropy, backward, SGD) of
VGG19 on random 44x44 inputs, batch 128, in each combination of memory layout, optimizer
update, precision and ``torch.compile``, and where the time goes (``torch.profiler``).

    python benchmarks/bench_cpu_step.py                     # widths 1/8 and 1/4, 2 threads
    python benchmarks/bench_cpu_step.py --compile           # also torch.compile (minutes to compile)
    python benchmarks/bench_cpu_step.py --profile 0.25      # the profiler's top ops at width 1/4

Prints a table and writes JSON (benchmarks/results/cpu-step.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lkr.config import Config  # noqa: E402
from lkr.cpu import cpu_name  # noqa: E402
from lkr.model import build_model  # noqa: E402

B = 128


def make_step(width: float, channels_last: bool, foreach: bool, bf16: bool, compile_: bool):
    """A closure running one training step, and the seconds its first two steps took."""
    torch.manual_seed(0)
    model = build_model(Config.for_variant("vgg19", width=width))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, foreach=foreach)
    call = torch.compile(model) if compile_ else model
    x, y = torch.randn(B, 1, 44, 44), torch.randint(0, 7, (B,))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = call(x, None)
        loss = F.cross_entropy(out["logits"].float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()
    step()
    return step, time.perf_counter() - t0


def measure(width: float, steps: int, **kw) -> dict:
    step, first = make_step(width, **kw)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return {"width": width, **kw, "images_per_s": steps * B / (time.perf_counter() - t0), "first_two_steps_s": first}


def profile(width: float) -> str:
    from torch.profiler import ProfilerActivity, profile as prof

    step, _ = make_step(width, channels_last=True, foreach=True, bf16=False, compile_=False)
    with prof(activities=[ProfilerActivity.CPU]) as p:
        for _ in range(5):
            step()
    return p.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", default="0.125,0.25")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile)")
    ap.add_argument("--profile", type=float, default=None, metavar="WIDTH", help="print the profiler's top ops")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.profile:
        print(profile(args.profile))
        return 0
    combos = [dict(channels_last=False, foreach=False, bf16=False, compile_=False),  # the kit at a7965bd
              dict(channels_last=True, foreach=False, bf16=False, compile_=False),
              dict(channels_last=True, foreach=True, bf16=False, compile_=False),
              dict(channels_last=False, foreach=True, bf16=True, compile_=False),
              dict(channels_last=True, foreach=True, bf16=True, compile_=False)]
    if args.compile:
        combos.append(dict(channels_last=True, foreach=True, bf16=False, compile_=True))
    rows = [measure(float(w), args.steps, **c) for w in args.widths.split(",") for c in combos]
    out = {"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__, "batch": B,
           "date": time.strftime("%Y-%m-%d"), "rows": rows}
    path = Path(args.json or Path(__file__).parent / "results" / "cpu-step.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"{out['cpu']}, {args.threads} threads, torch {torch.__version__}, VGG19, batch {B}")
    print(f"{'width':>6} {'layout':<14}{'SGD':<9}{'precision':<10}{'compile':<8}{'img/s':>7}{'first 2 steps':>15}")
    for r in rows:
        print(f"{r['width']:>6g} {'channels_last' if r['channels_last'] else 'NCHW':<14}"
              f"{'foreach' if r['foreach'] else 'for-loop':<9}{'bf16' if r['bf16'] else 'fp32':<10}"
              f"{'yes' if r['compile_'] else 'no':<8}{r['images_per_s']:>7.0f}{r['first_two_steps_s']:>14.1f}s")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
