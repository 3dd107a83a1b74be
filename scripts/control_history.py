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
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMIT = "7c519e825e89a061744d5689da46e33d00c62408"
"""2026-11-30 07:28 UTC: the CK+48 control's 55 runs, tested with ten-crop."""
KEYS = ("accuracy", "n", "cue_follow_rate", "cue_agrees_with_label", "accuracy_global_branch",
        "accuracy_local_branch", "control_arm", "fold", "best_epoch")
DEST = REPO / "results" / "control" / "ckplus-ten-crop"


def history() -> dict[str, dict]:
    """{relative path: metrics} of every run at :data:`COMMIT`, with ``test_crops`` "ten"."""
    names = subprocess.run(["git", "-C", str(REPO), "ls-tree", "-r", "--name-only", COMMIT, "results/control/ckplus/"],
                           capture_output=True, text=True, check=True).stdout.split()
    out = {}
    for name in names:
        if not name.endswith("/metrics.json"):
            continue
        m = json.loads(subprocess.run(["git", "-C", str(REPO), "show", f"{COMMIT}:{name}"], capture_output=True,
                                      text=True, check=True).stdout)
        rel = str(Path(name).relative_to("results/control/ckplus"))
        out[rel] = {k: m[k] for k in KEYS if k in m} | {"test_crops": "ten", "from_commit": COMMIT}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    try:
        runs = history()
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"control_history: error: cannot read commit {COMMIT[:10]} from git ({e})") from None
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
