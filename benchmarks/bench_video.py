"""Frames per second of ``lkr predict clip.mp4`` on a 640x480 clip with one face, the shipped model.

    python benchmarks/bench_video.py                  # 300 frames: each way of finding the faces
    python benchmarks/bench_video.py --threads 2 --frames 96

The clip is :func:`lkr.video.example_clip` (the public-domain astronaut, a window panning across
it). Each configuration runs once after a warm-up on the first frames; the times per stage come
from :class:`lkr.video.VideoResult` (decode, detect = MTCNN + crops, predict = the network's
ten-crop pass, write = annotating + H.264 encoding + CSV + plot). Writes
benchmarks/results/video-cpu.json. Measure on an idle machine: a training beside it halves the
numbers.

Against searching every frame whole (``detect_every=1``), the default (follow the faces by
MTCNN's last stage between searches every :data:`lkr.video.DETECT_EVERY` frames) is scored on
the same frames: the share of frames with the same label, and the overlap (IoU) of the boxes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def compare_runs(a: list[dict], b: list[dict]) -> dict:
    """Two timelines of one face on the same frames: the share of frames with the same label,
    and the IoU of the boxes (torchvision's ``box_iou``): mean and least."""
    import numpy as np
    import torch
    from torchvision.ops import box_iou

    ra, rb = {r["frame"]: r for r in a}, {r["frame"]: r for r in b}
    both = sorted(set(ra) & set(rb))
    box = lambda r: [r["x1"], r["y1"], r["x2"], r["y2"]]  # noqa: E731
    iou = box_iou(torch.tensor([box(ra[f]) for f in both]), torch.tensor([box(rb[f]) for f in both])).diagonal().numpy()
    return {"frames": len(both), "same_label": round(float(np.mean([ra[f]["label"] == rb[f]["label"] for f in both])), 4),
            "iou_mean": round(float(iou.mean()), 3), "iou_min": round(float(iou.min()), 3)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--stop", default=None, metavar="PATTERN",
                    help="stop (SIGSTOP) the processes matching PATTERN (pgrep -f; write it so that it does not "
                         "match itself, e.g. '[c]pu_results') while timing, and continue them after")
    args = ap.parse_args()

    import torch

    from lkr.predict import Predictor
    from lkr.video import example_clip, predict_video

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="lkr-bench-video-"))
    clip = example_clip(tmp, frames=args.frames)
    p = Predictor(device="cpu")
    predict_video(p, example_clip(tmp / "warm", frames=4), progress=False)  # MTCNN and the network loaded, warmed
    import os
    import signal
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True).stdout.strip()
    stopped = []
    if args.stop:
        found = subprocess.run(["pgrep", "-f", args.stop], capture_output=True, text=True).stdout.split()
        stopped = [int(x) for x in found if int(x) != os.getpid()]
        for x in stopped:
            os.kill(x, signal.SIGSTOP)
        time.sleep(5)
    stopped_at = time.strftime("%H:%M:%S")
    rows = []
    try:
        rows = _timed_runs(p, clip, tmp, rows)
    finally:
        for x in stopped:
            try:
                os.kill(x, signal.SIGCONT)
            except ProcessLookupError:
                pass
    return _report(args, rows, commit, len(stopped), stopped_at)


def _timed_runs(p, clip, tmp, rows):
    from lkr.video import DETECT_EVERY, VIDEO_MAX_SIDE, predict_video

    runs = {}
    for label, kw in [(f"search every {DETECT_EVERY}th frame, follow between (default), detect at {VIDEO_MAX_SIDE} px, --save",
                       {"save": tmp / "out"}),
                      (f"search every frame, detect at {VIDEO_MAX_SIDE} px, --save", {"save": tmp / "out", "detect_every": 1}),
                      (f"search every {DETECT_EVERY}th frame, follow between, no --save", {}),
                      (f"search every frame, detect at {VIDEO_MAX_SIDE} px, no --save", {"detect_every": 1}),
                      ("search every frame, detect at 640 px (full frame), --save",
                       {"save": tmp / "out", "max_side": 640, "detect_every": 1}),
                      (f"every 3rd frame analysed, detect at {VIDEO_MAX_SIDE} px, --save", {"save": tmp / "out", "every": 3})]:
        t0 = time.perf_counter()
        r = predict_video(p, clip, progress=False, **kw)
        wall = time.perf_counter() - t0
        assert r.error is None, r.error
        runs[label] = r
        per = {k: 1000 * v / r.frames for k, v in r.seconds.items()}
        rows.append({"run": label, "frames": r.frames, "analysed": r.analysed, "searched": r.searched,
                     "wall_s": round(wall, 2), "fps": round(r.frames / wall, 1),
                     **{f"{k}_ms_per_frame": round(v, 1) for k, v in per.items()},
                     "detect_ms_per_analysed": round(1000 * r.seconds["detect"] / r.analysed, 1),
                     "predict_ms_per_analysed": round(1000 * r.seconds["predict"] / r.analysed, 1)})
    followed, every = (runs[k] for k in list(runs)[:2])
    rows.append(compare_runs(followed.rows, every.rows))
    return rows


def _report(args, rows, commit, stopped, stopped_at):
    import torch

    from lkr.cpu import cpu_name
    from lkr.video import DETECT_EVERY

    agreement = rows.pop()
    out = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "clip": "640x480, 24 fps, one face",
           "date": time.strftime("%Y-%m-%d"), "commit": commit, "stopped_while_timing": stopped,
           "started": stopped_at, "detect_every": DETECT_EVERY, "rows": rows,
           "followed_vs_every_frame": agreement}
    path = Path(args.json or Path(__file__).parent / "results" / "video-cpu.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{out['cpu']}, {out['threads']} threads, {out['clip']}, {args.frames} frames")
    print(f"{'run':<52}{'fps':>6}{'decode':>8}{'detect':>8}{'predict':>9}{'write':>7}  (ms per frame)")
    for r in rows:
        print(f"{r['run']:<52}{r['fps']:>6}{r['decode_ms_per_frame']:>8}{r['detect_ms_per_frame']:>8}"
              f"{r['predict_ms_per_frame']:>9}{r['write_ms_per_frame']:>7}")
    print(f"followed against searched every frame: {agreement}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
