"""The model that ships inside the package (lkr/data/model/, lkr.shipped): its size and card, the
sha256 and weights_only checks, ``lkr predict`` and ``lkr evaluate --shipped`` with no run folder,
and the model card rendered from the card.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lkr.cli import main
from lkr.errors import RunError
from lkr.shipped import MAX_BYTES, MODEL_DIR, SHIP_FC_DIMS, about, pinned_sha256, model_card, read_card, sha256_of, shipped_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def card() -> dict:
    return read_card()


def test_the_shipped_file_is_small_and_matches_its_card(card):
    best = MODEL_DIR / "best.pt"
    assert best.stat().st_size <= MAX_BYTES  # everything tracked travels with every GPU call
    assert card["bytes"] == best.stat().st_size
    assert card["sha256"] == sha256_of(best) == pinned_sha256()  # the card and the pin
    assert shipped_run() == MODEL_DIR
    ck = torch.load(best, weights_only=True)
    floats = [v for v in ck["model"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    weights = [k for k, v in ck["model"].items() if v.dim() >= 2]
    if card["dtype"] == "int8":  # weight-only int8, one scale per output channel
        assert sorted(ck["int8_scales"]) == sorted(weights)
        assert all(ck["model"][k].dtype == torch.int8 for k in weights)
    else:
        assert card["dtype"] == "float16" and "int8_scales" not in ck
    assert tuple(ck["config"]["fc_dims"]) == SHIP_FC_DIMS and ck["config"]["variant"] == "lkrnet"
    assert card["parameters"] == sum(v.numel() for k, v in ck["model"].items() if "running" not in k
                                     and "num_batches" not in k)
    # trained on FER2013 Training, selected on PublicTest, measured on PrivateTest with this file
    m = json.loads((MODEL_DIR / "metrics.json").read_text())
    assert m["test_split"] == "PrivateTest" and m["n"] == 3589 and card["training"]["select_split"] == "PublicTest"
    assert m["accuracy"] == pytest.approx(card["privatetest"]["accuracy"], abs=1e-6)


def test_the_committed_predictions_give_the_cards_accuracy(card):
    with np.load(REPO / "results" / "shipped" / "fer2013" / "predictions.npz") as z:
        acc = float((z["label"] == z["pred"]).mean())
        assert len(z["label"]) == 3589
        names = tuple(str(c) for c in z["class_names"])
    assert acc == pytest.approx(card["privatetest"]["accuracy"], abs=1e-6)
    assert tuple(card["privatetest"]["per_class"]) == names
    ck = torch.load(MODEL_DIR / "best.pt", weights_only=True)
    assert ck["info"]["class_names"] == list(card["privatetest"]["per_class"])  # the label order, hashed
    assert ck["config"]["amp"] is False and ck["info"]["threads"] is None
    cross = json.loads((REPO / "results" / "shipped" / "cross" / "ckplus" / "metrics.json").read_text())
    assert cross["n"] == 927 and cross["left_out"] == {"contempt": 54}
    assert cross["accuracy"] == pytest.approx(card["cross"]["FER2013 -> CK+48"]["accuracy"], abs=1e-6)


def test_a_damaged_file_is_refused_in_one_line(tmp_path):
    d = tmp_path / "model"
    shutil.copytree(MODEL_DIR, d)
    raw = bytearray((d / "best.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (d / "best.pt").write_bytes(bytes(raw))
    with pytest.raises(RunError, match="damaged or replaced") as e:
        shipped_run(d)
    assert "\n" not in str(e.value)
    (d / "card.json").write_text("{not json")
    with pytest.raises(RunError, match="unreadable"):
        shipped_run(d)
    (d / "card.json").unlink()
    with pytest.raises(RunError, match="no shipped model"):
        shipped_run(d)


def test_a_file_that_would_run_code_is_refused_even_with_a_matching_card(tmp_path, capsys):
    """Whoever replaces both the file and its card still cannot make lkr run code: weights_only."""
    import pickle

    from lkr.runfolder import load_run_model

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    d = tmp_path / "model"
    shutil.copytree(MODEL_DIR, d)
    (d / "best.pt").write_bytes(pickle.dumps({"config": {}, "model": Evil()}, protocol=2))
    c = json.loads((d / "card.json").read_text())
    c["sha256"] = sha256_of(d / "best.pt")
    (d / "card.json").write_text(json.dumps(c))
    with pytest.raises(RunError, match="refused, not loaded"):
        load_run_model(shipped_run(d))
    assert "owned" not in capsys.readouterr().out  # the pickle's code never ran


def test_the_package_folder_is_checked_against_the_codes_pin(tmp_path, monkeypatch, capsys, astronaut):
    """The package's own folder: a file replaced together with its card is still refused (the
    sha256 pinned in lkr/shipped.py), and the CLI says so in one line (exit 2), the code never run."""
    import pickle

    import lkr.shipped as shipped

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    d = tmp_path / "model"
    shutil.copytree(MODEL_DIR, d)
    monkeypatch.setattr(shipped, "MODEL_DIR", d)
    (d / "best.pt").write_bytes(pickle.dumps({"config": {}, "model": Evil()}, protocol=2))
    c = json.loads((d / "card.json").read_text())
    c["sha256"] = sha256_of(d / "best.pt")
    (d / "card.json").write_text(json.dumps(c))
    assert main(["predict", str(astronaut)]) == 2
    out = capsys.readouterr()
    assert "owned" not in out.out + out.err
    (line,) = out.err.strip().splitlines()
    assert line.startswith("lkr: error:") and "damaged or replaced" in line


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> Path:
    pytest.importorskip("skimage")
    from lkr.predict import example_photo

    return example_photo(tmp_path_factory.mktemp("photo"))


def test_predict_with_no_run_folder_uses_the_shipped_model(astronaut, capsys):
    assert main(["predict", str(astronaut), "--json", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    (face,) = out[0]["faces"]
    assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    # Eileen Collins smiles in the portrait: a model trained on FER2013 must say so
    assert face["label"] == "happiness" and face["probabilities"]["happiness"] > 0.5


def test_about_prints_the_cards_summary(card, capsys):
    assert main(["predict", "--about"]) == 0
    out = capsys.readouterr().out
    assert card["sha256"] in out and f"{100 * card['privatetest']['accuracy']:.1f}%" in out
    assert "not for decisions about people" in out
    assert out.strip() == about().strip()


def test_about_on_an_incomplete_card_is_one_line(tmp_path):
    d = tmp_path / "model"
    shutil.copytree(MODEL_DIR, d)
    c = json.loads((d / "card.json").read_text())
    del c["parameters"], c["cross"]["FER2013 -> CK+48"]["ci_low"]
    (d / "card.json").write_text(json.dumps(c))
    with pytest.raises(RunError, match="incomplete") as e:
        about(d)
    assert "\n" not in str(e.value)


def test_predict_without_photos_says_so_in_one_line(capsys):
    assert main(["predict"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lkr: error:") and "--about" in err and "\n" not in err


def test_evaluate_shipped_needs_data_and_not_a_run(capsys, tmp_path):
    assert main(["evaluate", "--shipped"]) == 2
    assert "give --data" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--shipped", "--data", "x"]) == 2
    assert "not both" in capsys.readouterr().err


def test_the_model_card_is_rendered_from_the_card(card):
    assert (REPO / "docs" / "model-card.md").read_text() == model_card(card)


def test_the_shipped_model_on_ck_plus_again(ckplus48_zip, card, tmp_path, capsys):
    """FER2013 -> CK+48 recomputed with the shipped file: the card's figure, bit for bit."""
    assert main(["evaluate", "--shipped", "--data", str(ckplus48_zip), "--out", str(tmp_path / "ck"), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["n"] == 927
    assert m["accuracy"] == pytest.approx(card["cross"]["FER2013 -> CK+48"]["accuracy"], abs=1e-6)


def test_the_pin_is_data_the_code_reads_and_a_wrong_pin_refuses_the_model(tmp_path, monkeypatch):
    import lkr.shipped as S

    assert S.PIN_FILE.parent != S.MODEL_DIR  # a model folder copied in does not bring its own pin
    pin = tmp_path / "pin"
    pin.write_text("0" * 64 + "\n")
    monkeypatch.setattr(S, "PIN_FILE", pin)
    with pytest.raises(RunError, match="damaged or replaced"):
        S.shipped_run()
    pin.write_text("not a hash\n")
    with pytest.raises(RunError, match="not a sha256"):
        S.shipped_run()


def test_the_shipped_model_on_fer2013_reads_privatetest_alone(fer2013_zip, card, tmp_path, mtcnn_calls, capsys):
    """Issue 34: `lkr evaluate --shipped --data fer2013.zip` from a cold cache decodes and detects
    the 3,589 PrivateTest faces only (the template of the undetected ones is the one its metrics
    record, the mean of the Training detections), gives the committed predictions, and leaves
    those faces' landmarks in the cache."""
    from lkr import landmarks as lm
    from lkr.readers import cache_path_for, load_dataset

    detected = mtcnn_calls  # a cache of the test's own
    assert main(["evaluate", "--shipped", "--data", str(fer2013_zip), "--out", str(tmp_path / "m"), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert detected == [3589] and not cache_path_for(fer2013_zip).is_file()
    assert m["n"] == 3589 and m["accuracy"] == pytest.approx(card["privatetest"]["accuracy"], abs=1e-6)
    with np.load(REPO / "results" / "shipped" / "fer2013" / "predictions.npz") as z:
        committed = np.bincount(7 * z["label"].astype(int) + z["pred"], minlength=49).reshape(7, 7)
    assert m["confusion"] == committed.tolist()  # every label-prediction pair as committed
    keys, call, _ = lm._read_store(lm.store_path())
    assert len(keys) >= 3500 and set(call.tolist()) == {3589}  # filled for the faces it touched (identical ones once)
    assert not lm.cache_path(load_dataset(fer2013_zip, splits={"PrivateTest"}).images).exists()  # no file of a part
    tpl = json.loads((MODEL_DIR / "metrics.json").read_text())["landmark_template"]
    assert tpl["from"].startswith("the mean of the 28224 detected Training faces")


def test_int8_packing_keeps_the_network_and_halves_the_file(demo_run, tmp_path):
    """Weight-only int8 (torch.ao's per-channel observer): every conv and linear weight int8 with one
    scale per output channel, loaded back to float32 by the kit's own loader (weights_only); the
    network's outputs stay close to the float32 run's and the file is well under the float16 one's."""
    from lkr.runfolder import load_run_model
    from lkr.shipped import pack, quantize_weights

    names = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    out8, out16 = pack(demo_run, tmp_path / "i8", class_names=names, dtype="int8"), \
        pack(demo_run, tmp_path / "f16", class_names=names, dtype="float16")
    raw = torch.load(out8, weights_only=True)
    weights = [k for k, v in raw["model"].items() if v.dim() >= 2]
    assert weights and all(raw["model"][k].dtype == torch.int8 for k in weights)
    assert sorted(raw["int8_scales"]) == sorted(weights)
    assert all(raw["int8_scales"][k].shape == (raw["model"][k].shape[0],) for k in weights)
    floats = [v for v in raw["model"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)  # biases, batch norm
    assert out8.stat().st_size < 0.65 * out16.stat().st_size

    ref, _, _ = load_run_model(demo_run)
    got, _, _ = load_run_model(tmp_path / "i8")
    state, ref_state = got.state_dict(), ref.state_dict()
    for k in weights:  # each weight within half a step of its channel's scale
        step = raw["int8_scales"][k].view(-1, *([1] * (ref_state[k].dim() - 1)))
        assert state[k].dtype == torch.float32
        assert ((state[k] - ref_state[k]).abs() <= step / 2 + 1e-6).all(), k
    x = torch.rand(4, 1, 44, 44)
    mask = torch.ones(4, 1, 44, 44)
    with torch.no_grad():
        a, b = ref(x, mask), got(x, mask)
    assert torch.allclose(a["logits"].softmax(1), b["logits"].softmax(1), atol=0.05)

    _, scales = quantize_weights({"w": torch.tensor([[1.0, -2.0], [0.5, 0.25]])})
    assert torch.allclose(scales["w"], torch.tensor([2.0, 0.5]) / 127, rtol=1e-4)  # symmetric, per row
    q, _ = quantize_weights({"w": torch.tensor([[1.0, -2.0], [0.5, 0.25]])})
    assert q["w"].tolist() == [[64, -127], [127, 64]]  # the largest weight of a row is exactly ±127


def test_int8_scales_that_do_not_fit_are_one_line(demo_run, tmp_path, capsys):
    from lkr.runfolder import load_checkpoint
    from lkr.shipped import pack

    out = pack(demo_run, tmp_path / "m", class_names=("a",) * 7, dtype="int8")
    ck = torch.load(out, weights_only=True)
    k = next(iter(ck["int8_scales"]))
    ck["int8_scales"][k] = ck["int8_scales"][k][:-1]
    torch.save(ck, out)
    with pytest.raises(RunError, match=f"int8 weight {k} does not match its scales"):
        load_checkpoint(out, torch.device("cpu"))
    ck["int8_scales"][k] = "not a tensor"
    torch.save(ck, out)
    with pytest.raises(RunError, match=f"int8 weight {k} does not match its scales"):
        load_checkpoint(out, torch.device("cpu"))
    del ck["int8_scales"][k]  # an int8 weight without its scale: refused, not loaded as integers
    torch.save(ck, out)
    with pytest.raises(RunError, match=f"int8 weight {k} has no scale"):
        load_checkpoint(out, torch.device("cpu"))
    ck["int8_scales"] = [1, 2]
    torch.save(ck, out)
    with pytest.raises(RunError, match="its int8 scales are not a table of tensors"):
        load_checkpoint(out, torch.device("cpu"))


def test_the_replace_rule_is_publictest_alone():
    from lkr.shipped import better_on_publictest

    old = {"training": {"select_accuracy": 0.6389}, "privatetest": {"accuracy": 0.99}}
    assert better_on_publictest(0.66, old) and not better_on_publictest(0.6389, old)
    assert not better_on_publictest(0.60, old) and not better_on_publictest(None, old)
    assert better_on_publictest(0.1, None)  # nothing shipped yet


def test_the_card_puts_the_replaced_model_beside_this_one(card):
    from lkr.shipped import _replaced

    new = json.loads(json.dumps(card))
    old = {"name": "older", "sha256": "0" * 64, "bytes": 1_000_000, "dtype": "float16", "parameters": 1,
           "select_accuracy": 0.6, "privatetest": {"accuracy": 0.6, "ci_low": 0.58, "ci_high": 0.62, "n": 3589},
           "cross": {"FER2013 -> CK+48": {"accuracy": 0.7, "ci_low": 0.65, "ci_high": 0.75, "n": 927}},
           "differences": {"privatetest": {"difference": 0.05, "ci_low": 0.03, "ci_high": 0.07, "p": 0.0001,
                                           "n": 3589, "resampled": "images"}}}
    new["replaces"] = old
    text = _replaced(new)
    assert "older (before)" in text and "60.0 (58.0 to 62.0)" in text and "70.0 (65.0 to 75.0)" in text
    assert "FER2013 PrivateTest +5.0 points (+3.0 to +7.0, images resampled" in text
    assert "### Against the model it replaced" in model_card(new)
    assert _replaced(card if "replaces" not in card else {**card, "replaces": None}) == ""


def test_ship_model_stages_measures_and_records_the_model_it_replaces(fer2013_zip, ckplus48_zip, demo_run, tmp_path):
    """scripts/ship_model.py end to end on a tiny run (--other-run: a try-out folder): the file is
    int8, measured on FER2013 PrivateTest and CK+48 with the packed file, its card names the model
    it replaced with the paired differences, and the package's own model, pin and model card are
    untouched."""
    import os
    import subprocess
    import sys

    dest, results = tmp_path / "model", tmp_path / "results"
    shutil.copytree(MODEL_DIR, dest)
    shutil.copytree(REPO / "results" / "shipped", results)
    untouched = {f: f.read_bytes() for f in (MODEL_DIR / "best.pt", MODEL_DIR / "card.json",
                                              REPO / "lkr" / "data" / "shipped-model.sha256",
                                              REPO / "docs" / "model-card.md")}
    old_sha = read_card()["sha256"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "ship_model.py"), "--fer", str(fer2013_zip),
                        "--ck", str(ckplus48_zip), "--run", str(demo_run), "--dest", str(dest),
                        "--results", str(results), "--other-run"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert all(f.read_bytes() == b for f, b in untouched.items())
    new = read_card(dest)
    assert new["dtype"] == "int8" and new["sha256"] == sha256_of(dest / "best.pt") != old_sha and \
        new["bytes"] == (dest / "best.pt").stat().st_size
    old = json.loads(untouched[MODEL_DIR / "card.json"])
    r_ = new["replaces"]
    assert r_["sha256"] == old["sha256"] and r_["privatetest"]["accuracy"] == old["privatetest"]["accuracy"]
    with np.load(results / "fer2013" / "predictions.npz") as z:
        acc = float((z["label"] == z["pred"]).mean())
    assert acc == pytest.approx(new["privatetest"]["accuracy"], abs=1e-6)  # the card keeps 6 digits
    d = r_["differences"]["privatetest"]
    assert d["difference"] == pytest.approx(acc - old["privatetest"]["accuracy"], abs=2e-6)
    assert d["ci_low"] <= d["difference"] <= d["ci_high"] and d["resampled"] == "images"
    assert r_["differences"]["FER2013 -> CK+48"]["resampled"] == "subjects"
    assert "### Against the model it replaced" in (dest / "model-card.md").read_text()
    assert not [f for f in results.rglob("metrics.json") if "\n" in f.read_text().strip()]  # slim, as results/ is
    _check_the_replaced_model(new, results)


def _check_the_replaced_model(card: dict, results: Path) -> None:
    """The card's row of the model it replaced and its paired differences, recomputed from the
    replaced model's predictions kept in ``results/before/``."""
    from lkr.stats import bootstrap_difference

    r = card["replaces"]
    with np.load(results / "before" / "fer2013" / "predictions.npz") as b, \
            np.load(results / "fer2013" / "predictions.npz") as n:
        rb, rn = (b["pred"] == b["label"]).astype(float), (n["pred"] == n["label"]).astype(float)
    assert rb.mean() == pytest.approx(r["privatetest"]["accuracy"], abs=1e-6)
    d, lo, hi = bootstrap_difference(rn, rb)
    got = r["differences"]["privatetest"]
    assert (got["difference"], got["ci_low"], got["ci_high"]) == pytest.approx((d, lo, hi), abs=1e-6)
    with np.load(results / "before" / "cross" / "ckplus" / "predictions.npz") as b, \
            np.load(results / "cross" / "ckplus" / "predictions.npz") as n:
        rb, rn, subj = (b["pred"] == b["label"]).astype(float), (n["pred"] == n["label"]).astype(float), n["subject"]
    assert rb.mean() == pytest.approx(next(iter(r["cross"].values()))["accuracy"], abs=1e-6)
    d, lo, hi = bootstrap_difference(rn, rb, groups=subj)
    got = r["differences"]["FER2013 -> CK+48"]
    assert (got["difference"], got["ci_low"], got["ci_high"]) == pytest.approx((d, lo, hi), abs=1e-6)


def test_the_shipped_cards_replaced_model_is_what_its_kept_predictions_give(card):
    if not card.get("replaces"):
        pytest.skip("the shipped model replaced none that its card records")
    _check_the_replaced_model(card, REPO / "results" / "shipped")
