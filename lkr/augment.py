"""Batched data augmentation on the tensor's device (paper Sec. 4.2, Fig. 5).

Training: a random 44x44 crop of the 48x48 face, a horizontal flip with probability 0.5, and
random 3x3 black blocks. The local key region mask gets the same crop and flip (it must stay on
the face it was computed for) but no blocks. Test time: the ten-crop of the 48x48 face (four
corners and the centre, each also flipped); predictions are averaged over the ten by the caller.

Pixels are mapped to network inputs by :func:`to_input`: v = pixel / 255 in [0, 1], then
(v - MEAN) / STD with MEAN = 0.5 and STD = 0.25 (fixed round numbers close to FER2013's pixel
statistics, mean ~0.51 and std ~0.25; CK+ is treated the same), so inputs lie in [-2, 2].
"""

from __future__ import annotations

import torch
from torch import Tensor

from lkr.config import Config

MEAN = 0.5
STD = 0.25


def to_input(x: Tensor) -> Tensor:
    """Pixels to network input values.

    Args:
        x: uint8 pixels in [0, 255] or float pixels in [0, 255], any shape.

    Returns:
        float32 tensor of the same shape, (x / 255 - MEAN) / STD, in [-2, 2].
    """
    return (x.float() / 255.0 - MEAN) / STD


def _uniform(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> Tensor:
    """U[0,1) floats drawn on the generator's device, moved to ``device``."""
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _crop_by_index(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """x (B,H,W), rows (B,h), cols (B,w) -> x[b, rows[b,i], cols[b,j]] of shape (B,h,w)."""
    b = torch.arange(x.shape[0], device=x.device)[:, None, None]
    return x[b, rows[:, :, None], cols[:, None, :]]


def train_augment(images: Tensor, masks: Tensor | None, cfg: Config,
                  generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
    """Random crop, flip and black blocks for one training batch.

    Args:
        images: (B,48,48) uint8 faces.
        masks: (B,48,48) float in [0,1] local key region masks, or None.
        cfg: uses ``crop`` (44), ``flip_p`` (0.5), ``erase_blocks`` (1), ``erase_size`` (3).
        generator: seeded generator (on the images' device avoids host copies).

    Returns:
        (x (B,1,crop,crop) float32 normalised by :func:`to_input`,
        m (B,1,crop,crop) float32 in [0,1] or None). The crop position (uniform over
        0..48-crop in each axis) and the flip are the same for an image and its mask; the
        ``erase_blocks`` blocks of ``erase_size`` x ``erase_size`` pixels (placed uniformly,
        fully inside the crop, possibly overlapping) are set to pixel 0 in the image only.
    """
    dev = images.device
    bsz, h, w = images.shape
    c = cfg.crop
    if c > h or c > w:
        raise ValueError(f"crop {c} larger than the images ({h}x{w})")
    u = _uniform((bsz, 3), generator, dev)
    oy = (u[:, 0] * (h - c + 1)).long().clamp_max(h - c)  # (B,) top row
    ox = (u[:, 1] * (w - c + 1)).long().clamp_max(w - c)  # (B,) left column
    flip = u[:, 2] < cfg.flip_p  # (B,)
    ar = torch.arange(c, device=dev)
    rows = oy[:, None] + ar  # (B, c)
    cols = ox[:, None] + torch.where(flip[:, None], c - 1 - ar, ar)  # (B, c): flip = reversed columns
    x = _crop_by_index(images, rows, cols)  # (B, c, c) uint8
    m = None if masks is None else _crop_by_index(masks, rows, cols).float().unsqueeze(1)

    k, s = cfg.erase_blocks, cfg.erase_size
    if k > 0 and s > 0:
        e = _uniform((bsz, k, 2), generator, dev)
        top = (e[..., 0] * (c - s + 1)).long().clamp_max(c - s)[:, :, None, None]  # (B, k, 1, 1)
        left = (e[..., 1] * (c - s + 1)).long().clamp_max(c - s)[:, :, None, None]
        yy, xx = ar[:, None], ar[None, :]  # (c, 1), (1, c)
        inside = (yy >= top) & (yy < top + s) & (xx >= left) & (xx < left + s)  # (B, k, c, c)
        x = x.masked_fill(inside.any(dim=1), 0)
    return to_input(x).unsqueeze(1), m


def _crops(x: Tensor, crop: int, flip: bool = True) -> Tensor:
    """x (B,H,W) -> (10,B,crop,crop): tl, tr, bl, br, centre, then the same five flipped (without
    ``flip``: (5,B,crop,crop), the first five)."""
    h, w = x.shape[-2:]
    if crop > h or crop > w:
        raise ValueError(f"crop {crop} larger than the images ({h}x{w})")
    cy, cx = (h - crop) // 2, (w - crop) // 2
    five = [x[:, :crop, :crop], x[:, :crop, w - crop:], x[:, h - crop:, :crop],
            x[:, h - crop:, w - crop:], x[:, cy:cy + crop, cx:cx + crop]]
    five = torch.stack(five)  # (5, B, crop, crop)
    return torch.cat([five, five.flip(-1)]) if flip else five


def ten_crop(images: Tensor, masks: Tensor | None = None, crop: int = 44) -> tuple[Tensor, Tensor | None]:
    """Ten-crop for testing: the four corner crops and the centre crop, then the same five
    flipped horizontally.

    Args:
        images: (B,48,48) uint8 faces.
        masks: (B,48,48) float in [0,1] or None.
        crop: crop side.

    Returns:
        (x (10,B,1,crop,crop) float32 normalised by :func:`to_input`,
        m (10,B,1,crop,crop) float32 or None). Order along the first axis: top-left, top-right,
        bottom-left, bottom-right, centre, then the same five flipped.
    """
    x = to_input(_crops(images, crop, True)).unsqueeze(2)
    m = None if masks is None else _crops(masks, crop, True).float().unsqueeze(2)
    return x, m


def five_crop(images: Tensor, masks: Tensor | None = None, crop: int = 44) -> tuple[Tensor, Tensor | None]:
    """Five-crop for testing a run trained without flips (``flip_p == 0``, the region control: a
    flip would move its cue to another class's place; :func:`lkr.evaluate.test_crops`): the first
    five crops of :func:`ten_crop`, unflipped.

    Returns:
        (x (5,B,1,crop,crop), m (5,B,1,crop,crop) or None), in :func:`ten_crop`'s order.
    """
    x = to_input(_crops(images, crop, False)).unsqueeze(2)
    m = None if masks is None else _crops(masks, crop, False).float().unsqueeze(2)
    return x, m


def center_crop(images: Tensor, masks: Tensor | None = None,
                crop: int = 44) -> tuple[Tensor, Tensor | None]:
    """The centre crop (for Grad-CAM and plots).

    Args:
        images: (B,48,48) uint8 faces.
        masks: (B,48,48) float in [0,1] or None.
        crop: crop side.

    Returns:
        (x (B,1,crop,crop) float32 normalised by :func:`to_input`, m (B,1,crop,crop) float32 or
        None).
    """
    h, w = images.shape[-2:]
    cy, cx = (h - crop) // 2, (w - crop) // 2
    x = to_input(images[:, cy:cy + crop, cx:cx + crop]).unsqueeze(1)
    m = None if masks is None else masks[:, cy:cy + crop, cx:cx + crop].float().unsqueeze(1)
    return x, m
