"""LKRNet shapes, the baseline switches, the mask's effect, Grad-CAM wiring, and a few SGD steps."""

from __future__ import annotations

import pytest
import torch

from lkr.config import VARIANTS, Config
from lkr.demo import make_demo
from lkr.losses import lkr_loss
from lkr.model import LKRNet, MaskedModel, build_model, count_parameters

B, K, D = 4, 7, 32
TINY = dict(width=0.125, fc_dims=(64, D))


def tiny(variant: str, **kw) -> Config:
    return Config.for_variant(variant, **{**TINY, **kw})


def inputs(b: int = B, crop: int = 44, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, crop, crop, generator=g), torch.rand(b, 1, crop, crop, generator=g)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("mask_stage", [5, 4])
def test_output_shapes_and_keys(variant, mask_stage):
    cfg = tiny(variant, mask_stage=mask_stage)
    model = build_model(cfg).eval()
    x, m = inputs()
    out = model(x, m)
    dual = cfg.local_branch
    expected = {"logits", "logits_global", "embedding", "embedding_global"}
    if dual:
        expected |= {"logits_local", "embedding_local"}
    assert set(out) == expected
    for key in out:
        assert out[key].shape == ((B, K) if key.startswith("logits") else (B, D)), key
    assert model.feature_shape == (64, 1, 1)  # 512 * 0.125 channels, 44 -> 1 after five pools
    p = model.shared(x)
    assert p.shape[-2:] == ((2, 2) if mask_stage == 5 else (5, 5))  # where the mask acts
    if dual:
        torch.testing.assert_close(out["logits"], (out["logits_global"] + out["logits_local"]) / 2)
        torch.testing.assert_close(out["embedding"], (out["embedding_global"] + out["embedding_local"]) / 2)
    else:
        assert torch.equal(out["logits"], out["logits_global"])
        assert torch.equal(out["embedding"], out["embedding_global"])


def test_head_size_follows_crop():
    cfg = Config(**TINY, crop=48, mask_stage=3)
    model = build_model(cfg).eval()
    assert model.feature_shape == (64, 1, 1)  # 48 -> 24 -> 12 -> 6 -> 3 -> 1
    x, m = inputs(crop=48)
    assert model(x, m)["logits"].shape == (B, K)
    cfg = Config(**TINY, vgg_cfg=(8, "M", 16, "M"), crop=44, mask_stage=2)  # a shorter stack: 44 -> 22 -> 11
    model = build_model(cfg)
    assert model.feature_shape == (4, 11, 11)  # 16 * 0.125 = 2 -> at least 4
    assert model.head_global.fc1.in_features == 4 * 11 * 11


def test_full_width_vgg19_layout():
    model = LKRNet(Config())
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [v for v in Config().vgg_cfg if v != "M"]
    assert model.head_global.fc1.in_features == 512 and model.head_global.fc1.out_features == 4096
    assert model.head_global.fc2.out_features == 256 and model.head_global.fc3.out_features == 7
    n_single = count_parameters(LKRNet(Config.for_variant("vgg19")))
    head = sum(p.numel() for p in model.head_local.parameters())
    assert count_parameters(model) == n_single + head


@pytest.mark.parametrize("variant", ["vgg19", "baseline2"])
def test_single_branch_has_no_local_head(variant):
    model = build_model(tiny(variant))
    assert model.head_local is None
    assert not any("local" in name for name, _ in model.named_parameters())
    dual = build_model(tiny("lkrnet"))
    assert count_parameters(dual) - count_parameters(model) == count_parameters(dual.head_local)


def test_mask_changes_dual_output_only():
    x, m = inputs()
    m2 = torch.rand_like(m)
    for variant, changes in [("lkrnet", True), ("baseline1", True), ("vgg19", False), ("baseline2", False)]:
        model = build_model(tiny(variant, mask_stage=4)).eval()
        with torch.no_grad():
            a, b = model(x, m), model(x, m2)
        assert torch.equal(a["logits_global"], b["logits_global"])  # global branch never sees it
        assert (not torch.equal(a["logits"], b["logits"])) == changes, variant
    single = build_model(tiny("vgg19")).eval()
    with torch.no_grad():
        assert torch.equal(single(x)["logits"], single(x, m)["logits"])


