"""Tables and figures from tiny synthetic artifacts; the paper's numbers as data."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from lkr import figures as F
from lkr.classes import CKPLUS_CLASSES, FER2013_CLASSES
from lkr.evaluate import classification_metrics
from lkr.paper import (CKPLUS48_COUNTS, FER2013_PRIVATETEST_COUNTS, TABLE2_CKPLUS, TABLE3_FER2013, paper_overall,
                       weighted_accuracy)
from lkr.results import load_results, pool_folds, separation_score
from lkr.runfolder import save_npz, write_json

REPO = Path(__file__).resolve().parents[1]

CONFIGS = ("vgg19", "baseline1", "baseline2", "lkrnet", "lkrnet-l0.4")
LAMBDA = {"vgg19": 0.0, "baseline1": 0.0, "baseline2": 0.2, "lkrnet": 0.2, "lkrnet-l0.4": 0.4}


# --- the paper's numbers --------------------------------------------------------------------
def test_paper_weighted_accuracies():
    assert weighted_accuracy(TABLE3_FER2013["Our method"], FER2013_PRIVATETEST_COUNTS) == pytest.approx(72.2, abs=0.05)
    assert weighted_accuracy(TABLE3_FER2013["VGG19"], FER2013_PRIVATETEST_COUNTS) == pytest.approx(69.2, abs=0.05)
    assert weighted_accuracy(TABLE2_CKPLUS["Our method"], CKPLUS48_COUNTS) == pytest.approx(94.3, abs=0.05)
    overall = paper_overall("fer2013")
    assert overall["Our method"] == pytest.approx(72.2, abs=0.05)
    assert paper_overall("ckplus")["Lopes et al. [12]"] is None  # no contempt column


def test_paper_tables_use_canonical_classes():
    for row in TABLE2_CKPLUS.values():
        assert tuple(row) == CKPLUS_CLASSES
    for row in TABLE3_FER2013.values():
        assert tuple(row) == FER2013_CLASSES
    assert TABLE3_FER2013["Baseline 2"]["anger"] == 64
    assert TABLE2_CKPLUS["Our method"]["fear"] == 83


def test_weighted_accuracy_edge_cases():
    assert weighted_accuracy({"a": 50.0, "b": 100.0}, {"a": 1, "b": 3}) == pytest.approx(87.5)
    assert weighted_accuracy({"a": None, "b": 100.0}, {"a": 1, "b": 3}) is None
    assert weighted_accuracy({"a": None, "b": 100.0}, {"a": 0, "b": 3}) == pytest.approx(100.0)


def test_separation_score_orders_clusters():
    rng = np.random.default_rng(0)
    lab = np.repeat(np.arange(3), 30)
    centres = np.eye(3, 16) * 5
    tight = centres[lab] + rng.normal(0, 0.1, (90, 16))
    loose = centres[lab] + rng.normal(0, 3.0, (90, 16))
    assert separation_score(tight, lab) > 0.8 > separation_score(loose, lab)
    assert separation_score(tight, np.zeros(90, int)) is None


# --- fake artifacts -------------------------------------------------------------------------
def _metrics(rng, classes, n, acc, labels=None, **extra):
    # the same test images for every configuration (as in real runs): labels passed in
    labels = rng.integers(0, len(classes), n) if labels is None else labels
    preds = np.where(rng.random(n) < acc, labels, rng.integers(0, len(classes), n))
    m = classification_metrics(labels, preds, classes)
    m.update(extra)
    return m, labels, preds


def _history(rng, epochs=4):
    return [{"epoch": e + 1, "loss": 1.0 / (e + 1), "select_accuracy": float(min(1, 0.3 + 0.1 * e + rng.random() * 0.05))}
            for e in range(epochs)]


def make_fake_results(root: Path, seed: int = 0, scale: str = "demo",
                      datasets: tuple[str, str] = ("demo-fer2013", "demo-ckplus"), extra: dict | None = None) -> Path:
    """One scale's results of both roles, every configuration, with the layout of lkr.results:
    ``root/<scale>/<key>/<config>``; returns ``root/<scale>``. ``extra``: more fields of every
    metrics.json (e.g. scale, width, epochs, device)."""
    extra = extra or {}
    rng = np.random.default_rng(seed)
    root = root / scale
    fer_labels = np.random.default_rng(seed + 100).integers(0, len(FER2013_CLASSES), 60)
    ck_labels = np.random.default_rng(seed + 200).integers(0, len(CKPLUS_CLASSES), 60)
    for cfg in CONFIGS:
        d = root / "fer2013" / cfg
        d.mkdir(parents=True)
        m, labels, preds = _metrics(rng, FER2013_CLASSES, 60, 0.7, labels=fer_labels, variant=cfg, triplet_lambda=LAMBDA[cfg],
                                    dataset=datasets[0], best_epoch=3, **extra)
        write_json(d / "metrics.json", m)
        write_json(d / "history.json", _history(rng))
        write_json(d / "config.json", {"variant": cfg})
        save_npz(d / "predictions.npz", index=np.arange(60), label=labels.astype(np.int8), pred=preds.astype(np.int8),
                 class_names=np.array(FER2013_CLASSES))
        save_npz(d / "umap.npz", coords=rng.normal(size=(60, 2)).astype(np.float16), label=labels.astype(np.int8),
                 index=np.arange(60), silhouette=np.float64(LAMBDA[cfg] - 0.1), silhouette_2d=np.float64(0.0))
        save_npz(d / "gradcam.npz", index=np.arange(16), label=(np.arange(16) % 7).astype(np.int8),
                 pred=(np.arange(16) % 5).astype(np.int8), cam=rng.random((16, 44, 44)).astype(np.float16),
                 image=rng.integers(0, 255, (16, 48, 48), dtype=np.uint8))
        for fold in (0, 1):
            f = root / "ckplus" / cfg / f"fold{fold}"
            f.mkdir(parents=True)
            m, labels, preds = _metrics(rng, CKPLUS_CLASSES, 30, 0.8, labels=ck_labels[30 * fold:30 * fold + 30],
                                        variant=cfg, triplet_lambda=LAMBDA[cfg],
                                        dataset=datasets[1], folds=10, **extra)
            write_json(f / "metrics.json", m)
            write_json(f / "history.json", _history(rng))
            save_npz(f / "predictions.npz", index=np.arange(30 * fold, 30 * fold + 30), label=labels.astype(np.int8),
                     pred=preds.astype(np.int8), class_names=np.array(CKPLUS_CLASSES),
                     subject=np.array([f"S{i // 3:03d}" for i in range(30 * fold, 30 * fold + 30)]))
        pool_folds(root / "ckplus" / cfg)
    return root


def test_pool_folds_pools_predictions(tmp_path):
    results = make_fake_results(tmp_path)
    m = json.loads((results / "ckplus" / "lkrnet" / "metrics.json").read_text())
    assert m["n"] == 60 and m["folds"] == [0, 1]
    assert np.asarray(m["confusion"]).sum() == 60
    assert m["fold_accuracy_mean"] == pytest.approx(np.mean(m["fold_accuracy"]))


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """Fake results, and every figure redrawn from them once (through the CLI, in a fresh
    interpreter, which also shows what ``lkr figures`` imports)."""
    import subprocess

    root = tmp_path_factory.mktemp("drawn")
    results = make_fake_results(root / "results")  # results/demo
    code = ("import sys; from lkr.cli import main; "
            f"rc = main(['figures', '--results', {str(root / 'results')!r}, '--out', {str(root / 'figures')!r}]); "
            "print(rc, 'umap' in sys.modules, 'facenet_pytorch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return results, root / "figures", out.split()[-3:]


def test_redraw_all_writes_every_file(drawn):
    _, out, (rc, imported_umap, imported_mtcnn) = drawn
    assert rc == "0"
    assert imported_umap == "False" and imported_mtcnn == "False"  # no UMAP, no face detector to redraw
    expected = {f"{n}_demo.{e}" for n in F.REDRAWN for e in ("png", "pdf") if not (e == "pdf" and n in F.PNG_ONLY)}
    expected |= {f"{t}_demo.{e}" for t in ("table2_ckplus", "table3_fer2013", "differences_ckplus",
                                           "differences_fer2013") for e in ("md", "csv")}
    expected |= {"fig2_key_regions_astronaut.png", "fig2_key_regions_astronaut.pdf"}  # no scale: no run
    assert {p.name for p in out.iterdir()} == expected
    for p in out.iterdir():
        assert p.stat().st_size > 500, p
    # fixed size and DPI
    from PIL import Image

    w, h = Image.open(out / "fig6_embeddings_demo.png").size
    assert (w, h) == (round(F.FIGURES["fig6_embeddings"][0] * F.DPI), round(F.FIGURES["fig6_embeddings"][1] * F.DPI))


def test_redraw_all_returns_the_paths(tmp_path):
    results = make_fake_results(tmp_path / "results")
    res = load_results(results)
    del res["fer2013"]  # only one role: only its figures
    F.draw("fig9_accuracy_ckplus", res, tmp_path / "f")  # the scale as the records say: demo data
    assert {p.name for p in (tmp_path / "f").iterdir()} == {"fig9_accuracy_ckplus_demo.png",
                                                           "fig9_accuracy_ckplus_demo.pdf"}
    with pytest.raises(KeyError, match="fer2013"):
        F.draw("fig6_embeddings", res, tmp_path / "f")
    with pytest.raises(KeyError):
        F.draw("fig2_local_key_regions", res, tmp_path / "f")


def test_tables_hold_paper_rows_beside_ours(drawn):
    results, figures, _ = drawn
    md = (figures / "table3_fer2013_demo.md").read_text()
    for row in TABLE3_FER2013:
        assert f"| {row} | paper |" in md
    assert "| 65 | 75 | 55 | 90 | 61 | 84 | 70 |" in md  # "Our method" of Table 3
    with open(figures / "table2_ckplus_demo.csv") as f:
        rows = list(csv.DictReader(f))
    models = [(r["model"], r["source"]) for r in rows]
    # each paper configuration is followed by ours
    assert models[models.index(("VGG19", "paper")) + 1] == ("VGG19", "demo-ckplus")
    assert models[models.index(("Our method", "paper")) + 1] == ("LKRNet (λ=0.2)", "demo-ckplus")
    assert ("LKRNet (λ=0.4)", "demo-ckplus") in models
    ours = next(r for r in rows if r["model"] == "LKRNet (λ=0.2)")
    pooled = json.loads((results / "ckplus" / "lkrnet" / "metrics.json").read_text())
    assert float(ours["overall"]) == pytest.approx(100 * pooled["accuracy"], abs=0.05)
    assert float(ours["anger"]) == pytest.approx(100 * pooled["per_class"]["anger"], abs=0.05)
    lopes = next(r for r in rows if r["model"] == "Lopes et al. [12]")
    assert lopes["contempt"] == "" and lopes["overall"] == ""
    # the paper's overall is weighted by our test counts
    vgg = next(r for r in rows if r["model"] == "VGG19" and r["source"] == "paper")
    assert float(vgg["overall"]) == pytest.approx(weighted_accuracy(TABLE2_CKPLUS["VGG19"], pooled["class_counts"]),
                                                  abs=0.05)


def test_tables_say_the_paper_overall_is_weighted_by_our_counts(drawn):
    """The paper rows' overall is marked "*" with a footnote (md, drawing) and an overall_basis
    column (csv); our rows' overall is not marked."""
    results, figures, _ = drawn
    pooled = json.loads((results / "ckplus" / "lkrnet" / "metrics.json").read_text())
    for table, paper in (("table2_ckplus", TABLE2_CKPLUS), ("table3_fer2013", TABLE3_FER2013)):
        md = (figures / f"{table}_demo.md").read_text()
        lines = md.splitlines()
        note = [ln for ln in lines if ln.startswith("\\* ")]
        assert len(note) == 1 and "weighted by this dataset's test class counts" in note[0]
        assert "per-class accuracies" in note[0] and "not a number from the paper" in note[0]
        vgg = next(ln for ln in lines if ln.startswith("| VGG19 | paper |"))
        head = [c.strip() for c in next(ln for ln in lines if ln.startswith("| model |")).strip("|").split("|")]
        cells = dict(zip(head, (c.strip() for c in vgg.strip("|").split("|"))))
        assert cells["overall"].endswith("*") and float(cells["overall"][:-1]) > 0
        assert cells["n"] == "–"
        ours = next(ln for ln in lines if ln.startswith("| VGG19 | demo-"))
        assert "*" not in ours
        lopes = [ln for ln in lines if ln.startswith("| Lopes et al.")]
        assert all("*" not in ln for ln in lopes)  # no overall, nothing to mark
        with open(figures / f"{table}_demo.csv") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            if r["overall"] == "":
                assert r["overall_basis"] == ""
            elif r["source"] == "paper":
                assert r["overall_basis"] == F.PAPER_OVERALL_BASIS
                float(r["overall"])  # still a number
            else:
                assert r["overall_basis"] == "measured"
    # the CK+ note names the counts the paper rows were weighted by
    note = next(ln for ln in (figures / "table2_ckplus_demo.md").read_text().splitlines() if ln.startswith("\\* "))
    assert "demo-ckplus" in note and f"Anger {pooled['class_counts']['anger']}" in note


