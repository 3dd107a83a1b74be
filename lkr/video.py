"""Expressions through a video (``lkr predict clip.mp4 --save out/``).

Beyond the paper. Each frame goes through what a photo goes through (:mod:`lkr.predict`):

1. **Decode.** PyAV (the ffmpeg inside its wheel; nothing else to install) decodes the first
   video stream; each frame becomes an RGB image, its time the stream's presentation time.
2. **Faces.** Every frame is analysed, or every ``every``-th frame (frames between keep the last
   boxes and labels in the annotated video, and have no rows in the timeline). MTCNN searches an
   analysed frame whole every :data:`DETECT_EVERY` analysed frames (``detect_every``); the frames
   between follow the last frame's faces by MTCNN's last stage alone (O-Net on each last box:
   :func:`lkr.predict.refine_faces`), and a face lost there (its probability below ``min_prob``)
   makes that frame searched whole. Each face is cropped, landmarked and masked as on a photo,
   and all faces of a frame go through one ten-crop pass
   (:meth:`lkr.predict.Predictor.probabilities`).
3. **Faces followed.** A face keeps its id from one analysed frame to the next when its box
   overlaps the id's last box by IoU >= ``iou`` (torchvision's ``box_iou``) or its centre lies
   within half the boxes' side of the id's (:class:`BoxTracker`; the pairing that minimises the
   total centre distance, scipy's ``linear_sum_assignment``), and the id was seen within
   ``max_gap`` analysed frames; a face that matches no id gets a new one.
   A frame stored sideways (a phone's portrait video) is turned upright by its display matrix
   first, as a photo is by its EXIF orientation.
4. **Outputs** (``save``): ``<stem>.csv``, the timeline (frame, time, face id, box, the K
   probabilities, the label); ``<stem>.annotated.mp4``, the video with each face's box, id and
   label (H.264; no audio); ``<stem>.probabilities.png``, each face's probabilities against time
   (the :data:`PLOT_FACES` faces seen in the most frames). Times are seconds from the stream's
   start.

A file that cannot be decoded, has no video stream, or shows no face in any analysed frame gets
one line of error (``<file>: not a video (...)``, ``<file>: no face found in N frames``) and no
outputs; the other inputs still run.
"""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lkr.errors import BadImageError, LkrError

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"})
"""Files ``lkr predict`` reads as videos (by their suffix); every other file is read as a photo."""


VIDEO_MAX_SIDE = 320
"""Frames with a longer side are searched for faces at this size (faces >= 20 px there, 40 px
in a 640x480 frame): MTCNN's search is most of a searched frame's time, 12.7 ms a frame at 320 px
against 28.4 ms at 640 px (2 AMD EPYC cores, benchmarks/bench_video.py, docs/performance.md).
The faces are still cut from the full-size frame."""


DETECT_EVERY = 5
"""Analysed frames are searched whole by MTCNN every this many; the frames between follow the
last faces by MTCNN's last stage alone (:func:`lkr.predict.refine_faces`), searching again at
once when a face is lost. 1: search every frame. A face that enters the frame between two
searches is found at the next one: up to ``DETECT_EVERY - 1`` analysed frames late. Against searching every frame, the labels and boxes of the example clip are compared in
``benchmarks/bench_video.py`` (docs/performance.md)."""