def test_zero_mask_kills_local_features():
    model = build_model(tiny("lkrnet")).eval()
    x, _ = inputs()
    f_g, f_l = model.forward_features(x, torch.zeros(B, 1, 44, 44))
    assert f_g.abs().sum() > 0 and torch.count_nonzero(f_l) == 0  # p' = p * 0 (no conv biases)
    f_g2, f_l2 = model.forward_features(x, torch.ones(B, 1, 44, 44))
    torch.testing.assert_close(f_g2, f_l2)  # p' = p * 1


def test_dual_needs_mask():
    model = build_model(tiny("lkrnet"))
    x, m = inputs()
    with pytest.raises(ValueError, match="mask"):
        model(x)
    with pytest.raises(ValueError, match="mask"):
        model(x, m[:2])


def test_bad_config():
    with pytest.raises(ValueError, match="mask_stage"):
        LKRNet(Config(**TINY, mask_stage=6))
    with pytest.raises(ValueError, match="fusion"):
        LKRNet(Config(**TINY, fusion="max"))


def test_masked_model_and_gradcam():
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = build_model(tiny("lkrnet")).eval()
    x, m = inputs()
    wrapped = MaskedModel(model, m)
    torch.testing.assert_close(wrapped(x), model(x, m)["logits"])
    torch.testing.assert_close(MaskedModel(model, m[:1])(x), model(x, m[:1].expand(B, -1, -1, -1))["logits"])
    with GradCAM(model=wrapped, target_layers=[wrapped.cam_layer]) as cam:
        heat = cam(input_tensor=x, targets=[ClassifierOutputTarget(i % K) for i in range(B)])
    assert heat.shape == (B, 44, 44)
    assert ((heat >= 0) & (heat <= 1)).all()


def test_channels_last_and_bf16_autocast_cpu():
    model = build_model(tiny("lkrnet", mask_stage=4)).eval()
    x, m = inputs()
    ref = model(x, m)["logits"]
    model_cl = model.to(memory_format=torch.channels_last)
    out = model_cl(x.contiguous(memory_format=torch.channels_last), m)["logits"]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, m)
    assert out["logits"].dtype == torch.bfloat16
    torch.testing.assert_close(out["logits"].float(), ref, rtol=0.1, atol=0.05)


@pytest.mark.parametrize("variant", ["lkrnet", "vgg19"])
def test_sgd_steps_lower_the_loss(variant):
    torch.manual_seed(0)
    cfg = tiny(variant, dropout=0.0, crop=32)  # 32 -> 1 after five pools; smaller = faster
    model = build_model(cfg)
    n = 3 * B if cfg.uses_triplet else B
    x, m = inputs(n, crop=32, seed=1)
    labels = torch.tensor([0, 1, 2, 3] * (n // B))
    if cfg.uses_triplet:  # [anchors; positives (same classes); negatives (other classes)]
        labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 1, 2, 3, 0])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        total, parts = lkr_loss(model(x, m), labels, cfg)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(parts["total"].item())
    assert losses[-1] < losses[0] - 0.2, losses


def test_mask_is_pooled_on_the_feature_grid():
    """At stage 5 on a 44x44 crop the 2x2 feature cells cover input rows/cols 0-15 and 16-31
    (the pools floor at 11 -> 5 and 5 -> 2): mask pixels in rows 32-43 fall under no cell."""
    model = build_model(tiny("lkrnet"))
    mask = torch.zeros(1, 1, 44, 44)
    mask[..., 32:, :] = 1.0
    assert model.downsample_mask(mask, (2, 2)).abs().max() == 0
    mask = torch.zeros(1, 1, 44, 44)
    mask[..., 16:32, 0:16] = 1.0  # exactly the bottom-left feature cell
    torch.testing.assert_close(model.downsample_mask(mask, (2, 2))[0, 0], torch.tensor([[0.0, 0.0], [1.0, 0.0]]))


