"""MTCNN landmarks on real CK+48 and FER2013 samples, the template fallback and the cache."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lkr import landmarks as lm
from lkr.classes import CKPLUS_CLASSES
from lkr.dataset import FaceDataset


def _sample(zip_path: Path, suffix: str, n: int, seed: int) -> np.ndarray:
    """n images of the archive (seeded random choice), (n, 48, 48) uint8."""
    from PIL import Image

    with zipfile.ZipFile(zip_path) as z:
        names = sorted(m for m in z.namelist() if m.endswith(suffix))
        pick = np.random.default_rng(seed).choice(len(names), n, replace=False)
        return np.stack([np.asarray(Image.open(io.BytesIO(z.read(names[i]))).convert("L")) for i in sorted(pick)])


@pytest.fixture(scope="module")
def ck_images(ckplus48_zip) -> np.ndarray:
    return _sample(ckplus48_zip, ".png", 60, seed=0)


@pytest.fixture(scope="module")
def ck_result(ck_images) -> lm.LandmarkResult:
    return lm.detect_faces(ck_images, progress=False)


def _as_dataset(images: np.ndarray) -> FaceDataset:
    n = len(images)
    return FaceDataset(name="ckplus", kind="test", images=images, labels=np.arange(n) % 7,
                       class_names=CKPLUS_CLASSES, splits=["all"] * n, subjects=[""] * n,
                       sequences=[""] * n, paths=[f"img{i}" for i in range(n)], source="test")


def test_ckplus48_all_detected_and_sensible(ck_images, ck_result):
    boxes, points, det = ck_result.boxes, ck_result.points, ck_result.detected
    assert det.all(), f"{(~det).sum()} of {len(det)} CK+48 faces missed"
    assert boxes.shape == (60, 4) and points.shape == (60, 5, 2) and boxes.dtype == np.float32
    x, y = points[..., 0], points[..., 1]
    assert ((points > 0) & (points < 48)).all()  # CK+48 crops hold the whole face
    assert (x[:, 0] < x[:, 1]).all() and (x[:, 3] < x[:, 4]).all()  # left of right (image left)
    eyes_y, mouth_y = y[:, :2].max(1), y[:, 3:].min(1)
    assert (eyes_y < y[:, 2]).all() and (y[:, 2] < mouth_y).all()  # eyes above nose above mouth
    assert (x[:, 0] < x[:, 2]).all() and (x[:, 2] < x[:, 1]).all()  # nose between the eyes
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (w > 24).all() and (h > 24).all() and (w < 60).all()  # the face fills most of the crop
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    assert (np.abs(centre - 24) < 8).all()
    assert (ck_result.prob > 0.9).all() and (ck_result.pass_index == 0).all()
    # the public three-array form gives the same
    b, p, d = lm.detect_landmarks(ck_images[:4], progress=False)
    np.testing.assert_allclose(p, points[:4], atol=1e-4)
    np.testing.assert_array_equal(d, det[:4])


def test_fer2013_sample_coverage(fer2013_zip):
    images = _sample(fer2013_zip, ".jpg", 100, seed=1)
    r = lm.detect_faces(images, progress=False)
    cov = r.detected.mean()
    print(f"FER2013 sample coverage: {cov:.2%}, per pass {np.bincount(r.pass_index + 1).tolist()}")
    assert cov >= 0.90
    assert lm.plausible(r.boxes[r.detected], r.points[r.detected]).all()


def test_flip_gives_mirrored_points(ck_images, ck_result):
    """Continuous coordinates: a mirrored face's points are at x' = 48 - x (left/right swapped)."""
    r = lm.detect_faces(ck_images[:, :, ::-1].copy(), progress=False)
    assert r.detected.all()
    mirrored = r.points[:, [1, 0, 2, 4, 3]]
    mirrored[..., 0] = 48 - mirrored[..., 0]
    err = np.abs(mirrored - ck_result.points)
    assert np.median(err) < 0.5 and err.max() < 3.0


def test_rotated_pass_maps_points_back(ck_images, ck_result):
    """A pass that turns the image by 15 degrees returns points in the unturned image's frame."""
    boxes, points, prob, found = lm._run_pass(ck_images[:20], lm.Pass(angle=15.0), device="cpu", batch_size=64)
    assert found.mean() > 0.8
    err = np.linalg.norm(points[found] - ck_result.points[:20][found], axis=-1)
    assert np.median(err) < 1.5 and err.max() < 4.0


