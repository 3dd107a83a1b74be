"""The second region control (docs/control-design.md): the masks without landmarks, the cue inside
the face that no stage-1 cell of a key region sees, the design's arms, the refusal to run on an
uncommitted design, and its tables (one Holm family of seven, no verdict while a run is missing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lkr.config import Config
from lkr.control import (CONTRASTS, CUE_PATTERNS, CUE_SIDE, control_cues, design_arms, inner_spot, make_control,
                         with_inner_cue)
from lkr.regions import centre_mask, face_masks, off_landmark_points, region_masks, run_masks

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inner():
    return make_control(0, cue="inner"), control_cues(0, "inner")


def stage1_sight(cfg: Config, mask: np.ndarray) -> np.ndarray:
    """(48, 48) bool: the input pixels that some stage-1 cell of non-zero mask weight depends on,
    found by autograd through the model's own layers before the first pool (weights set so that
    no ReLU is off: the receptive field, not a lucky zero)."""
    from lkr.model import build_model

    model = build_model(cfg).eval()
    with torch.no_grad():
        for m in model.shared.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.fill_(1.0)
                if m.bias is not None:
                    m.bias.fill_(1.0)
    x = torch.ones(1, 1, 48, 48, requires_grad=True)
    p = model.shared(x)
    (p * torch.from_numpy(mask)[None, None]).sum().backward()
    return (x.grad[0, 0] != 0).numpy()


def test_the_masks_without_landmarks():
    boxes = np.array([[10.2, 8.0, 38.7, 44.0], [-3.0, -2.0, 52.0, 60.0]], np.float32)
    f = face_masks(boxes)
    assert f.shape == (2, 48, 48) and set(np.unique(f)) == {0.0, 1.0}
    assert f[0, 8, 10] == 1 and f[0, 7, 20] == 0 and f[0, 20, 9] == 0 and f[0, 43, 38] == 1 and f[0, 44, 20] == 0
    assert f[1].all()  # a box past the image: every pixel is face
    c = centre_mask(48, 7)
    assert c.sum() == 34 * 34 and c[7, 7] == 1 and c[6, 20] == 0 and c[40, 40] == 1 and c[41, 20] == 0
    pts = np.tile(np.array([[18, 20], [30, 20], [24, 28], [19, 36], [29, 36]], np.float32), (2, 1, 1))
    for source, want in (("uniform", np.ones((2, 48, 48))), ("face", f), ("centre", np.stack([centre_mask(48, 8)] * 2)),
                         ("regions", region_masks(boxes, pts))):
        got = run_masks(Config(mask_band=8, mask_source=source), boxes, pts)
        np.testing.assert_array_equal(got, want)


def test_off_landmark_regions_keep_the_key_regions_size_and_avoid_the_landmarks(inner):
    ds, _ = inner
    op = off_landmark_points(ds.boxes, ds.points)
    rw = 0.3 * (ds.boxes[:, 2] - ds.boxes[:, 0])
    rh = 0.3 * (ds.boxes[:, 3] - ds.boxes[:, 1])
    # each rectangle lies inside the image, so it keeps the key regions' area and weights
    assert (op[..., 0] - rw[:, None] / 2 >= -1e-4).all() and (op[..., 0] + rw[:, None] / 2 <= 48 + 1e-4).all()
    assert (op[..., 1] - rh[:, None] / 2 >= -1e-4).all() and (op[..., 1] + rh[:, None] / 2 <= 48 + 1e-4).all()
    off = run_masks(Config(mask_source="off-landmark"), ds.boxes, ds.points)
    key = run_masks(Config(), ds.boxes, ds.points)
    ratio = off.sum((1, 2)) / key.sum((1, 2))
    assert 0.95 < np.median(ratio) < 1.15  # the same weight, give or take the regions' overlaps
    inside = ((np.abs(ds.points[:, :, None, 0] - op[:, None, :, 0]) <= rw[:, None, None] / 2)
              & (np.abs(ds.points[:, :, None, 1] - op[:, None, :, 1]) <= rh[:, None, None] / 2))
    assert inside.any((1, 2)).mean() < 0.01  # (4 of 1,120 images of seed 0, measured before the runs)
    share = (off * (key > 0)).sum((1, 2)) / off.sum((1, 2))
    assert share.mean() < 0.2


def test_the_inner_cue_is_a_class_pattern_no_stage1_cell_of_a_key_region_sees(inner):
    ds, cues = inner
    k = len(CUE_PATTERNS)
    d = (CUE_PATTERNS[:, None, :] != CUE_PATTERNS[None, :, :]).sum(-1)
    assert (d[~np.eye(k, dtype=bool)] >= 2).all()  # any two patterns differ in two blocks or more
    sys.path.insert(0, str(REPO / "scripts"))
    import control as script

    cfg = script.arm_config("key-s1-l02", 0, design_arms("synthetic-inner"))
    assert cfg.mask_stage == 1
    test = np.flatnonzero(ds.splits == "PrivateTest")
    for i in test[::37]:
        spot = inner_spot(ds.boxes[i], ds.points[i], margin=2)
        assert spot is not None
        x, y = spot
        sight = stage1_sight(cfg, run_masks(cfg, ds.boxes[i:i + 1], ds.points[i:i + 1])[0])
        assert sight.any() and not sight[y:y + CUE_SIDE, x:x + CUE_SIDE].any()
        assert ds.boxes[i, 0] <= x and x + CUE_SIDE <= ds.boxes[i, 2] and ds.boxes[i, 1] <= y
        # the pattern read back from the pixels (block means, before noise bright 235, dark 20)
        block = ds.images[i, y:y + 4, x:x + 4].astype(float).reshape(2, 2, 2, 2).mean((1, 3)).ravel() > 128
        assert (block == CUE_PATTERNS[cues[i]]).all()
    train = ds.splits == "Training"
    assert 0.85 < (cues[train] == ds.labels[train]).mean() < 0.97  # the shortcut, in training only
    assert (cues[ds.splits == "PrivateTest"] == ds.labels[ds.splits == "PrivateTest"]).mean() < 0.25


def test_the_inner_cue_fits_every_ckplus48_face_out_of_sight_of_the_regions(ckplus48_zip):
    from lkr.landmarks import attach_landmarks
    from lkr.readers import load_dataset

    real = attach_landmarks(load_dataset(ckplus48_zip), progress=False)
    follows = np.ones(len(real.labels), bool)
    ds = with_inner_cue(real, follows, seed=0)  # raises naming the image when one has no room
    from lkr.control import ck_cue_plan

    cue = ck_cue_plan(real.labels, follows, len(real.class_names), 0)
    sys.path.insert(0, str(REPO / "scripts"))
    import control as script

    cfg = script.ck_arm_config(real, "key-s1-l02", 0, design_arms("ckplus-inner"))
    assert cfg.mask_stage == 1
    masks = run_masks(cfg, real.boxes, real.points)
    for i in range(len(real.images)):
        x, y = inner_spot(real.boxes[i], real.points[i], margin=3)
        changed = ds.images[i] != real.images[i]
        assert not changed[:y].any() and not changed[y + 4:].any() and not changed[:, :x].any() \
            and not changed[:, x + 4:].any()  # only the patch is touched
        want = np.kron(CUE_PATTERNS[cue[i]].reshape(2, 2), np.ones((2, 2), bool)) * 255
        assert (ds.images[i, y:y + 4, x:x + 4] == want).all()
        # margin 3 = VGG19's two 3x3 convs before the first pool (radius 2) + 1: checked with autograd on a sample
        ys, xs = np.nonzero(masks[i] > 0)
        assert np.min(np.maximum(np.abs(ys[:, None] - np.arange(y, y + 4)[None]).min(1),
                                 np.abs(xs[:, None] - np.arange(x, x + 4)[None]).min(1))) > 3
        if i % 100 == 0:
            sight = stage1_sight(cfg, masks[i])
            assert sight.any() and not sight[y:y + 4, x:x + 4].any()
    # amendment 1: CK+48's off-landmark arm keeps out of the border band, as the key regions do;
    # no stage-1 cell (radius 2) of it, the key regions or the centre mask sees a border square
    from scipy.ndimage import maximum_filter

    from lkr.control import CK_CUE_SPOTS

    arms = design_arms("ckplus-border")
    assert arms["off-landmark-s1-l02"]["mask_source"] == "off-landmark-band"
    weights = {}
    for src in ("regions", "off-landmark-band", "centre", "off-landmark"):
        m = run_masks(Config(mask_source=src, mask_band=7), real.boxes, real.points)
        weights[src] = float(m.sum((1, 2)).mean())
        seen = maximum_filter(m > 0, size=(1, 5, 5))
        worst = max(float(seen[:, y:y + 4, x:x + 4].any((1, 2)).mean()) for x, y in CK_CUE_SPOTS)
        if src == "off-landmark":
            assert worst == 1.0  # the first definition: some border square in sight on every face
        else:
            assert worst <= 0.02, (src, worst)
    # the numbers docs/control-design.md gives for the weights (amendment 1)
    text = (REPO / "docs" / "control-design.md").read_text()
    assert f"{weights['off-landmark-band']:.0f} against {weights['regions']:.0f}" in text
    share = f"about {100 * weights['off-landmark-band'] / weights['regions']:.0f} %"
    assert share in text and share in " ".join((REPO / "docs" / "results.md").read_text().split())
    # the off-landmark rectangles hold no landmark of any CK+48 face
    op = off_landmark_points(real.boxes, real.points)
    rw = 0.3 * (real.boxes[:, 2] - real.boxes[:, 0])
    rh = 0.3 * (real.boxes[:, 3] - real.boxes[:, 1])
    inside = ((np.abs(real.points[:, :, None, 0] - op[:, None, :, 0]) <= rw[:, None, None] / 2)
              & (np.abs(real.points[:, :, None, 1] - op[:, None, :, 1]) <= rh[:, None, None] / 2))
    assert not inside.any()


def test_the_design_arms():
    syn, ck = design_arms("synthetic-border"), design_arms("ckplus-inner")
    assert len(syn) == 34 and len(ck) == 31
    assert syn["key-s5-l0"]["variant"] == "baseline1" and syn["key-s1-l02"]["variant"] == "lkrnet"
    assert syn["uniform-s1-l02"] == {"variant": "lkrnet", "mask_source": "uniform", "mask_stage": 1, "mask_band": 8}
    assert ck["centre-s3-l0"]["mask_band"] == 7
    assert {a for a in syn if a not in ck} == {"border-band-s1-l0", "border-band-s5-l0", "shuffled-s1-l0"}
    assert len(CONTRASTS) == 7 and ("key", "centre") in CONTRASTS
    with pytest.raises(ValueError, match="unknown control set"):
        design_arms("fer2013")


def test_the_script_refuses_to_run_on_an_uncommitted_design(tmp_path):
    import shutil

    if shutil.which("git") is None:
        pytest.skip("git not installed")
    sys.path.insert(0, str(REPO / "scripts"))
    import control as script
    from lkr.errors import LkrError

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "docs").mkdir()
    doc = tmp_path / "docs" / "control-design.md"
    with pytest.raises(LkrError, match="never committed|uncommitted|cannot ask git"):
        script.design_commit(tmp_path)
    doc.write_text("design\n")
    env = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "-C", str(tmp_path), *env, "add", "."], check=True)
    subprocess.run(["git", "-C", str(tmp_path), *env, "commit", "-qm", "design"], check=True)
    commit = script.design_commit(tmp_path)
    assert len(commit) == 40
    doc.write_text("design, changed after\n")
    with pytest.raises(LkrError, match="uncommitted"):
        script.design_commit(tmp_path)


def _fake_arm(root: Path, dataset: str, arm: str, acc: list[float], seeds=(0, 1, 2, 3, 4), n: int = 700) -> None:
    import zlib

    rng = np.random.default_rng(zlib.crc32(arm.encode()))
    label = np.tile(np.arange(7), n // 7).astype(np.int8)
    cols = {k: [] for k in ("seed", "fold", "index", "label", "pred")}
    runs = []
    for s, a in zip(seeds, acc):
        right = rng.random(n) < a
        pred = np.where(right, label, (label + 1) % 7).astype(np.int8)
        cols["seed"].append(np.full(n, s, np.int16))
        cols["fold"].append(np.full(n, -1, np.int16))
        cols["index"].append(np.arange(420, 420 + n))
        cols["label"].append(label)
        cols["pred"].append(pred)
        runs.append({"seed": s, "fold": None, "n": n, "accuracy": float(right.mean()), "cue_follow_rate": 0.2,
                     "accuracy_global_branch": 0.5, "accuracy_local_branch": 0.6, "design_commit": "x"})
    d = root / "control-v2" / dataset / arm
    d.mkdir(parents=True)
    (d / "runs.json").write_text(json.dumps({"arm": arm, "runs": runs, "config": {}}))
    np.savez(d / "predictions.npz", **{k: np.concatenate(v) for k, v in cols.items()})


def test_a_design_table_is_one_holm_family_of_seven_and_says_nothing_while_a_run_is_missing(tmp_path):
    from lkr.control_results import design_table, set_verdict
    from lkr.report import design_lines, design_verdicts
    from lkr.stats import compare, holm

    accs = {"vgg19": 0.40, "key": 0.90, "uniform": 0.42, "face": 0.88, "centre": 0.89, "off-landmark": 0.45}
    for mask, a in accs.items():
        arm = "vgg19" if mask == "vgg19" else f"{mask}-s1-l02"
        seeds = (0, 1, 2, 3) if mask == "face" else (0, 1, 2, 3, 4)
        _fake_arm(tmp_path, "synthetic-border", arm, [a + 0.01 * s for s in seeds], seeds=seeds)
    lines = design_lines(tmp_path, "synthetic-border", 1, "l02")
    assert any(line.startswith("In progress") and "face mask 1" in line for line in lines)
    assert not any("told apart" in line for line in lines)
    assert "in progress" in design_verdicts(tmp_path)[0]
    # the missing seed comes in: the seven contrasts, Holm over exactly these seven
    import shutil

    shutil.rmtree(tmp_path / "control-v2" / "synthetic-border" / "face-s1-l02")
    _fake_arm(tmp_path, "synthetic-border", "face-s1-l02", [0.88 + 0.01 * s for s in range(5)])
    t = design_table(tmp_path, "synthetic-border", 1, "l02")
    assert t.complete and len(t.comparisons) == 7
    preds = {m: a.seed_predictions() for m, a in t.arms.items()}
    want = [compare(a, b, preds[a], preds[b]) for a, b in CONTRASTS]
    holm(want)
    for got, w in zip(t.comparisons, want):
        assert (got.a, got.b, got.p_holm, got.p_seeds_holm) == (w.a, w.b, w.p_holm, w.p_seeds_holm)
    lines = design_lines(tmp_path, "synthetic-border", 1, "l02")
    row = next(line for line in lines if line.startswith("| key regions − uniform mask |"))
    assert row.endswith("| told apart (key regions above) |")
    row = next(line for line in lines if line.startswith("| key regions − centre mask |"))
    assert row.endswith("| not told apart |")
    assert set_verdict(t) == "the key regions are not told apart from a mask that only hides the border"
    assert design_verdicts(tmp_path)[0].startswith(
        "- Region control, synthetic, border cue, mask at stage 1, λ 0.2 (LKRNet and its partners): the key regions "
        "are not told apart from a mask that only hides the border.")


def test_the_design_reading_follows_its_rules():
    from types import SimpleNamespace

    from lkr.control_results import DesignTable, set_verdict

    def table(dataset, better):
        def verdict(a, b):
            return f"{a} better" if (a, b) in better else f"{b} better" if (b, a) in better else "not told apart"

        comps = [SimpleNamespace(a=a, b=b, verdict=(lambda a=a, b=b: verdict(a, b))) for a, b in CONTRASTS]
        return DesignTable(dataset, 1, "l02", {}, {}, comps)

    every = {("key", "centre"), ("key", "face"), ("key", "off-landmark")}
    assert (set_verdict(table("ckplus-border", every))
            == "the landmarks carry the gain (against off-landmark rectangles of less weight: amendment 1)")
    assert (set_verdict(table("ckplus-border", every - {("key", "centre")}))
            == "the key regions are not told apart from a mask that only hides the border")
    assert (set_verdict(table("ckplus-border", {("centre", "key")}))
            == "a mask that only hides the border does better than the key regions")
    assert (set_verdict(table("ckplus-border", every - {("key", "off-landmark")}))
            == "the key regions beat a mask that only hides the border, but are not told apart from the same "
               "rectangles off the landmarks")
    assert (set_verdict(table("ckplus-border", every - {("key", "face")}))
            == "the key regions beat a mask that only hides the border and the same rectangles off the landmarks, "
               "but not the face mask")
    assert (set_verdict(table("ckplus-border", {("key", "centre"), ("off-landmark", "key")}))
            == "the key regions beat a mask that only hides the border, but the same rectangles off the landmarks "
               "do better")
    assert (set_verdict(table("ckplus-border", {("key", "centre"), ("key", "off-landmark"), ("face", "key")}))
            == "the key regions beat a mask that only hides the border and the same rectangles off the landmarks, "
               "but the face mask does better")
    assert set_verdict(table("synthetic-border", every)) == "the landmarks carry the gain"
    assert (set_verdict(table("ckplus-inner", {("key", "face")}))
            == "the regions hide an on-face distractor that a face mask lets through (a property of where the "
               "cue was put, outside the regions by construction; not evidence of expression information at the "
               "landmarks)")
    assert (set_verdict(table("ckplus-inner", set()))
            == "the key regions are not told apart from a face mask that sees the distractor")
    assert (set_verdict(table("ckplus-inner", {("face", "key")}))
            == "the face mask does better than the key regions even with the distractor in its view")
    assert set_verdict(DesignTable("ckplus-inner", 1, "l02", {}, {"key": 3}, None)) == "in progress"
