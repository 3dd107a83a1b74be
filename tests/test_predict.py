"""``lkr predict``: faces found and cropped on photos, one batched ten-crop pass, JSON schema,
annotated output, and the per-photo error paths.

Photos are made here: the face of scikit-image's public-domain ``astronaut`` pasted onto a plain
canvas at a known place, so the face box MTCNN must find is known.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lkr.cli import main
from lkr.classes import FER2013_CLASSES
from lkr.predict import Predictor, find_faces, read_photo, to_crop
from lkr.readers import square_crop

# The astronaut's face: MTCNN's box is about (180, 61, 268, 172) in the 512x512 photo. The patch
# pasted is rows 30:210, columns 150:300 (face, hair and neck, no helmet edge).
PATCH = (slice(30, 210), slice(150, 300))
FACE_IN_PATCH = np.array([180 - 150, 61 - 30, 268 - 150, 172 - 30], np.float32)
CANVAS = (480, 360)
OFFSETS = ((40, 100), (290, 120))  # (x, y) where each patch goes on the two-face canvas


@pytest.fixture(scope="module")
def patch() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return data.astronaut()[PATCH]


def _canvas(patch: np.ndarray, offsets) -> Image.Image:
    im = np.full((CANVAS[1], CANVAS[0], 3), 128, np.uint8)
    for x, y in offsets:
        im[y:y + patch.shape[0], x:x + patch.shape[1]] = patch
    return Image.fromarray(im)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, patch) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("photos")
    paths = {"one": d / "one.png", "two": d / "two.jpg", "blank": d / "blank.png", "bad": d / "bad.jpg",
             "missing": d / "missing.png"}
    _canvas(patch, OFFSETS[1:]).save(paths["one"])
    _canvas(patch, OFFSETS).save(paths["two"], quality=95)
    Image.new("RGB", CANVAS, (128, 128, 128)).save(paths["blank"])
    paths["bad"].write_bytes(b"this is not a JPEG")
    return paths


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# --- faces ------------------------------------------------------------------------------------
def test_face_found_and_cropped_where_it_was_pasted(photos, patch):
    faces = find_faces(read_photo(photos["one"]))
    assert len(faces) == 1
    f = faces[0]
    x, y = OFFSETS[1]
    expected = FACE_IN_PATCH + [x, y, x, y]
    assert _iou(f.box, expected) > 0.8, (f.box, expected)
    assert f.score > 0.95
    # The crop is the training crop: a square on the box, grayscale, 48x48.
    face, region = square_crop(read_photo(photos["one"]).convert("L"), f.box)
    assert f.region == region and abs((region[2] - region[0]) - (region[3] - region[1])) <= 1  # rounding
    assert f.image.shape == (48, 48) and f.image.dtype == np.uint8 and np.array_equal(f.image, face)
    # Landmarks mapped into the crop: an upright face filling it, eyes above the nose above the mouth.
    assert f.landmarks_detected
    p = f.points48
    assert 0 < p[0, 0] < p[2, 0] < p[1, 0] < 48 and p[0, 1] < p[2, 1] < p[3, 1] < 48
    assert f.box48[0] < 10 and f.box48[2] > 38 and f.box48[1] < 5 and f.box48[3] > 43
    np.testing.assert_allclose(to_crop(f.points, f.region), p, atol=1e-4)


def test_to_crop_maps_the_region_onto_48_pixels():
    got = to_crop(np.array([[10.0, 20.0], [110.0, 120.0], [60.0, 70.0]]), (10, 20, 110, 120))
    np.testing.assert_allclose(got, [[0, 0], [48, 48], [24, 24]])


def test_no_face_on_a_blank_or_tiny_photo(photos):
    assert find_faces(read_photo(photos["blank"])) == []
    assert find_faces(Image.new("RGB", (8, 8))) == []


# --- prediction -------------------------------------------------------------------------------
def test_all_faces_of_all_photos_in_one_batched_pass(demo_run, photos, monkeypatch):
    import lkr.evaluate

    calls = []
    real = lkr.evaluate.predict

    def counting(model, images, masks, **kw):
        calls.append((tuple(images.shape), None if masks is None else tuple(masks.shape)))
        return real(model, images, masks, **kw)

    monkeypatch.setattr(lkr.evaluate, "predict", counting)
    p = Predictor(demo_run, device="cpu")
    results = p.predict([photos["two"], photos["one"]])
    assert calls == [((3, 48, 48), (3, 48, 48))]
    assert [len(r.faces) for r in results] == [2, 1] and all(r.error is None for r in results)
    two = results[0].faces
    assert two[0].face.box[0] < two[1].face.box[0]  # left to right
    for (x, y), fp in zip(OFFSETS, two):
        assert _iou(fp.face.box, FACE_IN_PATCH + [x, y, x, y]) > 0.8
    # The same face gives the same probabilities wherever it is (one crop of the same pixels).
    a = np.array(list(results[1].faces[0].probabilities.values()))
    b = np.array(list(two[1].probabilities.values()))
    np.testing.assert_allclose(a, b, atol=0.02)
    # And they are the ten-crop probabilities of the 48x48 face and its mask.
    face = results[1].faces[0].face
    want = real(p.model, torch.from_numpy(face.image[None].copy()), torch.from_numpy(p.masks([face])), amp=False)[0]
    np.testing.assert_allclose(a, want[0].numpy(), atol=1e-5)


def test_json_schema(demo_run, photos, capsys):
    rc = main(["predict", str(photos["one"]), str(photos["two"]), "--run", str(demo_run), "--json",
               "--device", "cpu"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert [r["photo"] for r in out] == [str(photos["one"]), str(photos["two"])]
    for r in out:
        assert set(r) == {"photo", "faces", "error"} and r["error"] is None
        for f in r["faces"]:
            assert set(f) == {"box", "label", "probabilities", "landmarks_detected"}
            assert len(f["box"]) == 4 and all(isinstance(v, float) for v in f["box"])
            assert f["box"][0] < f["box"][2] and f["box"][1] < f["box"][3]
            assert list(f["probabilities"]) == list(FER2013_CLASSES)
            assert abs(sum(f["probabilities"].values()) - 1) < 1e-4
            assert f["label"] == max(f["probabilities"], key=f["probabilities"].get)
            assert f["landmarks_detected"] is True
    assert [len(r["faces"]) for r in out] == [1, 2]


def test_text_output_and_demo_note(demo_run, photos, capsys):
    rc = main(["predict", str(photos["one"]), "--run", str(demo_run), "--device", "cpu"])
    cap = capsys.readouterr()
    assert rc == 0
    lines = cap.out.splitlines()
    assert lines[0] == f"{photos['one']}: 1 face"
    assert lines[1].startswith("  face 1 at (")
    assert all(c in lines[2] for c in FER2013_CLASSES)
    assert "synthetic demo set" in cap.err and "error" not in cap.err


def test_bad_photos_fail_one_line_each_and_the_others_are_processed(demo_run, photos, capsys):
    args = [str(photos[k]) for k in ("blank", "bad", "one", "missing")]
    rc = main(["predict", *args, "--run", str(demo_run), "--json", "--device", "cpu"])
    cap = capsys.readouterr()
    assert rc == 1
    err = [line for line in cap.err.splitlines() if line.startswith("lkr: error:")]
    assert err[0] == f"lkr: error: {photos['blank']}: no face found"
    assert err[1].startswith(f"lkr: error: {photos['bad']}: cannot read image")
    assert err[2] == f"lkr: error: {photos['missing']}: no such file"
    assert len(err) == 3
    out = json.loads(cap.out)
    assert [r["error"] is None for r in out] == [False, False, True, False]
    assert len(out[2]["faces"]) == 1 and out[0]["faces"] == [] and out[1]["faces"] == []
    assert out[1]["error"] == err[1].removeprefix("lkr: error: ")


def test_not_a_run_folder_exits_2_with_one_line(tmp_path, photos, capsys):
    rc = main(["predict", str(photos["one"]), "--run", str(tmp_path)])
    cap = capsys.readouterr()
    assert rc == 2 and cap.out == ""
    assert cap.err.strip() == f"lkr: error: {tmp_path}: not a trained run folder (no best.pt)"


def test_save_writes_the_annotated_photos(demo_run, photos, tmp_path, capsys):
    out = tmp_path / "annotated"
    rc = main(["predict", str(photos["two"]), str(photos["blank"]), "--run", str(demo_run), "--save", str(out),
               "--device", "cpu"])
    assert rc == 1  # the blank photo
    assert f"annotated: {out / 'two.png'}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["two.png"]
    got = np.asarray(Image.open(out / "two.png").convert("RGB")).astype(int)
    src = np.asarray(read_photo(photos["two"])).astype(int)
    assert got.shape == src.shape
    # Far from the faces the photo is unchanged; on each face's centre the heatmap colours it.
    assert np.abs(got[5:60, 200:280] - src[5:60, 200:280]).max() == 0
    for x, y in OFFSETS:
        cx, cy = x + int(FACE_IN_PATCH[[0, 2]].mean()), y + int(FACE_IN_PATCH[[1, 3]].mean())
        assert np.abs(got[cy - 10:cy + 10, cx - 10:cx + 10] - src[cy - 10:cy + 10, cx - 10:cx + 10]).mean() > 5


def test_cams_are_grad_cam_of_the_predicted_class(demo_run, photos):
    p = Predictor(demo_run, device="cpu")
    r = p.predict([photos["one"]], save=None)[0]
    assert r.faces[0].cam is None and r.annotated is None
    faces = find_faces(read_photo(photos["one"]))
    cams = p.cams(faces, p.masks(faces), np.array([3]))
    assert cams.shape == (1, 44, 44) and cams.dtype == np.float32 and 0 <= cams.min() and cams.max() <= 1 + 1e-6


def test_large_photos_are_searched_smaller_and_boxes_scaled_back(photos):
    im = read_photo(photos["one"])
    big = im.resize((im.width * 3, im.height * 3), Image.Resampling.BILINEAR)
    small = find_faces(im)[0]
    f = find_faces(big, max_side=im.width)  # searched at the original size
    assert len(f) == 1
    np.testing.assert_allclose(f[0].box / 3, small.box, atol=3)  # pixels of the original photo
    np.testing.assert_allclose(f[0].points / 3, small.points, atol=3)
    assert np.abs(f[0].image.astype(int) - small.image.astype(int)).mean() < 10  # the same face crop


def test_a_run_folder_from_elsewhere_is_checked_when_loaded(demo_run, tmp_path, capsys):
    """Weights that do not fit the config, a config.json edited against the weights: one line each;
    fields of another version: a warning naming them."""
    import shutil

    import torch

    from lkr.cli import main
    from lkr.runfolder import RunFolderWarning, load_run_model

    def copy(name):
        d = tmp_path / name
        shutil.copytree(demo_run, d)
        return d

    renamed = copy("renamed")
    ck = torch.load(renamed / "best.pt", weights_only=True)
    ck["model"] = {k.replace("head_global", "head_main"): v for k, v in ck["model"].items()}
    torch.save(ck, renamed / "best.pt")
    edited = copy("edited")
    cfg = json.loads((edited / "config.json").read_text())
    cfg["width"] = 2.0
    (edited / "config.json").write_text(json.dumps(cfg))
    for run, words in ((renamed, "its weights do not fit its config: layer head_global"),
                       (edited, "says width=2.0 but the weights in best.pt were trained with width=1.0")):
        assert main(["evaluate", str(run)]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err, err
    other = copy("other")
    ck = torch.load(other / "best.pt", weights_only=True)
    ck["config"]["a_future_field"] = 1
    del ck["config"]["mask_merge"]
    torch.save(ck, other / "best.pt")
    with pytest.warns(RunFolderWarning, match=r"unknown fields a_future_field.*missing fields mask_merge"):
        load_run_model(other)


def test_the_record_of_a_short_run_still_evaluates_and_predicts(demo_run, tmp_path, capsys, photos):
    """A run recorded with a schedule that never leaves its warm-up (an older short run) is
    refused for training, not for reading: evaluate and predict load it."""
    import shutil

    import torch

    from lkr.cli import main

    run = tmp_path / "short"
    shutil.copytree(demo_run, run)
    ck = torch.load(run / "best.pt", weights_only=True)
    ck["config"].update(schedule="paper", warmup_epochs=20, epochs=1)
    torch.save(ck, run / "best.pt")
    cfg = json.loads((run / "config.json").read_text())
    cfg.update(schedule="paper", warmup_epochs=20, epochs=1)
    (run / "config.json").write_text(json.dumps(cfg))
    assert main(["evaluate", str(run), "--json"]) == 0
    assert main(["predict", str(photos["one"]), "--run", str(run), "--json"]) == 0
    assert "never leaves" not in capsys.readouterr().err


def test_a_run_evaluated_on_another_dataset_maps_classes_by_name(demo_run, tmp_path, capsys):
    """FER2013 -> CK+: contempt (never learned) is left out and counted, the prediction is the
    argmax over the shared classes, the interval resamples subjects, and the results go to
    cross/<dataset>/ without touching the run's own metrics."""
    import shutil

    from lkr.cli import main
    from lkr.demo import make_demo
    from lkr.evaluate import evaluate_cross

    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    own = (run / "metrics.json").read_text()
    ck = make_demo("ckplus")
    m = evaluate_cross(run, "demo-ckplus", ds=ck)
    contempt = int((np.asarray(ck.class_names)[ck.labels] == "contempt").sum())
    assert m["left_out"] == {"contempt": contempt} and m["n"] == len(ck.labels) - contempt
    assert m["shared_classes"] == [c for c in ck.class_names if c != "contempt"]
    assert m["resampled"] == "subjects" and m["ci_low"] <= m["accuracy"] <= m["ci_high"]
    z = np.load(run / "cross" / "demo-ckplus" / "predictions.npz")
    assert float((z["pred"] == z["label"]).mean()) == pytest.approx(m["accuracy"]) and z["pred"].max() < 6
    assert (run / "metrics.json").read_text() == own
    assert main(["evaluate", str(run), "--data", "demo-ckplus"]) == 0
    out = capsys.readouterr().out
    assert "over the 6 shared classes" in out and f"left out: contempt {contempt}" in out


