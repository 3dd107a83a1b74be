"""Every table and figure of the paper, drawn from run artifacts (:mod:`lkr.results`).

One helper saves figures: :func:`save_figure` writes ``<name>_<scale>.png`` and ``.pdf`` at a
fixed size per figure and a fixed DPI into ``figures/`` (or the folder given), named after the
paper's figure or table number (:data:`FIGURES`) and the scale the runs were trained at
(:data:`lkr.config.SCALES`: ``table3_fer2013_cpu``, ``fig7_confusion_fer2013_full``; ``_demo``
for the demo set). Tables are also written as ``.md`` and ``.csv``. Every figure drawn from
results says its scale in its title too (:func:`results_scale_label`: the scale, the width, the
epochs and the device of the runs). Plot functions take loaded artifacts, never a dataset or a
model, so :func:`redraw_all` (``lkr figures`` / ``make figures``) redraws everything, scale by
scale, in seconds without data, GPU or UMAP (2-D coordinates are computed at export time). The
one exception is Fig. 2, which shows faces and masks, involves no training (so no scale) and is
drawn from a dataset (:func:`fig2_local_key_regions`).

Figures are built on :class:`matplotlib.figure.Figure` (no pyplot state), so headless runs
leak nothing; in Jupyter (``%matplotlib inline``) a returned Figure is shown as the cell's result.
"""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure

from lkr.classes import CANONICAL, short
from lkr.config import scale_label, scale_of
from lkr.paper import OURS_TO_PAPER, overall_note, paper_table, weighted_accuracy

DPI = 120
# name -> (width, height) in inches: the fixed size of each figure.
FIGURES: dict[str, tuple[float, float]] = {
    "fig2_local_key_regions": (8.0, 3.8),
    "fig2_key_regions_astronaut": (10.0, 2.9),
    "fig_capacity_fer2013": (9.0, 3.6),
    "fig6_embeddings": (13.0, 4.6),
    "fig7_confusion_ckplus": (11.0, 4.6),
    "fig7_confusion_fer2013": (11.0, 4.6),
    "fig8_gradcam": (8.0, 6.6),
    "fig9_accuracy_ckplus": (6.5, 4.2),
    "fig9_accuracy_fer2013": (6.5, 4.2),
    "table2_ckplus": (11.0, 4.2),
    "table3_fer2013": (11.0, 4.2),
    "differences_ckplus": (7.5, 3.6),
    "differences_fer2013": (7.5, 3.6),
}
TABLES = {"ckplus": "table2_ckplus", "fer2013": "table3_fer2013"}
CONFUSIONS = {"ckplus": "fig7_confusion_ckplus", "fer2013": "fig7_confusion_fer2013"}
LABELS = {"vgg19": "VGG19", "baseline1": "Baseline 1", "baseline2": "Baseline 2", "lkrnet": "LKRNet (λ=0.2)",
          "lkrnet-l0.4": "LKRNet (λ=0.4)", "lkrnet-cover": "LKRNet (mask cover)",
          "lkrnet-s1": "LKRNet, mask at stage 1", "face-s1": "face mask, stage 1", "uniform-s1": "uniform mask, stage 1",
          "off-landmark-s1": "off-landmark regions, stage 1"}
CONFIGS_ORDER = ("vgg19", "baseline1", "baseline2", "lkrnet")
_PDF_META = {"CreationDate": None, "Producer": None, "Creator": None}  # reproducible PDFs
_CLASS_NAMES = set(CANONICAL)


PNG_ONLY = frozenset({"fig8_gradcam"})
"""Figures saved as PNG only: Fig. 8 is a grid of faces and heat maps, raster either way, and its
PDF (the same pixels) was 280 KB a scale of what travels with every GPU call."""


def figure_file(name: str, scale: str | None = None) -> str:
    """The file name (without suffix) of figure ``name`` at ``scale``: ``<name>_<scale>``, or
    ``<name>`` without a scale (Fig. 2, which involves no training)."""
    return f"{name}_{scale}" if scale else name


def _palette_png(path: Path) -> None:
    """Rewrite a PNG with a 256-colour palette (Pillow's median cut, no dither): a third of the
    bytes of the RGBA file (2.3 -> 0.9 MB for the committed figures), which travel with every GPU
    call; a vector copy of each plot is in its PDF."""
    from PIL import Image

    with Image.open(path) as im:
        q = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    q.save(path, optimize=True)


