"""A trained run as ONNX (``lkr export RUN --onnx FILE``), checked against PyTorch.

The exported graph is the network of one crop, the selected weights of the run in eval mode:

    image (B, 1, 44, 44) float32  (pixel / 255 - 0.5) / 0.25, see lkr.augment.to_input
    mask  (B, 1, 44, 44) float32  the local key region mask in [0, 1], same crop (LKRNet,
                                  Baseline 1; single-branch runs have no mask input)
    ->  logits (B, K) float32     the fused prediction (mean of the two branches' logits)

B is a dynamic axis. Ten-crop (:func:`lkr.augment.ten_crop`) and the softmax average stay
with the caller, as in :func:`lkr.evaluate.predict`. The model's metadata
(``metadata_props``) names the classes, the crop, the input normalisation and the run.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript). The older
TorchScript exporter (``dynamo=False``) cannot export the mask's adaptive average pooling
with a batch axis that is not fixed. After export the file is loaded with onnxruntime and run on
random inputs of two batch sizes other than the traced one; the largest absolute difference
from PyTorch's logits is reported and must stay below ``atol``.

Needs the optional extra: ``pip install 'lkr[onnx]'`` (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lkr.augment import MEAN, STD, to_input
from lkr.errors import LkrError
from lkr.model import LKRNet

ATOL = 1e-3
"""Largest absolute logit difference between onnxruntime and PyTorch that passes the check."""
_TRACE_BATCH = 2


class DualInput(nn.Module):
    """(image, mask) -> fused logits: the LKRNet as the ONNX graph sees it."""

    def __init__(self, model: LKRNet):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """Args: image (B,1,H,W) normalised; mask (B,1,H,W) in [0,1]. Returns logits (B,K)."""
        return self.model(image, mask)["logits"]


class SingleInput(nn.Module):
    """image -> logits: a single-branch run (VGG19, Baseline 2) as the ONNX graph sees it."""

    def __init__(self, model: LKRNet):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tensor:
        """Args: image (B,1,H,W) normalised. Returns logits (B,K)."""
        return self.model(image)["logits"]


def _require_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx's dynamo exporter needs it)
    except ImportError as e:
        raise LkrError(f"ONNX export needs the onnx extra ({e.name} is missing): "
                       "pip install 'lkr[onnx]'") from None
    return onnx, onnxruntime


def random_inputs(batch: int, crop: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random network inputs: images from uniform pixels through :func:`to_input` (values in
    [-2, 2]) and masks uniform in [0, 1], each (batch, 1, crop, crop) float32."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (batch, 1, crop, crop), generator=g, dtype=torch.uint8)
    return {"image": to_input(pixels).numpy(), "mask": torch.rand(batch, 1, crop, crop, generator=g).numpy()}


def export_onnx(run: str | Path, path: str | Path, *, check_batches: tuple[int, ...] = (1, 5),
                atol: float = ATOL, seed: int = 0) -> dict[str, Any]:
    """Export a run's selected weights to ONNX and check the file against PyTorch.

    Args:
        run: a trained run folder.
        path: the ``.onnx`` file to write (one file, weights inside).
        check_batches: batch sizes of the random inputs for the check (not the traced 2, so
            that a batch axis fixed by mistake is caught).
        atol: largest absolute logit difference allowed.
        seed: seed of the random inputs.

    Returns:
        {"path", "inputs" (names), "classes", "max_abs_diff" (float, over all check batches),
        "batches", "bytes"}.

    Raises:
        RunError: if ``run`` is not a trained run folder.
        LkrError: when the ONNX packages are missing, the export fails, the batch axis is not
            dynamic, or onnxruntime differs from PyTorch by more than ``atol``.
    """
    onnx, ort = _require_onnx()
    from lkr.runfolder import run_class_names
    from lkr.runfolder import load_run_model

    model, cfg, info = load_run_model(run, device="cpu")
    classes = run_class_names(run, cfg.num_classes, info)
    dual = model.local_branch
    wrapper = (DualInput(model) if dual else SingleInput(model)).eval()
    names = ["image", "mask"] if dual else ["image"]
    example = random_inputs(_TRACE_BATCH, cfg.crop, seed)
    args = tuple(torch.from_numpy(example[n]) for n in names)
    batch = torch.export.Dim("batch")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), warnings.catch_warnings():  # the exporter prints its steps
            warnings.filterwarnings("ignore", message=".*axis name.*")  # one Dim for two inputs: intended
            torch.onnx.export(wrapper, args, str(path), input_names=names, output_names=["logits"],
                              dynamic_shapes={n: {0: batch} for n in names}, dynamo=True,
                              external_data=False, verbose=False)
    except Exception as e:
        raise LkrError(f"{run}: ONNX export failed ({type(e).__name__}: {str(e).splitlines()[0]})") from None

    proto = onnx.load(str(path))
    dim0 = [i.type.tensor_type.shape.dim[0] for i in proto.graph.input]
    if any(d.HasField("dim_value") for d in dim0):
        raise LkrError(f"{path}: the exporter fixed the batch axis; the file is not usable for other batch sizes")
    meta = {"classes": json.dumps(list(classes)), "crop": str(cfg.crop), "variant": cfg.variant,
            "input": f"image = (pixel / 255 - {MEAN}) / {STD}, grayscale {cfg.crop}x{cfg.crop} crops of 48x48 faces",
            "mask": "local key region mask in [0, 1], same crop" if dual else "none (single-branch model)",
            "output": "logits; average the softmax over the ten crops (lkr.augment.ten_crop)",
            "run": str(run), "dataset": str(info.get("dataset", ""))}
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(path))

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for i, b in enumerate(check_batches):
        feed = {n: v for n, v in random_inputs(b, cfg.crop, seed + 1 + i).items() if n in names}
        got = session.run(["logits"], feed)[0]
        with torch.no_grad():
            want = wrapper(*(torch.from_numpy(feed[n]) for n in names)).numpy()
        if got.shape != want.shape:
            raise LkrError(f"{path}: onnxruntime gave logits {got.shape} for batch {b}, PyTorch {want.shape}")
        worst = max(worst, float(np.abs(got - want).max()))
    if not worst <= atol:
        raise LkrError(f"{path}: onnxruntime differs from PyTorch by {worst:.3g} (> {atol:g}) on random inputs")
    return {"path": str(path), "inputs": names, "classes": list(classes), "max_abs_diff": worst,
            "batches": list(check_batches), "bytes": path.stat().st_size}


def export_cli(args: Any) -> int:
    """``lkr export RUN --onnx FILE``: prints the check; exit 0, or 2 on an error."""
    r = export_onnx(args.run, args.onnx)
    print(f"{r['path']}: inputs {', '.join(r['inputs'])} -> logits over {len(r['classes'])} classes "
          f"({r['bytes'] / 1e6:.1f} MB)")
    print(f"onnxruntime vs PyTorch on random inputs (batch {', '.join(map(str, r['batches']))}): "
          f"max abs difference {r['max_abs_diff']:.2e}")
    return 0
