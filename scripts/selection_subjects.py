"""Write ``results/<scale>/ckplus/selection_subjects.json``: the CK+ test subjects whose images fed
a design choice of that scale, so that tables can also give the accuracy on the other subjects
(:data:`lkr.results.SELECTION_SUBJECTS`).

``cpu-ft`` was chosen by a probe on the validation subjects of CK+ folds 0, 1 and 2 at seed 0
(10 subject folds, val_fraction 0.1; docs/cpu-runs.md). Each of those subjects is a test subject
of another fold, so it is in every seed's pooled test set. Only subject ids are written, no pixels.

    python scripts/selection_subjects.py ../shared/data/CK+48.zip            # results/cpu-ft
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lkr.folds import fold_split  # noqa: E402
from lkr.results import SELECTION_SUBJECTS  # noqa: E402

PROBES = {"cpu-ft": {"folds": (0, 1, 2), "seed": 0, "k": 10, "val_fraction": 0.1}}
"""Each scale chosen on validation subjects: which folds' validation subjects the probe used."""


def probe_subjects(subjects: np.ndarray, labels: np.ndarray, folds=(0, 1, 2), seed: int = 0, k: int = 10,
                   val_fraction: float = 0.1) -> list[str]:
    """The validation subjects of ``folds`` (sorted ids), as the probe's runs drew them."""
    out: set[str] = set()
    for f in folds:
        parts = fold_split(subjects, labels, f, k=k, seed=seed, val_fraction=val_fraction)
        out |= {str(x) for x in subjects[parts["val"]]}
    return sorted(out)


def record(scale: str, subjects: np.ndarray, labels: np.ndarray) -> dict:
    p = PROBES[scale]
    ids = probe_subjects(subjects, labels, **p)
    n = int(np.isin(subjects.astype(str), ids).sum())
    why = (f"the probe that chose this scale used the validation subjects of folds "
           f"{', '.join(map(str, p['folds']))} (seed {p['seed']}; {n} images of {len(ids)} subjects), "
           "which are test subjects of other folds (docs/cpu-runs.md)")
    return {"subjects": ids, "why": why}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckplus", help="CK+48 (zip or folder) or the full CK+ release")
    ap.add_argument("--scale", default="cpu-ft", choices=sorted(PROBES))
    ap.add_argument("--results", default=str(REPO / "results"))
    args = ap.parse_args()
    from lkr.errors import LkrError
    from lkr.readers import load_dataset

    try:
        ds = load_dataset(args.ckplus)
    except LkrError as e:
        raise SystemExit(f"selection_subjects: error: {e}") from None
    rec = record(args.scale, ds.subjects, ds.labels)
    out = Path(args.results) / args.scale / "ckplus" / SELECTION_SUBJECTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=1) + "\n")
    print(f"{out}: {len(rec['subjects'])} subjects ({rec['why']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
