"""What triplet mining does to the triplet term: LKRNet on the synthetic demo set, 6 epochs, with
random triplets and with in-batch batch-hard and semi-hard mining. Prints, per epoch, the
triplet term, the share of triplets that still have a loss (``triplet_active``), and the
images per second (a random-triplet step holds 3x the images of a mined one).

    python scripts/triplet_mining_demo.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lkr.cpu import use_threads  # noqa: E402
from lkr.demo import make_demo  # noqa: E402
from lkr.train import config_for, train  # noqa: E402


def main() -> int:
    threads = use_threads(None)
    ds = make_demo("fer2013", n=700)
    print(f"LKRNet (lambda 0.2) on the demo set ({len(ds)} images), 6 epochs, {threads} threads")
    for mining in ("random", "batch_hard", "semi_hard"):
        with tempfile.TemporaryDirectory() as d:
            cfg = config_for(ds, "lkrnet", epochs=6, eval_every=2, triplet_mining=mining)
            m = train(ds, cfg, d, device="cpu", progress=False)
            hist = json.loads((Path(d) / "history.json").read_text())
        print(f"{mining:<11} triplet   " + " ".join(f"{h['triplet']:.3f}" for h in hist))
        print(f"{'':<11} active    " + " ".join(f"{h['triplet_active']:.2f} " for h in hist))
        print(f"{'':<11} {cfg.images_per_anchor * cfg.batch_size} images a step, "
              f"{hist[-1]['images_per_s']:.0f} images/s, test accuracy {100 * m['accuracy']:.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
