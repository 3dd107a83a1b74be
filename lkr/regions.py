"""Local key region masks (paper Sec. 3.1, Eq. 1-3).

Around each of the 5 landmarks (x_c, y_c) lies a rectangle of ``alpha * w_box`` by
``alpha * h_box`` (Eq. 1-2, w_box and h_box the MTCNN face box's size) centred on it. Inside it
each pixel gets the weight

    w = 1 - d / d_max                                                              (Eq. 3)

where d is the Euclidean distance from the pixel centre to the landmark and d_max the distance
from the landmark to the rectangle's corners: 1 at the landmark, 0 at the corners, linear in
between. Pixels outside every rectangle get 0. Where rectangles overlap the weights merge by
element-wise max (``merge="max"``, the default: a pixel is as "key" as its nearest landmark says;
the paper does not say) or by their sum clipped to 1 (``merge="sum"``).

Pixel convention: continuous coordinates in which pixel column j spans [j, j+1), so its centre
is x = j + 0.5 (likewise rows, y = i + 0.5) - the frame MTCNN's points are in (see
:mod:`lkr.landmarks`). So a crop at offset (x0, y0) moves points by (-x0, -y0) and a horizontal
flip of a W-wide image maps x to W - x, and the mask of the moved points is the moved mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MERGES = ("max", "sum")


def _region_masks(boxes: Any, points: Any, alpha: float, size: int, merge: str, xp: Any) -> Any:
    """The computation for one chunk, written once for numpy (xp=np) and torch (xp=torch)."""
    wh = (boxes[:, 2:4] - boxes[:, 0:2]) * alpha  # (N, 2) region width, height (Eq. 1-2)
    half = wh[:, None, :] / 2  # (N, 1, 2)
    d_max = xp.sqrt((half ** 2).sum(-1))  # (N, 1) landmark to corner
    if xp is np:
        c = np.arange(size, dtype=np.float32) + 0.5
    else:
        c = xp.arange(size, dtype=points.dtype, device=points.device) + 0.5  # pixel centres
    dx = c[None, None, None, :] - points[:, :, 0, None, None]  # (N, 5, 1, size)
    dy = c[None, None, :, None] - points[:, :, 1, None, None]  # (N, 5, size, 1)
    inside = (abs(dx) <= half[:, :, 0, None, None]) & (abs(dy) <= half[:, :, 1, None, None])
    w = 1 - xp.sqrt(dx ** 2 + dy ** 2) / d_max.clip(min=1e-6)[:, :, None, None]  # Eq. 3
    w = xp.where(inside, w, 0.0).clip(0, 1)  # (N, 5, size, size); 0 outside the rectangle
    if merge == "max":
        return w.max(1) if xp is np else w.amax(1)
    return w.sum(1).clip(0, 1)


def region_masks(boxes: Any, points: Any, *, alpha: float = 0.3, size: int = 48, merge: str = "max",
                 chunk: int = 2048) -> Any:
    """Weighted local key region masks of N faces (Eq. 1-3).

    Args:
        boxes: (N, 4) face boxes x1, y1, x2, y2 in pixel coordinates of a ``size`` x ``size`` image.
        points: (N, K, 2) landmarks x, y in the same coordinates (K = 5 for MTCNN).
        alpha: region side as a fraction of the box side (Eq. 1-2; the paper's 0.3).
        size: side of the mask in pixels (48, or 44 for a crop).
        merge: "max" (element-wise max of the regions) or "sum" (their sum clipped to 1).
        chunk: faces computed at once (bounds the (chunk, K, size, size) temporary).

    Returns:
        (N, size, size) float32 in [0, 1]: a numpy array, or a torch tensor on the points'
        device when ``points`` is a torch tensor.
    """
    if merge not in MERGES:
        raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    try:
        import torch

        is_torch = isinstance(points, torch.Tensor)
    except ImportError:  # pragma: no cover - torch is a dependency
        is_torch = False
    if is_torch:
        xp = torch
        points = points.float()
        boxes = torch.as_tensor(boxes, dtype=torch.float32, device=points.device)
    else:
        xp = np
        points = np.asarray(points, dtype=np.float32)
        boxes = np.asarray(boxes, dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or points.ndim != 3 or points.shape[2] != 2 \
            or len(boxes) != len(points):
        raise ValueError(f"boxes must be (N, 4) and points (N, K, 2), got {tuple(boxes.shape)} "
                         f"and {tuple(points.shape)}")
    parts = [_region_masks(boxes[s:s + chunk], points[s:s + chunk], alpha, size, merge, xp)
             for s in range(0, len(points), chunk)]
    if not parts:
        return torch.zeros((0, size, size)) if is_torch else np.zeros((0, size, size), np.float32)
    if is_torch:
        return torch.cat(parts).float()
    return np.concatenate(parts).astype(np.float32, copy=False)


OFF_LANDMARK_NAMES = ("forehead_left", "forehead_middle", "forehead_right", "cheek_left", "cheek_right")


def off_landmark_points(boxes: Any, points: Any, *, alpha: float = 0.3, size: int = 48) -> np.ndarray:
    """Centres of five rectangles of the key regions' size placed on the face away from the
    landmarks (the region control's "off-landmark" mask).

    Forehead left, middle and right: x = cx - alpha w, cx, cx + alpha w (side by side), y with
    the rectangle's top on the box's top; the cheeks: the rectangle's outer side on the box's
    side, y half way between that side's eye and mouth corner (the landmarks only say where not
    to put them). Each
    centre is then moved so that its whole ``alpha`` rectangle lies inside the ``size`` image,
    so the five rectangles keep the key regions' area and Eq. 3 weights.

    Args:
        boxes: (N, 4) face boxes x1, y1, x2, y2.
        points: (N, 5, 2) landmarks (left eye, right eye, nose, left and right mouth corner).
        alpha: the rectangles' side as a fraction of the box's (Eq. 1-2).
        size: image side.

    Returns:
        (N, 5, 2) float32 centres (x, y), in :data:`OFF_LANDMARK_NAMES` order.
    """
    b = np.asarray(boxes, np.float32)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    rw, rh = alpha * w, alpha * h
    cx = (b[:, 0] + b[:, 2]) / 2
    top = np.maximum(b[:, 1], 0) + rh / 2
    p = np.asarray(points, np.float32)
    xs = np.stack([cx - rw, cx, cx + rw, b[:, 0] + rw / 2, b[:, 2] - rw / 2], 1)
    ys = np.stack([top, top, top, (p[:, 0, 1] + p[:, 3, 1]) / 2, (p[:, 1, 1] + p[:, 4, 1]) / 2], 1)
    xs = np.clip(xs, rw[:, None] / 2, size - rw[:, None] / 2)
    ys = np.clip(ys, rh[:, None] / 2, size - rh[:, None] / 2)
    return np.stack([xs, ys], -1).astype(np.float32)


def face_masks(boxes: Any, size: int = 48) -> np.ndarray:
    """(N, size, size) float32: 1 on the pixels whose centre lies inside the face box (clipped to
    the image), 0 elsewhere: "hide what is not face", with no landmark information."""
    b = np.asarray(boxes, np.float32)
    c = np.arange(size, dtype=np.float32) + 0.5
    inx = (c[None, :] >= b[:, 0, None]) & (c[None, :] <= b[:, 2, None])  # (N, size)
    iny = (c[None, :] >= b[:, 1, None]) & (c[None, :] <= b[:, 3, None])
    return (iny[:, :, None] & inx[:, None, :]).astype(np.float32)


def centre_mask(size: int = 48, band: int = 7) -> np.ndarray:
    """(size, size) float32: 1 on [band, size - band)^2, 0 on the border band: hides the border
    and nothing else (no face information at all)."""
    m = np.zeros((size, size), np.float32)
    m[band:size - band, band:size - band] = 1.0
    return m


def run_masks(cfg: Any, boxes: Any, points: Any, size: int = 48) -> np.ndarray:
    """The masks a run's local branch is fed, as ``cfg.mask_source`` says:

    - "regions": :func:`region_masks` with the config's ``alpha`` and ``mask_merge`` (the paper's);
    - "uniform": all ones (a second head with no region information);
    - "face": :func:`face_masks` (ones inside the face box);
    - "centre": :func:`centre_mask` with ``cfg.mask_band`` (ones off the border band);
    - "off-landmark": :func:`region_masks` around :func:`off_landmark_points` (same rectangles
      and weights, centred on the forehead and cheeks);
    - "off-landmark-band": the same times :func:`centre_mask` (zeros on the border band, as the
      key regions have there on CK+48: the region control's off-landmark arm on real faces).

    The one place training, evaluation, prediction and Grad-CAM make them.

    Args:
        cfg: a :class:`lkr.config.Config` (``alpha``, ``mask_merge``, ``mask_source``, ``mask_band``).
        boxes, points: as :func:`region_masks`.
        size: image side.

    Returns:
        (N, size, size) float32 in [0, 1].
    """
    source = getattr(cfg, "mask_source", "regions")
    n = len(points)
    if source == "uniform":
        return np.ones((n, size, size), np.float32)
    if source == "face":
        return face_masks(boxes, size)
    if source == "centre":
        return np.broadcast_to(centre_mask(size, getattr(cfg, "mask_band", 7)), (n, size, size)).copy()
    if source in ("off-landmark", "off-landmark-band"):
        m = region_masks(boxes, off_landmark_points(boxes, points, alpha=cfg.alpha, size=size), alpha=cfg.alpha,
                         size=size, merge=cfg.mask_merge)
        return m * centre_mask(size, getattr(cfg, "mask_band", 7)) if source == "off-landmark-band" else m
    if source != "regions":
        raise ValueError(f"unknown mask_source {source!r}")
    return region_masks(boxes, points, alpha=cfg.alpha, size=size, merge=cfg.mask_merge)
