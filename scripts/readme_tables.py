"""Print the README's result tables (markdown) from a results folder, so that every number the
README's Results section shows comes from a command:

    python scripts/readme_tables.py                 # results/cpu
    python scripts/readme_tables.py --scale full

Per dataset: accuracy per seed and its mean ± sd over seeds (FER2013), and the paired
differences (:mod:`lkr.stats`) with the bootstrap interval over test images (CK+: subjects),
each seed's difference, the t interval over seeds, McNemar's p per seed, the pair's p over
all its seeds with Holm's correction, and the verdict (:mod:`lkr.stats`). The per-class tables are ``figures/table3_fer2013_<scale>.md`` and
``figures/table2_ckplus_<scale>.md`` (``lkr figures``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lkr import figures as F  # noqa: E402
from lkr.results import load_results  # noqa: E402


ORDER = ["vgg19", "baseline1", "baseline2", "lkrnet", "lkrnet-cover", "lkrnet-l0.4"]


def _pts(x: float | None, sign: bool = True) -> str:
    if x is None:
        return "–"
    v = round(100 * x, 1) + 0.0  # no "-0.0"
    if v == 0 and round(100 * x, 2):  # keep the sign of a small nonzero value: "−0.05", not "0.0"
        return f"{100 * x:+.2f}".replace("-", "−")
    return (f"{v:+.1f}" if sign and v else f"{v:.1f}").replace("-", "−")


def seeds_table(results: dict) -> list[str]:
    """config | seed 0 | seed 1 | ... | mean ± sd (PrivateTest or pooled accuracy, %)."""
    seeds = sorted({s for r in results.values() for s in r.by_seed()})
    lines = ["| configuration | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± sd |",
             "|---|" + "---:|" * (len(seeds) + 1)]
    for cfg, r in sorted(results.items(), key=lambda item: ORDER.index(item[0]) if item[0] in ORDER else 99):
        accs = {s: x.metrics["accuracy"] for s, x in r.by_seed().items()}
        v = np.array(list(accs.values()))
        spread = f"{100 * v.mean():.1f} ± {100 * v.std(ddof=1):.1f}" if len(v) > 1 else f"{100 * v[0]:.1f}"
        cells = [_pts(accs.get(s), sign=False) for s in seeds]
        lines.append(f"| {F.LABELS.get(cfg, cfg)} | " + " | ".join(cells) + f" | {spread} |")
    return lines


def differences_table(results: dict) -> list[str]:
    """The paired differences: for each, the test-image noise (bootstrap interval; McNemar per
    seed; the pair's p over its seeds, Holm) and the seed noise (per-seed differences, the t
    interval over seeds, the paired t-test over seeds, Holm)."""
    lines = ["| A − B | seeds | difference (points) | bootstrap 95% interval (test images) | per seed "
             "| t 95% interval (seeds) | p per seed (McNemar; CK+: by subject) | p, test images (Holm) "
             "| p, seeds: paired t (Holm) | verdict |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for c in F.comparisons(results):
        p = F._p(c.p) + ("" if c.p_holm is None else f" ({F._p(c.p_holm)})")
        ps = F._p(c.p_seeds) + ("" if c.p_seeds_holm is None else f" ({F._p(c.p_seeds_holm)})")
        seed_ci = "–" if c.seed_ci_low is None else f"{_pts(c.seed_ci_low)} to {_pts(c.seed_ci_high)}"
        lines.append(
            f"| {F.LABELS.get(c.a, c.a)} − {F.LABELS.get(c.b, c.b)} | {','.join(map(str, c.seeds))} | {_pts(c.diff)} "
            f"| {_pts(c.ci_low)} to {_pts(c.ci_high)} | {'/'.join(_pts(d) for d in c.diff_per_seed)} | {seed_ci} "
            f"| {'/'.join(F._p(x) for x in c.p_values)} | {p} | {ps} "
            f"| {F._verdict(c)}{'' if c.p_holm is not None else ' (uncorrected)'} |")
    return lines


def fold_differences(results: dict) -> list[str]:
    """CK+: the paired difference of the per-fold accuracies (seed 0), fold by fold."""
    from lkr.stats import PAPER_PAIRS

    lines = ["| A − B | per fold (points) | mean ± sd | A ahead / behind (folds) |", "|---|---|---:|---:|"]
    for a, b in PAPER_PAIRS:
        if a not in results or b not in results:
            continue
        fa, fb = (np.array(results[c].metrics.get("fold_accuracy", [])) for c in (a, b))
        if not len(fa) or fa.shape != fb.shape:
            continue
        d = fa - fb
        lines.append(f"| {F.LABELS.get(a, a)} − {F.LABELS.get(b, b)} | {' '.join(_pts(x) for x in d)} "
                     f"| {_pts(d.mean())} ± {100 * d.std(ddof=1):.1f} | {(d > 0).sum()} / {(d < 0).sum()} |")
    return lines


def between_scales(res_a: dict, res_b: dict, scale_a: str, scale_b: str) -> list[str]:
    """Each configuration at ``scale_a`` against itself at ``scale_b`` (e.g. CK+ fine-tuned from
    FER2013 against from scratch), paired on the same test images over the seeds both have
    (:func:`lkr.stats.compare`; CK+: by subject), Holm over the configurations. A configuration
    whose two sets were tested on other images (e.g. other folds) is left out with a line."""
    from lkr.stats import compare, holm

    rows = []
    for cfg in res_a:
        if cfg not in res_b:
            continue
        try:
            rows.append((cfg, compare(scale_a, scale_b, res_a[cfg].seed_predictions(), res_b[cfg].seed_predictions())))
        except ValueError as e:
            print(f"[readme_tables] {cfg}: not compared ({e})", file=sys.stderr)
    holm([c for _, c in rows])
    lines = [f"| configuration: {scale_a} − {scale_b} | seeds | difference (points) | bootstrap 95% interval | "
             "per seed | p (Holm) | test | verdict |", "|---|---|---:|---:|---:|---:|---|---|"]
    for cfg, c in rows:
        lines.append(f"| {F.LABELS.get(cfg, cfg)} | {','.join(map(str, c.seeds))} | {_pts(c.diff)} | "
                     f"{_pts(c.ci_low)} to {_pts(c.ci_high)} | {'/'.join(_pts(d) for d in c.diff_per_seed)} | "
                     f"{c.p:.2g} ({c.p_holm:.2g}) | {c.test} | {c.verdict()} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(REPO / "results"))
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--versus", default=None, help="another scale: each configuration against itself there")
    args = ap.parse_args()
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
        print("\n".join(seeds_table(res[key])) + "\n")
        print("\n".join(differences_table(res[key])) + "\n")
        if key == "ckplus":
            print("\n".join(fold_differences(res[key])) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