def save_figure(fig: Figure, name: str, out_dir: str | Path = "figures", scale: str | None = None) -> list[Path]:
    """Save ``fig`` as ``<out_dir>/<name>_<scale>.png`` and ``.pdf`` at the figure's fixed size.

    Args:
        fig: the figure (resized to ``FIGURES[name]``).
        name: one of :data:`FIGURES` (the paper's figure or table number).
        out_dir: folder (created).
        scale: the scale of the runs drawn ("full", "cpu", "demo"; :func:`figure_file`); None
            for a figure of no run (Fig. 2).

    Returns:
        [png path, pdf path].

    Raises:
        KeyError: for a name not in :data:`FIGURES`.
    """
    if name not in FIGURES:
        raise KeyError(f"unknown figure name {name!r}; choose from {', '.join(FIGURES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig.set_size_inches(*FIGURES[name])
    stem = figure_file(name, scale)
    paths = [out / f"{stem}.png"] + ([] if name in PNG_ONLY else [out / f"{stem}.pdf"])
    fig.savefig(paths[0], dpi=DPI)
    _palette_png(paths[0])
    if len(paths) > 1:
        fig.savefig(paths[1], dpi=DPI, metadata=_PDF_META)
    return paths


def _new(name: str, **kw: Any) -> Figure:
    return Figure(figsize=FIGURES[name], dpi=100, layout="constrained", **kw)


def _dataset_label(metrics: dict[str, Any]) -> str:
    name = str(metrics.get("dataset") or "")
    return f"{name} (synthetic demo data)" if name.startswith("demo") else name


def _records(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each run's config.json and metrics.json in one dict (every seed's), LKRNet's first."""
    order = sorted(results, key=lambda c: c != "lkrnet")
    runs = [x for c in order for x in (results[c].by_seed().values() if hasattr(results[c], "by_seed")
                                       else [results[c]])]
    return [{**(r.config or {}), **r.metrics} for r in runs]


def scale_of_results(results: dict[str, Any]) -> str:
    """The scale one dataset role's results were trained at, as their records say
    (:func:`lkr.config.scale_of`: "full" for records from before scales)."""
    recs = _records(results)
    return scale_of(recs[0]) if recs else "full"


def results_scale_label(results: dict[str, Any], scale: str | None = None) -> str:
    """The title line that names the scale of one dataset role's results
    (:func:`lkr.config.scale_label`), e.g. "CPU scale: VGG19 at 1/4 width, 24 epochs, AMD EPYC,
    2 threads".

    Width and network are LKRNet's run's (else the first configuration's); the epochs are a
    range when the configurations differ; every device the runs were trained on is named.

    Args:
        results: {config: ConfigResult} of one dataset role.
        scale: the scale (None: as the records say).

    Returns:
        the label ("" when ``results`` is empty).
    """
    recs = _records(results)
    if not recs:
        return ""
    info = dict(recs[0])
    info["scale"] = scale or scale_of(info)
    epochs = sorted({int(r["epochs"]) for r in recs if r.get("epochs") is not None})
    if len(epochs) > 1:
        info["epochs"] = f"{epochs[0]}–{epochs[-1]}"
    info["device"] = list(dict.fromkeys(str(r["device"]) for r in recs if r.get("device")))
    return scale_label(info)


def _with_scale(title: str, results: dict[str, Any], scale: str | None, width: int = 0) -> str:
    """``title`` and, on a line of its own (wrapped at ``width`` characters when > 0), the scale."""
    line = results_scale_label(results, scale)
    if width and line:
        line = textwrap.fill(line, width, break_on_hyphens=False)
    return f"{title}\n{line}" if line else title


# --- Fig. 2 ---------------------------------------------------------------------------------
def fig2_local_key_regions(ds: Any, alpha: float = 0.3, seed: int = 0) -> Figure:
    """Fig. 2: one face per class, its five landmarks and local key regions, and the mask.

    Rows: the face with its landmarks, the region mask M over the face, the masked face
    p' = p * M shown at input resolution.

    The face of each class is a seeded choice (:func:`fig2_faces`) among its faces whose
    landmarks MTCNN detected with all five points well inside the image, else among its
    detected faces, else among all. A face whose landmarks are the template fallback
    (``ds.detected`` False: no face was found, the dataset's mean face was used) is marked in
    red, "template landmarks", under the face.

    Args:
        ds: a :class:`lkr.dataset.FaceDataset` with landmarks (FER2013 or demo faces).
        alpha: region size as a fraction of the face box.
        seed: which face of each class.

    Raises:
        DataError: for real CK+ data (its licence forbids publishing its faces).
    """
    from matplotlib.patches import Rectangle

    from lkr.errors import DataError
    from lkr.regions import region_masks

    if str(ds.name).startswith("ckplus"):
        raise DataError(f"{ds.source}: Fig. 2 never shows CK+ faces (CK+'s licence); use FER2013 or demo faces")
    if not ds.has_landmarks:
        raise DataError(f"{ds.source}: Fig. 2 needs landmarks (lkr.landmarks.attach_landmarks)")
    pick = fig2_faces(ds, seed)
    template = fig2_template_faces(ds, pick)
    ok = [i for i in pick if i >= 0]
    masks = dict(zip(ok, region_masks(ds.boxes[ok], ds.points[ok], alpha=alpha, size=ds.images.shape[1])))
    fig = _new("fig2_local_key_regions")
    axes = fig.subplots(3, len(pick), squeeze=False)
    for col, i in enumerate(pick):
        for ax in axes[:, col]:
            ax.set_axis_off()
        if i < 0:
            continue
        img = ds.images[i]
        axes[0, col].imshow(img, cmap="gray", vmin=0, vmax=255)
        axes[0, col].scatter(ds.points[i, :, 0], ds.points[i, :, 1], s=6, c="#ff3b30")
        axes[0, col].set_title(short(ds.class_names[ds.labels[i]]), fontsize=9)
        if i in template:
            axes[0, col].text(0.5, -0.03, TEMPLATE_NOTE, transform=axes[0, col].transAxes, ha="center", va="top",
                              fontsize=6, color=TEMPLATE_COLOR)
            axes[0, col].add_patch(Rectangle((0, 0), 1, 1, transform=axes[0, col].transAxes, fill=False,
                                             edgecolor=TEMPLATE_COLOR, linewidth=1.5, clip_on=False))
        axes[1, col].imshow(img, cmap="gray", vmin=0, vmax=255)
        axes[1, col].imshow(masks[i], cmap="magma", alpha=0.45, vmin=0, vmax=1)
        axes[2, col].imshow(img * masks[i], cmap="gray", vmin=0, vmax=255)
    for row, label in enumerate(("face + landmarks", "mask M", "face × M")):
        axes[row, 0].text(-0.08, 0.5, label, transform=axes[row, 0].transAxes, rotation=90, ha="right",
                          va="center", fontsize=8)
    note = f"\nred: {TEMPLATE_NOTE} (no face detected; the dataset's mean face)" if template else ""
    fig.suptitle(f"Fig. 2  Local key regions (α = {alpha}) — {_dataset_label({'dataset': ds.name})}{note}",
                 fontsize=10)
    return fig


def astronaut_face() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The face of scikit-image's public-domain ``astronaut`` as training prepares a face: the
    48x48 grayscale crop, the MTCNN box and the five points in crop coordinates. The MTCNN
    numbers are read from ``lkr/data/astronaut_face.json`` (``scripts/astronaut_face.py``), so
    no detector runs here.

    Returns:
        (image (48, 48) uint8, box48 (4,) float32, points48 (5, 2) float32).
    """
    import json
    from importlib.resources import files

    from PIL import Image
    from skimage import data

    from lkr.readers import square_crop

    rec = json.loads(files("lkr").joinpath("data/astronaut_face.json").read_text())
    gray = Image.fromarray(data.astronaut()).convert("L")
    image, region = square_crop(gray, np.asarray(rec["box"], np.float32))
    if list(region) != rec["region"]:  # the crop code changed since the record was written
        raise ValueError(f"astronaut crop {region} differs from the record's {rec['region']}; "
                         "run scripts/astronaut_face.py again")
    return image, np.asarray(rec["box48"], np.float32), np.asarray(rec["points48"], np.float32).reshape(5, 2)


def fig2_key_regions_on_face(image: np.ndarray, box48: np.ndarray, points48: np.ndarray, *, alpha: float = 0.3,
                             crop: int = 44, pools: int = 4, title: str = "") -> Figure:
    """Fig. 2 on one face, step by step (Eq. 1-4): the five landmarks and their rectangles of
    ``alpha`` x the face box (Eq. 1-2), the mask M of Eq. 3 (max-merged), the masked face
    p' = p x M, and M brought to the last 2x2 feature maps (Eq. 4's M↓) by both poolings the kit
    offers ("grid", the default, and "cover"; :func:`lkr.model.pool_mask`), on the centre crop.
    """
    import torch
    from matplotlib.patches import Rectangle

    from lkr.model import pool_mask
    from lkr.regions import region_masks

    m = region_masks(box48[None], points48[None], alpha=alpha, size=image.shape[0])[0]
    o = (image.shape[0] - crop) // 2
    mc = torch.from_numpy(np.ascontiguousarray(m[o:o + crop, o:o + crop]))[None, None]
    side = crop >> pools
    pooled = {how: pool_mask(mc, (side, side), how=how, pools=pools)[0, 0].numpy() for how in ("grid", "cover")}
    fig = _new("fig2_key_regions_astronaut")
    axes = fig.subplots(1, 5)
    w, h = (box48[2:] - box48[:2]) * alpha
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=255)
    for x, y in points48:
        axes[0].add_patch(Rectangle((x - 0.5 - w / 2, y - 0.5 - h / 2), w, h, fill=False, edgecolor="#ffcc00", lw=1))
    axes[0].scatter(points48[:, 0] - 0.5, points48[:, 1] - 0.5, s=8, c="#ff3b30")  # pixel centres at j + 0.5
    axes[0].set_title(f"landmarks, regions\n(α = {alpha} of the face box)", fontsize=8)
    axes[1].imshow(m, cmap="magma", vmin=0, vmax=1)
    axes[1].set_title("mask M (Eq. 3)", fontsize=8)
    axes[2].imshow(image * m, cmap="gray", vmin=0, vmax=255)
    axes[2].set_title("face × M", fontsize=8)
    for ax, how in zip(axes[3:], ("grid", "cover")):
        ax.imshow(pooled[how], cmap="magma", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(pooled[how]):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="w" if v < 0.5 else "k")
        ax.set_title(f"M↓ on the {side}×{side} maps,\n\"{how}\" pooling" + (" (default)" if how == "grid" else ""),
                     fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title or "Fig. 2  Local key regions on a public-domain face (NASA's Eileen Collins, "
                 "scikit-image's astronaut), 48×48 as in training", fontsize=9)
    return fig


TEMPLATE_NOTE = "template landmarks"
TEMPLATE_COLOR = "#d0021b"
FIG2_MARGIN = 3.0
"""Fig. 2 prefers faces whose five landmarks lie at least this many pixels inside the image."""


def fig2_faces(ds: Any, seed: int = 0) -> list[int]:
    """The face of each class that Fig. 2 shows: a seeded random one among the class's faces
    with detected landmarks all :data:`FIG2_MARGIN` px inside the image; if none, among its
    detected faces; if none, among all its faces (template landmarks, marked in the figure).

    Returns:
        one dataset position per class (-1 for a class without images).
    """
    rng = np.random.default_rng(seed)
    n, side = len(ds.labels), ds.images.shape[1]
    detected = np.ones(n, bool) if ds.detected is None else np.asarray(ds.detected, bool)
    pts = np.asarray(ds.points, np.float32)
    inside = ((pts >= FIG2_MARGIN) & (pts <= side - FIG2_MARGIN)).all(axis=(1, 2))
    pick = []
    for c in range(len(ds.class_names)):
        of_c = ds.labels == c
        for sel in (of_c & detected & inside, of_c & detected, of_c):
            idx = np.flatnonzero(sel)
            if len(idx):
                break
        pick.append(int(rng.choice(idx)) if len(idx) else -1)
    return pick


def fig2_template_faces(ds: Any, pick: Sequence[int]) -> set[int]:
    """The picked faces whose landmarks are the template (``ds.detected`` False)."""
    if ds.detected is None:
        return set()
    return {int(i) for i in pick if i >= 0 and not bool(ds.detected[i])}


# --- Tables 2 and 3 ---------------------------------------------------------------------------
class MeanSD(float):
    """A table cell that is the mean over seeds (or folds), carrying its sample standard
    deviation ``sd``: shown as "67.9 ± 0.4"; the CSV keeps the mean and gives the spread its
    own ``<column> sd`` column."""

    sd: float

    def __new__(cls, mean: float, sd: float) -> "MeanSD":
        obj = super().__new__(cls, mean)
        obj.sd = float(sd)
        return obj


def _spread(values: Sequence[float]) -> float | None:
    """The mean of per-seed values, as a :class:`MeanSD` when there are two or more."""
    v = [float(x) for x in values if x is not None]
    if not v:
        return None
    return MeanSD(np.mean(v), np.std(v, ddof=1)) if len(v) > 1 else v[0]


FOLD_COLUMN = "per-fold accuracy"
UNTOUCHED_COLUMN = "untouched subjects"
SEED_COLUMN = "seeds"


def results_table(key: str, results: dict[str, Any]) -> list[dict[str, Any]]:
    """Table 2 (``key="ckplus"``) or Table 3 (``"fer2013"``): per-class accuracy (%) of the
    paper's rows and of our configurations side by side, plus overall accuracy.

    The paper gives no overall accuracy; its rows' "overall" is their per-class accuracies
    weighted by our test set's class counts (:func:`lkr.paper.weighted_accuracy`), so the two
    columns compare on the same class mix. The saved table marks those cells with "*" and
    says so in a footnote (:func:`table_note`, :func:`save_table`).

    Seeds: where a configuration was trained at several seeds (:mod:`lkr.results`), its cells
    are the mean over the seeds with their standard deviation (:class:`MeanSD`), and a
    "seeds" column counts them. CK+: a "per-fold accuracy" column gives the mean and standard
    deviation of the per-fold accuracies, over every fold of every seed (the overall column
    pools the folds' predictions). "n" is the test images of one seed.

    Args:
        key: "ckplus" or "fer2013".
        results: {config: :class:`lkr.results.ConfigResult`} for this dataset (may be empty).

    Returns:
        rows, each {"model", "source" ("paper" or the dataset name), <class>: % or None,
        "overall": % or None, "n": test images or None, ["per-fold accuracy"], ["seeds"]}; for
        each of the paper's configurations the paper's row is followed by ours; other methods
        come last.
    """
    table = paper_table(key)
    classes = list(next(iter(table.values())).keys())
    counts = _test_counts(results)
    seeded = any(len(r.by_seed()) > 1 for r in results.values() if hasattr(r, "by_seed"))
    folds = key == "ckplus"
    untouched = any(getattr(r, "choice_subjects", None) for r in results.values())

    def extra(row: dict[str, Any], fold: Any = None, seeds: Any = None, clean: Any = None) -> dict[str, Any]:
        if folds:
            row[FOLD_COLUMN] = fold
        if untouched:
            row[UNTOUCHED_COLUMN] = clean
        if seeded:
            row[SEED_COLUMN] = seeds
        return row

    def paper_row(name: str) -> dict[str, Any]:
        row = {"model": name, "source": "paper", **table[name]}
        row["overall"] = None if counts is None else _round(weighted_accuracy(table[name], counts))
        row["n"] = None
        return extra(row)

    def our_row(cfg: str) -> dict[str, Any]:
        runs = list(results[cfg].by_seed().values()) if hasattr(results[cfg], "by_seed") else [results[cfg]]
        ms = [r.metrics for r in runs]
        m = results[cfg].metrics
        row = {"model": LABELS.get(cfg, cfg), "source": str(m.get("dataset", "ours"))}
        row.update({c: _round(_spread([None if x["per_class"].get(c) is None else 100 * x["per_class"][c]
                                       for x in ms])) for c in classes})
        row["overall"] = _round(_spread([100 * x["accuracy"] for x in ms]))
        row["n"] = m.get("n")
        fold = None
        accs = [a for x in ms for a in x.get("fold_accuracy", [])]
        if len(accs) > 1:
            fold = _round(MeanSD(100 * np.mean(accs), 100 * np.std(accs, ddof=1)))
        elif "fold_accuracy_mean" in m:
            fold = _round(MeanSD(100 * m["fold_accuracy_mean"], 100 * m.get("fold_accuracy_std", 0.0)))
        clean = None
        if untouched:
            from lkr.results import untouched_accuracy

            vals = [untouched_accuracy(r) for r in runs]
            clean = None if None in vals else _round(_spread([100 * v for v in vals]))
        return extra(row, fold, len(runs), clean)

    rows: list[dict[str, Any]] = []
    for cfg, paper_name in OURS_TO_PAPER.items():
        rows.append(paper_row(paper_name))
        if cfg in results:
            rows.append(our_row(cfg))
    rows += [our_row(c) for c in results if c not in OURS_TO_PAPER]
    rows += [paper_row(n) for n in table if n not in OURS_TO_PAPER.values()]
    return rows


def _test_counts(results: dict[str, Any]) -> dict[str, int] | None:
    """Our test set's class counts (the same for every configuration of a real run; LKRNet's first)."""
    order = sorted(results, key=lambda c: c != "lkrnet")
    return next((results[c].metrics["class_counts"] for c in order if results[c].metrics.get("class_counts")), None)


def choice_note(results: dict[str, Any], short: bool = False) -> str:
    """The footnote of a scale whose design was chosen on some test subjects (e.g. ``cpu-ft``):
    which, how many images, and what the "untouched subjects" column is; "" when none did.
    ``short``: one sentence, for figures."""
    from lkr.results import untouched_accuracy

    for r in results.values():
        rec = getattr(r, "choice_subjects", None)
        if rec and r.predictions is not None and "subject" in r.predictions:
            subj = np.asarray(r.predictions["subject"]).astype(str)
            touched = np.isin(subj, list(rec["subjects"]))
            if short and untouched_accuracy(r) is not None:
                return (f"{int(touched.sum())} of the {len(subj)} test images ({len(rec['subjects'])} subjects) fed "
                        "the choice of this scale (docs/cpu-runs.md); the tables also give the accuracy on the "
                        f"other {int((~touched).sum())}.")
            return (f"Untouched subjects: accuracy on the {int((~touched).sum())} test images of the "
                    f"{len(np.unique(subj[~touched]))} subjects that fed no design choice of this scale; the other "
                    f"{int(touched.sum())} images ({len(rec['subjects'])} subjects) did: {rec['why']}"
                    if untouched_accuracy(r) is not None else "")
    return ""


def table_note(results: dict[str, Any]) -> str:
    """The footnote of Table 2 or 3: what the paper rows' overall column is ("" when it is empty)."""
    counts = _test_counts(results)
    if counts is None:
        return ""
    order = sorted(results, key=lambda c: c != "lkrnet")
    name = next((str(results[c].metrics["dataset"]) for c in order if results[c].metrics.get("dataset")),
                "this dataset")
    return overall_note(counts, name)


