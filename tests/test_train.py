"""The trainer and evaluation on the CPU: learning on the demo set, resume, ten-crop, run folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from lkr.cli import main
from lkr.demo import make_demo
from lkr.errors import TrainingError
from lkr.evaluate import predict
from lkr.runfolder import load_run_model
from lkr.train import config_for, lr_at, train


@pytest.fixture(scope="module")
def demo():
    return make_demo("fer2013", n=700)


class CornerModel(nn.Module):
    """Votes class 1 when the crop's top-left pixel is bright, else class 0 (logits ±50)."""

    def forward(self, x, mask=None):
        bright = (x[:, 0, 0, 0] > 0).float()  # (B,)
        logits = torch.zeros(len(x), 3)
        logits[:, 1] = 100 * bright - 50
        return {"logits": logits, "embedding": torch.stack([bright, 1 - bright], 1)}


def test_ten_crop_equals_hand_count():
    imgs = torch.zeros(3, 48, 48, dtype=torch.uint8)
    imgs[0, 0, 0] = 255          # only the top-left crop sees it at its top-left: 1 of 10 crops
    imgs[1] = 255                # every crop: 10 of 10
    imgs[2, 0, 47] = 255         # top-right corner: the flipped top-right crop has it at (0, 0): 1 of 10
    probs, emb = predict(CornerModel(), imgs, None, crop=44, with_embeddings=True)
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs[:, 1].numpy(), [0.1, 1.0, 0.1], atol=1e-6)
    np.testing.assert_allclose(probs[:, 0].numpy(), [0.45, 0.0, 0.45], atol=1e-6)
    np.testing.assert_allclose(emb[:, 0].numpy(), [0.1, 1.0, 0.1], atol=1e-6)


def test_ten_crop_memory_is_bounded_and_chunking_changes_nothing():
    seen = []

    class Recording(CornerModel):
        def forward(self, x, mask=None):
            seen.append(len(x))
            return super().forward(x, mask)

    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (301, 48, 48), dtype=torch.uint8, generator=g)
    whole, _ = predict(Recording(), imgs, None, max_crops=10_000)
    assert seen == [3010]
    seen.clear()
    parts, _ = predict(Recording(), imgs, None, max_crops=640)
    assert max(seen) <= 640 and sum(seen) == 3010 and len(seen) == 5  # 64 images a pass
    assert torch.equal(whole, parts)


def test_paper_and_cosine_schedules():
    cfg = config_for(make_demo("fer2013", n=70), "vgg19", schedule="paper", warmup_epochs=20, lr=1e-3,
                     warmup_lr=1e-4, epochs=60)
    assert lr_at(cfg, 0) == 1e-4 and lr_at(cfg, 19.9) == 1e-4 and lr_at(cfg, 20) == 1e-3
    cos = config_for(make_demo("fer2013", n=70), "vgg19", schedule="cosine", warmup_epochs=2, lr=0.1,
                     warmup_lr=0.0, epochs=10)
    assert lr_at(cos, 1) == pytest.approx(0.05)
    assert lr_at(cos, 2) == pytest.approx(0.1)
    assert lr_at(cos, 6) == pytest.approx(0.05)
    assert lr_at(cos, 10) == pytest.approx(0.0, abs=1e-12)


