"""Grad-CAM heatmaps (paper Sec. 4.3.3, Fig. 8) through pytorch-grad-cam.

The network's forward takes a mask beside the image, so it is wrapped in
:class:`lkr.model.MaskedModel`, which feeds the faces' local key region masks and returns the
fused logits.

**Target layer** (``layer``, pytorch-grad-cam's ``target_layers``): ``"stageK"`` is the output
(after its ReLU) of the last conv of VGG stage K, right before max-pool number K; ``"p"`` is
the feature maps p that the mask weights (``stage{cfg.mask_stage}``, :attr:`LKRNet.cam_layer`).
The names resolve for any ``Config.vgg_cfg`` (:func:`resolve_layer`, :func:`layer_names`).
On a 44x44 crop the maps before pools 1-5 are 44, 22, 11, 5 and 2 pixels wide.

The default is :data:`DEFAULT_LAYER` = ``"stage3"``, the 11x11 maps before pool 3. The paper's
p (2x2 before pool 5 with ``mask_stage=5``) gives four blocks, one per quadrant of the face,
which cannot say "eyes" or "mouth"; 5x5 (before pool 4) gives cells of 8-9 pixels, about a
whole eye each. 11x11 cells are 4 pixels of the crop, so an eye, the nose or a mouth corner
covers 2-3 cells and the heatmap shows which of them carries the class, while the units already
see 32x32 pixels of the 44x44 crop (8 of VGG19's 16 convs). Every layer of the default
``mask_stage=5`` up to p lies in the ``shared`` part of the network, which both branches'
gradients flow through (batch B), so the heatmap of the dual model is Grad-CAM of the fused
logits through both branches. A layer after the mask (in the ``tail``, e.g. ``stage5`` with
``mask_stage=4``) runs on the batch of 2B (global maps, then masked maps): its two halves are
joined along the channels (pytorch-grad-cam's ``reshape_transform``), so the heatmap is
ReLU(global branch's sum + local branch's sum), what Grad-CAM gives at a shared layer.
VGG19 and Baseline 2 (no local branch) use the same layer of their single branch, so the two
columns of Fig. 8 are comparable. ``gradcam.npz`` and Fig. 8 name the layer.

Target: the **true class** (``ClassifierOutputTarget(label)``) when labels are given, else the
predicted class. Fig. 8 asks "which pixels support this expression?", the same question for
both models, so the true class is used for the figure (a wrong prediction would otherwise show
evidence for another class in one column only).

Faces go in as their 44x44 centre crop (:func:`lkr.augment.center_crop`), the view the network
is trained on; heatmaps come back at that size (pytorch-grad-cam's bilinear upsampling), each
scaled to [0, 1] by pytorch-grad-cam.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from lkr.augment import center_crop
from lkr.model import LKRNet, MaskedModel

DEFAULT_LAYER = "stage3"
"""Grad-CAM's default target layer: the 11x11 maps before max-pool 3 (see the module docstring)."""


@dataclass(frozen=True)
class CamLayer:
    """A resolved Grad-CAM target layer.

    Attributes:
        name: canonical name, ``"stageK"``.
        stage: K, 1-based: the layer is the output of the last conv of VGG stage K, right
            before max-pool number K.
        module: the module to hook (its ReLU, or ``model.cam`` for p).
        in_tail: True when the layer lies after the mask point (``model.tail``), where the dual
            model runs one batch of 2B.
        size: (h, w) of its maps on the model's crop (``cfg.crop``).

    ``gradcam.npz`` stores ``name`` and ``size``; :func:`lkr.figures.gradcam_layer_label` words them.
    """

    name: str
    stage: int
    module: nn.Module
    in_tail: bool
    size: tuple[int, int]


def _stack(model: LKRNet) -> tuple[list[nn.Module], int]:
    """(every conv-stack module in order, number of them in ``model.shared``)."""
    shared = list(model.shared)
    return shared + list(model.tail), len(shared)


def layer_names(model: LKRNet) -> list[str]:
    """The layer names :func:`resolve_layer` accepts for ``model``: "stage1" ... "stageN"
    (N = max-pools of the stack) and "p" (= ``stage{cfg.mask_stage}``)."""
    modules, _ = _stack(model)
    n = sum(isinstance(m, nn.MaxPool2d) for m in modules)
    return [f"stage{k}" for k in range(1, n + 1)] + ["p"]


