"""A positive control: a synthetic set where the local key regions *must* matter, and the arms
that tell "the regions" from "a second head".

A reproduction that finds no effect must show that its implementation can find one. In this set
(:func:`make_control`, seeded, generated here, nothing downloaded):

- the **label lives only inside the key regions**: each class is a code of five signs, one per
  landmark (eyes, nose, mouth corners), drawn as a faint blob on that landmark (Gaussian, sigma
  1.5 px, amplitude ``signal``) under pixel noise; the faces' shape, shading and features are the
  same for every class, and as many blobs of random sign lie elsewhere on the face, so a network
  has to look at the landmarks;
- outside the regions, a **spurious cue**: a small bright square on the image's border whose
  place follows the label on ``cue_follow`` of the training and selection images, and is random
  on the test images, so a network that does not look at the regions learns the shortcut;
- **few training images per class** (``n_train``), as in CK+; faces differ in place and size, so
  that moved or shuffled landmarks leave the face's key points.

The arms (:data:`ARMS`), all at equal steps and images per step: VGG19, Baseline 1 (local
branch, λ 0), LKRNet (λ 0.2), and negative controls of the local branch: a uniform mask (no region
information: a second head) and the regions moved off the face; then the local branch with the
mask applied at stage 3 or 1 instead of the paper's stage 5, to see whether the stage the mask
reaches decides what the branch can do. The control trains without horizontal flips (a flip would
move the cue to another class's place and turn each code into its mirror). ``scripts/control.py`` trains them over seeds and writes ``results/control/``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from lkr.classes import FER2013_CLASSES
from lkr.dataset import FaceDataset

SIZE = 48
CODES = np.array([[+1, +1, +1, +1, +1], [-1, -1, +1, +1, -1], [+1, -1, -1, -1, +1], [-1, +1, -1, +1, +1],
                  [+1, +1, -1, -1, -1], [-1, -1, -1, +1, +1], [+1, -1, +1, -1, -1]], dtype=np.float32)
"""Each class's sign at the five landmarks (left eye, right eye, nose, left and right mouth corner);
any two classes differ at two landmarks or more."""
CUE_SPOTS = np.array([[2, 2], [12, 2], [22, 2], [32, 2], [42, 2], [2, 42], [42, 42]])
"""Top-left corner (x, y) of the 4x4 cue square of each class, on the image's border."""

ARMS: dict[str, dict[str, Any]] = {
    "vgg19": {"variant": "vgg19"},
    "baseline1": {"variant": "baseline1"},
    "lkrnet": {"variant": "lkrnet"},
    # negative controls of the local branch: no region information (a second head), or the regions
    # moved off the face (onto the border band where the cue lies)
    "uniform-mask": {"variant": "baseline1", "mask_source": "uniform"},
    "moved-regions": {"variant": "baseline1", "landmarks": "moved"},
    # the stage the mask reaches: at the paper's stage 5 (the last 2x2 maps) every feature cell sees
    # the whole crop, the cue included; at stage 3 (11x11 maps) or 1 (the first block's 44x44 maps)
    # the local branch's later convs see less and less outside the regions
    "baseline1-stage3": {"variant": "baseline1", "mask_stage": 3},
    "uniform-mask-stage3": {"variant": "baseline1", "mask_source": "uniform", "mask_stage": 3},
    "baseline1-stage1": {"variant": "baseline1", "mask_stage": 1},
    "lkrnet-stage1": {"variant": "lkrnet", "mask_stage": 1},
    "uniform-mask-stage1": {"variant": "baseline1", "mask_source": "uniform", "mask_stage": 1},
    "moved-regions-stage1": {"variant": "baseline1", "landmarks": "moved", "mask_stage": 1},
}
"""The control's arms: configuration overrides, and which landmarks the masks are made from."""


