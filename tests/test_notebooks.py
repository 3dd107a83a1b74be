"""The ordered notebooks: committed without outputs, thin, and executable headless.

The notebooks are executed once per session (module fixture) with papermill at tiny parameters
(demo set, 1 epoch, one CK+ fold) into a temporary folder; each test then checks what one
notebook had to produce.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from lkr.pipeline import NOTEBOOKS, notebooks_dir

REPO = Path(__file__).resolve().parents[1]
NB_DIR = REPO / "notebooks"

# What each notebook must write into the figures folder: figures of runs are named with their
# scale ("demo" on the demo set); Fig. 2 shows faces, no run.
EXPECTED: dict[str, list[str]] = {
    "01_data.ipynb": ["fig2_local_key_regions.png", "fig2_local_key_regions.pdf"],
    "02_train.ipynb": [],
    "03_results.ipynb": [f"{n}_demo.{e}" for n in ("table2_ckplus", "table3_fer2013")
                         for e in ("png", "pdf", "md", "csv")]
    + [f"{n}_demo.{e}" for n in ("fig7_confusion_ckplus", "fig7_confusion_fer2013", "fig9_accuracy_ckplus",
                                  "fig9_accuracy_fer2013") for e in ("png", "pdf")],
    "04_embeddings.ipynb": ["fig6_embeddings_demo.png", "fig6_embeddings_demo.pdf"],
    "05_gradcam.ipynb": ["fig8_gradcam_demo.png"],  # raster: PNG only (lkr.figures.PNG_ONLY)
    "06_your_photos.ipynb": [],  # its annotated photo goes to <out>/photos (test_photo_notebook_shows_a_face)
}


def _code_cells(path: Path) -> list:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def _python(source: str) -> ast.Module:
    """A cell's source as Python (IPython magics such as %matplotlib turned into calls)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return ast.parse(TransformerManager().transform_cell(source))


# --- the committed notebooks ----------------------------------------------------------------
def test_notebooks_are_the_ordered_set():
    assert tuple(sorted(p.name for p in NB_DIR.glob("*.ipynb"))) == NOTEBOOKS
    assert notebooks_dir() == NB_DIR


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name):
    nb = nbformat.read(NB_DIR / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: outputs are committed"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_thin_and_parametrised(name):
    cells = _code_cells(NB_DIR / name)
    assert "parameters" in cells[0].metadata.get("tags", []), f"{name}: first code cell not tagged 'parameters'"
    params = {t.id for node in _python(cells[0].source).body if isinstance(node, ast.Assign) for t in node.targets}
    assert {"data_fer", "data_ck", "out", "device", "scale", "epochs", "quick", "results", "figures"} <= params
    for cell in cells:
        for node in ast.walk(_python(cell.source)):
            assert not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)), (
                f"{name}: a def/class/lambda in a notebook belongs in the lkr package:\n{cell.source}")