def test_worker_processes_give_the_same_result(ck_images, ck_result, monkeypatch):
    """Chunks spread over 2 spawned one-thread processes equal the in-process result."""
    monkeypatch.setattr(lm, "CHUNK", 8)
    monkeypatch.setattr(lm, "MIN_POOL_IMAGES", 16)
    r = lm.detect_faces(ck_images[:24], progress=False, workers=2)
    assert r.detected.all()
    np.testing.assert_allclose(r.points, ck_result.points[:24], atol=1e-3)
    np.testing.assert_array_equal(r.pass_index, ck_result.pass_index[:24])


def test_template_for_faceless_images(ck_images, ck_result):
    rng = np.random.default_rng(0)
    blank = np.full((1, 48, 48), 128, np.uint8)
    noise = rng.integers(0, 256, (2, 48, 48), dtype=np.uint8)
    images = np.concatenate([ck_images[:6], blank, noise])
    r = lm.detect_faces(images, progress=False)
    assert r.detected.tolist() == [True] * 6 + [False] * 3
    assert (r.pass_index[6:] == -1).all() and (r.prob[6:] == 0).all()
    tb, tp = r.boxes[:6].mean(0), r.points[:6].mean(0)  # the mean detected face of this call
    for i in range(6, 9):
        np.testing.assert_allclose(r.points[i], tp, atol=1e-5)
        np.testing.assert_allclose(r.boxes[i], tb, atol=1e-5)
    # nothing detected at all: the built-in template (FER2013's mean face)
    b, p, d = lm.detect_landmarks(np.concatenate([blank, noise[:1]]), progress=False)
    assert not d.any()
    np.testing.assert_array_equal(p[0], lm.DEFAULT_TEMPLATE_POINTS)
    np.testing.assert_array_equal(b[1], lm.DEFAULT_TEMPLATE_BOX)
    assert lm.plausible(lm.DEFAULT_TEMPLATE_BOX, lm.DEFAULT_TEMPLATE_POINTS)


def test_attach_landmarks_caches(ck_images, ck_result, mtcnn_calls):
    ds = _as_dataset(ck_images[:12])
    calls = mtcnn_calls
    out = lm.attach_landmarks(ds, progress=False)
    assert calls == [12] and ds.points is None  # the input is not changed
    np.testing.assert_allclose(out.points, ck_result.points[:12], atol=1e-4)
    assert out.detected.all() and out.summary()["landmarks"]["coverage"] == 1.0
    path = lm.cache_path(ds.images)
    assert path.exists() and path.parent == Path(lm.cache_dir())
    assert not list(path.parent.glob("*.tmp"))  # the atomic write left no temporary file

    again = lm.attach_landmarks(ds, progress=False)  # cache hit
    assert calls == [12]
    np.testing.assert_array_equal(again.points, out.points)

    assert lm.attach_landmarks(out, progress=False) is out  # already has landmarks
    lm.attach_landmarks(out, progress=False, force=True)  # force: detect again
    assert calls == [12, 12]

    path.write_bytes(b"not an npz")  # a corrupt cache is recomputed and rewritten
    fixed = lm.attach_landmarks(ds, progress=False)
    assert calls == [12, 12, 12]
    np.testing.assert_array_equal(fixed.points, out.points)
    assert lm._read_cache(path, 12) is not None and lm._read_store(lm.store_path()) is not None

    cov = lm.landmark_coverage(out)
    assert cov["detected"] == 12 and cov["template"] == 0 and cov["coverage"] == 1.0
    assert cov["splits"] == {"all": {"detected": 12, "images": 12, "coverage": 1.0}}
    with pytest.raises(ValueError, match="no landmarks"):
        lm.landmark_coverage(ds)


def test_bad_input_shape():
    with pytest.raises(ValueError, match="48"):
        lm.detect_landmarks(np.zeros((2, 32, 32), np.uint8), progress=False)


# --- the template of a dataset: training images only ----------------------------------------
def _split_dataset(splits: list[str]) -> FaceDataset:
    n = len(splits)
    images = np.random.default_rng(7).integers(0, 256, (n, 48, 48), dtype=np.uint8)
    return FaceDataset(name="fer2013", kind="test", images=images, labels=np.arange(n) % 7,
                       class_names=CKPLUS_CLASSES, splits=splits, subjects=[""] * n,
                       sequences=[""] * n, paths=[f"img{i}" for i in range(n)], source="test")