def make_control(seed: int = 0, *, n_train: int = 40, n_select: int = 20, n_test: int = 100,
                 signal: float = 28.0, noise: float = 14.0, cue_follow: float = 0.9, cue: str = "border",
                 margin: int = 2) -> FaceDataset:
    """The synthetic control set (see the module docstring), FER2013-shaped: splits Training,
    PublicTest (selection, distributed as Training: the cue follows the label there too) and
    PrivateTest (the cue at random), ``n_*`` images per class of each.

    Args:
        cue: "border" (the first design's bright square on the border, :data:`CUE_SPOTS`) or
            "inner" (the second design's class pattern inside the face box and outside every key
            region, :func:`inner_spot` with ``margin``; a face with no free spot is drawn again).

    Returns:
        a :class:`FaceDataset` named "control" (``cue="inner"``: "control-inner") with the true
        boxes and landmarks; :func:`control_cues` gives each image's cue class.
    """
    return _make_control(seed, n_train, n_select, n_test, signal, noise, cue_follow, cue, margin)[0]


def control_cues(seed: int = 0, cue: str = "border", **kw: Any) -> np.ndarray:
    """(N,) the class each image of ``make_control(seed, cue=cue, **kw)`` carries the cue of (as
    stamped)."""
    args = {"n_train": 40, "n_select": 20, "n_test": 100, "signal": 28.0, "noise": 14.0, "cue_follow": 0.9,
            "margin": 2} | kw
    return _make_control(seed, args["n_train"], args["n_select"], args["n_test"], args["signal"], args["noise"],
                         args["cue_follow"], cue, args["margin"])[1]


