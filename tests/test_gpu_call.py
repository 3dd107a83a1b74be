"""The GPU call, dry-run on the CPU: ``scripts/gpu_run.sh --dry-run`` runs the very code of the
call (docs/gpu-runs.md) on a few hundred images of each dataset, 1 epoch, VGG19 at 1/8 width,
2 CK+ folds, so that the call cannot fail on a typo.

Real data (a small zip of FER2013 and of CK+48 cut from ../shared/data, their landmarks exported
with scripts/export_landmarks.py as on the CPU before a call) when present, else the built-in
demo sets ("demo", "demo-ckplus").
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LKR_SHARED_DATA", REPO.parent / "shared" / "data"))
MAX_FILES, MAX_BYTES = 8, 16 * 2**20  # what a call returns from $OUT
FER_CONFIGS = ["vgg19", "lkrnet", "baseline1", "baseline2", "lkrnet-cover", "lkrnet-l0.4"]
CK_CONFIGS = ["vgg19", "lkrnet", "baseline1", "baseline2"]


def _load(name: str = "gpu_run"):
    """scripts/<name>.py as a module (registered first: dataclasses look their module up)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def _small_fer(src: Path, dst: Path, train: int = 29, test: int = 7) -> None:
    """``train`` Training and ``test`` PublicTest / PrivateTest images of every class."""
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        names = sorted(n for n in z.namelist() if n.endswith(".jpg"))
        for prefix, k in (("Training_", train), ("PublicTest_", test), ("PrivateTest_", test)):
            by_class: dict[str, list[str]] = {}
            for n in names:
                if Path(n).name.startswith(prefix):
                    by_class.setdefault(n.split("/")[1], []).append(n)
            for members in by_class.values():
                for n in members[:k]:
                    out.writestr(n, z.read(n))


def _small_ck(src: Path, dst: Path, n: int = 200) -> None:
    """Whole subjects, in order, until ``n`` images and every class are in."""
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        names = sorted(m for m in z.namelist() if m.endswith(".png"))
        by_subject: dict[str, list[str]] = {}
        for m in names:
            by_subject.setdefault(Path(m).name.split("_")[0], []).append(m)
        classes = {m.split("/")[1] for m in names}
        keep: list[str] = []
        for members in by_subject.values():
            if len(keep) >= n and {m.split("/")[1] for m in keep} == classes:
                break
            keep += members
        for m in keep:
            out.writestr(m, z.read(m))


