"""Training throughput: our trainer against the common pipeline, same model, same device.

* ours: ``lkr.train.train`` (data, masks and augmentation on the device; bf16 + channels_last
  on CUDA), steady state = the median images/s of the epochs after the first.
* reference: the common pipeline of the widely used VGG19 FER2013 repository: PIL images,
  torchvision transforms (RandomCrop 44, RandomHorizontalFlip, ToTensor) in a ``DataLoader``,
  fp32, batch 128, cross-entropy, the same VGG19 (global branch only).

Also: FLOPs per training image (forward + backward, ``torch.utils.flop_counter``) and, on a
GPU with a known bf16 peak, the fraction of that peak reached. Prints a table, writes JSON.

    python benchmarks/bench_train.py                     # CPU: thin net, small synthetic set
    python benchmarks/bench_train.py --device cuda --width 1 --n-train 28709 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lkr.config import Config  # noqa: E402
from lkr.demo import make_demo  # noqa: E402
from lkr.device import resolve_device  # noqa: E402
from lkr.losses import lkr_loss  # noqa: E402
from lkr.model import build_model  # noqa: E402
from lkr.train import config_for, train  # noqa: E402

# Dense bf16 tensor-core rates measured on this workplace's cards (device README): 8192^3 matmul.
BF16_PEAK = {"H100": 798e12, "H200": 790e12}


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


def bench_ours(ds, variant: str, overrides: dict, device: torch.device, epochs: int) -> dict:
    cfg = config_for(ds, variant, epochs=epochs, eval_every=10_000, checkpoint_every=10_000, **overrides)
    with tempfile.TemporaryDirectory() as tmp:
        train(ds, cfg, tmp, device=device, progress=False, resume=False)
        hist = json.loads((Path(tmp) / "history.json").read_text())
    steady = [h["images_per_s"] for h in hist[1:]] or [hist[0]["images_per_s"]]
    return {"images_per_s": float(np.median(steady)), "first_epoch_s": hist[0]["seconds"],
            "images_per_step": cfg.batch_size * (3 if cfg.uses_triplet else 1), "config": cfg.to_dict()}


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None)
    ap.add_argument("--width", type=float, default=None, help="conv width multiplier (CPU default 0.125)")
    ap.add_argument("--n-train", type=int, default=None, help="synthetic training images (CPU default 512)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128, help="anchors per step (the paper's 128)")
    ap.add_argument("--ref-steps", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--configs", default="vgg19,lkrnet")
    ap.add_argument("--set", action="append", default=[], help="Config FIELD=VALUE")
    ap.add_argument("--json", default=None, help="output JSON (default benchmarks/results/train-<device>.json)")
    args = ap.parse_args()
    from lkr.train import _parse_set

    dev = resolve_device(args.device)
    cpu = dev.type == "cpu"
    width = args.width if args.width is not None else (0.125 if cpu else 1.0)
    n_train = args.n_train or (512 if cpu else 28709)
    ref_steps = args.ref_steps or (5 if cpu else 100)
    # A FER2013-shaped synthetic set (the demo generator) of the asked size: throughput does not
    # depend on the pixels. The model is the paper's VGG19 at the given width.
    n_total = int(round(n_train / 0.8))
    ds = make_demo("fer2013", n=n_total)
    ds.kind = "bench"  # not the demo preset: the paper's architecture
    overrides = {"width": width, "batch_size": args.batch, **_parse_set(args.set)}
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    peak = next((v for k, v in BF16_PEAK.items() if k in name), None)

    rows = []
    ref = bench_reference(ds, overrides, dev, ref_steps, args.batch, args.workers)
    fl = flops_per_image(Config.for_variant("vgg19", **overrides), dev)
    rows.append({"pipeline": "common (PIL + DataLoader, fp32)", "config": "vgg19", **ref, "flops_per_image": fl})
    for v in args.configs.split(","):
        r = bench_ours(ds, v, overrides, dev, args.epochs)
        fl = flops_per_image(Config.for_variant(v, **overrides), dev)
        r.pop("config")
        rows.append({"pipeline": "lkr trainer" + ("" if cpu else " (bf16, channels_last)"), "config": v, **r,
                     "flops_per_image": fl})
    for r in rows:
        r["tflops"] = r["images_per_s"] * r["flops_per_image"] / 1e12
        r["peak_fraction"] = r["tflops"] * 1e12 / peak if peak else None

    out = {"device": name, "torch": torch.__version__, "threads": torch.get_num_threads(), "width": width,
           "n_train": n_train, "batch": args.batch, "date": time.strftime("%Y-%m-%d"), "rows": rows}
    path = Path(args.json or Path(__file__).parent / "results" / f"train-{'cpu' if cpu else 'cuda'}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"device {name}, torch {torch.__version__}, width {width}, batch {args.batch} anchors")
    print(f"{'pipeline':<36}{'config':<9}{'images/s':>10}{'GFLOP/img':>11}{'TFLOP/s':>9}{'of peak':>9}")
    for r in rows:
        pf = f"{100 * r['peak_fraction']:.1f}%" if r["peak_fraction"] else "n/a"
        print(f"{r['pipeline']:<36}{r['config']:<9}{r['images_per_s']:>10.0f}{r['flops_per_image'] / 1e9:>11.3f}"
              f"{r['tflops']:>9.3f}{pf:>9}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