def _detections(detected: list[bool], shift: list[float]) -> lm.LandmarkResult:
    """A LandmarkResult whose face i is the built-in template shifted by shift[i] pixels; the
    undetected rows hold a stale 'template' far from every face (as a cache of the old kind)."""
    n = len(detected)
    shift = np.asarray(shift, np.float32)
    boxes = lm.DEFAULT_TEMPLATE_BOX[None] + shift[:, None]
    points = lm.DEFAULT_TEMPLATE_POINTS[None] + shift[:, None, None]
    det = np.asarray(detected, bool)
    boxes[~det], points[~det] = 99.0, 99.0
    return lm.LandmarkResult(boxes=boxes.astype(np.float32), points=points.astype(np.float32), detected=det,
                             prob=det.astype(np.float32), pass_index=np.where(det, 0, -1).astype(np.int16))


SPLITS = ["Training"] * 4 + ["PublicTest"] * 2 + ["PrivateTest"] * 2
DETECTED = [True, True, True, False, True, False, True, False]
SHIFT = [0.0, 1.0, 2.0, 0.0, 8.0, 0.0, -9.0, 0.0]  # test faces far from the training ones


def test_template_is_the_mean_of_training_faces_only(monkeypatch):
    ds = _split_dataset(SPLITS)
    r = _detections(DETECTED, SHIFT)
    monkeypatch.setattr(lm, "landmarks_for", lambda images, **kw: r)
    out = lm.attach_landmarks(ds, progress=False)
    train = np.array([0, 1, 2])  # the detected Training faces
    tb, tp = r.boxes[train].mean(0), r.points[train].mean(0)
    # all detected faces (test included) would give another template
    assert np.abs(r.points[np.array(DETECTED)].mean(0) - tp).max() > 0.5
    for i in np.flatnonzero(~np.array(DETECTED)):
        np.testing.assert_allclose(out.boxes[i], tb, atol=1e-5)
        np.testing.assert_allclose(out.points[i], tp, atol=1e-5)
    det = np.array(DETECTED)
    np.testing.assert_array_equal(out.points[det], r.points[det])  # detections unchanged
    assert out.detected.tolist() == DETECTED
    note = "3 faces without detected landmarks get the template: the mean of the 3 detected Training faces"
    assert any(n.startswith(note) for n in out.notes) and not ds.notes
    assert lm.landmark_coverage(out)["template_from"].startswith("the mean of the 3 detected Training faces")
    # the test images do not move the template: other test detections, the same template
    moved = _detections(DETECTED, SHIFT[:4] + [20.0, 0.0, 15.0, 0.0])
    monkeypatch.setattr(lm, "landmarks_for", lambda images, **kw: moved)
    again = lm.attach_landmarks(ds, progress=False)
    np.testing.assert_allclose(again.points[~det], out.points[~det], atol=1e-6)


def test_a_part_of_a_detected_set_is_read_from_the_store(ck_images, mtcnn_calls):
    """Once a set is detected, any part of it (part=True) is read from the per-image store (no
    MTCNN) with the whole set's landmarks; images the store lacks are detected alone, filed, and
    get no file of their own; identical images are filed once (issue 34: lkr evaluate detects the
    scored split only)."""
    calls = mtcnn_calls
    whole = lm.landmarks_for(ck_images[:10], progress=False)
    part = lm.landmarks_for(ck_images[3:8], progress=False, part=True)
    assert calls == [10]
    for k, v in part.arrays().items():
        np.testing.assert_array_equal(v, getattr(whole, k)[3:8])
    mixed = np.concatenate([ck_images[10:13], ck_images[:2], ck_images[10:11]])  # 3 new, 2 known, a repeat
    got = lm.landmarks_for(mixed, progress=False, part=True)
    assert calls == [10, 4]  # the unknown ones only (the repeat too: detected with them)
    assert not lm.cache_path(mixed).exists()  # a part has no file of its own
    np.testing.assert_array_equal(got.points[3:5], whole.points[:2])
    keys, call, _ = lm._read_store(lm.store_path())
    assert len(keys) == len(set(keys.tolist())) == 13 and sorted(call.tolist()) == [4] * 3 + [10] * 10
    again = lm.landmarks_for(mixed, progress=False, part=True)  # all filed now
    assert calls == [10, 4] and np.array_equal(again.points[3:5], whole.points[:2])
    np.testing.assert_array_equal(again.points[5], again.points[0])  # the repeat: its first row


