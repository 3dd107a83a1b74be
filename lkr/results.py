"""The results folder: the small artifacts of finished runs, from which every figure is drawn.

Layout (``<scale>`` is the scale the runs were trained at, ``<config>`` a name of
:data:`lkr.experiments.CONFIGS`)::

    results/
      <scale>/                   "full" (the paper's), "cpu" (the CPU scale), "cpu-ft" (CK+ at
                                 the CPU scale fine-tuned from FER2013) or "demo" (demo set)
        fer2013/<config>/        one run (seed 0) on the official splits
          config.json  metrics.json  history.json  predictions.npz
          embeddings.npz         256-d test embeddings of the run's fixed subsample (float16):
                                 only where a GPU run exported them for a later UMAP; the
                                 experiments leave them in the run folder
          umap.npz               their 2-D UMAP (seeded, float16) + silhouette scores
          gradcam.npz            Grad-CAM of 16 fixed test faces (float16)
        fer2013/gradcam_faces.npz  those 16 faces' pixels, once for every configuration
        ckplus/<config>/
          metrics.json           pooled over the folds (predictions of all test folds together)
          fold<k>/ config.json  metrics.json  history.json  predictions.npz (+ subject ids)
        <key>/<config>/seed<s>/  the same configuration at seed s > 0: the small files only
                                 (and fold<k>/ for CK+); tables show the mean and spread
                                 over seeds, lkr.stats pairs them with other configurations.
                                 The folder's name is the seed (its config.json must agree).
                                 CK+: the subject folds are drawn with the run's seed, so
                                 another seed also splits the subjects anew; the pooled
                                 predictions still cover every image once, and pair by index

Runs (checkpoints) follow the same scheme under ``<out>/runs/<scale>/<key>/<config>``, so runs
of two scales never share a folder. The scale is a :data:`lkr.config.SCALES` name, or "demo"
for the built-in demo set (which always trains at its own preset); each run's ``config.json``
and ``metrics.json`` record it in their ``scale`` field (records without one count as "full",
:func:`lkr.config.scale_of`). A results folder written before scales existed
(``results/<key>/...``) is read as the scale its records name (:func:`load_scales`).

The key of a dataset is its *role* (:func:`dataset_key`): FER2013-like data with official
splits goes under ``fer2013/``, CK+-like data evaluated by subject folds under ``ckplus/``; each
``metrics.json`` names the actual dataset (e.g. ``demo-fer2013``), and figures show that name.

Rules: only small files are copied (never ``checkpoint.pt`` / ``best.pt``); CK+ face pixels are
never stored (CK+'s licence forbids publishing its faces), so ``gradcam.npz`` exists for the
FER2013 role only. ``history.json`` is written compactly: by column ({field: [one value per
epoch]}, :func:`history_columns`; floats to 6 significant digits; the run folder's own is one
dict per epoch, and :func:`history_rows` reads either); ``metrics.json`` on one line;
``predictions.npz`` without the probabilities (:data:`DROPPED`, :func:`slim`). A FER2013 run
takes under 150 KiB with its Grad-CAM and UMAP (under 20 KiB without), a CK+ fold under 15 KiB:
the repository's files must leave room for the datasets on a GPU call (tests/test_imports.py).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lkr.config import SCALE_NAMES, scale_of, scale_preset
from lkr.dataset import FaceDataset
from lkr.errors import RunError

SMALL_FILES = ("config.json", "metrics.json", "history.json", "predictions.npz")
DROPPED = ("probs",)
"""Arrays of a run's ``predictions.npz`` that ``results/`` does not keep: every table, figure and
``lkr verify`` reads the predictions (``lkr evaluate`` on the run folder gives the probabilities
again), and the float16 probabilities were over half of the predictions' bytes."""
HISTORY_DIGITS = 6
"""Significant digits of the floats of an exported ``history.json`` (written on one line)."""
TIMING_DIGITS = 3
TIMING_FIELDS = ("seconds", "select_seconds", "eval_seconds", "images_per_s")
"""History fields that record how fast an epoch went: exported to :data:`TIMING_DIGITS`
significant digits (a timing on a shared machine means nothing past the third), a quarter of the
CK+48 histories' bytes saved for the bound on the tracked files (what a GPU call carries)."""
GRADCAM_FACES = 16
FACES_FILE = "gradcam_faces.npz"
"""``results/<scale>/fer2013/gradcam_faces.npz``: ``index`` and ``image`` of the fixed Grad-CAM
faces, stored once for all configurations of the scale (each ``gradcam.npz`` stored them
again, 35 KB a configuration; :func:`slim` moves older ones here)."""
UMAP_SEED = 0
KEYS = ("fer2013", "ckplus")
SELECTION_SUBJECTS = "selection_subjects.json"
"""``results/<scale>/<key>/selection_subjects.json``: test subjects whose images fed a design
choice of this scale (e.g. the probe that chose ``cpu-ft`` on the validation subjects of CK+
folds 0-2, which are test subjects of other folds): {"subjects": [ids], "why": text}. Tables
then also give the accuracy on the other subjects' images (:attr:`ConfigResult.choice_subjects`);
``scripts/selection_subjects.py`` writes it from the dataset."""
DEMO_REFS = ("demo", "demo-ckplus")
"""The data references that name the built-in demo set (:func:`lkr.readers.load_dataset`)."""


