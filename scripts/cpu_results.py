"""Train an experiment set at the CPU scale and export its small artifacts into results/cpu/.

Runs go to ``~/lkr-runs/runs/cpu/<dataset>/<config>`` (outside the work tree, so a session's end
does not delete them); a run cut short resumes from its checkpoint when this is started again,
and finished runs are skipped. After each run its artifacts are exported (with UMAP and
Grad-CAM for FER2013), so they can be committed as soon as each run ends.

    python scripts/cpu_results.py ../shared/data/fer2013.zip                 # the six FER2013 configs
    python scripts/cpu_results.py ../shared/data/fer2013.zip --names vgg19 lkrnet --seed 1   # another seed
    python scripts/cpu_results.py ../shared/data/fer2013.zip --names vgg19 lkrnet --scale cpu-quarter  # 1/4 width
    python scripts/cpu_results.py ../shared/data/fer2013.zip --names baseline1 baseline2 --seed 1 --workers 2
    python scripts/cpu_results.py ../shared/data/CK+48.zip --workers 2     # CK+: 10 folds x 4 configs
    python scripts/cpu_results.py ../shared/data/CK+48.zip --workers 2 --scale cpu-ft   # the same, each
                                                      # configuration fine-tuned from its FER2013 run

Seeds other than 0 go to ``<config>/seed<s>/`` (runs and results, :func:`lkr.results.run_dir_for`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lkr.config import SCALES  # noqa: E402
from lkr.experiments import CONFIGS, REGION_CONFIGS, run_experiments  # noqa: E402
from lkr.errors import LkrError  # noqa: E402
from lkr.readers import load_dataset  # noqa: E402

FER_ORDER = ["vgg19", "lkrnet", "baseline1", "baseline2", "lkrnet-cover", "lkrnet-l0.4"]
REGION_DESIGN = "docs/real-faces-design.md"


def name_design(results: Path, scale: str, key: str, names: list[str], seed: int, commit: str) -> None:
    """Write the design commit into the exported metrics.json of these configurations' runs of this
    dataset and seed that do not name one yet: the runs this command trained or found. Other seeds
    (a partner's seed 0 trained before the design, say) and a run exported under an earlier design
    keep what they have."""
    import json

    for n in names:
        d = results / scale / key / n
        if seed:
            files = sorted((d / f"seed{seed}").rglob("metrics.json")) if (d / f"seed{seed}").is_dir() else []
        else:  # seed 0 lives in the configuration's own folder (CK+: with its fold folders), beside seed<s>/
            files = [f for f in [d / "metrics.json", *sorted(d.glob("fold*/metrics.json"))] if f.is_file()]
        for f in files:
            m = json.loads(f.read_text())
            if "design_commit" not in m:
                m["design_commit"] = commit
                f.write_text(json.dumps(m, separators=(",", ":")))  # as lkr.results.slim writes it


CK_ORDER = ["vgg19", "lkrnet", "baseline1", "baseline2"]


def _one_line(fn, *args, **kw):
    """``fn(*args, **kw)``; a kit error (missing source run, bad data) exits with its one line."""
    try:
        return fn(*args, **kw)
    except LkrError as e:
        raise SystemExit(f"cpu_results: error: {e}") from None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="FER2013 (or CK+) path")
    ap.add_argument("--names", nargs="+", default=None, help=f"configurations (default: {' '.join(FER_ORDER)})")
    ap.add_argument("--runs", default=os.environ.get("LKR_RUNS", str(Path.home() / "lkr-runs")))
    ap.add_argument("--results", default=str(REPO / "results"))
    ap.add_argument("--seed", type=int, default=0, help="the runs' seed (default 0)")
    ap.add_argument("--scale", default="cpu", choices=[s for s in SCALES if s != "full"],
                    help="cpu (default); cpu-quarter: the same at 1/4 width; cpu-ft: CK+ with each "
                         "configuration fine-tuned from its FER2013 run at the cpu scale (train those first)")
    ap.add_argument("--workers", type=int, default=1,
                    help="train in this many processes, threads shared among them: CK+ folds, or FER2013 "
                         "configurations this many at a time (each group exported when it ends)")
    ap.add_argument("--design", default=None, metavar="DOC",
                    help="a design document these runs belong to (committed before them): its commit is named in "
                         "their metrics (the real-face region configurations name docs/real-faces-design.md anyway)")
    args = ap.parse_args()
    ds = _one_line(load_dataset, args.data)
    names = args.names or (CK_ORDER if ds.evaluation == "folds" else [n for n in FER_ORDER if n in CONFIGS])
    region = [n for n in names if n in REGION_CONFIGS]
    design = args.design or (REGION_DESIGN if region else None)
    commit = None
    if design:  # runs of a designed question name the design they ran under, committed before them
        from lkr.control_results import design_commit

        commit = _one_line(design_commit, design, REPO)
    # FER2013: `workers` configurations at a time, exported as soon as they finish; CK+: one
    # configuration at a time, its folds in `workers` processes
    step = args.workers if ds.evaluation != "folds" else 1
    for i in range(0, len(names), step):
        group = names[i:i + step]
        _one_line(run_experiments, ds, args.runs, group, data_ref=args.data, scale=args.scale,
                  results_dir=args.results, device="cpu", progress=True, seed=args.seed,
                  workers=args.workers if len(group) > 1 or step == 1 else 1)
        if commit:
            name_design(Path(args.results), args.scale, ds.name, group, args.seed, commit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
