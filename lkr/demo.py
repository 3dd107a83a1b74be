"""A built-in synthetic data set, so the whole kit runs without downloading anything.

Each image is a drawn 48x48 grayscale face (head ellipse, hair, eyes, brows, nose, mouth). The
seven classes differ only in facial *geometry*, the way real expressions do: mouth curve
(smile/frown), mouth opening and width, one-sided mouth corner (contempt), brow height and
angle (inner end raised or lowered), eye opening and nose wrinkles. Every image draws its own
expression intensity and per-feature jitter, pose (rotation, translation, scale), lighting
(gradient, brightness, contrast), noise and identity (face width, eye spacing, feature sizes,
skin tone, hair), so classes overlap a little: a small CNN learns them well above chance but
not perfectly, and raw-pixel templates do poorly.

The true 5 landmarks (left eye, right eye, nose tip, left and right mouth corner; "left" is the
image's left, smaller x) and the head ellipse's bounding box come with every image, in the
same pose as the drawing, in place of MTCNN's output.

Two shapes mirror the paper's data sets:

* ``"fer2013"``: ``FER2013_CLASSES``, splits Training / PublicTest / PrivateTest in FER2013's
  28709 : 3589 : 3589 proportions, one identity per image (no subject ids).
* ``"ckplus"``: ``CKPLUS_CLASSES``, subjects ``S001..`` each with a few labelled sequences
  ``S001_001..`` of 3 frames of rising intensity (like CK+'s last 3 frames), split ``"all"``:
  folds are made by subject (:mod:`lkr.folds`).

Faces are rendered analytically in numpy, a batch at a time: every pixel is mapped back into
the face's own coordinates and each feature is a soft (1-pixel anti-aliased) shape there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lkr.classes import CKPLUS_CLASSES, FER2013_CLASSES, short
from lkr.dataset import IMAGE_SIZE, FaceDataset

SHAPES = ("fer2013", "ckplus")
DEFAULT_N = {"fer2013": 1400, "ckplus": 480}

# FER2013's official split sizes (Training, PublicTest, PrivateTest).
FER2013_SPLITS = {"Training": 28709, "PublicTest": 3589, "PrivateTest": 3589}
# Real class frequencies (FER2013 Training images; CK+ labelled sequences), canonical order.
_FER2013_FREQ = {"anger": 3995, "disgust": 436, "fear": 4097, "happiness": 7215,
                 "sadness": 4830, "surprise": 3171, "neutral": 4965}
_CKPLUS_FREQ = {"anger": 45, "disgust": 59, "fear": 25, "happiness": 69, "sadness": 28,
                "surprise": 83, "contempt": 18}
# Class proportions are the real ones pulled half-way to uniform, so that the rarest class
# (FER2013 disgust, 1.5 %) still has enough demo images to be measured.
_UNIFORM_MIX = 0.5

# Expression geometry at full intensity, as offsets from the neutral face, in face units
# (1 = the head ellipse's vertical semi-axis; y points down, so negative = up).
#   curve:  mouth corners lifted (+ smile, - frown)     open:   mouth cavity height
#   width:  relative change of mouth width              asym:   one mouth corner lifted
#   brow_in / brow_out: inner / outer brow end lifted   eye:    relative change of eye opening
#   lip_up: upper lip raised                            wrinkle: nose wrinkle strength (0..1)
_PARAMS = ("curve", "open", "width", "asym", "brow_in", "brow_out", "eye", "lip_up", "wrinkle")
_PROTOTYPES: dict[str, dict[str, float]] = {
    "anger":     {"curve": -0.03, "width": -0.22, "brow_in": -0.11, "brow_out": 0.01,
                  "eye": -0.25, "wrinkle": 0.3},
    "disgust":   {"curve": -0.06, "open": 0.03, "width": -0.05, "brow_in": -0.06,
                  "brow_out": -0.03, "eye": -0.45, "lip_up": 0.05, "wrinkle": 1.0},
    "fear":      {"curve": -0.03, "open": 0.08, "width": 0.18, "brow_in": 0.12,
                  "brow_out": 0.04, "eye": 0.55},
    "happiness": {"curve": 0.11, "open": 0.05, "width": 0.22, "eye": -0.3},
    "sadness":   {"curve": -0.09, "width": -0.06, "brow_in": 0.10, "brow_out": -0.04,
                  "eye": -0.2},
    "surprise":  {"open": 0.17, "width": -0.22, "brow_in": 0.11, "brow_out": 0.11, "eye": 0.7},
    "neutral":   {},
    "contempt":  {"curve": 0.01, "asym": 0.10, "eye": -0.1},
}
# Per-image jitter of each parameter (standard deviation), independent of the class.
_JITTER = {"curve": 0.025, "open": 0.015, "width": 0.07, "asym": 0.02, "brow_in": 0.03,
           "brow_out": 0.025, "eye": 0.15, "lip_up": 0.012, "wrinkle": 0.15}


def make_demo(shape: str = "fer2013", seed: int = 0, n: int | None = None) -> FaceDataset:
    """The built-in synthetic data set.

    Args:
        shape: ``"fer2013"`` (three FER2013 splits, ``FER2013_CLASSES``) or ``"ckplus"``
            (subjects and 3-frame sequences, one split ``"all"``, ``CKPLUS_CLASSES``).
        seed: every random choice follows from it; the same seed gives identical arrays.
        n: number of images (default 1400 for fer2013: 1120 / 140 / 140; 480 for ckplus:
            40 subjects, 160 sequences). For ckplus it is rounded down to a multiple of 3
            (at least one sequence).

    Returns:
        A :class:`FaceDataset` named ``"demo-<shape>"`` of kind ``"demo"`` with images
        (N, 48, 48) uint8, labels (N,) in 0..6, boxes (N, 4) float32 (x1, y1, x2, y2, the head
        ellipse's bounding box, clipped to the image), points (N, 5, 2) float32 (x, y of left
        eye, right eye, nose tip, left and right mouth corner, in the kit's convention: pixel j spans [j, j+1)
        ) and detected (N,) all True.

    Raises:
        ValueError: for an unknown shape or n < 1.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown demo shape {shape!r}; choose from {', '.join(SHAPES)}")
    n = DEFAULT_N[shape] if n is None else int(n)
    if n < 1:
        raise ValueError(f"demo size must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    if shape == "fer2013":
        return _make_fer2013(rng, n)
    return _make_ckplus(rng, n)


def _class_probs(freq: dict[str, int], class_names: tuple[str, ...]) -> np.ndarray:
    p = np.array([freq[c] for c in class_names], dtype=float)
    p /= p.sum()
    return (1 - _UNIFORM_MIX) * p + _UNIFORM_MIX / len(p)


def _allocate(total: int, p: np.ndarray) -> np.ndarray:
    """Integer counts summing to ``total`` closest to ``total * p`` (largest remainder)."""
    raw = total * p
    out = np.floor(raw).astype(int)
    out[np.argsort(-(raw - out), kind="stable")[: total - out.sum()]] += 1
    return out


def _make_fer2013(rng: np.random.Generator, n: int) -> FaceDataset:
    classes = FER2013_CLASSES
    total = sum(FER2013_SPLITS.values())
    n_test = round(n * FER2013_SPLITS["PublicTest"] / total)
    sizes = {"Training": n - 2 * n_test, "PublicTest": n_test, "PrivateTest": n_test}
    p = _class_probs(_FER2013_FREQ, classes)
    labels = np.concatenate([np.repeat(np.arange(len(classes)), _allocate(m, p)) for m in sizes.values()])
    splits = np.repeat(list(sizes), list(sizes.values()))
    # Shuffle within each split so that classes are interleaved like a real file listing.
    order = np.concatenate([rng.permutation(np.flatnonzero(splits == s)) for s in sizes])
    labels = labels[order]

    names = [classes[i] for i in labels]
    identity = _sample_identity(rng, n)
    intensity = rng.uniform(0.35, 1.0, n)
    expr = _expression(names, intensity, _sample_jitter(rng, n))
    pose = _sample_pose(rng, n)
    images, points, boxes = _render(rng, identity, expr, pose)
    return FaceDataset(
        name="demo-fer2013", kind="demo", images=images, labels=labels, class_names=classes,
        splits=splits, subjects=np.full(n, ""), sequences=np.full(n, ""),
        paths=np.array([f"demo:fer2013/{i:06d}" for i in range(n)]), source="demo",
        notes=["synthetic demo faces (lkr.demo), not FER2013"],
        boxes=boxes, points=points, detected=np.ones(n, dtype=bool),
    )


def _make_ckplus(rng: np.random.Generator, n: int) -> FaceDataset:
    classes = CKPLUS_CLASSES
    k = len(classes)
    n_seq = max(1, n // 3)
    n_subj = max(-(-n_seq // k), round(n_seq / 4), 1)
    # Sequences per subject: at least 1, at most one per class, summing to n_seq.
    per = np.ones(n_subj, dtype=int) + rng.multinomial(n_seq - n_subj, np.full(n_subj, 1 / n_subj))
    while (per > k).any():
        over = int(np.flatnonzero(per > k)[0])
        per[over] -= 1
        per[rng.choice(np.flatnonzero(per < k))] += 1
    p = _class_probs(_CKPLUS_FREQ, classes)
    seq_label, seq_subject, seq_id = [], [], []
    for s, m in enumerate(per):
        labs = rng.choice(k, size=m, replace=False, p=p)
        numbers = np.sort(rng.choice(np.arange(1, 16), size=m, replace=False))
        for lab, num in zip(labs, numbers):
            seq_label.append(lab)
            seq_subject.append(f"S{s + 1:03d}")
            seq_id.append(f"S{s + 1:03d}_{num:03d}")
    seq_label = np.array(seq_label)
    seq_subj_idx = np.repeat(np.arange(n_subj), per)

    # Every image of a sequence shares the subject's identity and the sequence's pose and
    # expression variant; the 3 frames rise in intensity towards the sequence's peak.
    n_img = 3 * n_seq
    img_seq = np.repeat(np.arange(n_seq), 3)
    frame = np.tile(np.arange(3), n_seq)
    identity = {key: v[seq_subj_idx[img_seq]] for key, v in _sample_identity(rng, n_subj).items()}
    peak = rng.uniform(0.7, 1.0, n_seq)
    intensity = peak[img_seq] * (0.8 + 0.1 * frame)
    jitter = {key: v[img_seq] for key, v in _sample_jitter(rng, n_seq, scale=0.8).items()}
    expr = _expression([classes[i] for i in seq_label[img_seq]], intensity, jitter)
    pose = {key: v[img_seq] for key, v in _sample_pose(rng, n_seq, lab_scale=True).items()}
    pose["cx"] = pose["cx"] + rng.normal(0, 0.25, n_img)
    pose["cy"] = pose["cy"] + rng.normal(0, 0.25, n_img)
    images, points, boxes = _render(rng, identity, expr, pose)

    seq_len = rng.integers(10, 30, n_seq)  # CK+ keeps a sequence's last 3 frames
    labels = seq_label[img_seq]
    subjects = np.array(seq_subject)[img_seq]
    sequences = np.array(seq_id)[img_seq]
    paths = np.array([f"demo:ckplus/{sequences[i]}_{seq_len[img_seq[i]] - 2 + frame[i]:08d}"
                      for i in range(n_img)])
    return FaceDataset(
        name="demo-ckplus", kind="demo", images=images, labels=labels, class_names=classes,
        splits=np.full(n_img, "all"), subjects=subjects, sequences=sequences, paths=paths,
        source="demo", notes=["synthetic demo faces (lkr.demo), not CK+"],
        boxes=boxes, points=points, detected=np.ones(n_img, dtype=bool),
    )


# --- random parameters ----------------------------------------------------------------------
def _sample_identity(rng: np.random.Generator, m: int) -> dict[str, np.ndarray]:
    """Per-person face layout and appearance, in face units and 0..1 gray levels."""
    u = rng.uniform
    return {
        "aw": u(0.70, 0.84, m),        # head half-width (half-height = 1)
        "eye_x": u(0.29, 0.37, m),     # eye centre distance from the midline
        "eye_y": u(-0.12, -0.02, m),
        "eye_w": u(0.10, 0.135, m),    # eye half-width
        "eye_h": u(0.045, 0.065, m),   # eye half-height at neutral
        "brow_gap": u(0.14, 0.19, m),  # brow above eye centre
        "brow_t": u(0.035, 0.055, m),  # brow half-thickness
        "nose_y": u(0.18, 0.26, m),
        "mouth_y": u(0.50, 0.58, m),
        "mouth_w": u(0.23, 0.29, m),   # mouth half-width
        "lip_t": u(0.035, 0.05, m),    # lip half-thickness
        "skin": u(0.45, 0.8, m),
        "hair": u(0.05, 0.35, m),
        "hairline": u(-0.75, -0.5, m),
        "bg": u(0.1, 0.9, m),
    }


def _sample_jitter(rng: np.random.Generator, m: int, scale: float = 1.0) -> dict[str, np.ndarray]:
    """Per-face deviations from the class prototype, and which mouth corner contempt lifts."""
    out = {key: rng.normal(0, _JITTER[key] * scale, m) for key in _PARAMS}
    out["asym_side"] = rng.choice([-1.0, 1.0], m)
    return out


def _expression(names: list[str], intensity: np.ndarray, jitter: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Expression parameters: class prototype x intensity (0 = neutral face) + jitter."""
    out = dict(jitter)
    for key in _PARAMS:
        out[key] = np.array([_PROTOTYPES[c].get(key, 0.0) for c in names]) * intensity + jitter[key]
    out["open"] = np.maximum(out["open"], 0.0)
    out["lip_up"] = np.maximum(out["lip_up"], 0.0)
    out["wrinkle"] = np.clip(out["wrinkle"], 0.0, 1.0)
    return out


def _sample_pose(rng: np.random.Generator, m: int, lab_scale: bool = False) -> dict[str, np.ndarray]:
    """Pose and lighting. ``lab_scale`` narrows them, like CK+'s controlled lab captures."""
    f = 0.5 if lab_scale else 1.0
    return {
        "cx": 23.5 + rng.normal(0, 1.5 * f, m),
        "cy": 24.0 + rng.normal(0, 1.5 * f, m),
        "scale": rng.uniform(20.5, 24.0, m),          # pixels per face unit
        "theta": np.deg2rad(rng.normal(0, 7 * f, m)),  # in-plane rotation
        "grad_x": rng.normal(0, 0.25 * f, m),          # lighting gradient across the image
        "grad_y": rng.normal(0, 0.15 * f, m),
        "bright": rng.normal(0, 0.07, m),
        "contrast": np.exp(rng.normal(0, 0.2, m)),
        "noise": rng.uniform(0.01, 0.05, m),
    }


# --- rendering ------------------------------------------------------------------------------
def _ramp(d: np.ndarray) -> np.ndarray:
    """Coverage of a pixel whose centre lies ``d`` pixels inside a shape's edge (1-px ramp)."""
    return np.clip(0.5 + d, 0.0, 1.0)


def _ellipse(u, v, x0, y0, a, b, s):
    """Soft ellipse mask; distances approximated along the shorter axis."""
    q = np.sqrt(((u - x0) / a) ** 2 + ((v - y0) / b) ** 2)
    return _ramp((1.0 - q) * np.minimum(a, b) * s)


def _segment(u, v, x0, y0, x1, y1, half, s):
    """Soft thick line segment from (x0, y0) to (x1, y1)."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    dist = np.hypot(u - x0 - t * dx, v - y0 - t * dy)
    return _ramp((half - dist) * s)


def _mouth_geometry(p: dict[str, np.ndarray]):
    """Mouth half-width and the corner lifts (left, right) in face units, per face."""
    mw = p["mouth_w"] * (1 + p["width"])
    lift_l = p["curve"] + p["asym"] * (p["asym_side"] < 0)
    lift_r = p["curve"] + p["asym"] * (p["asym_side"] > 0)
    return mw, lift_l, lift_r


def _render(rng: np.random.Generator, identity: dict[str, np.ndarray], expr: dict[str, np.ndarray],
            pose: dict[str, np.ndarray], batch: int = 512):
    """Draw the faces; return images (N,48,48) uint8, points (N,5,2), boxes (N,4) float32."""
    n = len(pose["cx"])
    params = {**identity, **expr, **pose}
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    noise_seed = rng.integers(2**63)
    for start in range(0, n, batch):
        sl = slice(start, min(start + batch, n))
        p = {k: v[sl].astype(np.float32)[:, None, None] for k, v in params.items()}
        images[sl] = _draw(p, np.random.default_rng([noise_seed, start]))

    # Landmarks in face units -> pixels with the same pose.
    P = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    eye_y = P["eye_y"]
    mw, lift_l, lift_r = _mouth_geometry(P)
    mouth_y = P["mouth_y"] + P["open"] * 0.1
    pts_u = np.stack([-P["eye_x"], P["eye_x"], np.zeros(n), -mw, mw], axis=1)
    pts_v = np.stack([eye_y, eye_y, P["nose_y"], mouth_y - lift_l, mouth_y - lift_r], axis=1)
    c, s_ = np.cos(P["theta"])[:, None], np.sin(P["theta"])[:, None]
    sc = P["scale"][:, None]
    x = P["cx"][:, None] + sc * (c * pts_u - s_ * pts_v)
    y = P["cy"][:, None] + sc * (s_ * pts_u + c * pts_v)
    # The drawing puts pixel (i, j)'s centre at face coordinates (j, i); the kit's landmark
    # convention (MTCNN's, lkr.regions) puts it at (j + 0.5, i + 0.5).
    points = (np.stack([x, y], axis=-1) + 0.5).astype(np.float32)

    # Bounding box of the rotated head ellipse (semi-axes aw*scale, scale), clipped to the image.
    A, B = P["aw"] * P["scale"], P["scale"]
    c1, s1 = np.cos(P["theta"]), np.sin(P["theta"])
    hx, hy = np.hypot(A * c1, B * s1), np.hypot(A * s1, B * c1)
    lim = IMAGE_SIZE
    boxes = np.stack([np.clip(P["cx"] - hx + 0.5, 0, lim), np.clip(P["cy"] - hy + 0.5, 0, lim),
                      np.clip(P["cx"] + hx + 0.5, 0, lim), np.clip(P["cy"] + hy + 0.5, 0, lim)], axis=1)
    return images, points, boxes.astype(np.float32)


def _draw(p: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Render one batch; every value in ``p`` has shape (B, 1, 1)."""
    b = p["cx"].shape[0]
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)  # (48, 48), pixel centres
    c, sn, s = np.cos(p["theta"]), np.sin(p["theta"]), p["scale"]
    dx, dy = xx - p["cx"], yy - p["cy"]
    u = (c * dx + sn * dy) / s  # (B, 48, 48) face coordinates
    v = (-sn * dx + c * dy) / s

    skin = p["skin"]
    img = np.broadcast_to(p["bg"], (b, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)

    def paint(mask, value):
        nonlocal img
        img = img + mask * (value - img)

    # Head with a little shading towards the rim (a rounded look), then hair on top.
    head = _ellipse(u, v, 0.0, 0.0, p["aw"], 1.0, s)
    rim = (u / p["aw"]) ** 2 + v ** 2
    paint(head, skin * (1.0 - 0.25 * rim))
    hair = head * _ramp((p["hairline"] + 0.08 * (u / p["aw"]) ** 2 - v) * s)
    paint(hair, p["hair"])

    # Eyes: a socket shadow, the eye opening, the pupil.
    open_h = p["eye_h"] * np.clip(1.0 + p["eye"], 0.25, 2.2)
    for side in (-1.0, 1.0):
        ex = side * p["eye_x"]
        paint(0.35 * _ellipse(u, v, ex, p["eye_y"] - 0.02, p["eye_w"] * 1.5, 0.12, s), skin * 0.6)
        eye = _ellipse(u, v, ex, p["eye_y"], p["eye_w"], open_h, s)
        paint(eye, skin * 0.45)
        paint(eye * _ellipse(u, v, ex, p["eye_y"], 0.05, 0.05, s), 0.05)
        # Brows: inner end near the midline, outer end beyond the eye's corner.
        by = p["eye_y"] - p["brow_gap"]
        x_in, x_out = side * 0.11, ex + side * (p["eye_w"] + 0.05)
        # Brows never sink into the eye opening, however lowered.
        y_in = np.minimum(by - p["brow_in"], p["eye_y"] - open_h - 0.06)
        y_out = np.minimum(by - p["brow_out"], p["eye_y"] - open_h - 0.06)
        paint(_segment(u, v, x_in, y_in, x_out, y_out, p["brow_t"], s), skin * 0.35)

    # Nose: two faint sides, nostrils, wrinkles across the bridge (anger, disgust).
    ny = p["nose_y"]
    for side in (-1.0, 1.0):
        paint(0.3 * _segment(u, v, side * 0.05, ny - 0.28, side * 0.08, ny - 0.02, 0.02, s), skin * 0.6)
        paint(0.8 * _ellipse(u, v, side * 0.07, ny + 0.02, 0.04, 0.025, s), skin * 0.35)
    for k, off in enumerate((-0.3, -0.22)):
        paint(p["wrinkle"] * _segment(u, v, -0.08, ny + off, 0.08, ny + off - 0.01 * k, 0.015, s), skin * 0.5)

    # Mouth: a curved lip band; when open, a dark cavity with teeth along its top.
    mw, lift_l, lift_r = _mouth_geometry(p)
    t = u / mw
    lift = np.where(t < 0, lift_l, lift_r) * t ** 2
    my = p["mouth_y"] + p["open"] * 0.1
    centre = my - lift
    bulge = np.clip(1 - t ** 2, 0.0, None)
    upper = centre - (p["open"] * 0.45 + p["lip_up"]) * bulge
    lower = centre + p["open"] * 0.55 * bulge
    ends = (1 - np.abs(t)) * mw * s
    lips = _ramp(np.minimum(np.minimum(v - (upper - p["lip_t"]), lower + p["lip_t"] - v) * s, ends))
    paint(lips, skin * 0.55)
    cavity = _ramp(np.minimum(np.minimum(v - upper, lower - v) * s, ends - 0.5))
    paint(cavity, skin * 0.12)
    teeth = cavity * _ramp((upper + 0.3 * (lower - upper) - v) * s)
    paint(teeth * np.clip(p["open"] * 12, 0, 1), np.minimum(skin * 1.2, 0.95))

    # Lighting, contrast, brightness, sensor noise.
    gain = 1.0 + p["grad_x"] * (xx - 23.5) / 24 + p["grad_y"] * (yy - 23.5) / 24
    img = (img * gain - 0.5) * p["contrast"] + 0.5 + p["bright"]
    img = img + rng.normal(0.0, 1.0, img.shape).astype(np.float32) * p["noise"]
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def save_sample_grid(ds: FaceDataset, path: str | Path, per_class: int = 8, seed: int = 0) -> Path:
    """Save a grid of sample faces: one row per class, class names as row labels.

    Args:
        ds: any dataset (classes with fewer images leave their row's end blank).
        path: the PNG to write (parent folders are created).
        per_class: images per row, at least 1.
        seed: which images are drawn.

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    k = len(ds.class_names)
    fig = Figure(figsize=(0.8 * per_class + 1.2, 0.8 * k + 0.2), dpi=100)
    axes = fig.subplots(k, per_class, squeeze=False)
    for row, name in enumerate(ds.class_names):
        idx = np.flatnonzero(ds.labels == row)
        pick = np.sort(rng.choice(idx, size=min(per_class, len(idx)), replace=False)) if len(idx) else idx
        for col in range(per_class):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(pick):
                ax.imshow(ds.images[pick[col]], cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_ylabel(short(name), rotation=0, ha="right", va="center", fontsize=10)
    fig.subplots_adjust(left=1.1 / fig.get_figwidth(), right=0.99, top=0.99, bottom=0.01,
                        wspace=0.05, hspace=0.05)
    fig.savefig(path)
    return path
