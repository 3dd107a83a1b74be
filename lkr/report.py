"""The result tables of the README and ``docs/results.md``, generated from ``results/``.

Every result table in those two files sits between two markers::

    <!-- lkr-table: seeds cpu fer2013 -->
    | configuration | seed 0 | ... |
    <!-- /lkr-table -->

and :func:`render` rewrites what is between them from the committed results, so no number in a
table is copied by hand. ``python scripts/readme_tables.py --write README.md docs/results.md``
(also run by ``make figures``) rewrites them; ``tests/test_report.py`` fails when a file differs
from what :func:`render` gives.

Table kinds (``<scale>``: a folder of ``results/``; ``<key>``: fer2013 or ckplus):

================================== ==========================================================
``summary``                        the paper's four rows beside ours at every scale present
``seeds <scale> <key>``            accuracy per seed, mean ± sd, the paper's row (weighted)
``perclass <scale> <key>``         Table 2 / 3 per class (:func:`lkr.figures.results_table`)
``differences <scale> <key>``      paired differences, both noises (:mod:`lkr.stats`)
``folds <scale> ckplus``           per-fold paired differences of seed 0
``versus <scale> <other> <key>``   each configuration at one scale against itself at another
``capacity``                       LKRNet − VGG19 on FER2013 at each width measured
``headline``                       the README's findings, as bullet lines
``cross <target>``                 FER2013 runs on another dataset's images (FER2013 -> CK+48)
``control <name>``                 the first region control's arms over seeds (history)
``control-ten-crop ckplus``        the first CK+48 control as tested with ten-crop (history)
``design <set> <stage> <λ tag>``   the second region control's table and its Holm family of seven
``design-verdicts``                the second region control's reading of each set, as bullet lines
``regions <scale> <key>``          the mask where it can act on real faces: one Holm family of seven
``design-runs``                    the region control's runs: counts, seconds, machine, design commit
``shipped``                        the model that ships with lkr (its card, :mod:`lkr.shipped`)
``commands``                       the commands a user meets, timed from a fresh clone (benchmarks/)
``timing <which>``                 one README sentence with its measured time: demo, test, browser, figures, evaluate, video
``video``                          the video path's stages and the followed faces against searching every frame
``gpu-throughput``                 training images/s of VGG19 and LKRNet on the GPU call's card (``results/full/throughput.json``)
================================== ==========================================================
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lkr import figures as F
from lkr.config import _fraction
from lkr.results import capacity_comparisons, capacity_points, load_results, shown

ORDER = ["vgg19", "baseline1", "baseline2", "lkrnet", "lkrnet-cover", "lkrnet-l0.4"]
BLOCK = re.compile(r"(<!-- lkr-table: (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(<!-- /lkr-table -->)", re.S)


def _pts(x: float | None, sign: bool = True) -> str:
    """A fraction as points of accuracy, one decimal, with a real minus sign."""
    if x is None:
        return "–"
    v = round(100 * x, 1) + 0.0  # no "-0.0"
    if v == 0 and round(100 * x, 2):  # keep the sign of a small nonzero value: "−0.05", not "0.0"
        return f"{100 * x:+.2f}".replace("-", "−")
    return (f"{v:+.1f}" if sign and v else f"{v:.1f}").replace("-", "−")


def _ordered(results: dict) -> list[tuple[str, Any]]:
    return sorted(results.items(), key=lambda item: ORDER.index(item[0]) if item[0] in ORDER else 99)


def _paper_overall(key: str, results: dict) -> dict[str, float | None]:
    """The paper's rows weighted by our test set's class counts, by our configuration name."""
    from lkr.paper import OURS_TO_PAPER, paper_overall

    counts = F._test_counts(results)
    paper = paper_overall(key, counts) if counts else {}
    return {cfg: paper.get(name) for cfg, name in OURS_TO_PAPER.items()}


def _mean_sd(values: list[float]) -> str:
    v = np.asarray(values, float)
    return f"{100 * v.mean():.1f} ± {100 * v.std(ddof=1):.1f}" if len(v) > 1 else f"{100 * v[0]:.1f}"


def seeds_table(results: dict, key: str | None = None) -> list[str]:
    """config | seed 0 | seed 1 | ... | mean ± sd [| paper's row (weighted)] (accuracy, %; CK+:
    pooled over the folds)."""
    from lkr.results import untouched_accuracy

    seeds = sorted({s for r in results.values() for s in r.by_seed()})
    paper = _paper_overall(key, results) if key else {}
    clean = any(untouched_accuracy(r) is not None for r in results.values())
    extra = (" untouched subjects: mean ± sd |" if clean else "") + (" paper's row (weighted*) |" if key else "")
    lines = ["| configuration | " + " | ".join(f"seed {s}" for s in seeds) + f" | mean ± sd |{extra}",
             "|---|" + "---:|" * (len(seeds) + 1 + clean + bool(key))]
    for cfg, r in _ordered(results):
        runs = r.by_seed()
        accs = {s: x.metrics["accuracy"] for s, x in runs.items()}
        cells = [_pts(accs.get(s), sign=False) for s in seeds]
        tail = ""
        if clean:  # beside each pooled accuracy, the accuracy on the subjects no choice touched
            u = {s: untouched_accuracy(x) for s, x in runs.items()}
            cells = [c if u.get(s) is None else f"{c} ({_pts(u[s], sign=False)})" for c, s in zip(cells, seeds)]
            tail += f" {_mean_sd([v for v in u.values() if v is not None])} |"
        if key:
            p = paper.get(cfg)
            tail += f" {'–' if p is None else f'{p:.1f}'} |"
        lines.append(f"| {F.LABELS.get(cfg, cfg)} | " + " | ".join(cells) + f" | **{_mean_sd(list(accs.values()))}** |{tail}")
    return lines


def perclass_table(key: str, results: dict) -> list[str]:
    """Table 2 (ckplus) or 3 (fer2013): the paper's rows beside ours, per class."""
    return F.table_markdown(F.results_table(key, results), F.table_note(results))


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
    for cfg, _ in _ordered(res_a):
        if cfg not in res_b:
            continue
        try:
            rows.append((cfg, compare(scale_a, scale_b, res_a[cfg].seed_predictions(), res_b[cfg].seed_predictions())))
        except ValueError as e:
            print(f"[lkr.report] {cfg}: not compared ({e})", file=sys.stderr)
    holm([c for _, c in rows])
    lines = [f"| configuration: {scale_a} − {scale_b} | seeds | difference (points) | bootstrap 95% interval | "
             "per seed | p, test images (Holm) | test | verdict |", "|---|---|---:|---:|---:|---:|---|---|"]
    for cfg, c in rows:
        lines.append(f"| {F.LABELS.get(cfg, cfg)} | {','.join(map(str, c.seeds))} | {_pts(c.diff)} | "
                     f"{_pts(c.ci_low)} to {_pts(c.ci_high)} | {'/'.join(_pts(d) for d in c.diff_per_seed)} | "
                     f"{F._p(c.p)} ({F._p(c.p_holm)}) | {c.test} | {c.verdict()} |")
    return lines