def dataset_key(ds: FaceDataset) -> str:
    """"ckplus" for CK+-like data (evaluated by subject folds), else "fer2013"."""
    return "ckplus" if ds.evaluation == "folds" else "fer2013"


def run_dir_for(root: str | Path, scale: str, key: str, config: str, fold: int | None = None,
                seed: int = 0) -> Path:
    """``root/<scale>/<key>/<config>[/seed<s>][/fold<k>]`` (runs and results alike): seed 0 (the
    first run of every configuration) directly in the configuration's folder, seed s > 0 in
    ``seed<s>/`` under it."""
    p = Path(root) / scale / key / config
    if seed:
        p = p / f"seed{seed}"
    return p / f"fold{fold}" if fold is not None else p


def scale_for(data: FaceDataset | str | Path, scale: str = "full") -> str:
    """The scale folder that runs of ``data`` asked for at ``scale`` go to: "demo" for the
    built-in demo set (it always trains at the demo preset), else ``scale``.

    Args:
        data: a dataset, or a data reference ("demo", "demo-ckplus", a path).
        scale: a name of :data:`lkr.config.SCALES`, or "demo".

    Raises:
        ConfigError: for an unknown scale, or "demo" for other data than the demo set.
    """
    demo = data.kind == "demo" if isinstance(data, FaceDataset) else str(data) in DEMO_REFS
    return scale_preset(scale, demo=demo)[0]


# --- export ---------------------------------------------------------------------------------
def export_run(run: str | Path, dest: str | Path, *, embeddings: bool = True) -> Path:
    """Copy a finished run folder's small artifacts into ``dest``.

    Args:
        run: a trained run folder (has ``metrics.json``).
        dest: the results folder of this run (created; existing files are replaced).
        embeddings: also copy ``embeddings.npz`` (256-d, float16).

    Returns:
        ``dest``.

    Raises:
        RunError: if ``run`` holds no finished run.
    """
    from lkr.runfolder import write_json

    run, dest = Path(run), Path(dest)
    if not (run / "metrics.json").exists():
        raise RunError(f"{run}: no finished run (metrics.json missing)")
    dest.mkdir(parents=True, exist_ok=True)
    for cross in sorted((run / "cross").glob("*/metrics.json")) if (run / "cross").is_dir() else []:
        d = dest / "cross" / cross.parent.name  # evaluations on another dataset (lkr evaluate --data)
        d.mkdir(parents=True, exist_ok=True)
        for f in ("metrics.json", "predictions.npz"):
            if (cross.parent / f).exists():
                _export_file(cross.parent / f, d / f)
    for name in SMALL_FILES + (("embeddings.npz",) if embeddings else ()):
        if name == "history.json" and (run / name).exists():
            write_json(dest / name, exported_history(json.loads((run / name).read_text())), digits=HISTORY_DIGITS)
        elif (run / name).exists():
            _export_file(run / name, dest / name)
    return dest


