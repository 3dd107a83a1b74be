"""Faults: SIGKILL at any moment (between epochs, inside a checkpoint write, before the last
rename), stale temporary files, a non-finite loss, checkpoints and caches of another version."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import lkr
from lkr import landmarks as lm
from lkr.demo import make_demo
from lkr.errors import RunError, TrainingError
from lkr.train import config_for, train

N_DEMO = 210  # 168 training images: 5 steps of 32 anchors
EPOCHS = 3
VARIANT = "baseline2"  # triplets: anchors, partners and augmentation all come from the seeded stream
TIMING = {"train_seconds", "select_seconds", "eval_seconds", "device"}

# The child trains like `lkr train`; MODE makes it kill itself at one precise moment:
#   event:K    SIGKILL at the K-th event once checkpoint.pt exists; an event is the start of a
#              training step (a backward pass), of a torch.save, or of a file's rename into place
#   save:K     SIGKILL in the middle of the K-th torch.save of this process (half the bytes written)
#   metrics    SIGKILL right before metrics.json is renamed into place (its temp file is complete)
# The child kills itself, at a point fixed by the sequence of its own events, never by the clock:
# a kill from outside after a delay races the child (an epoch of the demo takes 0.2 s), and on a
# busy machine a late poll let it checkpoint the last epoch first.
CHILD = textwrap.dedent("""
    import io, os, signal, sys
    import torch
    torch.set_num_threads(1)
    from lkr.demo import make_demo
    from lkr.train import config_for, train

    out, mode = sys.argv[1], sys.argv[2]
    if mode.startswith("event:"):
        k, seen = int(mode[6:]), [0]
        ckpt = os.path.join(out, "checkpoint.pt")

        def event(real):
            def hooked(*a, **kw):
                if os.path.exists(ckpt):
                    seen[0] += 1
                    if seen[0] == k:
                        os.kill(os.getpid(), signal.SIGKILL)
                return real(*a, **kw)
            return hooked

        torch.autograd.backward = event(torch.autograd.backward)
        torch.save = event(torch.save)
        os.replace = event(os.replace)
    elif mode.startswith("save:"):
        k, calls, real = int(mode[5:]), [0], torch.save

        def save(obj, f, *a, **kw):
            calls[0] += 1
            if calls[0] == k:
                buf = io.BytesIO()
                real(obj, buf, *a, **kw)
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                f.flush()
                os.fsync(f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
            return real(obj, f, *a, **kw)

        torch.save = save
    elif mode == "metrics":
        real_replace = os.replace

        def replace(src, dst, *a, **kw):
            if str(dst).endswith("metrics.json"):
                os.kill(os.getpid(), signal.SIGKILL)
            return real_replace(src, dst, *a, **kw)

        os.replace = replace
    ds = make_demo("fer2013", n={n})
    cfg = config_for(ds, "{variant}", epochs={epochs}, eval_every=1)
    train(ds, cfg, out, device="cpu", progress=False)
""").format(n=N_DEMO, variant=VARIANT, epochs=EPOCHS)


def _start(run: Path, mode: str = "plain") -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", CHILD, str(run), mode], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


CHILD_TIMEOUT_S = 900
"""Only a bound on a hung child: it ends by itself in seconds (a few on an idle machine); no
assertion depends on how long it takes."""


def _finish(p: subprocess.Popen) -> int:
    try:
        out, _ = p.communicate(timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        raise AssertionError(f"the child ran {CHILD_TIMEOUT_S} s: {out.decode()[-2000:]}") from None
    if p.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(out.decode()[-2000:])
    return p.returncode


def _temps(run: Path) -> list[str]:
    return sorted(f.name for f in run.glob("*.tmp"))


def _checkpoint_epoch(run: Path) -> int:
    return torch.load(run / "checkpoint.pt", weights_only=False)["epoch"]


def _same_run(a: Path, b: Path, ma: dict, mb: dict) -> None:
    wa = torch.load(a / "best.pt", weights_only=False)
    wb = torch.load(b / "best.pt", weights_only=False)
    assert wa["epoch"] == wb["epoch"] and wa["model"].keys() == wb["model"].keys()
    for k in wa["model"]:
        assert torch.equal(wa["model"][k], wb["model"][k]), k
    assert {k: v for k, v in ma.items() if k not in TIMING} == {k: v for k, v in mb.items() if k not in TIMING}
    with np.load(a / "predictions.npz") as za, np.load(b / "predictions.npz") as zb:
        for k in za.files:
            np.testing.assert_array_equal(za[k], zb[k])
    ha, hb = (json.loads((r / "history.json").read_text()) for r in (a, b))
    drop = ("seconds", "images_per_s", "select_seconds")
    assert [{k: v for k, v in h.items() if k not in drop} for h in ha] == \
           [{k: v for k, v in h.items() if k not in drop} for h in hb]


def test_sigkill_at_any_moment_resumes_to_the_same_result(tmp_path):
    ds = make_demo("fer2013", n=N_DEMO)
    cfg = config_for(ds, VARIANT, epochs=EPOCHS, eval_every=1)
    ref = train(ds, cfg, tmp_path / "ref", device="cpu", progress=False)
    run = tmp_path / "run"

    # 1. Killed at a seeded point after the first checkpoint is there: the K-th training step,
    #    checkpoint write or rename from then on (mid-epoch, after a selection, between a
    #    checkpoint and its history, wherever K falls). Epochs 2 and 3 alone hold 10 steps, so
    #    any K <= 10 kills before the last epoch is checkpointed. K is counted by the child, not
    #    timed from here: the run's state at the kill is the same on a busy machine.
    k = int(np.random.default_rng(0).integers(1, 11))
    assert _finish(_start(run, f"event:{k}")) == -signal.SIGKILL
    done = _checkpoint_epoch(run)
    assert 1 <= done < EPOCHS and not (run / "metrics.json").exists()

    # 2. Killed in the middle of writing the next checkpoint: half a file under a temporary
    #    name; checkpoint.pt is still the previous, whole one.
    assert _finish(_start(run, "save:1")) == -signal.SIGKILL
    assert any(t.startswith("checkpoint.pt") for t in _temps(run))
    assert _checkpoint_epoch(run) == done

    # 3. Killed right before metrics.json is renamed into place, after the training and every
    #    other file: the run is not finished.
    assert _finish(_start(run, "metrics")) == -signal.SIGKILL
    assert any(t.startswith("metrics.json") for t in _temps(run))
    assert not (run / "metrics.json").exists() and (run / "best.pt").exists()
    assert _checkpoint_epoch(run) == EPOCHS

    # 4. Run again (here in this process, same code and thread count): it evaluates the
    #    checkpointed run, cleans up, and matches the uninterrupted run.
    m = train(ds, cfg, run, device="cpu", progress=False)
    assert _temps(run) == []
    _same_run(tmp_path / "ref", run, ref, m)


def test_stale_temporaries_are_removed_and_never_read(tmp_path):
    ds = make_demo("fer2013", n=140)
    cfg = config_for(ds, "vgg19", epochs=2, eval_every=1)
    run = tmp_path / "run"
    train(ds, cfg, run, device="cpu", progress=False, stop_after=1)
    (run / "checkpoint.ptab12cd.tmp").write_bytes(b"half a checkpoint")
    (run / "metrics.jsonxyz.tmp").write_text('{"accuracy": 1.0}')
    (run / "mine.tmp").write_text("not a run file")
    m = train(ds, cfg, run, device="cpu", progress=False)
    assert _temps(run) == ["mine.tmp"]
    assert m["accuracy"] < 1.0 and json.loads((run / "metrics.json").read_text()) == m


def test_non_finite_loss_then_rerun_ends_like_an_uninterrupted_run(tmp_path, monkeypatch):
    import lkr.train as T

    ds = make_demo("fer2013", n=280)
    cfg = config_for(ds, "vgg19", epochs=3, eval_every=1)
    ref = train(ds, cfg, tmp_path / "ref", device="cpu", progress=False)

    real = T.lkr_loss
    steps = int((ds.splits == "Training").sum()) // cfg.batch_size
    calls = {"n": 0}

    def poisoned(out, labels, c):
        calls["n"] += 1
        loss, parts = real(out, labels, c)
        if calls["n"] == 2 * steps + 1:  # first step of epoch 3
            loss = loss * float("inf")
            parts = {k: v * float("inf") for k, v in parts.items()}
        return loss, parts

    monkeypatch.setattr(T, "lkr_loss", poisoned)
    with pytest.raises(TrainingError) as e:
        train(ds, cfg, tmp_path / "run", device="cpu", progress=False)
    msg = str(e.value)
    assert "non-finite loss at epoch 3" in msg and "(2 epochs) is kept" in msg and "\n" not in msg
    assert _checkpoint_epoch(tmp_path / "run") == 2 and not (tmp_path / "run" / "metrics.json").exists()

    monkeypatch.setattr(T, "lkr_loss", real)  # the cause is gone: the rerun resumes after epoch 2
    m = train(ds, cfg, tmp_path / "run", device="cpu", progress=False)
    _same_run(tmp_path / "ref", tmp_path / "run", ref, m)


def test_checkpoint_of_another_kit_version_is_refused(tmp_path, monkeypatch):
    ds = make_demo("fer2013", n=140)
    cfg = config_for(ds, "vgg19", epochs=2)
    train(ds, cfg, tmp_path / "run", device="cpu", progress=False, stop_after=1)
    monkeypatch.setattr(lkr, "__version__", "99.0")
    with pytest.raises(RunError, match="written by lkr .* this is lkr 99.0"):
        train(ds, cfg, tmp_path / "run", device="cpu", progress=False)


def test_unreadable_checkpoint_is_a_one_line_error(tmp_path):
    ds = make_demo("fer2013", n=140)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"\x80garbage")
    with pytest.raises(RunError, match="unreadable checkpoint"):
        train(ds, config_for(ds, "vgg19", epochs=1), tmp_path / "run", device="cpu", progress=False)


def test_landmark_cache_corrupt_or_of_other_settings_is_rebuilt(monkeypatch, tmp_path):
    """The landmark caches without MTCNN: a counting stand-in for the detector. A damaged array
    file or store, or one of other images or settings, is rebuilt."""
    monkeypatch.setenv("LKR_CACHE_DIR", str(tmp_path))
    images = make_demo("ckplus", n=30).images
    n = len(images)
    calls: list[int] = []

    def fake_detect(imgs, **kw):
        calls.append(len(imgs))
        k = len(imgs)
        return lm.LandmarkResult(boxes=np.tile(np.float32([4, 2, 44, 46]), (k, 1)),
                                 points=np.full((k, 5, 2), 24, np.float32), detected=np.ones(k, bool),
                                 prob=np.ones(k, np.float32), pass_index=np.zeros(k, np.int16))

    monkeypatch.setattr(lm, "detect_faces", fake_detect)
    lm.landmarks_for(images, progress=False)
    path, store = lm.cache_path(images), lm.store_path()
    assert calls == [n] and path.is_file() and store.is_file()
    lm.landmarks_for(images, progress=False)
    assert calls == [n]  # cache hit

    path.write_bytes(path.read_bytes()[:150])  # truncated (a kill would leave only a .tmp; a disk may not)
    lm.landmarks_for(images, progress=False)
    assert len(calls) == 2 and lm._read_cache(path, n) is not None  # rebuilt whole
    store.write_bytes(store.read_bytes()[:150])  # a damaged store: a part is detected again, the store rebuilt
    assert lm.landmarks_for(images[:7], progress=False, part=True).detected.all()
    assert calls[-1] == 7 and len(lm._read_store(store)[0]) == 7
    calls.pop()

    other = fake_detect(images[:5])  # a readable file of other images under this name
    calls.pop()
    np.savez(path, **other.arrays())
    np.savez(store, **other.arrays())  # and a store without keys
    lm.landmarks_for(images, progress=False)
    assert len(calls) == 3 and lm._read_cache(path, n) is not None and len(lm._read_store(store)[0]) == n

    monkeypatch.setattr(lm, "SETTINGS_VERSION", lm.SETTINGS_VERSION + "-other")  # another kit's settings
    assert lm.cache_path(images) != path and lm.store_path() != store
    lm.landmarks_for(images, progress=False)
    assert len(calls) == 4