PLOT_FACES = 6
"""The probability plot shows at most this many faces (those seen in the most frames)."""


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass
class VideoResult:
    """What a video gave.

    Attributes:
        video: the path as given.
        rows: the timeline, one dict per face per analysed frame: frame, time (s), face (id),
            x1, y1, x2, y2 (the box in the frame), the K class probabilities, label.
        frames: frames decoded; analysed: frames whose faces were predicted; searched: those of
            them searched whole by MTCNN (the others followed the last faces, :data:`DETECT_EVERY`).
        fps: the stream's average frame rate.
        seconds: wall time of "decode" (with converting frames), "detect" (MTCNN and the crops),
            "predict" (the network) and "write" (annotating, encoding, the CSV and the plot).
        error: None, or one line naming the file.
        warning: None, or one line (fewer frames decoded than the file announces).
        csv, annotated, plot: the files written by ``save``, or None.
    """

    video: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    frames: int = 0
    analysed: int = 0
    searched: int = 0
    fps: float = 0.0
    seconds: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "detect": 0.0, "predict": 0.0,
                                                               "write": 0.0})
    error: str | None = None
    warning: str | None = None
    csv: Path | None = None
    annotated: Path | None = None
    plot: Path | None = None

    @property
    def faces(self) -> list[int]:
        """The face ids seen, in order of first appearance."""
        return list(dict.fromkeys(r["face"] for r in self.rows))

    def to_json(self) -> dict[str, Any]:
        return {"video": self.video, "frames": self.frames, "analysed": self.analysed, "searched": self.searched,
                "fps": self.fps,
                "faces": self.faces, "rows": self.rows, "error": self.error, "warning": self.warning}


class BoxTracker:
    """Face ids across frames by box overlap and distance (see the module docstring, step 3).

    A face and an id may be paired when their boxes overlap by IoU >= ``iou`` or their centres
    lie within ``shift`` times the boxes' mean side (a face that moved fast, or between frames
    ``--every`` apart); among those pairs, the assignment that minimises the total centre
    distance (scipy's ``linear_sum_assignment``)."""

    def __init__(self, iou: float = 0.3, max_gap: int = 5, shift: float = 0.5):
        self.iou, self.max_gap, self.shift = iou, max_gap, shift
        self.tracks: dict[int, tuple[np.ndarray, int]] = {}  # id -> (last box, analysed-frame count when seen)
        self.step = 0
        self._next = 1

    def assign(self, boxes: Sequence[np.ndarray]) -> list[int]:
        """The ids of one analysed frame's boxes (x1, y1, x2, y2), in the order given."""
        import torch
        from scipy.optimize import linear_sum_assignment
        from torchvision.ops import box_iou

        self.step += 1
        live = [k for k, (_, seen) in self.tracks.items() if self.step - seen <= self.max_gap]
        ids: list[int | None] = [None] * len(boxes)
        if boxes and live:
            a = np.stack(boxes).astype(np.float64)
            b = np.stack([self.tracks[k][0] for k in live])
            ov = box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
            ca, cb = (a[:, :2] + a[:, 2:]) / 2, (b[:, :2] + b[:, 2:]) / 2
            side = ((a[:, 2:] - a[:, :2]).mean(1)[:, None] + (b[:, 2:] - b[:, :2]).mean(1)[None, :]) / 2
            dist = np.linalg.norm(ca[:, None] - cb[None, :], axis=2) / np.maximum(side, 1e-6)
            ok = (ov >= self.iou) | (dist <= self.shift)
            for r, c in zip(*linear_sum_assignment(np.where(ok, dist, 1e6))):
                if ok[r, c]:
                    ids[r] = live[c]
        for j, bx in enumerate(boxes):
            if ids[j] is None:
                ids[j], self._next = self._next, self._next + 1
            self.tracks[ids[j]] = (np.asarray(bx, np.float64), self.step)
        return [int(i) for i in ids]


def _open(path: str | Path):
    """(container, its first video stream). Raises BadImageError with one line naming the file."""
    import av

    p = Path(path)
    if not p.is_file():
        raise BadImageError(f"{path}: no such file")
    try:
        container = av.open(str(p))
    except (av.FFmpegError, OSError, ValueError) as e:
        reason = str(getattr(e, "strerror", None) or e).replace(str(p), "").strip(" :'\"") or type(e).__name__
        raise BadImageError(f"{path}: not a video ({reason})") from None
    if not container.streams.video:
        container.close()
        raise BadImageError(f"{path}: not a video (no video stream)")
    return container, container.streams.video[0]


