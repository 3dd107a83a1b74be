"""Data-parallel training on the CPU: 2 gloo processes give the gradients and the weights of one
process on the whole batch (BatchNorm off, since PyTorch's SyncBatchNorm needs GPUs; dropout 0)."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from lkr import distributed
from lkr.cli import main
from lkr.demo import make_demo
from lkr.errors import TrainingError
from lkr.losses import lkr_loss
from lkr.model import build_model
from lkr.prepare import prepare_data
from lkr.train import _epoch_seed, config_for, epoch_batches, train

N_DEMO = 210  # 168 training images: 5 batches of 32 anchors
WORLD = 2


def _cfg(ds, **kw):
    # random triplets: in-batch mining under DDP mines per process (docs/determinism.md), so only
    # random triplets give one process's gradients exactly
    return config_for(ds, "lkrnet", batch_norm=False, dropout=0.0, epochs=2, eval_every=1,
                      **{"triplet_mining": "random", **kw})


def _first_step_grads(ds, cfg, rank: int, world: int) -> dict[str, torch.Tensor]:
    """Gradients of the first step of epoch 0 on this process's share of the global batch."""
    prepared = prepare_data(ds, cfg, device="cpu")
    gen = torch.Generator().manual_seed(_epoch_seed(cfg, 0))
    x, m, y = next(epoch_batches(prepared, cfg, gen, cfg.batch_size))
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    step = model
    if world > 1:
        rows = distributed.shard_rows(cfg.batch_size, 3, rank, world)
        x, m, y = x[rows], m[rows], y[rows]
        step = torch.nn.parallel.DistributedDataParallel(model)
    loss, _ = lkr_loss(step(x, m), y, cfg)
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    with distributed.process_group("cpu") as group:
        assert (group.rank, group.world_size, group.backend) == (rank, world, "gloo")
        ds = make_demo("fer2013", n=N_DEMO)
        cfg = _cfg(ds)
        torch.save(_first_step_grads(ds, cfg, rank, world), os.path.join(out, f"grads{rank}.pt"))
        m = train(ds, cfg, os.path.join(out, "run"), device="cpu", progress=False)
        with open(os.path.join(out, f"metrics{rank}.json"), "w") as f:
            json.dump(m, f)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weights(run) -> dict[str, torch.Tensor]:
    return torch.load(run / "best.pt", weights_only=False)["model"]


def test_shard_rows_keep_triplets_together():
    rows = [distributed.shard_rows(6, 3, r, 2) for r in range(2)]
    assert rows[0].tolist() == [0, 2, 4, 6, 8, 10, 12, 14, 16]
    assert rows[1].tolist() == [1, 3, 5, 7, 9, 11, 13, 15, 17]
    assert sorted(torch.cat(rows).tolist()) == list(range(18))
    assert distributed.shard_rows(4, 1, 1, 2).tolist() == [1, 3]
    with pytest.raises(TrainingError, match="multiple of 4"):
        distributed.shard_rows(6, 1, 0, 4)