def test_notebooks_match_their_generator():
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "make_notebooks.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --- executed headless ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    from lkr.pipeline import run_notebooks

    out = tmp_path_factory.mktemp("nb")
    params = {"data_fer": "demo", "data_ck": "demo-ckplus", "out": str(out), "device": "cpu", "epochs": 1,
              "quick": True, "folds": [0], "results": str(out / "results"), "figures": str(out / "figures"),
              "progress": False}
    run_notebooks(params, out, progress=False, threads=1)
    return out


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_headless_and_writes_its_figures(executed, name):
    nb = nbformat.read(executed / "notebooks" / name, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    for f in EXPECTED[name]:
        p = executed / "figures" / f
        assert p.exists() and p.stat().st_size > 500, f"{name} did not write {f}"


def test_executed_notebooks_show_results(executed):
    nb = nbformat.read(executed / "notebooks" / "03_results.ipynb", as_version=4)
    kinds = {k for c in nb.cells if c.cell_type == "code" for o in c.outputs for k in o.get("data", {})}
    assert {"image/png", "text/html"} <= kinds  # figures and tables are displayed, not only saved


def test_results_layout_of_the_run(executed):
    """The notebooks ran with the default scale "full" on the demo set: the demo set always runs
    at its own preset, so runs and results are under demo/."""
    assert sorted(p.name for p in (executed / "results").iterdir()) == ["demo"]
    assert sorted(p.name for p in (executed / "runs").iterdir()) == ["demo"]
    res = executed / "results" / "demo"
    from lkr.experiments import CONFIGS

    for cfg in CONFIGS:
        fer = res / "fer2013" / cfg
        assert {"metrics.json", "history.json", "config.json", "predictions.npz", "umap.npz",
                "gradcam.npz"} <= {p.name for p in fer.iterdir()}
        assert not (fer / "embeddings.npz").exists()  # 256-d embeddings stay in the run folder
        assert (executed / "runs" / "demo" / "fer2013" / cfg / "embeddings.npz").exists()
        z = np.load(fer / "umap.npz")
        assert z["coords"].dtype == np.float16 and z["coords"].shape[1] == 2 and np.isfinite(float(z["silhouette"]))
        if cfg == "lkrnet-cover":  # FER2013 only
            assert not (res / "ckplus" / cfg).exists()
            continue
        ck = res / "ckplus" / cfg
        assert json.loads((ck / "metrics.json").read_text())["folds"] == [0]
        assert json.loads((ck / "metrics.json").read_text())["scale"] == "demo"
        assert json.loads((fer / "metrics.json").read_text())["scale"] == "demo"
        assert json.loads((fer / "config.json").read_text())["scale"] == "demo"
        assert (ck / "fold0" / "predictions.npz").exists()
    files = [p for p in res.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix == ".pt"], "checkpoints must never be exported"
    assert not [p for p in files if "ckplus" in p.parts and p.name in ("gradcam.npz", "embeddings.npz")]
    for cfg_dir in (p for p in (res / "fer2013").iterdir() if p.is_dir()):
        assert sum(p.stat().st_size for p in cfg_dir.iterdir()) < 1 << 20
    assert {p.name for p in (res / "fer2013").iterdir() if p.is_file()} == {"gradcam_faces.npz"}  # once a scale
    assert (executed / "runs" / "demo" / "fer2013" / "lkrnet" / "best.pt").exists()


def test_demo_and_reproduce_pass_their_parameters(monkeypatch, tmp_path):
    import lkr.pipeline as pipeline

    seen = {}
    monkeypatch.setattr(pipeline, "run_notebooks", lambda params, out, **kw: seen.update(params=params, out=out))
    assert pipeline.run_demo(tmp_path / "demo", progress=False) == 0
    p = seen["params"]
    assert p["data_fer"] == "demo" and p["data_ck"] == "demo-ckplus" and p["quick"] is True
    assert p["scale"] == "demo"
    assert Path(p["results"]) == (tmp_path / "demo" / "results").resolve()
    fer, ck = tmp_path / "fer.csv", tmp_path / "ck"
    fer.write_text("emotion,pixels,Usage\n")
    ck.mkdir()
    assert pipeline.run_reproduce(fer, ck, out=tmp_path / "real", results=tmp_path / "r", figures=tmp_path / "f",
                                  progress=False) == 0
    p = seen["params"]
    assert p["quick"] is False and p["data_fer"] == str(fer.resolve()) and p["figures"] == str((tmp_path / "f").resolve())
    assert p["scale"] == "full"

    from lkr.cli import main

    assert main(["reproduce", "--fer", str(fer), "--ck", str(ck), "--out", str(tmp_path / "real"),
                 "--scale", "cpu"]) == 0
    assert seen["params"]["scale"] == "cpu"
    assert main(["reproduce", "--fer", str(tmp_path / "missing.csv"), "--ck", str(ck)]) == 2


def test_photo_notebook_uses_the_shipped_model_not_the_demo_run(executed):
    """Under lkr demo, notebook 02's run has only seen synthetic faces: notebook 06 passes it over
    for the model that ships with lkr, and says so; notebook 05 shows the shipped model's Grad-CAM."""
    nb = nbformat.read(executed / "notebooks" / "06_your_photos.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "lkr's shipped model: lkrnet trained on fer2013" in text
    assert "happiness" in text  # the astronaut smiles
    assert str(executed / "runs" / "demo" / "fer2013" / "lkrnet") not in text
    assert (executed / "photos" / "annotated" / "astronaut.png").exists()
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 1
    nb5 = nbformat.read(executed / "notebooks" / "05_gradcam.ipynb", as_version=4)
    text5 = "".join(o.get("text", "") for c in nb5.cells if c.cell_type == "code" for o in c.outputs)
    assert "lkr's shipped model" in text5 and (executed / "photos" / "gradcam" / "astronaut.png").exists()


def test_reading_notebooks_open_the_committed_results_from_any_folder(tmp_path, monkeypatch):
    """notebook_paths resolves relative paths from the repository root; 03-05 at a real scale
    open the repository's results/ with no dataset; a missing scale gets one line naming those
    there."""
    from lkr.errors import LkrError
    from lkr.pipeline import notebook_names, notebook_paths, repo_root

    monkeypatch.chdir(tmp_path)
    out, scale, results, figures = notebook_paths("demo", "cpu", "out/x", None, None, reads=True)
    assert (out, scale, results, figures) == (repo_root() / "out/x", "cpu", repo_root() / "results",
                                              repo_root() / "out/x/figures")
    assert notebook_paths("demo", "demo", "o", None, None)[1:3] == ("demo", repo_root() / "o/results")
    # the notebooks' default output (out/demo) follows the scale: figures of scale cpu never land in out/demo
    out, scale, results, figures = notebook_paths("demo", "cpu", "out/demo", None, None, reads=True)
    assert (out, results, figures) == (repo_root() / "out/cpu", repo_root() / "results", repo_root() / "out/cpu/figures")
    assert notebook_paths("demo", "demo", "out/demo", None, None)[3] == repo_root() / "out/demo/figures"
    with pytest.raises(LkrError, match=r"no results at scale full in .*; scales there: .*cpu") as e:
        notebook_paths("demo", "full", "o", None, None, reads=True)
    assert "\n" not in str(e.value)
    assert notebook_names(["03", "04_embeddings", "05_gradcam.ipynb"]) == [
        "03_results.ipynb", "04_embeddings.ipynb", "05_gradcam.ipynb"]
    with pytest.raises(LkrError, match="choose from 01_data"):
        notebook_names(["9"])


def test_lkr_notebook_runs_03_on_the_committed_cpu_results(tmp_path, monkeypatch, capsys):
    from lkr.cli import main

    if not (Path(__file__).resolve().parents[1] / "results" / "cpu").is_dir():
        pytest.skip("no committed cpu results")
    monkeypatch.chdir(tmp_path)  # not the repository root
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(["notebook", "03", "--scale", "cpu", "--out", str(tmp_path / "o")]) == 0
    nb = nbformat.read(tmp_path / "o" / "notebooks" / "03_results.ipynb", as_version=4)
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert (tmp_path / "o" / "figures" / "table3_fer2013_cpu.md").exists()
    assert main(["notebook", "03", "--scale", "full", "--out", str(tmp_path / "o")]) == 2
    assert "scales there" in capsys.readouterr().err
