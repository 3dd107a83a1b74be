"""Local key region masks: Eq. 1-3 by hand, merging, shapes, and the mask follows crop and flip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lkr.regions import region_masks

# One landmark at the centre of pixel (row 20, column 10); a 40x40 box, so with alpha = 0.3 the
# region is 12x12 (Eq. 1-2) and its corners (x 4.5 / 16.5, y 14.5 / 26.5) are pixel centres too.
BOX = np.array([[2.0, 3.0, 42.0, 43.0]], np.float32)
POINT = np.array([[[10.5, 20.5]]], np.float32)


def test_eq3_by_hand():
    m = region_masks(BOX, POINT, alpha=0.3, size=48)[0]
    assert m[20, 10] == pytest.approx(1.0)  # the landmark
    for row, col in [(14, 4), (14, 16), (26, 4), (26, 16)]:  # the four corners: d = d_max
        assert m[row, col] == pytest.approx(0.0, abs=1e-6)
    # halfway from the landmark to a corner: 1 - 0.5 = 0.5
    assert m[17, 7] == pytest.approx(0.5) and m[23, 13] == pytest.approx(0.5)
    # on the edge midpoint (x = 16.5, y = 20.5): d = 6, d_max = sqrt(72)
    assert m[20, 16] == pytest.approx(1 - 6 / np.sqrt(72))
    # one pixel past an edge is outside the rectangle: 0 although 1 - d/d_max > 0 there
    assert m[20, 17] == 0 and m[20, 3] == 0 and m[13, 10] == 0 and m[27, 10] == 0
    # region size = alpha x box size: the non-zero support spans 12 + 1 pixel centres, minus corners
    rows, cols = np.nonzero(m)
    assert rows.min() == 14 and rows.max() == 26 and cols.min() == 4 and cols.max() == 16
    assert (m > 0).sum() == 13 * 13 - 4


def test_region_size_follows_alpha_and_box():
    box = np.array([[0.0, 0.0, 40.0, 20.0]], np.float32)  # wide box: a 12 x 6 region at alpha 0.3
    pt = np.array([[[24.5, 24.5]]], np.float32)
    m = region_masks(box, pt, alpha=0.3)[0]
    rows, cols = np.nonzero(m > 0)
    assert cols.max() - cols.min() == 12 and rows.max() - rows.min() == 6
    m2 = region_masks(box, pt, alpha=0.5)[0]  # 20 x 10
    rows, cols = np.nonzero(m2 > 0)
    assert cols.max() - cols.min() == 20 and rows.max() - rows.min() == 10


def test_merge_max_and_sum_of_overlapping_regions():
    pts = np.array([[[20.5, 20.5], [24.5, 20.5]]], np.float32)  # two regions 4 px apart
    a = region_masks(BOX, pts[:, :1], size=48)[0]
    b = region_masks(BOX, pts[:, 1:], size=48)[0]
    both = region_masks(BOX, pts, size=48)[0]
    np.testing.assert_allclose(both, np.maximum(a, b), atol=1e-6)
    assert ((a > 0) & (b > 0)).sum() > 20  # they do overlap
    summed = region_masks(BOX, pts, size=48, merge="sum")[0]
    np.testing.assert_allclose(summed, np.clip(a + b, 0, 1), atol=1e-6)
    assert (summed > both + 0.1).any()
    with pytest.raises(ValueError, match="merge"):
        region_masks(BOX, pts, merge="mean")


def test_shapes_range_and_dtype():
    rng = np.random.default_rng(0)
    n = 37
    x1y1 = rng.uniform(0, 10, (n, 2))
    boxes = np.concatenate([x1y1, x1y1 + rng.uniform(25, 38, (n, 2))], 1).astype(np.float32)
    points = rng.uniform(-5, 53, (n, 5, 2)).astype(np.float32)  # also outside the image
    m = region_masks(boxes, points, size=48, chunk=10)  # several chunks
    assert m.shape == (n, 48, 48) and m.dtype == np.float32
    assert m.min() >= 0 and m.max() <= 1 and (m.reshape(n, -1).max(1) > 0.5).mean() > 0.8
    np.testing.assert_array_equal(m, region_masks(boxes, points, size=48))
    assert region_masks(boxes[:0], points[:0]).shape == (0, 48, 48)
    # torch in, torch out, same values
    mt = region_masks(torch.from_numpy(boxes), torch.from_numpy(points), size=48)
    assert isinstance(mt, torch.Tensor) and mt.dtype == torch.float32
    np.testing.assert_allclose(mt.numpy(), m, atol=1e-5)


def _random_faces(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = np.array([[15.4, 20.2], [32.6, 20.0], [24.0, 29.1], [16.6, 37.8], [31.4, 37.6]])
    points = (base + rng.normal(0, 2, (n, 5, 2))).astype(np.float32)
    boxes = (np.array([4.0, 3.0, 44.0, 48.0]) + rng.normal(0, 2, (n, 4))).astype(np.float32)
    return boxes, points


@pytest.mark.parametrize("x0,y0", [(0, 0), (4, 4), (2, 3), (4, 0)])
def test_mask_follows_crop(x0, y0):
    boxes, points = _random_faces(20)
    full = region_masks(boxes, points, size=48)
    shift = np.array([x0, y0], np.float32)
    cropped = region_masks(boxes - np.tile(shift, 2), points - shift, size=44)
    np.testing.assert_allclose(cropped, full[:, y0:y0 + 44, x0:x0 + 44], atol=1e-5)


def test_mask_follows_flip():
    boxes, points = _random_faces(20)
    full = region_masks(boxes, points, size=48)
    fp = points.copy()
    fp[..., 0] = 48 - fp[..., 0]  # x' = W - x in continuous coordinates
    fb = boxes.copy()
    fb[:, [0, 2]] = 48 - boxes[:, [2, 0]]
    np.testing.assert_allclose(region_masks(fb, fp, size=48), full[:, :, ::-1], atol=1e-5)
    # crop then flip, as the training augmentation does
    crop = region_masks(fb - np.array([4, 2, 4, 2], np.float32), fp - np.array([4, 2], np.float32), size=44)
    np.testing.assert_allclose(crop, full[:, :, ::-1][:, 2:46, 4:48], atol=1e-5)
