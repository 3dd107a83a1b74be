"""The first CK+48 control as it was first tested (ten-crop, flipped half included), taken from
the commit that first held it, into ``results/control/ckplus-ten-crop/<arm>/seed<s>/metrics.json``
(the numbers the tables use). The runs were later tested again with the five unflipped crops
(commit d28d48d, 2026-11-30 07:39 UTC) after that table had been seen; both are shown in
``docs/results.md``.

    python scripts/control_history.py          # writes the files (needs the git history)
    python scripts/control_history.py --check  # exits 1 when a committed file differs from git
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEST = REPO / "results" / "control" / "ckplus-ten-crop"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from lkr.control_results import ten_crop_history
    from lkr.errors import LkrError

    try:
        runs = ten_crop_history(REPO)
    except LkrError as e:
        raise SystemExit(f"control_history: error: {e}") from None
    bad = []
    for rel, m in runs.items():
        f = DEST / rel
        text = json.dumps(m, indent=1, sort_keys=True) + "\n"
        if args.check:
            if not f.is_file() or f.read_text() != text:
                bad.append(str(f))
        else:
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(text)
    if bad:
        print("differs from git:", *bad, sep="\n  ")
        return 1
    print(f"{len(runs)} runs {'match' if args.check else 'written'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
