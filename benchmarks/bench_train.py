"""Training throughput and the per-epoch cost: this trainer, an earlier commit's trainer, and the
common pipeline, side by side in one run on the same machine.

* ``lkr trainer``: ``lkr.train.train`` as it is now (on a CPU: channels_last, foreach SGD, bf16
  where :mod:`lkr.cpu` measures it faster, centre-crop selection with ``--select-crops center``).
* ``lkr @ <commit>``: the same runs with the trainer of an earlier commit (default ``a7965bd``,
  the kit before the CPU work), checked out into a temporary git worktree and run in a
  subprocess on the same synthetic data.
* ``common``: the pipeline of the widely used VGG19 FER2013 repository: PIL images, torchvision
  transforms (RandomCrop 44, RandomHorizontalFlip, ToTensor) in a ``DataLoader``, fp32, batch
  128, cross-entropy, the same VGG19 (global branch only).

Images/s is the median of the epochs after the first. GFLOP/image is forward + backward
(``torch.utils.flop_counter``); "of peak" compares GFLOP/s with the CPU's nominal fp32 peak
(:func:`cpu_peak_gflops`: cores x base clock x FLOP per cycle; bf16 may exceed it). The
per-epoch cost is that of FER2013: 28,709 training images (x3 with random triplets) at the
measured rate, plus the selection of 3,589 PublicTest-sized faces timed as each commit's trainer
does it (before: ten-crop, fp32, NCHW; now: ``--select-crops``, channels_last, the measured
precision).

    python benchmarks/bench_train.py                              # CPU: widths 1/8 and 1/4
    python benchmarks/bench_train.py --device cuda --widths 1 --n-train 28709 --baseline none
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lkr.config import Config  # noqa: E402
from lkr.demo import make_demo  # noqa: E402
from lkr.device import resolve_device  # noqa: E402
from lkr.losses import lkr_loss  # noqa: E402
from lkr.model import build_model  # noqa: E402

# Dense bf16 tensor-core rates measured on this workplace's cards (device README): 8192^3 matmul.
BF16_PEAK = {"H100": 798e12, "H200": 790e12}
FER_TRAIN, FER_SELECT = 28709, 3589

# Runs one configuration with whatever `lkr` is first on sys.path (this checkout or an earlier
# commit's worktree) and prints one JSON line: training images/s and selection seconds.
RUNNER = r'''
import json, sys, tempfile, time
from pathlib import Path
a = json.loads(sys.argv[1])
# the lkr of a["root"], not the editable install of this checkout (its finder comes first)
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, a["root"])
import numpy as np, torch
import lkr
assert Path(lkr.__file__).resolve().is_relative_to(Path(a["root"]).resolve()), lkr.__file__
from lkr.demo import make_demo
from lkr.train import config_for, train
torch.set_num_threads(a["threads"])
ds = make_demo("fer2013", n=a["n_total"])
ds.kind = "bench"  # not the demo preset: the paper's architecture at the asked width
cfg = config_for(ds, a["variant"], epochs=a["epochs"], eval_every=10_000, checkpoint_every=10_000,
                 **a["overrides"])
with tempfile.TemporaryDirectory() as tmp:
    kw = {"threads": a["threads"]} if "threads" in train.__code__.co_varnames else {}
    m = train(ds, cfg, tmp, device="cpu", progress=False, resume=False, **kw)
    hist = json.loads((Path(tmp) / "history.json").read_text())
steady = [h["images_per_s"] for h in hist[1:]] or [hist[0]["images_per_s"]]
precision = (m.get("precision") or {}).get("precision", "fp32")
# Selection of one FER2013 epoch (PublicTest's 3,589 faces) as this commit's trainer does it
import lkr.evaluate as ev
from lkr.model import build_model
g = torch.Generator().manual_seed(0)
images = torch.randint(0, 256, (3589, 48, 48), dtype=torch.uint8, generator=g)
masks = torch.rand(3589, 48, 48, generator=g) if cfg.local_branch else None
model = build_model(cfg)
if hasattr(ev, "predict"):  # one prediction function (crops="ten" | "center")
    model = model.to(memory_format=torch.channels_last)
    fn = ev.predict
    kw = dict(amp=precision == "bf16", channels_last=True, crops=cfg.select_crops)
elif hasattr(ev, "predict_center"):  # the CPU path: channels_last, measured precision, cheap selection
    model = model.to(memory_format=torch.channels_last)
    fn = ev.predict_center if cfg.select_crops == "center" else ev.predict_ten_crop
    kw = dict(amp=precision == "bf16", channels_last=True)
else:  # before it: ten-crop, fp32, NCHW on a CPU
    fn, kw = ev.predict_ten_crop, dict(amp=cfg.amp, channels_last=False)
fn(model, images[:64], None if masks is None else masks[:64], crop=cfg.crop, **kw)  # warm-up
t0 = time.perf_counter()
fn(model, images, masks, crop=cfg.crop, **kw)
select_s = time.perf_counter() - t0
print(json.dumps({"images_per_s": float(np.median(steady)), "fer_select_s": select_s, "precision": precision,
                  "kit": lkr.__version__, "images_per_anchor": 3 if m.get("triplet_lambda", 0) > 0
                  and cfg.to_dict().get("triplet_mining", "random") == "random" else 1}))
'''


def cpu_peak_gflops(cores: int) -> tuple[float, str]:
    """Nominal fp32 peak of ``cores`` cores: base clock x FLOP per cycle per core.

    FLOP per cycle: 64 with AVX-512 and two full-width FMA units (Intel Xeon, AMD Zen 5), 32 on
    AMD Zen 4 (AVX-512 on 256-bit units, CPU family 25) and with AVX2 + FMA, 16 otherwise.
    """
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return float("nan"), "unknown CPU"
    mhz = float(next(ln.split(":")[1] for ln in info.splitlines() if ln.startswith("cpu MHz")))
    family = int(next((ln.split(":")[1] for ln in info.splitlines() if ln.startswith("cpu family")), "0"))
    amd = "AuthenticAMD" in info
    if "avx512f" in info:
        per_cycle = 32 if (amd and family == 25) else 64
    elif "avx2" in info and " fma" in info:
        per_cycle = 32
    else:
        per_cycle = 16
    return cores * mhz / 1000 * per_cycle, f"{cores} cores x {mhz / 1000:.2f} GHz x {per_cycle} FLOP/cycle"


def flops_per_image(cfg: Config, device: torch.device) -> float:
    """Forward + backward FLOPs of one training image (a batch of 8, divided by 8)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(cfg).to(device)
    x = torch.randn(8, 1, cfg.crop, cfg.crop, device=device)
    m = torch.rand(8, 1, cfg.crop, cfg.crop, device=device) if cfg.local_branch else None
    y = torch.randint(0, cfg.num_classes, (8,), device=device)
    with FlopCounterMode(display=False) as fc:
        out = model(x, m)
        loss, _ = lkr_loss(out, y, Config(**{**cfg.to_dict(), "triplet_lambda": 0.0}))
        loss.backward()
    return fc.get_total_flops() / 8