def test_the_whole_detection_outranks_a_part_detected_first(monkeypatch, tmp_path):
    """MTCNN's boxes depend a little on batch company. A split evaluated first (its faces
    detected alone), then the whole dataset detected (training): the split read again gets the
    whole dataset's landmarks, those its runs trained with; a smaller call never replaces them."""
    monkeypatch.setenv("LKR_CACHE_DIR", str(tmp_path))
    images = np.random.default_rng(0).integers(0, 256, (20, 48, 48), dtype=np.uint8)

    def batch_dependent(imgs, **kw):  # a stand-in whose boxes move with the call's size
        k = len(imgs)
        return lm.LandmarkResult(boxes=np.tile(np.float32([4, 2, 44, 46]) + k / 100, (k, 1)),
                                 points=np.full((k, 5, 2), 24 + k / 100, np.float32), detected=np.ones(k, bool),
                                 prob=np.ones(k, np.float32), pass_index=np.zeros(k, np.int16))

    monkeypatch.setattr(lm, "detect_faces", batch_dependent)
    split = images[5:9]
    first = lm.landmarks_for(split, progress=False, part=True)
    assert np.allclose(first.boxes[:, 0], 4.04)
    whole = lm.landmarks_for(images, progress=False)
    assert np.allclose(whole.boxes[:, 0], 4.2)
    again = lm.landmarks_for(split, progress=False, part=True)
    np.testing.assert_array_equal(again.boxes, whole.boxes[5:9])
    lm.landmarks_for(images[5:7], progress=False)  # a smaller whole call of its own
    np.testing.assert_array_equal(lm.landmarks_for(split, progress=False, part=True).boxes, whole.boxes[5:9])


def test_template_of_a_stale_cache_is_not_used():
    """A landmark cache written with the old template (any values in the undetected rows) is
    read for its detections only; the template is rebuilt from the Training faces."""
    ds = _split_dataset(SPLITS)
    stale = _detections(DETECTED, SHIFT)  # undetected rows hold 99s
    lm._write_cache(lm.cache_path(ds.images), stale)
    out = lm.attach_landmarks(ds, progress=False)  # a cache hit: MTCNN does not run
    assert out.detected.tolist() == DETECTED
    undet = ~np.array(DETECTED)
    assert (out.points[undet] < 48).all()
    np.testing.assert_allclose(out.points[undet][0], stale.points[:3].mean(0), atol=1e-5)


def test_template_without_a_training_split_is_the_builtin_one(monkeypatch):
    """Fold data (CK+): every image is in some fold's test part, so no image shapes the template."""
    ds = _split_dataset(["all"] * 8)
    r = _detections(DETECTED, SHIFT)
    monkeypatch.setattr(lm, "landmarks_for", lambda images, **kw: r)
    out = lm.attach_landmarks(ds, progress=False)
    for i in np.flatnonzero(~np.array(DETECTED)):
        np.testing.assert_array_equal(out.points[i], lm.DEFAULT_TEMPLATE_POINTS)
        np.testing.assert_array_equal(out.boxes[i], lm.DEFAULT_TEMPLATE_BOX)
    assert "built-in template (no Training split" in lm.landmark_coverage(out)["template_from"]
    # a Training split without any detected face: the built-in template too
    nothing = _detections([False] * 4 + [True] * 4, [0.0] * 4 + [5.0] * 4)
    monkeypatch.setattr(lm, "landmarks_for", lambda images, **kw: nothing)
    out = lm.attach_landmarks(_split_dataset(SPLITS), progress=False)
    np.testing.assert_array_equal(out.points[0], lm.DEFAULT_TEMPLATE_POINTS)
    assert "no Training face was detected" in lm.landmark_coverage(out)["template_from"]


def test_cli_landmarks_says_where_the_template_comes_from(tmp_path, monkeypatch, capsys):
    import json

    from lkr.cli import main

    pix = " ".join(["90"] * 2304)
    csv = tmp_path / "fer.csv"
    csv.write_text("emotion,pixels,Usage\n" + "".join(f"{e},{pix},{u}\n" for e, u in
                                                      ((0, "Training"), (1, "Training"), (2, "PublicTest"))))
    r = _detections([True, False, True], [3.0, 0.0, -6.0])
    monkeypatch.setattr(lm, "landmarks_for", lambda images, **kw: r)
    assert main(["landmarks", str(csv), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2/3 faces with detected landmarks" in out
    assert "template: the mean of the 1 detected Training faces (no test image)" in out
    assert main(["landmarks", str(csv), "--quiet", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["template"] == 1 and s["template_from"].startswith("the mean of the 1 detected Training faces")