def test_output_names_of_one_call_never_collide():
    from lkr.predict import OutputNames

    n = OutputNames(["clip", "clip-2", "clip"])  # x/clip.mp4, clip-2.mp4, y/clip.mp4
    assert [n.take("clip"), n.take("clip-2"), n.take("clip")] == ["clip", "clip-2", "clip-3"]
    n = OutputNames(["clip", "clip", "clip-2"])  # the same inputs in another order
    assert [n.take("clip"), n.take("clip"), n.take("clip-2")] == ["clip", "clip-3", "clip-2"]


def test_a_photo_with_no_face_leaves_no_empty_save_folder(demo_run, photos, tmp_path, capsys):
    out = tmp_path / "new" / "annotated"
    rc = main(["predict", str(photos["blank"]), "--run", str(demo_run), "--save", str(out), "--device", "cpu"])
    assert rc == 1 and not (tmp_path / "new" / "annotated").exists()
    assert "no face found" in capsys.readouterr().err
    kept = tmp_path / "kept"
    kept.mkdir()  # a folder the user made stays, empty or not
    main(["predict", str(photos["blank"]), "--run", str(demo_run), "--save", str(kept), "--device", "cpu"])
    assert kept.is_dir()


def test_an_unwritable_save_folder_is_one_line_and_loses_nothing(demo_run, photos, tmp_path, capsys, monkeypatch):
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as m:  # a read-only mount: nothing can be created there
        m.setattr(tempfile, "mkstemp", refuse)
        rc = main(["predict", str(photos["one"]), "--run", str(demo_run), "--save", str(tmp_path / "ro"),
                   "--device", "cpu"])
    cap = capsys.readouterr()
    assert rc == 2 and cap.out == ""
    assert cap.err.strip() == f"lkr: error: {tmp_path / 'ro'}: cannot write into the --save folder (Permission denied)"
    # the folder turns read-only while photos are written: that photo's error, the others written
    real_save = Image.Image.save

    def save(self, fp, *a, **k):
        if str(fp).endswith("one.png"):
            raise PermissionError(13, "Permission denied")
        return real_save(self, fp, *a, **k)

    monkeypatch.setattr(Image.Image, "save", save)
    out = tmp_path / "half"
    rc = main(["predict", str(photos["one"]), str(photos["two"]), "--run", str(demo_run), "--save", str(out),
               "--device", "cpu"])
    cap = capsys.readouterr()
    assert rc == 1
    assert f"lkr: error: {photos['one']}: cannot write {out / 'one.png'} (Permission denied)" in cap.err
    assert sorted(p.name for p in out.iterdir()) == ["two.png"]