@pytest.fixture(scope="module")
def call(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu-call")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LKR_THREADS": "1", "PYTHON": sys.executable,
           "OUT": str(tmp / "out"), "LKR_CACHE_DIR": str(tmp / "cache")}
    real = (SHARED / "fer2013.zip").is_file() and (SHARED / "CK+48.zip").is_file()
    t0 = time.monotonic()
    if real:
        fer, ck = tmp / "fer2013-small.zip", tmp / "ck-small.zip"
        _small_fer(SHARED / "fer2013.zip", fer)
        _small_ck(SHARED / "CK+48.zip", ck)
    else:
        fer, ck = "demo", "demo-ckplus"
    archives = {"fer": str(fer), "ck": str(ck)}  # what `lkr verify` reads back here (the zip, not the packed copy)
    export = _load("export_landmarks")
    for data, lm in ((fer, tmp / "fer-lm.npz"), (ck, tmp / "ck-lm.npz")):  # as on the CPU before a call
        assert export.main([str(data), str(lm)]) == 0
    if real:  # FER2013 travels packed (--pack-data) and the call unpacks it
        packed = tmp / "fer2013-small.tar.xz"
        subprocess.run([sys.executable, "scripts/gpu_run.py", "--pack-data", str(fer), str(packed)],
                       cwd=REPO, env=env, check=True, capture_output=True, text=True, timeout=120)
        fer = packed
    t_lm = time.monotonic() - t0
    t0 = time.monotonic()
    p = subprocess.run(["bash", "scripts/gpu_run.sh", "--dry-run", "--fer", str(fer), "--ck", str(ck),
                        "--fer-landmarks", str(tmp / "fer-lm.npz"), "--ck-landmarks", str(tmp / "ck-lm.npz"),
                        "--runs", str(tmp / "runs"), "--stage", str(tmp / "stage")],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - t0
    print(f"dry run ({'real data' if real else 'demo sets'}): preparation {t_lm:.1f} s, call {seconds:.1f} s")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return {"out": tmp / "out", "seconds": seconds, "stdout": p.stdout, "real": real, **archives}


def _archive(out: Path, pattern: str) -> tuple[tarfile.TarFile, str]:
    found = [p for p in out.glob(pattern)]
    assert len(found) == 1, (pattern, sorted(p.name for p in out.iterdir()))
    return tarfile.open(found[0]), found[0].name


def _metrics(tar: tarfile.TarFile, member: str) -> dict:
    return json.loads(tar.extractfile(member).read())


def test_what_comes_back_fits_a_call(call):
    files = [p for p in call["out"].rglob("*") if p.is_file()]
    names = sorted(p.name for p in files)
    assert len(files) <= MAX_FILES, names
    assert {"throughput.json", "summary.json", "log.txt"} <= set(names)
    for p in files:
        assert p.stat().st_size < MAX_BYTES, p
        assert re.fullmatch(r"[A-Za-z0-9._-]+", p.name), p
        assert p.parent == call["out"], p  # no folders: nothing deeper than a call returns
    assert not [n for n in names if n.endswith(".tmp")], names


def test_every_group_is_packed(call):
    scale = "full" if call["real"] else "demo"
    tar, _ = _archive(call["out"], f"fer2013-{scale}.tar.gz")
    members = set(tar.getnames())
    for c in FER_CONFIGS:
        for f in ("config.json", "metrics.json", "history.json", "predictions.npz", "embeddings.npz", "gradcam.npz"):
            assert f"{scale}/fer2013/{c}/{f}" in members, (c, f)
        m = _metrics(tar, f"{scale}/fer2013/{c}/metrics.json")
        assert m["test_split"] == "PrivateTest" and m["select_split"] == "PublicTest" and m["epochs"] == 1
        assert m["wall_seconds"] > 0 and m["device"] and m["precision"]["precision"] in ("fp32", "bf16")
        assert m["epochs_note"]
        cfg = json.loads(tar.extractfile(f"{scale}/fer2013/{c}/config.json").read())
        assert cfg["width"] == 0.125 and cfg["triplet_mining"] == "semi_hard" and cfg["vgg_cfg"][0] == 64
    tar, _ = _archive(call["out"], f"ckplus-{scale}.tar.gz")
    for c in CK_CONFIGS:
        m = _metrics(tar, f"{scale}/ckplus/{c}/metrics.json")
        assert m["pooled"] and m["folds"] == [0, 1] and m["n_folds_total"] == 10 and m["wall_seconds"] > 0
        assert not _metrics(tar, f"{scale}/ckplus/{c}/fold0/metrics.json").get("init_sha256")
    tar, _ = _archive(call["out"], f"ckplus-{scale}-ft.tar.gz")
    for c in CK_CONFIGS:
        fold = _metrics(tar, f"{scale}-ft/ckplus/{c}/fold1/metrics.json")
        assert fold["init_sha256"] and f"fer2013/{c} (" in fold["notes"][-1]  # from its own FER2013 run
    tar, _ = _archive(call["out"], f"fer2013-{scale}-seeds.tar.gz")
    for c in ("vgg19", "lkrnet", "lkrnet-s1"):
        for s in (1, 2):
            m = _metrics(tar, f"{scale}/fer2013/{c}/seed{s}/metrics.json")
            assert m["wall_seconds"] > 0
            assert f"{scale}/fer2013/{c}/seed{s}/embeddings.npz" not in tar.getnames()


def test_throughput_and_summary(call):
    t = json.loads((call["out"] / "throughput.json").read_text())
    assert t["device"] and t["width"] == 0.125
    for c in ("vgg19", "lkrnet"):
        assert t["configs"][c]["images_per_s"] > 0
    s = json.loads((call["out"] / "summary.json").read_text())
    assert s["finished"] and not s["failed"] and not s["skipped"], (s["failed"], s["skipped"])
    assert s["plan"]["epochs"] == 1 and len(s["runs"]) == 8 + 4 + 4 + 6
    # LKRNet with the mask at stage 1 and its face-mask partner run right after VGG19 and LKRNet
    fer = [r["config"] for r in s["runs"] if r["group"].startswith("fer2013") and r["seed"] == 0]
    assert fer[:4] == ["vgg19", "lkrnet", "lkrnet-s1", "face-s1"]
    assert "gpu_run" in (call["out"] / "log.txt").read_text()


def test_the_call_lands(call, tmp_path, monkeypatch):
    """docs/gpu-runs.md, "After the call", on what the dry run brought back: the archives untarred
    into a results folder, UMAP from the embeddings and the embeddings dropped, then `lkr verify`
    finds every number equal to its predictions, `lkr figures` draws the call's scale and its
    fine-tuned set, and the README's tables take its rows."""
    from lkr.report import render
    from lkr.results import export_umap
    from lkr.verify import verify

    scale = "full" if call["real"] else "demo"
    results = tmp_path / "results"
    results.mkdir()
    for f in sorted(call["out"].glob("*.tar.gz")):
        with tarfile.open(f) as tar:
            tar.extractall(results, filter="data")
    (results / "full").mkdir(exist_ok=True)
    shutil.copy(call["out"] / "throughput.json", results / "full" / "throughput.json")
    fer_dirs = sorted(p.parent for p in (results / scale / "fer2013").glob("*/embeddings.npz"))
    assert [d.name for d in fer_dirs] == sorted(FER_CONFIGS + ["lkrnet-s1", "face-s1"])
    for d in fer_dirs:
        export_umap(d)
        (d / "embeddings.npz").unlink()
    assert not list(results.rglob("embeddings.npz"))

    # the dry run trains on gpu_run's --subset 200 of each archive: verify reads that part
    import lkr.verify

    whole = lkr.verify._load
    monkeypatch.setattr(lkr.verify, "_load", lambda path, what: _load().subset_of(whole(path, what), 200))
    rep = verify(results, fer=call["fer"], ck=call["ck"])
    assert not rep.problems, rep.problems[:5]
    assert not rep.unchecked and not rep.skipped, (rep.unchecked[:5], rep.skipped[:5])  # `lkr verify` exits 0
    # every run: FER2013 8 + seeds 2 x 3, CK+ and fine-tuned CK+ 4 configurations x 2 folds each
    assert rep.runs == 8 + 6 + 2 * 4 * 2, rep.runs

    figs = tmp_path / "figures"
    done = subprocess.run([sys.executable, "-m", "lkr", "figures", "--results", str(results), "--out", str(figs)],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr[-2000:]
    names = {p.name for p in figs.iterdir()}
    for f in (f"table3_fer2013_{scale}.md", f"table2_ckplus_{scale}.md", f"table2_ckplus_{scale}-ft.md",
              f"fig6_embeddings_{scale}.png", f"fig7_confusion_fer2013_{scale}.png", f"fig8_gradcam_{scale}.png"):
        assert f in names, (f, sorted(names))
    # docs/performance.md's training images/s: a dry run's file is refused, a call's becomes the table
    with pytest.raises(KeyError, match="dry run"):
        render("<!-- lkr-table: gpu-throughput -->\n<!-- /lkr-table -->", results)
    t = json.loads((results / "full" / "throughput.json").read_text())
    (results / "full" / "throughput.json").write_text(json.dumps({**t, "dry_run": False}))
    rows = render("<!-- lkr-table: gpu-throughput -->\n<!-- /lkr-table -->", results).splitlines()[3:-1]
    assert [r.split(" | ")[0] for r in rows] == ["| vgg19", "| lkrnet"], rows
    for r, c in zip(rows, ("vgg19", "lkrnet")):
        assert f"| {t['configs'][c]['images_per_s']:,.0f} |" in r and t["date"] in r and "1/8, 32" in r, r
    if call["real"]:  # the README's tables read the full scale beside the committed ones
        summary = render("<!-- lkr-table: summary -->\n<!-- /lkr-table -->", results).splitlines()
        head = [c.strip() for c in summary[1].strip("|").split("|")]
        assert sum("full" in c.lower() for c in head) == 2, head  # a full-scale column of each dataset
        assert any("stage 1" in r for r in summary[3:-1]), summary  # the stage-1 arm, with its seeds 0-2
        capacity = render("<!-- lkr-table: capacity -->\n<!-- /lkr-table -->", results)
        rows = [r for r in capacity.splitlines() if r.startswith("| full |")]
        assert len(rows) == 2, capacity  # LKRNet with the paper's mask and with the mask at stage 1


def test_dry_run_is_quick(call):
    # about 30-40 s on one thread of the 2-core development machine; the bound leaves room for a busy one
    assert call["seconds"] < 150, call["seconds"]


@pytest.mark.parametrize("args, words", [
    (["--fer", "/nonexistent/fer2013.zip"], "no such file"),
    (["--budget-s", "0"], "--budget-s"),
    (["--only", "fer,nope"], "--only"),
    (["--fer", "demo", "--ck", "demo-ckplus", "--fer-landmarks", "/nonexistent.npz"], "landmarks"),
    (["--no-such-flag"], "unrecognized"),
    (["--pack-data", __file__, "x.tar.xz"], "not a zip"),
])
def test_bad_input_is_one_line(args, words, tmp_path):
    p = subprocess.run([sys.executable, "scripts/gpu_run.py", "--out", str(tmp_path), *args], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_run: error:") and words in lines[0], p.stderr


def test_landmarks_file_must_cover_the_data(tmp_path):
    from lkr.demo import make_demo

    g = _load()
    ds = make_demo("ckplus", n=60)
    np.savez_compressed(tmp_path / "lm.npz", paths=ds.relative_paths()[:-1], boxes=ds.boxes[:-1],
                        points=ds.points[:-1], detected=ds.detected[:-1])
    with pytest.raises(g.UserError, match="lacks 1 of the 60"):
        g.attach_landmarks_file(ds, tmp_path / "lm.npz")
    np.savez_compressed(tmp_path / "lm.npz", paths=ds.relative_paths(), boxes=ds.boxes, points=ds.points,
                        detected=np.zeros(len(ds), bool))
    out = g.attach_landmarks_file(ds, tmp_path / "lm.npz")  # undetected faces: the built-in template
    assert np.allclose(out.points, out.points[0]) and not out.detected.any()


def test_pack_data_round_trip(tmp_path):
    src = tmp_path / "d.zip"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("train/", b"")
        for i, name in enumerate(["train/happy/Training_2.jpg", "test/sad/PrivateTest_1.jpg", "train/a b/x.jpg"]):
            z.writestr(name, bytes(range(i, 200)) * 3)
    p = subprocess.run([sys.executable, "scripts/gpu_run.py", "--pack-data", str(src), str(tmp_path / "d.tar.xz")],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    back = _load().unpack_data(tmp_path / "d.tar.xz", tmp_path / "work")
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(back) as b:
        files = sorted(n for n in a.namelist() if not n.endswith("/"))
        assert sorted(b.namelist()) == files
        assert all(a.read(n) == b.read(n) for n in files)


def test_epochs_fit_the_budget():
    g = _load()
    c = g.Costs(fer_epoch={"vgg19": 1.0, "lkrnet": 1.2}, fer_fixed={"vgg19": 5.0, "lkrnet": 5.0},
                ck_epoch=0.05, ck_fixed=1.0, post={"fer2013": 2.0, "ckplus": 0.2})
    roomy = g.fit_epochs(c, 10_000, 60, FER_CONFIGS, CK_CONFIGS, 10)
    assert roomy == 60
    e = g.fit_epochs(c, 400, 60, FER_CONFIGS, CK_CONFIGS, 10)
    total = (sum(c.fer_run(n, e) for n in FER_CONFIGS) + sum(c.ck_config(n, e, 10) for n in CK_CONFIGS)) * g.SAFETY
    more = (sum(c.fer_run(n, e + 1) for n in FER_CONFIGS)
            + sum(c.ck_config(n, e + 1, 10) for n in CK_CONFIGS)) * g.SAFETY
    assert 1 <= e < 60 and total <= 400 - g.RESERVE_S < more
    assert g.fit_epochs(c, 1, 60, FER_CONFIGS, CK_CONFIGS, 10) == 1  # never below one epoch
    assert g.warmup_for(60, 60, 20) == 20 and g.warmup_for(40, 60, 20) == 13 and g.warmup_for(1, 60, 20) == 0
    assert all(e > g.warmup_for(e, 60, 20) for e in range(1, 61))  # every fitted run leaves its warm-up


def test_units_that_do_not_fit_are_skipped(tmp_path):
    """With no time left every unit is skipped with its reason, and nothing is trained."""
    from lkr.demo import make_demo

    g = _load()
    args = g.parse_args(["--dry-run", "--fer", "demo", "--ck", "demo-ckplus", "--out", str(tmp_path / "out"),
                         "--runs", str(tmp_path / "runs"), "--stage", str(tmp_path / "stage")])
    call = g.Call(args)
    call.costs = g.Costs(fer_epoch={"vgg19": 1.0, "lkrnet": 1.0}, fer_fixed={"vgg19": 1.0, "lkrnet": 1.0},
                         ck_epoch=0.1, ck_fixed=0.5)
    call.budget = g.Budget(0.0)
    fer, ck = make_demo("fer2013", n=70), make_demo("ckplus", n=60)
    call.fer_group(fer, ["vgg19", "lkrnet"], 3, 0, "test")
    call.ck_group(ck, ["vgg19"], 3, "test", fine_tune=False)
    call.ck_group(ck, ["lkrnet"], 3, "test", fine_tune=True)
    whats = [s["what"] for s in call.skipped]
    assert whats == ["fer2013 vgg19", "fer2013 lkrnet", "ckplus vgg19", "ckplus lkrnet fine-tuned"]
    assert "left" in call.skipped[0]["why"] and "did not finish" in call.skipped[-1]["why"]
    assert not call.rows and not call.failed and not (tmp_path / "runs").exists()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(summary["skipped"]) == 4