class _Writer:
    """The annotated video (H.264, yuv420p, the source's frame rate), opened at the first frame."""

    def __init__(self, path: Path, rate: Fraction):
        self.path, self.rate = path, rate
        self.container = self.stream = None

    def write(self, image) -> None:
        import av

        if self.container is None:
            self.container = av.open(str(self.path), "w", format="mp4")  # a temporary name: say the format
            self.stream = self.container.add_stream("libx264", rate=self.rate)
            self.stream.width, self.stream.height = image.size[0] // 2 * 2, image.size[1] // 2 * 2
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"crf": "23", "preset": "veryfast"}
        if image.size != (self.stream.width, self.stream.height):
            image = image.crop((0, 0, self.stream.width, self.stream.height))
        for packet in self.stream.encode(av.VideoFrame.from_image(image)):
            self.container.mux(packet)

    def close(self) -> None:
        if self.container is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()


def predict_video(predictor: Any, path: str | Path, *, save: str | Path | None = None, every: int = 1,
                  min_prob: float | None = None, max_side: int | None = None, iou: float = 0.3,
                  max_gap: int = 5, progress: bool = True, stem: str | None = None,
                  detect_every: int = DETECT_EVERY) -> VideoResult:
    """The faces and expressions of a video, frame by frame (see the module docstring).

    Args:
        predictor: a :class:`lkr.predict.Predictor`.
        path: the video file.
        save: a folder for ``<stem>.csv``, ``<stem>.annotated.mp4`` and ``<stem>.probabilities.png``.
        every: analyse every ``every``-th frame (1: every frame).
        detect_every: search every ``detect_every``-th analysed frame whole, follow the faces
            between (:data:`DETECT_EVERY`; 1: search every analysed frame).
        min_prob: as for photos (:func:`lkr.predict.find_faces`; None: its default).
        max_side: frames with a longer side are searched for faces at this size (None:
            :data:`VIDEO_MAX_SIDE`).
        iou, max_gap: how faces are followed (module docstring, step 3).
        progress: a progress bar on stderr.
        stem: the outputs' name (default: the file's stem; the CLI makes repeated stems unique).

    Returns:
        a :class:`VideoResult` (``error`` set when the file is not a video, shows no face, or the
        outputs cannot be written; ``warning`` when fewer frames decode than the file announces).
    """
    from tqdm.auto import tqdm

    from lkr.predict import MIN_PROB, FacePrediction, annotate, find_faces, refine_faces

    if every < 1:
        raise LkrError(f"--every {every}: give a whole number >= 1")
    if detect_every < 1:
        raise LkrError(f"--detect-every {detect_every}: give a whole number >= 1")
    res = VideoResult(video=str(path))
    out = None if save is None else Path(save)
    if out is not None:  # before any work, so a bad --save loses nothing
        from lkr.predict import save_folder

        try:
            save_folder(out)
        except LkrError as e:  # a folder that turned read-only since the last clip: this clip's error
            res.error = str(e)
            return res
    try:
        container, stream = _open(path)
    except BadImageError as e:
        res.error = str(e)
        return res
    stem = stem or Path(path).stem
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    res.fps = float(rate)
    start = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
    # the annotated video goes to a temporary name, renamed once everything worked: an earlier
    # output of the same name is never replaced by half a file, nor deleted on failure
    writer = None if out is None else _Writer(out / f".{stem}.annotated.mp4.tmp", Fraction(rate))
    tracker = BoxTracker(iou=iou, max_gap=max_gap)
    followed: list[Any] = []  # the faces of the last analysed frame
    names = list(predictor.class_names)
    shown: list[FacePrediction] = []
    tags: list[str] = []
    clock = time.perf_counter
    i = 0
    bar = tqdm(total=stream.frames or None, unit="frame", desc=Path(path).name, file=sys.stderr,
               disable=not progress, leave=False)
    try:
        stream.thread_type = "AUTO"
        frames = container.decode(stream)
        while True:
            t0 = clock()
            try:
                frame = next(frames)
            except StopIteration:
                break
            image = frame.to_image()
            if frame.rotation:  # a phone's portrait video: stored sideways, shown upright
                image = image.rotate(frame.rotation, expand=True)  # PyAV: counter-clockwise degrees
            t = (float(frame.time) - start) if frame.time is not None else i / res.fps
            res.seconds["decode"] += clock() - t0
            if i % every == 0:
                t0 = clock()
                search = dict(device=predictor.device, min_prob=MIN_PROB if min_prob is None else min_prob,
                              max_side=VIDEO_MAX_SIDE if max_side is None else max_side)
                faces, found = None, "followed"
                if followed and res.analysed % detect_every:  # follow the last faces; None: one was lost
                    faces = refine_faces(image, followed, **search)
                if faces is None:
                    faces, found = find_faces(image, **search), "searched"
                    res.searched += 1
                followed = faces
                t1 = clock()
                probs = predictor.probabilities(faces)
                t2 = clock()
                ids = tracker.assign([f.box for f in faces])
                res.seconds["detect"] += t1 - t0
                res.seconds["predict"] += t2 - t1
                res.analysed += 1
                shown, tags = [], []
                for face, p, k in zip(faces, probs, ids):
                    label = names[int(p.argmax())]
                    x1, y1, x2, y2 = (round(float(v), 1) for v in face.box)
                    res.rows.append({"frame": i, "time": round(t, 4), "face": k, "x1": x1, "y1": y1, "x2": x2,
                                     "y2": y2, **{c: float(v) for c, v in zip(names, p)}, "label": label,
                                     "found": found})
                    shown.append(FacePrediction(face=face, probabilities=dict(zip(names, map(float, p))), label=label))
                    tags.append(f"#{k}")
            if writer is not None:
                t0 = clock()
                writer.write(annotate(image, shown, tags=tags) if shown else image)
                res.seconds["write"] += clock() - t0
            i += 1
            bar.update(1)
    except OSError as e:  # the annotated video cannot be written (disk full, permissions)
        res.error = f"{path}: cannot write {out} ({e.strerror or e})"
    except Exception as e:  # noqa: BLE001 - av.FFmpegError mid-stream (a damaged file), or anything else: one line
        import av

        what = "cannot decode" if isinstance(e, av.FFmpegError) else f"failed at ({type(e).__name__})"
        res.error = f"{path}: {what} frame {i} ({e})"
    finally:
        bar.close()
        container.close()
        if writer is not None:
            t0 = clock()
            try:
                writer.close()
            except OSError as e:
                res.error = res.error or f"{path}: cannot write {out} ({e.strerror or e})"
            res.seconds["write"] += clock() - t0
    res.frames = i
    if stream.frames and i < stream.frames and res.error is None:
        res.warning = f"{path}: decoded {i} of the {stream.frames} frames it announces (cut short?)"
    if res.error is None and not res.rows:
        res.error = f"{path}: no face found in {res.analysed} frame{'s' if res.analysed != 1 else ''}"
    if res.error is None and out is not None:
        t0 = clock()
        try:
            res.csv = write_timeline(res.rows, names, out / f"{stem}.csv")
            res.plot = plot_timeline(res, names, out / f"{stem}.probabilities.png")
            res.annotated = writer.path.replace(out / f"{stem}.annotated.mp4")
        except (OSError, ValueError) as e:
            res.error = f"{path}: cannot write the outputs to {out} ({getattr(e, 'strerror', None) or e})"
        res.seconds["write"] += clock() - t0
    if res.error is not None and writer is not None:
        try:
            writer.path.unlink(missing_ok=True)  # only this call's temporary file
        except OSError:  # a folder that turned read-only: the error above already says so
            pass
    return res