def test_table_note_in_the_drawing(tmp_path):
    res = load_results(make_fake_results(tmp_path / "results"))
    note = F.table_note(res["fer2013"])
    assert note.startswith("Paper rows:") and "demo-fer2013" in note
    rows = F.results_table("fer2013", res["fer2013"])
    fig = F.table_figure(rows, "table3_fer2013", title="T", note=note)
    assert fig._supxlabel is not None and fig._supxlabel.get_text().replace("\n", " ") == f"* {note}"
    texts = [c.get_text().get_text() for c in fig.axes[0].tables[0].get_celld().values()]
    starred = [t for t in texts if t.endswith("*")]
    assert len(starred) == sum(r["source"] == "paper" and r["overall"] is not None for r in rows) == 7
    plain = F.table_figure(rows, "table3_fer2013", title="T")  # no note: nothing marked
    assert plain._supxlabel is None
    assert not any(c.get_text().get_text().endswith("*") for c in plain.axes[0].tables[0].get_celld().values())
    F.save_table(rows, "table3_fer2013", tmp_path / "g")
    assert "*" not in (tmp_path / "g" / "table3_fer2013.md").read_text()
    assert "overall_basis" not in (tmp_path / "g" / "table3_fer2013.csv").read_text()
    assert F.table_note({}) == ""