def test_cover_pooling_takes_the_whole_crop():
    """mask_pool="cover": each 2x2 cell averages a 22x22 quarter of the crop, rows 32-43 included."""
    model = build_model(tiny("lkrnet", mask_pool="cover"))
    mask = torch.zeros(1, 1, 44, 44)
    mask[..., 22:, :22] = 1.0  # the bottom-left quarter
    torch.testing.assert_close(model.downsample_mask(mask, (2, 2))[0, 0], torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    mask = torch.zeros(1, 1, 44, 44)
    mask[..., 40:, 40:] = 1.0  # the bottom-right corner: lost on the grid, counted here
    assert model.downsample_mask(mask, (2, 2))[0, 0, 1, 1] == pytest.approx(16 / 22 ** 2)


@pytest.mark.parametrize("mask_stage", [4, 5])
def test_every_region_reaches_the_features_under_cover(mask_stage):
    """Each of the five local key regions of the template face, alone, gives a non-zero pooled
    mask and reaches it entirely under "cover"; on the grid at stage 5 the mouth corners mostly
    fall below row 32 and barely count."""
    import numpy as np

    from lkr.landmarks import DEFAULT_TEMPLATE_BOX, DEFAULT_TEMPLATE_POINTS
    from lkr.model import region_coverage
    from lkr.regions import region_masks

    box, pts = DEFAULT_TEMPLATE_BOX[None], DEFAULT_TEMPLATE_POINTS[None]
    cfg = tiny("lkrnet", mask_pool="cover", mask_stage=mask_stage)
    model = build_model(cfg)
    size = model.shared(torch.zeros(1, 1, 44, 44)).shape[-2:]
    for k in range(5):
        m = torch.from_numpy(region_masks(box, pts[:, k:k + 1], size=48))[:, None, 2:46, 2:46]
        assert model.downsample_mask(m, size).sum() > 0.01, k
    cov = region_coverage(box, pts, cfg)
    assert all(v == pytest.approx(1.0) for v in cov.values()), cov
    grid = region_coverage(box, pts, tiny("lkrnet", mask_pool="grid", mask_stage=5))
    assert grid["left_eye"] == pytest.approx(1.0)
    assert grid["mouth_left"] < 0.25 and grid["mouth_right"] < 0.25 and grid["all"] < 0.7, grid
    assert np.isfinite(list(grid.values())).all()


def test_bad_mask_pool_and_mining_are_config_errors():
    from lkr.errors import ConfigError

    for kw in ({"mask_pool": "nearest"}, {"triplet_mining": "hardest"}, {"triplet_mining": "random", "batch_classes": 3},
               {"triplet_mining": "batch_hard", "batch_classes": 9}):
        with pytest.raises(ConfigError):
            Config(**kw)


def test_a_run_that_never_leaves_warm_up_is_refused_when_training_starts(tmp_path):
    """The guard is checked when training starts: a record of such a run (an older short run)
    still loads for evaluation, export and prediction."""
    from lkr.errors import ConfigError
    from lkr.train import train

    with pytest.raises(ConfigError, match="never leaves the warm-up"):
        Config(epochs=20).check_trainable()  # the paper's 20 warm-up epochs at 1e-4
    with pytest.raises(ConfigError, match="never leaves the warm-up"):
        Config(epochs=3, schedule="cosine").check_trainable()  # the ramp gets to 3/20 of lr
    for ok in (Config(epochs=21), Config(epochs=3, warmup_epochs=1),
               Config(epochs=1, warmup_epochs=1, schedule="cosine")):  # the ramp reaches lr at the end
        ok.check_trainable()
    short = Config(epochs=20)
    assert Config.from_dict(short.to_dict()) == short  # reading the record is not refused
    with pytest.raises(ConfigError, match="never leaves the warm-up"):
        train(make_demo("fer2013", n=70), short, tmp_path / "r", device="cpu", progress=False)
    assert not (tmp_path / "r").exists()