SUMMARY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("fer2013", "cpu", "FER2013, 1/8 width"),
    ("fer2013", "cpu-quarter", "FER2013, 1/4 width"),
    ("fer2013", "full", "FER2013, full width"),
    ("ckplus", "cpu", "CK+48 from scratch, 1/8"),
    ("ckplus", "cpu-ft", "CK+48 fine-tuned from FER2013, 1/8"),
    ("ckplus", "full", "CK+48, full width"),
)
"""The README's summary: (dataset, scale, heading) of each column of ours, where results exist."""
SUMMARY_BEYOND: tuple[str, ...] = ("lkrnet-s1",)
"""Rows of the summary beyond the paper's four (LKRNet with the mask at stage 1,
``docs/real-faces-design.md``), shown once a column has every seed of their design
(:func:`lkr.results.shown`)."""


def summary_table(root: str | Path) -> list[str]:
    """The paper's four configurations: the paper's number beside ours at every scale present
    (mean ± sd over seeds, with the seed count; FER2013 PrivateTest, CK+48 pooled over 10
    subject-independent folds)."""
    from lkr.paper import OURS_TO_PAPER, paper_overall

    root = Path(root)
    cols, res_of = [], {}
    for key, scale, head in SUMMARY_COLUMNS:
        res = load_results(root / scale).get(key)
        if res:
            cols.append((key, scale, head))
            res_of[(key, scale)] = res
    paper = {key: paper_overall(key) for key in ("fer2013", "ckplus")}
    heads = []
    for key in ("fer2013", "ckplus"):
        heads.append(f"paper, {'FER2013' if key == 'fer2013' else 'CK+'}*")
        heads += [f"ours: {h}" for k, _, h in cols if k == key]
    lines = ["| configuration | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    rows = dict(OURS_TO_PAPER)
    for cfg in SUMMARY_BEYOND:  # beyond the paper: a row once a column has all its seeds
        if any(shown(res, cfg) for res in res_of.values()):
            rows[cfg] = None
    for cfg, name in rows.items():
        cells = []
        for key in ("fer2013", "ckplus"):
            p = None if name is None else paper[key].get(name)
            cells.append("–" if p is None else f"{p:.1f}")
            for k, scale, _ in cols:
                if k != key:
                    continue
                r = res_of[(k, scale)].get(cfg) if shown(res_of[(k, scale)], cfg) else None
                if r is None:
                    cells.append("–")
                    continue
                from lkr.results import untouched_accuracy

                accs = [x.metrics["accuracy"] for x in r.by_seed().values()]
                clean = [untouched_accuracy(x) for x in r.by_seed().values()]
                cells.append(f"{_mean_sd(accs)} ({len(accs)})"
                             + ("" if None in clean else f"; untouched {_mean_sd(clean)}"))
        lines.append(f"| {F.LABELS.get(cfg, cfg)} | " + " | ".join(cells) + " |")
    return lines


def capacity_family(root: str | Path) -> list[tuple[str, dict, str, str, Any]]:
    """(scale, results, arm, mask label, arm − VGG19) of every row of the capacity table, their
    p-values Holm-adjusted together (one family: :func:`capacity_table` and :func:`headline`)."""
    from lkr.stats import holm

    rows = [(scale, res, arm, label, c) for scale, res in capacity_points(root)
            for arm, label, c in capacity_comparisons(res)]
    holm([r[-1] for r in rows])
    return rows


def capacity_table(root: str | Path) -> list[str]:
    """LKRNet − VGG19 on FER2013 at each width measured, for LKRNet with the paper's mask and,
    where trained, with the mask at stage 1: both accuracies (mean ± sd over the seeds both have),
    the difference with its bootstrap interval over test images and its t interval over seeds,
    and both p-values, Holm-adjusted over every contrast of the table (one family)."""
    rows = capacity_family(root)
    lines = [f"| scale | width | LKRNet's mask | seeds | VGG19 | LKRNet | LKRNet − VGG19 | bootstrap 95% (test images) "
             f"| t 95% (seeds) | p, test images (Holm over {len(rows)}) | p, seeds (paired t; Holm) |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for scale, res, arm, label, c in rows:
        acc = {n: [res[n].by_seed()[s].metrics["accuracy"] for s in c.seeds] for n in ("vgg19", arm)}
        width = float(res[arm].metrics.get("width") or 1.0)
        seed_ci = "–" if c.seed_ci_low is None else f"{_pts(c.seed_ci_low)} to {_pts(c.seed_ci_high)}"
        lines.append(f"| {scale} | {_fraction(width)} | {label} | {','.join(map(str, c.seeds))} | {_mean_sd(acc['vgg19'])} "
                     f"| {_mean_sd(acc[arm])} | {_pts(c.diff)} | {_pts(c.ci_low)} to {_pts(c.ci_high)} "
                     f"| {seed_ci} | {F._p(c.p)} ({F._p(c.p_holm)}) | {F._p(c.p_seeds)} ({F._p(c.p_seeds_holm)}) |")
    return lines


def control_table(root: str | Path, name: str = "synthetic", *, ten_crop: bool = False) -> list[str]:
    """The first region control (``results/control/<name>/<arm>/seed<s>``, :mod:`lkr.control`;
    history since the second design, ``docs/control-design.md``): each arm's test accuracy over
    seeds (mean ± sd), each branch's own accuracy (the prediction is their mean), the share of
    test predictions that name the spurious cue's class, and two contrasts paired by seed (each
    seed is one set and one network per arm), each with its t interval over seeds and a paired
    t-test over seeds: against VGG19, and against the uniform mask at the same stage. Every
    contrast the table shows is in **one** Holm family. ``ten_crop``: the CK+48 runs as first
    tested, with ten-crop (``results/control/ckplus-ten-crop``, ``scripts/control_history.py``)."""
    import json

    from lkr.control import ARMS
    from lkr.stats import holm_adjust, seed_interval, seed_test

    base = Path(root) / "control" / (f"{name}-ten-crop" if ten_crop else name)
    rec: dict[str, dict[int, dict]] = {}
    for arm in ARMS:
        for d in sorted((base / arm).glob("seed*")):
            rec.setdefault(arm, {})[int(d.name[4:])] = json.loads((d / "metrics.json").read_text())
    if not rec:
        raise KeyError(f"table 'control {name}': no runs in {base}")

    def contrast(arm: str, other: str) -> list | None:
        if other not in rec or arm == other:
            return None
        both = [s for s in sorted(rec[arm]) if s in rec[other]]
        d = [rec[arm][s]["accuracy"] - rec[other][s]["accuracy"] for s in both]
        if not d:
            return None
        lo, hi = seed_interval(d)
        return [_pts(float(np.mean(d))), ("–" if lo is None else f"{_pts(lo)} to {_pts(hi)}"), seed_test(d), None]

    rows = []
    for arm in ARMS:
        if arm not in rec:
            continue
        stage = ARMS[arm].get("mask_stage")
        uniform = "uniform-mask" + (f"-stage{stage}" if stage else "")
        regions = ARMS[arm]["variant"] != "vgg19" and ARMS[arm].get("mask_source") != "uniform"
        rows.append((arm, contrast(arm, "vgg19"), contrast(arm, uniform) if regions else None))
    family = [c for r in rows for c in r[1:] if c is not None]  # one family: every contrast shown
    if family:
        for c, q in zip(family, holm_adjust([1.0 if c[2] is None else c[2] for c in family])):
            c[3] = float(q)
    lines = [f"| arm | seeds | test accuracy | global branch | local branch | follows the cue | − VGG19 (points; "
             f"t 95% over seeds; p paired t, Holm over all {len(family)}) | − uniform mask, same stage (points; "
             f"t 95%; p, Holm over all {len(family)}) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]

    def cell(c) -> str:
        if c is None:
            return "–"
        return f"{c[0]} ({c[1]}; {'–' if c[2] is None else F._p(c[2])}, {F._p(c[3])})"

    for arm, vs_vgg, vs_uni in rows:
        seeds = sorted(rec[arm])
        acc = [rec[arm][s]["accuracy"] for s in seeds]
        br = {k: [rec[arm][s].get(f"accuracy_{k}_branch") for s in seeds] for k in ("global", "local")}
        brc = {k: ("–" if None in v else _mean_sd(v)) for k, v in br.items()}
        follow = f"{100 * np.nanmean([rec[arm][s].get('cue_follow_rate', np.nan) for s in seeds]):.1f} %"
        lines.append(f"| {arm} | {','.join(map(str, seeds))} | {_mean_sd(acc)} | {brc['global']} | {brc['local']} "
                     f"| {follow} | {cell(vs_vgg)} | {cell(vs_uni)} |")
    return lines


def _ci(lo: float | None, hi: float | None) -> str:
    return "–" if lo is None else f"{_pts(lo)} to {_pts(hi)}"


def design_lines(root: str | Path, dataset: str, stage: int, tag: str) -> list[str]:
    """One table of the second region control (``docs/control-design.md``): each arm's accuracy
    over seeds, each branch's own accuracy and the share of predictions that follow the cue;
    then its seven contrasts, one Holm family, both noises, each with its verdict. While a run
    is missing, the arms' rows say how many and no contrast is shown."""
    from lkr.control import CONTRASTS, arm_of
    from lkr.control_results import MASK_LABELS, design_table, kept_arms, load_arm, told

    t = design_table(root, dataset, stage, tag)
    unit = "subjects" if dataset.startswith("ckplus") else "test positions"
    lines = ["| arm | seeds | runs | test accuracy | global branch | local branch | follows the cue |",
             "|---|---|---:|---:|---:|---:|---:|"]
    rows = [(MASK_LABELS[m], arm_of(m, stage, tag), a) for m, a in t.arms.items()]
    rows += [(name, name, load_arm(root, dataset, name)) for name in kept_arms(dataset, stage, tag)]
    for label, name, a in rows:
        if a is None:
            lines.append(f"| {label} (`{name}`) | – | 0 | – | – | – | – |")
            continue
        acc = a.seed_accuracy()
        br = {k: a.seed_mean(f"accuracy_{k}_branch") for k in ("global", "local")}
        brc = {k: (_mean_sd(list(v.values())) if len(v) == len(acc) else "–") for k, v in br.items()}
        follow = a.seed_mean("cue_follow_rate")
        lines.append(f"| {label} (`{name}`) | {','.join(map(str, sorted(acc)))} | {len(a.records)} | "
                     f"{_mean_sd(list(acc.values()))} | {brc['global']} | {brc['local']} | "
                     f"{100 * np.mean(list(follow.values())):.1f} % |")
    lines.append("")
    if not t.complete:
        left = ", ".join(f"{MASK_LABELS[m]} {n}" for m, n in t.missing.items() if n)
        lines.append(f"In progress: runs still missing ({left}); no contrast is shown until every run is in.")
        return lines
    lines += [f"| contrast (one Holm family of {len(CONTRASTS)}) | difference (points) | over {unit}: 95 % | "
              "p (Holm) | over seeds: t 95 % | p (Holm) | verdict |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for (a, b), c in zip(CONTRASTS, t.comparisons):
        lines.append(f"| {MASK_LABELS[a]} − {MASK_LABELS[b]} | {_pts(c.diff)} | {_ci(c.ci_low, c.ci_high)} | "
                     f"{F._p(c.p)} ({F._p(c.p_holm)}) | {_ci(c.seed_ci_low, c.seed_ci_high)} | "
                     f"{F._p(c.p_seeds)} ({F._p(c.p_seeds_holm)}) | {told(c)} |")
    return lines


SLOW_RUN = 3
"""A control run that took more than this many times its set's median is counted apart in
:func:`design_runs` (its worker was stopped, or shared the cores, for part of it)."""


def design_runs(root: str | Path) -> list[str]:
    """How the region control's committed runs were made, per set, from their records: arms and
    runs in, the seconds each run took in its worker (sum, median and range; the runs over
    :data:`SLOW_RUN` × the median counted apart in the sum), the machine, threads, precision and
    the design commit they ran under."""
    from lkr.control import DESIGN_SETS, design_arms
    from lkr.control_results import expected_runs, load_arm

    lines = ["| set | arms in (of) | runs in (of) | seconds in the workers: sum | per run: median (range) | "
             "machine, threads | precision | design commit |", "|---|---:|---:|---:|---:|---|---|---|"]
    for dataset in DESIGN_SETS:
        arms = [a for a in (load_arm(root, dataset, name) for name in design_arms(dataset)) if a is not None]
        if not arms:
            lines.append(f"| {dataset} | 0 ({len(design_arms(dataset))}) | 0 | – | – | – | – | – |")
            continue
        recs = [r for a in arms for r in a.records]
        secs = np.array([r["seconds"] for r in recs], float)
        want = len(design_arms(dataset)) * len(expected_runs(dataset))
        machine = sorted({f"{r.get('cpu_model')}, {r.get('threads')} thread{'' if r.get('threads') == 1 else 's'}"
                          for r in recs})
        prec = sorted({str(r.get("precision")) for r in recs})
        commits = sorted({str(r.get("design_commit"))[:10] for r in recs})
        slow = secs > SLOW_RUN * np.median(secs)  # stopped or crowded workers: their seconds are not the run's
        total = f"{secs.sum():,.0f}" + (f" (of which {int(slow.sum())} runs over {SLOW_RUN}× the median: "
                                        f"{secs[slow].sum():,.0f})" if slow.any() else "")
        lines.append(f"| {dataset} | {len(arms)} ({len(design_arms(dataset))}) | {len(recs)} ({want}) | "
                     f"{total} | {np.median(secs):.0f} ({secs.min():.0f}–{secs.max():.0f}) | "
                     f"{'; '.join(machine)} | {', '.join(prec)} | {', '.join(commits)} |")
    return lines


def design_verdicts(root: str | Path, stage: int = 1, tag: str = "l02") -> list[str]:
    """The README's bullets on the second region control: for each set, at stage 1 with
    LKRNet's loss, key regions − centre, − face, − off-landmark and − uniform mask with both
    intervals and Holm p, and the design's reading of the table (``set_verdict``)."""
    from lkr.control import DESIGN_SETS
    from lkr.control_results import MASK_LABELS, SET_LABELS, design_table, set_verdict, told

    out = []
    for dataset in DESIGN_SETS:
        t = design_table(root, dataset, stage, tag)
        head = (f"- Region control, {SET_LABELS[dataset]}, mask at stage {stage}, λ {0.2 if tag == 'l02' else 0} "
                f"({'LKRNet' if tag == 'l02' else 'Baseline 1'} and its partners)")
        if not t.complete:
            n = sum(t.missing.values())
            out.append(f"{head}: in progress ({n} runs of the table still to come; no verdict yet).")
            continue
        parts = []
        for other in ("centre", "face", "off-landmark", "uniform"):
            c = t.contrast("key", other)
            parts.append(f"key regions − {MASK_LABELS[other]} {_pts(c.diff)} points (over "
                         f"{'subjects' if dataset.startswith('ckplus') else 'test positions'} "
                         f"{_ci(c.ci_low, c.ci_high)}, Holm p {F._p(c.p_holm)}; over seeds "
                         f"{_ci(c.seed_ci_low, c.seed_ci_high)}, Holm p {F._p(c.p_seeds_holm)}): {told(c)}")
        out.append(f"{head}: {set_verdict(t)}. " + "; ".join(parts) + ".")
    return out


REGION_SEEDS = (0, 1, 2)
"""The seeds every configuration of the real-face region table must have (docs/real-faces-design.md)."""


def region_comparisons(results: dict) -> tuple[list[Any] | None, list[str]]:
    """The real-face region family (:data:`lkr.stats.REGION_PAIRS`), Holm-corrected together,
    once every configuration in it has the design's seeds (:data:`REGION_SEEDS`; on CK+48 each a
    pooled record of all ten folds); else (None, what is missing or why they cannot be compared)."""
    from lkr.stats import REGION_PAIRS, compare, holm

    names = sorted({c for pair in REGION_PAIRS for c in pair})
    missing = []
    for c in names:
        have = set(results[c].seed_predictions()) if c in results else set()
        if not set(REGION_SEEDS) <= have:
            missing.append(f"{F.LABELS.get(c, c)} (seeds {', '.join(str(s) for s in REGION_SEEDS if s not in have)})")
    if missing:
        return None, missing
    try:
        comps = [compare(a, b, {s: results[a].seed_predictions()[s] for s in REGION_SEEDS},
                         {s: results[b].seed_predictions()[s] for s in REGION_SEEDS}) for a, b in REGION_PAIRS]
    except ValueError as e:  # tested on other images: no table, one line saying why
        return None, [f"cannot be compared ({e})"]
    holm(comps)
    return comps, []


def regions_lines(root: str | Path, scale: str, key: str) -> list[str]:
    """The mask where it can act, on real faces (``docs/real-faces-design.md``): the seven
    contrasts of :data:`lkr.stats.REGION_PAIRS` in one Holm family, both noises, with their
    verdicts; one line saying what is missing while a configuration is."""
    results = load_results(Path(root) / scale).get(key) or {}
    comps, missing = region_comparisons(results)
    if comps is None:
        return [f"In progress at scale {scale}: {'; '.join(missing)}."]
    unit = "subjects" if key == "ckplus" else "test images"
    lines = [f"| contrast (one Holm family of {len(comps)}) | seeds | difference (points) | over {unit}: 95 % | "
             "p (Holm) | over seeds: t 95 % | p (Holm) | verdict |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for c in comps:
        lines.append(f"| {F.LABELS.get(c.a, c.a)} − {F.LABELS.get(c.b, c.b)} | {','.join(map(str, c.seeds))} | "
                     f"{_pts(c.diff)} | {_ci(c.ci_low, c.ci_high)} | {F._p(c.p)} ({F._p(c.p_holm)}) | "
                     f"{_ci(c.seed_ci_low, c.seed_ci_high)} | {F._p(c.p_seeds)} ({F._p(c.p_seeds_holm)}) | "
                     f"{F._verdict(c)} |")
    return lines


def regions_verdict(results: dict, comps: list[Any] | None = None) -> str | None:
    """The design's reading of the real-face region table (docs/real-faces-design.md): "not told
    apart from VGG19" (or "below VGG19") unless LKRNet at stage 1 is above VGG19, told apart; then
    "a gain that needs the landmarks" when it is also above the face mask and the off-landmark
    rectangles, "… that a mask without landmarks exceeds" when one of them is above it, else
    "… that a mask without landmarks is not told apart from"; None while the table is incomplete."""
    if comps is None:  # (the table's comparisons when the caller has them already)
        comps, _ = region_comparisons(results)
    if comps is None:
        return None
    by = {(c.a, c.b): c.verdict() for c in comps}
    vs_vgg = by[("lkrnet-s1", "vgg19")]
    if vs_vgg != "lkrnet-s1 better":
        return "below VGG19" if vs_vgg == "vgg19 better" else "not told apart from VGG19"
    others = [by[("lkrnet-s1", o)] for o in ("face-s1", "off-landmark-s1")]
    if all(v == "lkrnet-s1 better" for v in others):
        return "a gain over VGG19 that needs the landmarks (the face mask and the off-landmark rectangles are below it)"
    if any(v in ("face-s1 better", "off-landmark-s1 better") for v in others):
        return "a gain over VGG19 that a mask without landmarks exceeds"
    return "a gain over VGG19 that a mask without landmarks is not told apart from"


def headline(root: str | Path) -> list[str]:
    """The README's findings as bullet lines, every number from ``root``: LKRNet − VGG19 on FER2013
    at each width against the paper's gap, every comparison told apart at any scale (both
    noises), and the region control's reading of each set (:func:`design_verdicts`)."""
    from lkr.config import SCALE_NAMES
    from lkr.paper import paper_overall

    root = Path(root)
    paper = paper_overall("fer2013")
    gap = paper["Our method"] - paper["VGG19"]
    out = []
    family = capacity_family(root)  # the capacity table's family: the same Holm p as there
    for scale, res, arm, label, c in family:
        w = _fraction(float(res[arm].metrics.get("width") or 1.0))
        seeds = f"seeds {','.join(map(str, c.seeds))}"
        ci = "" if c.seed_ci_low is None else (f"; over seeds {_pts(c.seed_ci_low)} to {_pts(c.seed_ci_high)}, "
                                               f"Holm p {F._p(c.p_seeds_holm)}")
        out.append(f"- FER2013 at {w} width: LKRNet with the mask at {label} − VGG19 {_pts(c.diff)} points ({seeds}; over "
                   f"test images {_pts(c.ci_low)} to {_pts(c.ci_high)}, Holm p {F._p(c.p_holm)}{ci}; "
                   f"Holm over the {len(family)} rows of the capacity table): {F._verdict(c)}; the paper's rows: {gap:+.1f}.")
    for scale in SCALE_NAMES:
        for key, res in load_results(root / scale).items():
            for c in F.comparisons(res):
                v = c.verdict()
                if v == "not told apart" or v.endswith("(one seed)") or c.p_holm is None:
                    continue
                win, lose = (c.a, c.b) if v.startswith(c.a) else (c.b, c.a)
                out.append(f"- {'CK+48' if key == 'ckplus' else 'FER2013'} at scale {scale}: told apart: "
                           f"{F.LABELS.get(win, win)} above {F.LABELS.get(lose, lose)} by {_pts(abs(c.diff), sign=False)} "
                           f"points (seeds {','.join(map(str, c.seeds))}; Holm p {F._p(c.p_holm)} over test images, "
                           f"{F._p(c.p_seeds_holm)} over seeds).")
    for scale in SCALE_NAMES:  # the mask where it can act, on real faces, once its table is complete
        for key, res in load_results(root / scale).items():
            found, _ = region_comparisons(res)
            if found is None:
                continue
            v = regions_verdict(res, found)
            comps = {(c.a, c.b): c for c in found}
            parts = []
            for other in ("vgg19", "face-s1", "off-landmark-s1", "lkrnet"):
                c = comps[("lkrnet-s1", other)]
                label = "LKRNet with the mask at stage 5 (the paper's)" if other == "lkrnet" else F.LABELS.get(other, other)
                parts.append(f"− {label} {_pts(c.diff)} points (over "
                             f"{'subjects' if key == 'ckplus' else 'test images'} {_ci(c.ci_low, c.ci_high)}, Holm p "
                             f"{F._p(c.p_holm)}; over seeds {_ci(c.seed_ci_low, c.seed_ci_high)}, Holm p "
                             f"{F._p(c.p_seeds_holm)}; {F._verdict(c)})")
            face = comps[("lkrnet-s1", "face-s1")].verdict()  # issue 32's test of the landmarks: regions - face mask
            marks = {"lkrnet-s1 better": "above it, told apart", "face-s1 better": "below it, told apart"}.get(
                face, "not told apart")
            out.append(f"- {'CK+48' if key == 'ckplus' else 'FER2013'} at scale {scale}, LKRNet with the mask at "
                       f"stage 1: {v}; whether the landmarks matter (the key regions against the face mask): {marks}; "
                       f"Holm over the {len(found)} contrasts of its table: " + ", ".join(parts) + ".")
    if (root / "control-v2").is_dir():  # the region control's reading of each set (its first design is history)
        out += design_verdicts(root)
    return out


def cross_table(root: str | Path, target: str = "ckplus") -> list[str]:
    """FER2013 runs evaluated on another dataset's images (``<config>/[seed<s>/]cross/<target>``,
    :func:`lkr.evaluate.evaluate_cross`), every from-scratch scale: accuracy over the shared
    classes with its interval (CK+: resampling subjects), and LKRNet − VGG19 paired on the same
    images (clustered sign-flip over subjects on CK+)."""
    import json

    from lkr.config import FINE_TUNE, SCALE_NAMES
    from lkr.stats import compare

    lines = ["| scale | configuration | seed | images | accuracy (shared classes) | 95% interval | "
             "LKRNet − VGG19 (points; 95%; p) |", "|---|---|---:|---:|---:|---:|---:|"]
    found = False
    for scale in SCALE_NAMES:
        if scale in FINE_TUNE:
            continue
        d = Path(root) / scale / "fer2013"
        preds, mets = {}, {}
        for m_f in sorted(d.glob(f"*/cross/{target}/metrics.json")) + sorted(d.glob(f"*/seed*/cross/{target}/metrics.json")):
            cfg_dir = m_f.parents[2]
            seed = int(cfg_dir.name[4:]) if cfg_dir.name.startswith("seed") else 0
            cfg = cfg_dir.parent.name if seed else cfg_dir.name
            mets[(cfg, seed)] = json.loads(m_f.read_text())
            with np.load(m_f.parent / "predictions.npz") as z:
                preds[(cfg, seed)] = {k: z[k] for k in z.files}
        for (cfg, seed) in sorted(mets, key=lambda k: (k[1], ORDER.index(k[0]) if k[0] in ORDER else 99)):
            m = mets[(cfg, seed)]
            pair = ""
            if cfg == "lkrnet" and ("vgg19", seed) in preds:
                c = compare("lkrnet", "vgg19", {seed: preds[(cfg, seed)]}, {seed: preds[("vgg19", seed)]})
                pair = f"{_pts(c.diff)} ({_pts(c.ci_low)} to {_pts(c.ci_high)}; {F._p(c.p)})"
            found = True
            lines.append(f"| {scale} | {F.LABELS.get(cfg, cfg)} | {seed} | {m['n']} | {100 * m['accuracy']:.1f} | "
                         f"{100 * m['ci_low']:.1f} to {100 * m['ci_high']:.1f} | {pair or '–'} |")
        seeds = sorted(s for (c, s) in preds if c == "lkrnet" and ("vgg19", s) in preds)
        if len(seeds) >= 2:  # over the seeds: the image-level (subjects) and the seed-level answer
            c = compare("lkrnet", "vgg19", {s: preds[("lkrnet", s)] for s in seeds},
                        {s: preds[("vgg19", s)] for s in seeds})
            for cfg in ("vgg19", "lkrnet"):
                accs = [100 * mets[(cfg, s)]["accuracy"] for s in seeds]
                pair = (f"{_pts(c.diff)} ({c.resampled}: {_pts(c.ci_low)} to {_pts(c.ci_high)}; {F._p(c.p)}; seeds: "
                        f"{_pts(c.seed_ci_low)} to {_pts(c.seed_ci_high)}; {F._p(c.p_seeds)})") if cfg == "lkrnet" else "–"
                lines.append(f"| {scale} | {F.LABELS.get(cfg, cfg)} | mean of {len(seeds)} | {mets[(cfg, seeds[0])]['n']} | "
                             f"{np.mean(accs):.1f} | sd {np.std(accs, ddof=1):.1f} over seeds | {pair} |")
    shipped = Path(root) / "shipped" / "cross" / target / "metrics.json"
    if shipped.is_file():  # the model that ships with lkr (lkr.shipped; docs/model-card.md)
        m = json.loads(shipped.read_text())
        found = True
        from lkr.shipped import read_card

        c = read_card()
        lines.append(f"| shipped | {c['name']}, {c['dtype']} file | {c['config']['seed']} | {m['n']} | "
                     f"{100 * m['accuracy']:.1f} | "
                     f"{100 * m['ci_low']:.1f} to {100 * m['ci_high']:.1f} | – |")
    if not found:
        raise KeyError(f"table 'cross {target}': no cross-dataset evaluations in {root}")
    return lines


GPU_THROUGHPUT = Path("full") / "throughput.json"
"""Where the GPU call's ``throughput.json`` lands under ``results/`` (docs/gpu-runs.md)."""


def _width(width: float) -> str:
    return "full" if width == 1 else _fraction(width)


def gpu_throughput_table(root: str | Path) -> list[str]:
    """The training images/s the GPU call measured (its probes on FER2013 Training, the last epoch),
    one row per configuration with the card's name; a line saying none yet while no call has landed."""
    import json

    path = Path(root) / GPU_THROUGHPUT
    if not path.is_file():
        return ["No GPU call has landed yet (no `results/full/throughput.json`): `bash scripts/gpu_run.sh` on a "
                "lent GPU measures it (`docs/gpu-runs.md`)."]
    d = json.loads(path.read_text())
    if d.get("dry_run"):
        raise KeyError(f"table 'gpu-throughput': {path} is a dry run's, not a measurement")
    lines = ["| configuration | training images/s | seconds an epoch | precision | device | width, batch | date |",
             "|---|---:|---:|---|---|---|---|"]
    for name, c in d["configs"].items():
        prec = (c.get("precision") or {}).get("precision", "?")
        lines.append(f"| {name} | {c['images_per_s']:,.0f} | {c['epoch_seconds']:.2f} | {prec} | "
                     f"{c.get('device') or d['device']} | {_width(float(d['width']))}, {d['batch_size']} | "
                     f"{d.get('date', '?')} |")
    return lines


def shipped_table() -> list[str]:
    """The shipped model's card (``lkr/data/model/card.json``) as a table: size, sha256 and every
    accuracy measured with the shipped file."""
    from lkr.shipped import read_card

    c = read_card()
    m, t = c["privatetest"], c["training"]
    lines = ["| model | file | FER2013 PrivateTest (ten-crop) | 95% interval | " + " | ".join(
        f"{k} | 95% interval" for k in c.get("cross", {})) + " |",
        "|---|---|---:|---:|" + "---:|---:|" * len(c.get("cross", {}))]
    cross = "".join(f" {100 * x['accuracy']:.1f} ({x['n']} images) | {100 * x['ci_low']:.1f} to {100 * x['ci_high']:.1f} "
                    f"({x['resampled']}) |" for x in c.get("cross", {}).values())
    lines.append(f"| {c['name']}; epoch {t['best_epoch']} selected on PublicTest | {c['bytes'] / 1e6:.2f} MB, "
                 f"{c['dtype']}, sha256 `{c['sha256'][:12]}…` | {100 * m['accuracy']:.1f} | "
                 f"{100 * m['ci_low']:.1f} to {100 * m['ci_high']:.1f} |{cross}")
    r = c.get("replaces")
    if r:  # the model it replaced, as its card said
        rc = "".join(f" {100 * x['accuracy']:.1f} ({x['n']} images) | {100 * x['ci_low']:.1f} to "
                     f"{100 * x['ci_high']:.1f} ({c['cross'].get(k, {}).get('resampled', 'subjects')}) |"
                     for k, x in r.get("cross", {}).items())
        lines.append(f"| before it: {r['name']} | {r['bytes'] / 1e6:.2f} MB, {r['dtype']}, sha256 "
                     f"`{r['sha256'][:12]}…` | {100 * r['privatetest']['accuracy']:.1f} | "
                     f"{100 * r['privatetest']['ci_low']:.1f} to {100 * r['privatetest']['ci_high']:.1f} |{rc}")
    target = c.get("target", 0.67)
    lines += ["", f"Stored in {c['dtype']} and run in float32 ({c['parameters']:,} parameters). Its PrivateTest "
              f"accuracy, {100 * m['accuracy']:.1f} % (95 % interval {100 * m['ci_low']:.1f} to {100 * m['ci_high']:.1f}), "
              + (f"reaches the {100 * target:.0f} % the kit aimed at" if m["accuracy"] >= target else
                 f"falls short of the {100 * target:.0f} % the kit aimed at")
              + (", and its interval reaches below it." if m["ci_low"] < target <= m["accuracy"] else
                 ", and so does its interval." if m["ci_high"] < target else ".")]
    if r:
        from lkr.shipped import _differences, _why_replaced

        lines[-1] += " " + _why_replaced(c) + " " + _differences(r.get("differences") or {})
    return lines


def table(spec: str, root: str | Path) -> list[str]:
    """The lines of one table, by its marker's spec (see the module docstring)."""
    words = spec.split()
    kind, args = words[0], words[1:]
    root = Path(root)

    def res(scale: str, key: str) -> dict:
        r = load_results(root / scale).get(key)
        if not r:
            raise KeyError(f"table {spec!r}: no {key} results in {root / scale}")
        return r

    makers: dict[str, Callable[[], list[str]]] = {
        "summary": lambda: summary_table(root),
        "capacity": lambda: capacity_table(root),
        "headline": lambda: headline(root),
        "cross": lambda: cross_table(root, *args[:1]),
        "control": lambda: control_table(root, *args[:1]),
        "control-ten-crop": lambda: control_table(root, *args[:1], ten_crop=True),
        "design": lambda: design_lines(root, args[0], int(args[1]), args[2]),
        "design-verdicts": lambda: design_verdicts(root, tag=args[0] if args else "l02"),
        "regions": lambda: regions_lines(root, args[0], args[1]),
        "design-runs": lambda: design_runs(root),
        "shipped": shipped_table,
        "commands": lambda: commands_table(root),
        "video": lambda: video_table(root),
        "gpu-throughput": lambda: gpu_throughput_table(root),
        "timing": lambda: timing_line(root, args[0]),
        "seeds": lambda: seeds_table(res(args[0], args[1]), args[1]),
        "perclass": lambda: perclass_table(args[1], res(args[0], args[1])),
        "differences": lambda: differences_table(res(args[0], args[1])),
        "folds": lambda: fold_differences(res(args[0], args[1])),
        "versus": lambda: between_scales(res(args[0], args[2]), res(args[1], args[2]), args[0], args[1]),
    }
    if kind not in makers:
        raise KeyError(f"table {spec!r}: unknown kind {kind!r}; choose from {', '.join(makers)}")
    return makers[kind]()


def _duration(seconds: float) -> str:
    """A wall time as a reader says it: "56 s", "4 min 7 s"."""
    s = int(round(seconds))
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60} s"


def _commands(root: str | Path) -> dict:
    """``benchmarks/results/commands-cpu.json`` beside ``root`` (``benchmarks/bench_commands.py``)."""
    import json

    f = Path(root).resolve().parent / "benchmarks" / "results" / "commands-cpu.json"
    if not f.is_file():
        raise KeyError(f"{f}: no command timings (run python benchmarks/bench_commands.py on an idle machine)")
    data = json.loads(f.read_text())

    class _Rows(dict):
        def __missing__(self, command: str) -> Any:
            raise KeyError(f"{f}: no row for {command!r} (python benchmarks/bench_commands.py measures it)")

    data["by"] = _Rows({r["command"]: r for r in data["rows"]})
    return data


def video_table(root: str | Path) -> list[str]:
    """``benchmarks/results/video-cpu.json`` (``benchmarks/bench_video.py``): milliseconds a frame
    of each stage for each way of finding the faces, then the followed faces against searching
    every frame (labels and boxes on the same frames)."""
    import json

    f = Path(root).resolve().parent / "benchmarks" / "results" / "video-cpu.json"
    if not f.is_file():
        raise KeyError(f"{f}: no video timings (run python benchmarks/bench_video.py on an idle machine)")
    d = json.loads(f.read_text())
    when = d["date"] + (f", commit {d['commit']}" if d.get("commit") else "")
    if d.get("stopped_while_timing"):
        when += f", {d['stopped_while_timing']} background processes stopped (SIGSTOP) while timing from {d['started']} UTC"
    lines = [f"{d['cpu']}, {d['threads']} threads, {d['clip']}, {d['rows'][0]['frames']} frames ({when}); "
             "milliseconds a frame (the model and MTCNN loaded and warmed first):", "",
             "| run | frames searched | frames/s | decode | detect (MTCNN, following, crops) | predict (ten-crop) "
             "| write (annotate, H.264, CSV, plot) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in d["rows"]:
        lines.append(f"| {r['run']} | {r.get('searched', r['analysed'])} of {r['frames']} | {r['fps']} | "
                     f"{r['decode_ms_per_frame']} | {r['detect_ms_per_frame']} | {r['predict_ms_per_frame']} | "
                     f"{r['write_ms_per_frame']} |")
    a = d.get("followed_vs_every_frame")
    if a:
        lines += ["", f"Following the faces between searches against searching every frame, on the same "
                      f"{a['frames']} frames: the same label on {100 * a['same_label']:.1f} % of them; the boxes "
                      f"overlap by IoU {a['iou_mean']:.3f} on average, {a['iou_min']:.3f} at the least."]
    return lines


def commands_table(root: str | Path) -> list[str]:
    """The commands a user meets, timed from a fresh clone (``benchmarks/bench_commands.py``),
    with the machine, date and commit of each."""
    d = _commands(root)
    lines = ["| command | wall | what | machine | date, commit |", "|---|---:|---|---|---|"]
    for r in d["rows"]:
        what = r.get("what", "") + (f"; {r['fps']} frames/s" if "fps" in r else "")
        wall = _duration(r["seconds"]) if r["seconds"] >= 60 else f"{r['seconds']:.1f} s"
        lines.append(f"| `{r['command']}` | {wall} | {what} | {r.get('machine', d['machine'])} | {r.get('date', d['date'])}, "
                     f"{r.get('commit', d['commit'])} |")
    return lines


def timing_line(root: str | Path, which: str) -> list[str]:
    """One sentence of the README with a measured time (``commands-cpu.json``): ``demo``,
    ``test``, ``browser``, ``figures``, ``evaluate`` or ``video``."""
    d = _commands(root)
    by, machine = d["by"], f"{d['cores']} cores of an {d['cpu']}" if d["cpu"][:1] in "AEIOU" else f"{d['cores']} cores of a {d['cpu']}"
    when = lambda r: f"{r.get('date', d['date'])}, commit {r.get('commit', d['commit'])}"  # noqa: E731
    if which == "demo":
        r = by["make demo"]
        src = {True: "the packages from this machine's local wheel mirror; downloading them takes longer; ",
               False: "the packages downloaded; ", None: ""}[d.get("local_packages")]
        return [f"`make demo` took {_duration(r['seconds'])} from a fresh clone on {machine} ({when(r)}; {src}"
                f"`docs/performance.md`) and writes into `out/demo/` (git-ignored): `runs/`, `results/`,"]
    if which == "test":
        r = by["make test"]
        beside = "with the real datasets in `../shared/data`" if r.get("shared_data") else "without the real datasets"
        return [f"`make test` runs the suite in {_duration(r['seconds'])} on the same machine ({r['what'].split(' in ')[0]}, "
                f"{when(r)}), {beside}; "
                "the tests that read the real datasets look for"]
    if which == "browser":
        r = by["pytest tests/test_browser.py"]
        return [f"The browser test ({r['what']}) takes {_duration(r['seconds'])} ({machine}, {when(r)})."]
    if which == "evaluate":
        r = by["lkr evaluate --shipped --data fer2013.zip"]
        return [f"From a cold cache `lkr evaluate --shipped --data fer2013.zip` takes {_duration(r['seconds'])} "
                f"({machine}, {when(r)}): it decodes and finds the landmarks of the 3,589 PrivateTest faces only "
                "(the template of the undetected ones is the one the model's metrics record), and leaves them "
                "in the cache."]
    if which == "figures":
        r = by["make figures"]
        return [f"`make figures` redraws `figures/` and the result tables of every committed scale in "
                f"{_duration(r['seconds'])} ({machine}, {when(r)})."]
    if which == "video":
        r300, r60 = by["lkr predict clip.mp4 --save (300 frames)"], by["lkr predict clip.mp4 --save (60 frames)"]
        per_frame = (r300["seconds"] - r60["seconds"]) / (r300["frames"] - r60["frames"])  # the two lengths give both
        start = r60["seconds"] - r60["frames"] * per_frame
        return [f"On {machine} a 640×480 clip with one face in every frame runs end to end with `--save` in "
                f"{r60['seconds']:.1f} s for 60 frames and {r300['seconds']:.1f} s for 300 ({r300['fps']} frames a "
                f"second over the whole call): about {start:.1f} s of start-up (imports, model load), then about "
                f"{1000 * per_frame:.0f} ms a frame ({1 / per_frame:.0f} frames a second) ({when(r300)}; "
                f"`docs/performance.md`)."]
    raise KeyError(f"timing {which!r}: choose demo, test, browser, figures or video")


def render(text: str, root: str | Path = "results") -> str:
    """``text`` with every ``<!-- lkr-table: ... -->`` block rewritten from ``root``."""
    return BLOCK.sub(lambda m: m.group(1) + "\n".join(table(m.group("spec"), root)) + "\n" + m.group(4), text)


def specs(text: str) -> list[str]:
    """The specs of the generated tables in ``text``, in order."""
    return [m.group("spec") for m in BLOCK.finditer(text)]
