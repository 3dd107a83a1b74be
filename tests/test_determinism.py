"""Determinism on the CPU: the same seed gives bit-identical batches, weights and metrics;
``Config.deterministic`` changes nothing on the CPU and restores the global flags."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lkr.demo import make_demo
from lkr.prepare import prepare_data
from lkr.train import _epoch_seed, config_for, deterministic_mode, epoch_batches, train

TIMING = {"train_seconds", "select_seconds", "eval_seconds", "device"}


@pytest.fixture(scope="module")
def demo():
    return make_demo("fer2013", n=210)


def _run(demo, out, **kw) -> tuple[dict, dict[str, torch.Tensor], list[dict]]:
    torch.set_num_threads(1)
    cfg = config_for(demo, "lkrnet", epochs=2, eval_every=1, **kw)
    m = train(demo, cfg, out, device="cpu", progress=False)
    weights = torch.load(out / "best.pt", weights_only=False)["model"]
    hist = [{k: v for k, v in h.items() if k not in ("seconds", "images_per_s", "select_seconds")}
            for h in json.loads((out / "history.json").read_text())]
    return {k: v for k, v in m.items() if k not in TIMING}, weights, hist


@pytest.fixture(scope="module")
def seed0(demo, tmp_path_factory):
    return _run(demo, tmp_path_factory.mktemp("det") / "seed0")


def _assert_identical(a, b) -> None:
    assert a[0] == b[0]  # metrics (accuracy, confusion, per class, selected epoch, ...)
    assert a[2] == b[2]  # history: losses, train and selection accuracies, lr
    assert a[1].keys() == b[1].keys()
    for k in a[1]:
        assert torch.equal(a[1][k], b[1][k]), k


def test_same_seed_gives_identical_weights_and_metrics(demo, seed0, tmp_path):
    again = _run(demo, tmp_path / "again")
    _assert_identical(seed0, again)
    with np.load(tmp_path / "again" / "embeddings.npz") as z:
        assert z["embedding"].shape[1] == 256


def test_another_seed_gives_another_run(demo, seed0, tmp_path):
    other = _run(demo, tmp_path / "seed1", seed=1)
    assert any(not torch.equal(seed0[1][k], other[1][k]) for k in seed0[1])
    assert other[2][0]["loss"] != seed0[2][0]["loss"]


def test_deterministic_flag_is_identical_on_cpu_and_restores_flags(demo, seed0, tmp_path):
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    det = _run(demo, tmp_path / "det", deterministic=True)
    assert det[0]["notes"] == seed0[0]["notes"]
    _assert_identical(seed0, det)
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before


def test_deterministic_mode_sets_and_restores():
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_mode(True, torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_mode(False, torch.device("cpu")):
        assert not torch.are_deterministic_algorithms_enabled()


def test_epoch_batches_follow_the_seed(demo):
    cfg = config_for(demo, "lkrnet", triplet_mining="random")
    prepared = prepare_data(demo, cfg, device="cpu")

    def first(epoch: int):
        gen = torch.Generator().manual_seed(_epoch_seed(cfg, epoch))
        return next(epoch_batches(prepared, cfg, gen, cfg.batch_size))

    a, b, c = first(3), first(3), first(4)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    x, m, y = a
    assert x.shape == (3 * cfg.batch_size, 1, cfg.crop, cfg.crop) and m.shape == x.shape and y.shape == (len(x),)
    assert not torch.equal(a[0], c[0])
    anchors, positives, negatives = y.chunk(3)
    assert torch.equal(anchors, positives) and not (anchors == negatives).any()