def _export_file(src: Path, dest: Path) -> None:
    """One file into ``results/``: metrics and config on one line, predictions without :data:`DROPPED`."""
    from lkr.runfolder import save_npz, write_json

    if src.name in ("metrics.json", "config.json"):
        write_json(dest, json.loads(src.read_text()), compact=True)
    elif src.name == "predictions.npz":
        with np.load(src, allow_pickle=False) as z:
            save_npz(dest, **{k: z[k] for k in z.files if k not in DROPPED})
    else:
        shutil.copyfile(src, dest)


def slim(root: str | Path) -> list[Path]:
    """Rewrite ``root``'s results as :func:`export_run` writes them now (idempotent): every
    ``metrics.json`` and ``config.json`` on one line, every ``history.json`` by column with its timings rounded
    (:func:`exported_history`), every ``predictions.npz`` without :data:`DROPPED`, the Grad-CAM
    faces' pixels once a scale (:data:`FACES_FILE`). The values are unchanged, the histories'
    timings aside (``lkr verify`` and the figures read them alike). Returns the files rewritten."""
    from lkr.runfolder import save_npz, write_json

    done = []
    for f in sorted([*Path(root).rglob("metrics.json"), *Path(root).rglob("config.json")]):
        text = f.read_text()
        m = json.loads(text)
        if text != json.dumps(m, separators=(",", ":")):
            write_json(f, m, compact=True)
            done.append(f)
    for f in sorted(Path(root).rglob("history.json")):
        h = json.loads(f.read_text())
        if isinstance(h, dict) and not h.get("epoch"):
            continue  # not a run's history
        new = exported_history(h)
        if new != h:  # written only when a value or the form changes (no churn of slim files)
            write_json(f, new, digits=HISTORY_DIGITS)
            done.append(f)
    for f in sorted(Path(root).rglob("gradcam.npz")):
        g = _npz(f)
        if "image" in g:  # the faces' pixels go to the scale's faces file, once
            _file_faces(f.parent.parent / FACES_FILE, g["index"], g.pop("image"))
            save_npz(f, **g)
            done.append(f)
    for f in sorted(Path(root).rglob("predictions.npz")):
        with np.load(f, allow_pickle=False) as z:
            if not set(DROPPED) & set(z.files):
                continue
            keep = {k: z[k] for k in z.files if k not in DROPPED}
        save_npz(f, **keep)
        done.append(f)
    return done


def separation_score(embedding: np.ndarray, labels: np.ndarray, *, normalize: bool = True) -> float | None:
    """Silhouette score of the classes in an embedding space.

    With ``normalize`` the embeddings are L2-normalised first (the triplet loss compares
    normalised embeddings), so the Euclidean silhouette is that of the cosine geometry.

    Args:
        embedding: (N, D) float.
        labels: (N,) int.
        normalize: L2-normalise each row first.

    Returns:
        silhouette in [-1, 1] (higher = classes better separated), or None with fewer than 2
        classes present or fewer than 3 points.
    """
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels)
    if len(labels) < 3 or not 2 <= len(np.unique(labels)) < len(labels):
        return None
    e = np.asarray(embedding, dtype=np.float64)
    if normalize:
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return float(silhouette_score(e, labels, metric="euclidean"))


