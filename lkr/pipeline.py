"""The main job on the built-in default: ``lkr demo`` / ``make demo``."""

from __future__ import annotations

import json
from pathlib import Path


def run_demo(out: str | Path, *, quick: bool = True, device: str | None = None) -> int:
    """Summarise the synthetic demo set and save a grid of its samples into ``out``.

    Returns:
        0 on success (the CLI's exit status).
    """
    from lkr.demo import make_demo, save_sample_grid

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for shape in ("fer2013", "ckplus"):
        ds = make_demo(shape)
        s = ds.summary()
        print(f"demo-{shape}: {s['images']} images, splits {s['splits']}"
              + (f", {s['subjects']} subjects, {s['sequences']} sequences" if s["subjects"] else ""))
        (out / f"demo-{shape}-summary.json").write_text(json.dumps(s, indent=2))
        grid = save_sample_grid(ds, out / f"demo-{shape}-samples.png")
        print(f"  samples: {grid}")
    return 0
