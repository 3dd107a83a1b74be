"""``lkr predict clip.mp4``: a clip made from the public-domain photo (a window panning across it),
its timeline checked against predicting the frames one by one, the outputs, face ids across
frames, and the one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lkr.cli import main
from lkr.predict import Predictor
from lkr.video import VIDEO_MAX_SIDE, BoxTracker, example_clip, predict_video

FRAMES = 16


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    pytest.importorskip("skimage")
    return example_clip(tmp_path_factory.mktemp("clip"), frames=FRAMES)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(device="cpu")  # the shipped model


@pytest.fixture(scope="module")
def result(clip, predictor, tmp_path_factory):
    return predict_video(predictor, clip, save=tmp_path_factory.mktemp("out"), progress=False)


def _frames(path: Path) -> list:
    import av

    with av.open(str(path)) as c:
        return [f.to_image() for f in c.decode(video=0)]


def test_the_timeline_is_the_frames_predicted_one_by_one(clip, predictor, result, tmp_path):
    assert result.error is None and result.frames == FRAMES == result.analysed
    assert result.faces == [1]  # one face, followed across every frame
    assert [r["frame"] for r in result.rows] == list(range(FRAMES))
    names = list(predictor.class_names)
    for i, im in enumerate(_frames(clip)):
        if i % 5:
            continue
        im.save(tmp_path / f"f{i}.png")  # lossless: the very frame
        (photo,) = predictor.predict([tmp_path / f"f{i}.png"], max_side=VIDEO_MAX_SIDE)
        (face,) = photo.faces
        row = result.rows[i]
        np.testing.assert_allclose([row[c] for c in names], [face.probabilities[c] for c in names], atol=1e-6)
        np.testing.assert_allclose([row["x1"], row["y1"], row["x2"], row["y2"]], face.face.box, atol=0.06)
        assert row["label"] == face.label
    # the window pans right and down, so the face moves left and up in the frame
    assert result.rows[-1]["x1"] < result.rows[0]["x1"] - 50 and result.rows[-1]["y1"] < result.rows[0]["y1"] - 20


def test_followed_frames_agree_with_searching_every_frame(clip, predictor, result):
    """Issue 34: MTCNN searches every DETECT_EVERY-th frame whole and the frames between follow
    the face by its last stage; against searching every frame, the searched frames are the same
    rows, and the followed ones keep the label, their boxes overlapping by IoU >= 0.75."""
    from torchvision.ops import box_iou
    import torch

    from lkr.video import DETECT_EVERY

    every = predict_video(predictor, clip, progress=False, detect_every=1)
    assert result.searched == -(-FRAMES // DETECT_EVERY) and every.searched == every.analysed == FRAMES
    box = lambda r: [r["x1"], r["y1"], r["x2"], r["y2"]]  # noqa: E731
    iou = box_iou(torch.tensor([box(r) for r in result.rows]), torch.tensor([box(r) for r in every.rows])).diagonal()
    assert [r["label"] for r in result.rows] == [r["label"] for r in every.rows]
    assert float(iou.min()) >= 0.75
    for f in range(0, FRAMES, DETECT_EVERY):
        assert result.rows[f] == every.rows[f]


def test_the_readme_says_how_often_frames_are_searched():
    from lkr.video import DETECT_EVERY

    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    assert f"MTCNN searches every {DETECT_EVERY}th of them whole" in readme
    assert f"up to {DETECT_EVERY - 1} analysed frames late" in readme


def test_a_lost_face_is_searched_for_again(clip):
    """Following gives up (None) when the face is gone from the box; the caller searches whole."""
    from lkr.predict import find_faces, refine_faces

    first, later = _frames(clip)[0], _frames(clip)[3]
    faces = find_faces(first, max_side=VIDEO_MAX_SIDE)
    assert len(faces) == 1
    (moved,) = refine_faces(later, faces, max_side=VIDEO_MAX_SIDE)
    (searched,) = find_faces(later, max_side=VIDEO_MAX_SIDE)
    assert np.abs(moved.box - searched.box).max() < 6 and moved.image.shape == (48, 48)
    (one,) = refine_faces(later, faces + faces, max_side=VIDEO_MAX_SIDE)  # two boxes on one face: NMS keeps one
    np.testing.assert_allclose(one.box, moved.box, atol=1e-4)
    blank = Image.new("RGB", first.size, (128, 128, 128))
    assert refine_faces(blank, faces, max_side=VIDEO_MAX_SIDE) is None
    assert refine_faces(first, [], max_side=VIDEO_MAX_SIDE) == []


def test_a_face_converts_to_mtcnns_frame_and_back_exactly(clip):
    """refine_faces hands O-Net a face's box in MTCNN's frame (one-based, at the searched size):
    that frame and back is the identity, to a thousandth of a pixel."""
    from lkr.predict import _faces_from, find_faces
    from lkr.readers import CK_CROP_SCALE

    frame = _frames(clip)[0]
    (face,) = find_faces(frame, max_side=VIDEO_MAX_SIDE)
    f = VIDEO_MAX_SIDE / max(frame.size)
    (back,) = _faces_from([face.box.astype(np.float64) * f + [1, 1, 0, 0]], [face.score],
                          [face.points.astype(np.float64) * f], f, frame.convert("L"), 0.0, CK_CROP_SCALE)
    np.testing.assert_allclose(back.box, face.box, atol=1e-3)
    np.testing.assert_allclose(back.points, face.points, atol=1e-3)
    assert back.region == face.region and np.array_equal(back.image, face.image)


def test_outputs_csv_annotated_video_and_plot(predictor, result):
    with open(result.csv) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == FRAMES
    assert list(rows[0])[:7] == ["frame", "time", "face", "x1", "y1", "x2", "y2"]
    assert list(rows[0])[7:-2] == list(predictor.class_names) and list(rows[0])[-2:] == ["label", "found"]
    assert [r["found"] for r in rows] == ["followed" if i % 5 else "searched" for i in range(FRAMES)]
    p = np.array([[float(r[c]) for c in predictor.class_names] for r in rows])
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-4)
    times = [float(r["time"]) for r in rows]
    assert times == sorted(times) and times[1] == pytest.approx(1 / 24, abs=1e-3)
    frames = _frames(result.annotated)
    assert len(frames) == FRAMES and frames[0].size == (640, 480)
    assert result.plot.stat().st_size > 5000


def test_every_nth_frame(clip, predictor):
    r = predict_video(predictor, clip, every=5, progress=False)
    assert r.frames == FRAMES and r.analysed == 4
    assert [row["frame"] for row in r.rows] == [0, 5, 10, 15]
    assert r.faces == [1]  # the face moved far between analysed frames and is still one face


def test_tracker_keeps_ids_by_overlap_and_gives_new_ones():
    t = BoxTracker(iou=0.3, max_gap=2)
    a, b = np.array([0, 0, 10, 10.0]), np.array([50, 50, 60, 60.0])
    assert t.assign([a, b]) == [1, 2]
    assert t.assign([b + 1, a + 1]) == [2, 1]  # order on the frame does not matter
    assert t.assign([np.array([100, 100, 110, 110.0])]) == [3]  # nothing overlaps: a new face
    t.assign([])
    t.assign([])
    assert t.assign([a]) == [4]  # face 1 unseen for more than max_gap analysed frames
    assert t.assign([a + 3.5]) == [4]  # IoU 0.27, but the centre moved less than half the side


def test_not_a_video_and_no_face_fail_one_line_each_and_the_others_run(clip, tmp_path, capsys):
    import av

    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video\n")
    blank = tmp_path / "blank.mp4"
    with av.open(str(blank), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        for _ in range(6):
            for packet in s.encode(av.VideoFrame.from_ndarray(np.full((240, 320, 3), 90, np.uint8), format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    out = tmp_path / "out"
    rc = main(["predict", str(fake), str(blank), str(clip), "--save", str(out), "--json", "--device", "cpu"])
    assert rc == 1
    captured = capsys.readouterr()
    errors = [ln for ln in captured.err.splitlines() if ln.startswith("lkr: error:")]
    assert len(errors) == 2
    assert errors[0].startswith(f"lkr: error: {fake}: not a video")
    assert errors[1] == f"lkr: error: {blank}: no face found in 6 frames"
    got = json.loads(captured.out)
    assert [g["error"] is None for g in got] == [False, False, True] and len(got[2]["rows"]) == FRAMES
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.annotated.mp4", "astronaut.csv",
                                                     "astronaut.probabilities.png"]  # nothing half-written


def _write_clip(path: Path, frames: list, rotation: int = 0) -> Path:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = frames[0].size[0], frames[0].size[1], "yuv420p"
        if rotation:
            s.set_display_rotation(rotation)
        for im in frames:
            for packet in s.encode(av.VideoFrame.from_image(im)):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def test_a_sideways_phone_video_is_turned_upright(clip, predictor, tmp_path):
    """A portrait video is stored sideways with a display rotation: frames are turned by it, as
    photos are by their EXIF orientation (the face is found, in the upright frame's place)."""
    upright = _frames(clip)[:3]
    stored = [im.rotate(-90, expand=True) for im in upright]  # shown upright after 90 degrees counter-clockwise
    r = predict_video(predictor, _write_clip(tmp_path / "portrait.mp4", stored, rotation=90), progress=False)
    assert r.error is None and r.faces == [1] and r.frames == 3
    ref = predict_video(predictor, _write_clip(tmp_path / "upright.mp4", upright), progress=False)
    np.testing.assert_allclose([[row[k] for k in ("x1", "y1", "x2", "y2")] for row in r.rows],
                               [[row[k] for k in ("x1", "y1", "x2", "y2")] for row in ref.rows], atol=8)  # H.264 differs a little


def test_two_clips_of_one_name_keep_their_own_outputs(clip, tmp_path, capsys):
    import shutil

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(clip, tmp_path / "a" / "clip.mp4")
    _write_clip(tmp_path / "b" / "clip.mp4", [Image.new("RGB", (320, 240), (90, 90, 90))] * 4)  # no face
    out = tmp_path / "out"
    (out).mkdir()
    (out / "clip-2.csv").write_text("an earlier output\n")
    rc = main(["predict", str(tmp_path / "a" / "clip.mp4"), str(tmp_path / "b" / "clip.mp4"), str(clip),
               "--save", str(out), "--device", "cpu"])
    assert rc == 1
    assert "b/clip.mp4: no face found in 4 frames" in capsys.readouterr().err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["astronaut.annotated.mp4", "astronaut.csv", "astronaut.probabilities.png",
                     "clip-2.csv", "clip.annotated.mp4", "clip.csv", "clip.probabilities.png"]
    assert (out / "clip-2.csv").read_text() == "an earlier output\n"  # the failed clip lost nothing


def test_any_failure_inside_a_clip_is_one_line_and_the_next_clip_runs(clip, tmp_path, capsys, monkeypatch):
    """Not only FFmpeg's errors: anything that breaks mid-clip becomes that clip's one-line error,
    its temporary file is cleared (or left, when the folder turned read-only, without a
    traceback), and the next clip is still processed."""
    import shutil

    import lkr.video as V

    (tmp_path / "a").mkdir()
    shutil.copy(clip, tmp_path / "a" / "broken.mp4")
    real_assign = V.BoxTracker.assign
    calls = {"n": 0}

    def assign(self, boxes):
        calls["n"] += 1
        if calls["n"] == 2:  # the first clip's second analysed frame
            raise RuntimeError("tracker gave up")
        return real_assign(self, boxes)

    monkeypatch.setattr(V.BoxTracker, "assign", assign)
    real_unlink = Path.unlink

    def unlink(self, *a, **k):
        if self.name.endswith(".tmp"):
            raise PermissionError(13, "Permission denied")
        return real_unlink(self, *a, **k)

    monkeypatch.setattr(Path, "unlink", unlink)
    out = tmp_path / "out"
    rc = main(["predict", str(tmp_path / "a" / "broken.mp4"), str(clip), "--save", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"lkr: error: {tmp_path / 'a' / 'broken.mp4'}: failed at (RuntimeError) frame 1 (tracker gave up)" in err
    assert "Traceback" not in err
    assert (out / "astronaut.csv").is_file() and not (out / "broken.csv").exists()


def test_the_example_clip_pans_back_so_a_long_clip_keeps_its_face():
    """The benchmark's 300-frame clip must show the face in every frame: the window pans for
    PAN_FRAMES frames and back, and at every step the astronaut's face (its MTCNN box, committed
    in lkr/data/astronaut_face.json) lies at least 8 px inside the 640×480 window."""
    import json

    from lkr.video import PAN_FRAMES, pan_step, pan_window

    steps = [pan_step(i) for i in range(3 * PAN_FRAMES + 7)]
    assert steps[:PAN_FRAMES + 1] == list(range(PAN_FRAMES + 1))  # the short clips are as before
    assert max(steps) == PAN_FRAMES and min(steps) == 0
    x1, y1, x2, y2 = json.loads((Path(__file__).resolve().parents[1] / "lkr" / "data" / "astronaut_face.json"
                                 ).read_text())["box"]
    w, h = 640, 480  # the canvas puts the 512-px photo's corner at (w // 2, h // 2)
    for i in range(2 * PAN_FRAMES + 1):
        x, y = pan_window(i, (512, 512))
        margins = (x1 + w // 2 - x, y1 + h // 2 - y, x + w - (x2 + w // 2), y + h - (y2 + h // 2))
        assert min(margins) >= 8, (i, margins)