def test_a_record_from_before_mask_band_loads_without_a_warning(tmp_path):
    """The shipped model and every committed run predate ``mask_band`` (it acts only with the
    centre mask): reading them must not warn on every ``lkr predict``."""
    import warnings

    from lkr.config import Config
    from lkr.runfolder import config_of_record

    d = Config().to_dict()
    d.pop("mask_band")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = config_of_record(d, tmp_path / "config.json")
    assert cfg.mask_band == 7 and cfg.mask_source == "regions"


def test_dataset_identity_sees_through_the_controls_stamped_copies():
    from lkr.runfolder import dataset_identity

    assert [dataset_identity(n) for n in ("ckplus-cue", "ckplus-inner-cue", "ckplus", "control-inner", "fer2013",
                                          "demo-fer2013")] == ["ckplus", "ckplus", "ckplus", "control", "fer2013",
                                                               "demo-fer2013"]


def test_a_fer2013_folder_without_prefixes_is_evaluated_on_its_test_folder(demo_run, tmp_path, capsys):
    """The image release without Training_/PrivateTest_ names: the cross-dataset evaluation takes
    its test/ folder (one split "Test") instead of ending in an IndexError."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"):
            d = tmp_path / "fer" / split / c
            d.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(d / f"{i}.png")
    out = tmp_path / "cross"
    rc = main(["evaluate", str(demo_run), "--data", str(tmp_path / "fer"), "--out", str(out), "--json",
               "--device", "cpu"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    m = json.loads(cap.out)
    assert m["images"] == "Test" and m["n"] == 14
    assert (out / "metrics.json").is_file()


def test_evaluate_writes_its_metrics_where_out_says(demo_run, tmp_path, capsys):
    out = tmp_path / "again"
    rc = main(["evaluate", str(demo_run), "--out", str(out), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert rc == 0 and f"written to {out / 'metrics.json'}" in printed
    m = json.loads((out / "metrics.json").read_text())
    assert f"accuracy {100 * m['accuracy']:.2f}% on {m['n']} test images" in printed


def test_evaluate_never_writes_over_a_run_folders_own_metrics(demo_run, capsys):
    before = (demo_run / "metrics.json").read_bytes()
    assert main(["evaluate", str(demo_run), "--out", str(demo_run), "--device", "cpu"]) == 2
    assert "a run folder; its own metrics.json is not overwritten" in capsys.readouterr().err
    assert (demo_run / "metrics.json").read_bytes() == before


def test_a_bad_run_leaves_no_save_folder_behind(photos, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["predict", str(photos["one"]), "--run", str(tmp_path / "no-run"), "--save", str(out)]) == 2
    assert not out.exists()
