"""Grad-CAM heatmaps (paper Sec. 4.3.3, Fig. 8) through pytorch-grad-cam.

The network's forward takes a mask beside the image, so it is wrapped in
:class:`lkr.model.MaskedModel`, which feeds the faces' local key region masks and returns the
fused logits. The target layer is ``model.cam_layer``: the feature maps p that the mask weights,
shared by both branches, so the heatmap of the dual model sums the gradients of its global and
its local branch. VGG19 and Baseline 2 (no local branch) use the same layer of their single
branch, so the two columns of Fig. 8 are comparable.

Target: the **true class** (``ClassifierOutputTarget(label)``) when labels are given, else the
predicted class. Fig. 8 asks "which pixels support this expression?", the same question for
both models, so the true class is used for the figure (a wrong prediction would otherwise show
evidence for another class in one column only).

Faces go in as their 44x44 centre crop (:func:`lkr.augment.center_crop`), the view the network
is trained on; heatmaps come back at that size, each scaled to [0, 1] by pytorch-grad-cam.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from lkr.augment import center_crop
from lkr.model import LKRNet, MaskedModel


def cam_arrays(
    run_or_model: str | Path | LKRNet,
    images: np.ndarray,
    masks: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    *,
    crop: int = 44,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
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

    Returns:
        (N, crop, crop) float32 heatmaps in [0, 1] (each scaled to its own maximum; all zeros
        where the class evidence is nowhere positive).

    Raises:
        ValueError: when the model needs masks and none are given.
    """
    if isinstance(run_or_model, LKRNet):
        model = run_or_model.to(device)
    else:
        from lkr.train import load_run_model

        model, _, _ = load_run_model(run_or_model, device=device)
    if model.local_branch and masks is None:
        raise ValueError("this model has the local branch: cam_arrays needs the faces' masks")
    was_training = model.training
    img = torch.as_tensor(np.asarray(images, dtype=np.uint8), device=device)
    msk = torch.as_tensor(np.asarray(masks, dtype=np.float32), device=device) \
        if (masks is not None and model.local_branch) else None
    out = []
    for s in range(0, len(img), batch_size):
        x, m = center_crop(img[s:s + batch_size], None if msk is None else msk[s:s + batch_size], crop=crop)
        targets = None if labels is None else [ClassifierOutputTarget(int(c)) for c in labels[s:s + batch_size]]
        wrapped = MaskedModel(model, m)
        with GradCAM(model=wrapped, target_layers=[wrapped.cam_layer]) as cam:
            out.append(cam(input_tensor=x, targets=targets).astype(np.float32))  # (B, crop, crop)
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, crop, crop), np.float32)
