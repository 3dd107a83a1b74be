"""Compute (or read from the cache) a dataset's MTCNN landmarks on this machine and write them
as a small file keyed by each image's path inside the dataset, for a GPU machine that lacks
facenet-pytorch (scripts/gpu_run.py reads it with --fer-landmarks / --ck-landmarks).

    python scripts/export_landmarks.py .data/fer2013.zip .data/fer2013-landmarks.npz
    python scripts/export_landmarks.py .data/CK+48.zip .data/ckplus-landmarks.npz

Any data ``lkr`` reads works (FER2013 zip / folder / CSV, CK+48, the full CK+ release, "demo",
"demo-ckplus"). The file holds ``paths`` (relative to the dataset), ``boxes`` (N, 4), ``points``
(N, 5, 2) float32 and ``detected`` (N,) bool; faces without a detection hold the template the
kit gives them, and the reader sets the template rows again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class _OneLine(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise SystemExit(f"export_landmarks: error: {message}")


def main(argv: list[str] | None = None) -> int:
    ap = _OneLine(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="the dataset (as lkr reads it)")
    ap.add_argument("out", help="the landmarks file to write (.npz)")
    args = ap.parse_args(argv)
    from lkr.errors import LkrError

    out = Path(args.out)
    if out.suffix != ".npz":
        raise SystemExit(f"export_landmarks: error: {out}: the file name must end in .npz")
    try:
        from lkr.landmarks import attach_landmarks
        from lkr.readers import load_dataset

        ds = load_dataset(args.data)
        try:
            ds = attach_landmarks(ds, progress=sys.stderr.isatty())
        except ImportError as e:
            raise SystemExit(f"export_landmarks: error: MTCNN needs facenet-pytorch ({e}); run this where the kit "
                             "is installed with its dependencies") from None
    except LkrError as e:
        raise SystemExit(f"export_landmarks: error: {e}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, paths=ds.relative_paths(), boxes=ds.boxes.astype(np.float32),
                        points=ds.points.astype(np.float32), detected=ds.detected.astype(bool))
    print(f"{out}: {len(ds)} images of {ds.name}, {100 * ds.detected.mean():.1f}% with detected landmarks, "
          f"{out.stat().st_size / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
