"""MTCNN face boxes and 5 landmarks for 48x48 faces (paper Sec. 3.1).

The paper runs MTCNN (Zhang et al. 2016) on each face image for the face box and the five
landmarks (left eye, right eye, nose, left and right mouth corner) that place the local key
regions. MTCNN is facenet-pytorch's, with the weights that ship inside its wheel.

MTCNN was trained on faces of 12 px and more inside larger photos; a 48x48 crop that the face
fills edge to edge is far from that. So each image is shown to MTCNN as a *pass*: upscaled
(bilinear), padded on every side with its own mean gray (a frame of background so the face does
not touch the border), optionally rotated about its centre, and searched for faces no smaller
than ``min_face_size`` upscaled pixels (which also cuts the image pyramid short, the main cost).
The passes of :data:`PASSES` run in order; each later pass sees only the images that no
earlier pass found a plausible face in:

====  =====  ======  ========  ===============  =====  ===================================
pass  scale  border  min face  thresholds       angle  why
====  =====  ======  ========  ===============  =====  ===================================
0     3      24      60        0.6, 0.7, 0.7    0      MTCNN's default thresholds
1     3      24      60        0.3, 0.4, 0.5    0      low-contrast and occluded faces
2-3   3      24      60        0.4, 0.5, 0.5    +-15   tilted heads
4     3      48      60        0.4, 0.5, 0.5    0      faces cut off by the crop
====  =====  ======  ========  ===============  =====  ===================================

Measured on all 35,887 FER2013 images: pass 0 finds 32,792 faces (91.4%), passes 1-4 add
1,744 + 367 + 275 + 90, in all 35,268 (98.3%; Training 98.3%, PublicTest 98.2%, PrivateTest
98.1%); 619 images get the template (mostly heads turned 90 degrees, extreme close-ups, drawings
and text). CK+48: 981 of 981 in pass 0. Cost: about 5-6 ms of one CPU core per image.

Results can differ by a few pixels with the batch size for about 0.1% of the images:
facenet-pytorch's batched non-maximum suppression separates images by offsetting box
coordinates, which assumes boxes >= 0, and a face larger than the padded canvas has negative
ones. With the default batch size the results are repeatable.

Within a pass, a face counts only if it is *plausible* (:func:`plausible`): left eye left of
the right eye, left mouth corner left of the right one, both eyes above both mouth corners and
every point within a quarter of the image of the frame. Of several plausible faces the most
confident is kept; equal confidences (to 0.01) go to the largest, most central face.

Where every pass fails, the image gets the *template* and is flagged ``detected=False``.
:func:`detect_faces` on its own uses the mean box and points of the faces detected in the same
call (:data:`DEFAULT_TEMPLATE_POINTS` / :data:`DEFAULT_TEMPLATE_BOX` when none was). For a
dataset, :func:`attach_landmarks` sets the template so that no test image shapes it
(:func:`dataset_template`): data with a ``Training`` split (FER2013) gets the mean detected face
of its Training images only; data without one (CK+, evaluated by subject folds, where any image
is in some fold's test part) gets the fixed built-in template. The template is set anew from the
``detected`` flags each time, so it never comes from the landmark cache.

Coordinates: continuous 48x48 pixel coordinates, x to the right, y down, where pixel column j
spans [j, j+1) (so its centre is j + 0.5) - the convention of MTCNN's points, which are
fractions of the crop box that fed its last stage. facenet-pytorch's boxes are one-based
(x1, y1 name the first pixel inside as 1); they are shifted by -1 to the same continuous frame.
Upscaling by s with ``align_corners=False`` and a border b map 48x48 point x to s * x + b.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lkr.atomic import atomic_write
from lkr.dataset import IMAGE_SIZE, FaceDataset

SETTINGS_VERSION = "lkr-landmarks-1"
"""Changes whenever a setting below changes, so cached landmarks of other settings are not used."""

# The built-in template: FER2013's mean detected face (measured with these settings on all
# 35,887 images). detect_faces uses it when a call detects no face at all; attach_landmarks
# for data without a Training split (CK+ folds), so that no image of that data shapes it.
DEFAULT_TEMPLATE_BOX = np.array([3.3, -2.0, 43.5, 49.9], dtype=np.float32)
DEFAULT_TEMPLATE_POINTS = np.array([[15.3, 18.2], [33.1, 17.8], [24.1, 28.5], [17.0, 37.8], [31.8, 37.5]],
                                   dtype=np.float32)


@dataclass(frozen=True)
class Pass:
    """How MTCNN is shown the 48x48 images in one pass (see the module docstring).

    Attributes:
        scale: bilinear upscale factor (3 -> 144x144).
        border: pixels of the image's mean gray added on each side after upscaling.
        min_face_size: MTCNN's smallest face, in upscaled pixels.
        thresholds: MTCNN's P-, R- and O-net score thresholds.
        angle: rotation in degrees (counter-clockwise on screen) about the image centre.
        factor: MTCNN's image pyramid step.
    """

    scale: float = 3.0
    border: int = 24
    min_face_size: int = 60
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    angle: float = 0.0
    factor: float = 0.709


PASSES: tuple[Pass, ...] = (
    Pass(),
    Pass(thresholds=(0.3, 0.4, 0.5)),
    Pass(thresholds=(0.4, 0.5, 0.5), angle=15.0),
    Pass(thresholds=(0.4, 0.5, 0.5), angle=-15.0),
    Pass(thresholds=(0.4, 0.5, 0.5), border=48),
)


@dataclass
class LandmarkResult:
    """Per-image result of :func:`detect_faces`.

    Attributes:
        boxes: (N, 4) float32 x1, y1, x2, y2 in 48x48 pixel coordinates.
        points: (N, 5, 2) float32 x, y of left eye, right eye, nose, left and right mouth corner
            ("left" as seen in the image: smaller x).
        detected: (N,) bool; False where the template was used.
        prob: (N,) float32 MTCNN's face probability in [0, 1] (0 on the template).
        pass_index: (N,) int16 index into :data:`PASSES` of the pass that found the face, -1
            on the template.
    """

    boxes: np.ndarray
    points: np.ndarray
    detected: np.ndarray
    prob: np.ndarray
    pass_index: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in ("boxes", "points", "detected", "prob", "pass_index")}


CHUNK = 512
"""Images per work unit (all passes run on a chunk before the next)."""
MIN_POOL_IMAGES = 4096
"""Fewer images run in this process: starting worker processes takes seconds (importing torch)."""

_MTCNN: dict[str, Any] = {}


def _mtcnn(device: str) -> Any:
    """One MTCNN per device, made on first use (its weights ship in facenet-pytorch's wheel)."""
    if device not in _MTCNN:
        import torch
        from facenet_pytorch import MTCNN

        net = MTCNN(device=device).eval()
        for stage in (net.pnet, net.rnet, net.onet):
            # NHWC weights: the CPU's max-pool and conv kernels run R- and O-net 1.9x faster,
            # results equal to 1e-5 px.
            stage.to(memory_format=torch.channels_last)
        _MTCNN[device] = net
    return _MTCNN[device]


def plausible(box: np.ndarray, points: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Whether detections look like an upright face in a ``size`` x ``size`` image.

    Args:
        box: (..., 4) x1, y1, x2, y2.
        points: (..., 5, 2) in the landmark order of :class:`LandmarkResult`.
        size: image side.

    Returns:
        (...) bool: eyes and mouth corners in left-right order, both eyes above both mouth
        corners, a box wider than size / 4, all points within size / 4 of the image.
    """
    x, y = points[..., 0], points[..., 1]
    margin = size / 4
    inside = ((points >= -margin) & (points <= size + margin)).all(axis=(-1, -2))
    ordered = (x[..., 0] < x[..., 1]) & (x[..., 3] < x[..., 4])
    upright = np.maximum(y[..., 0], y[..., 1]) < np.minimum(y[..., 3], y[..., 4])
    wide = (box[..., 2] - box[..., 0]) > size / 4
    return inside & ordered & upright & wide


def _canvas(images: Any, p: Pass) -> Any:
    """(B, 48, 48) uint8 tensor -> (B, S, S, 3) float tensor as MTCNN sees it in pass ``p``."""
    import torch
    import torch.nn.functional as F

    x = images.float().unsqueeze(1)  # (B, 1, 48, 48)
    if p.scale != 1:
        x = F.interpolate(x, scale_factor=p.scale, mode="bilinear", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1): each image's own gray
    x = F.pad(x - mean, (p.border,) * 4)
    if p.angle:
        a = np.deg2rad(p.angle)
        # grid_sample reads the input at R @ u for output location u (normalised coordinates,
        # square canvas): the picture turns by -angle in (x right, y down) coordinates.
        rot = torch.tensor([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0]],
                           dtype=x.dtype, device=x.device)
        grid = F.affine_grid(rot.expand(len(x), 2, 3), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    x = (x + mean).clamp(0, 255)
    return x[:, 0, :, :, None].expand(-1, -1, -1, 3).contiguous()  # (B, S, S, 3) gray as RGB


def _to_image_coords(xy: np.ndarray, p: Pass) -> np.ndarray:
    """Canvas coordinates (..., 2) of pass ``p`` -> 48x48 coordinates."""
    side = IMAGE_SIZE * p.scale + 2 * p.border
    if p.angle:
        a = np.deg2rad(p.angle)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        xy = ((xy / side * 2 - 1) @ rot.T + 1) / 2 * side  # undo the rotation of _canvas
    return (xy - p.border) / p.scale


def _pick(faces: np.ndarray, pts: np.ndarray) -> int:
    """Index of the face to keep among (K, 5) boxes+prob and (K, 5, 2) points, or -1."""
    ok = plausible(faces[:, :4], pts)
    if not ok.any():
        return -1
    c = (faces[:, :2] + faces[:, 2:4]) / 2 - IMAGE_SIZE / 2
    area = (faces[:, 2] - faces[:, 0]) * (faces[:, 3] - faces[:, 1])
    central_size = area - 2.0 * (c ** 2).sum(1)  # facenet-pytorch's "center_weighted_size"
    order = np.lexsort((central_size, np.round(faces[:, 4], 2)))  # last key is the primary key
    order = [i for i in order[::-1] if ok[i]]
    return int(order[0])


def _run_pass(images: np.ndarray, p: Pass, *, device: str,
              batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One pass over (B, 48, 48) images: boxes (B,4), points (B,5,2), prob (B,), found (B,)."""
    import torch
    from facenet_pytorch.models.utils.detect_face import detect_face

    net = _mtcnn(device)
    n = len(images)
    boxes = np.zeros((n, 4), np.float32)
    points = np.zeros((n, 5, 2), np.float32)
    prob = np.zeros(n, np.float32)
    found = np.zeros(n, bool)
    for s in range(0, n, batch_size):
        batch = torch.as_tensor(images[s:s + batch_size], device=device)
        with torch.no_grad():
            # MTCNN.detect's own worker, given this pass's settings (the shared MTCNN is not changed).
            all_boxes, all_points = detect_face(_canvas(batch, p), p.min_face_size, net.pnet, net.rnet,
                                                net.onet, list(p.thresholds), p.factor, device)
        for k, (b, q) in enumerate(zip(all_boxes, all_points)):
            if len(b) == 0:
                continue
            b = np.asarray(b, np.float64).reshape(-1, 5)
            q = np.asarray(q, np.float64).reshape(-1, 5, 2)
            corners = b[:, :4].reshape(-1, 2, 2) - [[1.0, 1.0], [0.0, 0.0]]  # one-based -> continuous
            centre = _to_image_coords(corners.mean(1), p)  # a rotated box: its centre turns back,
            half = (corners[:, 1] - corners[:, 0]) / (2 * p.scale)  # its size stays
            faces = np.concatenate([centre - half, centre + half, b[:, 4:5]], 1)
            pts = _to_image_coords(q, p)
            j = _pick(faces, pts)
            if j >= 0:
                boxes[s + k], points[s + k], prob[s + k], found[s + k] = faces[j, :4], pts[j], faces[j, 4], True
    return boxes, points, prob, found


def _empty(n: int) -> LandmarkResult:
    return LandmarkResult(boxes=np.zeros((n, 4), np.float32), points=np.zeros((n, 5, 2), np.float32),
                          detected=np.zeros(n, bool), prob=np.zeros(n, np.float32),
                          pass_index=np.full(n, -1, np.int16))


def _detect_chunk(images: np.ndarray, passes: tuple[Pass, ...], device: str, batch_size: int) -> LandmarkResult:
    """All passes over one chunk of images, no template (misses keep zeros)."""
    res = _empty(len(images))
    for i, p in enumerate(passes):
        todo = np.flatnonzero(~res.detected)
        if len(todo) == 0:
            break
        b, q, pr, f = _run_pass(images[todo], p, device=device, batch_size=batch_size)
        hit = todo[f]
        res.boxes[hit], res.points[hit], res.prob[hit] = b[f], q[f], pr[f]
        res.detected[hit] = True
        res.pass_index[hit] = i
    return res


def _one_thread_worker() -> None:
    """Initialise a worker process: one torch thread (the processes are the parallelism)."""
    import torch

    torch.set_num_threads(1)


def default_workers() -> int:
    """CPU worker processes: the CPUs this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def detect_faces(images: np.ndarray, *, device: str = "cpu", batch_size: int | None = None,
                 passes: tuple[Pass, ...] = PASSES, progress: bool = True,
                 workers: int | None = None) -> LandmarkResult:
    """MTCNN box and 5 landmarks of each 48x48 face, with the template where none is found.

    On the CPU the images go in chunks of :data:`CHUNK` to ``workers`` processes of one torch
    thread each: MTCNN runs many small ops, and with threads one busy core stalls the others
    (on 2 shared cores 2 threads ran 7x slower than 1; 2 processes ran 1.6x faster than 1).

    Args:
        images: (N, 48, 48) uint8 grayscale faces.
        device: torch device for MTCNN ("cpu", "cuda").
        batch_size: images per MTCNN call (each has about 5 candidate faces); default 32 on
            the CPU (larger batches cost more in page faults than they save), 256 elsewhere.
        passes: the passes to try in order (default :data:`PASSES`).
        progress: show a tqdm bar.
        workers: CPU processes (default :func:`default_workers`); fewer than
            :data:`MIN_POOL_IMAGES` images, or a non-CPU device, run in this process.

    Returns:
        A :class:`LandmarkResult` in 48x48 pixel coordinates (see the module docstring).
    """
    import torch
    from tqdm.auto import tqdm

    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"images must be (N, {IMAGE_SIZE}, {IMAGE_SIZE}), got {images.shape}")
    images = np.ascontiguousarray(images, dtype=np.uint8)
    n, device = len(images), str(device)
    if batch_size is None:
        batch_size = 32 if torch.device(device).type == "cpu" else 256
    res = _empty(n)
    starts = range(0, n, CHUNK)
    workers = default_workers() if workers is None else workers
    if torch.device(device).type != "cpu" or n < MIN_POOL_IMAGES:
        workers = 1
    workers = min(workers, len(starts))

    def take(s: int, r: LandmarkResult) -> None:
        for k, v in r.arrays().items():
            getattr(res, k)[s:s + len(v)] = v

    with tqdm(total=n, desc="MTCNN landmarks", unit="img", disable=not progress) as bar:
        if workers > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # spawn, not fork: a forked child of a process that has run torch's OpenMP pool can hang.
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                     initializer=_one_thread_worker) as ex:
                futures = {ex.submit(_detect_chunk, images[s:s + CHUNK], passes, device, batch_size): s
                           for s in starts}
                for fut in as_completed(futures):
                    take(futures[fut], fut.result())
                    bar.update(min(CHUNK, n - futures[fut]))
        else:
            old = torch.get_num_threads()
            if device == "cpu":
                torch.set_num_threads(1)
            try:
                for s in starts:
                    take(s, _detect_chunk(images[s:s + CHUNK], passes, device, batch_size))
                    bar.update(min(CHUNK, n - s))
            finally:
                torch.set_num_threads(old)
    tb, tp = template(res.boxes[res.detected], res.points[res.detected])
    res.boxes[~res.detected], res.points[~res.detected] = tb, tp
    return res


def template(boxes: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The template face: the mean of detected boxes (K,4) and points (K,5,2).

    Returns :data:`DEFAULT_TEMPLATE_BOX` and :data:`DEFAULT_TEMPLATE_POINTS` when K = 0.
    """
    if len(boxes) == 0:
        return DEFAULT_TEMPLATE_BOX.copy(), DEFAULT_TEMPLATE_POINTS.copy()
    return boxes.mean(0).astype(np.float32), points.mean(0).astype(np.float32)


def detect_landmarks(images: np.ndarray, *, device: str = "cpu", batch_size: int | None = None,
                     progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MTCNN face boxes and 5 landmarks of 48x48 faces (Sec. 3.1).

    Args:
        images: (N, 48, 48) uint8 grayscale faces.
        device: torch device for MTCNN.
        batch_size: images per MTCNN call (default: 32 on the CPU, 256 elsewhere).
        progress: show a tqdm bar.

    Returns:
        boxes (N, 4) float32 x1, y1, x2, y2; points (N, 5, 2) float32 x, y (left eye, right
        eye, nose, left and right mouth corner), both in continuous 48x48 pixel coordinates;
        detected (N,) bool, False where the template (mean detected face) was used.
    """
    r = detect_faces(images, device=device, batch_size=batch_size, progress=progress)
    return r.boxes, r.points, r.detected


# --- dataset level ---------------------------------------------------------------------------
def cache_dir() -> Path:
    """Where landmark caches live: ``$LKR_CACHE_DIR`` or ``~/.cache/lkr``."""
    return Path(os.environ.get("LKR_CACHE_DIR", Path.home() / ".cache" / "lkr")).expanduser()


def cache_path(images: np.ndarray) -> Path:
    """The cache file of these images' landmarks under the current settings."""
    h = hashlib.sha1()
    h.update(f"{SETTINGS_VERSION}|{PASSES!r}|{images.shape}|{images.dtype}|".encode())
    h.update(np.ascontiguousarray(images).tobytes())
    return cache_dir() / f"landmarks-{h.hexdigest()}.npz"


def _read_cache(path: Path, n: int) -> LandmarkResult | None:
    """The cached result, or None when the file is missing, corrupt or of other images."""
    try:
        with np.load(path, allow_pickle=False) as z:
            r = LandmarkResult(**{k: z[k] for k in ("boxes", "points", "detected", "prob", "pass_index")})
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    shapes_ok = (r.boxes.shape == (n, 4) and r.points.shape == (n, 5, 2) and r.detected.shape == (n,)
                 and r.prob.shape == (n,) and r.pass_index.shape == (n,))
    return r if shapes_ok and np.isfinite(r.boxes).all() and np.isfinite(r.points).all() else None


def _write_cache(path: Path, r: LandmarkResult) -> None:
    """Write the cache file atomically (:func:`lkr.atomic.atomic_write`)."""
    atomic_write(path, lambda f: np.savez(f, **r.arrays()))


def image_keys(images: np.ndarray) -> np.ndarray:
    """(N,) 20-byte keys of the images' pixels (sha1), under which :func:`landmarks_for` files
    each image's landmarks in the per-image store (:func:`store_path`)."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    return np.array([hashlib.sha1(im.tobytes()).digest() for im in images], dtype="S20")


def store_path() -> Path:
    """The per-image landmark store of the current settings: every image detected so far, by its
    pixels (:func:`image_keys`), with the size of the detection call that found it, so that a
    part of a dataset (the split ``lkr evaluate`` scores) finds what a whole-dataset detection
    found, and fills the store for the next call."""
    h = hashlib.sha1(f"{SETTINGS_VERSION}|{PASSES!r}".encode()).hexdigest()[:16]
    return cache_dir() / f"landmarks-store-{h}.npz"


def _read_store(path: Path) -> tuple[np.ndarray, np.ndarray, LandmarkResult] | None:
    """(keys, call sizes, landmarks) of the store, or None when missing, corrupt or foreign."""
    try:
        with np.load(path, allow_pickle=False) as z:
            keys, call = z["key"], z["call"]
            r = LandmarkResult(**{k: z[k] for k in ("boxes", "points", "detected", "prob", "pass_index")})
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    n = len(keys)
    ok = (keys.dtype == np.dtype("S20") and call.shape == (n,) and r.boxes.shape == (n, 4)
          and r.points.shape == (n, 5, 2) and r.detected.shape == (n,) and r.prob.shape == (n,)
          and r.pass_index.shape == (n,) and len(set(keys.tolist())) == n)
    return (keys, call, r) if ok and np.isfinite(r.boxes).all() and np.isfinite(r.points).all() else None


def _store_rows(keys: np.ndarray, stored: tuple[np.ndarray, np.ndarray, LandmarkResult] | None) -> np.ndarray:
    """Each key's row in the store, -1 where it has none."""
    if stored is None or not len(stored[0]):
        return np.full(len(keys), -1)
    have = {k: i for i, k in enumerate(stored[0].tolist())}
    return np.array([have.get(k, -1) for k in keys.tolist()], dtype=np.int64)


def _add_to_store(path: Path, keys: np.ndarray, r: LandmarkResult, call: int) -> None:
    """File ``r``'s rows under ``keys``, found by a detection call of ``call`` images. A row
    found by a larger call replaces one found by a smaller (the whole dataset's detection, which
    its runs trained with, outranks a split's); of identical images in one call the first is
    filed. Written atomically (a concurrent writer may win: that costs a later call time, not
    correctness)."""
    stored = _read_store(path)
    _, first = np.unique(keys, return_index=True)  # identical images in one call: once
    first = np.sort(first)
    keys = keys[first]
    rows = _store_rows(keys, stored)
    old_call = np.full(len(keys), -1, np.int64)
    if stored is not None:
        old_call[rows >= 0] = stored[1][rows[rows >= 0]]
    take = old_call < call
    if not take.any():
        return
    if stored is None:
        all_keys, calls, arrays = np.empty(0, "S20"), np.empty(0, np.int64), None
    else:
        all_keys, calls, arrays = stored[0], stored[1].astype(np.int64), stored[2].arrays()
    replace_at, new = rows[take & (rows >= 0)], take & (rows < 0)
    out = {}
    for k, v in r.arrays().items():
        base = np.zeros((0, *v.shape[1:]), v.dtype) if arrays is None else arrays[k].copy()
        base[replace_at] = v[first[take & (rows >= 0)]]
        out[k] = np.concatenate([base, v[first[new]]])
    all_keys = np.concatenate([all_keys, keys[new]])
    calls = calls.copy()
    calls[replace_at] = call
    calls = np.concatenate([calls, np.full(int(new.sum()), call, np.int64)])
    atomic_write(path, lambda f: np.savez(f, key=all_keys, call=calls, **out))


def landmarks_for(images: np.ndarray, *, device: str = "cpu", progress: bool = True,
                  use_cache: bool = True, part: bool = False) -> LandmarkResult:
    """:func:`detect_faces` on ``images``, read from / written to the landmark caches.

    Two caches. MTCNN's boxes depend a little on which images share its batches (FER2013's 3,589
    PrivateTest faces detected alone: 4 boxes moved, by up to 0.6 px), so a whole dataset is
    detected in one call and read back from its own file (:func:`cache_path`), exactly. Every
    detection also files its rows in the per-image store (:func:`store_path`), where a larger
    call's rows outrank a smaller one's. ``part``: ``images`` are a part of a dataset (the split
    ``lkr evaluate`` scores): they are read from the store (the whole dataset's rows where it was
    detected), and only the images it lacks are detected, with no file of their own.
    Undetected rows hold this call's template (:func:`detect_faces`); :func:`attach_landmarks`
    sets the dataset's."""
    store = store_path()
    if part and use_cache:
        keys = image_keys(images)
        stored = _read_store(store)
        rows = _store_rows(keys, stored)
        missing = np.flatnonzero(rows < 0)
        out = _empty(len(images))
        if stored is not None:
            for k, v in out.arrays().items():
                v[rows >= 0] = getattr(stored[2], k)[rows[rows >= 0]]
        if len(missing):
            found = detect_faces(images[missing], device=device, progress=progress)
            for k, v in out.arrays().items():
                v[missing] = getattr(found, k)
            _try(lambda: _add_to_store(store, keys[missing], found, len(missing)))
        tb, tp = template(out.boxes[out.detected], out.points[out.detected])
        out.boxes[~out.detected], out.points[~out.detected] = tb, tp
        return out
    path = cache_path(images)
    if use_cache:
        r = _read_cache(path, len(images))
        if r is not None:
            _try(lambda: _add_to_store(store, image_keys(images), r, len(images)))  # no-op once filed
            return r
    r = detect_faces(images, device=device, progress=progress)
    _try(lambda: _write_cache(path, r))
    _try(lambda: _add_to_store(store, image_keys(images), r, len(images)))
    return r


def _try(write: Any) -> None:
    try:
        write()
    except OSError:  # a read-only cache folder costs time, not correctness
        pass


def attach_landmarks(ds: FaceDataset, *, device: str = "cpu", progress: bool = True,
                     force: bool = False, template: dict[str, Any] | None = None,
                     part: bool = False) -> FaceDataset:
    """The dataset with MTCNN boxes, points and detected flags set (cached, see :func:`cache_path`).

    A dataset that already has landmarks (the demo set ships its true ones) is returned as it
    is unless ``force``; ``force`` also recomputes instead of reading the cache. Faces without a
    detection get :func:`dataset_template` (Training faces only, or the built-in template for
    data without a Training split), and a note in ``notes`` says which.

    Args:
        ds: the dataset (images (N, 48, 48) uint8).
        device: torch device for MTCNN.
        progress: show tqdm bars.
        force: detect again even if ``ds`` or the cache has landmarks.
        template: the template a run recorded (:func:`template_record`: {"box", "points",
            "from"}), used instead of :func:`dataset_template`, e.g. for one split of FER2013
            whose Training faces are not read (``lkr evaluate``).
        part: ``ds`` is a part of a dataset: its landmarks come from the per-image store
            (:func:`landmarks_for`).

    Returns:
        A copy of ``ds`` with boxes (N,4), points (N,5,2) float32 and detected (N,) bool.
    """
    if ds.has_landmarks and ds.detected is not None and not force:
        return ds
    r = landmarks_for(ds.images, device=device, progress=progress, use_cache=not force, part=part)
    boxes, points, detected = r.boxes.copy(), r.points.copy(), r.detected.astype(bool)
    # The template rows are always rebuilt here from the detected flags: a cache written when
    # the template was the mean of every split (test included) is thus never used for them.
    if template is None:
        tb, tp, source = dataset_template(ds, boxes, points, detected)
    else:
        tb, tp, source = (np.asarray(template["box"], np.float32), np.asarray(template["points"], np.float32),
                          str(template["from"]))
    boxes[~detected], points[~detected] = tb, tp
    notes = list(ds.notes)
    if not detected.all():
        notes.append(f"{int((~detected).sum())} faces without detected landmarks get the template: {source}")
    return replace(ds, boxes=boxes, points=points, detected=detected, notes=notes)


def dataset_template(ds: FaceDataset, boxes: np.ndarray, points: np.ndarray, detected: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, str]:
    """The template face for ``ds``'s images without a detected face, made so that no test
    image shapes it.

    * Data with a ``Training`` split (FER2013): the mean box and points of the detected faces
      of the Training images only (the built-in template if none was detected there).
    * Data without one (CK+ and other data evaluated by subject folds): every image is in the
      test part of some fold, and folds are made after the landmarks, so the fixed built-in
      :data:`DEFAULT_TEMPLATE_BOX` / :data:`DEFAULT_TEMPLATE_POINTS` (measured on FER2013, no
      image of this data set) is used.

    Args:
        ds: the dataset (uses ``splits``).
        boxes, points, detected: (N, 4), (N, 5, 2) and (N,) bool detections of ``ds.images``.

    Returns:
        (box (4,), points (5, 2), a phrase saying where the template comes from).
    """
    detected = np.asarray(detected, bool)
    if "Training" in ds.split_names:
        train = (np.asarray(ds.splits) == "Training") & detected
        if train.any():
            tb, tp = template(boxes[train], points[train])
            return tb, tp, f"the mean of the {int(train.sum())} detected Training faces (no test image)"
        return (DEFAULT_TEMPLATE_BOX.copy(), DEFAULT_TEMPLATE_POINTS.copy(),
                "the built-in template (no Training face was detected)")
    return (DEFAULT_TEMPLATE_BOX.copy(), DEFAULT_TEMPLATE_POINTS.copy(),
            "the built-in template (no Training split: folds are made later, so no image of this "
            "data set shapes it)")


def template_record(ds: FaceDataset) -> dict[str, Any]:
    """The template of ``ds``'s undetected faces (:func:`dataset_template`) as a run records it
    (JSON: float32 values written exactly), so that an evaluation of one split sets the same
    template without reading the Training faces."""
    tb, tp, source = dataset_template(ds, ds.boxes, ds.points, ds.detected)
    return {"box": [float(v) for v in tb], "points": [[float(v) for v in p] for p in tp], "from": source}


def landmark_coverage(ds: FaceDataset) -> dict[str, Any]:
    """Detected landmarks per split: {"detected", "template", "images", "coverage", "splits",
    "template_from"}.

    ``coverage`` is the detected fraction in [0, 1]; ``splits`` maps each split name to its
    own {"detected", "images", "coverage"}; ``template_from`` says where the template of the
    undetected faces comes from (:func:`dataset_template`).

    Raises:
        ValueError: if the dataset has no landmarks yet.
    """
    if ds.detected is None:
        raise ValueError(f"{ds.source or ds.name}: no landmarks attached (run attach_landmarks)")
    det = ds.detected.astype(bool)

    def one(mask: np.ndarray) -> dict[str, Any]:
        k = int(mask.sum())
        return {"detected": int(det[mask].sum()), "images": k,
                "coverage": float(det[mask].mean()) if k else 0.0}

    out = one(np.ones(len(ds), bool))
    out["template"] = out["images"] - out["detected"]
    out["splits"] = {s: one(ds.splits == s) for s in ds.split_names}
    out["template_from"] = dataset_template(ds, ds.boxes, ds.points, det)[2]
    return out
