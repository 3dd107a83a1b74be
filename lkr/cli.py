"""Command line: ``lkr`` / ``python -m lkr``.

Every user-caused error is an :class:`lkr.errors.LkrError`: printed as one line
(``lkr: error: ...``), exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

from lkr.config import FINE_TUNE, SCALES
from lkr.errors import LkrError


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


# --- data -----------------------------------------------------------------------------------
def cmd_data_info(args: argparse.Namespace) -> int:
    from lkr.readers import load_dataset

    ds = load_dataset(args.path, skip_bad=args.skip_bad, use_cache=not args.no_cache)
    s = ds.summary()
    if args.json:
        _print_json(s)
        return 0
    print(f"dataset: {s['name']} ({s['kind']})  source: {s['source']}")
    print(f"images: {s['images']}" + (f"  subjects: {s['subjects']}" if s["subjects"] else "")
          + (f"  sequences: {s['sequences']}" if s["sequences"] else ""))
    names = s["classes"]
    w = max(12, max(len(n) for n in names) + 1)
    print("split".ljust(12) + "".join(n[:w - 1].rjust(w) for n in names) + "total".rjust(8))
    for split, counts in s["counts"].items():
        print(split.ljust(12) + "".join(str(counts[n]).rjust(w) for n in names)
              + str(s["splits"][split]).rjust(8))
    if "landmarks" in s:
        lm = s["landmarks"]
        print(f"landmarks: {lm['detected']} detected, {lm['template']} template ({100 * lm['coverage']:.1f}% coverage)")
    for note in s["notes"]:
        print(f"note: {note}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from lkr.pipeline import run_demo

    return run_demo(args.out, quick=not args.full, device=args.device)


def cmd_figures(args: argparse.Namespace) -> int:
    from lkr.figures import redraw_all

    redraw_all(args.results, args.out)
    return 0


def cmd_notebook(args: argparse.Namespace) -> int:
    from lkr.pipeline import run_named
    from lkr.train import _parse_set_values

    run_named(args.names, scale=args.scale, out=args.out, parameters=_parse_set_values(args.set))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from lkr.verify import verify_cli

    return verify_cli(args)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from lkr.pipeline import run_reproduce

    return run_reproduce(args.fer, args.ck, out=args.out, results=args.results, figures=args.figures,
                         device=args.device, epochs=args.epochs, quick=args.quick, workers=args.workers,
                         scale=args.scale)


# --- method ---------------------------------------------------------------------------------
def cmd_landmarks(args: argparse.Namespace) -> int:
    from lkr.landmarks import attach_landmarks, landmark_coverage
    from lkr.readers import load_dataset

    ds = load_dataset(args.path, skip_bad=args.skip_bad)
    ds = attach_landmarks(ds, device=args.device, progress=not args.quiet, force=args.force)
    lm = ds.summary()["landmarks"]
    lm["template_from"] = landmark_coverage(ds)["template_from"]
    if args.json:
        _print_json(lm)
    else:
        print(f"{ds.source}: {lm['detected']}/{len(ds)} faces with detected landmarks "
              f"({100 * lm['coverage']:.1f}%), {lm['template']} on the template")
        print(f"template: {lm['template_from']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from lkr.train import train_cli

    return train_cli(args)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from lkr.evaluate import evaluate_cli

    return evaluate_cli(args)


def cmd_predict(args: argparse.Namespace) -> int:
    """``lkr predict PHOTO... [--run RUN] [--json] [--save DIR]`` (default: the shipped model),
    or ``lkr predict --about``: exit 0, or 1 if a photo or video failed."""
    from pathlib import Path
    from typing import Any

    from lkr.predict import MAX_SIDE, OutputNames, PhotoResult, Predictor, drop_if_empty, format_result, save_folder
    from lkr.video import DETECT_EVERY, format_video, is_video, predict_video

    if args.about:
        from lkr.shipped import about

        print(about())
        return 0
    if not args.photos:
        raise LkrError("lkr predict: give one or more photos or videos (or --about for the shipped model's card)")
    if args.every < 1:
        raise LkrError(f"lkr predict: --every {args.every}: give a whole number >= 1")
    if args.detect_every is not None and args.detect_every < 1:
        raise LkrError(f"lkr predict: --detect-every {args.detect_every}: give a whole number >= 1")
    p = Predictor(args.run, device=args.device)  # a bad --run: one line, and no --save folder made
    created = save_folder(args.save) if args.save else False  # one line, before any photo is read
    if p.is_demo:
        print(f"lkr: note: {args.run} was trained on the synthetic demo set; its predictions on real "
              "faces are meaningless", file=sys.stderr)
    photos = [f for f in args.photos if not is_video(f)]
    results: list[Any] = []

    def report(r: Any) -> None:  # each file's lines as soon as it is done
        results.append(r)
        if r.error:
            print(f"lkr: error: {r.error}", file=sys.stderr)
        if getattr(r, "warning", None):
            print(f"lkr: warning: {r.warning}", file=sys.stderr)
        if not args.json:
            text = format_result(r) if isinstance(r, PhotoResult) else format_video(r)
            if text:
                print(text, flush=True)

    names = OutputNames([Path(f).stem for f in args.photos])  # no output of this call overwrites another
    if photos:  # all faces of all photos in one pass
        for r in p.predict(photos, save=args.save, min_prob=args.min_prob, max_side=args.max_side or MAX_SIDE,
                           names=names):
            report(r)
    for f in args.photos:
        if is_video(f):
            report(predict_video(p, f, save=args.save, every=args.every, min_prob=args.min_prob,
                                 detect_every=DETECT_EVERY if args.detect_every is None else args.detect_every,
                                 max_side=args.max_side, progress=not args.json and sys.stderr.isatty(),
                                 stem=names.take(Path(f).stem)))
    if args.save:
        drop_if_empty(args.save, created)
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    return 1 if any(r.error for r in results) else 0


def cmd_export(args: argparse.Namespace) -> int:
    from lkr.export import export_cli

    return export_cli(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lkr", description="LKRNet reproduction kit")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    info = data.add_parser("info", help="kind, counts per split and class, subjects, sequences")
    info.add_argument("path", help="a dataset path (csv, folder, .zip) or 'demo' / 'demo-ckplus'")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument("--skip-bad", action="store_true", help="skip unreadable items and report how many")
    info.add_argument("--no-cache", action="store_true", help="decode again, ignoring the cache")
    info.set_defaults(func=cmd_data_info)

    demo = sub.add_parser("demo", help="the main job on the built-in synthetic demo set (CPU, minutes)")
    demo.add_argument("--out", default="out/demo", help="output folder (git-ignored)")
    demo.add_argument("--device", default=None)
    demo.add_argument("--full", action="store_true", help="longer training than the quick default")
    demo.set_defaults(func=cmd_demo)

    fg = sub.add_parser("figures", help="redraw every table and figure from results/ (seconds; no data, no GPU)")
    fg.add_argument("--results", default="results", help="results folder (default: results)")
    fg.add_argument("--out", default="figures", help="where the figures go (default: figures)")
    fg.set_defaults(func=cmd_figures)

    nb = sub.add_parser("notebook", help="run notebooks headless (papermill) from any folder; 03-05 open the "
                        "committed results/<scale>/ with no dataset")
    nb.add_argument("names", nargs="+", metavar="NOTEBOOK", help="e.g. 03, 03_results or 03_results.ipynb")
    nb.add_argument("--scale", default="demo",
                    help="the results to open: cpu, cpu-ft, ... (the committed ones), full, or demo (make demo's; "
                         "the default)")
    nb.add_argument("--out", default="out", help="executed copies go to <out>/notebooks, figures to <out>/figures")
    nb.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="any other parameter of the notebooks' parameters cell (repeatable)")
    nb.set_defaults(func=cmd_notebook)

    vf = sub.add_parser("verify", help="recompute every committed accuracy from predictions.npz and your archives")
    vf.add_argument("results", nargs="?", default="results", help="results folder (default: results)")
    vf.add_argument("--fer", default=None, help="your FER2013 (CSV, image folder or .zip)")
    vf.add_argument("--ck", default=None, help="your CK+ (CK+48 folder or .zip, or the full release)")
    vf.set_defaults(func=cmd_verify)

    rp = sub.add_parser("reproduce", help="the notebooks on your FER2013 and CK+: results/ and figures/")
    rp.add_argument("--fer", required=True, help="FER2013: the Kaggle CSV, the image folder or its .zip")
    rp.add_argument("--ck", required=True, help="CK+: CK+48 folder or .zip, or the full release")
    rp.add_argument("--out", default="out/real", help="runs (checkpoints) and executed notebooks")
    rp.add_argument("--results", default="results", help="small artifacts (default: results)")
    rp.add_argument("--figures", default="figures", help="tables and figures (default: figures)")
    rp.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    rp.add_argument("--scale", choices=[n for n in SCALES if n not in FINE_TUNE], default="full",
                    help="full: the paper's values (default; for a GPU); cpu: the reduced scale that trains on a "
                         "CPU (lkr/config.py SCALES). Results go to <results>/<scale>/, figures are named with it. "
                         "CK+ fine-tuned from the FER2013 cpu runs (cpu-ft): scripts/cpu_results.py --scale cpu-ft")
    rp.add_argument("--epochs", type=int, default=None, help="default: the scale's (the paper's 60 at full)")
    rp.add_argument("--quick", action="store_true", help="2 CK+ folds instead of 10")
    rp.add_argument("--workers", type=int, default=1,
                    help="CK+ folds trained at once in worker processes, CPU threads shared among them "
                         "(default 1; see docs/performance.md for what 2 gives on 2 cores)")
    rp.set_defaults(func=cmd_reproduce)

    lm = sub.add_parser("landmarks", help="MTCNN landmarks into the dataset cache; reports coverage")
    lm.add_argument("path")
    lm.add_argument("--device", default="cpu")
    lm.add_argument("--json", action="store_true")
    lm.add_argument("--force", action="store_true", help="recompute even if cached")
    lm.add_argument("--skip-bad", action="store_true")
    lm.add_argument("--quiet", action="store_true")
    lm.set_defaults(func=cmd_landmarks)

    tr = sub.add_parser(
        "train", help="train one configuration into a run folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="On a CPU, train a thin network: --scale cpu starts from the kit's CPU preset (VGG19 at\n"
               "1/8 width, 50 epochs, cosine schedule; ~18 s an epoch of FER2013 on 2 AMD EPYC cores in\n"
               "bf16; lkr/config.py SCALES, docs/cpu-runs.md). By hand: --width 0.125 keeps VGG19's 16 convs\n"
               "at 1/8 of their channels, with a shorter schedule than the paper's (20 warm-up epochs at\n"
               "1e-4, then 1e-3), e.g.\n"
               "  lkr train --data fer2013.zip --variant vgg19 --width 0.125 --epochs 20 \\\n"
               "            --schedule cosine --lr 0.05 --warmup-epochs 1 --out runs/vgg19-w8\n"
               "A run that never leaves the paper's warm-up (--epochs <= --warmup-epochs) is refused.")
    tr.add_argument("--data", required=True, help="dataset path or 'demo' / 'demo-ckplus'")
    tr.add_argument("--variant", default="lkrnet", choices=["vgg19", "baseline1", "baseline2", "lkrnet"])
    tr.add_argument("--scale", choices=list(SCALES), default="full",
                    help="the preset the config starts from: full (the paper's values; default), cpu (a "
                         "reduced scale for a CPU) or cpu-ft (cpu, fine-tuned from a run given by --set "
                         "init_from=<run folder>); flags and --set change it. The demo set always gets its own")
    tr.add_argument("--lambda", dest="lam", type=float, default=None, help="triplet loss weight")
    tr.add_argument("--epochs", type=int, default=None)
    tr.add_argument("--batch-size", type=int, default=None)
    tr.add_argument("--lr", type=float, default=None)
    tr.add_argument("--schedule", choices=["paper", "cosine"], default=None)
    tr.add_argument("--warmup-epochs", type=int, default=None)
    tr.add_argument("--mask-stage", type=int, default=None)
    tr.add_argument("--width", type=float, default=None,
                    help="multiplier on every conv's channels (default 1 = VGG19; 0.125 or 0.25 on a CPU)")
    tr.add_argument("--seed", type=int, default=None, help="seed (default: the config's, 0)")
    tr.add_argument("--threads", type=int, default=None,
                    help="CPU threads (default: $LKR_THREADS, $OMP_NUM_THREADS or every core); recorded in the run")
    tr.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    tr.add_argument("--fold", type=int, default=None, help="CK+ fold index (subject-independent)")
    tr.add_argument("--folds", type=int, default=10)
    tr.add_argument("--out", required=True, help="run folder")
    tr.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override any Config field (repeatable)")
    tr.add_argument("--quiet", action="store_true")
    tr.add_argument("--nproc", type=int, default=1,
                    help="data-parallel processes (DDP under torchrun): one per GPU, or CPU processes")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="ten-crop evaluation of a run folder (or of the shipped model)")
    ev.add_argument("run", nargs="?", default=None, help="a trained run folder (or --shipped)")
    ev.add_argument("--shipped", action="store_true", help="the model that ships with lkr (needs --data)")
    ev.add_argument("--data", default=None,
                    help="dataset (default: the one the run was trained on); another dataset (FER2013 <-> CK+48) is "
                         "evaluated on its images over the shared classes, into <run>/cross/<dataset>/")
    ev.add_argument("--out", default=None, metavar="DIR",
                    help="where the metrics go: a cross-dataset evaluation's (default <run>/cross/<dataset>; for "
                         "--shipped out/shipped/cross/<dataset>), or the re-evaluation's metrics.json (default: "
                         "printed only)")
    ev.add_argument("--device", default=None)
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="expressions of every face on your photos and videos, with Grad-CAM "
                        "(CPU is fine; default model: the one that ships with lkr)")
    pr.add_argument("photos", nargs="*", metavar="FILE", help="photos (jpg, png, ...) and videos (mp4, mov, avi, mkv, "
                    "webm, ...: a CSV timeline, an annotated video and a plot with --save)")
    pr.add_argument("--run", default=None, help="a trained run folder (holds best.pt); default: the model that "
                    "ships with lkr (LKRNet trained on FER2013; lkr predict --about)")
    pr.add_argument("--about", action="store_true", help="print the shipped model's card (data, accuracy, "
                    "sha256, limits) and exit")
    pr.add_argument("--json", action="store_true", help="print JSON: per photo its faces (box, label, "
                    "probabilities, landmarks_detected) and error")
    pr.add_argument("--save", metavar="DIR", default=None,
                    help="write each photo annotated with boxes, labels and the Grad-CAM overlay (DIR/<name>.png)")
    pr.add_argument("--every", type=int, default=1, metavar="N",
                    help="videos: analyse every N-th frame (default 1: every frame)")
    pr.add_argument("--detect-every", type=int, default=None, metavar="N",
                    help="videos: search an analysed frame whole every N analysed frames and follow the faces "
                         "between by MTCNN's last stage (default 5; 1: search every frame)")
    pr.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    pr.add_argument("--min-prob", type=float, default=0.9, help="smallest MTCNN face probability (default 0.9)")
    pr.add_argument("--max-side", type=int, default=None,
                    help="larger photos and frames are searched for faces at this longer side (default: 1600 for "
                    "photos, 320 for video frames; the faces are cut from the full-size image)")
    pr.set_defaults(func=cmd_predict)

    ex = sub.add_parser("export", help="a trained run as ONNX (image and mask in, logits out), checked "
                        "against PyTorch; needs pip install 'lkr[onnx]'")
    ex.add_argument("run", help="a trained run folder")
    ex.add_argument("--onnx", required=True, metavar="FILE", help="the .onnx file to write")
    ex.set_defaults(func=cmd_export)
    return p


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"lkr: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    warnings.formatwarning = _one_line_warning  # a kit warning is one line, as its errors are
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for commands that start torchrun
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args) or 0)
    except LkrError as e:
        print(f"lkr: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lkr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `lkr predict ... --json | head`: the reader left; quiet, as Unix tools are
        import os

        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit must not fail again
        except (OSError, ValueError, AttributeError):
            pass
        return 141