def test_training_lowers_the_loss_and_writes_a_run_folder(demo, tmp_path):
    cfg = config_for(demo, "lkrnet", epochs=3, eval_every=1)
    m = train(demo, cfg, tmp_path / "run", device="cpu", progress=False)
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert hist[-1]["triplet"] > 0 or hist[0]["triplet"] > 0
    for f in ("config.json", "history.json", "metrics.json", "predictions.npz", "embeddings.npz", "best.pt",
              "checkpoint.pt"):
        assert (tmp_path / "run" / f).exists(), f
    assert m["test_split"] == "PrivateTest" and m["select_split"] == "PublicTest"
    assert (m["scale"], m["width"]) == ("demo", cfg.width)  # the scale the figures name
    assert json.loads((tmp_path / "run" / "config.json").read_text())["scale"] == "demo"
    assert m["best_epoch"] == 1 + int(np.argmax([h["select_accuracy"] for h in hist]))
    with np.load(tmp_path / "run" / "predictions.npz") as z:
        assert len(z["index"]) == int((demo.splits == "PrivateTest").sum())
        assert z["probs"].dtype == np.float16
        np.testing.assert_allclose(z["probs"].astype(np.float32).sum(1), 1, atol=1e-2)
        assert float((z["pred"] == z["label"]).mean()) == pytest.approx(m["accuracy"])
    with np.load(tmp_path / "run" / "embeddings.npz") as z:
        assert z["embedding"].shape[1] == 256 and z["embedding"].dtype == np.float16
    model, cfg2, info = load_run_model(tmp_path / "run")
    assert cfg2 == cfg and info["fold"] is None