def export_umap(dest: str | Path, *, source: str | Path | None = None, seed: int = UMAP_SEED, n_neighbors: int = 15,
                min_dist: float = 0.1) -> Path:
    """Write ``dest/umap.npz`` from ``<source>/embeddings.npz`` (UMAP with ``n_neighbors``,
    ``min_dist``, ``random_state=seed``).

    ``source``: the folder holding ``embeddings.npz``: the run folder (the CPU experiments keep
    the 256-d embeddings there, out of ``results/``), or None for ``dest`` itself (results
    exported with ``embeddings=True``, e.g. from a GPU machine without umap-learn).

    Contents: ``coords`` (N, 2) float16 UMAP of the L2-normalised embeddings (seeded,
    single-threaded, so reproducible), ``label`` (N,) int8, ``index`` (N,) int64,
    ``silhouette`` (scalar, in the 256-d space; NaN if undefined), ``silhouette_2d`` (in the
    UMAP plane, for reference only).
    """
    import umap  # imported here only: redrawing figures never needs it

    dest = Path(dest)
    z = np.load(Path(source if source is not None else dest) / "embeddings.npz")
    emb, lab = z["embedding"].astype(np.float32), z["label"].astype(np.int64)
    e = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    nn = int(min(n_neighbors, max(2, len(e) - 1)))
    coords = umap.UMAP(n_neighbors=nn, min_dist=min_dist, random_state=seed, n_jobs=1).fit_transform(e)
    s = separation_score(emb, lab)
    s2 = separation_score(coords, lab, normalize=False)  # the plane the eye sees; for reference only
    from lkr.runfolder import save_npz

    save_npz(dest / "umap.npz", coords=coords.astype(np.float16), label=lab.astype(np.int8), index=z["index"],
             silhouette=np.float64(np.nan if s is None else s), silhouette_2d=np.float64(np.nan if s2 is None else s2),
             seed=np.int64(seed), n_neighbors=np.int64(nn), min_dist=np.float64(min_dist))
    return dest / "umap.npz"


def gradcam_faces(ds: FaceDataset, test_index: np.ndarray, n: int = GRADCAM_FACES, seed: int = 0) -> np.ndarray:
    """The fixed test faces of Fig. 8: classes in turn, a seeded random face of each.

    Args:
        ds: the dataset.
        test_index: (M,) dataset positions of the test split.
        n: how many faces.
        seed: which faces.

    Returns:
        (min(n, M),) int64 dataset positions, grouped by class in class order.
    """
    rng = np.random.default_rng(seed)
    test_index = np.asarray(test_index)
    pools = [list(rng.permutation(test_index[ds.labels[test_index] == c])) for c in range(len(ds.class_names))]
    pick: list[int] = []
    while len(pick) < min(n, len(test_index)):
        for pool in pools:
            if pool and len(pick) < n:
                pick.append(int(pool.pop()))
    return np.array(sorted(pick, key=lambda i: (ds.labels[i], i)), dtype=np.int64)


def export_gradcam(run: str | Path, dest: str | Path, ds: FaceDataset, faces: np.ndarray, *,
                   device: str | None = "cpu", layer: str | None = None) -> Path:
    """Write ``dest/gradcam.npz``: Grad-CAM of the run's selected weights on ``faces``.

    Contents: ``index`` (K,) dataset positions, ``label`` (K,) int8, ``pred`` (K,) int8 (the
    centre-crop prediction), ``cam`` (K, 44, 44) float16 in [0, 1] for the true class,
    ``image`` (K, 48, 48) uint8 pixels, ``layer`` the Grad-CAM target layer's name (str, e.g.
    "stage3") and ``layer_size`` (2,) int its maps' (h, w), which Fig. 8 names.

    ``layer``: Grad-CAM's target layer (:func:`lkr.gradcam.resolve_layer`); None = its default
    :data:`lkr.gradcam.DEFAULT_LAYER`.

    Raises:
        RunError: for CK+-like data: CK+ faces are never stored.
    """
    import torch

    from lkr.augment import center_crop
    from lkr.gradcam import DEFAULT_LAYER, cam_arrays, resolve_layer
    from lkr.runfolder import load_run_model, save_npz

    if dataset_key(ds) == "ckplus":
        raise RunError(f"{ds.name}: Grad-CAM faces are stored for FER2013-like data only (CK+'s licence)")
    model, cfg, _ = load_run_model(run, device=device or "cpu")
    masks = _masks(ds, faces, cfg)
    labels = ds.labels[faces]
    target = resolve_layer(model, DEFAULT_LAYER if layer is None else layer)
    cams = cam_arrays(model, ds.images[faces], masks, labels, crop=cfg.crop, device=device or "cpu",
                      layer=target.name)
    dev = next(model.parameters()).device
    with torch.no_grad():
        x, m = center_crop(torch.from_numpy(ds.images[faces]), None if masks is None else torch.from_numpy(masks),
                           crop=cfg.crop)
        x, m = x.to(dev), (None if m is None else m.to(dev))
        pred = model(x, m if model.local_branch else None)["logits"].argmax(1).cpu().numpy()
    dest = Path(dest)
    _file_faces(dest.parent / FACES_FILE, np.asarray(faces), ds.images[faces])
    save_npz(dest / "gradcam.npz", index=faces, label=labels.astype(np.int8), pred=pred.astype(np.int8),
             cam=cams.astype(np.float16), layer=np.array(target.name),
             layer_size=np.array(target.size, dtype=np.int64))
    return dest / "gradcam.npz"


