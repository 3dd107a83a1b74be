"""Command line: ``lkr`` / ``python -m lkr``.

Every user-caused error is an :class:`lkr.errors.LkrError`: printed as one line
(``lkr: error: ...``), exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

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


# --- method ---------------------------------------------------------------------------------
def cmd_landmarks(args: argparse.Namespace) -> int:
    from lkr.landmarks import attach_landmarks
    from lkr.readers import load_dataset

    ds = load_dataset(args.path, skip_bad=args.skip_bad)
    ds = attach_landmarks(ds, device=args.device, progress=not args.quiet, force=args.force)
    lm = ds.summary()["landmarks"]
    if args.json:
        _print_json(lm)
    else:
        print(f"{ds.source}: {lm['detected']}/{len(ds)} faces with detected landmarks "
              f"({100 * lm['coverage']:.1f}%), {lm['template']} on the template")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from lkr.train import train_cli

    return train_cli(args)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from lkr.evaluate import evaluate_cli

    return evaluate_cli(args)


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

    lm = sub.add_parser("landmarks", help="MTCNN landmarks into the dataset cache; reports coverage")
    lm.add_argument("path")
    lm.add_argument("--device", default="cpu")
    lm.add_argument("--json", action="store_true")
    lm.add_argument("--force", action="store_true", help="recompute even if cached")
    lm.add_argument("--skip-bad", action="store_true")
    lm.add_argument("--quiet", action="store_true")
    lm.set_defaults(func=cmd_landmarks)

    tr = sub.add_parser("train", help="train one configuration into a run folder")
    tr.add_argument("--data", required=True, help="dataset path or 'demo' / 'demo-ckplus'")
    tr.add_argument("--variant", default="lkrnet", choices=["vgg19", "baseline1", "baseline2", "lkrnet"])
    tr.add_argument("--lambda", dest="lam", type=float, default=None, help="triplet loss weight")
    tr.add_argument("--epochs", type=int, default=None)
    tr.add_argument("--batch-size", type=int, default=None)
    tr.add_argument("--lr", type=float, default=None)
    tr.add_argument("--schedule", choices=["paper", "cosine"], default=None)
    tr.add_argument("--warmup-epochs", type=int, default=None)
    tr.add_argument("--mask-stage", type=int, default=None)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    tr.add_argument("--fold", type=int, default=None, help="CK+ fold index (subject-independent)")
    tr.add_argument("--folds", type=int, default=10)
    tr.add_argument("--out", required=True, help="run folder")
    tr.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override any Config field (repeatable)")
    tr.add_argument("--quiet", action="store_true")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="ten-crop evaluation of a run folder")
    ev.add_argument("run")
    ev.add_argument("--data", default=None, help="dataset (default: the one the run was trained on)")
    ev.add_argument("--device", default=None)
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_evaluate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args) or 0)
    except LkrError as e:
        print(f"lkr: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lkr: interrupted", file=sys.stderr)
        return 130
