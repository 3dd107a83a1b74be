"""LKRNet: VGG19 with a local key region branch (paper Sec. 3.1 Eq. 4, Sec. 3.2, Fig. 3).

The conv stack is data (``Config.vgg_cfg``: numbers are 3x3 conv widths, ``"M"`` a 2x2 max-pool).
It is cut right before max-pool number ``cfg.mask_stage`` (1-based):

    x (B,1,44,44) -> shared -> p (B,C,h,w) ---------------> tail -> head_global -> logits_global
                                 |                            ^ (same weights)
      mask (B,1,44,44) -> area-average to (h,w) -> p' = p * M  -> tail -> head_local -> logits_local

On a 44x44 crop the maps are 44 -> 22 -> 11 -> 5 -> 2 -> 1 after the five pools, so the default
``mask_stage=5`` weights the last 2x2 maps (the paper's "final feature maps p") and ``mask_stage=4``
the 5x5 maps. The tail (the rest of the stack, at least the last pool) is shared by both branches
and runs on one batch of 2B. Each branch has its own head (Fig. 3, "same structure but not shared
classification networks"): FC 4096 -> ReLU -> Dropout -> FC 256 (the embedding) -> ReLU ->
Dropout -> FC 7. The prediction fuses the two branches' logits (``cfg.fusion="mean"``).

Without ``cfg.local_branch`` (VGG19, Baseline 2) the model is the plain modified VGG19: no mask, no
local head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lkr.config import Config

FUSIONS = ("mean",)


def _conv_layers(vgg_cfg: tuple, width: float, batch_norm: bool, in_ch: int = 1) -> list[nn.Module]:
    """The conv stack as a flat list of modules; widths scaled by ``width`` (rounded, at least 4)."""
    layers: list[nn.Module] = []
    c = in_ch
    for v in vgg_cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out = max(4, int(round(int(v) * width)))
        layers.append(nn.Conv2d(c, out, kernel_size=3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU(inplace=True))
        c = out
    return layers


def pool_mask(mask: Tensor, size: tuple[int, int], *, how: str = "grid", pools: int = 4) -> Tensor:
    """A mask at input resolution brought to a feature map's size (Eq. 4's M↓).

    "grid": average-pooled on the grid the features were pooled on. Each 2x2 max-pool of the
    stack floors (44 -> 22 -> 11 -> 5 -> 2 drops the last row and column at 11 and 5), so every
    cell of M↓ is the mean of the mask over exactly the input pixels under that feature cell,
    and input rows and columns past ``h * 2**pools`` (32 of 44 for the 2x2 maps) reach no cell.
    "cover": adaptive average pooling of the whole mask onto (h, w) (44 -> 2: each cell the mean
    of a 22x22 quarter), so every pixel of the crop counts.

    Args:
        mask: (B, 1, H, W) float in [0, 1].
        size: (h, w) of the feature maps.
        how: "grid" or "cover".
        pools: the number of 2x2 max-pools between the input and the feature maps ("grid").

    Returns:
        (B, 1, h, w) float32 in [0, 1].
    """
    m = mask.float()
    if how == "cover":
        return F.adaptive_avg_pool2d(m, size)
    if how != "grid":
        raise ValueError(f"unknown mask pooling {how!r}; choose grid or cover")
    for _ in range(pools):
        m = F.avg_pool2d(m, 2)
    if tuple(m.shape[-2:]) != tuple(size):  # a crop the stack does not halve as assumed
        m = F.adaptive_avg_pool2d(m, size)
    return m


def mask_reach(crop: int, size: tuple[int, int], *, how: str = "grid", pools: int = 4) -> Tensor:
    """Which input pixels reach the pooled mask at all: (crop, crop) bool.

    A pixel reaches M↓ when the pooled mask depends on it (its gradient is non-zero).
    """
    ones = torch.ones(1, 1, crop, crop, requires_grad=True)
    (g,) = torch.autograd.grad(pool_mask(ones, size, how=how, pools=pools).sum(), ones)
    return g[0, 0] != 0


def region_coverage(boxes, points, cfg: Config, *, image_size: int = 48) -> dict[str, float]:
    """Share of each local key region's mask weight that reaches the pooled mask M↓.

    The regions are those of Eq. 1-3 around each landmark, on the centre crop of side
    ``cfg.crop``; the feature map size is the model's at ``cfg.mask_stage``.

    Args:
        boxes: (N, 4) face boxes in ``image_size`` pixel coordinates.
        points: (N, 5, 2) MTCNN landmarks (left eye, right eye, nose, left and right mouth corner).
        cfg: uses ``crop``, ``mask_stage``, ``mask_pool``, ``alpha``, ``vgg_cfg``.
        image_size: side of the images the landmarks are in.

    Returns:
        {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right", "all"} -> share in [0, 1]
        of the summed mask weight (over the N faces) that lies on pixels reaching M↓; "all" is the
        merged mask's.
    """
    import numpy as np

    from lkr.regions import region_masks

    boxes, points = np.asarray(boxes, np.float32), np.asarray(points, np.float32)
    h = cfg.crop
    for _ in range(cfg.mask_stage - 1):  # the map size as the stack's flooring max-pools give it
        h //= 2
    size = (h, h)
    reach = mask_reach(cfg.crop, size, how=cfg.mask_pool, pools=cfg.mask_stage - 1).numpy()
    o = (image_size - cfg.crop) // 2
    names = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
    out = {}
    for k, name in enumerate(names[:points.shape[1]]):
        m = region_masks(boxes, points[:, k:k + 1], alpha=cfg.alpha, size=image_size)[:, o:o + cfg.crop, o:o + cfg.crop]
        out[name] = float(m[:, reach].sum() / max(m.sum(), 1e-12))
    m = region_masks(boxes, points, alpha=cfg.alpha, size=image_size, merge=cfg.mask_merge)[:, o:o + cfg.crop, o:o + cfg.crop]
    out["all"] = float(m[:, reach].sum() / max(m.sum(), 1e-12))
    return out


class Head(nn.Module):
    """One branch's classifier (Fig. 3): flatten -> FC -> ReLU -> Dropout -> FC (embedding)
    -> ReLU -> Dropout -> FC (classes)."""

    def __init__(self, in_features: int, fc_dims: tuple, num_classes: int, dropout: float):
        super().__init__()
        hidden, emb = int(fc_dims[0]), int(fc_dims[1])
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, emb)
        self.fc3 = nn.Linear(emb, num_classes)
        self.drop = nn.Dropout(dropout)

    def forward(self, f: Tensor) -> tuple[Tensor, Tensor]:
        """Args: f (B,C,h,w) feature maps. Returns (embedding (B,fc_dims[1]), logits (B,K))."""
        h = self.drop(F.relu(self.fc1(torch.flatten(f, 1))))  # (B, 4096)
        emb = self.fc2(h)  # (B, 256): taken before its ReLU so it can be L2-normalised freely
        logits = self.fc3(self.drop(F.relu(emb)))  # (B, K)
        return emb, logits


class LKRNet(nn.Module):
    """The dual-branch network (or the single-branch modified VGG19 when ``not cfg.local_branch``).

    Attributes:
        shared: conv layers before max-pool number ``cfg.mask_stage``; output p (B,C,h,w).
        cam: identity on p, Grad-CAM's hook for the layer "p" (see :attr:`cam_layer`).
        tail: the remaining layers (from that max-pool to the end), shared by both branches.
        head_global, head_local: the branch classifiers (``head_local`` is None without the
            local branch).
    """

    def __init__(self, cfg: Config):
        super().__init__()
        if cfg.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {cfg.fusion!r}; choose from {', '.join(FUSIONS)}")
        pools = [i for i, v in enumerate(cfg.vgg_cfg) if v == "M"]
        if not 1 <= cfg.mask_stage <= len(pools):
            raise ValueError(f"mask_stage must be in 1..{len(pools)}, got {cfg.mask_stage}")
        if cfg.head_init not in ("vgg", "pytorch"):
            raise ValueError(f"unknown head_init {cfg.head_init!r}; choose from vgg, pytorch")
        if len(cfg.fc_dims) != 2:
            raise ValueError(f"fc_dims must hold two widths (hidden, embedding), got {cfg.fc_dims}")
        self.cfg = cfg
        self.local_branch = bool(cfg.local_branch)
        cut = pools[cfg.mask_stage - 1]
        layers = _conv_layers(tuple(cfg.vgg_cfg[:cut]), cfg.width, cfg.batch_norm)
        c_p = next((m.out_channels for m in reversed(layers) if isinstance(m, nn.Conv2d)), 1)
        self.shared = nn.Sequential(*layers)
        self.cam = nn.Identity()
        self.tail = nn.Sequential(*_conv_layers(tuple(cfg.vgg_cfg[cut:]), cfg.width, cfg.batch_norm, c_p))

        # Head input size from a dummy forward at the training crop (eval mode: BatchNorm on
        # a 1x1 map with batch 1 cannot run in train mode, and eval leaves running stats alone).
        convs = nn.Sequential(self.shared, self.tail).eval()
        with torch.no_grad():
            f = convs(torch.zeros(1, 1, cfg.crop, cfg.crop))  # (1, C, h, w)
        convs.train()
        self.feature_shape: tuple[int, int, int] = tuple(f.shape[1:])  # (C, h, w) after the tail
        in_features = f[0].numel()
        self.head_global = Head(in_features, cfg.fc_dims, cfg.num_classes, cfg.dropout)
        self.head_local = (Head(in_features, cfg.fc_dims, cfg.num_classes, cfg.dropout)
                           if self.local_branch else None)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision / timm VGG initialisation.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                if self.cfg.head_init == "pytorch":
                    m.reset_parameters()
                else:
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.zeros_(m.bias)

    @property
    def cam_layer(self) -> nn.Module:
        """The feature maps p that the mask weights (batch B, both branches' gradients flow
        through it): Grad-CAM's layer "p". With the default ``mask_stage=5`` this is the last
        conv's ReLU output, right before the final max-pool (2x2 maps on a 44x44 crop: four
        blocks), so Grad-CAM's default target is an earlier, finer layer; any VGG stage is
        named by :func:`lkr.gradcam.resolve_layer`."""
        return self.cam

    def downsample_mask(self, mask: Tensor, size: tuple[int, int]) -> Tensor:
        """Eq. 4's M↓: the mask brought to the feature maps' size, as ``cfg.mask_pool`` says
        (see :func:`pool_mask`).

        Args:
            mask: (B, 1, H, W) float in [0, 1], the input's crop and flip.
            size: (h, w) of the feature maps p.

        Returns:
            (B, 1, h, w) float32 in [0, 1].
        """
        return pool_mask(mask, size, how=self.cfg.mask_pool, pools=self.cfg.mask_stage - 1)

    def forward_features(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Conv features of both branches.

        Args:
            x: (B,1,H,W) float, normalised images (see :func:`lkr.augment.to_input`).
            mask: (B,1,H,W) float in [0,1], the local key region mask at input resolution (same
                crop and flip as ``x``). Required with the local branch, ignored without it.

        Returns:
            (f_global (B,C,h,w), f_local (B,C,h,w) or None) after the shared tail.
        """
        p = self.cam(self.shared(x))  # (B, C, h, w), the paper's p
        if not self.local_branch:
            return self.tail(p), None
        if mask is None:
            raise ValueError("the local branch needs a mask (B,1,H,W); got None")
        if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != x.shape[0]:
            raise ValueError(f"mask must be (B,1,H,W) with B={x.shape[0]}, got {tuple(mask.shape)}")
        m = self.downsample_mask(mask, p.shape[-2:]).to(p.dtype)  # (B, 1, h, w), Eq. 4's M(p)↓
        f = self.tail(torch.cat([p, p * m], dim=0))  # (2B, C', h', w'): one pass, shared weights
        b = x.shape[0]  # slices, not chunk(2): torch.export (ONNX) keeps the batch size symbolic
        f_global, f_local = f[:b], f[b:]
        return f_global, f_local

    def forward_head(self, f_global: Tensor, f_local: Tensor | None = None) -> dict[str, Tensor]:
        """Branch heads and fusion; see :meth:`forward` for the keys."""
        emb_g, logits_g = self.head_global(f_global)
        out = {"logits_global": logits_g, "embedding_global": emb_g}
        if f_local is None:
            out["logits"], out["embedding"] = logits_g, emb_g
            return out
        emb_l, logits_l = self.head_local(f_local)
        out.update(logits_local=logits_l, embedding_local=emb_l)
        out["logits"] = (logits_g + logits_l) / 2  # fusion "mean"
        out["embedding"] = (emb_g + emb_l) / 2
        return out

    def forward(self, x: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """Args:
            x: (B,1,H,W) float normalised images.
            mask: (B,1,H,W) float in [0,1] or None (required with the local branch).

        Returns:
            dict with "logits" (B,K) fused prediction, "logits_global" (B,K), "embedding" (B,D)
            (mean of the branches' embeddings for the dual model, not normalised),
            "embedding_global" (B,D), and with the local branch also "logits_local" (B,K) and
            "embedding_local" (B,D). D = ``cfg.fc_dims[1]`` (256), K = ``cfg.num_classes``.
        """
        return self.forward_head(*self.forward_features(x, mask))


class MaskedModel(nn.Module):
    """The small wrapper module that feeds the mask, for pytorch-grad-cam (which calls
    ``model(x)`` and expects a logits tensor).

    Example::

        with GradCAM(MaskedModel(net, m), target_layers=[net.cam_layer]) as cam:
            heat = cam(input_tensor=x)  # (B, H, W)
    """

    mask: Tensor | None

    def __init__(self, model: LKRNet, mask: Tensor | None):
        """Args: model; mask (B,1,H,W) or (1,1,H,W) float in [0,1], or None for a single-branch
        model. It should be on the model's device."""
        super().__init__()
        self.model = model
        self.register_buffer("mask", None if mask is None else mask.float())

    @property
    def cam_layer(self) -> nn.Module:
        return self.model.cam_layer

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B,1,H,W). Returns the fused logits (B,K)."""
        m = self.mask
        if m is not None and m.shape[0] == 1 and x.shape[0] != 1:
            m = m.expand(x.shape[0], -1, -1, -1)
        return self.model(x, m)["logits"]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_model(cfg: Config) -> LKRNet:
    """The model of ``cfg`` (on CPU, float32; the trainer moves it and sets channels_last)."""
    return LKRNet(cfg)
