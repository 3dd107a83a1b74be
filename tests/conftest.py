"""Shared fixtures. Real datasets are read from ../shared/data (or $LKR_SHARED_DATA) when
present; tests that need them skip cleanly when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LKR_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Keep the tests' dataset caches out of the user's cache, but share them within a session."""
    old = os.environ.get("LKR_CACHE_DIR")
    os.environ["LKR_CACHE_DIR"] = str(tmp_path_factory.mktemp("lkr-cache"))
    yield
    if old is None:
        os.environ.pop("LKR_CACHE_DIR", None)
    else:
        os.environ["LKR_CACHE_DIR"] = old


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """The tests train tiny nets: one torch thread is several times faster than two on two busy
    cores, and results do not depend on the machine's core count."""
    import torch

    n = torch.get_num_threads()
    old = os.environ.get("LKR_THREADS")
    os.environ["LKR_THREADS"] = "1"  # what lkr.cpu.use_threads gives every run of the tests
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
    if old is None:
        os.environ.pop("LKR_THREADS", None)
    else:
        os.environ["LKR_THREADS"] = old


MISSING_DATA_REASON = "real dataset not present"


def _shared(name: str) -> Path:
    p = SHARED_DATA / name
    if not p.exists():
        pytest.skip(f"{MISSING_DATA_REASON}: {p}")
    return p


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say at the end of the run how many tests skipped for want of the real archives, and how
    to point the suite at them (a silent skip looks like a pass)."""
    missing: dict[str, int] = {}
    for rep in terminalreporter.stats.get("skipped", []):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        if MISSING_DATA_REASON in reason:
            path = reason.split(f"{MISSING_DATA_REASON}: ", 1)[-1]
            missing[path] = missing.get(path, 0) + 1
    if missing:
        n = sum(missing.values())
        terminalreporter.write_line(
            f"lkr: {n} test{'s' if n != 1 else ''} skipped without the real datasets ("
            + ", ".join(f"{p}: {k}" for p, k in sorted(missing.items()))
            + "); put fer2013.zip and CK+48.zip in that folder, or set LKR_SHARED_DATA to the folder that holds them",
            yellow=True)


@pytest.fixture(scope="session")
def fer2013_zip() -> Path:
    return _shared("fer2013.zip")


@pytest.fixture(scope="session")
def ckplus48_zip() -> Path:
    return _shared("CK+48.zip")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """A tiny trained LKRNet run folder (demo set, 300 images, 1 epoch; about 5 s on one thread)."""
    import torch

    from lkr.demo import make_demo
    from lkr.train import config_for, train

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ds = make_demo("fer2013", n=300)
        out = tmp_path_factory.mktemp("demo-run") / "lkrnet"
        train(ds, config_for(ds, "lkrnet", epochs=1), out, device="cpu", progress=False, data_ref="demo")
    finally:
        torch.set_num_threads(n)
    return out


@pytest.fixture
def mtcnn_calls(monkeypatch, tmp_path) -> list[int]:
    """The sizes of the MTCNN calls a test makes (``lm.detect_faces`` counted, then run), with a
    landmark store of the test's own so that earlier tests' detections are not read."""
    monkeypatch.setenv("LKR_CACHE_DIR", str(tmp_path / "cache"))
    from lkr import landmarks as lm

    calls: list[int] = []
    real = lm.detect_faces

    def counting(images, **kw):
        calls.append(len(images))
        return real(images, **kw)

    monkeypatch.setattr(lm, "detect_faces", counting)
    return calls

