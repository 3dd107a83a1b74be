"""Crop, flip and blocks keep image and mask aligned; ten-crop equals manual slicing."""

from __future__ import annotations

import pytest
import torch

from lkr.augment import MEAN, STD, center_crop, five_crop, ten_crop, to_input, train_augment
from lkr.config import Config


def _unique(b: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Random-pattern images (values 1..254, never black) that pin down any crop and flip, and
    masks holding the same pattern / 255."""
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(1, 255, (b, 48, 48), generator=g).to(torch.uint8)
    return imgs, imgs.float() / 255


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """Invert to_input: normalised float -> pixel values."""
    return torch.round((x * STD + MEAN) * 255)


def test_to_input_constants():
    x = torch.tensor([0, 128, 255], dtype=torch.uint8)
    torch.testing.assert_close(to_input(x), torch.tensor([-2.0, (128 / 255 - 0.5) / 0.25, 2.0]))
    torch.testing.assert_close(to_input(x.float()), to_input(x))
    assert to_input(x).dtype == torch.float32


def test_train_augment_mask_follows_crop_and_flip():
    imgs, masks = _unique()
    cfg = Config(erase_blocks=0)
    x, m = train_augment(imgs, masks, cfg, torch.Generator().manual_seed(1))
    assert x.shape == m.shape == (64, 1, 44, 44) and x.dtype == m.dtype == torch.float32
    torch.testing.assert_close(_pixels(x), torch.round(m * 255))  # aligned pixel by pixel
    # Every output is one of the 5x5 crops of its image, flipped or not; both happen.
    flips, offsets = [], set()
    for i in range(64):
        found = [(oy, ox, f) for oy in range(5) for ox in range(5) for f in (False, True)
                 if torch.equal(_pixels(x[i, 0]), (imgs[i, oy:oy + 44, ox:ox + 44].flip(-1) if f
                                                    else imgs[i, oy:oy + 44, ox:ox + 44]).float())]
        assert len(found) == 1, i
        offsets.add(found[0][:2])
        flips.append(found[0][2])
    assert 0 < sum(flips) < 64 and len(offsets) > 10


def test_train_augment_flip_probability_and_seed():
    imgs, masks = _unique(8)
    x0, _ = train_augment(imgs, masks, Config(flip_p=0.0, crop=48, erase_blocks=0), torch.Generator())
    assert torch.equal(_pixels(x0[:, 0]), imgs.float())  # crop 48, no flip = identity
    x1, m1 = train_augment(imgs, masks, Config(flip_p=1.0, crop=48, erase_blocks=0), torch.Generator())
    assert torch.equal(_pixels(x1[:, 0]), imgs.flip(-1).float())
    assert torch.equal(m1[:, 0], masks.flip(-1))
    a = train_augment(imgs, masks, Config(), torch.Generator().manual_seed(3))
    b = train_augment(imgs, masks, Config(), torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("blocks,size", [(1, 3), (2, 5)])
def test_erase_touches_image_only(blocks, size):
    imgs, masks = _unique(32)
    cfg = Config(erase_blocks=blocks, erase_size=size)
    x, m = train_augment(imgs, masks, cfg, torch.Generator().manual_seed(2))
    px, pm = _pixels(x[:, 0]), torch.round(m[:, 0] * 255)
    erased = px != pm
    assert (px[erased] == 0).all() and (pm > 0).all()  # black in the image, mask untouched
    counts = erased.sum(dim=(1, 2))
    assert (counts >= size * size).all() and (counts <= blocks * size * size).all()
    for i in range(32):  # the erased pixels form whole size x size blocks
        ys, xs = torch.nonzero(erased[i], as_tuple=True)
        if blocks == 1:
            assert ys.max() - ys.min() == size - 1 and xs.max() - xs.min() == size - 1


def test_train_augment_without_mask():
    imgs, _ = _unique(4)
    x, m = train_augment(imgs, None, Config(), torch.Generator())
    assert x.shape == (4, 1, 44, 44) and m is None


def test_ten_crop_matches_slicing():
    img = torch.arange(6 * 6, dtype=torch.uint8).reshape(1, 6, 6)
    mask = img.float() / 100
    x, m = ten_crop(img, mask, crop=4)
    assert x.shape == m.shape == (10, 1, 1, 4, 4)
    manual = [img[0, :4, :4], img[0, :4, 2:], img[0, 2:, :4], img[0, 2:, 2:], img[0, 1:5, 1:5]]
    manual += [c.flip(-1) for c in manual]
    for k, c in enumerate(manual):
        torch.testing.assert_close(x[k, 0, 0], to_input(c))
        torch.testing.assert_close(m[k, 0, 0], c.float() / 100)
    x2, m2 = ten_crop(torch.zeros(3, 48, 48, dtype=torch.uint8))
    assert x2.shape == (10, 3, 1, 44, 44) and m2 is None


def test_center_crop():
    imgs, masks = _unique(2)
    x, m = center_crop(imgs, masks, 44)
    assert x.shape == m.shape == (2, 1, 44, 44)
    torch.testing.assert_close(x[:, 0], to_input(imgs[:, 2:46, 2:46]))
    torch.testing.assert_close(m[:, 0], masks[:, 2:46, 2:46])
    tx, tm = ten_crop(imgs, masks, 44)
    torch.testing.assert_close(tx[4], x)  # ten-crop's fifth = the centre crop


def test_a_run_trained_without_flips_is_tested_without_them():
    """flip_p == 0 (the positive control: a flip moves its cue to another class's place): the
    reported split is predicted from the five unflipped crops, the first five of the ten."""
    import torch

    from lkr.augment import ten_crop
    from lkr.config import Config
    from lkr.evaluate import predict, test_crops

    assert test_crops(Config()) == "ten" and test_crops(Config(flip_p=0.0)) == "five"
    imgs = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)
    masks = torch.rand(3, 48, 48)
    x10, m10 = ten_crop(imgs, masks)
    x5, m5 = five_crop(imgs, masks)
    assert x10.shape[0] == 10 and x5.shape[0] == 5
    assert torch.equal(x5, x10[:5]) and torch.equal(m5, m10[:5])
    assert torch.equal(x10[5:], x10[:5].flip(-1))

    class Mean(torch.nn.Module):  # logits that depend on the left-right layout of the crop
        def forward(self, x, m=None):
            left = x[..., :22].mean((1, 2, 3))
            return {"logits": torch.stack([left, -left], 1)}

    p5, _ = predict(Mean(), imgs, None, crops="five")
    p10, _ = predict(Mean(), imgs, None, crops="ten")
    want = torch.softmax(torch.stack([x5[..., :22].mean((2, 3, 4)), -x5[..., :22].mean((2, 3, 4))], 2), 2).mean(0)
    assert torch.allclose(p5, want) and not torch.allclose(p5, p10)
