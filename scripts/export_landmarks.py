"""Compute (or read from the cache) a dataset's MTCNN landmarks on this machine and write them
as a small file keyed by image path, for a GPU machine that lacks facenet-pytorch.

    python scripts/export_landmarks.py .data/fer2013.zip .data/fer2013-landmarks.npz
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lkr.landmarks import attach_landmarks  # noqa: E402
from lkr.readers import load_dataset  # noqa: E402


def main(src: str, dst: str) -> int:
    ds = attach_landmarks(load_dataset(src), progress=True)
    np.savez_compressed(dst, paths=ds.relative_paths(), boxes=ds.boxes.astype(np.float32),
                        points=ds.points.astype(np.float32), detected=ds.detected)
    print(f"{dst}: {len(ds)} images, {100 * ds.detected.mean():.1f}% with detected landmarks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