def test_silhouette_helpers(tmp_path):
    res = load_results(make_fake_results(tmp_path / "results"))
    scores = F.silhouette_by_lambda(res["fer2013"])
    assert scores == pytest.approx({0.0: -0.1, 0.2: 0.1, 0.4: 0.3})
    assert F.best_separated(res["fer2013"]) == 0.4


def test_redraw_all_without_results(tmp_path, capsys):
    from lkr.cli import main

    (tmp_path / "nothing").mkdir()
    assert F.redraw_all(tmp_path / "nothing", tmp_path / "figures") == []
    assert "no run results yet" in capsys.readouterr().out
    assert not (tmp_path / "figures").exists()
    assert main(["figures", "--results", str(tmp_path / "nothing"), "--out", str(tmp_path / "f2")]) == 0
    assert "no run results yet" in capsys.readouterr().out
    # A mistyped path is not an empty results folder: one line, exit 2.
    assert main(["figures", "--results", str(tmp_path / "typo"), "--out", str(tmp_path / "f3")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"lkr: error: {tmp_path / 'typo'}: no such results folder"


def _fig_texts(fig) -> list[str]:
    out = [t.get_text() for t in fig.texts]
    if fig._suptitle is not None:
        out.append(fig._suptitle.get_text())
    for ax in fig.axes:
        out += [t.get_text() for t in ax.texts] + [ax.get_title()]
    return out


def test_fig2_prefers_detected_faces_and_marks_template_ones():
    """A class whose faces all have template landmarks shows one, marked "template landmarks";
    other classes show detected faces with every landmark inside the image, unmarked."""
    from dataclasses import replace

    from lkr.demo import make_demo

    ds = make_demo("fer2013", n=140)
    detected = ds.detected.copy()
    detected[ds.labels == 2] = False  # fear: no face detected
    points = ds.points.copy()
    happy = np.flatnonzero(ds.labels == 3)
    points[happy[:-1], 0] = (1.0, 46.5)  # all happy faces but one: a landmark in a corner
    ds = replace(ds, detected=detected, points=points)
    pick = F.fig2_faces(ds)
    assert [int(ds.labels[i]) for i in pick] == list(range(7))
    assert not ds.detected[pick[2]]
    assert all(ds.detected[i] for c, i in enumerate(pick) if c != 2)
    assert pick[3] == happy[-1]  # the only happy face with its landmarks inside
    assert F.fig2_template_faces(ds, pick) == {pick[2]}
    fig = F.fig2_local_key_regions(ds)
    top = fig.axes[:7]  # the first row (faces + landmarks): one axis per class
    marked = [c for c, ax in enumerate(top) if any(F.TEMPLATE_NOTE in t.get_text() for t in ax.texts)]
    assert marked == [2]
    assert any("red: template landmarks" in t for t in _fig_texts(fig))
    # without template faces nothing is marked
    clean = F.fig2_local_key_regions(make_demo("fer2013", n=70))
    assert not any(F.TEMPLATE_NOTE in t for t in _fig_texts(clean))


def test_fig8_names_the_grad_cam_layer(tmp_path):
    results = make_fake_results(tmp_path / "results")
    for cfg, layer in (("vgg19", "stage3"), ("lkrnet", "stage3")):
        d = results / "fer2013" / cfg
        z = dict(np.load(d / "gradcam.npz"))
        save_npz(d / "gradcam.npz", **z, layer=np.array(layer), layer_size=np.array([11, 11]))
    fig = F.fig8_gradcam(load_results(results)["fer2013"])
    title = fig._suptitle.get_text()
    assert "target layer stage3 (last conv before max-pool 3, 11×11 maps)" in title
    d = results / "fer2013" / "vgg19"
    z = dict(np.load(d / "gradcam.npz"))
    save_npz(d / "gradcam.npz", **{**z, "layer": np.array("stage5"), "layer_size": np.array([2, 2])})
    title = F.fig8_gradcam(load_results(results)["fer2013"])._suptitle.get_text()
    assert "VGG19 stage5 (last conv before max-pool 5, 2×2 maps)" in title and "LKRNet (λ=0.2) stage3" in title
    assert F.gradcam_layer_label({"cam": np.zeros(1)}) == "not recorded"


def test_fig2_shows_demo_or_fer_faces_never_ckplus(tmp_path):
    from dataclasses import replace

    from lkr.demo import make_demo
    from lkr.errors import DataError

    ds = make_demo("fer2013", n=70)
    paths = F.save_figure(F.fig2_local_key_regions(ds), "fig2_local_key_regions", tmp_path)
    assert all(p.stat().st_size > 1000 for p in paths)
    ck = replace(make_demo("ckplus", n=60), name="ckplus", kind="ckplus48")
    with pytest.raises(DataError, match="CK"):
        F.fig2_local_key_regions(ck)


def test_save_figure_rejects_unknown_names(tmp_path):
    from matplotlib.figure import Figure

    with pytest.raises(KeyError):
        F.save_figure(Figure(), "fig99_nothing", tmp_path)


# --- scales -----------------------------------------------------------------------------------
CPU_RUNS = dict(scale="cpu", width=0.25, epochs=24, device="cpu (AMD EPYC, 2 threads)")
CPU_LABEL = "CPU scale: VGG19 at 1/4 width, 24 epochs, AMD EPYC, 2 threads"


def test_redraw_all_draws_each_scale_into_files_and_titles_named_with_it(tmp_path):
    root = tmp_path / "results"
    make_fake_results(root)  # results/demo
    cpu = make_fake_results(root, seed=1, scale="cpu", datasets=("fer2013", "ckplus"), extra=CPU_RUNS)
    figures = tmp_path / "figures"
    written = F.redraw_all(root, figures, verbose=False)
    names = {p.name for p in figures.iterdir()}
    assert {p.name for p in written} == names
    per_scale = {f"{t}.{e}" for t in ("table2_ckplus", "table3_fer2013", "differences_ckplus", "differences_fer2013")
                 for e in ("md", "csv", "png", "pdf")}
    per_scale |= {f"{n}.{e}" for n in ("fig6_embeddings", "fig7_confusion_ckplus", "fig7_confusion_fer2013",
                                       "fig8_gradcam", "fig9_accuracy_ckplus", "fig9_accuracy_fer2013")
                   for e in ("png", "pdf")}
    per_scale.discard("fig8_gradcam.pdf")  # raster: PNG only
    assert names == ({n.replace(".", f"_{s}.") for n in per_scale for s in ("cpu", "demo")}
                     | {"fig2_key_regions_astronaut.png", "fig2_key_regions_astronaut.pdf"}
                     | {"fig_capacity_fer2013.png", "fig_capacity_fer2013.pdf"})  # cpu: from scratch, both configs
    res = load_results(cpu)
    assert F.results_scale_label(res["fer2013"]) == F.results_scale_label(res["ckplus"], "cpu") == CPU_LABEL
    # the tables' markdown heading, then every figure's title
    for table, title in (("table3_fer2013", "Table 3  FER2013"), ("table2_ckplus", "Table 2  CK+")):
        head = (figures / f"{table}_cpu.md").read_text().splitlines()
        assert head[0].startswith(f"**{title}") and head[2] == f"**{CPU_LABEL}**" and head[4].startswith("| model")
        assert (figures / f"{table}_demo.md").read_text().splitlines()[2] == "**demo set (synthetic)**"
    for key in ("fer2013", "ckplus"):
        head = (figures / f"differences_{key}_cpu.md").read_text().splitlines()
        assert head[0].startswith("**Paired differences") and head[2] == f"**{CPU_LABEL}**"
    for name in ("fig6_embeddings", "fig7_confusion_fer2013", "fig7_confusion_ckplus", "fig8_gradcam",
                 "fig9_accuracy_ckplus"):
        texts = [t.replace("\n", " ") for t in _fig_texts(F.draw(name, res, tmp_path / "again", "cpu"))]
        assert any(CPU_LABEL in t for t in texts), name
    assert (tmp_path / "again" / "fig8_gradcam_cpu.png").exists()


def test_lkr_figures_says_each_scale(tmp_path, capsys):
    from lkr.cli import main

    make_fake_results(tmp_path / "results", scale="cpu", datasets=("fer2013", "ckplus"), extra=CPU_RUNS)
    assert main(["figures", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "f")]) == 0
    out = capsys.readouterr().out
    assert f"cpu: 27 files written to {tmp_path / 'f'} ({CPU_LABEL})" in out  # Fig. 8: PNG only
    assert (tmp_path / "f" / "table3_fer2013_cpu.md").exists()


def test_results_of_the_layout_before_scales_count_as_full(tmp_path):
    from lkr.errors import RunError
    from lkr.results import load_scales

    old = make_fake_results(tmp_path / "old", scale="", datasets=("fer2013", "ckplus"))  # old/fer2013/...
    assert list(load_scales(old)) == ["full"]
    written = {p.name for p in F.redraw_all(old, tmp_path / "f", verbose=False)}
    assert "table3_fer2013_full.md" in written and "fig6_embeddings_full.png" in written
    md = (tmp_path / "f" / "table3_fer2013_full.md").read_text()
    assert "**full scale (the paper's): VGG19**" in md
    make_fake_results(old, scale="full", datasets=("fer2013", "ckplus"))
    with pytest.raises(RunError, match="move the old folders"):
        load_scales(old)


def test_make_figures_draws_the_committed_results(tmp_path):
    """`make figures` on the repository's own results/: every committed scale draws its tables
    and figures, with the scale in file names and titles (no data, no training)."""
    from lkr.results import load_scales

    results = Path(__file__).resolve().parents[1] / "results"
    scales = load_scales(results)
    if not scales:
        pytest.skip("no real-run results committed yet")
    written = F.redraw_all(results, tmp_path, verbose=False)
    assert written and all(p.exists() for p in written)
    for scale, res in scales.items():
        if "fer2013" in res:
            md = (tmp_path / f"table3_fer2013_{scale}.md").read_text()
            assert F.results_scale_label(res["fer2013"], scale) in md  # e.g. "CPU scale: VGG19 at 1/8 width, ..."
            for cfg in res["fer2013"]:
                assert F.LABELS[cfg] in md
            assert (tmp_path / f"fig7_confusion_fer2013_{scale}.png").exists()
        if "ckplus" in res:
            assert (tmp_path / f"table2_ckplus_{scale}.md").exists()
    # what a reader sees in figures/ is what results/ gives now: every table, of every scale
    committed = Path(__file__).resolve().parents[1] / "figures"
    tables = [p for p in written if p.suffix in (".md", ".csv")]
    assert {p.name.rsplit("_", 1)[-1].rsplit(".", 1)[0] for p in tables} >= set(scales)
    for p in tables:
        assert (committed / p.name).exists(), f"figures/{p.name} is missing: run `make figures`"
        assert p.read_text() == (committed / p.name).read_text(), f"figures/{p.name} differs from results/: run `make figures`"


def _add_seed(results: Path, key: str, cfg: str, seed: int, hits: float, rng) -> None:
    """Another seed of a fake configuration: its folder's files again, other predictions."""
    import shutil

    src = results / key / cfg
    dst = src / f"seed{seed}"
    for sub in ([p.name for p in src.glob("fold*")] or [""]):
        d = dst / sub
        d.mkdir(parents=True)
        for name in ("config.json", "history.json"):
            if (src / sub / name).exists():
                shutil.copyfile(src / sub / name, d / name)
        write_json(d / "config.json", {"variant": cfg, "seed": seed})
        z = dict(np.load(src / sub / "predictions.npz"))
        z["pred"] = np.where(rng.random(len(z["label"])) < hits, z["label"], (z["label"] + 1) % 7).astype(np.int8)
        save_npz(d / "predictions.npz", **z)
        classes = tuple(str(c) for c in z["class_names"])
        write_json(d / "metrics.json", {**classification_metrics(z["label"], z["pred"], classes),
                                        "dataset": "demo-fer2013", "variant": cfg})
    if key == "ckplus":
        pool_folds(dst)


def test_tables_and_fig9_show_the_spread_over_seeds(tmp_path):
    """With seeds beside seed 0: Table 3's cells are mean ± sd over them (CSV: "<col> sd"), a
    seeds column counts them, Fig. 9 draws a band, and the differences pair seeds."""
    import csv

    results = make_fake_results(tmp_path / "results")
    rng = np.random.default_rng(5)
    for cfg in ("vgg19", "lkrnet"):
        _add_seed(results, "fer2013", cfg, 1, 0.6, rng)
        _add_seed(results, "ckplus", cfg, 1, 0.7, rng)
    res = load_results(results)
    assert list(res["fer2013"]["lkrnet"].by_seed()) == [0, 1]
    rows = F.results_table("fer2013", res["fer2013"])
    ours = next(r for r in rows if r["model"].startswith("LKRNet (λ=0.2)"))
    accs = [100 * x.metrics["accuracy"] for x in res["fer2013"]["lkrnet"].by_seed().values()]
    assert isinstance(ours["overall"], F.MeanSD) and ours["seeds"] == 2
    assert float(ours["overall"]) == pytest.approx(np.mean(accs), abs=0.05)
    assert ours["overall"].sd == pytest.approx(np.std(accs, ddof=1), abs=0.05)
    b1 = next(r for r in rows if r["model"] == "Baseline 1" and r["source"] != "paper")
    assert not isinstance(b1["overall"], F.MeanSD) and b1["seeds"] == 1
    F.draw("table3_fer2013", res, tmp_path / "f")
    md = (tmp_path / "f" / "table3_fer2013_demo.md").read_text()
    assert f"{float(ours['overall']):.1f} ± {ours['overall'].sd:.1f}" in md
    with open(tmp_path / "f" / "table3_fer2013_demo.csv") as f:
        table = list(csv.DictReader(f))
    row = next(r for r in table if r["model"].startswith("LKRNet (λ=0.2)"))
    assert float(row["overall sd"]) == pytest.approx(ours["overall"].sd)
    ck = F.results_table("ckplus", res["ckplus"])
    ours_ck = next(r for r in ck if r["model"].startswith("LKRNet (λ=0.2)"))
    assert isinstance(ours_ck[F.FOLD_COLUMN], F.MeanSD)
    fig7 = F.fig7_confusion(res["fer2013"], key="fer2013")  # one run's matrices: they say which seed
    assert [ax.get_title().endswith("seed 0 of 2)") for ax in fig7.axes] == [True, True]
    fig = F.fig9_accuracy(res["fer2013"], key="fer2013")
    assert "range over seeds" in fig.axes[0].get_title()
    assert len(fig.axes[0].collections) == 2  # a band each for VGG19 and LKRNet, the two with 2 seeds
    comps = F.comparisons(res["fer2013"])
    lv = next(c for c in comps if (c.a, c.b) == ("lkrnet", "vgg19"))
    assert lv.seeds == [0, 1]
    assert next(c for c in comps if (c.a, c.b) == ("baseline1", "vgg19")).seeds == [0]


def test_differences_drawn_with_intervals(tmp_path):
    results = make_fake_results(tmp_path / "results")
    res = load_results(results)
    df = F.draw("differences_fer2013", res, tmp_path / "f")
    assert list(zip(df["A"], df["B"]))[:3] == [("LKRNet (λ=0.2)", "VGG19"), ("Baseline 1", "VGG19"),
                                               ("Baseline 2", "VGG19")]
    assert (df["95% CI low"] <= df["A − B"]).all() and (df["A − B"] <= df["95% CI high"]).all()
    md = (tmp_path / "f" / "differences_fer2013_demo.md").read_text()
    assert "McNemar" in md and "Holm" in md
    ck = F.draw("differences_ckplus", res, tmp_path / "f")
    assert set(ck["resampled"]) == {"subjects"} and set(ck["test"]) == {"clustered sign-flip"}
    assert set(df["test"]) == {"McNemar exact"}
    extra = df[df["B"] == "LKRNet (λ=0.2)"]  # our ablations against LKRNet: outside Holm's family
    assert "LKRNet (λ=0.4)" in set(extra["A"])
    assert all(v.endswith("(uncorrected)") for v in extra["verdict"]) and set(extra["Holm p, test images"]) == {"–"}
    assert set(extra["Holm p, seeds"]) == {"–"}
    assert "p, seeds (paired t)" in md and "seed-to-seed noise" in md  # each column says which noise
    assert not any(v.endswith("(uncorrected)") for v in df[df["B"] != "LKRNet (λ=0.2)"]["verdict"])
    # fold predictions without subject ids: compared, with a warning that frames count as independent
    for cfg in (results / "ckplus").iterdir():
        for fold in (0, 1):
            f = cfg / f"fold{fold}" / "predictions.npz"
            z = dict(np.load(f))
            del z["subject"]
            save_npz(f, **z)
    with pytest.warns(UserWarning, match="without subject ids"):
        F.comparisons(load_results(results)["ckplus"])


def test_scale_label_names_one_thread_in_the_singular():
    from lkr.config import scale_label
    from lkr.device import device_name

    rec = dict(scale="cpu", width=0.125, epochs=50)
    assert scale_label({**rec, "device": "cpu (AMD EPYC, 1 threads)"}).endswith("AMD EPYC, 1 thread")
    assert scale_label({**rec, "device": "cpu (AMD EPYC, 2 threads)"}).endswith("AMD EPYC, 2 threads")
    import torch

    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert device_name(torch.device("cpu")).endswith(", 1 thread)")
    finally:
        torch.set_num_threads(n)


def test_readme_tables_script_prints_seeds_and_differences(tmp_path):
    """scripts/readme_tables.py (the README's result tables) on a results folder with seeds."""
    import importlib.util

    results = make_fake_results(tmp_path / "results")
    rng = np.random.default_rng(3)
    for cfg in ("vgg19", "lkrnet"):
        _add_seed(results, "fer2013", cfg, 1, 0.6, rng)
    spec = importlib.util.spec_from_file_location("readme_tables", Path(__file__).parents[1] / "scripts/readme_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = load_results(results)
    seeds = mod.seeds_table(res["fer2013"])
    assert seeds[0].startswith("| configuration | seed 0 | seed 1 | mean ± sd |")
    vgg = next(r for r in seeds if r.startswith("| VGG19 |"))
    accs = [res["fer2013"]["vgg19"].by_seed()[s].metrics["accuracy"] for s in (0, 1)]
    assert f"{100 * np.mean(accs):.1f} ± {100 * np.std(accs, ddof=1):.1f}".replace("-", "−") in vgg
    diffs = mod.differences_table(res["fer2013"])
    lv = next(r for r in diffs if r.startswith("| LKRNet (λ=0.2) − VGG19 | 0,1 |"))
    assert lv.count("/") >= 2 and "to" in lv


def test_readme_tables_compares_each_configuration_across_two_scales(tmp_path):
    """scripts/readme_tables.py --versus: a configuration at one scale against itself at another,
    paired on the same test images (a better copy of the same predictions must come out ahead)."""
    import importlib.util

    a = make_fake_results(tmp_path / "results", scale="cpu-ft")
    b = make_fake_results(tmp_path / "results", scale="cpu")
    pred = a / "fer2013" / "vgg19" / "predictions.npz"
    z = dict(np.load(pred))
    z["pred"] = z["label"].astype(z["pred"].dtype)  # every image right at cpu-ft
    save_npz(pred, **z)
    spec = importlib.util.spec_from_file_location("readme_tables", Path(__file__).parents[1] / "scripts/readme_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.between_scales(load_results(a)["fer2013"], load_results(b)["fer2013"], "cpu-ft", "cpu")
    assert rows[0].startswith("| configuration: cpu-ft − cpu |")
    vgg = next(r for r in rows if r.startswith("| VGG19 |"))
    wrong = int((np.load(b / "fer2013" / "vgg19" / "predictions.npz")["pred"]
                 != np.load(b / "fer2013" / "vgg19" / "predictions.npz")["label"]).sum())
    assert wrong > 0 and "+" in vgg.split("|")[3] and "cpu-ft better (one seed)" in vgg
    same = next(r for r in rows if r.startswith("| Baseline 1 |"))
    assert "+0.0" in same or " 0.0 " in same  # identical predictions: no difference
    back = mod.between_scales(load_results(b)["fer2013"], load_results(a)["fer2013"], "cpu", "cpu-ft")
    assert "cpu-ft better (one seed)" in next(r for r in back if r.startswith("| VGG19 |"))  # the other way round


def test_tables_give_the_accuracy_on_the_subjects_no_choice_touched(tmp_path):
    """A scale chosen on some test subjects (selection_subjects.json): its tables add the
    accuracy on the other subjects' images, and its tables and figures carry a footnote."""
    from lkr.results import SELECTION_SUBJECTS, load_results, untouched_accuracy

    results = make_fake_results(tmp_path / "results", scale="cpu-ft")
    touched = [f"S{i:03d}" for i in range(5)]  # images 0-14
    write_json(results / "ckplus" / SELECTION_SUBJECTS, {"subjects": touched, "why": "a probe (test)"})
    res = load_results(results)
    r = res["ckplus"]["lkrnet"]
    p = r.predictions
    keep = ~np.isin(p["subject"], touched)
    assert keep.sum() == 45
    assert untouched_accuracy(r) == pytest.approx(float((p["label"][keep] == p["pred"][keep]).mean()))
    rows = F.results_table("ckplus", res["ckplus"])
    ours = next(x for x in rows if x["model"] == F.LABELS["lkrnet"])
    assert ours[F.UNTOUCHED_COLUMN] == pytest.approx(round(100 * untouched_accuracy(r), 1))
    assert F.UNTOUCHED_COLUMN not in F.results_table("fer2013", res["fer2013"])[0]
    F.draw("table2_ckplus", res, tmp_path / "fig", "cpu-ft")
    F.draw("differences_ckplus", res, tmp_path / "fig", "cpu-ft")
    for md in ("table2_ckplus_cpu-ft.md", "differences_ckplus_cpu-ft.md"):
        text = (tmp_path / "fig" / md).read_text()
        assert "45 test images" in text and "15 images (5 subjects)" in text and "a probe (test)" in text, md
    plain = load_results(make_fake_results(tmp_path / "plain", scale="cpu"))
    assert F.choice_note(plain["ckplus"]) == "" and untouched_accuracy(plain["ckplus"]["lkrnet"]) is None


def test_the_committed_selection_subjects_are_the_probes(ckplus48_zip):
    """results/cpu-ft/ckplus/selection_subjects.json holds the validation subjects of folds 0-2 at
    seed 0 (the probe that chose cpu-ft): 29 subjects, 234 images."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import selection_subjects

    from lkr.readers import load_dataset

    ds = load_dataset(ckplus48_zip)
    rec = selection_subjects.record("cpu-ft", ds.subjects, ds.labels)
    path = Path(__file__).resolve().parents[1] / "results" / "cpu-ft" / "ckplus" / "selection_subjects.json"
    assert json.loads(path.read_text()) == rec
    assert len(rec["subjects"]) == 29 and np.isin(ds.subjects.astype(str), rec["subjects"]).sum() == 234


def test_fig2_is_drawn_on_the_astronaut_and_its_record_is_mtcnn_s(tmp_path):
    """make figures draws Fig. 2 on the public-domain astronaut from the committed MTCNN record
    (no detector, no dataset); MTCNN on the photo still gives that record."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import astronaut_face

    rec = json.loads((Path(F.__file__).parent / "data" / "astronaut_face.json").read_text())
    fresh = astronaut_face.astronaut_record()
    assert fresh["region"] == rec["region"] and fresh["landmarks_detected"]
    for k in ("box", "points", "box48", "points48"):
        np.testing.assert_allclose(fresh[k], rec[k], atol=0.05)
    image, box48, pts48 = F.astronaut_face()
    assert image.shape == (48, 48) and image.dtype == np.uint8 and pts48.shape == (5, 2)
    fig = F.fig2_key_regions_on_face(image, box48, pts48)
    texts = " ".join(_fig_texts(fig))
    assert "astronaut" in texts and '"grid" pooling' in texts and '"cover" pooling' in texts
    results = make_fake_results(tmp_path / "results", scale="cpu")
    written = F.redraw_all(results.parent, tmp_path / "fig", verbose=False)
    assert tmp_path / "fig" / "fig2_key_regions_astronaut.png" in written


def test_the_capacity_figure_is_drawn_from_every_width(tmp_path):
    """make figures draws LKRNet - VGG19 against width from every scale trained from scratch that
    has both (not from a fine-tuned scale); docs' capacity table lists the same."""
    from lkr.report import capacity_table
    from lkr.results import capacity_points

    root = tmp_path / "results"
    for scale, width in (("cpu", 0.125), ("cpu-quarter", 0.25)):
        make_fake_results(root, seed=int(width * 8), scale=scale, datasets=("fer2013", "ckplus"),
                          extra={"width": width, "scale": scale})
    make_fake_results(root, scale="cpu-ft", datasets=("fer2013", "ckplus"), extra={"width": 0.125})
    pts = capacity_points(root)
    assert [s for s, _ in pts] == ["cpu", "cpu-quarter"]
    written = F.redraw_all(root, tmp_path / "fig", verbose=False)
    assert tmp_path / "fig" / "fig_capacity_fer2013.png" in written
    rows = capacity_table(root)
    assert rows[2].startswith("| cpu | 1/8 |") and rows[3].startswith("| cpu-quarter | 1/4 |")
    texts = " ".join(_fig_texts(F.fig_capacity(pts)))
    assert "cpu-quarter, seeds 0" in texts and "grow with the network" in texts
    assert len(rows) == 4 and "Holm over 2" in rows[0] and "mask at stage 1" not in texts


def test_the_capacity_table_and_summary_gain_the_stage_1_arm_in_one_holm_family(tmp_path):
    """Where LKRNet with the mask at stage 1 is trained (docs/real-faces-design.md), the capacity
    table gets its row beside the paper's LKRNet at that width, every contrast of the table in one
    Holm family; the figure draws it; the README's summary gains its row (no paper number)."""
    import shutil

    from lkr.report import capacity_table, summary_table
    from lkr.results import capacity_points
    from lkr.stats import compare, holm

    root = tmp_path / "results"
    for scale, width in (("cpu", 0.125), ("cpu-quarter", 0.25)):
        make_fake_results(root, seed=int(width * 8), scale=scale, datasets=("fer2013", "ckplus"),
                          extra={"width": width, "scale": scale})
    assert not any(r.startswith("| LKRNet, mask at stage 1") for r in summary_table(root))
    fer = root / "cpu" / "fer2013"
    shutil.copytree(fer / "baseline2", fer / "lkrnet-s1")  # other predictions than LKRNet's; seed 0 only
    assert "Holm over 2" in capacity_table(root)[0]  # one seed of three: not shown yet
    assert not any(r.startswith("| LKRNet, mask at stage 1") for r in summary_table(root))
    for seed in (1, 2):
        d = fer / "lkrnet-s1" / f"seed{seed}"
        shutil.copytree(fer / "baseline2", d, ignore=shutil.ignore_patterns("seed*"))
        write_json(d / "config.json", {"variant": "lkrnet-s1", "seed": seed})
    rows = capacity_table(root)
    assert "Holm over 3" in rows[0] and len(rows) == 5
    assert rows[2].startswith("| cpu | 1/8 | stage 5 (the paper's) |") and rows[3].startswith("| cpu | 1/8 | stage 1 |")
    res = {s: r for s, r in capacity_points(root)}
    want = [compare(a, "vgg19", res[s][a].seed_predictions(), res[s]["vgg19"].seed_predictions())
            for s, a in (("cpu", "lkrnet"), ("cpu", "lkrnet-s1"), ("cpu-quarter", "lkrnet"))]
    holm(want)
    assert f"({F._p(want[1].p_holm)})" in rows[3] and f"({F._p(want[2].p_holm)})" in rows[4]
    fig = F.fig_capacity(capacity_points(root))
    legend = " ".join(t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts())
    assert "LKRNet, mask at stage 1: bootstrap 95% (test images)" in legend
    summ = summary_table(root)
    s1 = [r for r in summ if r.startswith("| LKRNet, mask at stage 1 |")]
    assert len(s1) == 1 and s1[0].split("|")[2].strip() == "–"  # no paper number


def test_fig8_puts_each_wrong_class_inside_its_own_cell(tmp_path):
    """The red "→ class" of a wrong prediction is drawn inside the heat map's own axes (not as a
    title, which sat between rows and read as the next row's)."""
    res = load_results(make_fake_results(tmp_path / "results"))
    fig = F.fig8_gradcam(res["fer2013"])
    inside = [t for ax in fig.axes for t in ax.texts if t.get_text().startswith("→")]
    assert inside and all(t.get_transform() == t.axes.transAxes for t in inside)
    assert all(0 <= t.get_position()[1] <= 0.5 for t in inside)  # low in its own cell
    assert not any(ax.get_title().startswith("→") for ax in fig.axes)


def test_exported_histories_are_by_column_and_read_back_as_epochs(tmp_path):
    """results/ stores each history by column (the field names once); the loader gives one dict
    per epoch again, with fields an epoch lacked left out, and still reads the older form."""
    from lkr.results import history_columns, history_rows

    rows = [{"epoch": 1, "lr": 0.05, "seconds": 1.5}, {"epoch": 2, "lr": 0.04, "seconds": 1.4, "select_accuracy": 0.6}]
    cols = history_columns(rows)
    assert cols == {"epoch": [1, 2], "lr": [0.05, 0.04], "seconds": [1.5, 1.4], "select_accuracy": [None, 0.6]}
    assert history_rows(cols) == rows and history_rows(rows) == rows
    committed = sorted((REPO / "results" / "cpu" / "fer2013" / "vgg19").glob("history.json"))
    assert committed and isinstance(json.loads(committed[0].read_text()), dict)
    from lkr.results import load_config_result

    r = load_config_result(REPO / "results" / "cpu" / "fer2013" / "vgg19")
    assert len(r.histories[0]) == 50 and r.histories[0][0]["epoch"] == 1 and "select_accuracy" in r.histories[0][-1]


def test_export_keeps_metrics_on_one_line_and_predictions_without_probabilities(tmp_path):
    """results/ keeps what its readers use (issue 32: the real-face runs must fit beside the
    rest): an exported metrics.json and config.json hold the same values on one line, a history
    its timings to 3 significant digits, the exported predictions every array but the
    probabilities, and slim() rewrites an older export alike, once."""
    from lkr.results import export_run, slim
    from lkr.runfolder import save_npz, write_json

    run = tmp_path / "run"
    run.mkdir()
    m = {"accuracy": 0.123456789012345, "confusion": [[1, 0], [2, 3]], "design_commit": "abc"}
    write_json(run / "metrics.json", m)
    probs = np.array([[0.25, 0.75], [0.5, 0.5]], np.float16)
    save_npz(run / "predictions.npz", index=np.array([4, 7]), label=np.array([1, 0], np.int8),
             pred=np.array([1, 1], np.int8), probs=probs)
    write_json(run / "config.json", {"variant": "lkrnet"})
    write_json(run / "history.json", [{"epoch": 1, "loss": 1.23456789, "seconds": 12.3456789, "images_per_s": 987.654321},
                                      {"epoch": 2, "loss": 1.1, "seconds": 11.98765, "select_seconds": 0.0123456}])
    dest = export_run(run, tmp_path / "results" / "x", embeddings=False)
    text = (dest / "metrics.json").read_text()
    assert "\n" not in text and json.loads(text) == m
    cfg = (dest / "config.json").read_text()
    assert "\n" not in cfg and json.loads(cfg) == {"variant": "lkrnet"}
    h = json.loads((dest / "history.json").read_text())  # the timings to 3 digits, the rest to 6
    assert h == {"epoch": [1, 2], "loss": [1.23457, 1.1], "seconds": [12.3, 12.0], "images_per_s": [988.0, None],
                 "select_seconds": [None, 0.0123]}
    with np.load(dest / "predictions.npz") as z:
        assert sorted(z.files) == ["index", "label", "pred"] and z["index"].tolist() == [4, 7]
    # an export of before: indented metrics, probabilities kept
    old = tmp_path / "old" / "fold0"
    old.mkdir(parents=True)
    (old / "metrics.json").write_text(json.dumps(m, indent=2))
    (old / "config.json").write_text(json.dumps({"variant": "lkrnet"}, indent=2))
    (old / "history.json").write_text(json.dumps({"epoch": [1], "seconds": [12.3456789]}))
    save_npz(old / "predictions.npz", index=np.array([4, 7]), label=np.array([1, 0], np.int8),
             pred=np.array([1, 1], np.int8), probs=probs)
    assert {p.name for p in slim(tmp_path / "old")} == {"metrics.json", "predictions.npz", "config.json", "history.json"}
    assert json.loads((old / "metrics.json").read_text()) == m
    assert json.loads((old / "history.json").read_text()) == {"epoch": [1], "seconds": [12.3]}
    with np.load(old / "predictions.npz") as z:
        assert "probs" not in z.files and z["pred"].tolist() == [1, 1]
    assert slim(tmp_path / "old") == []  # already slim


def test_the_gradcam_faces_are_stored_once_a_scale(tmp_path):
    """Each configuration's gradcam.npz keeps its CAMs; the faces' pixels live once in the scale's
    gradcam_faces.npz (slim() moves them from older files), and loading joins them back by
    dataset index; a face with other pixels there is refused in one line."""
    from lkr.errors import RunError
    from lkr.results import FACES_FILE, load_config_result, slim

    rng = np.random.default_rng(0)
    key = tmp_path / "results" / "cpu" / "fer2013"
    images = rng.integers(0, 256, (4, 48, 48), dtype=np.uint8)
    for name, order in (("vgg19", [0, 1, 2, 3]), ("lkrnet", [2, 0, 3, 1])):
        d = key / name
        d.mkdir(parents=True)
        write_json(d / "metrics.json", {"accuracy": 0.5, "dataset": "fer2013"}, compact=True)
        save_npz(d / "gradcam.npz", index=np.array([10, 11, 12, 13])[order], label=np.zeros(4, np.int8),
                 pred=np.zeros(4, np.int8), cam=rng.random((4, 44, 44)).astype(np.float16), image=images[order],
                 layer=np.array("stage3"), layer_size=np.array([11, 11]))
    before = {n: load_config_result(key / n).gradcam for n in ("vgg19", "lkrnet")}
    assert len(slim(tmp_path / "results")) == 2 and slim(tmp_path / "results") == []
    with np.load(key / FACES_FILE) as z:
        order = np.argsort(z["index"])
        assert z["index"][order].tolist() == [10, 11, 12, 13] and np.array_equal(z["image"][order], images)
    for n in ("vgg19", "lkrnet"):
        with np.load(key / n / "gradcam.npz") as z:
            assert "image" not in z.files
        after = load_config_result(key / n).gradcam
        assert after.keys() == before[n].keys() and all(np.array_equal(after[k], before[n][k]) for k in after)
    with np.load(key / FACES_FILE) as z:
        other = {"index": z["index"], "image": 255 - z["image"]}
    save_npz(key / FACES_FILE, **other)
    with pytest.raises(RunError, match="other pixels"):
        from lkr.results import _file_faces

        _file_faces(key / FACES_FILE, np.array([10]), images[:1])


def test_the_committed_results_are_slim():
    """Every tracked metrics.json of results/ is on one line and no tracked predictions keep the
    probabilities (lkr.results.slim; the bound on the tracked files of tests/test_imports.py needs the room)."""
    import subprocess

    r = subprocess.run(["git", "ls-files", "results"], cwd=REPO, capture_output=True, text=True)
    if r.returncode or not r.stdout.strip():
        pytest.skip("not a git checkout")
    files = [REPO / f for f in r.stdout.split()]
    fat = [f for f in files if f.name == "metrics.json" and "\n" in f.read_text().strip()]
    for f in (f for f in files if f.name in ("predictions.npz", "gradcam.npz")):
        with np.load(f) as z:
            if "probs" in z.files or "image" in z.files:
                fat.append(f)
    assert not fat, f"{len(fat)} files not slim, e.g. {fat[0].relative_to(REPO)}: run lkr.results.slim('results')"
