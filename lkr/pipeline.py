"""The main jobs: run the ordered notebooks headless with papermill.

``lkr demo`` / ``make demo``: notebooks 01..06 on the built-in synthetic demo set, on the CPU,
into ``out/demo/`` (git-ignored): ``runs/demo/`` (checkpoints), ``results/demo/`` (small
artifacts), ``figures/`` (every table and figure, named ``..._demo``), ``notebooks/`` (the
executed notebooks).

``lkr reproduce --fer PATH --ck PATH [--scale full|cpu]`` / ``make reproduce``: the same
notebooks on the real datasets, all folds, at the named scale (:data:`lkr.config.SCALES`;
"full" = the paper's); results go to the repository's ``results/<scale>/`` and figures to
``figures/`` named ``..._<scale>`` (so ``lkr figures`` can redraw them later without data), runs
to ``out/real/runs/<scale>``.

Progress: one line per notebook, papermill's bar over the notebook's cells, and a line per
finished training run (printed by the notebook, kept in the executed notebook's outputs).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

from lkr.errors import LkrError

NOTEBOOKS: tuple[str, ...] = ("01_data.ipynb", "02_train.ipynb", "03_results.ipynb", "04_embeddings.ipynb",
                              "05_gradcam.ipynb", "06_your_photos.ipynb")
KERNEL = "python3"
# The demo's thin network gains little from a second CPU thread, and two OpenMP threads on a
# 2-core machine that is busy with anything else ran up to 10x slower than one (measured).
DEMO_THREADS = 1


def notebooks_dir() -> Path:
    """The repository's ``notebooks/`` folder (the kit is installed editable from the clone).

    Raises:
        LkrError: when the package is not run from a clone holding the notebooks.
    """
    d = Path(__file__).resolve().parents[1] / "notebooks"
    if not (d / NOTEBOOKS[0]).exists():
        raise LkrError(f"{d}: notebooks not found; run from a clone of the repository (pip install -e .)")
    return d


def run_notebooks(parameters: dict[str, Any], out: str | Path, *, names: Sequence[str] = NOTEBOOKS,
                  progress: bool = True, kernel: str = KERNEL, threads: int | None = None) -> list[Path]:
    """Execute notebooks in order with papermill, saving the executed copies in ``out/notebooks``.

    Args:
        parameters: values for each notebook's ``parameters`` cell (unknown names are ignored
            by the notebooks that lack them: papermill only adds an injected cell).
        out: output folder; executed notebooks go to ``out/notebooks/``.
        names: notebook file names in ``notebooks/``, run in the given order.
        progress: print a line per notebook and show papermill's cell progress bar.
        kernel: Jupyter kernel name (``make setup`` installs "python3" into the venv).
        threads: CPU threads of the kernels' torch (``OMP_NUM_THREADS``); None keeps the default.

    Returns:
        Paths of the executed notebooks.

    Raises:
        LkrError: when a notebook fails (names the notebook, the error, and the executed copy).
    """
    import papermill as pm

    src = notebooks_dir()
    dest = Path(out) / "notebooks"
    dest.mkdir(parents=True, exist_ok=True)
    done = []
    old_threads = os.environ.get("OMP_NUM_THREADS")
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # the kernels inherit it
    try:
        for i, name in enumerate(names, 1):
            done.append(_run_one(pm, src / name, dest / name, parameters, i, len(names), progress, kernel))
    finally:
        if threads is not None:
            if old_threads is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = old_threads
    return done


def _run_one(pm: Any, src: Path, dest: Path, parameters: dict[str, Any], i: int, n: int, progress: bool,
             kernel: str) -> Path:
    name = src.name
    t0 = time.perf_counter()
    if progress:
        print(f"[lkr] notebook {i}/{n}: {name}", flush=True)
    try:
        pm.execute_notebook(str(src), str(dest), parameters=parameters, kernel_name=kernel,
                            progress_bar=progress, cwd=str(src.parent), log_output=False,
                            # the kernel's own log (e.g. ipykernel's TCP notice) stays quiet
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])
    except pm.PapermillExecutionError as e:
        raise LkrError(f"notebook {name} failed: {e.ename}: {e.evalue.splitlines()[0] if e.evalue else ''} "
                       f"(executed copy: {dest})") from None
    if progress:
        print(f"[lkr] notebook {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    return dest


READS = ("03_results.ipynb", "04_embeddings.ipynb", "05_gradcam.ipynb")
"""The notebooks that only read results (no data, no training): they open ``results/<scale>/``."""


def repo_root() -> Path:
    """The clone the kit is installed from (editable install): relative notebook paths resolve here."""
    return Path(__file__).resolve().parents[1]


def notebook_paths(data_fer: str, scale: str, out: str | Path, results: str | Path | None,
                   figures: str | Path | None, *, reads: bool = False) -> tuple[Path, str, Path, Path]:
    """The paths of a notebook's parameters cell, resolved the same from any working directory
    (relative ones from the repository root, :func:`repo_root`).

    Args:
        data_fer: the notebook's FER2013 path ("demo": the synthetic demo set).
        scale: the scale asked for ("demo", "full", "cpu", "cpu-ft", ...).
        out: the job's output folder.
        results, figures: their folders, or None for the default.
        reads: a notebook that only reads results (03-05): ``scale`` names the results to open,
            whatever the data, and without ``results`` a real scale opens the repository's
            committed ``results/`` (no dataset needed); the demo scale opens ``<out>/results``.

    Returns:
        (out, the scale of the runs, the results folder (holding ``<scale>/``), the figures folder).
        The notebooks' default ``out`` ("out/demo") follows the scale: at scale "cpu" it is "out/cpu".

    Raises:
        LkrError: for a scale with no results there (one line naming the scales that are there).
    """
    from lkr.config import SCALES
    from lkr.results import load_scales, scale_for

    root = repo_root()

    def resolve(p: str | Path) -> Path:
        p = Path(p).expanduser()
        return p if p.is_absolute() else root / p

    out = resolve(out)
    if reads:
        run_scale = scale
        if scale not in SCALES and scale != "demo":
            raise LkrError(f"scale {scale!r}: choose from demo, {', '.join(SCALES)}")
        results_dir = resolve(results) if results else (out / "results" if scale == "demo" else root / "results")
        if not (results_dir / run_scale).is_dir():
            there = sorted(load_scales(results_dir)) if results_dir.is_dir() else []
            raise LkrError(f"no results at scale {run_scale} in {results_dir}; scales there: "
                           f"{', '.join(there) or 'none'}" + (" (make demo writes the demo's)" if scale == "demo" else ""))
    else:
        run_scale = scale_for(data_fer, scale)  # "demo" for the demo set, which always runs at its own preset
    if out.name == "demo" and run_scale != "demo":  # the default output folder follows the scale: out/cpu, ...
        out = out.parent / run_scale
    if not reads:
        results_dir = resolve(results) if results else out / "results"
    figures_dir = resolve(figures) if figures else out / "figures"
    return out, run_scale, results_dir, figures_dir


def notebook_names(names: Sequence[str]) -> list[str]:
    """Notebook file names from what a user types: "03", "03_results", "03_results.ipynb".

    Raises:
        LkrError: for a name that matches no notebook (one line listing them).
    """
    out = []
    for n in names:
        hits = [nb for nb in NOTEBOOKS if nb == n or nb == f"{n}.ipynb" or nb.split("_", 1)[0] == n.zfill(2)]
        if len(hits) != 1:
            raise LkrError(f"notebook {n!r}: choose from {', '.join(nb.split('.')[0] for nb in NOTEBOOKS)}")
        out.append(hits[0])
    return out


def run_named(names: Sequence[str], *, scale: str = "demo", out: str | Path = "out",
              parameters: dict[str, Any] | None = None, progress: bool = True) -> list[Path]:
    """``lkr notebook``: some notebooks headless (papermill), from any working directory. For the
    reading notebooks (03-05) at a real scale no dataset is needed: they open the committed
    ``results/<scale>/``. The executed copies go to ``<out>/notebooks/``, drawn figures to
    ``<out>/figures/``.

    Raises:
        LkrError: an unknown notebook or scale, or a notebook that fails (one line).
    """
    files = notebook_names(names)
    params = {"scale": scale, "out": str(Path(out).resolve()), **(parameters or {})}
    for name in files:  # a missing scale is said in one line before any kernel starts
        if name in READS:
            notebook_paths(params.get("data_fer", "demo"), scale, params["out"], params.get("results"),
                           params.get("figures"), reads=True)
    done = run_notebooks(params, params["out"], names=files, progress=progress)
    if progress:
        print(f"[lkr] executed copies in {Path(params['out']) / 'notebooks'}")
    return done


def _list_figures(figures: Path) -> list[Path]:
    return sorted(p for p in figures.glob("*") if p.suffix in (".png", ".pdf", ".md", ".csv"))


def run_demo(out: str | Path = "out/demo", *, quick: bool = True, device: str | None = None,
             epochs: int | None = None, folds: Sequence[int] | None = None, progress: bool = True,
             threads: int | None = DEMO_THREADS) -> int:
    """The main job on the built-in default: every notebook on the synthetic demo set.

    Args:
        out: output folder (git-ignored ``out/demo`` by default).
        quick: 2 of the 10 CK+ folds (the default, minutes on a CPU); False runs all 10.
        device: "cpu", "cuda" or None (the demo preset is meant for the CPU; None picks CUDA
            when present).
        epochs: override the demo preset's epochs.
        folds: CK+ folds to run (overrides ``quick``'s choice).
        progress: progress lines and bars.
        threads: torch CPU threads (:data:`DEMO_THREADS`; None: torch's default).

    Returns:
        0 (the CLI's exit status).

    Raises:
        LkrError: when a notebook fails.
    """
    out = Path(out).resolve()
    t0 = time.perf_counter()
    if progress:
        print(f"[lkr] demo: notebooks 01-06 on the synthetic demo set into {out}", flush=True)
    params = {"data_fer": "demo", "data_ck": "demo-ckplus", "out": str(out), "device": device, "epochs": epochs,
              "quick": quick, "folds": None if folds is None else list(folds), "results": str(out / "results"),
              "figures": str(out / "figures"), "scale": "demo"}
    run_notebooks(params, out, progress=progress, threads=threads)
    if progress:
        files = _list_figures(out / "figures")
        print(f"[lkr] demo done in {time.perf_counter() - t0:.0f} s: {len(files)} files in {out / 'figures'}")
        for p in files:
            if p.suffix == ".png":
                print(f"  {p}")
        for p in sorted((out / "photos" / "annotated").glob("*.png")):  # notebook 06: the shipped model
            print(f"  {p}  (the shipped LKRNet, trained on FER2013, on a public-domain photo: lkr predict --about)")
        print("[lkr] these are demo-set numbers (synthetic faces), not results of the paper's datasets")
    return 0


def run_reproduce(fer: str | Path, ck: str | Path, *, out: str | Path = "out/real",
                  results: str | Path = "results", figures: str | Path = "figures", device: str | None = None,
                  epochs: int | None = None, quick: bool = False, folds: Sequence[int] | None = None,
                  workers: int = 1, scale: str = "full", progress: bool = True) -> int:
    """The same notebooks on the user's real FER2013 and CK+ (GPU when present), at a named scale.

    Args:
        fer: FER2013 (CSV, image folder or .zip).
        ck: CK+ (CK+48 folder / .zip or the full release).
        out: folder for runs (checkpoints) and executed notebooks.
        results: folder for the small artifacts (the repository's ``results/``).
        figures: folder for the figures (the repository's ``figures/``).
        device: "cpu", "cuda" or None (CUDA when present).
        epochs: override the scale's epochs (the paper's 60 at "full").
        quick: 2 CK+ folds instead of 10.
        folds: CK+ folds to run (overrides ``quick``).
        workers: CK+ folds trained at once in worker processes (threads shared among them).
        scale: a name of :data:`lkr.config.SCALES`: "full" (the paper's values) or "cpu" (the
            reduced scale for a CPU). Results go to ``results/<scale>/``, runs to
            ``out/runs/<scale>/``, and the figures' names and titles say it.
        progress: progress lines and bars.

    Returns:
        0 (the CLI's exit status).

    Raises:
        LkrError: for a missing dataset path, an unknown scale or a failed notebook.
    """
    from lkr.config import FINE_TUNE, SCALES

    if scale not in SCALES:
        raise LkrError(f"--scale {scale}: choose from {', '.join(SCALES)}")
    if scale in FINE_TUNE:
        src_scale, src_key = FINE_TUNE[scale]
        raise LkrError(f"--scale {scale} is CK+ fine-tuned from the {src_key} runs at scale {src_scale}: run lkr "
                       f"reproduce --scale {src_scale} first, then python scripts/cpu_results.py <CK+ path> "
                       f"--scale {scale} --runs <the same out folder>")
    if workers < 1:
        raise LkrError(f"--workers {workers}: expected 1 or more")
    for p in (fer, ck):
        if not Path(p).exists():
            raise LkrError(f"{p}: no such file or folder")
    out = Path(out).resolve()
    t0 = time.perf_counter()
    params = {"data_fer": str(Path(fer).resolve()), "data_ck": str(Path(ck).resolve()), "out": str(out),
              "device": device, "epochs": epochs, "quick": quick, "folds": None if folds is None else list(folds),
              "results": str(Path(results).resolve()), "figures": str(Path(figures).resolve()), "workers": workers,
              "scale": scale}
    run_notebooks(params, out, progress=progress)
    if progress:
        print(f"[lkr] reproduction at {scale} scale done in {time.perf_counter() - t0:.0f} s: results in "
              f"{Path(results) / scale}, figures in {figures} (named ..._{scale})")
    return 0