def _round(v: float | None) -> float | None:
    if isinstance(v, MeanSD):
        return MeanSD(round(float(v), 1), round(v.sd, 1))
    return None if v is None else round(float(v), 1)


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, MeanSD):
        return f"{float(v):.1f} ± {v.sd:.1f}"
    return f"{v:.1f}" if isinstance(v, float) else str(v)


PAPER_OVERALL_BASIS = "paper per-class accuracies weighted by this dataset's test class counts"
"""The CSV's ``overall_basis`` of a paper row (ours: "measured")."""


def _marked(r: dict[str, Any], c: str, note: str) -> str:
    """A cell as shown: the paper rows' overall gets "*" when the table has a footnote."""
    text = _cell(r.get(c))
    return text + "*" if (note and c == "overall" and r.get("source") == "paper" and r.get(c) is not None) else text


def table_markdown(rows: list[dict[str, Any]], note: str = "") -> list[str]:
    """The Markdown lines of a table of :func:`results_table` (header, rule, rows; the paper
    rows' overall marked "*" when there is a ``note``)."""
    cols = list(rows[0].keys()) if rows else ["model"]
    heads = [short(c) if c in _CLASS_NAMES else c for c in cols]
    return ["| " + " | ".join(heads) + " |",
            "|" + "|".join("---" if c in ("model", "source") else "---:" for c in cols) + "|",
            ] + ["| " + " | ".join(_marked(r, c, note) for c in cols) + " |" for r in rows]