def _file_faces(path: Path, index: np.ndarray, images: np.ndarray) -> None:
    """Add the faces (dataset index, pixels) to the scale's :data:`FACES_FILE` (written
    atomically; a face already there must have the same pixels)."""
    from lkr.runfolder import save_npz

    have = _npz(path) or {"index": np.zeros(0, np.int64), "image": np.zeros((0, *images.shape[1:]), np.uint8)}
    known = {int(i): k for k, i in enumerate(have["index"])}
    new = [k for k, i in enumerate(index) if int(i) not in known]
    for k, i in enumerate(index):
        if int(i) in known and not np.array_equal(have["image"][known[int(i)]], images[k]):
            raise RunError(f"{path}: face {int(i)} has other pixels there (results of another dataset?)")
    if new:
        save_npz(path, index=np.concatenate([have["index"], np.asarray(index)[new]]).astype(np.int64),
                 image=np.concatenate([have["image"], images[new]]).astype(np.uint8))


def _gradcam(d: Path) -> dict[str, np.ndarray] | None:
    """A configuration's ``gradcam.npz``, with its faces' pixels from the scale's
    :data:`FACES_FILE` (an older file holding them itself is read as it is)."""
    g = _npz(d / "gradcam.npz")
    if g is None or "image" in g:
        return g
    faces = _npz(d.parent / FACES_FILE)
    if faces is None:
        raise RunError(f"{d / 'gradcam.npz'}: its faces' pixels are in {d.parent / FACES_FILE}, which is missing")
    at = {int(i): k for k, i in enumerate(faces["index"])}
    missing = [int(i) for i in g["index"] if int(i) not in at]
    if missing:
        raise RunError(f"{d.parent / FACES_FILE}: lacks face {missing[0]} of {d / 'gradcam.npz'}")
    g["image"] = faces["image"][[at[int(i)] for i in g["index"]]]
    return g


def _masks(ds: FaceDataset, idx: np.ndarray, cfg) -> np.ndarray | None:
    """(K,48,48) float32 local key region masks of ``ds[idx]`` (landmarks attached if missing)."""
    if not ds.has_landmarks:
        from lkr.landmarks import attach_landmarks

        ds = attach_landmarks(ds)
    from lkr.regions import run_masks

    return run_masks(cfg, ds.boxes[idx], ds.points[idx], size=ds.images.shape[1])


