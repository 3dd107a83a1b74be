"""The built-in synthetic demo set: deterministic, well-formed, learnable but not trivial."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from lkr.classes import CKPLUS_CLASSES, FER2013_CLASSES
from lkr.dataset import FaceDataset
from lkr.demo import make_demo, save_sample_grid


@pytest.fixture(scope="module")
def fer() -> FaceDataset:
    t = time.perf_counter()
    ds = make_demo("fer2013")
    print(f"\nmake_demo('fer2013'): {len(ds)} images in {time.perf_counter() - t:.2f} s")
    return ds


@pytest.fixture(scope="module")
def ck() -> FaceDataset:
    t = time.perf_counter()
    ds = make_demo("ckplus")
    print(f"\nmake_demo('ckplus'): {len(ds)} images in {time.perf_counter() - t:.2f} s")
    return ds


@pytest.mark.parametrize("shape", ["fer2013", "ckplus"])
def test_deterministic_by_seed(shape):
    a, b, c = make_demo(shape, seed=3, n=90), make_demo(shape, seed=3, n=90), make_demo(shape, seed=4, n=90)
    for attr in FaceDataset._ARRAYS:
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=attr)
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.points, c.points)


def test_fer2013_shape(fer):
    n = len(fer)
    assert (fer.name, fer.kind, fer.source) == ("demo-fer2013", "demo", "demo")
    assert fer.class_names == FER2013_CLASSES
    assert fer.images.shape == (n, 48, 48) and fer.images.dtype == np.uint8
    assert fer.labels.dtype == np.int64 and set(fer.labels.tolist()) == set(range(7))
    assert fer.summary()["splits"] == {"Training": 1120, "PublicTest": 140, "PrivateTest": 140}
    # Every class in every split; the class order of FER2013's frequencies is kept
    # (happiness most common, disgust rarest).
    for split, counts in fer.counts().items():
        assert min(counts.values()) >= 5, split
        assert max(counts, key=counts.get) == "happiness" and min(counts, key=counts.get) == "disgust"
    assert fer.paths[123] == "demo:fer2013/000123" and len(set(fer.paths.tolist())) == n
    assert (fer.subjects == "").all() and (fer.sequences == "").all()
    # The images use the gray range and vary (not one constant face).
    assert fer.images.min() < 30 and fer.images.max() > 225
    assert fer.images.reshape(n, -1).std(0).mean() > 20


def test_size_argument():
    ds = make_demo("fer2013", n=200)
    assert ds.summary()["splits"] == {"Training": 160, "PublicTest": 20, "PrivateTest": 20}
    assert len(make_demo("ckplus", n=100)) == 99  # whole 3-frame sequences
    with pytest.raises(ValueError, match="unknown demo shape"):
        make_demo("affectnet")
    with pytest.raises(ValueError, match="at least 1"):
        make_demo("fer2013", n=0)


@pytest.mark.parametrize("shape", ["fer2013", "ckplus"])
def test_landmarks_and_boxes(shape, fer, ck):
    ds = fer if shape == "fer2013" else ck
    n = len(ds)
    assert ds.points.shape == (n, 5, 2) and ds.points.dtype == np.float32
    assert ds.boxes.shape == (n, 4) and ds.boxes.dtype == np.float32
    assert ds.detected.dtype == bool and ds.detected.all()
    x, y = ds.points[..., 0], ds.points[..., 1]
    assert (ds.points >= 0).all() and (ds.points <= 47).all()
    x1, y1, x2, y2 = (ds.boxes[:, i:i + 1] for i in range(4))
    assert ((x >= x1) & (x <= x2) & (y >= y1) & (y <= y2)).all()
    # A face-sized box (MTCNN-like): most of the 48x48 crop.
    assert 25 < np.median(x2 - x1) < 48 and 30 < np.median(y2 - y1) <= 48
    # Layout: eyes above nose above mouth corners; left (image) of right.
    eyes_y, nose_y, mouth_y = y[:, :2].max(1), y[:, 2], y[:, 3:].min(1)
    assert (eyes_y < mouth_y).all()
    assert (np.median(y[:, :2], 1) < nose_y).mean() > 0.95 and (nose_y < np.median(y[:, 3:], 1)).mean() > 0.95
    assert (x[:, 0] < x[:, 1]).all() and (x[:, 3] < x[:, 4]).all()
    # Eye distance about a third of the face width, as on real faces.
    ratio = np.hypot(*(ds.points[:, 1] - ds.points[:, 0]).T) / (x2 - x1)[:, 0]
    assert 0.25 < np.median(ratio) < 0.55


def test_ckplus_subjects_and_sequences(ck):
    n = len(ck)
    assert (ck.name, ck.kind) == ("demo-ckplus", "demo")
    assert ck.class_names == CKPLUS_CLASSES
    assert n == 480 and (ck.splits == "all").all()
    assert set(ck.labels.tolist()) == set(range(7))
    subjects = sorted(set(ck.subjects.tolist()))
    assert len(subjects) == 40 and subjects[0] == "S001"
    seqs, counts = np.unique(ck.sequences, return_counts=True)
    assert len(seqs) == 160 and (counts == 3).all()
    for seq in seqs:
        m = ck.sequences == seq
        assert len(set(ck.labels[m].tolist())) == 1           # one label per sequence
        assert set(ck.subjects[m].tolist()) == {seq[:4]}      # "S001_002" belongs to S001
        assert ck.paths[m][0].startswith(f"demo:ckplus/{seq}_")
    # A subject shows each expression at most once (as in CK+), and has at least one.
    for s in subjects:
        m = ck.subjects == s
        assert len(set(ck.labels[m].tolist())) * 3 == m.sum()
    # Frames of a sequence are near-duplicates; different subjects are not.
    first = ck.images[ck.sequences == seqs[0]].astype(float)
    other = ck.images[ck.subjects != seqs[0][:4]][:1].astype(float)
    assert np.abs(first[0] - first[2]).mean() < np.abs(first[0] - other[0]).mean()
    assert len(set(ck.paths.tolist())) == n


def _tiny_cnn() -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*block(1, 8), *block(8, 16), *block(16, 32), nn.Flatten(), nn.Linear(32 * 6 * 6, 7))


def test_learnable_but_not_trivial(fer):
    train, held = fer.split("Training"), fer.subset(fer.splits != "Training")
    xt = torch.tensor(train.images[:, None] / 255.0, dtype=torch.float32)  # (N, 1, 48, 48)
    yt = torch.tensor(train.labels)
    xh = torch.tensor(held.images[:, None] / 255.0, dtype=torch.float32)
    yh = torch.tensor(held.labels)
    majority = np.bincount(held.labels).max() / len(held)

    # Raw-pixel templates (nearest class mean) are near chance: pose, identity and lighting
    # vary more than the expression does.
    a = train.images.reshape(len(train), -1).astype(np.float32)
    means = np.stack([a[train.labels == c].mean(0) for c in range(7)])
    b = held.images.reshape(len(held), -1).astype(np.float32)
    ncm = float((((b[:, None] - means[None]) ** 2).sum(-1).argmin(1) == held.labels).mean())

    # A tiny CNN learns the geometry well above chance in a few CPU epochs.
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = _tiny_cnn()
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        gen = torch.Generator().manual_seed(0)
        t = time.perf_counter()
        for _ in range(6):
            net.train()
            for idx in torch.randperm(len(xt), generator=gen).split(32):
                opt.zero_grad()
                nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            cnn = (net(xh).argmax(1) == yh).float().mean().item()
    finally:
        torch.set_num_threads(threads)
    print(f"\nheld-out accuracy: CNN {cnn:.3f} ({time.perf_counter() - t:.1f} s), "
          f"pixel nearest-class-mean {ncm:.3f}, majority class {majority:.3f}")
    assert ncm < 0.9
    assert ncm < majority + 0.15
    assert cnn > 0.40 and cnn > majority + 0.15


def test_sample_grid(tmp_path, fer):
    out = save_sample_grid(fer, tmp_path / "sub" / "grid.png", per_class=4)
    assert out == tmp_path / "sub" / "grid.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(out) as im:
        w, h = im.size
    assert h > w / 4 and w > 100  # seven rows of four faces plus labels
    # A class with fewer images than per_class leaves blanks instead of failing.
    few = fer.subset(np.r_[np.flatnonzero(fer.labels == 0)[:2], np.flatnonzero(fer.labels == 1)[:10]])
    assert save_sample_grid(few, tmp_path / "few.png", per_class=5).exists()
