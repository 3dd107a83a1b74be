"""Grad-CAM through the mask-feeding wrapper, on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lkr.augment import center_crop
from lkr.config import Config
from lkr.gradcam import DEFAULT_LAYER, cam_arrays, layer_names, resolve_layer
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


def _manual_cam(model, images, masks, labels, module=None):
    """Grad-CAM written out: ReLU(sum_k mean(dy/dA_k) A_k) on a layer (default the cam layer),
    per face. A layer that sees 2B maps (the dual model's tail) sums both halves' terms."""
    module = model.cam_layer if module is None else module
    x, m = center_crop(torch.from_numpy(images), torch.from_numpy(masks))
    acts = {}
    h = module.register_forward_hook(lambda mod, i, o: acts.setdefault("a", o))
    try:
        out = model(x, m if model.local_branch else None)["logits"]
    finally:
        h.remove()
    a = acts["a"]
    score = out[torch.arange(len(labels)), torch.as_tensor(labels)].sum()
    (g,) = torch.autograd.grad(score, a)
    raw = (g.mean((2, 3), keepdim=True) * a).sum(1)  # (B or 2B, h, w)
    if raw.shape[0] == 2 * len(labels):
        raw = raw[:len(labels)] + raw[len(labels):]  # global branch + local branch
    return F.relu(raw).detach().numpy()


@pytest.mark.parametrize("variant", ["vgg19", "lkrnet"])
@pytest.mark.parametrize("mask_stage", [4, 5])
def test_cam_arrays_shape_range_and_hooks_released(variant, mask_stage):
    model = _model(variant, mask_stage)
    images, masks, labels = _data()
    cams = cam_arrays(model, images, masks, labels)
    assert cams.shape == (5, 44, 44) and cams.dtype == np.float32
    assert np.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1 + 1e-6
    assert not resolve_layer(model).module._forward_hooks  # the context manager released its hooks
    assert not model.cam_layer._forward_hooks
    assert not model.training


@pytest.mark.parametrize("variant", ["vgg19", "lkrnet"])
@pytest.mark.parametrize("layer, size, where", [
    ("p", 5, "cam"),          # the masked 5x5 maps (mask_stage=4): model.cam, batch B
    ("stage3", 11, "shared"),  # the default: 11x11, before the mask, batch B
    ("stage5", 2, "tail"),     # after the mask: the dual model's tail runs 2B maps
])
def test_cam_matches_grad_cam_written_out(variant, layer, size, where):
    from pytorch_grad_cam.utils.image import scale_cam_image

    model = _model(variant, mask_stage=4)
    target = resolve_layer(model, layer)
    assert target.size == (size, size) and target.in_tail == (where == "tail")
    assert (target.module is model.cam) == (where == "cam")
    images, masks, labels = _data(4, seed=1)
    cams = cam_arrays(model, images, masks, labels, batch_size=3, layer=layer)  # two batches
    manual = _manual_cam(model, images, masks, labels, target.module)  # (4, size, size)
    assert manual.shape == (4, size, size)
    # pytorch-grad-cam scales each map to [0, 1], resizes it to the input, and scales again
    ref = scale_cam_image(scale_cam_image(manual, (44, 44)))
    np.testing.assert_allclose(cams, ref, atol=1e-4)


def _rank(h: np.ndarray) -> int:
    return int(np.linalg.matrix_rank(h.astype(np.float64), tol=1e-3 * max(float(h.max()), 1e-9)))


@pytest.mark.parametrize("variant", ["vgg19", "lkrnet"])
def test_default_layer_is_finer_than_the_2x2_maps(variant):
    """A map of h x w cells bilinearly upsampled (and rescaled) has rank <= min(h, w) + 1: the
    2x2 maps p of mask_stage=5 give at most rank 3 ("four blocks"); the default layer's 11x11
    maps give a heatmap with many more independent rows."""
    assert DEFAULT_LAYER == "stage3"
    model = _model(variant, mask_stage=5)
    assert resolve_layer(model).size == (11, 11)
    images, masks, labels = _data(6, seed=2)
    fine = cam_arrays(model, images, masks, labels)
    coarse = cam_arrays(model, images, masks, labels, layer="p")
    assert max(_rank(h) for h in coarse) <= 3
    ranks = [_rank(h) for h in fine]
    # (a random network's evidence can sit on a single cell for some face: rank 1 there)
    assert np.median(ranks) >= 8 and sum(r >= 6 for r in ranks) >= len(ranks) - 1, ranks
    # not four blocks: the 22x22 quadrants of the heatmaps are not constant, nor near it
    for h, r in zip(fine, ranks):
        if r >= 6:
            q = h.reshape(2, 22, 2, 22).transpose(0, 2, 1, 3).reshape(4, -1)
            assert (q.std(1) > 0.02).sum() >= 3


@pytest.mark.parametrize("vgg_cfg", [None, (8, "M", 16, "M", 32, "M", 64, "M", 64, "M")], ids=["vgg19", "demo"])
@pytest.mark.parametrize("mask_stage", [4, 5])
def test_layer_names_resolve_to_the_stage_ends(vgg_cfg, mask_stage):
    """stageK is the ReLU output of the last conv before max-pool K, with the map size a hook sees."""
    kw = {} if vgg_cfg is None else {"vgg_cfg": vgg_cfg}
    model = build_model(Config.for_variant("lkrnet", mask_stage=mask_stage, fc_dims=(16, 8), **kw)).eval()
    assert layer_names(model) == ["stage1", "stage2", "stage3", "stage4", "stage5", "p"]
    seen = {}
    handles = []
    for name in layer_names(model):
        t = resolve_layer(model, name)
        handles.append(t.module.register_forward_hook(
            lambda mod, i, o, name=name: seen.setdefault(name, tuple(o.shape)) and None))
    try:
        with torch.no_grad():
            model(torch.zeros(2, 1, 44, 44), torch.ones(2, 1, 44, 44))
    finally:
        for h in handles:
            h.remove()
    for k, side in zip(range(1, 6), (44, 22, 11, 5, 2)):
        t = resolve_layer(model, f"stage{k}")
        assert t.name == f"stage{k}" and t.stage == k and t.size == (side, side)
        assert seen[f"stage{k}"][-2:] == (side, side)
        assert seen[f"stage{k}"][0] == (4 if k > mask_stage else 2)  # the tail runs 2B
        assert t.in_tail == (k > mask_stage)
        if k == mask_stage:
            assert t.module is model.cam
        else:
            assert isinstance(t.module, torch.nn.ReLU)
    assert resolve_layer(model, "p").module is model.cam and resolve_layer(model, "p").name == f"stage{mask_stage}"
    assert resolve_layer(model).name == "stage3"


def test_unknown_layer_is_a_clear_error():
    model = _model("lkrnet")
    images, masks, labels = _data(2)
    for bad in ("stage6", "stage0", "conv5", "layer4", ""):
        with pytest.raises(ValueError,
                           match=r"unknown Grad-CAM layer .*choose from stage1, stage2, stage3, stage4, stage5, p"):
            cam_arrays(model, images, masks, labels, layer=bad)


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
    assert z["cam"].dtype == np.float16 and "image" not in z.files  # the pixels: once a scale, beside
    with np.load(tmp_path / "gradcam_faces.npz") as f:
        assert f["index"].tolist() == list(faces) and np.array_equal(f["image"], ds.images[faces])
    np.testing.assert_allclose(z["cam"].astype(np.float32), cams, atol=2e-3)
    # the layer is recorded for Fig. 8; the trained model's heatmaps are finer than 2x2 blocks
    assert str(z["layer"]) == "stage3" and z["layer_size"].tolist() == [11, 11]
    assert np.median([_rank(h) for h in cams]) > 3
    z4 = np.load(export_gradcam(tmp_path / "run", tmp_path / "res4", ds, faces, layer="stage4"))
    assert str(z4["layer"]) == "stage4" and z4["layer_size"].tolist() == [5, 5]
    assert not np.allclose(z4["cam"], z["cam"])
    ck = make_demo("ckplus", n=60)
    with pytest.raises(RunError, match="CK"):
        export_gradcam(tmp_path / "run", tmp_path / "ck", ck, np.arange(4))
