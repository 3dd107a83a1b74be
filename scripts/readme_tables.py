"""Print the result tables (markdown) from a results folder, or rewrite the generated tables of
the README and docs/results.md (:mod:`lkr.report`), so that every number in a result table comes
from a command:

    python scripts/readme_tables.py                         # results/cpu, printed
    python scripts/readme_tables.py --scale cpu-ft --versus cpu
    python scripts/readme_tables.py --write README.md docs/results.md   # rewrite their tables
    python scripts/readme_tables.py --check README.md docs/results.md   # exit 1 when one differs

Per dataset: accuracy per seed and its mean ± sd over seeds, and the paired differences
(:mod:`lkr.stats`) with both noises: the bootstrap interval over test images (CK+: subjects),
McNemar's p per seed and the pair's p over its seeds (Holm), and each seed's difference, the t
interval over seeds and the paired t-test over seeds (Holm); the verdict needs both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lkr import figures as F  # noqa: E402
from lkr.report import (between_scales, differences_table, fold_differences, render,  # noqa: E402,F401
                        seeds_table)
from lkr.results import load_results  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(REPO / "results"))
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--versus", default=None, help="another scale: each configuration against itself there")
    ap.add_argument("--write", nargs="+", metavar="FILE", help="rewrite the generated tables of these files")
    ap.add_argument("--check", nargs="+", metavar="FILE", help="exit 1 when a file's tables differ from results/")
    args = ap.parse_args()
    if args.write or args.check:
        stale = []
        for f in args.write or args.check:
            path = Path(f)
            try:
                text = path.read_text()
            except OSError as e:
                raise SystemExit(f"readme_tables: error: {f}: {e.strerror}") from None
            try:
                new = render(text, args.results)
            except KeyError as e:
                raise SystemExit(f"readme_tables: error: {f}: {e.args[0]}") from None
            if new != text:
                stale.append(f)
                if args.write:
                    path.write_text(new)
        verb = "rewritten" if args.write else "differ from results/ (run --write)"
        print(f"{', '.join(stale)}: {verb}" if stale else "tables up to date")
        return 1 if stale and args.check else 0
    res = load_results(Path(args.results) / args.scale)
    if args.versus:
        other = load_results(Path(args.results) / args.versus)
        for key in ("fer2013", "ckplus"):
            if key in res and key in other:
                print(f"## {key}: {args.scale} against {args.versus}\n")
                print("\n".join(between_scales(res[key], other[key], args.scale, args.versus)) + "\n")
        return 0
    for key in ("fer2013", "ckplus"):
        if key not in res:
            continue
        print(f"## {key}: {F.results_scale_label(res[key], args.scale)}\n")
        print("\n".join(seeds_table(res[key], key)) + "\n")
        print("\n".join(differences_table(res[key])) + "\n")
        if key == "ckplus":
            print("\n".join(fold_differences(res[key])) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
