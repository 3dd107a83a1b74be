"""Grad-CAM through the mask-feeding wrapper, on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lkr.augment import center_crop
from lkr.config import Config
from lkr.gradcam import cam_arrays
from lkr.model import build_model

TINY = dict(vgg_cfg=(4, "M", 8, "M", 8, "M", 8, "M", 8, "M"), fc_dims=(16, 8), head_init="pytorch", dropout=0.0)


def _model(variant: str, mask_stage: int = 5, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(Config.for_variant(variant, mask_stage=mask_stage, **TINY)).eval()


def _data(n: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
    masks = np.zeros((n, 48, 48), np.float32)
    masks[:, 10:30, 8:40] = 1.0
    return images, masks, rng.integers(0, 7, n)


def _manual_cam(model, images, masks, labels):
    """Grad-CAM written out: ReLU(sum_k mean(dy/dA_k) A_k) on the cam layer, per face."""
    x, m = center_crop(torch.from_numpy(images), torch.from_numpy(masks))
    acts = {}
    h = model.cam_layer.register_forward_hook(lambda mod, i, o: acts.setdefault("a", o))
    try:
        out = model(x, m if model.local_branch else None)["logits"]
    finally:
        h.remove()
    a = acts["a"]
    score = out[torch.arange(len(labels)), torch.as_tensor(labels)].sum()
    (g,) = torch.autograd.grad(score, a)
    cam = F.relu((g.mean((2, 3), keepdim=True) * a).sum(1))  # (B, h, w)
    return cam.detach().numpy()


@pytest.mark.parametrize("variant", ["vgg19", "lkrnet"])
@pytest.mark.parametrize("mask_stage", [4, 5])
def test_cam_arrays_shape_range_and_hooks_released(variant, mask_stage):
    model = _model(variant, mask_stage)
    images, masks, labels = _data()
    cams = cam_arrays(model, images, masks, labels)
    assert cams.shape == (5, 44, 44) and cams.dtype == np.float32
    assert np.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1 + 1e-6
    assert not model.cam_layer._forward_hooks  # the context manager released its hooks
    assert not model.training


@pytest.mark.parametrize("variant", ["vgg19", "lkrnet"])
def test_cam_matches_grad_cam_written_out(variant):
    from pytorch_grad_cam.utils.image import scale_cam_image

    model = _model(variant, mask_stage=4)  # 5x5 maps
    images, masks, labels = _data(4, seed=1)
    cams = cam_arrays(model, images, masks, labels, batch_size=3)  # two batches
    manual = _manual_cam(model, images, masks, labels)  # (4, 5, 5)
    # pytorch-grad-cam scales each map to [0, 1], resizes it to the input, and scales again
    ref = scale_cam_image(scale_cam_image(manual, (44, 44)))
    np.testing.assert_allclose(cams, ref, atol=1e-4)


def test_mask_is_fed_to_the_local_branch():
    model = _model("lkrnet", mask_stage=4)
    images, masks, labels = _data(3)
    other = np.zeros_like(masks)
    other[:, 30:46, 4:44] = 1.0
    a = cam_arrays(model, images, masks, labels)
    b = cam_arrays(model, images, other, labels)
    assert not np.allclose(a, b)
    # the single-branch model ignores masks
    vgg = _model("vgg19", mask_stage=4)
    assert np.allclose(cam_arrays(vgg, images, masks, labels), cam_arrays(vgg, images, other, labels))
    assert np.allclose(cam_arrays(vgg, images, None, labels), cam_arrays(vgg, images, masks, labels))


def test_predicted_class_target_when_no_labels():
    model = _model("lkrnet", mask_stage=4)
    images, masks, _ = _data(3)
    with torch.no_grad():
        x, m = center_crop(torch.from_numpy(images), torch.from_numpy(masks))
        pred = model(x, m)["logits"].argmax(1).numpy()
    assert np.allclose(cam_arrays(model, images, masks), cam_arrays(model, images, masks, pred))


def test_local_branch_needs_masks():
    images, _, labels = _data(2)
    with pytest.raises(ValueError, match="masks"):
        cam_arrays(_model("lkrnet"), images, None, labels)


def test_cam_arrays_from_a_run_folder(tmp_path):
    """The run-folder path loads best.pt; the export refuses CK+-like data (no CK+ faces stored)."""
    from lkr.demo import make_demo
    from lkr.errors import RunError
    from lkr.results import export_gradcam, gradcam_faces
    from lkr.train import config_for, train

    ds = make_demo("fer2013", n=140)
    cfg = config_for(ds, "lkrnet", epochs=1, **{k: v for k, v in TINY.items()})
    train(ds, cfg, tmp_path / "run", progress=False)
    test = np.flatnonzero(ds.splits == "PrivateTest")
    faces = gradcam_faces(ds, test, n=7)
    assert len(faces) == 7 and set(ds.labels[faces]) == set(range(7))  # one face per class
    from lkr.regions import region_masks

    m = region_masks(ds.boxes[faces], ds.points[faces])
    cams = cam_arrays(tmp_path / "run", ds.images[faces], m, ds.labels[faces])
    assert cams.shape == (7, 44, 44)
    path = export_gradcam(tmp_path / "run", tmp_path / "res", ds, faces)
    z = np.load(path)
    assert z["cam"].dtype == np.float16 and z["image"].shape == (7, 48, 48)
    np.testing.assert_allclose(z["cam"].astype(np.float32), cams, atol=2e-3)
    ck = make_demo("ckplus", n=60)
    with pytest.raises(RunError, match="CK"):
        export_gradcam(tmp_path / "run", tmp_path / "ck", ck, np.arange(4))