def pool_folds(config_dir: str | Path) -> dict[str, Any]:
    """Pool a CK+ configuration's fold results and write ``config_dir/metrics.json``.

    The pooled accuracy, per-class accuracies and confusion matrix are computed from the test
    predictions of all folds together (every image is tested once over the k folds); the mean
    and standard deviation of the per-fold accuracies are added.

    Returns:
        The pooled metrics dict.

    Raises:
        RunError: when ``config_dir`` has no finished fold.
    """
    from lkr.evaluate import classification_metrics
    from lkr.runfolder import write_json

    config_dir = Path(config_dir)
    folds = sorted((p for p in config_dir.glob("fold*") if (p / "metrics.json").exists()),
                   key=lambda p: int(p.name[4:]))
    if not folds:
        raise RunError(f"{config_dir}: no finished folds")
    # Pool only folds of one and the same run configuration: a later run with other settings
    # (e.g. --quick or other epochs) into the same folder must not mix with stale folds.
    cfgs = {p: json.loads((p / "config.json").read_text()) if (p / "config.json").exists() else None for p in folds}
    stale = [p.name for p in folds if cfgs[p] != cfgs[folds[-1]]]
    if stale:
        raise RunError(f"{config_dir}: folds {', '.join(stale)} were trained with another config than "
                       f"{folds[-1].name}; delete them or rerun them")
    fm = [json.loads((p / "metrics.json").read_text()) for p in folds]
    labels, preds = [], []
    for p in folds:
        z = np.load(p / "predictions.npz")
        labels.append(z["label"].astype(np.int64))
        preds.append(z["pred"].astype(np.int64))
        names = tuple(str(c) for c in z["class_names"])
    m = classification_metrics(np.concatenate(labels), np.concatenate(preds), names)
    accs = np.array([f["accuracy"] for f in fm])
    first = fm[0]
    m.update({
        "pooled": True, "folds": [int(p.name[4:]) for p in folds], "n_folds_total": first.get("folds"),
        "fold_accuracy": accs.tolist(), "fold_accuracy_mean": float(accs.mean()),
        "fold_accuracy_std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
        **{k: first.get(k) for k in ("variant", "scale", "width", "triplet_lambda", "local_branch", "epochs",
                                     "dataset", "kind", "device", "kit_version", "data", "threads")},
        # every fold's precision (bf16 where this machine measured it faster): the titles name it
        "precision": [f["precision"] for f in fm if f.get("precision")],
        "train_seconds": float(sum(f.get("train_seconds", 0.0) for f in fm)),
    })
    write_json(config_dir / "metrics.json", m, compact=True)
    return m


# --- loading --------------------------------------------------------------------------------
@dataclass
class ConfigResult:
    """One configuration's artifacts on one dataset role.

    Attributes:
        name: configuration name (e.g. "lkrnet-l0.4").
        metrics: metrics.json (pooled over folds for CK+).
        histories: per-epoch history of each run (one for FER2013, one per fold for CK+).
        predictions: test labels / predictions (pooled over folds for CK+): {"label", "pred"}.
        umap: contents of umap.npz or None.
        gradcam: contents of gradcam.npz or None.
        config: config.json of the (first) run.
        seed: the runs' seed (config.json's; 0 when unknown).
        other_seeds: the same configuration's runs at other seeds ({seed: ConfigResult},
            from ``seed<s>/`` subfolders; empty when there are none).
        choice_subjects: the dataset role's :data:`SELECTION_SUBJECTS` record ({"subjects",
            "why"}), or None: test subjects that fed a design choice of this scale.
    """

    name: str
    metrics: dict[str, Any]
    histories: list[list[dict[str, Any]]] = field(default_factory=list)
    predictions: dict[str, np.ndarray] | None = None
    umap: dict[str, np.ndarray] | None = None
    gradcam: dict[str, np.ndarray] | None = None
    config: dict[str, Any] | None = None
    seed: int = 0
    other_seeds: dict[int, "ConfigResult"] = field(default_factory=dict, repr=False)
    choice_subjects: dict[str, Any] | None = None

    def by_seed(self) -> dict[int, "ConfigResult"]:
        """Every seed's result, this one's included, in seed order."""
        return dict(sorted({self.seed: self, **self.other_seeds}.items()))

    def seed_predictions(self) -> dict[int, dict[str, np.ndarray]]:
        """{seed: test predictions} of the seeds that stored them (the input of
        :func:`lkr.stats.compare`)."""
        return {s: r.predictions for s, r in self.by_seed().items() if r.predictions is not None}


def _npz(path: Path) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def exported_history(history: list[dict[str, Any]] | dict[str, list[Any]]) -> dict[str, list[Any]]:
    """A history as ``results/`` keeps it: by column (:func:`history_columns`), the timing fields
    (:data:`TIMING_FIELDS`) rounded to :data:`TIMING_DIGITS` significant digits; written with
    :data:`HISTORY_DIGITS`."""
    cols = history_columns(history_rows(history))
    for k in TIMING_FIELDS:
        if k in cols:
            cols[k] = [float(f"{v:.{TIMING_DIGITS}g}") if isinstance(v, float) else v for v in cols[k]]
    return cols