def run_trainer(pythonpath: Path, variant: str, overrides: dict, n_total: int, epochs: int, threads: int) -> dict:
    """One configuration trained by the ``lkr`` under ``pythonpath``, in a fresh process."""
    arg = json.dumps({"variant": variant, "overrides": overrides, "n_total": n_total, "epochs": epochs,
                      "threads": threads, "root": str(pythonpath)})
    env = {**os.environ, "LKR_THREADS": str(threads)}
    r = subprocess.run([sys.executable, "-c", RUNNER, arg], env=env, capture_output=True, text=True,
                       cwd=pythonpath)
    if r.returncode:
        raise SystemExit(f"{pythonpath}: {variant} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def bench_reference(ds, overrides: dict, device: torch.device, steps: int, batch: int, workers: int) -> dict:
    """The common pipeline: PIL + torchvision transforms + DataLoader, fp32."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    class Faces(Dataset):
        def __init__(self, images, labels):
            self.images, self.labels = images, labels
            self.tf = transforms.Compose([transforms.RandomCrop(44), transforms.RandomHorizontalFlip(),
                                          transforms.ToTensor()])

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            return self.tf(Image.fromarray(self.images[i])), int(self.labels[i])

    train_idx = np.flatnonzero(ds.splits == "Training")
    loader = DataLoader(Faces(ds.images[train_idx], ds.labels[train_idx]), batch_size=batch, shuffle=True,
                        num_workers=workers, drop_last=True, persistent_workers=workers > 0)
    cfg = Config.for_variant("vgg19", **{**overrides, "amp": False, "channels_last": False})
    model = build_model(cfg).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    crit = torch.nn.CrossEntropyLoss()
    done, t0, warm = 0, None, 3
    while done < steps + warm:
        for x, y in loader:
            if done == warm:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = crit(model(x)["logits"], y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done >= steps + warm:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"images_per_s": steps * batch / (time.perf_counter() - t0), "batch": batch, "workers": workers}


def baseline_tree(commit: str, tmp: Path) -> Path:
    """A detached worktree of ``commit`` under ``tmp`` (removed by the caller)."""
    path = tmp / f"lkr-{commit}"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(path), commit],
                   check=True, capture_output=True)
    return path


def epoch_cost(row: dict) -> dict:
    """Seconds of one FER2013-sized epoch: training at the row's rate, plus the selection of
    PublicTest (measured at full size)."""
    train_s = FER_TRAIN * row["images_per_anchor"] / row["images_per_s"]
    return {"fer_train_s": train_s, "fer_epoch_s": train_s + row["fer_select_s"],
            "select_share": row["fer_select_s"] / (train_s + row["fer_select_s"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None)
    ap.add_argument("--widths", default=None, help="comma-separated conv width multipliers (CPU: 0.125,0.25)")
    ap.add_argument("--n-train", type=int, default=None, help="synthetic training images (CPU default 1024)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128, help="anchors per step (the paper's 128)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: every core)")
    ap.add_argument("--ref-steps", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--configs", default="vgg19,lkrnet")
    ap.add_argument("--baseline", default="a7965bd", help="commit to compare with ('none': skip)")
    ap.add_argument("--select-crops", default="center", help="selection of the current trainer: center or ten")
    ap.add_argument("--json", default=None, help="output JSON (default benchmarks/results/train-<device>.json)")
    args = ap.parse_args()

    from lkr.cpu import available_cores, cpu_name

    dev = resolve_device(args.device)
    cpu = dev.type == "cpu"
    threads = args.threads or available_cores()
    torch.set_num_threads(threads)
    widths = [float(w) for w in (args.widths or ("0.125,0.25" if cpu else "1")).split(",")]
    n_train = args.n_train or (1024 if cpu else 28709)
    ref_steps = args.ref_steps or (8 if cpu else 100)
    n_total = int(round(n_train / 0.8))  # the demo generator's split: 80% Training
    ds = make_demo("fer2013", n=n_total)
    name = cpu_name() if cpu else torch.cuda.get_device_name(dev)
    peak, peak_how = cpu_peak_gflops(threads) if cpu else (next(
        (v / 1e9 for k, v in BF16_PEAK.items() if k in name), float("nan")), "bf16 tensor cores")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        if args.baseline != "none" and cpu:
            base = baseline_tree(args.baseline, Path(tmp))
        try:
            for width in widths:
                # a short CPU schedule (throughput does not depend on it)
                overrides = {"width": width, "batch_size": args.batch, "schedule": "cosine", "warmup_epochs": 1,
                             "lr": 0.05}
                fl = {v: flops_per_image(Config.for_variant(v, width=width), dev) for v in args.configs.split(",")}
                ref = bench_reference(ds, overrides, dev, ref_steps, args.batch, args.workers)
                rows.append({"pipeline": "common (PIL + DataLoader, fp32)", "config": "vgg19", "width": width,
                             **ref, "flops_per_image": fl["vgg19"]})
                for v in args.configs.split(","):
                    if base is not None:
                        r = run_trainer(base, v, overrides, n_total, args.epochs, threads)
                        rows.append({"pipeline": f"lkr @ {args.baseline}", "config": v, "width": width, **r,
                                     "flops_per_image": fl[v], **epoch_cost(r)})
                    r = run_trainer(REPO, v, {**overrides, "select_crops": args.select_crops}, n_total,
                                    args.epochs, threads)
                    rows.append({"pipeline": "lkr trainer (now)", "config": v, "width": width, **r,
                                 "flops_per_image": fl[v], **epoch_cost(r)})
        finally:
            if base is not None:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)],
                               capture_output=True)
    for r in rows:
        r["gflops"] = r["images_per_s"] * r["flops_per_image"] / 1e9
        r["peak_fraction"] = r["gflops"] / peak if peak == peak else None

    out = {"device": name, "torch": torch.__version__, "threads": threads, "peak_gflops": peak,
           "peak": peak_how, "n_train": n_train, "batch": args.batch, "date": time.strftime("%Y-%m-%d"),
           "baseline": args.baseline, "rows": rows}
    path = Path(args.json or Path(__file__).parent / "results" / f"train-{'cpu' if cpu else 'cuda'}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"{name}, {threads} threads, torch {torch.__version__}, batch {args.batch} anchors; "
          f"nominal peak {peak:.0f} GFLOP/s ({peak_how})")
    print(f"{'pipeline':<32}{'config':<8}{'width':>6}{'prec':>6}{'img/s':>8}{'GFLOP/s':>9}{'peak':>7}"
          f"{'FER epoch s':>13}{'select':>8}")
    for r in rows:
        pf = f"{100 * r['peak_fraction']:.0f}%" if r["peak_fraction"] is not None else "n/a"
        ep = f"{r['fer_epoch_s']:.0f}" if "fer_epoch_s" in r else ""
        sh = f"{100 * r['select_share']:.0f}%" if "select_share" in r else ""
        print(f"{r['pipeline']:<32}{r['config']:<8}{r['width']:>6g}{r.get('precision', 'fp32'):>6}"
              f"{r['images_per_s']:>8.0f}{r['gflops']:>9.1f}{pf:>7}{ep:>13}{sh:>8}")
    # the goals of issue 15: training images/s >= 1.5x the baseline; per-epoch cost >= 2x lower
    for width in widths:
        for v in args.configs.split(","):
            now = next((r for r in rows if r["pipeline"].startswith("lkr trainer") and r["config"] == v
                        and r["width"] == width), None)
            old = next((r for r in rows if r["pipeline"].startswith("lkr @") and r["config"] == v
                        and r["width"] == width), None)
            if now and old:
                print(f"width {width:g} {v}: training {now['images_per_s'] / old['images_per_s']:.2f}x, "
                      f"FER2013 epoch with selection {old['fer_epoch_s'] / now['fer_epoch_s']:.2f}x faster")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
