"""The CPU path: one thread count per process, bf16 only where it measures faster."""

from __future__ import annotations

import pytest
import torch

from lkr import cpu
from lkr.config import Config

TINY = dict(vgg_cfg=(8, "M", 16, "M", 32, "M", 64, "M", 64, "M"), fc_dims=(32, 16))


def test_use_threads_sets_and_keeps_the_count():
    old = torch.get_num_threads()
    try:
        assert cpu.use_threads(1) == 1 and torch.get_num_threads() == 1
        torch.set_num_threads(2)  # as a library might, between two runs
        assert cpu.use_threads(1) == 1 and torch.get_num_threads() == 1
        assert cpu.use_threads(None) == cpu.process_threads() == torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


def test_process_threads_from_the_environment(monkeypatch):
    monkeypatch.setenv("LKR_THREADS", "3")
    assert cpu.process_threads() == 3
    monkeypatch.delenv("LKR_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu.process_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cpu.process_threads() == cpu.available_cores()


def test_forced_precisions_are_not_measured():
    dev = torch.device("cpu")
    for p in ("fp32", "bf16"):
        assert cpu.resolve_precision(Config(cpu_precision=p), dev, 1) == {"precision": p, "decided_by": "config",
                                                                          "device": "cpu"}


def test_calibration_picks_the_faster_caches_it_and_leaves_the_rng_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("LKR_CACHE_DIR", str(tmp_path))
    timed = []

    def fake(model, x, m, y, bf16, steps):  # bf16 twice as fast; records what was timed
        timed.append((bf16, m is None, type(model).__name__))
        model(x, m)  # dropout draws random numbers: calibrate_precision must restore the state
        return 0.5 if bf16 else 1.0

    monkeypatch.setattr(cpu, "_time_steps", fake)
    cfg = Config(**TINY)  # LKRNet: the local branch is not what is timed
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = cpu.calibrate_precision(cfg, 1, batch=8, steps=1)
    assert torch.equal(torch.get_rng_state(), before)
    assert a["precision"] == "bf16" and not a["cached"] and timed == [(False, True, "LKRNet"), (True, True, "LKRNet")]
    # every configuration of the set shares the answer: a VGG19 of the same stack reads the cache
    b = cpu.calibrate_precision(Config(**TINY, local_branch=False, triplet_lambda=0.0), 1, batch=8, steps=1)
    assert b["cached"] and b["precision"] == "bf16" and (tmp_path / "cpu-precision.json").exists()
    monkeypatch.setattr(cpu, "_time_steps", lambda model, x, m, y, bf16, steps: 2.0 if bf16 else 1.0)
    other = cpu.calibrate_precision(Config(**{**TINY, "width": 0.5}), 1, batch=8, steps=1)
    assert not other["cached"] and other["precision"] == "fp32"  # another width is measured anew


def test_auto_without_native_bf16_is_fp32(monkeypatch):
    monkeypatch.setattr(cpu, "bf16_supported", lambda: False)
    r = cpu.resolve_precision(Config(), torch.device("cpu"), 1)
    assert r["precision"] == "fp32" and "no native bf16" in r["decided_by"]


def test_bf16_needs_the_margin_and_steps_are_a_median(tmp_path, monkeypatch):
    """bf16 1.10x faster stays fp32 (under the 1.15x margin); 1.2x takes bf16; at least 5 steps."""
    monkeypatch.setenv("LKR_CACHE_DIR", str(tmp_path))
    seen = []

    def timing(ratio):
        def fake(model, x, m, y, bf16, steps):
            seen.append(steps)
            return 1.0 / ratio if bf16 else 1.0
        return fake

    monkeypatch.setattr(cpu, "_time_steps", timing(1.10))
    a = cpu.calibrate_precision(Config(**TINY), 1, batch=8, steps=1, use_cache=False)
    assert a["precision"] == "fp32" and min(seen) >= 5
    monkeypatch.setattr(cpu, "_time_steps", timing(1.20))
    b = cpu.calibrate_precision(Config(**TINY), 1, batch=8, use_cache=False)
    assert b["precision"] == "bf16"
    line = cpu.describe_calibration(b, 1)
    assert "median of 5" in line and "1.20x" in line and "1.15x margin" in line and "\n" not in line


def test_time_steps_is_the_median(monkeypatch):
    """One slow step (a hiccup of the machine) does not move the measured step time."""
    ticks = iter([0.0, 1.0, 1.0, 2.0, 2.0, 30.0, 30.0, 31.0, 31.0, 32.0])  # perf_counter pairs: 1, 1, 28, 1, 1
    monkeypatch.setattr(cpu.time, "perf_counter", lambda: next(ticks))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, x, m):
            return {"logits": self.m(x)}

    t = cpu._time_steps(Wrap(), torch.randn(2, 1, 2, 2), None, torch.tensor([0, 1]), False, 5)
    assert t == 1.0


def test_an_experiment_set_decides_its_precision_once(tmp_path, monkeypatch):
    """run_experiments measures once, before any worker, and every configuration gets the answer."""
    from lkr import experiments

    monkeypatch.setenv("LKR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cpu, "bf16_supported", lambda: True)
    calls = []

    def fake(model, x, m, y, bf16, steps):
        calls.append(bf16)
        return 0.5 if bf16 else 1.0

    monkeypatch.setattr(cpu, "_time_steps", fake)
    cfgs = {"vgg19": Config(**TINY, local_branch=False, triplet_lambda=0.0), "lkrnet": Config(**TINY)}
    old = torch.get_num_threads()
    got = experiments.decide_precision(cfgs, "cpu", workers=1)
    assert torch.get_num_threads() == old  # the caller's threads are left as they were
    assert calls == [False, True]  # one measurement for the whole set
    assert got["vgg19"] == got["lkrnet"] and got["lkrnet"]["precision"] == "bf16"
    assert got["lkrnet"]["decided_by"].startswith("for the experiment set: measured")
    forced = experiments.decide_precision({"a": Config(**TINY, cpu_precision="fp32")}, "cpu")
    assert forced["a"]["precision"] == "fp32" and len(calls) == 2


def test_a_second_training_beside_another_is_warned_in_one_line(tmp_path, monkeypatch):
    """Another kit training holding every core: the new run warns (and still trains); a record
    of a process that ended is dropped without a word."""
    import json
    import os
    import subprocess
    import sys
    import warnings

    from lkr.demo import make_demo
    from lkr.train import config_for, train

    monkeypatch.setenv("LKR_CACHE_DIR", str(tmp_path))
    reg = tmp_path / "training"
    reg.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (reg / "dead.json").write_text(json.dumps({"pid": int(dead.stdout), "threads": 64, "out": "x"}))
    ds = make_demo("fer2013", n=70)
    cfg = config_for(ds, "vgg19", epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", cpu.OversubscribedWarning)
        train(ds, cfg, tmp_path / "alone", device="cpu", progress=False, threads=1)
    assert not (reg / "dead.json").exists()
    (reg / "other.json").write_text(json.dumps({"pid": os.getppid(), "threads": cpu.available_cores(), "out": "y"}))
    with pytest.warns(cpu.OversubscribedWarning, match=r"1 other lkr training already uses \d+ threads? .*--threads 1"):
        m = train(ds, cfg, tmp_path / "beside", device="cpu", progress=False, threads=1)
    assert "accuracy" in m
    assert sorted(p.name for p in reg.iterdir()) == ["other.json"]  # this run's record is gone when it ends
