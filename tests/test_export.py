"""``lkr export``: the trained network as ONNX (image and mask in, logits out), agreeing with
PyTorch on random inputs of batch sizes other than the traced one. Needs the onnx extra."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from lkr.augment import ten_crop  # noqa: E402
from lkr.cli import main  # noqa: E402
from lkr.classes import FER2013_CLASSES  # noqa: E402
from lkr.errors import LkrError  # noqa: E402
from lkr.export import export_onnx, random_inputs  # noqa: E402


@pytest.fixture(scope="module")
def exported(demo_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "lkrnet.onnx"
    return export_onnx(demo_run, path), path


def test_onnx_agrees_with_pytorch_on_random_inputs(exported, demo_run):
    r, path = exported
    assert r["max_abs_diff"] < 1e-4 and r["batches"] == [1, 5]
    assert r["inputs"] == ["image", "mask"] and r["classes"] == list(FER2013_CLASSES)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["image", "mask"]
    for i in model.graph.input:  # (B, 1, 44, 44) with B symbolic
        dims = i.type.tensor_type.shape.dim
        assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 44, 44]
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["classes"]) == list(FER2013_CLASSES) and meta["crop"] == "44"

    # Independently of export_onnx's own check: another batch size, and the mask matters.
    from lkr.runfolder import load_run_model

    net, _, _ = load_run_model(demo_run)
    feed = random_inputs(7, 44, seed=123)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, feed)[0]
    with torch.no_grad():
        want = net(torch.from_numpy(feed["image"]), torch.from_numpy(feed["mask"]))["logits"].numpy()
    assert got.shape == (7, 7)
    np.testing.assert_allclose(got, want, atol=1e-4)
    other = sess.run(None, {"image": feed["image"], "mask": np.zeros_like(feed["mask"])})[0]
    assert np.abs(other - got).max() > 1e-4


def test_onnx_ten_crop_gives_lkr_predict_probabilities(exported, demo_run):
    """Ten-crop and softmax averaging outside the graph reproduce lkr.evaluate.predict."""
    from lkr.demo import make_demo
    from lkr.evaluate import predict
    from lkr.regions import region_masks
    from lkr.runfolder import load_run_model

    _, path = exported
    ds = make_demo("fer2013", n=4, seed=3)
    images = torch.from_numpy(ds.images)
    masks = torch.from_numpy(region_masks(ds.boxes, ds.points))
    net, _, _ = load_run_model(demo_run)
    want, _ = predict(net, images, masks, amp=False)
    x, m = ten_crop(images, masks)  # (10, B, 1, 44, 44)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"image": x.reshape(-1, 1, 44, 44).numpy(), "mask": m.reshape(-1, 1, 44, 44).numpy()})[0]
    probs = torch.softmax(torch.from_numpy(logits), 1).view(10, 4, -1).mean(0)
    np.testing.assert_allclose(probs.numpy(), want.numpy(), atol=1e-5)


def test_cli_prints_the_difference(demo_run, tmp_path, capsys):
    out = tmp_path / "sub" / "m.onnx"
    assert main(["export", str(demo_run), "--onnx", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.exists() and "max abs difference" in text
    diff = float(text.rsplit("max abs difference", 1)[1].split()[0])
    assert diff < 1e-4


def test_cli_not_a_run(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert capsys.readouterr().err.strip() == f"lkr: error: {tmp_path}: not a trained run folder (no best.pt)"


def test_missing_onnx_packages_say_how_to_install(demo_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(LkrError, match=r"onnxruntime is missing.*pip install 'lkr\[onnx\]'"):
        export_onnx(demo_run, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_single_branch_run_has_the_image_input_only(tmp_path):
    from lkr.demo import make_demo
    from lkr.train import config_for, train

    ds = make_demo("fer2013", n=200)
    run = tmp_path / "vgg19"
    train(ds, config_for(ds, "vgg19", epochs=1), run, device="cpu", progress=False)
    r = export_onnx(run, tmp_path / "vgg19.onnx", check_batches=(3,))
    assert r["inputs"] == ["image"] and r["max_abs_diff"] < 1e-4
    assert [i.name for i in onnx.load(str(tmp_path / "vgg19.onnx")).graph.input] == ["image"]
