"""Write the ordered notebooks in notebooks/ from this one source, so they stay consistent.

    .venv/bin/python scripts/make_notebooks.py        # rewrite notebooks/*.ipynb
    .venv/bin/python scripts/make_notebooks.py --check  # exit 1 if they differ from this script

Every notebook starts with the same ``parameters`` cell (papermill fills it for headless runs:
``lkr demo``, ``lkr reproduce``, the tests) and holds no outputs; code cells call the ``lkr``
package and show the result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"

PARAMETERS = '''\
# FER2013: the Kaggle CSV, the image folder or its .zip; "demo" is the synthetic demo set
data_fer = "demo"
# CK+: a CK+48 folder or .zip, or the full release; "demo-ckplus" is the synthetic demo set
data_ck = "demo-ckplus"
# runs (checkpoints) and sample grids of this job; git-ignored. Relative paths start at the repository root
out = "out/demo"
# "cpu", "cuda" or None (CUDA when present)
device = None
# the scale of the runs: "demo" (the synthetic demo set's), "full" (the paper's values), "cpu" (the reduced
# scale for a CPU, lkr/config.py SCALES), "cpu-ft", ...; results go to <results>/<scale>/, figures are named
# with it. Notebooks 03-05 only read: at a real scale they open the committed results/<scale>/ (no dataset)
scale = "demo"
# None: the scale's epochs (the paper's 60 at "full"; the demo preset's on the demo set)
epochs = None
# CK+: 2 of the 10 subject-independent folds (False: all 10)
quick = True
# CK+ folds to run, e.g. [0]; overrides quick
folds = None
# small artifacts; None: <out>/results (notebooks 03-05 at a real scale: the repository's results/)
results = None
# tables and figures; None: <out>/figures (the real reproduction writes the repository's figures/)
figures = None
# training runs at once in worker processes (CK+ folds; CPU threads are shared among them)
workers = 1
# progress lines and bars
progress = True'''

PATHS = '''\
from pathlib import Path

from lkr.pipeline import notebook_paths

# relative paths from the repository root; the runs' scale ("demo" for the demo set)
out, run_scale, results_dir, figures_dir = notebook_paths(data_fer, scale, out, results, figures, reads={reads})
print(f"scale: {{run_scale}}\\nresults: {{results_dir / run_scale}}\\nfigures: {{figures_dir}}")'''


def _notebook(title: str, intro: str, cells: list[tuple[str, str]], reads: bool = False) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    params = new_code_cell(PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [new_markdown_cell(f"# {title}\n\n{intro}"), params, new_code_cell(PATHS.format(reads=reads))]
    for kind, text in cells:
        nb.cells.append(new_markdown_cell(text) if kind == "md" else new_code_cell(text))
    for i, c in enumerate(nb.cells):
        c["id"] = f"c{i:02d}"  # stable ids: the generator's output does not change between runs
    return nb


def _run_cells(key: str, var: str, data: str) -> list[tuple[str, str]]:
    names = ["vgg19", "baseline1", "baseline2", "lkrnet", "lkrnet-l0.4"]
    if key == "fer2013":
        names.append("lkrnet-cover")  # the other pooling of the mask (docs/method.md, Eq. 4)
    return [("code", f'summary_table(run_experiments({var}, out, ["{name}"], data_ref={data}, **run_args))')
            for name in names] + [
        ("code", f'results_summary(results_dir / run_scale, "{key}")')]


NOTEBOOKS: dict[str, nbformat.NotebookNode] = {
    "01_data.ipynb": _notebook(
        "01 Data",
        "Loads FER2013 and CK+ (or the synthetic demo set), shows counts, sample faces and landmark "
        "coverage, and draws Fig. 2 (local key regions over faces of the seven expressions).\n\n"
        "Fig. 2 shows FER2013 (or demo) faces only: CK+'s licence forbids publishing its faces, so CK+ "
        "samples are written to the git-ignored output folder only.",
        [
            ("code", "%matplotlib inline\nimport pandas as pd\nfrom IPython.display import Image\n\n"
                     "from lkr import figures as F\nfrom lkr.demo import save_sample_grid\n"
                     "from lkr.landmarks import attach_landmarks, landmark_coverage\n"
                     "from lkr.readers import load_dataset"),
            ("md", "## FER2013\n\nImages per split and class. Landmarks: MTCNN's five points, cached after "
                   "the first run (the demo set ships its true landmarks)."),
            ("code", 'fer = attach_landmarks(load_dataset(data_fer), device=device or "cpu", progress=progress)\n'
                     "pd.DataFrame(fer.counts()).T"),
            ("code", "landmark_coverage(fer)"),
            ("code", 'Image(filename=save_sample_grid(fer, Path(out) / "samples" / "fer2013.png"))'),
            ("md", "## CK+\n\nThe last 3 frames of each labelled sequence; subjects and sequences are counted "
                   "because the folds are made by subject."),
            ("code", 'ck = attach_landmarks(load_dataset(data_ck), device=device or "cpu", progress=progress)\n'
                     "pd.DataFrame(ck.counts()).T"),
            ("code", '{k: ck.summary()[k] for k in ("images", "subjects", "sequences")}'),
            ("code", "landmark_coverage(ck)"),
            ("code", 'Image(filename=save_sample_grid(ck, Path(out) / "samples" / "ckplus.png"))'),
            ("md", "## Fig. 2 Local key regions\n\nTop: the face and its five landmarks; middle: the mask M "
                   "(Eq. 1-3, regions of α = 0.3 of the face box around each landmark, merged by max); "
                   "bottom: the face weighted by M, what the local branch sees (at input resolution). Each "
                   "class's face is a seeded choice among its faces whose landmarks MTCNN detected inside the "
                   "image; a face whose landmarks are the template fallback (no face detected) is framed in red "
                   "and captioned *template landmarks*."),
            ("code", 'fig2 = F.fig2_local_key_regions(fer)\nF.save_figure(fig2, "fig2_local_key_regions", figures_dir)\n'
                     "fig2"),
        ],
    ),
    "02_train.ipynb": _notebook(
        "02 Train",
        "Trains the four configurations of the paper and LKRNet at λ = 0.4 on FER2013 (one run each, "
        "epochs selected on PublicTest, reported on PrivateTest) and on the CK+ folds (subject-independent; "
        "epochs selected on held-out training subjects), at the scale `scale` names: `full` (the paper's "
        "values) or `cpu` (the reduced scale for a CPU); the demo set always at its own preset (`demo`). "
        "Runs go to `<out>/runs/<scale>` (resumable); their small artifacts are exported to "
        "`<results>/<scale>`, with the UMAP of the FER2013 test embeddings and Grad-CAM of 16 fixed FER2013 "
        "test faces. A GPU is used when present.",
        [
            ("code", "import pandas as pd\n\nfrom lkr.experiments import CONFIGS, results_summary, run_experiments, "
                     "summary_table\nfrom lkr.landmarks import attach_landmarks\nfrom lkr.readers import load_dataset\n\n"
                     "run_args = dict(scale=scale, epochs=epochs, device=device, quick=quick, folds=folds,\n"
                     "                results_dir=results_dir, workers=workers, progress=progress)"),
            ("code", "pd.DataFrame(CONFIGS).T"),
            ("md", "## FER2013"),
            ("code", 'fer = attach_landmarks(load_dataset(data_fer), device=device or "cpu", progress=progress)\nfer'
                     ".summary()[\"splits\"]"),
            *_run_cells("fer2013", "fer", "data_fer"),
            ("md", "## CK+ (subject-independent folds, pooled)"),
            ("code", 'ck = attach_landmarks(load_dataset(data_ck), device=device or "cpu", progress=progress)\nck'
                     ".summary()[\"splits\"]"),
            *_run_cells("ckplus", "ck", "data_ck"),
        ],
    ),
    "03_results.ipynb": _notebook(
        "03 Results",
        "Table 2 (CK+) and Table 3 (FER2013): per-class accuracy of our configurations beside the paper's "
        "rows; Fig. 7 confusion matrices; Fig. 9 accuracy against epoch on CK+. Everything is drawn from the "
        "results of one scale (`<results>/<scale>`; no data, no GPU), the same way `lkr figures` does; each "
        "file is named with the scale (`table3_fer2013_cpu.md`) and each title names it.\n\n"
        "The paper gives no overall accuracy; its rows' *overall* column is their per-class accuracies "
        "weighted by our test set's class counts, marked * with a footnote in the saved tables "
        "(`figures/table*_<scale>.md`, `.png`; the `.csv` says it in its `overall_basis` column).",
        [
            ("code", "%matplotlib inline\nfrom lkr import figures as F\nfrom lkr.paper import paper_overall\nfrom lkr.results import "
                     "load_results\n\nres = load_results(results_dir / run_scale)\n"
                     "{key: sorted(v) for key, v in res.items()}"),
            ("md", "The scale of these runs, as every title below names it:"),
            ("code", "{key: F.results_scale_label(v, run_scale) for key, v in res.items()}"),
            ("md", "## Table 2 (CK+)"),
            ("code", 'F.draw("table2_ckplus", res, figures_dir, run_scale) if "ckplus" in res else "no ckplus results at this scale"'),
            ("md", "## Table 3 (FER2013)"),
            ("code", 'F.draw("table3_fer2013", res, figures_dir, run_scale) if "fer2013" in res else "no fer2013 results at this scale"'),
            ("md", "The paper's rows weighted by the paper's own test sets (FER2013 PrivateTest; all of CK+48), "
                   "for reference:"),
            ("code", '{"fer2013": paper_overall("fer2013"), "ckplus": paper_overall("ckplus")}'),
            ("md", "## Fig. 7 Confusion matrices"),
            ("code", 'F.draw("fig7_confusion_ckplus", res, figures_dir, run_scale) if "ckplus" in res else "no ckplus results at this scale"'),
            ("code", 'F.draw("fig7_confusion_fer2013", res, figures_dir, run_scale) if "fer2013" in res else "no fer2013 results at this scale"'),
            ("md", "## Fig. 9 Accuracy against epoch on CK+\n\nAccuracy on each fold's selection split (held-out "
                   "training subjects), averaged over the folds: test folds are evaluated once, with the "
                   "selected weights."),
            ("code", 'F.draw("fig9_accuracy_ckplus", res, figures_dir, run_scale) if "ckplus" in res else "no ckplus results at this scale"'),
            ("md", "The same on FER2013: accuracy on PublicTest, the selection split, per epoch."),
            ("code", 'F.draw("fig9_accuracy_fer2013", res, figures_dir, run_scale) if "fer2013" in res else "no fer2013 results at this scale"'),
            ("md", "## Is the gap real?\n\nThe paper's gaps are one run each. Each comparison it makes, on the "
                   "same test images (`lkr.stats`): the difference in accuracy averaged over the seeds both "
                   "configurations have, with a paired bootstrap 95% interval over test images (CK+: over "
                   "subjects), each seed's difference and a t interval over the seeds (seed noise), McNemar's "
                   "exact test per seed (CK+: its clustered form over subjects), and one p per pair over all its "
                   "seeds with Holm's correction over the paper's five comparisons. A verdict needs them all to "
                   "agree; one from a single seed says \"(one seed)\". Where seeds beside seed 0 exist, the "
                   "tables above show mean ± sd over them."),
            ("code", 'F.draw("differences_fer2013", res, figures_dir, run_scale) if "fer2013" in res else "no fer2013 results at this scale"'),
            ("code", 'F.draw("differences_ckplus", res, figures_dir, run_scale) if "ckplus" in res else "no ckplus results at this scale"'),
            ("md", "## The region control: key regions, or only a hidden border?\n\n"
                   "Beyond the paper (`lkr/control.py`, `scripts/control.py`, docs/control-design.md, committed "
                   "before its runs). A synthetic set, made by the kit from a seed, where the label lives only in "
                   "small codes at the five landmarks, and real CK+48 faces; each with a class-linked mark that "
                   "names the label on 90% of the training and selection images and is random on the test images: "
                   "a square on the border, or a pattern inside the face box out of sight of every key region. "
                   "Beside the key regions: a uniform mask (a second head), a face mask (the face box), a centre "
                   "mask (zeros on the border band only) and off-landmark regions (the same rectangles on the "
                   "forehead and cheeks), at stages 1, 3 and 5 with λ 0 and 0.2. The tables below are the kit's "
                   "committed runs (`results/control-v2/`), whatever the scale of this notebook. Three training "
                   "images of each synthetic set with the masks of the key regions, the face, the centre and the "
                   "off-landmark regions:"),
            ("code", "import matplotlib.pyplot as plt\n\n"
                     "import lkr\nfrom lkr.control import make_control\nfrom lkr.regions import run_masks\n"
                     "from lkr.config import Config\n\n"
                     "sources = (\"regions\", \"face\", \"centre\", \"off-landmark\")\n"
                     "fig, ax = plt.subplots(2 * 3, 1 + len(sources), figsize=(7, 9))\n"
                     "for r, cue in enumerate((\"border\", \"inner\")):\n"
                     "    ctl = make_control(0, cue=cue)\n"
                     "    for i in range(3):\n"
                     "        row = ax[3 * r + i]\n"
                     "        row[0].imshow(ctl.images[i], cmap=\"gray\", vmin=0, vmax=255)\n"
                     "        row[0].set_title(f\"{cue}: {ctl.class_names[ctl.labels[i]]}\", fontsize=8)\n"
                     "        for j, src in enumerate(sources):\n"
                     "            m = run_masks(Config(mask_source=src, mask_band=8), ctl.boxes[i:i + 1], ctl.points[i:i + 1])\n"
                     "            row[1 + j].imshow(m[0], cmap=\"gray\", vmin=0, vmax=1)\n"
                     "            row[1 + j].set_title(src, fontsize=8)\n"
                     "for a in ax.flat:\n    a.axis(\"off\")\nplt.tight_layout()"),
            ("md", "Each set's reading at stage 1 (LKRNet's loss), by the design's own rules, then the stage-1 "
                   "tables: each arm over seeds, and seven contrasts in one Holm family with both noises (a table "
                   "with a run missing shows no contrast)."),
            ("code", "from IPython.display import Markdown\nfrom lkr.report import design_lines, design_verdicts\n\n"
                     "committed = Path(lkr.__file__).resolve().parents[1] / \"results\"  # the kit's own runs\n"
                     "tables = [*design_verdicts(committed), \"\"]\n"
                     "for name in (\"synthetic-border\", \"synthetic-inner\", \"ckplus-border\", \"ckplus-inner\"):\n"
                     "    for tag in (\"l02\", \"l0\"):\n"
                     "        tables += [f\"**{name}, stage 1, {tag}**\", \"\", *design_lines(committed, name, 1, tag), \"\"]\n"
                     "Markdown(\"\\n\".join(tables))"),
            ("md", "## The mask where it can act, on real faces\n\n"
                   "Beyond the paper (`docs/real-faces-design.md`, committed before its runs): LKRNet with the mask "
                   "at stage 1 (chosen from the synthetic control alone), its partners without landmarks (face box, "
                   "off-landmark rectangles, uniform mask) at λ 0.2, VGG19 and the paper's LKRNet; seeds 0–2 at the "
                   "`cpu` scale, from the kit's committed runs. Seven contrasts in one Holm family, both noises; "
                   "while a configuration lacks a seed the table says what is missing and gives no verdict."),
            ("code", "from lkr.report import regions_lines\n\n"
                     "Markdown(\"\\n\".join([\"**FER2013, PrivateTest**\", \"\", *regions_lines(committed, \"cpu\", \"fer2013\"), \"\",\n"
                     "                      \"**CK+48, ten subject-independent folds per seed**\", \"\",\n"
                     "                      *regions_lines(committed, \"cpu\", \"ckplus\")]))"),
        ],
    ),
    "04_embeddings.ipynb": _notebook(
        "04 Embeddings",
        "Fig. 6: the 256-d test embeddings of LKRNet at λ = 0, 0.2 and 0.4 on FER2013, in a seeded 2-D UMAP, "
        "coloured by class. The paper says λ = 0.2 separates the classes best; here that is checked by a "
        "number: each panel's silhouette score, computed in the 256-d space (L2-normalised embeddings), not in "
        "the UMAP plane. UMAP coordinates were computed when the runs were exported.",
        [
            ("code", "%matplotlib inline\nfrom lkr import figures as F\nfrom lkr.results import load_results\n\n"
                     "res = load_results(results_dir / run_scale)"),
            ("code", 'F.draw("fig6_embeddings", res, figures_dir, run_scale) if "fer2013" in res else "no fer2013 results at this scale"'),
            ("md", "Silhouette score per λ (higher = classes better separated; in [-1, 1]):"),
            ("code", 'scores = F.silhouette_by_lambda(res["fer2013"])\nscores'),
            ("code", 'print(f"seed 0 separates best at lambda = {F.best_separated(res[\'fer2013\'])} (one seed ranks '
                     'nothing; the paper says 0.2)")'),
        ],
    ),
    "05_gradcam.ipynb": _notebook(
        "05 Grad-CAM",
        "Fig. 8: Grad-CAM (pytorch-grad-cam) of VGG19 beside LKRNet on the same 16 FER2013 test faces. "
        "`lkr.gradcam.cam_arrays` wraps the network in `lkr.model.MaskedModel`, which feeds each face's "
        "local key region mask. The target layer is a parameter (`layer=`): by default `stage3`, the 11×11 "
        "maps of the last conv before max-pool 3, which lie before the mask, so both branches' gradients "
        "reach them; the paper's p (2×2 maps before pool 5) would give four blocks, one per quadrant of the "
        "face. The figure's title names the layer. Heatmaps explain the true class, the same question for "
        "both models. The arrays were computed when the runs were exported; this notebook only draws them.",
        [
            ("code", "%matplotlib inline\nfrom lkr import figures as F\nfrom lkr.results import load_results\n\n"
                     "res = load_results(results_dir / run_scale)"),
            ("code", '{k: v.shape for k, v in res["fer2013"]["lkrnet"].gradcam.items()}'),
            ("code", 'F.gradcam_layer_label(res["fer2013"]["lkrnet"].gradcam)'),
            ("code", 'F.draw("fig8_gradcam", res, figures_dir, run_scale) if "fer2013" in res else "no fer2013 results at this scale"'),
            ("md", "## Grad-CAM of the shipped model, with nothing trained\n\n"
                   "The LKRNet that ships with lkr (`lkr predict --about`; docs/model-card.md) on a public-domain "
                   "photo (scikit-image's `astronaut`): the same Grad-CAM at the same layer, of the predicted class, "
                   "laid over the face. One photo is an illustration, not evidence."),
            ("code", "from IPython.display import Image, display\n\n"
                     "from lkr.predict import Predictor, example_photo\n\n"
                     "shipped = Predictor(device=\"cpu\")\nprint(shipped.describe())\n"
                     "r = shipped.predict([example_photo(Path(out) / \"photos\")], save=Path(out) / \"photos\" / \"gradcam\")[0]\n"
                     "print(r.error or [(f.label, round(f.probabilities[f.label], 3)) for f in r.faces])\n"
                     "display(Image(filename=r.annotated)) if r.annotated else None"),
        ],
    ),
}

# --- 06: beyond the paper (a person's own photos) --------------------------------------------
PHOTO_PARAMETERS = '''
# your photos: a list of image files; None: scikit-image's public-domain astronaut
photos = None
# a trained run folder; None: <out>/runs/<scale>/fer2013/lkrnet when it holds a run trained on real faces, else
# the model that ships with lkr (LKRNet trained on FER2013; docs/model-card.md)
run = None'''

NOTEBOOKS["06_your_photos.ipynb"] = _notebook(
    "06 Your photos",
    "Beyond the paper: a trained run applied to ordinary photos, with the evidence shown. MTCNN finds every "
    "face on the photo; each is cropped and converted as in training (a square on the face box, grayscale, "
    "48×48), gets its local key region mask from MTCNN's five points mapped into the crop, and all faces go "
    "through one ten-crop pass. The annotated photo shows each face's box, its label and probability, and the "
    "Grad-CAM of the predicted class laid over the face.\n\n"
    "The same from the command line: `lkr predict PHOTO... [--run RUN] [--json] [--save DIR]`; a video: "
    "`lkr predict clip.mp4 --save DIR` (a CSV timeline of every face's probabilities, the annotated video, a plot); "
    "the network as "
    "ONNX: `lkr export RUN --onnx FILE` (needs `pip install 'lkr[onnx]'`).",
    [
        ("code", "from IPython.display import Image, display\n\n"
                 "from lkr.predict import Predictor, example_photo, photo_run, results_table"),
        ("md", "## The run\n\nThe folder given as `run`, or the LKRNet of notebook 02 when it was trained on FER2013 "
               "(`lkr reproduce`). Otherwise (under `lkr demo`, whose runs have only seen the synthetic demo set) "
               "the model that ships with lkr: LKRNet trained on FER2013 at the CPU scale, checked by its sha256 "
               "when loaded (`lkr predict --about`, docs/model-card.md). The line below says which it is."),
        ("code", "predictor = Predictor(photo_run(run, out, scale=run_scale), device=device)\n"
                 "print(predictor.describe())"),
        ("md", "## The photos\n\nBy default scikit-image's `astronaut`: Eileen Collins, a public-domain NASA portrait "
               "that ships inside the scikit-image package."),
        ("code", 'photo_paths = photos or [example_photo(Path(out) / "photos")]\nphoto_paths'),
        ("md", "## Faces, expressions and evidence\n\nOne row per face: its box in the photo, the label, the seven "
               "probabilities (ten-crop average), and whether MTCNN's landmarks placed the mask (else the template)."),
        ("code", 'results = predictor.predict(photo_paths, save=Path(out) / "photos" / "annotated")\n'
                 "results_table(results)"),
        ("code", "for r in results:\n    print(r.photo, r.error or \"\")\n    if r.annotated:\n"
                 "        display(Image(filename=r.annotated))"),
    ],
)
NOTEBOOKS["06_your_photos.ipynb"].cells[1].source += PHOTO_PARAMETERS
for _name in ("03_results.ipynb", "04_embeddings.ipynb", "05_gradcam.ipynb"):  # read results only: no data
    NOTEBOOKS[_name].cells[2].source = PATHS.format(reads=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if notebooks/ differs from this script")
    args = ap.parse_args(argv)
    NOTEBOOKS_DIR.mkdir(exist_ok=True)
    stale = []
    for name, nb in NOTEBOOKS.items():
        nbformat.validate(nb)
        text = nbformat.writes(nb) + "\n"
        path = NOTEBOOKS_DIR / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run scripts/make_notebooks.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