def test_resume_ends_with_the_same_weights(demo, tmp_path):
    cfg = config_for(demo, "lkrnet", epochs=3, eval_every=1)
    full = train(demo, cfg, tmp_path / "full", device="cpu", progress=False)
    part = train(demo, cfg, tmp_path / "part", device="cpu", progress=False, stop_after=1)
    assert part == {"stopped_at": 1}
    assert not (tmp_path / "part" / "metrics.json").exists()
    resumed = train(demo, cfg, tmp_path / "part", device="cpu", progress=False)
    a = torch.load(tmp_path / "full" / "best.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "part" / "best.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for k in ("accuracy", "best_epoch", "select_accuracy", "per_class", "confusion"):
        assert full[k] == resumed[k], k


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(demo, tmp_path, monkeypatch):
    import lkr.train as T

    real = T.lkr_loss
    calls = {"n": 0}
    steps_per_epoch = int((demo.splits == "Training").sum()) // config_for(demo, "vgg19").batch_size

    def poisoned(out, labels, cfg):
        calls["n"] += 1
        loss, parts = real(out, labels, cfg)
        if calls["n"] > steps_per_epoch:  # from the second epoch on
            loss = loss * float("nan")
            parts = {k: v * float("nan") for k, v in parts.items()}
        return loss, parts

    monkeypatch.setattr(T, "lkr_loss", poisoned)
    cfg = config_for(demo, "vgg19", epochs=3)
    with pytest.raises(TrainingError, match="non-finite loss at epoch 2"):
        train(demo, cfg, tmp_path / "run", device="cpu", progress=False)
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ck["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_another_config_in_the_same_folder_is_refused(demo, tmp_path):
    from lkr.errors import RunError

    train(demo, config_for(demo, "vgg19", epochs=1), tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(RunError, match="another config"):
        train(demo, config_for(demo, "vgg19", epochs=2, lr=0.5), tmp_path / "run", device="cpu", progress=False)


def test_cli_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", "demo", "--variant", "baseline2", "--epochs", "2", "--out", str(out),
                 "--quiet", "--set", "eval_every=1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["variant"] == "baseline2" and metrics["triplet_lambda"] == 0.2
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["accuracy"] == pytest.approx(metrics["accuracy"])
    assert again["confusion"] == metrics["confusion"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lkr: error:") and "not a trained run" in err and "\n" not in err
    assert main(["train", "--data", "demo", "--out", str(tmp_path / "r"), "--set", "nope=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no such config field" in err and "\n" not in err


def test_ckplus_like_data_uses_subject_folds(tmp_path):
    ds = make_demo("ckplus", n=240)
    cfg = config_for(ds, "baseline1", epochs=1)
    assert (cfg.select_split, cfg.test_split) == ("val", "test")
    m = train(ds, cfg, tmp_path / "run", device="cpu", fold=2, folds=5, progress=False)
    assert m["test_split"] == "fold2-test" and m["select_split"] == "fold2-val"
    with np.load(tmp_path / "run" / "predictions.npz") as z:
        test_subjects = set(ds.subjects[z["index"]])
    from lkr.folds import fold_split

    parts = fold_split(ds.subjects, ds.labels, 2, k=5, seed=cfg.seed, val_fraction=cfg.val_fraction)
    assert test_subjects == set(ds.subjects[parts["test"]])
    assert not test_subjects & set(ds.subjects[parts["train"]])


def test_a_run_folder_of_another_fold_is_refused(tmp_path):
    """Resuming must never carry weights trained on one fold's data into another fold's test."""
    from lkr.errors import RunError

    ds = make_demo("ckplus", n=240)
    cfg = config_for(ds, "vgg19", epochs=2)
    train(ds, cfg, tmp_path / "run", device="cpu", fold=0, folds=5, progress=False, stop_after=1)
    with pytest.raises(RunError, match="fold=0"):
        train(ds, cfg, tmp_path / "run", device="cpu", fold=1, folds=5, progress=False)


def test_selection_is_never_on_the_reported_split(demo, tmp_path):
    with pytest.raises(TrainingError, match="never selected"):
        train(demo, config_for(demo, "vgg19", epochs=1, select_split="PrivateTest"), tmp_path / "r",
              device="cpu", progress=False)


def test_cli_set_wins_over_flags_and_bad_values_are_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", "demo", "--variant", "vgg19", "--epochs", "2", "--out", str(out), "--quiet",
                 "--set", "schedule=paper", "--set", "seed=3", "--set", "lr=0.05"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["schedule"], cfg["seed"], cfg["lr"]) == ("paper", 3, 0.05)
    for bad, words in ((["--batch-size", "0"], "batch_size"), (["--set", "crop=60"], "crop"),
                       (["--device", "bogus"], "--device bogus"), (["--epochs", "0"], "epochs"),
                       (["--set", "schedule=paper", "--epochs", "1"], "never leaves the warm-up")):
        capsys.readouterr()
        assert main(["train", "--data", "demo", "--out", str(tmp_path / "x"), "--quiet", *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("lkr: error:") and words in err and "\n" not in err, err


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard"])
def test_mined_triplets_keep_a_triplet_term_at_equal_compute(demo, tmp_path, mining):
    """In-batch mining: every step holds B images (as lambda = 0 does), and the triplet term
    stays above zero over a short run (hard triplets do not run out as random ones do)."""
    cfg = config_for(demo, "lkrnet", epochs=3, eval_every=3, triplet_mining=mining)
    train(demo, cfg, tmp_path / "run", device="cpu", progress=False)
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert all(h["triplet"] > 0.01 and h["triplet_active"] > 0.3 for h in hist), hist
    plain = config_for(demo, "baseline1", epochs=1)
    assert cfg.images_per_anchor == plain.images_per_anchor == 1


def test_class_balanced_batches_hold_p_classes(demo):
    from lkr.prepare import prepare_data
    from lkr.train import epoch_batches

    cfg = config_for(demo, "baseline2", triplet_mining="batch_hard", batch_classes=4, batch_size=32)
    prepared = prepare_data(demo, cfg, device="cpu")
    g = torch.Generator().manual_seed(0)
    batches = list(epoch_batches(prepared, cfg, g, 32))
    assert batches
    for x, m, y in batches:
        assert len(y) == 32 and len(torch.unique(y)) == 4
        assert torch.bincount(y).max() == 8 and x.shape == (32, 1, 44, 44)
    # a lambda = 0 configuration that records batch_classes gets the same batches: the
    # cross-entropy of every configuration of a set sees the same class mix
    vgg = config_for(demo, "vgg19", batch_classes=4, batch_size=32)
    g = torch.Generator().manual_seed(0)
    same = list(epoch_batches(prepare_data(demo, vgg, device="cpu"), vgg, torch.Generator().manual_seed(0), 32))
    assert all(torch.equal(a[2], b[2]) for a, b in zip(batches, same)) and len(same) == len(batches)


# --- scales ----------------------------------------------------------------------------------
def test_scale_presets_and_what_overrides_them(monkeypatch, tmp_path, capsys):
    """--scale picks the preset (lkr.config.SCALES); flags and --set change fields of it; the
    demo set always gets its own preset. No training: the trainer is replaced."""
    from dataclasses import replace

    import lkr.readers
    import lkr.train
    from lkr.config import SCALES, Config
    from lkr.errors import ConfigError

    fer = replace(make_demo("fer2013", n=70), name="fer2013", kind="fer2013-csv")  # real-data-like
    cpu = config_for(fer, "lkrnet", scale="cpu")
    assert cpu.scale == "cpu" and {k: getattr(cpu, k) for k in SCALES["cpu"]} == SCALES["cpu"]
    assert (cpu.local_branch, cpu.triplet_lambda) == (True, 0.2)  # the variant's fields stay
    full = config_for(fer, "lkrnet")
    assert full.scale == "full" and full == Config.for_variant("lkrnet")  # the paper's values
    assert config_for(fer, "vgg19", scale="cpu", epochs=3, lr=None).to_dict() == {
        **cpu.to_dict(), "variant": "vgg19", "local_branch": False, "triplet_lambda": 0.0, "epochs": 3}
    demo = make_demo("fer2013", n=70)
    assert config_for(demo, "lkrnet", scale="cpu") == config_for(demo, "lkrnet")
    assert config_for(demo, "lkrnet", scale="cpu").scale == "demo"
    with pytest.raises(ConfigError, match="full, cpu"):
        config_for(fer, "lkrnet", scale="tiny")
    with pytest.raises(ConfigError, match="demo set"):
        config_for(fer, "lkrnet", scale="demo")
    with pytest.raises(ConfigError, match="scale must be"):
        Config(scale="huge")
    # the scale only names the preset: a run made with the same values by flags resumes under --scale cpu
    assert cpu.trains_like(Config.from_dict({**cpu.to_dict(), "scale": "full"})) and not cpu.trains_like(full)

    seen = []

    def fake_train(ds, cfg, out, **kw):
        seen.append(cfg)
        return {"test_split": "PrivateTest", "accuracy": 0.5, "best_epoch": 1, "select_split": "PublicTest"}

    monkeypatch.setattr(lkr.readers, "load_dataset", lambda path, **kw: fer)
    monkeypatch.setattr(lkr.train, "train", fake_train)
    args = ["train", "--data", "fer2013.csv", "--out", str(tmp_path / "r"), "--quiet"]
    assert main(args) == 0 and seen[-1] == full
    assert main(args + ["--scale", "cpu"]) == 0 and seen[-1] == cpu
    assert main(args + ["--scale", "cpu", "--epochs", "5", "--width", "0.125", "--set", "lr=0.02",
                        "--set", "triplet_mining=batch_hard"]) == 0
    c = seen[-1]
    assert (c.scale, c.epochs, c.width, c.lr, c.triplet_mining) == ("cpu", 5, 0.125, 0.02, "batch_hard")
    assert (c.schedule, c.select_crops, c.warmup_epochs) == ("cosine", "center", 1)  # the rest of the preset
    assert main(args + ["--set", "scale=cpu"]) == 2
    assert "--scale" in capsys.readouterr().err


def test_a_resumed_run_keeps_the_precision_it_started_with(demo, tmp_path, monkeypatch):
    """The precision is decided once, when a run starts, and travels in its checkpoint: a
    resumed run keeps it even if a new measurement would now say otherwise."""
    from lkr import cpu

    answers = iter([{"precision": "bf16", "decided_by": "test", "device": "cpu"}])
    monkeypatch.setattr(cpu, "resolve_precision", lambda cfg, dev, threads: next(answers))
    cfg = config_for(demo, "vgg19", epochs=2)
    train(demo, cfg, tmp_path / "run", device="cpu", progress=False, stop_after=1)
    m = train(demo, cfg, tmp_path / "run", device="cpu", progress=False)  # a second call would raise
    assert m["precision"]["precision"] == "bf16"
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["threads"] for h in hist] == [1, 1]


def test_a_run_records_the_precision_it_was_given_and_its_cpu(demo, tmp_path, monkeypatch):
    """An experiment set hands its decided precision to each run: the run uses it (no measuring of
    its own) and records it, with the CPU model and threads, in metrics.json."""
    from lkr import cpu

    def no_measuring(*a, **k):
        raise AssertionError("the run measured its own precision")

    monkeypatch.setattr(cpu, "resolve_precision", no_measuring)
    given = {"precision": "bf16", "decided_by": "for the experiment set: test", "device": "cpu"}
    cfg = config_for(demo, "vgg19", epochs=1, cpu_precision="auto")
    m = train(demo, cfg, tmp_path / "run", device="cpu", progress=False, precision=given)
    assert m["precision"] == given and m["threads"] == 1 and m["cpu_model"] == cpu.cpu_name()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["precision"]["precision"] == "bf16"


def test_scale_cpu_quarter_is_cpu_at_quarter_width():
    from lkr.config import SCALES, scale_label

    assert SCALES["cpu-quarter"] == {**SCALES["cpu"], "width": 0.25}
    cfg = config_for(make_demo("fer2013", n=70), "lkrnet")  # (demo data: the demo preset)
    assert cfg.scale == "demo"
    assert scale_label({"scale": "cpu-quarter", "width": 0.25, "epochs": 50}).startswith(
        "CPU scale at 1/4 width: VGG19 at 1/4 width, 50 epochs")


def test_re_evaluating_a_run_gives_its_metrics_bit_for_bit(tmp_path):
    """lkr evaluate loads the model in the training memory format (channels-last) at the run's
    threads and precision: its metrics equal the run's exactly, and its probabilities equal the
    stored ones at their float16 storage (with bf16, an NCHW model already differs there)."""
    from lkr.evaluate import evaluate_run, run_test_probabilities

    ds = make_demo("fer2013")  # what data_ref "demo" loads again
    cfg = config_for(ds, "lkrnet", epochs=2, cpu_precision="bf16")  # the real CPU path's precision
    assert cfg.channels_last
    m = train(ds, cfg, tmp_path / "run", device="cpu", progress=False, data_ref="demo")
    probs, labels, _ = run_test_probabilities(tmp_path / "run")
    with np.load(tmp_path / "run" / "predictions.npz") as z:
        assert np.array_equal(probs.astype(np.float16), z["probs"]) and np.array_equal(labels, z["label"])
    again = evaluate_run(tmp_path / "run")
    assert again["accuracy"] == m["accuracy"] and again["confusion"] == m["confusion"]


def _cpu_path(ds, **kw):
    """The real CPU path the CPU-scale results were trained on (bf16 autocast, in-batch
    semi-hard mining, centre-crop selection, cosine schedule, channels-last), on a thin demo net."""
    return config_for(ds, "lkrnet", **{"cpu_precision": "bf16", "triplet_mining": "semi_hard",
                                       "select_crops": "center", "schedule": "cosine", "warmup_epochs": 1,
                                       "channels_last": True, "epochs": 3, "eval_every": 1, **kw})


def test_resume_and_determinism_on_the_real_cpu_path(demo, tmp_path):
    """A run of the CPU path cut after one epoch and resumed ends bit for bit where the whole run
    does, and a second whole run repeats the first: bf16 and mining included."""
    cfg = _cpu_path(demo)
    whole = train(demo, cfg, tmp_path / "whole", device="cpu", progress=False)
    assert whole["precision"]["precision"] == "bf16"
    assert json.loads((tmp_path / "whole" / "history.json").read_text())[0]["triplet"] > 0
    again = train(demo, cfg, tmp_path / "again", device="cpu", progress=False)
    assert train(demo, cfg, tmp_path / "cut", device="cpu", progress=False, stop_after=1) == {"stopped_at": 1}
    resumed = train(demo, cfg, tmp_path / "cut", device="cpu", progress=False)
    w = {d: torch.load(tmp_path / d / "best.pt", weights_only=True)["model"] for d in ("whole", "again", "cut")}
    for k in w["whole"]:
        assert torch.equal(w["whole"][k], w["again"][k]) and torch.equal(w["whole"][k], w["cut"][k]), k
    for m in (again, resumed):
        for k in ("accuracy", "best_epoch", "select_accuracy", "confusion"):
            assert m[k] == whole[k], k


def test_centre_crop_selection_selects_on_the_centre_crop(demo, tmp_path):
    """select_crops="center": each epoch's selection accuracy is the centre-crop accuracy on the
    selection split (never the reported split), and the kept weights are the best epoch's."""
    from lkr.evaluate import predict
    from lkr.prepare import prepare_data

    cfg = _cpu_path(demo, cpu_precision="fp32")
    m = train(demo, cfg, tmp_path / "run", device="cpu", progress=False)
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert m["best_epoch"] == 1 + int(np.argmax([h["select_accuracy"] for h in hist]))
    model, cfg2, _ = load_run_model(tmp_path / "run")
    prepared = prepare_data(demo, cfg2, device="cpu")
    sel = prepared.index["select"]
    kw = dict(crop=cfg.crop, channels_last=True)
    center, _ = predict(model, prepared.images[sel], prepared.masks[sel], crops="center", **kw)
    ten, _ = predict(model, prepared.images[sel], prepared.masks[sel], crops="ten", **kw)
    acc = lambda p: float((p.argmax(1) == prepared.labels[sel]).float().mean())  # noqa: E731
    assert acc(center) == m["select_accuracy"]
    assert not torch.allclose(center, ten)  # the centre crop alone is not ten-crop


def test_predict_centre_crop_is_the_middle_44x44():
    """crops="center" feeds the middle 44x44 of each face once (CornerModel looks at its top-left
    pixel, which is pixel (2, 2) of the 48x48 face)."""
    from lkr.evaluate import predict

    imgs = torch.zeros(4, 48, 48, dtype=torch.uint8)
    imgs[0, 2, 2] = 255  # seen by the centre crop
    imgs[1, 0, 0] = 255  # seen only by a corner crop
    probs, _ = predict(CornerModel(), imgs, None, crops="center")
    assert probs.argmax(1).tolist() == [1, 0, 0, 0]
    with pytest.raises(ValueError, match="crops must be"):
        predict(CornerModel(), imgs, None, crops="six")


def test_a_run_announces_itself_in_two_lines_and_names_its_config_file(tmp_path, capsys):
    """Notebook 02 shows what each run prints: the whole config is in the run folder, not a JSON
    blob in the notebook."""
    from lkr.demo import make_demo
    from lkr.train import config_for, train

    ds = make_demo("fer2013", n=120)
    train(ds, config_for(ds, "vgg19", epochs=1), tmp_path / "r", device="cpu", progress=True, threads=1)
    out = capsys.readouterr().out
    assert "{" not in out.split("precision")[0]  # no JSON before training starts
    assert f"the whole config: {tmp_path / 'r' / 'config.json'}" in out
    assert (tmp_path / "r" / "config.json").is_file()


def test_a_run_on_official_splits_records_its_landmark_template(demo_run):
    """A dual-branch run on data with a Training split records the template of its undetected
    faces (the mean of the detected Training faces) in its checkpoint and metrics, so that lkr
    evaluate can read the test split alone (issue 34); the values are the dataset's template."""
    from lkr.demo import make_demo
    from lkr.evaluate import run_template
    from lkr.landmarks import dataset_template

    m = json.loads((demo_run / "metrics.json").read_text())
    ck = torch.load(demo_run / "best.pt", weights_only=True)
    assert m["landmark_template"] == ck["info"]["landmark_template"] == run_template(demo_run, {})
    ds = make_demo("fer2013", n=300)
    tb, tp, source = dataset_template(ds, ds.boxes, ds.points, ds.detected)
    assert np.array_equal(np.float32(m["landmark_template"]["box"]), tb)
    assert np.array_equal(np.float32(m["landmark_template"]["points"]), tp) and m["landmark_template"]["from"] == source