def history_columns(history: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """A run's history (one dict per epoch) by column: {field: [value per epoch]}, None where an
    epoch lacks the field (e.g. no selection that epoch). The field names are written once
    instead of once per epoch: 40 % of the bytes."""
    keys = list(dict.fromkeys(k for e in history for k in e))
    return {k: [e.get(k) for e in history] for k in keys}


def history_rows(history: list[dict[str, Any]] | dict[str, list[Any]]) -> list[dict[str, Any]]:
    """One dict per epoch, from either form (:func:`history_columns` undone; None fields left out)."""
    if isinstance(history, list):
        return history
    return [{k: v for k, v in zip(history, row) if v is not None} for row in zip(*history.values())]


def load_config_result(config_dir: str | Path, *, seeds: bool = True) -> ConfigResult | None:
    """Load one ``results/<scale>/<key>/<config>`` folder; None when it holds no metrics.

    Its ``seed<s>/`` subfolders (other seeds, same layout) fill ``other_seeds`` when ``seeds``.
    Predictions keep the dataset ``index`` (and CK+'s ``subject``) where the runs stored them,
    so that runs can be paired image by image (:mod:`lkr.stats`).
    """
    d = Path(config_dir)
    metrics = _json(d / "metrics.json")
    if metrics is None:
        return None
    fold_dirs = sorted((p for p in d.glob("fold*") if (p / "metrics.json").exists()), key=lambda p: int(p.name[4:]))
    run_dirs = fold_dirs or [d]
    histories = [history_rows(h) for h in (_json(p / "history.json") for p in run_dirs) if h is not None]
    preds = [_npz(p / "predictions.npz") for p in run_dirs]
    preds = [p for p in preds if p is not None]
    predictions = None
    if preds:
        predictions = {"label": np.concatenate([p["label"] for p in preds]).astype(np.int64),
                       "pred": np.concatenate([p["pred"] for p in preds]).astype(np.int64)}
        for k in ("index", "subject"):
            if all(k in p for p in preds):
                predictions[k] = np.concatenate([p[k] for p in preds])
    config = _json(run_dirs[0] / "config.json")
    seed = int((config or {}).get("seed") or 0)
    others: dict[int, ConfigResult] = {}
    if seeds:
        for p in sorted((p for p in d.glob("seed*") if p.is_dir() and p.name[4:].isdigit()), key=lambda p: int(p.name[4:])):
            r = load_config_result(p, seeds=False)
            if r is None:
                continue
            folder_seed = int(p.name[4:])  # the layout names the seed; the run's own record must agree
            if r.config is not None and r.seed != folder_seed:
                raise ValueError(f"{p}: its runs were trained with seed {r.seed}, not {folder_seed}")
            if folder_seed == seed:
                raise ValueError(f"{p}: seed {seed} is also the seed of {d}'s own runs")
            r.name, r.seed = d.name, folder_seed
            others[folder_seed] = r
    return ConfigResult(name=d.name, metrics=metrics, histories=histories, predictions=predictions,
                        umap=_npz(d / "umap.npz"), gradcam=_gradcam(d), config=config,
                        seed=seed, other_seeds=others)


def load_results(results_dir: str | Path = "results/full") -> dict[str, dict[str, ConfigResult]]:
    """Everything the figures of one scale need, from that scale's folder (``results/<scale>``).

    Returns:
        {"fer2013": {config: ConfigResult}, "ckplus": {...}}; roles or configurations without
        results are absent (an empty dict when nothing is there).
    """
    root = Path(results_dir)
    out: dict[str, dict[str, ConfigResult]] = {}
    for key in KEYS:
        d = root / key
        if not d.is_dir():
            continue
        found = {}
        choice = _json(d / SELECTION_SUBJECTS)
        for c in sorted(p for p in d.iterdir() if p.is_dir()):
            r = load_config_result(c)
            if r is not None:
                for x in r.by_seed().values():
                    x.choice_subjects = choice
                found[c.name] = r
        if found:
            out[key] = found
    return out


def untouched_accuracy(r: ConfigResult) -> float | None:
    """Accuracy on the test images of the subjects that fed no design choice (all but
    ``r.choice_subjects``); None without such a record or without subject ids."""
    p = r.predictions
    if not r.choice_subjects or p is None or "subject" not in p:
        return None
    keep = ~np.isin(np.asarray(p["subject"]).astype(str), list(r.choice_subjects["subjects"]))
    return float((p["label"][keep] == p["pred"][keep]).mean()) if keep.any() else None


def load_scales(results_dir: str | Path = "results") -> dict[str, dict[str, dict[str, ConfigResult]]]:
    """Every scale's results in a results folder: {scale: :func:`load_results` of
    ``results_dir/<scale>``}, in the order of :data:`lkr.config.SCALE_NAMES`; scales without
    results are absent.

    A folder in the layout from before scales (``results_dir/<key>/<config>``) is read as the
    scale its records name (:func:`lkr.config.scale_of`: "full" when they name none, "demo" for
    the demo set).

    Raises:
        RunError: when such an old-layout folder and a scale folder hold the same scale.
    """
    root = Path(results_dir)
    out = {s: r for s in SCALE_NAMES if (r := load_results(root / s))}
    old = load_results(root)
    if old:
        first = next(iter(next(iter(old.values())).values()))
        scale = scale_of({**(first.config or {}), **first.metrics})
        if scale in out:
            raise RunError(f"{root}: holds {scale}-scale results both in {', '.join(old)}/ (the layout from before "
                           f"scales) and in {scale}/; move the old folders into {root / scale}")
        out[scale] = old
    order = {s: i for i, s in enumerate(SCALE_NAMES)}
    return dict(sorted(out.items(), key=lambda item: order.get(item[0], len(order))))


CAPACITY_ARMS: tuple[tuple[str, str], ...] = (("lkrnet", "stage 5 (the paper's)"), ("lkrnet-s1", "stage 1"))
"""The LKRNet arms the capacity table and figure set against VGG19 at each width: the paper's
(mask on the last 2×2 maps) and the mask at stage 1 (``docs/real-faces-design.md``) once it has
every seed of its design (:data:`BEYOND_SEEDS`)."""
BEYOND_SEEDS: dict[str, tuple[int, ...]] = {"lkrnet-s1": (0, 1, 2)}
"""Arms beyond the paper shown in the README's summary and capacity tables only once they have
these seeds (``docs/real-faces-design.md``: a one-seed row was misread before)."""


def shown(res: dict, arm: str) -> bool:
    """Whether ``arm`` of ``res`` (one scale's results of one dataset) goes into the summary and
    capacity tables: present, and with every seed :data:`BEYOND_SEEDS` asks of it."""
    return arm in res and set(BEYOND_SEEDS.get(arm, ())) <= set(res[arm].by_seed())


def capacity_comparisons(res: dict) -> list[tuple[str, str, Any]]:
    """(arm, mask label, arm − VGG19) for each arm of :data:`CAPACITY_ARMS` :func:`shown` in ``res``
    (one scale's FER2013 results), over the seeds both have."""
    from lkr.stats import compare

    return [(arm, label, compare(arm, "vgg19", res[arm].seed_predictions(), res["vgg19"].seed_predictions()))
            for arm, label in CAPACITY_ARMS if shown(res, arm)]


def capacity_points(root: str | Path) -> list[tuple[str, dict]]:
    """(scale, FER2013 results) of every scale trained from scratch on FER2013 that has both VGG19
    and LKRNet, narrowest first."""
    from lkr.config import FINE_TUNE

    out = []
    for scale in SCALE_NAMES:
        if scale in FINE_TUNE or scale == "demo":
            continue
        res = load_results(Path(root) / scale).get("fer2013", {})
        if "vgg19" in res and "lkrnet" in res:
            out.append((scale, res))
    return sorted(out, key=lambda item: float(item[1]["lkrnet"].metrics.get("width") or 1.0))