def save_table(rows: list[dict[str, Any]], name: str, out_dir: str | Path = "figures",
               title: str = "", note: str = "", scale: str | None = None, footnote: str = "") -> list[Path]:
    """Write a table as ``<name>_<scale>.md``, ``.csv``, and (drawn) ``.png`` / ``.pdf``.

    Args:
        rows: dicts with the same keys (the columns, in order).
        name: "table2_ckplus" or "table3_fer2013".
        out_dir: folder (created).
        title: caption (markdown heading and figure title); each of its lines is a bold line
            of the markdown.
        note: footnote on the paper rows' overall (:func:`table_note`). When given, those cells
            read e.g. "72.2*" in the .md and the drawing, which carry the note under the table;
            the .csv keeps the numbers and gets an ``overall_basis`` column
            (:data:`PAPER_OVERALL_BASIS` for paper rows, "measured" for ours).
        scale: the scale of the runs (:func:`figure_file`).
        footnote: a further footnote (e.g. :func:`choice_note`), under the table in the .md and
            the drawing.

    Returns:
        [md, csv, png, pdf] paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0].keys()) if rows else ["model"]
    stem = figure_file(name, scale)
    md = out / f"{stem}.md"
    lines = [x for ln in title.splitlines() for x in (f"**{ln}**", "")] + table_markdown(rows, note)
    if note:
        lines += ["", f"\\* {note}"]
    if footnote:
        lines += ["", footnote]
    md.write_text("\n".join(lines) + "\n")
    path_csv = out / f"{stem}.csv"
    # a column with means over seeds or folds (MeanSD) is followed by its "<column> sd"
    spread = {c for c in cols for r in rows if isinstance(r.get(c), MeanSD)}
    csv_cols = [x for c in cols for x in ((c, f"{c} sd") if c in spread else (c,))]
    with open(path_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(csv_cols + (["overall_basis"] if note else []))
        for r in rows:
            basis = [] if not note else [
                "" if r.get("overall") is None else PAPER_OVERALL_BASIS if r.get("source") == "paper" else "measured"]
            vals = []
            for c in cols:
                v = r.get(c)
                vals.append("" if v is None else float(v) if isinstance(v, MeanSD) else v)
                if c in spread:
                    vals.append(v.sd if isinstance(v, MeanSD) else "")
            w.writerow(vals + basis)
    return [md, path_csv] + save_figure(table_figure(rows, name, title, note, footnote), name, out, scale)


def table_figure(rows: list[dict[str, Any]], name: str, title: str = "", note: str = "",
                 footnote: str = "") -> Figure:
    """The drawn table of :func:`save_table` (our rows shaded; ``note`` and ``footnote`` under
    the table; every column as wide as its longest cell)."""
    cols = list(rows[0].keys()) if rows else ["model"]
    heads = [short(c) if c in _CLASS_NAMES else c for c in cols]
    fig = _new(name)
    ax = fig.add_subplot()
    ax.set_axis_off()
    cells = [[_marked(r, c, note) for c in cols] for r in rows]
    t = ax.table(cellText=cells or [[""] * len(cols)], colLabels=heads, loc="center", cellLoc="center")
    t.auto_set_font_size(False)
    t.set_fontsize(8)
    t.auto_set_column_width(list(range(len(cols))))  # no label is cut
    t.scale(1, 1.3)
    for (row, _), cell in t.get_celld().items():
        if row > 0 and rows[row - 1]["source"] != "paper":
            cell.set_facecolor("#e8f1fb")
    if title:
        ax.set_title(title, fontsize=10)
    text = "\n".join(x for x in (f"* {note}" if note else "", footnote) if x)
    if text:
        import textwrap

        # supxlabel: constrained layout makes room for it
        fig.supxlabel("\n".join(textwrap.fill(x, 160, break_on_hyphens=False) for x in text.splitlines()),
                      fontsize=7)
    return fig



# --- Fig. 7 ---------------------------------------------------------------------------------
def fig7_confusion(results: dict[str, Any], key: str, configs: Sequence[str] = ("vgg19", "lkrnet"), *,
                   scale: str | None = None) -> Figure:
    """Fig. 7: row-normalised confusion matrices (%) of the given configurations (seaborn).

    Args:
        results: {config: ConfigResult} of one dataset.
        key: "ckplus" or "fer2013" (names the figure).
        configs: which configurations, one panel each (missing ones are skipped).
        scale: the runs' scale for the title (None: as their records say).
    """
    import seaborn as sns

    have = [c for c in configs if c in results]
    fig = _new(CONFUSIONS[key])
    axes = fig.subplots(1, max(len(have), 1), squeeze=False)[0]
    for ax, cfg in zip(axes, have):
        m = results[cfg].metrics
        cm = np.asarray(m["confusion"], dtype=float)
        pct = 100 * cm / np.maximum(cm.sum(1, keepdims=True), 1)
        names = [short(c) for c in m["per_class"]]
        sns.heatmap(pct, annot=True, fmt=".0f", cmap="Blues", vmin=0, vmax=100, square=True, cbar=False,
                    xticklabels=names, yticklabels=names, ax=ax, annot_kws={"fontsize": 8})
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.tick_params(axis="x", rotation=45)
        seeds = len(results[cfg].by_seed()) if hasattr(results[cfg], "by_seed") else 1
        which = f", seed {results[cfg].seed} of {seeds}" if seeds > 1 else ""  # one run's matrix, not a mean
        ax.set_title(f"{LABELS.get(cfg, cfg)}: {100 * m['accuracy']:.1f}% (n={m['n']}{which})", fontsize=10)
    if not have:
        axes[0].set_axis_off()
    label = _dataset_label(next(iter(results.values())).metrics) if results else key
    fig.suptitle(_with_scale(f"Fig. 7  Confusion matrices (% of each true class) on {label}", results, scale),
                 fontsize=10)
    return fig


# --- Fig. 9 ---------------------------------------------------------------------------------
def fig9_accuracy(results: dict[str, Any], configs: Sequence[str] = ("vgg19", "baseline1", "baseline2", "lkrnet"),
                  *, scale: str | None = None, key: str = "ckplus") -> Figure:
    """Fig. 9: accuracy against epoch (the paper's is on CK+; the kit draws it for FER2013 too),
    one line per configuration.

    The plotted accuracy is accuracy on the *selection* split (CK+: each fold's subjects held
    out of its training part, averaged over the folds; FER2013: PublicTest; ten-crop, or the
    centre crop where the config's ``select_crops`` says so): the reported split is evaluated
    only once, with the selected weights, so no test accuracy exists per epoch. ``scale``: the
    runs' scale for the title (None: as their records say).
    """
    fig = _new(f"fig9_accuracy_{key}")
    ax = fig.add_subplot()
    bands = set()
    for cfg in configs:
        if cfg not in results or not results[cfg].histories:
            continue
        runs = list(results[cfg].by_seed().values()) if hasattr(results[cfg], "by_seed") else [results[cfg]]
        per_seed = [c for c in (_curve(r.histories) for r in runs) if c]
        if not per_seed:
            continue
        ep = np.array(sorted(set.intersection(*(set(c) for c in per_seed))))
        if len(ep) == 0:
            continue
        seed_means = np.array([[np.mean(c[e]) for e in ep] for c in per_seed])  # (seeds, epochs)
        mean = seed_means.mean(0)
        n = len(results[cfg].histories)
        line, = ax.plot(ep, mean, marker="o" if len(ep) < 15 else None, ms=3,
                        label=LABELS.get(cfg, cfg) + (f" ({n} folds)" if key == "ckplus" else "")
                        + (f", {len(per_seed)} seeds" if len(per_seed) > 1 else ""))
        if len(per_seed) > 1:  # the band: the lowest and highest seed at each epoch
            ax.fill_between(ep, seed_means.min(0), seed_means.max(0), color=line.get_color(), alpha=0.2, lw=0)
            bands.add("range over seeds")
        elif n > 1:  # one seed of several folds: ± 1 sd over the folds
            sd = np.array([np.std(per_seed[0][e], ddof=1) if len(per_seed[0][e]) > 1 else 0.0 for e in ep])
            ax.fill_between(ep, mean - sd, mean + sd, color=line.get_color(), alpha=0.15, lw=0)
            bands.add("± 1 sd over folds")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%) on the folds' selection split" if key == "ckplus"
                  else "accuracy (%) on the selection split")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    label = _dataset_label(next(iter(results.values())).metrics) if results else key
    band = f" (band: {', '.join(sorted(bands))})" if bands else ""
    ax.set_title(_with_scale(f"Fig. 9  Accuracy against epoch on {label}{band}", results, scale, width=75),
                 fontsize=9)
    return fig


def _curve(histories: Sequence[Sequence[dict[str, Any]]]) -> dict[int, list[float]]:
    """{epoch: [selection accuracy (%) of each run that evaluated it]} over one seed's runs
    (one run for FER2013, the folds for CK+)."""
    curves: dict[int, list[float]] = {}
    for h in histories:
        for rec in h:
            if rec.get("select_accuracy") is not None:
                curves.setdefault(int(rec["epoch"]), []).append(100 * rec["select_accuracy"])
    return curves


# --- differences with their uncertainty (lkr.stats) -------------------------------------------
DIFFERENCES = {"ckplus": "differences_ckplus", "fer2013": "differences_fer2013"}


def comparisons(results: dict[str, Any], **kw: Any) -> list[Any]:
    """:func:`lkr.stats.compare_all` on one dataset role's results: every pair the paper
    compares (Holm-corrected together) and our ablations, over the seeds both configurations
    have. Configurations without stored predictions are left out; a pair that cannot be
    compared (tested on other images) is left out with a warning."""
    import warnings

    from lkr.stats import compare_all

    preds = {c: r.seed_predictions() for c, r in results.items()}
    skipped: list[str] = []
    comps = compare_all({c: p for c, p in preds.items() if p}, skipped=skipped, **kw)
    for why in skipped:
        warnings.warn(f"not compared: {why}", stacklevel=2)
    folds_without_subjects = sorted(c for c, r in results.items() if "fold_accuracy" in r.metrics
                                    and r.predictions is not None and "subject" not in r.predictions)
    if folds_without_subjects:
        warnings.warn(f"{', '.join(folds_without_subjects)}: fold predictions without subject ids; their "
                      "comparisons treat every image as independent", stacklevel=2)
    return comps


def _verdict(c: Any) -> str:
    """:meth:`lkr.stats.Comparison.verdict` with the configurations' display names."""
    v = c.verdict()
    for name in (c.a, c.b):
        if v.startswith(f"{name} better"):
            return LABELS.get(name, name) + v[len(name):]
    return v


def _p(v: float | None) -> str:
    return "–" if v is None else ("<0.0001" if v < 1e-4 else f"{v:.4f}" if v < 0.1 else f"{v:.3f}")


def differences_rows(comps: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per comparison (:class:`lkr.stats.Comparison`), accuracies and differences in
    points: A, B, seeds, their accuracies, the difference and its bootstrap interval, each
    seed's difference and the t interval over seeds, the images only A / only B got right and
    McNemar's p (per seed, "/"-separated), the pair's test over all its seeds with its p and
    Holm's p (test-image noise), the paired t-test over seeds with its p and Holm's p (seed
    noise), the verdict ("(uncorrected)" outside the Holm family)."""
    rows = []
    for c in comps:
        rows.append({
            "A": LABELS.get(c.a, c.a), "B": LABELS.get(c.b, c.b), "seeds": ",".join(map(str, c.seeds)),
            "A %": round(100 * c.acc_a, 2), "B %": round(100 * c.acc_b, 2), "A − B": round(100 * c.diff, 2),
            "95% CI low": round(100 * c.ci_low, 2), "95% CI high": round(100 * c.ci_high, 2),
            "resampled": c.resampled,
            "A − B per seed": "/".join(f"{100 * d:+.2f}" for d in c.diff_per_seed),
            "seeds 95% CI": ("–" if c.seed_ci_low is None
                             else f"{100 * c.seed_ci_low:+.2f} to {100 * c.seed_ci_high:+.2f}"),
            "only A right": "/".join(map(str, c.a_only)), "only B right": "/".join(map(str, c.b_only)),
            "p per seed": "/".join(_p(p) for p in c.p_values),
            "test": c.test, "p, test images": _p(c.p), "Holm p, test images": _p(c.p_holm),
            "p, seeds (paired t)": _p(c.p_seeds), "Holm p, seeds": _p(c.p_seeds_holm),
            "verdict": _verdict(c) + ("" if c.p_holm is not None else " (uncorrected)"),
        })
    return rows


DIFFERENCES_NOTE = ("A − B in points of accuracy on the same test images, averaged over the seeds both have. "
                    "95% CI: paired BCa bootstrap (scipy, 9,999 resamples) of test images (CK+: of subjects); it "
                    "covers which test images were drawn, not seed-to-seed noise, which the per-seed differences "
                    "and the t interval over seeds show (wide with few seeds). p per seed: McNemar's exact test "
                    "(statsmodels); CK+: its clustered form, a sign-flip permutation test over subjects (scipy), "
                    "since a subject's frames are not independent. Two p-values per pair, one for each noise. "
                    "p, test images: one test per pair over all its seeds (one seed: that seed's test; several: "
                    "a sign-flip permutation test of each image's, CK+: subject's, seed-averaged difference); it "
                    "covers which test images were drawn, not how the networks came out. p, seeds: a paired "
                    "t-test over the seeds (one-sample t of the per-seed differences, scipy); it covers "
                    "seed-to-seed noise, not the test sample, and needs two seeds or more. Holm: each column "
                    "over the paper's five comparisons; our ablations (mask pooling, λ = 0.4) are outside that "
                    "family and uncorrected. Verdict: better when both (Holm) p-values are below 0.05, the "
                    "bootstrap interval excludes 0 and every seed's gap points the same way; \"(one seed)\": "
                    "seed noise not covered.")


def save_differences(comps: Sequence[Any], name: str, out_dir: str | Path = "figures", title: str = "",
                     scale: str | None = None, footnote: str = "") -> list[Path]:
    """Write the comparisons as ``<name>_<scale>.md`` and ``.csv`` and draw them
    (:func:`fig_differences`) as ``.png`` / ``.pdf``; ``footnote`` (e.g. :func:`choice_note`)
    goes under the .md's note and the drawing. Returns the four paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = differences_rows(comps)
    cols = list(rows[0]) if rows else ["A", "B"]
    stem = figure_file(name, scale)
    md = out / f"{stem}.md"
    lines = [x for ln in title.splitlines() for x in (f"**{ln}**", "")]
    lines += ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    lines += ["", DIFFERENCES_NOTE] + (["", footnote] if footnote else [])
    md.write_text("\n".join(lines) + "\n")
    path_csv = out / f"{stem}.csv"
    with open(path_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows([[r[c] for c in cols] for r in rows])
    fig = fig_differences(comps, name, title)
    if footnote:
        import textwrap

        fig.supxlabel(textwrap.fill(footnote, 150, break_on_hyphens=False), fontsize=6, color="0.3")
    return [md, path_csv] + save_figure(fig, name, out, scale)


def fig_differences(comps: Sequence[Any], name: str = "differences_fer2013", title: str = "") -> Figure:
    """The differences as a forest plot: the seed-averaged difference (points) with its 95%
    bootstrap interval, each seed's difference as a small dot, 0 marked."""
    fig = _new(name)
    ax = fig.add_subplot()
    ys = np.arange(len(comps))[::-1]
    for y, c in zip(ys, comps):
        sig = c.verdict() != "not told apart"
        color = "#1f77b4" if sig else "#7f7f7f"
        ax.errorbar(100 * c.diff, y, xerr=[[100 * (c.diff - c.ci_low)], [100 * (c.ci_high - c.diff)]], fmt="o",
                    color=color, capsize=3, ms=5)
        if len(c.diff_per_seed) > 1:
            ax.plot([100 * d for d in c.diff_per_seed], [y - 0.18] * len(c.diff_per_seed), ".", color=color,
                    alpha=0.6, ms=4)
        holm_p = c.p_holm is not None
        ps = (("Holm p " if holm_p else "p ") + "images " + _p(c.p_holm if holm_p else c.p)
              + (f", seeds {_p(c.p_seeds_holm if holm_p else c.p_seeds)}" if len(c.seeds) > 1 else " (1 seed)"))
        ax.annotate(ps, (1.01, y), xycoords=("axes fraction", "data"), va="center", fontsize=7)
    ax.axvline(0, color="k", lw=0.8)
    ax.errorbar([], [], xerr=[], fmt="o", color="#1f77b4", capsize=3, ms=5,
                label="told apart (both noises, Holm)")
    ax.errorbar([], [], xerr=[], fmt="o", color="#7f7f7f", capsize=3, ms=5,
                label="not told apart (an interval clear of 0\nis not enough: both noises must agree)")
    if comps:
        ax.legend(fontsize=7, loc="best", framealpha=0.9)
    ax.set_yticks(ys, [f"{LABELS.get(c.a, c.a)} − {LABELS.get(c.b, c.b)}" for c in comps], fontsize=8)
    ax.set_xlabel("difference in accuracy (points), 95% bootstrap interval")
    ax.grid(axis="x", alpha=0.3)
    if not comps:
        ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return fig


# --- beyond the paper: the gain against capacity --------------------------------------------
def fig_capacity(points: Sequence[tuple[str, dict[str, Any]]]) -> Figure:
    """LKRNet − VGG19 on FER2013 against VGG19's width, from every scale trained from scratch at
    another width (:func:`lkr.report.capacity_points`): left, both configurations' PrivateTest
    accuracy (each seed a dot, the mean a line); right, the difference over the seeds both have
    with its t interval over seeds (seed noise) and its bootstrap interval over test images, the
    paper's full-width gap (its rows weighted by PrivateTest's counts) marked for reference. LKRNet
    with the mask at stage 1 is drawn beside the paper's LKRNet once it has every seed of its
    design (:func:`lkr.results.shown`)."""
    from lkr.paper import paper_overall
    from lkr.results import capacity_comparisons, shown

    fig = _new("fig_capacity_fer2013")
    ax_acc, ax_gap = fig.subplots(1, 2)
    colors = {"vgg19": "#1f77b4", "lkrnet": "#d62728", "lkrnet-s1": "#ff7f0e"}
    shift = {"lkrnet": 1.0, "lkrnet-s1": 0.88}  # the stage-1 arm's intervals just left of the paper's
    widths, tops, seen = [], [], set()
    for scale, res in points:
        w = float(res["lkrnet"].metrics.get("width") or 1.0)
        widths.append(w)
        for name in colors:
            if shown(res, name):
                accs = [100 * r.metrics["accuracy"] for r in res[name].by_seed().values()]
                ax_acc.plot([w] * len(accs), accs, ".", color=colors[name], alpha=0.5)
        for arm, label, c in capacity_comparisons(res):
            x = w * shift[arm]
            color = "k" if arm == "lkrnet" else colors[arm]
            ax_gap.errorbar([x], [100 * c.diff], yerr=[[100 * (c.diff - c.ci_low)], [100 * (c.ci_high - c.diff)]],
                            fmt="o", color=color, capsize=3, lw=2,
                            label=(f"{LABELS[arm]}: bootstrap 95% (test images)" if arm not in seen else None))
            seen.add(arm)
            if c.seed_ci_low is not None:
                ax_gap.errorbar([x * 1.06], [100 * c.diff], yerr=[[100 * (c.diff - c.seed_ci_low)],
                                                                   [100 * (c.seed_ci_high - c.diff)]],
                                fmt="s", color="#7f7f7f", capsize=3, ms=4, label=None)
            ax_gap.plot([x] * len(c.diff_per_seed), [100 * d for d in c.diff_per_seed], ".", color="#7f7f7f", alpha=0.6)
            top = max(c.ci_high, c.seed_ci_high if c.seed_ci_high is not None else c.ci_high)
            tops.append(100 * top)
            if arm == "lkrnet":
                ax_gap.annotate(f"{scale}, seeds {','.join(map(str, c.seeds))}", (w, 100 * top), textcoords="offset points",
                                xytext=(0, 12), ha="center", fontsize=7)
    for name in colors:
        have = [(float(res["lkrnet"].metrics.get("width") or 1.0), res) for _, res in points if shown(res, name)]
        xs = [w for w, _ in have]
        ys = [np.mean([100 * r.metrics["accuracy"] for r in res[name].by_seed().values()]) for _, res in have]
        if xs:
            ax_acc.plot(xs, ys, "-o", color=colors[name], label=LABELS[name])
    paper = paper_overall("fer2013")
    ax_acc.plot([1.0], [paper["VGG19"]], "*", color=colors["vgg19"], ms=10, label="paper's VGG19 (full width)")
    ax_acc.plot([1.0], [paper["Our method"]], "*", color=colors["lkrnet"], ms=10, label="paper's LKRNet (full width)")
    ax_gap.plot([1.0], [paper["Our method"] - paper["VGG19"]], "*", color="#d62728", ms=10, label="the paper's gap")
    ax_gap.plot([], [], "s", color="#7f7f7f", ms=4, label="t 95% over seeds (dots: seeds)")
    ax_gap.axhline(0, color="k", lw=0.8)
    lo, hi = ax_gap.get_ylim()  # room above the highest interval for its label, inside the frame
    ax_gap.set_ylim(lo, max(hi, max(tops, default=hi) + 0.2 * (hi - lo)))
    for ax in (ax_acc, ax_gap):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(set(widths) | {1.0}), [_fraction_label(w) for w in sorted(set(widths) | {1.0})])
        ax.set_xlabel("VGG19 width (fraction of the paper's channels)")
        ax.grid(alpha=0.3)
    ax_acc.set_ylabel("PrivateTest accuracy (%)")
    ax_gap.set_ylabel("LKRNet − VGG19 (points)" if seen == {"lkrnet"} else "each LKRNet − VGG19 (points)")
    ax_acc.legend(fontsize=7)
    ax_gap.legend(fontsize=7, loc="lower right")
    fig.suptitle("Does LKRNet's gain over VGG19 grow with the network? FER2013, trained from scratch "
                 "(same preset but the width)", fontsize=9)
    return fig


def _fraction_label(w: float) -> str:
    from lkr.config import _fraction

    return "1 (paper)" if w == 1.0 else _fraction(w)


# --- Fig. 6 ---------------------------------------------------------------------------------
def fig6_embeddings(results: dict[str, Any], panels: dict[float, str] | None = None, *,
                    scale: str | None = None) -> Figure:
    """Fig. 6: 2-D UMAP of LKRNet's 256-d test embeddings at lambda = 0, 0.2, 0.4.

    Each panel's title carries the silhouette score of the classes computed in the 256-d
    embedding space (L2-normalised), so "which lambda separates classes best" is a number.

    Args:
        results: {config: ConfigResult} of the FER2013 role (needs ``umap``).
        panels: lambda -> configuration (default :data:`lkr.experiments.LAMBDA_CONFIGS`).
        scale: the runs' scale for the title (None: as their records say).
    """
    import seaborn as sns

    from lkr.experiments import LAMBDA_CONFIGS

    panels = panels or LAMBDA_CONFIGS
    fig = _new("fig6_embeddings")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    class_names: list[str] = []
    for r in results.values():
        class_names = list(r.metrics["per_class"])
        break
    palette = sns.color_palette("tab10", len(class_names) or 7)
    seeds = sorted({results[c].seed for c in panels.values() if c in results and results[c].umap is not None})
    for ax, (lam, cfg) in zip(axes, panels.items()):
        ax.set_xticks([])
        ax.set_yticks([])
        u = results[cfg].umap if cfg in results else None
        if u is None:
            ax.set_title(f"λ = {lam:g}: no embeddings", fontsize=10)
            continue
        xy = u["coords"].astype(np.float32)
        lab = u["label"].astype(int)
        for c, name in enumerate(class_names):
            sel = lab == c
            ax.scatter(xy[sel, 0], xy[sel, 1], s=5, color=palette[c], label=short(name), alpha=0.8, linewidths=0)
        s = float(u["silhouette"])  # one seed: no ranking of the lambdas is drawn from it
        ax.set_title(f"λ = {lam:g}   silhouette (256-d) = {s:.3f}", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    if not handles:
        for ax in axes:
            handles, labels = ax.get_legend_handles_labels()
            if handles:
                break
    if handles:
        fig.legend(handles, labels, loc="outside right center", markerscale=3, fontsize=8)
    label = _dataset_label(next(iter(results.values())).metrics) if results else "fer2013"
    which = f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + ", ".join(map(str, seeds))
    fig.suptitle(_with_scale(f"Fig. 6  UMAP of LKRNet's test embeddings on {label} ({which} of each "
                             "configuration; UMAP seeded)", results, scale), fontsize=10)
    return fig


def silhouette_by_lambda(results: dict[str, Any], panels: dict[float, str] | None = None) -> dict[float, float | None]:
    """lambda -> silhouette score (256-d) of the Fig. 6 panels; None where missing."""
    from lkr.experiments import LAMBDA_CONFIGS

    panels = panels or LAMBDA_CONFIGS
    out: dict[float, float | None] = {}
    for lam, cfg in panels.items():
        u = results[cfg].umap if cfg in results else None
        out[lam] = None if u is None or not np.isfinite(u["silhouette"]) else float(u["silhouette"])
    return out


def best_separated(results: dict[str, Any], panels: dict[float, str] | None = None) -> float | None:
    """The lambda of the Fig. 6 panel with the highest silhouette score (None if none has one)."""
    scores = {lam: v for lam, v in silhouette_by_lambda(results, panels).items() if v is not None}
    return max(scores, key=scores.__getitem__) if scores else None


# --- Fig. 8 ---------------------------------------------------------------------------------
def fig8_gradcam(results: dict[str, Any], left: str = "vgg19", right: str = "lkrnet", n: int = 16, *,
                 scale: str | None = None) -> Figure:
    """Fig. 8: Grad-CAM of VGG19 beside LKRNet on the same test faces (FER2013 role only).

    Blocks of three rows: the face (44x44 centre crop, the network's view), VGG19's heatmap
    over it, LKRNet's heatmap over it; 8 faces per block. Heatmaps explain the true class. The
    title names Grad-CAM's target layer as ``gradcam.npz`` records it (``layer``,
    ``layer_size``; see :mod:`lkr.gradcam`), per model when the two differ, and the runs'
    scale (``scale``; None: as their records say).
    """
    from lkr.errors import RunError

    fig = _new("fig8_gradcam")
    a = results[left].gradcam if left in results else None
    b = results[right].gradcam if right in results else None
    if a is None or b is None:
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, f"no Grad-CAM arrays for {left} and {right}", ha="center")
        ax.set_title(results_scale_label(results, scale), fontsize=9)
        return fig
    if not np.array_equal(a["index"], b["index"]):
        raise RunError("Fig. 8: the two runs' Grad-CAM faces differ; export them with the same faces")
    k = min(n, len(a["index"]))
    per_row = 8
    blocks = -(-k // per_row)
    axes = fig.subplots(3 * blocks, per_row, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    class_names = list(results[right].metrics["per_class"])
    crop = a["cam"].shape[-1]
    off = (a["image"].shape[-1] - crop) // 2
    for i in range(k):
        r0, col = 3 * (i // per_row), i % per_row
        face = a["image"][i, off:off + crop, off:off + crop]
        axes[r0, col].imshow(face, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        axes[r0, col].set_title(short(class_names[int(a["label"][i])]), fontsize=7)
        for dr, z in ((1, a), (2, b)):
            ax = axes[r0 + dr, col]
            ax.imshow(face, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.imshow(z["cam"][i].astype(np.float32), cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="nearest")
            if int(z["pred"][i]) != int(z["label"][i]):  # inside its own cell, on a white box: no row to confuse
                ax.text(0.5, 0.03, f"→ {short(class_names[int(z['pred'][i])])}", transform=ax.transAxes, ha="center",
                        va="bottom", fontsize=6, color="#b00020",
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85})
    for blk in range(blocks):
        for dr, text in ((0, "face"), (1, LABELS.get(left, left)), (2, LABELS.get(right, right))):
            axes[3 * blk + dr, 0].text(-0.1, 0.5, text, transform=axes[3 * blk + dr, 0].transAxes, rotation=90,
                                       ha="right", va="center", fontsize=7)
    label = _dataset_label(results[right].metrics)
    la, lb = gradcam_layer_label(a), gradcam_layer_label(b)
    where = f"target layer {lb}" if la == lb else \
        f"target layers: {LABELS.get(left, left)} {la}, {LABELS.get(right, right)} {lb}"
    fig.suptitle(_with_scale(f"Fig. 8  Grad-CAM for the true class on {label} (red: the model's wrong prediction)\n"
                             f"{where}; the faces are 16 of the public test split's, as the paper shows its own",
                             results, scale), fontsize=9)
    return fig


def gradcam_layer_label(z: dict[str, np.ndarray]) -> str:
    """The Grad-CAM target layer a ``gradcam.npz`` was computed at, in words, e.g.
    "stage3 (last conv before max-pool 3, 11×11 maps)"; "not recorded" for older exports."""
    if "layer" not in z:
        return "not recorded"
    name = str(np.asarray(z["layer"]).item())
    k = name[len("stage"):] if name.startswith("stage") else "?"
    size = z.get("layer_size")
    dims = "" if size is None else f", {int(size[0])}×{int(size[1])} maps"
    return f"{name} (last conv before max-pool {k}{dims})"


# --- all of them ------------------------------------------------------------------------------
# The figures drawn from artifacts, and the dataset role each needs.
REDRAWN: dict[str, str] = {
    "table2_ckplus": "ckplus", "fig7_confusion_ckplus": "ckplus", "fig9_accuracy_ckplus": "ckplus",
    "table3_fer2013": "fer2013", "fig7_confusion_fer2013": "fer2013", "fig6_embeddings": "fer2013",
    "fig8_gradcam": "fer2013", "fig9_accuracy_fer2013": "fer2013",
    "differences_ckplus": "ckplus", "differences_fer2013": "fer2013",
}
_TITLES = {"ckplus": "Table 2  CK+: per-class accuracy (%)", "fer2013": "Table 3  FER2013: per-class accuracy (%)"}


def draw(name: str, results: dict[str, dict[str, Any]], out_dir: str | Path = "figures",
         scale: str | None = None) -> Any:
    """Draw one table or figure of :data:`REDRAWN` from one scale's loaded results and save it
    as ``<name>_<scale>.*``, its title naming the scale (:func:`results_scale_label`).

    Args:
        name: e.g. "table3_fer2013" or "fig6_embeddings".
        results: :func:`lkr.results.load_results`' dict of one scale's folder (needs the
            figure's dataset role).
        out_dir: where the files go (:func:`save_figure`, :func:`save_table`).
        scale: the scale of these results ("full", "cpu", "demo"; the folder they came from);
            None: as the runs' records say (:func:`scale_of_results`).

    Returns:
        the Figure, or for tables a pandas DataFrame of the rows (for display).

    Raises:
        KeyError: for an unknown name, or when the results lack the figure's dataset role.
    """
    if name not in REDRAWN:
        raise KeyError(f"{name!r} is not drawn from results; choose from {', '.join(REDRAWN)}")
    key = REDRAWN[name]
    if key not in results:
        raise KeyError(f"no {key} results to draw {name} from")
    res = results[key]
    scale = scale or scale_of_results(res)
    if name.startswith("table"):
        import pandas as pd

        rows = results_table(key, res)
        title = _with_scale(f"{_TITLES[key]} — {_dataset_label(next(iter(res.values())).metrics)}", res, scale)
        save_table(rows, name, out_dir, title=title, note=table_note(res), scale=scale, footnote=choice_note(res))
        return pd.DataFrame(rows).set_index("model")
    if name.startswith("differences"):
        comps = comparisons(res)
        label = _dataset_label(next(iter(res.values())).metrics)
        title = _with_scale(f"Paired differences on {label}: is the gap real?", res, scale, width=95)
        save_differences(comps, name, out_dir, title=title, scale=scale, footnote=choice_note(res))
        import pandas as pd

        return pd.DataFrame(differences_rows(comps))
    if name.startswith("fig7"):
        fig = fig7_confusion(res, key, scale=scale)
    elif name.startswith("fig9_accuracy"):
        fig = fig9_accuracy(res, (*CONFIGS_ORDER, *(c for c in res if c not in CONFIGS_ORDER)), scale=scale, key=key)
    elif name == "fig6_embeddings":
        fig = fig6_embeddings(res, scale=scale)
    else:
        fig = fig8_gradcam(res, scale=scale)
    if choice_note(res):  # the scale's design saw some test subjects: every figure says so
        import textwrap

        fig.supxlabel(textwrap.fill(choice_note(res, short=True), 110, break_on_hyphens=False), fontsize=6,
                      color="0.3")  # constrained layout makes room for it
    save_figure(fig, name, out_dir, scale)
    return fig


def redraw_all(results_dir: str | Path = "results", out_dir: str | Path = "figures", *,
               verbose: bool = True) -> list[Path]:
    """Redraw every table and figure that the artifacts in ``results_dir`` allow (``lkr figures``),
    for each scale there (``results_dir/<scale>/``, :func:`lkr.results.load_scales`), into files
    named with the scale (``table3_fer2013_cpu.md``, ``fig7_confusion_fer2013_full.png``, ...).

    No dataset, GPU or UMAP is needed. Fig. 2 is drawn here on the public-domain astronaut's face
    (:func:`astronaut_face`, ``fig2_key_regions_astronaut``); notebook 01 draws it on dataset
    faces too.

    Args:
        results_dir: a results folder (:mod:`lkr.results` layout).
        out_dir: where the files go.
        verbose: print what is drawn per scale, or that nothing is there.

    Returns:
        The paths written (empty when ``results_dir`` holds no runs).
    """
    from lkr.errors import RunError
    from lkr.results import KEYS, load_scales

    if not Path(results_dir).is_dir():
        raise RunError(f"{results_dir}: no such results folder")
    scales = load_scales(results_dir)
    if not scales:
        if verbose:
            print(f"{results_dir}: no run results yet, nothing to draw. Real runs are made with "
                  "`make reproduce` (see README); `make demo` draws every figure from the demo set.")
        return []
    out = Path(out_dir)
    written: list[Path] = save_figure(fig2_key_regions_on_face(*astronaut_face()), "fig2_key_regions_astronaut", out)
    from lkr.results import capacity_points

    points = capacity_points(results_dir)
    if points:  # the gain against capacity: every width measured
        written += save_figure(fig_capacity(points), "fig_capacity_fer2013", out)
    for scale, res in scales.items():
        n = len(written)
        for name, key in REDRAWN.items():
            if key not in res:
                continue
            draw(name, res, out, scale)
            exts = (".md", ".csv", ".png", ".pdf") if name.startswith(("table", "differences")) else (
                (".png",) if name in PNG_ONLY else (".png", ".pdf"))
            written += [out / f"{figure_file(name, scale)}{e}" for e in exts]
        if verbose:
            missing = [k for k in KEYS if k not in res]
            print(f"{scale}: {len(written) - n} files written to {out} "
                  f"({results_scale_label(next(iter(res.values())), scale)}"
                  + (f"; no {', '.join(missing)} results)" if missing else ")"))
    return written
