"""The paper's experiment set: which configurations are trained, on which folds, into which
folders; then their small artifacts are exported for the figures (:mod:`lkr.results`).

=============== =========== ============ ================================================
name            variant     lambda       role in the paper
=============== =========== ============ ================================================
``vgg19``       vgg19       0            Tables 2-3 row "VGG19"; Fig. 8 left
``baseline1``   baseline1   0            Tables 2-3 "Baseline 1"; Fig. 6 at lambda = 0
``baseline2``   baseline2   0.2          Tables 2-3 "Baseline 2"
``lkrnet``      lkrnet      0.2          Tables 2-3 "Our method"; Fig. 6 at 0.2; Figs. 7-9
``lkrnet-l0.4`` lkrnet      0.4          Fig. 6 at lambda = 0.4
=============== =========== ============ ================================================

Scales: the set is trained at a named scale (:data:`lkr.config.SCALES`): "full" (the paper's
values, the default) or "cpu" (a reduced scale for a CPU); the demo set always at its own
preset, scale "demo".

Folders: runs go to ``<out_root>/runs/<scale>/<key>/<config>[/seed<s>][/fold<k>]`` (checkpoints,
large), results to ``<results_dir>/<scale>/<key>/<config>[/seed<s>][/fold<k>]`` (small; see
:mod:`lkr.results`; seed 0 has no ``seed<s>`` level),
where ``<key>`` is "fer2013" or "ckplus" (:func:`lkr.results.dataset_key`), so runs of two
scales never share a folder. A finished run (``metrics.json`` with the same config) is not
trained again; an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

from lkr.config import FINE_TUNE, Config
from lkr.dataset import FaceDataset
from lkr.errors import ConfigError

CONFIGS: dict[str, dict[str, Any]] = {
    "vgg19": {"variant": "vgg19", "triplet_lambda": 0.0},
    "baseline1": {"variant": "baseline1", "triplet_lambda": 0.0},
    "baseline2": {"variant": "baseline2", "triplet_lambda": 0.2},
    "lkrnet": {"variant": "lkrnet", "triplet_lambda": 0.2},
    "lkrnet-l0.4": {"variant": "lkrnet", "triplet_lambda": 0.4},
    # the other pooling of the mask onto the feature maps (docs/method.md, Eq. 4)
    "lkrnet-cover": {"variant": "lkrnet", "triplet_lambda": 0.2, "mask_pool": "cover"},
}
REGION_STAGE = 1
"""The mask's stage for the real-face runs of the region question (docs/real-faces-design.md),
chosen from the synthetic region control only, before any of those runs."""
REGION_CONFIGS: dict[str, dict[str, Any]] = {
    f"lkrnet-s{REGION_STAGE}": {"variant": "lkrnet", "triplet_lambda": 0.2, "mask_stage": REGION_STAGE},
    f"face-s{REGION_STAGE}": {"variant": "lkrnet", "triplet_lambda": 0.2, "mask_stage": REGION_STAGE,
                              "mask_source": "face"},
    f"uniform-s{REGION_STAGE}": {"variant": "lkrnet", "triplet_lambda": 0.2, "mask_stage": REGION_STAGE,
                                 "mask_source": "uniform"},
    f"off-landmark-s{REGION_STAGE}": {"variant": "lkrnet", "triplet_lambda": 0.2, "mask_stage": REGION_STAGE,
                                      "mask_source": "off-landmark"},
}
"""Beyond the paper: LKRNet with the mask where it can act, and its partners without landmarks
(the face box; the same five rectangles off the landmarks; a uniform mask, the compute-matched
second head), all at λ 0.2. Not in
the default set (``lkr reproduce`` trains the paper's); name them to train them."""
KNOWN_CONFIGS: dict[str, dict[str, Any]] = CONFIGS | REGION_CONFIGS
# Fig. 6: LKRNet's embeddings at these lambdas.
LAMBDA_CONFIGS: dict[float, str] = {0.0: "baseline1", 0.2: "lkrnet", 0.4: "lkrnet-l0.4"}
QUICK_FOLDS = (0, 1)
K_FOLDS = 10


def config_of(ds: FaceDataset, name: str, *, scale: str = "full", **overrides: Any) -> Config:
    """The :class:`Config` of experiment ``name`` on ``ds`` at ``scale`` (a name of
    :data:`lkr.config.SCALES`; demo data always gets the demo preset), with ``overrides``.

    Raises:
        KeyError: for a name not in :data:`CONFIGS`.
        ConfigError: for an unknown scale.
    """
    from lkr.train import config_for

    if name not in KNOWN_CONFIGS:
        raise KeyError(f"unknown configuration {name!r}; choose from {', '.join(KNOWN_CONFIGS)}")
    spec = {k: v for k, v in KNOWN_CONFIGS[name].items() if k != "variant"}
    return config_for(ds, KNOWN_CONFIGS[name]["variant"], scale=scale, **{**spec, **overrides})


def _finished(run: Path, cfg: Config) -> bool:
    """Whether ``run`` holds a finished run of ``cfg``; a fine-tuned run only while its source
    still holds the weights it started from (the sha256 in its metrics.json)."""
    if not (run / "metrics.json").exists() or not (run / "config.json").exists():
        return False
    if not Config.from_dict(json.loads((run / "config.json").read_text())).trains_like(cfg):
        return False
    if cfg.init_from:
        from lkr.runfolder import weights_sha256

        was = json.loads((run / "metrics.json").read_text()).get("init_sha256")
        src = Path(cfg.init_from).expanduser()
        src = src.parent if src.name == "best.pt" else src
        if was and (not (src / "best.pt").is_file() or weights_sha256(src) != was):
            return False  # trained again: its checkpoint then refuses to resume, in one line
    return True


def _train_job(ds: FaceDataset, cfg: Config, run: Path, fold: int | None, folds: int, data_ref: str,
               device: str, precision: dict[str, Any] | None = None) -> float:
    """One run in a worker process (module level: pickled by name); returns its seconds."""
    from lkr.train import train

    t0 = time.perf_counter()
    train(ds, cfg, run, device=device, fold=fold, folds=folds, progress=False, data_ref=data_ref,
          precision=precision)
    return time.perf_counter() - t0


def _train_parallel(ds: FaceDataset, jobs: list[tuple[str, int | None]], runs_root: Path, key: str,
                    cfgs: dict[str, Config], *, workers: int, device: str | None, k_folds: int,
                    data_ref: str, seed: int = 0,
                    precisions: dict[str, dict[str, Any]] | None = None) -> dict[tuple[str, int | None], str]:
    """Train the unfinished runs of ``jobs`` in ``workers`` processes; {(name, fold): state}."""
    from lkr import results as res
    from lkr.distributed import run_jobs

    todo = []
    for name, fold in jobs:
        cfg = cfgs[name]
        run = res.run_dir_for(runs_root, cfg.scale, key, name, fold, seed)
        if not _finished(run, cfg):
            todo.append(((name, fold), {"cfg": cfg, "run": run, "fold": fold,
                                        "precision": (precisions or {}).get(name)}))
    secs = run_jobs(_train_job, [job for _, job in todo], workers=workers, device=device,
                    common={"ds": ds, "folds": k_folds, "data_ref": data_ref})
    return {k: f"{s:.0f} s in a worker" for (k, _), s in zip(todo, secs)}


def run_experiments(
    data: FaceDataset | str,
    out_root: str | Path,
    names: Sequence[str] | None = None,
    *,
    epochs: int | None = None,
    device: str | None = None,
    folds: Sequence[int] | None = None,
    quick: bool = False,
    progress: bool = True,
    results_dir: str | Path | None = None,
    k_folds: int = K_FOLDS,
    overrides: dict[str, Any] | None = None,
    data_ref: str | None = None,
    workers: int = 1,
    scale: str = "full",
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Train the named configurations on one dataset at a named scale and export their results.

    FER2013-like data (official splits): one run per configuration. CK+-like data: one run per
    selected subject-independent fold, then the folds are pooled. After training, the small
    artifacts go to the results folder; for FER2013-like data also the 2-D UMAP of the test
    embeddings (with silhouette scores) and Grad-CAM of 16 fixed test faces.

    Args:
        data: a :class:`FaceDataset` or a path for :func:`lkr.readers.load_dataset`
            ("demo", "demo-ckplus", a FER2013 / CK+ file or folder).
        out_root: folder for ``runs/`` (and ``results/`` unless ``results_dir`` is given).
        names: configurations of :data:`CONFIGS` (default: all five).
        epochs: override the config's epochs (None: the scale's: the paper's 60 at "full").
        device: "cpu", "cuda" or None (CUDA when present).
        folds: CK+-like data: which of the ``k_folds`` folds to run (default: all; quick: 0, 1).
        quick: fewer folds (see ``folds``) and no other change.
        progress: a line per run and the trainer's progress bars.
        results_dir: where results go (default ``<out_root>/results``).
        k_folds: number of subject-independent folds.
        overrides: any other :class:`Config` fields for every run.
        data_ref: how ``lkr evaluate`` loads the data again (default: ``data`` when it is a
            path, else the dataset's source).
        workers: train the runs in this many processes (:func:`lkr.distributed.run_jobs`):
            worker i on GPU i modulo the GPUs present, else on the CPU with this process's
            threads shared among them. A run's result does not depend on it (on the CPU, at
            the same number of threads per run). 1: one run after the other, here.
        scale: a name of :data:`lkr.config.SCALES` ("full": the paper's values; "cpu": the
            reduced scale for a CPU); demo data always trains at the demo preset (scale "demo").
            Runs and results go to ``<scale>/`` subfolders (:mod:`lkr.results`).
        seed: the runs' seed. Seed 0 goes to the configuration's folder, seed s > 0 to its
            ``seed<s>/`` subfolder (:func:`lkr.results.run_dir_for`); for seeds other than 0 only
            the small files are exported (no embeddings, UMAP or Grad-CAM: the figures draw
            those from seed 0).

    Returns:
        {name: metrics} (pooled over the folds for CK+-like data).

    Raises:
        KeyError: for an unknown configuration name.
        ConfigError: for an unknown scale.
    """
    from lkr import results as res
    from lkr.train import train

    if isinstance(data, (str, Path)):
        from lkr.readers import load_dataset

        data_ref = data_ref or str(data)
        ds = load_dataset(data)
    else:
        ds, data_ref = data, data_ref or data.source
    names = list(CONFIGS if names is None else names)
    for n in names:
        if n not in KNOWN_CONFIGS:
            raise KeyError(f"unknown configuration {n!r}; choose from {', '.join(KNOWN_CONFIGS)}")
    out_root = Path(out_root)
    results_dir = Path(results_dir) if results_dir is not None else out_root / "results"
    key = res.dataset_key(ds)
    fold_data = ds.evaluation == "folds"
    if fold_data:
        fold_list = list(folds) if folds is not None else (list(QUICK_FOLDS) if quick else list(range(k_folds)))
    else:
        fold_list = [None]
    kw = dict(overrides or {})
    if "seed" in kw and int(kw["seed"]) != seed:
        raise ConfigError(f"two seeds given: overrides seed={kw['seed']} and seed={seed}; pass the seed once, "
                          "as seed= (it also names the runs' folder)")
    kw["seed"] = seed
    if epochs is not None:
        kw["epochs"] = epochs
    run_scale = res.scale_for(ds, scale)  # the folder: "demo" for the demo set
    if run_scale in FINE_TUNE and kw.get("init_from"):
        raise ConfigError(f"scale {run_scale} finds each configuration's source run itself; drop init_from from "
                          "the overrides (or train at scale cpu with init_from for one run)")
    cfgs = {n: config_of(ds, n, scale=scale, **kw, **_fine_tune_source(out_root, run_scale, key, n, seed))
            for n in names}
    scale = run_scale

    if not fold_data or any(cfg.local_branch for cfg in cfgs.values()):
        ds = _with_landmarks(ds, progress)  # once, not once per run
    faces = None
    jobs = [(n, f) for n in names for f in fold_list]
    summary: dict[str, dict[str, Any]] = {}
    t_all = time.perf_counter()
    precisions = decide_precision(cfgs, device, workers, progress)  # once, before any worker starts
    trained = (_train_parallel(ds, jobs, out_root / "runs", key, cfgs, workers=workers, device=device,
                               k_folds=k_folds, data_ref=data_ref, seed=seed, precisions=precisions)
               if workers > 1 else {})
    for j, (name, fold) in enumerate(jobs, 1):
        cfg = cfgs[name]
        run = res.run_dir_for(out_root / "runs", cfg.scale, key, name, fold, seed)
        where = f"{key} {name}" + ("" if fold is None else f" fold {fold}") + (f" seed {seed}" if seed else "")
        t0 = time.perf_counter()
        if _finished(run, cfg):
            m = json.loads((run / "metrics.json").read_text())
            state = trained.get((name, fold), "done before")
        else:
            m = train(ds, cfg, run, device=device, fold=fold, folds=k_folds, progress=progress, data_ref=data_ref,
                      precision=precisions.get(name))
            state = f"{time.perf_counter() - t0:.0f} s"
        dest = res.run_dir_for(results_dir, cfg.scale, key, name, fold, seed)
        res.export_run(run, dest, embeddings=False)  # the 256-d embeddings stay in the run folder
        if not fold_data and seed:
            summary[name] = m
        elif not fold_data:
            if faces is None:
                import numpy as np

                faces = res.gradcam_faces(ds, np.load(run / "predictions.npz")["index"])
            res.export_umap(dest, source=run)
            res.export_gradcam(run, dest, ds, faces, device="cpu")
            summary[name] = m
        if progress:
            print(f"[lkr] [{j}/{len(jobs)}] {where}: test accuracy {100 * m['accuracy']:.1f}% ({state})", flush=True)
    if fold_data:
        for name in names:
            summary[name] = res.pool_folds(res.run_dir_for(results_dir, cfgs[name].scale, key, name, seed=seed))
    if progress:
        print(f"[lkr] {len(jobs)} runs on {ds.name} at {scale} scale in {time.perf_counter() - t_all:.0f} s; "
              f"results in {results_dir / scale / key}", flush=True)
    return summary


def decide_precision(cfgs: dict[str, Config], device: str | None, workers: int = 1,
                     progress: bool = False) -> dict[str, dict[str, Any]]:
    """The precision of every run of an experiment set, decided once, before any worker starts.

    On a CPU, ``cpu_precision="auto"`` is measured here (:func:`lkr.cpu.resolve_precision`) at the
    thread count each run will have (this process's threads, shared among ``workers``), once per
    conv stack, width and crop: the timing is of the single-branch network
    (:func:`lkr.cpu.calibrate_precision`), so VGG19 and LKRNet of one set get one answer on
    purpose (a comparison of the two is never a comparison of two precisions). The answer is
    handed to every configuration: no set is trained in two precisions, and no two workers race
    to write the cache. Elsewhere (CUDA) each run decides as
    it always does.

    Returns:
        {config name: precision record} on a CPU, else {}.
    """
    import torch

    from lkr import cpu
    from lkr.device import resolve_device

    dev = resolve_device(device)
    if dev.type != "cpu" or not cfgs:
        return {}
    threads = max(1, cpu.process_threads() // workers) if workers > 1 else cpu.process_threads()
    before = torch.get_num_threads()
    cpu.use_threads(threads)
    memo: dict[tuple, dict[str, Any]] = {}
    out: dict[str, dict[str, Any]] = {}
    try:
        for name, cfg in cfgs.items():
            k = (cfg.cpu_precision, tuple(cfg.vgg_cfg), cfg.width, cfg.crop)
            if k not in memo:
                p = cpu.resolve_precision(cfg, dev, threads)
                memo[k] = {**p, "decided_by": f"for the experiment set: {p['decided_by']}"}
                if progress and cfg.cpu_precision == "auto":
                    print(f"[lkr] precision {p['precision']} for every run of the set ({p['decided_by']})", flush=True)
            out[name] = memo[k]
    finally:
        torch.set_num_threads(before)
    return out


def _fine_tune_source(out_root: Path, scale: str, key: str, name: str, seed: int) -> dict[str, str]:
    """``{"init_from": run folder}`` for a scale of :data:`lkr.config.FINE_TUNE` (the same
    configuration and seed trained on the source dataset at the source scale, under the same
    ``out_root``), else ``{}``.

    Raises:
        ConfigError: the data is the source dataset itself, or the source run is not finished.
    """
    if scale not in FINE_TUNE:
        return {}
    from lkr import results as res

    src_scale, src_key = FINE_TUNE[scale]
    if key == src_key:
        raise ConfigError(f"scale {scale} fine-tunes from the {src_key} runs at scale {src_scale}; train {src_key} "
                          f"itself at scale {src_scale}")
    src = res.run_dir_for(out_root / "runs", src_scale, src_key, name, seed=seed)
    if not (src / "metrics.json").is_file():
        raise ConfigError(f"scale {scale}: {name} starts from its {src_key} run at scale {src_scale}, and {src} "
                          f"holds no finished run; train it first (lkr reproduce / scripts/cpu_results.py on "
                          f"{src_key} with the same --seed and runs folder)")
    return {"init_from": str(src.expanduser().resolve())}


def _with_landmarks(ds: FaceDataset, progress: bool) -> FaceDataset:
    """The dataset with landmarks (masks for the local branch and for Grad-CAM)."""
    if ds.has_landmarks:
        return ds
    from lkr.landmarks import attach_landmarks

    return attach_landmarks(ds, progress=progress)


def summary_table(summary: dict[str, dict[str, Any]]) -> "Any":
    """A small table of :func:`run_experiments`' result: one row per configuration.

    Returns:
        a pandas DataFrame if pandas is installed (it is, with seaborn), columns: lambda,
        local branch, accuracy (%), per-class accuracies (%), selected epoch.
    """
    import pandas as pd

    rows = []
    for name, m in summary.items():
        row = {"config": name, "lambda": m.get("triplet_lambda"), "local branch": m.get("local_branch"),
               "accuracy %": round(100 * m["accuracy"], 1)}
        row.update({c: (None if a is None else round(100 * a, 1)) for c, a in m["per_class"].items()})
        if "fold_accuracy_mean" in m:
            row["folds"] = len(m["folds"])
            row["fold mean ± sd %"] = f"{100 * m['fold_accuracy_mean']:.1f} ± {100 * m['fold_accuracy_std']:.1f}"
        else:
            row["selected epoch"] = m.get("best_epoch")
        rows.append(row)
    return pd.DataFrame(rows).set_index("config") if rows else pd.DataFrame()


def results_summary(results_dir: str | Path, key: str) -> "Any":
    """:func:`summary_table` of every configuration in ``results_dir/<key>`` ("fer2013" or "ckplus");
    ``results_dir`` is one scale's folder (``results/<scale>``).

    Returns:
        a pandas DataFrame (empty when there are no results for ``key``).
    """
    from lkr.results import load_results

    res = load_results(results_dir).get(key, {})
    return summary_table({name: r.metrics for name, r in res.items()})