def _make_control(seed: int, n_train: int, n_select: int, n_test: int, signal: float, noise: float,
                  cue_follow: float, cue: str, margin: int) -> tuple[FaceDataset, np.ndarray]:
    if cue not in ("border", "inner"):
        raise ValueError(f"cue must be border or inner, got {cue!r}")
    rng = np.random.default_rng(seed)
    k = len(FER2013_CLASSES)
    sizes = {"Training": n_train, "PublicTest": n_select, "PrivateTest": n_test}
    labels = np.concatenate([np.tile(np.arange(k), n) for n in sizes.values()])
    splits = np.repeat(list(sizes), [k * n for n in sizes.values()])
    n = len(labels)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
    images = np.empty((n, SIZE, SIZE), np.uint8)
    boxes = np.empty((n, 4), np.float32)
    points = np.empty((n, 5, 2), np.float32)
    cue_class = np.where((splits != "PrivateTest") & (rng.random(n) < cue_follow), labels, rng.integers(0, k, n))

    def blob(x: float, y: float, amp: float, sigma: float = 1.5) -> np.ndarray:
        return amp * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))

    rel = np.array([[0.32, 0.38], [0.68, 0.38], [0.5, 0.6], [0.34, 0.78], [0.66, 0.78]], np.float32)
    for i in range(n):
        while True:
            w, h = rng.uniform(22, 28), rng.uniform(26, 32)  # the face stays off the cue's border rows
            x0, y0 = rng.uniform(7, SIZE - 7 - w), rng.uniform(7, SIZE - 7 - h)
            pts = np.stack([x0 + rel[:, 0] * w, y0 + rel[:, 1] * h], 1) + rng.normal(0, 0.7, (5, 2)).astype(np.float32)
            spot = None if cue == "border" else inner_spot(np.array([x0, y0, x0 + w, y0 + h], np.float32), pts,
                                                              margin=margin)
            if cue == "border" or spot is not None:
                break
        cx, cy = x0 + w / 2, y0 + h / 2
        img = 95 + 10 * rng.standard_normal() + np.zeros((SIZE, SIZE), np.float32)
        face = ((xx - cx) / (w / 2)) ** 2 + ((yy - cy) / (h / 2)) ** 2 <= 1
        img[face] += 45 - 12 * ((yy[face] - y0) / h)  # the same shading for every class
        for j, (px, py) in enumerate(pts):  # the same features for every class, then the class's code
            img += blob(px, py, -35.0 if j < 2 else -15.0, 2.2)
            img += blob(px, py, signal * CODES[labels[i], j])
        for _ in range(5):  # as many blobs of random sign elsewhere on the face: position carries the class
            while True:
                dx, dy = rng.uniform(x0 + 2, x0 + w - 2), rng.uniform(y0 + 2, y0 + h - 2)
                if np.min(np.hypot(pts[:, 0] - dx, pts[:, 1] - dy)) > 0.3 * min(w, h) / 2 + 3:
                    break
            img += blob(dx, dy, signal * rng.choice([-1.0, 1.0]))
        if cue == "border":
            sx, sy = CUE_SPOTS[cue_class[i]]
            img[sy:sy + 4, sx:sx + 4] = 235.0
        else:
            stamp_pattern(img, spot, cue_class[i], bright=235.0, dark=20.0)
        img += noise * rng.standard_normal((SIZE, SIZE)).astype(np.float32)
        images[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        boxes[i] = [x0, y0, x0 + w, y0 + h]
        points[i] = pts
    name = "control" if cue == "border" else "control-inner"
    return FaceDataset(
        name=name, kind="control", images=images, labels=labels.astype(np.int64), class_names=FER2013_CLASSES,
        splits=splits, subjects=np.full(n, ""), sequences=np.full(n, ""),
        paths=np.array([f"{name}:{i:05d}" for i in range(n)]),
        source=f"control(seed={seed})" if cue == "border" else f"control(seed={seed}, cue=inner)",
        notes=["synthetic positive control (lkr.control)"], boxes=boxes, points=points,
        detected=np.ones(n, dtype=bool)), cue_class


def cue_classes(ds: FaceDataset) -> np.ndarray:
    """The class whose spot holds each image's cue square (read back from the pixels)."""
    spots = np.stack([ds.images[:, y:y + 4, x:x + 4].reshape(len(ds.images), -1).mean(1) for x, y in CUE_SPOTS], 1)
    return spots.argmax(1)


def region_patches(ds: FaceDataset, half: int = 1) -> np.ndarray:
    """(N, 5 * (2 * half + 1) ** 2) the pixels of a small square on each landmark: what the key
    regions show (the tests check that the labels can be read from these alone)."""
    out = []
    for img, pts in zip(ds.images.astype(np.float32), ds.points):
        cells = []
        for px, py in pts:
            c, r = int(np.clip(px, half, SIZE - 1 - half)), int(np.clip(py, half, SIZE - 1 - half))
            cells.append(img[r - half:r + half + 1, c - half:c + half + 1].ravel())
        out.append(np.concatenate(cells))
    return np.stack(out)


def with_landmarks(ds: FaceDataset, how: str, seed: int = 0) -> FaceDataset:
    """The dataset with its landmarks as an arm asks: "true" (as generated), "moved" (the five
    regions moved off the face, onto the border band: no weight on any key point) or "shuffled"
    (permuted between images; the faces differ in place and size, but a shuffled mask still puts
    much of its weight near an image's own key points, so it is a weak control)."""
    if how == "true":
        return ds
    if how == "moved":  # the same five regions, each moved off the face onto the border band
        pts = np.array([[4.5, 9.0], [43.5, 9.0], [4.5, 24.0], [43.5, 38.0], [4.5, 38.0]], np.float32)
        return dataclasses.replace(ds, points=np.broadcast_to(pts, ds.points.shape).copy())
    if how != "shuffled":
        raise ValueError(f"landmarks must be true, moved or shuffled, got {how!r}")
    perm = np.random.default_rng(seed + 7919).permutation(len(ds.images))
    return dataclasses.replace(ds, boxes=ds.boxes[perm], points=ds.points[perm])


# --- the same arms on real faces: CK+48 with a spurious cue ---------------------------------------
CK_CUE_SPOTS = np.array([[1, 1], [22, 1], [43, 1], [1, 22], [43, 22], [1, 43], [43, 43]])
"""Top-left corner (x, y) of the 4x4 cue square of each CK+ class, on the crop's border (outside
the key regions of CK+48's faces)."""


def with_cue(ds: FaceDataset, follows: np.ndarray, seed: int = 0, cue_follow: float = 0.9) -> FaceDataset:
    """Real faces with the control's spurious cue: a 4x4 bright square on the border whose place
    follows the label on ``cue_follow`` of the images where ``follows`` is True (a fold's training
    and selection subjects) and is random elsewhere (its test subjects).

    Returns:
        a copy of ``ds`` (named "<name>-cue") with the squares stamped in.
    """
    cue = ck_cue_plan(ds.labels, follows, len(ds.class_names), seed, cue_follow)
    images = ds.images.copy()
    for i, (x, y) in enumerate(CK_CUE_SPOTS[cue]):
        images[i, y:y + 4, x:x + 4] = 255
    out = dataclasses.replace(ds, images=images, name=f"{ds.name}-cue", source=f"{ds.source} + cue(seed={seed})",
                              notes=[*ds.notes, "spurious border cue stamped in (lkr.control.with_cue)"])
    return out


def ck_cue_plan(labels: np.ndarray, follows: np.ndarray, k: int, seed: int = 0, cue_follow: float = 0.9
                ) -> np.ndarray:
    """The class whose spot gets each image's cue square in :func:`with_cue` (seeded): the label
    on ``cue_follow`` of the images where ``follows``, a random class elsewhere. What the control
    counts predictions against: reading the square back from the pixels (the brightest spot) is
    wrong on about 9 % of CK+48's images, whose border is already white at another class's spot."""
    rng = np.random.default_rng(seed + 4242)
    n = len(labels)
    return np.where(follows & (rng.random(n) < cue_follow), labels, rng.integers(0, k, n))


# --- the second design (docs/control-design.md): a cue inside the face, outside every key region --
CUE_PATTERNS = np.array([[0, 0, 1, 1], [0, 1, 0, 1], [0, 1, 1, 0], [1, 0, 0, 1], [1, 0, 1, 0], [1, 1, 0, 0],
                         [1, 1, 1, 1]], dtype=bool)
"""Each class's inner cue: a 4x4 patch of four 2x2 blocks (top-left, top-right, bottom-left,
bottom-right), bright where 1 and dark where 0; any two patterns differ in two blocks or more."""
CUE_SIDE = 4
INNER_LIMIT = 2
"""The inner patch lies inside rows and columns INNER_LIMIT .. 48 - INNER_LIMIT - 1."""


def inner_spot(box: np.ndarray, points: np.ndarray, *, margin: int, alpha: float = 0.3,
               size: int = SIZE) -> tuple[int, int] | None:
    """Top-left (x, y) of the inner cue's 4x4 patch on one face, or None when there is no room.

    The patch lies inside the face box and inside rows and columns ``INNER_LIMIT`` ..
    ``size - INNER_LIMIT - 1``, and every one of its pixels is more than ``margin`` pixels
    (Chebyshev) from every pixel of non-zero key-region weight (:func:`lkr.regions.region_masks`
    with ``alpha``): with ``margin`` = a stage-1 cell's receptive radius + 1, no stage-1 cell of a
    key region sees it. Of the free spots, the one nearest the forehead's middle (box-relative
    (0.5, 0.1)).
    """
    from scipy.ndimage import maximum_filter

    from lkr.regions import region_masks

    box = np.asarray(box, np.float32)
    key = region_masks(box[None], np.asarray(points, np.float32)[None], alpha=alpha, size=size)[0] > 0
    near = maximum_filter(key, size=2 * margin + 1, mode="constant", cval=False)  # within margin of a region
    # blocked[y, x]: some pixel of the patch at (x, y) is near a region
    c = np.pad(near.astype(np.int32), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    k = CUE_SIDE
    blocked = (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) > 0  # (size - k + 1, size - k + 1)
    ys, xs = np.mgrid[0:size - k + 1, 0:size - k + 1]
    ok = (~blocked & (xs >= INNER_LIMIT) & (ys >= INNER_LIMIT) & (xs + k <= size - INNER_LIMIT)
          & (ys + k <= size - INNER_LIMIT) & (xs >= box[0]) & (ys >= box[1]) & (xs + k <= box[2]) & (ys + k <= box[3]))
    if not ok.any():
        return None
    ax = (box[0] + box[2]) / 2 - k / 2
    ay = box[1] + 0.1 * (box[3] - box[1])
    d = np.where(ok, (xs - ax) ** 2 + (ys - ay) ** 2, np.inf)
    y, x = np.unravel_index(np.argmin(d), d.shape)
    return int(x), int(y)


def stamp_pattern(img: np.ndarray, spot: tuple[int, int], cls: int, *, bright: float = 255.0,
                  dark: float = 0.0) -> None:
    """Write class ``cls``'s :data:`CUE_PATTERNS` patch into ``img`` (H, W) at ``spot``, in place."""
    x, y = spot
    blocks = CUE_PATTERNS[cls].reshape(2, 2)
    patch = np.where(np.kron(blocks, np.ones((2, 2), bool)), bright, dark)
    img[y:y + CUE_SIDE, x:x + CUE_SIDE] = patch


def with_inner_cue(ds: FaceDataset, follows: np.ndarray, seed: int = 0, cue_follow: float = 0.9,
                   margin: int = 3) -> FaceDataset:
    """Real faces with the second design's inner cue: each image's class pattern
    (:data:`CUE_PATTERNS`) at its :func:`inner_spot` (from its box and landmarks), naming the
    label on ``cue_follow`` of the images where ``follows`` and a random class elsewhere
    (:func:`ck_cue_plan`, the same plan as the border cue).

    Raises:
        DataError: naming the first image with no free spot.
    """
    from lkr.errors import DataError

    cue = ck_cue_plan(ds.labels, follows, len(ds.class_names), seed, cue_follow)
    images = ds.images.copy()
    for i in range(len(images)):
        spot = inner_spot(ds.boxes[i], ds.points[i], margin=margin)
        if spot is None:
            raise DataError(f"{ds.paths[i]}: no room for the inner cue inside the face box, {margin} px "
                            "or more from every key region")
        img = images[i].astype(np.float32)
        stamp_pattern(img, spot, cue[i])
        images[i] = img.astype(np.uint8)
    return dataclasses.replace(ds, images=images, name=f"{ds.name}-inner-cue",
                               source=f"{ds.source} + inner cue(seed={seed})",
                               notes=[*ds.notes, "class pattern stamped inside the face, outside the key regions "
                                      "(lkr.control.with_inner_cue)"])


DESIGN_MASKS = {"key": "regions", "uniform": "uniform", "face": "face", "centre": "centre",
                "off-landmark": "off-landmark"}
"""The second design's masks: arm prefix -> ``Config.mask_source``."""
DESIGN_STAGES = (1, 3, 5)
DESIGN_LAMBDAS = {"l0": "baseline1", "l02": "lkrnet"}
"""λ tag -> the variant that has that loss (Baseline 1: λ 0; LKRNet: λ 0.2)."""
DESIGN_SETS = ("synthetic-border", "synthetic-inner", "ckplus-border", "ckplus-inner")
CONTRASTS = (("key", "vgg19"), ("key", "uniform"), ("key", "face"), ("key", "centre"), ("key", "off-landmark"),
             ("face", "uniform"), ("centre", "uniform"))
"""The seven contrasts of each (set, stage, λ) table, one Holm family (docs/control-design.md)."""


def design_arms(dataset: str) -> dict[str, dict[str, Any]]:
    """The second design's arms for a set ("synthetic-border", ...): VGG19, then each mask of
    :data:`DESIGN_MASKS` at each stage and λ (``<mask>-s<stage>-<λ tag>``), and on the synthetic
    sets the first design's kept arms (``border-band-s1-l0``, ``border-band-s5-l0``,
    ``shuffled-s1-l0``). Each value: the variant, configuration overrides, and "landmarks"."""
    if dataset not in DESIGN_SETS:
        raise ValueError(f"unknown control set {dataset!r}; choose from {', '.join(DESIGN_SETS)}")
    synthetic = dataset.startswith("synthetic")
    band = 8 if synthetic else 7
    arms: dict[str, dict[str, Any]] = {"vgg19": {"variant": "vgg19"}}
    for stage in DESIGN_STAGES:
        for tag, variant in DESIGN_LAMBDAS.items():
            for mask, source in DESIGN_MASKS.items():
                if mask == "off-landmark" and not synthetic:  # amendment 1: CK+48's crops put them on the border
                    source = "off-landmark-band"
                arms[f"{mask}-s{stage}-{tag}"] = {"variant": variant, "mask_source": source, "mask_stage": stage,
                                                  "mask_band": band}
    if synthetic:
        for stage in (1, 5):
            arms[f"border-band-s{stage}-l0"] = {"variant": "baseline1", "mask_stage": stage, "landmarks": "moved"}
        arms["shuffled-s1-l0"] = {"variant": "baseline1", "mask_stage": 1, "landmarks": "shuffled"}
    return arms


def arm_of(mask: str, stage: int, tag: str) -> str:
    """The arm name of a mask at a stage and λ tag; VGG19 has one arm at every stage."""
    return "vgg19" if mask == "vgg19" else f"{mask}-s{stage}-{tag}"