def test_single_process_info_without_torchrun(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert not distributed.launched_by_torchrun()
    info = distributed.init_from_env("cpu")
    assert (info.rank, info.world_size, info.backend, info.is_main) == (0, 1, None, True)
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.worker_devices(3, "cpu") == ["cpu"] * 3


def test_two_gloo_processes_match_one_process(tmp_path):
    """Gradients after one step and the final weights agree with the one-process run."""
    mp.spawn(_worker, args=(WORLD, _free_port(), str(tmp_path)), nprocs=WORLD, join=True)

    ds = make_demo("fer2013", n=N_DEMO)
    cfg = _cfg(ds)
    single = _first_step_grads(ds, cfg, 0, 1)
    g0, g1 = (torch.load(tmp_path / f"grads{r}.pt") for r in range(WORLD))
    assert single.keys() == g0.keys()
    for k in single:
        torch.testing.assert_close(g0[k], g1[k], rtol=0, atol=0)  # DDP's all-reduce: equal on both ranks
        torch.testing.assert_close(g0[k], single[k], rtol=1e-4, atol=1e-5)
    assert any(single[k].abs().max() > 1e-3 for k in single)  # a real gradient, not zeros

    m1 = train(ds, cfg, tmp_path / "single", device="cpu", progress=False)
    a, b = _weights(tmp_path / "single"), _weights(tmp_path / "run")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
    ranks = [json.loads((tmp_path / f"metrics{r}.json").read_text()) for r in range(WORLD)]
    assert ranks[0] == ranks[1]  # every process returns rank 0's metrics
    m2 = ranks[0]
    assert m2["world_size"] == 2 and m1["world_size"] == 1
    assert m2["best_epoch"] == m1["best_epoch"]
    assert m2["accuracy"] == pytest.approx(m1["accuracy"], abs=1.5 / m1["n_select"])
    hist1 = json.loads((tmp_path / "single" / "history.json").read_text())
    hist2 = json.loads((tmp_path / "run" / "history.json").read_text())
    for h1, h2 in zip(hist1, hist2):
        assert h2["loss"] == pytest.approx(h1["loss"], rel=1e-4)


def test_cli_nproc_starts_torchrun(tmp_path, capsys):
    """``lkr train --nproc 2`` runs 2 CPU processes under torchrun and ends like one process."""
    # 7 steps of 160 anchors: without BatchNorm, lr 0.1 amplifies float-order differences over
    # many steps (35 steps of 32 already move some weights by 1e-3), so the run is kept short.
    args = ["train", "--data", "demo", "--variant", "vgg19", "--epochs", "1", "--batch-size", "160", "--device", "cpu",
            "--quiet", "--set", "batch_norm=false", "--set", "dropout=0"]
    assert main(args + ["--out", str(tmp_path / "one")]) == 0
    assert main(args + ["--nproc", "2", "--out", str(tmp_path / "two")]) == 0
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert (one["world_size"], two["world_size"]) == (1, 2)
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
    assert not list((tmp_path / "two").glob("*.tmp"))


def test_batch_not_divisible_by_processes_is_a_clear_error(tmp_path, monkeypatch):
    ds = make_demo("fer2013", n=70)
    monkeypatch.setattr(distributed, "current", lambda: distributed.DistInfo(rank=0, world_size=3))
    with pytest.raises(TrainingError, match="multiple of 3"):
        train(ds, config_for(ds, "vgg19", epochs=1, batch_size=32), tmp_path / "run", device="cpu", progress=False)


def test_ckplus_folds_in_two_worker_processes_match_one_after_the_other(tmp_path):
    from lkr.experiments import run_experiments

    ds = make_demo("ckplus", n=240)
    kw = dict(names=["vgg19"], epochs=1, folds=[0, 1], k_folds=5, progress=False)
    seq = run_experiments(ds, tmp_path / "seq", **kw)
    par = run_experiments(ds, tmp_path / "par", workers=2, **kw)
    assert seq["vgg19"]["accuracy"] == par["vgg19"]["accuracy"]
    for fold in (0, 1):
        a, b = (tmp_path / r / "runs" / "demo" / "ckplus" / "vgg19" / f"fold{fold}" for r in ("seq", "par"))
        ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
        timing = {"train_seconds", "select_seconds", "eval_seconds", "device"}
        assert {k: v for k, v in ma.items() if k not in timing} == {k: v for k, v in mb.items() if k not in timing}
        wa, wb = _weights(a), _weights(b)
        for k in wa:
            assert torch.equal(wa[k], wb[k]), k


def test_nproc_is_removed_from_the_command_torchrun_runs():
    from lkr.train import _without_nproc

    assert _without_nproc(["train", "--nproc", "4", "--data", "demo", "--nproc=2", "--out", "r"]) == \
        ["train", "--data", "demo", "--out", "r"]


def test_cli_nproc_checks_the_batch_size_before_starting(tmp_path, capsys):
    assert main(["train", "--data", "demo", "--nproc", "2", "--batch-size", "33", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lkr: error:") and "multiple of 2" in err and "\n" not in err


def _fake_group(monkeypatch, calls, barrier_fails=False):
    """process_group's exit steps recorded instead of run (no real process group)."""
    monkeypatch.setattr(distributed, "launched_by_torchrun", lambda: True)
    monkeypatch.setattr(distributed, "init_from_env", lambda device=None: distributed.DistInfo())
    monkeypatch.setattr(distributed.gc, "collect", lambda: calls.append("gc"))

    def barrier():
        calls.append("barrier")
        if barrier_fails:
            raise RuntimeError("a rank died")

    monkeypatch.setattr(distributed, "barrier", barrier)
    monkeypatch.setattr(distributed, "cleanup", lambda: calls.append("cleanup"))


def test_process_group_leaves_together_on_a_normal_exit(monkeypatch):
    calls: list[str] = []
    _fake_group(monkeypatch, calls)
    with distributed.process_group("cpu"):
        calls.append("body")
    assert calls == ["body", "gc", "barrier", "cleanup"]


def test_process_group_leaves_without_a_barrier_after_an_error(monkeypatch):
    calls: list[str] = []
    _fake_group(monkeypatch, calls)
    with pytest.raises(ValueError):
        with distributed.process_group("cpu"):
            raise ValueError("boom")
    assert calls == ["cleanup"]


def test_process_group_leaves_the_group_when_the_final_barrier_fails(monkeypatch):
    calls: list[str] = []
    _fake_group(monkeypatch, calls, barrier_fails=True)
    with pytest.raises(RuntimeError, match="a rank died"):
        with distributed.process_group("cpu"):
            pass
    assert calls == ["gc", "barrier", "cleanup"]
