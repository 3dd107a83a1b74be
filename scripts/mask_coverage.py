"""How much of each local key region reaches the pooled mask M↓ (Eq. 4), under both
``mask_pool`` settings, at the 2x2 (``mask_stage=5``) and 5x5 (``mask_stage=4``) maps.

    python scripts/mask_coverage.py                        # the kit's template face
    python scripts/mask_coverage.py ../shared/data/fer2013.zip   # + the training faces with detected landmarks

Prints a Markdown table (the one in docs/method.md); the centre 44x44 crop of each face.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lkr.config import Config  # noqa: E402
from lkr.landmarks import DEFAULT_TEMPLATE_BOX, DEFAULT_TEMPLATE_POINTS  # noqa: E402
from lkr.model import region_coverage  # noqa: E402

SETTINGS = [("grid", 5), ("cover", 5), ("grid", 4), ("cover", 4)]


def table(boxes: np.ndarray, points: np.ndarray, title: str) -> str:
    cov = {s: region_coverage(boxes, points, Config(mask_pool=s[0], mask_stage=s[1])) for s in SETTINGS}
    head = "| " + title + " | " + " | ".join(f"{p}, stage {st} ({'2x2' if st == 5 else '5x5'})"
                                            for p, st in SETTINGS) + " |"
    rows = [head, "|---" * (len(SETTINGS) + 1) + "|"]
    for region in next(iter(cov.values())):
        rows.append(f"| {region.replace('_', ' ')} | "
                    + " | ".join(f"{100 * cov[s][region]:.0f}%" for s in SETTINGS) + " |")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    print(table(DEFAULT_TEMPLATE_BOX[None], DEFAULT_TEMPLATE_POINTS[None], "template face"))
    if argv:
        from lkr.landmarks import attach_landmarks
        from lkr.readers import load_dataset

        ds = attach_landmarks(load_dataset(argv[0]), progress=True)
        keep = ds.detected & (ds.splits == "Training") if "Training" in ds.split_names else ds.detected
        print()
        print(table(ds.boxes[keep], ds.points[keep], f"{ds.name}, {int(keep.sum())} faces"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