def resolve_layer(model: LKRNet, layer: str = DEFAULT_LAYER) -> CamLayer:
    """The module of a named Grad-CAM target layer of ``model``.

    Args:
        model: the network (any ``vgg_cfg`` and ``mask_stage``).
        layer: "stageK" (the ReLU output of the last conv before max-pool number K, 1-based)
            or "p" (the maps the mask weights, ``stage{cfg.mask_stage}``).

    Returns:
        :class:`CamLayer`. For the stage the mask is applied at, the module is ``model.cam``
        (the identity on p, batch B); layers before it lie in ``model.shared``, layers after it
        in ``model.tail``.

    Raises:
        ValueError: for a name that is not one of :func:`layer_names`, or a stage without a conv.
    """
    names = layer_names(model)
    key = str(layer).strip()
    if key == "p":
        key = f"stage{model.cfg.mask_stage}"
    if key not in names:
        raise ValueError(f"unknown Grad-CAM layer {layer!r}; choose from {', '.join(names)} "
                         "(stageK = the last conv before max-pool K; p = the maps the mask weights)")
    k = int(key[len("stage"):])
    modules, n_shared = _stack(model)
    pools = [i for i, m in enumerate(modules) if isinstance(m, nn.MaxPool2d)]
    i = pools[k - 1]  # position of max-pool number k
    if i == 0 or isinstance(modules[i - 1], nn.MaxPool2d):
        raise ValueError(f"Grad-CAM layer {key!r}: VGG stage {k} has no conv in vgg_cfg {model.cfg.vgg_cfg}")
    h = w = int(model.cfg.crop)
    for _ in range(k - 1):
        h, w = h // 2, w // 2
    if i == n_shared:  # pool k is the first module of the tail: the stage ends at p
        return CamLayer(key, k, model.cam, False, (h, w))
    return CamLayer(key, k, modules[i - 1], i - 1 >= n_shared, (h, w))


def _join_branches(t: torch.Tensor) -> torch.Tensor:
    """(2B, C, h, w) tail maps [global; masked] -> (B, 2C, h, w), the branches side by side."""
    b = t.shape[0] // 2
    return torch.cat([t[:b], t[b:]], dim=1)


def cam_arrays(
    run_or_model: str | Path | LKRNet,
    images: np.ndarray,
    masks: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    *,
    crop: int = 44,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    layer: str = DEFAULT_LAYER,
) -> np.ndarray:
    """Grad-CAM heatmaps of a model on faces.

    Args:
        run_or_model: a trained run folder (its selected weights are loaded) or an
            :class:`~lkr.model.LKRNet`.
        images: (N, 48, 48) uint8 faces.
        masks: (N, 48, 48) float in [0, 1] local key region masks; required when the model has
            the local branch, ignored without it.
        labels: (N,) int true classes to explain; None explains each face's predicted class.
        crop: centre-crop side (the network's input size, 44).
        batch_size: faces per Grad-CAM pass.
        device: where the model runs.
        layer: the target layer, "stageK" or "p" (:func:`resolve_layer`); default
            :data:`DEFAULT_LAYER`, the 11x11 maps before max-pool 3.

    Returns:
        (N, crop, crop) float32 heatmaps in [0, 1] (each scaled to its own maximum; all zeros
        where the class evidence is nowhere positive).

    Raises:
        ValueError: when the model needs masks and none are given, or for an unknown layer.
    """
    if isinstance(run_or_model, LKRNet):
        model = run_or_model.to(device)
    else:
        from lkr.runfolder import load_run_model

        model, _, _ = load_run_model(run_or_model, device=device)
    if model.local_branch and masks is None:
        raise ValueError("this model has the local branch: cam_arrays needs the faces' masks")
    target = resolve_layer(model, layer)
    # a tail layer of the dual model sees [global; masked] maps (2B): join them per face
    reshape = _join_branches if (target.in_tail and model.local_branch) else None
    was_training = model.training
    img = torch.as_tensor(np.asarray(images, dtype=np.uint8), device=device)
    msk = torch.as_tensor(np.asarray(masks, dtype=np.float32), device=device) \
        if (masks is not None and model.local_branch) else None
    out = []
    for s in range(0, len(img), batch_size):
        x, m = center_crop(img[s:s + batch_size], None if msk is None else msk[s:s + batch_size], crop=crop)
        targets = None if labels is None else [ClassifierOutputTarget(int(c)) for c in labels[s:s + batch_size]]
        wrapped = MaskedModel(model, m)
        with GradCAM(model=wrapped, target_layers=[target.module], reshape_transform=reshape) as cam:
            out.append(cam(input_tensor=x, targets=targets).astype(np.float32))  # (B, crop, crop)
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, crop, crop), np.float32)