def write_timeline(rows: Sequence[dict[str, Any]], names: Sequence[str], path: Path) -> Path:
    """The timeline as CSV: frame, time, face, x1, y1, x2, y2, the K probabilities (6 decimals),
    label, found ("searched": MTCNN searched the frame whole; "followed": the face was followed
    from the last frame, :data:`DETECT_EVERY`)."""
    cols = ["frame", "time", "face", "x1", "y1", "x2", "y2", *names, "label", "found"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{r[k]:.6f}" if k in names else r[k]) for k in cols})
    return path


def plot_timeline(res: VideoResult, names: Sequence[str], path: Path) -> Path:
    """Each face's class probabilities against time: one panel per face id."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    counts = {k: sum(r["face"] == k for r in res.rows) for k in res.faces}
    faces = sorted(sorted(counts, key=counts.get, reverse=True)[:PLOT_FACES])  # the faces seen longest
    fig, axes = plt.subplots(len(faces), 1, figsize=(8, 2.2 * len(faces) + 0.6), sharex=True, squeeze=False)
    for ax, k in zip(axes[:, 0], faces):
        rows = [r for r in res.rows if r["face"] == k]
        t = [r["time"] for r in rows]
        for c in names:
            ax.plot(t, [r[c] for r in rows], label=c, lw=1.2, marker="." if len(rows) < 30 else None)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"face #{k}\nprobability")
    axes[-1, 0].set_xlabel("time (s)")
    more = f"; the {len(faces)} faces seen longest of {len(counts)}" if len(counts) > len(faces) else ""
    fig.suptitle(f"{Path(res.video).name}: {res.analysed} of {res.frames} frames analysed{more}", fontsize=9)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), ncol=len(names), fontsize=7, loc="upper center",
               bbox_to_anchor=(0.5, 0.95), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def format_video(res: VideoResult) -> str:
    """Human-readable lines for one video (without its error): each face's frames and its most
    frequent label."""
    if not res.rows:
        return ""
    lines = [f"{res.video}: {res.frames} frames ({res.analysed} analysed, {res.fps:.3g} fps), "
             f"{len(res.faces)} face{'s' if len(res.faces) != 1 else ''}"]
    for k in res.faces:
        rows = [r for r in res.rows if r["face"] == k]
        labels, counts = np.unique([r["label"] for r in rows], return_counts=True)
        top = labels[counts.argmax()]
        lines.append(f"  face #{k}: {len(rows)} frames, {rows[0]['time']:.2f}-{rows[-1]['time']:.2f} s, mostly {top} "
                     f"({100 * counts.max() / len(rows):.0f}% of its frames)")
    for name in ("csv", "annotated", "plot"):
        if getattr(res, name) is not None:
            lines.append(f"  {name}: {getattr(res, name)}")
    return "\n".join(lines)


PAN_FRAMES = 90
"""Frames of :func:`example_clip`'s pan one way: the astronaut's face stays 12 px or more inside
the 640×480 window throughout (``tests/test_video.py`` checks it with the face's MTCNN box)."""


def pan_step(i: int) -> int:
    """How far :func:`example_clip`'s window has panned at frame ``i``: 0, 1, ..., PAN_FRAMES, and
    back to 0, again and again."""
    k = i % (2 * PAN_FRAMES)
    return k if k <= PAN_FRAMES else 2 * PAN_FRAMES - k


def pan_window(i: int, photo_size: tuple[int, int]) -> tuple[int, int]:
    """The top-left corner of :func:`example_clip`'s window at frame ``i``, in the coordinates of
    the photo (the canvas puts the photo's corner at half the window's size): right and down, 4
    and 2 px a step of :func:`pan_step`."""
    j = pan_step(i)
    return round(0.25 * photo_size[0]) + 4 * j, round(0.1 * photo_size[1]) + 2 * j


def example_clip(dest: str | Path, *, frames: int = 48, size: tuple[int, int] = (640, 480), fps: int = 24,
                 photo: str | Path | None = None) -> Path:
    """A short test clip: scikit-image's public-domain ``astronaut`` (or ``photo``) seen through a
    ``size`` window that pans across it (4 px a frame right, 2 px down) for :data:`PAN_FRAMES`
    frames and back, again and again (:func:`pan_window`), so the astronaut's face stays in every
    frame of a clip of any length (another ``photo``'s face may leave it);
    H.264, written to ``dest/astronaut.mp4``.

    Raises:
        LkrError: when scikit-image is not installed (and no ``photo`` is given).
    """
    import av
    from PIL import Image

    from lkr.predict import example_photo, read_photo

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    im = read_photo(photo or example_photo(dest))
    w, h = size
    canvas = Image.new("RGB", (im.width + w, im.height + h), (96, 96, 96))
    canvas.paste(im, (w // 2, h // 2))  # the photo in the middle of a grey surround
    path = dest / "astronaut.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            x, y = pan_window(i, (im.width, im.height))
            for packet in s.encode(av.VideoFrame.from_image(canvas.crop((x, y, x + w, y + h)))):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path
