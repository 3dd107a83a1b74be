"""Config.init_from: a run starts from another run's selected weights (fine-tuning, e.g. CK+
from a FER2013 run of the same configuration); the class layers start fresh."""

from __future__ import annotations

import json

import pytest
import torch

from lkr.cli import main
from lkr.demo import make_demo
from lkr.errors import ConfigError, RunError
from lkr.model import build_model
from lkr.runfolder import init_weights_from
from lkr.train import config_for, train


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A trained demo LKRNet run folder (seed 5: its weights are unlike a fresh seed-0 net's)."""
    ds = make_demo("fer2013", n=300)
    run = tmp_path_factory.mktemp("fer-run")
    train(ds, config_for(ds, "lkrnet", epochs=1, seed=5), run, device="cpu", progress=False, threads=1)
    return run, torch.load(run / "best.pt", map_location="cpu", weights_only=False)["model"]


def test_every_layer_but_the_class_layers_is_copied(source):
    run, src = source
    ds = make_demo("ckplus", n=120)
    cfg = config_for(ds, "lkrnet", epochs=1)
    torch.manual_seed(0)
    fresh = build_model(cfg).state_dict()
    torch.manual_seed(0)
    model = build_model(cfg)
    note = init_weights_from(model, run)
    assert str(run) in note and "class layers" in note
    got = model.state_dict()
    fc3 = [k for k in got if ".fc3." in k]
    assert sorted(fc3) == ["head_global.fc3.bias", "head_global.fc3.weight", "head_local.fc3.bias",
                           "head_local.fc3.weight"]
    for k, v in got.items():
        if k in fc3:  # fresh, as a run from scratch with the same seed starts
            assert torch.equal(v, fresh[k]) and not torch.equal(v, src[k])
        else:  # copied, BatchNorm statistics included
            assert torch.equal(v, src[k]), k
    assert not torch.equal(got["shared.1.running_mean"], fresh["shared.1.running_mean"])  # trained statistics


def test_another_architecture_is_refused_in_one_line(source):
    run, _ = source
    ds = make_demo("ckplus", n=120)
    wider = build_model(config_for(ds, "lkrnet", epochs=1, width=2.0))
    with pytest.raises(ConfigError, match=r"does not fit this network") as e:
        init_weights_from(wider, run)
    assert "\n" not in str(e.value) and "shared.0.weight" in str(e.value)
    single = build_model(config_for(ds, "vgg19", epochs=1))  # no local head: head_local.* absent here
    with pytest.raises(ConfigError, match="absent here"):
        init_weights_from(single, run)


def test_not_a_run_folder_is_refused(tmp_path):
    ds = make_demo("ckplus", n=120)
    with pytest.raises(RunError, match="no best.pt"):
        init_weights_from(build_model(config_for(ds, "lkrnet", epochs=1)), tmp_path)


def test_a_fine_tuned_run_records_its_source_and_starts_from_it(source, tmp_path):
    run, src = source
    ds = make_demo("ckplus", n=240)
    cfg = config_for(ds, "lkrnet", epochs=1, init_from=str(run))
    m = train(ds, cfg, tmp_path / "ft", device="cpu", fold=0, folds=5, progress=False, threads=1)
    assert any(str(run) in n for n in m["notes"])
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["init_from"] == str(run)
    # one epoch of SGD from the copied weights stays far nearer to them than to a fresh net's
    ck = torch.load(tmp_path / "ft" / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
    torch.manual_seed(0)
    fresh = build_model(cfg).state_dict()
    w = "shared.0.weight"
    assert (ck[w] - src[w]).norm() < 0.5 * (ck[w] - fresh[w]).norm()


def test_cli_set_init_from_a_missing_folder_fails_in_one_line(tmp_path, capsys):
    code = main(["train", "--data", "demo", "--out", str(tmp_path / "r"), "--set",
                 f"init_from={tmp_path / 'nothing'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no best.pt" in err and "\n" not in err


def test_the_fine_tuning_scale_needs_its_source(tmp_path):
    from lkr.experiments import _fine_tune_source
    from lkr.results import run_dir_for

    ds = make_demo("ckplus", n=120)
    assert config_for(ds, "lkrnet", scale="cpu-ft").scale == "demo"  # the demo set keeps its preset
    with pytest.raises(ConfigError, match="fer2013 itself"):
        _fine_tune_source(tmp_path, "cpu-ft", "fer2013", "lkrnet", 0)
    with pytest.raises(ConfigError, match="holds no finished run") as e:
        _fine_tune_source(tmp_path, "cpu-ft", "ckplus", "lkrnet", 1)
    assert "\n" not in str(e.value)
    src = run_dir_for(tmp_path / "runs", "cpu", "fer2013", "lkrnet", seed=1)
    src.mkdir(parents=True)
    (src / "metrics.json").write_text("{}")
    assert _fine_tune_source(tmp_path, "cpu-ft", "ckplus", "lkrnet", 1) == {"init_from": str(src.resolve())}
    assert _fine_tune_source(tmp_path, "cpu", "ckplus", "lkrnet", 1) == {}


def test_lkr_train_at_the_fine_tuning_scale_without_a_source_fails_in_one_line(tmp_path, capsys):
    from lkr.config import FINE_TUNE, scale_label

    assert FINE_TUNE["cpu-ft"] == ("cpu", "fer2013")
    assert scale_label({"scale": "cpu-ft", "width": 0.125, "epochs": 50}).startswith(
        "CPU scale, fine-tuned from FER2013: VGG19 at 1/8 width, 50 epochs")
    fake = tmp_path / "fer2013.csv"
    fake.write_text("emotion,pixels,Usage\n" + "".join(f"{i % 7},{' '.join(['1'] * 2304)},Training\n"
                                                     for i in range(14)))
    code = main(["train", "--data", str(fake), "--scale", "cpu-ft", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "init_from" in err and "\n" not in err


def test_lkr_reproduce_at_the_fine_tuning_scale_says_how_in_one_line(tmp_path, capsys):
    from lkr.errors import LkrError
    from lkr.pipeline import run_reproduce

    with pytest.raises(LkrError, match="reproduce --scale cpu first") as e:
        run_reproduce(tmp_path / "f.csv", tmp_path / "ck", scale="cpu-ft", out=tmp_path / "out")
    assert "cpu_results.py" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SystemExit):  # the CLI does not offer it
        main(["reproduce", "--fer", "f.csv", "--ck", "ck", "--scale", "cpu-ft"])
    assert "invalid choice: 'cpu-ft'" in capsys.readouterr().err


def test_a_fine_tuned_run_cut_short_resumes_to_the_same_weights(source, tmp_path):
    """The copy happens once, at the start: a resumed run takes its checkpoint's weights."""
    run, _ = source
    ds = make_demo("ckplus", n=240)
    cfg = config_for(ds, "lkrnet", epochs=2, init_from=str(run))
    kw = dict(device="cpu", fold=0, folds=5, progress=False, threads=1)
    train(ds, cfg, tmp_path / "whole", **kw)
    assert train(ds, cfg, tmp_path / "cut", stop_after=1, **kw) == {"stopped_at": 1}
    m = train(ds, cfg, tmp_path / "cut", **kw)
    a, b = (torch.load(tmp_path / d / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
            for d in ("whole", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any("weights from" in n for n in m["notes"])  # the resumed call copied nothing
    assert any(n.startswith("resumed from its checkpoint") and str(run) in n for n in m["notes"])


def test_run_experiments_at_cpu_ft_starts_each_configuration_from_its_source(tmp_path):
    """The wiring of the fine-tuning scale on non-demo data (the demo set keeps its own preset):
    the source is the same configuration's run at the cpu scale under the same runs folder."""
    import dataclasses

    from lkr.experiments import run_experiments
    from lkr.results import run_dir_for

    ck = dataclasses.replace(make_demo("ckplus", n=240), name="ckplus", kind="ckplus-folder")
    fer = dataclasses.replace(make_demo("fer2013", n=300), name="fer2013", kind="fer2013-csv")
    src = run_dir_for(tmp_path / "runs", "cpu", "fer2013", "vgg19")
    small = dict(width=1 / 32, fc_dims=(64, 32), batch_size=32)
    train(fer, config_for(fer, "vgg19", scale="cpu", epochs=1, **small), src, device="cpu", progress=False,
          threads=1)
    with pytest.raises(ConfigError, match="holds no finished run"):
        run_experiments(ck, tmp_path, ["baseline2"], scale="cpu-ft", epochs=1, folds=[0], k_folds=5,
                        device="cpu", progress=False, overrides=small)
    out = run_experiments(ck, tmp_path, ["vgg19"], scale="cpu-ft", epochs=1, folds=[0], k_folds=5, device="cpu",
                          progress=False, overrides=small)
    assert out["vgg19"]["scale"] == "cpu-ft"
    cfg = json.loads((run_dir_for(tmp_path / "runs", "cpu-ft", "ckplus", "vgg19", 0) / "config.json").read_text())
    assert cfg["init_from"] == str(src.resolve()) and cfg["scale"] == "cpu-ft"
    assert (tmp_path / "results" / "cpu-ft" / "ckplus" / "vgg19" / "fold0" / "metrics.json").exists()


def test_init_from_compares_as_the_folder_it_names(tmp_path, monkeypatch):
    from lkr.config import Config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "src").mkdir()
    rel, absolute = Config(init_from="src"), Config(init_from=str(tmp_path / "src"))
    assert rel.trains_like(absolute) and absolute.trains_like(rel)
    assert not rel.trains_like(Config(init_from=str(tmp_path / "other")))
    assert not Config().trains_like(rel)


def test_cpu_ft_refuses_an_init_from_of_its_own_in_one_line(tmp_path):
    import dataclasses

    from lkr.experiments import run_experiments

    ck = dataclasses.replace(make_demo("ckplus", n=120), name="ckplus", kind="ckplus-folder")
    with pytest.raises(ConfigError, match="drop init_from") as e:
        run_experiments(ck, tmp_path, ["vgg19"], scale="cpu-ft", folds=[0], k_folds=5, progress=False,
                        overrides={"init_from": str(tmp_path)})
    assert "\n" not in str(e.value)


def test_a_source_trained_on_the_same_dataset_is_refused_in_one_line(tmp_path, capsys):
    """A CK+ run of one fold has trained on another fold's test subjects: whatever the path
    (the API, --set init_from), a source of the target's own dataset is refused."""
    ds = make_demo("ckplus", n=240)
    fold3 = tmp_path / "fold3"
    train(ds, config_for(ds, "vgg19", epochs=1), fold3, device="cpu", fold=3, folds=5, progress=False, threads=1)
    with pytest.raises(ConfigError, match="trained on demo-ckplus") as e:
        train(ds, config_for(ds, "vgg19", epochs=1, init_from=str(fold3)), tmp_path / "f0", device="cpu", fold=0,
              folds=5, progress=False, threads=1)
    assert "\n" not in str(e.value) and str(fold3) in str(e.value)
    assert not (tmp_path / "f0" / "checkpoint.pt").exists()
    code = main(["train", "--data", "demo-ckplus", "--variant", "vgg19", "--fold", "0", "--out", str(tmp_path / "c"),
                 "--set", f"init_from={fold3}", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "a source must come from another dataset" in err and "\n" not in err


def test_a_changed_source_is_neither_resumed_nor_counted_as_finished(tmp_path):
    """The source's best.pt is fingerprinted (sha256) in the fine-tuned run's record."""
    from lkr.experiments import _finished
    from lkr.runfolder import weights_sha256

    fer = make_demo("fer2013", n=300)
    src = tmp_path / "src"
    train(fer, config_for(fer, "vgg19", epochs=1), src, device="cpu", progress=False, threads=1)
    ck = make_demo("ckplus", n=240)
    cfg = config_for(ck, "vgg19", epochs=2, init_from=str(src))
    kw = dict(device="cpu", fold=0, folds=5, progress=False, threads=1)
    m = train(ck, cfg, tmp_path / "done", **kw)
    assert m["init_sha256"] == weights_sha256(src) and any(weights_sha256(src)[:16] in n for n in m["notes"])
    assert _finished(tmp_path / "done", cfg)
    train(ck, cfg, tmp_path / "cut", stop_after=1, **kw)
    # the source is trained again (another seed) into the same folder
    train(fer, config_for(fer, "vgg19", epochs=1, seed=9), tmp_path / "src2", device="cpu", progress=False, threads=1)
    (src / "best.pt").write_bytes((tmp_path / "src2" / "best.pt").read_bytes())
    assert not _finished(tmp_path / "done", cfg)
    with pytest.raises(RunError, match="no longer holds") as e:
        train(ck, cfg, tmp_path / "cut", **kw)
    assert "\n" not in str(e.value)


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, capsys):
    """Run folders from elsewhere are read with weights_only=True: a pickle with code in it is
    refused in one line, and the code never runs."""
    import pickle

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    run = tmp_path / "evil"
    run.mkdir()
    torch.save({"config": {}, "model": {}, "x": Evil()}, run / "best.pt", pickle_protocol=pickle.DEFAULT_PROTOCOL)
    (run / "metrics.json").write_text('{"dataset": "fer2013"}')
    for args in (["evaluate", str(run)], ["predict", str(tmp_path / "none.jpg"), "--run", str(run)],
                 ["export", str(run), "--onnx", str(tmp_path / "x.onnx")]):
        code = main(args)
        err = capsys.readouterr().err.strip()
        assert code == 2 and "refused, not loaded" in err and "\n" not in err, (args, err)
    ds = make_demo("ckplus", n=120)
    with pytest.raises(RunError, match="refused, not loaded"):
        init_weights_from(build_model(config_for(ds, "lkrnet", epochs=1)), run)
    assert not marker.exists()


def test_a_source_that_names_no_dataset_or_the_same_one_under_another_name_is_refused(tmp_path):
    from lkr.runfolder import dataset_identity, init_source

    run = tmp_path / "src"
    run.mkdir()
    (run / "best.pt").write_bytes(b"x")
    (run / "metrics.json").write_text("{}")
    with pytest.raises(RunError, match="does not say which dataset"):
        init_source(run, "ckplus")
    (run / "metrics.json").write_text('{"dataset": "ckplus"}')
    assert dataset_identity("ckplus-cue") == "ckplus"
    with pytest.raises(ConfigError, match="trained on ckplus"):
        init_source(run, "ckplus-cue")  # the control's stamped copy is still CK+
    assert init_source(run, "fer2013")[0] == run


def test_a_source_whose_own_source_came_from_the_target_dataset_is_refused(tmp_path):
    """CK+ -> FER2013 -> CK+: the FER2013 run passes the direct check, its own source does not."""
    import json

    from lkr.runfolder import init_source, source_lineage

    def fake(name, dataset, init_from=None, record=None):
        run = tmp_path / name
        run.mkdir()
        (run / "best.pt").write_bytes(b"x")
        (run / "metrics.json").write_text(json.dumps({"dataset": dataset} | ({"init_lineage": record} if record else {})))
        (run / "config.json").write_text(json.dumps({"init_from": init_from}))
        return run

    ck = fake("ck", "ckplus")
    fer = fake("fer", "fer2013", init_from=str(ck / "best.pt"))
    assert source_lineage(fer) == [(str(ck), "ckplus")]
    with pytest.raises(ConfigError, match="started from .*ck, trained on ckplus"):
        init_source(fer, "ckplus-cue")
    assert init_source(fer, "demo-fer2013")[0] == fer  # another dataset altogether: fine
    import shutil

    shutil.rmtree(ck)  # a link that cannot be read is not waved through
    with pytest.raises(RunError, match="whole chain"):
        init_source(fer, "ckplus")
    fer2 = fake("fer2", "fer2013", init_from=str(tmp_path / "gone"), record=[[str(tmp_path / "gone"), "ckplus"]])
    with pytest.raises(ConfigError, match="trained on ckplus"):  # what the run recorded when it trained
        init_source(fer2, "ckplus")
