"""Wall time of the README's main command (the demo) and of `make figures`.

    python benchmarks/bench_commands.py

Runs ``python -m lkr demo --out <tmp>/demo`` and then ``python -m lkr figures`` on the demo's
results (what `make demo` and `make figures` run once the environment exists). Prints a table, writes JSON
(benchmarks/results/commands-cpu.json).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append({"command": "lkr demo (make demo)", "seconds": timed([sys.executable, "-m", "lkr", "demo",
                                                                          "--out", f"{tmp}/demo"])})
        # `make figures` on the demo's results (results/ of the repository holds no real runs yet).
        rows.append({"command": "lkr figures (make figures)",
                     "seconds": timed([sys.executable, "-m", "lkr", "figures", "--results", f"{tmp}/demo/results",
                                       "--out", f"{tmp}/figures"])})
    out = {"machine": f"{os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"), "rows": rows}
    path = Path(__file__).parent / "results" / "commands-cpu.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"{'command':<30}{'seconds':>9}")
    for r in rows:
        print(f"{r['command']:<30}{r['seconds']:>9.1f}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
