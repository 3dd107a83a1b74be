"""Wall time of the commands a user meets, as a user meets them: from a fresh clone.

    python benchmarks/bench_commands.py [--clone-dir ../lkr-bench] [--keep]

Clones this repository's HEAD into ``--clone-dir`` (beside ``../shared`` by default, as CI's
clone is, so the real-data tests run), then times in that clone, one after the other:

- ``make demo`` (creates ``.venv`` from the pinned set, then runs the demo: the README's first command);
- ``make test`` (the README's test command, the whole suite);
- the browser test (``tests/test_browser.py``: JupyterLab in headless Chromium), as ``.ci/run``
  runs it, Playwright installed into the clone's ``.venv``;
- ``make figures`` (redraws every committed scale's figures and tables);
- ``lkr evaluate --shipped --data fer2013.zip`` from a cold cache (no decode or landmark cache:
  ``LKR_CACHE_DIR`` a new folder), the real FER2013 from ``../shared/data``;
- ``lkr predict clip.mp4 --save DIR`` end to end (start-up, model load, every frame, the
  annotated video, CSV and plot) on :func:`lkr.video.example_clip` clips of 60 and 300 frames
  (640×480, one face), with torch's default thread count (the cores).

Writes ``benchmarks/results/commands-cpu.json`` (the CPU model and core count named, the commit
measured, where pip took the packages from); the README's timings and ``docs/performance.md``'s
commands table are generated from it (``lkr/report.py``'s ``timing`` and ``commands`` kinds). Run it on an idle machine: a number taken beside other work
means nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def timed(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return dt, (r.stdout + r.stderr)[-400:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clone-dir", type=Path, default=REPO.parent / "lkr-bench")
    ap.add_argument("--keep", action="store_true", help="keep the clone afterwards")
    ap.add_argument("--stop", default=None, metavar="PATTERN",
                    help="stop (SIGSTOP) the processes whose command line matches PATTERN (pgrep -f) while the "
                         "commands are timed, and continue them after: a machine busy with training runs is idle "
                         "for the timings (the setup of the clone is not timed and runs beside them). Write the "
                         "pattern so that it does not match itself, e.g. '[c]pu_results': a wrapper whose command "
                         "line holds it would be stopped too")
    ap.add_argument("--only", nargs="*", default=None, help="a subset: demo test browser figures evaluate video")
    args = ap.parse_args(argv)
    only = set(args.only or ("demo", "test", "browser", "figures", "evaluate", "video"))
    clone = args.clone_dir.resolve()
    load0 = os.getloadavg()[0]  # an idle machine reads near 0 (stopped processes do not count)
    if clone.exists():
        shutil.rmtree(clone)
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=clone, capture_output=True,
                            text=True, check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PYTEST_ADDOPTS")}
    rows = []
    stopped: list[int] = []
    stop_note: dict = {}
    try:
        if "demo" not in only:  # the later steps need the environment (not timed)
            timed(["make", "setup"], clone, env)
        if args.stop:
            import signal

            found = subprocess.run(["pgrep", "-f", args.stop], capture_output=True, text=True).stdout.split()
            stopped = [int(p) for p in found if int(p) != os.getpid()]
            for p in stopped:
                os.kill(p, signal.SIGSTOP)
            print(f"stopped {len(stopped)} processes matching {args.stop!r} at {time.strftime('%H:%M:%S')}", flush=True)
            time.sleep(5)  # their last work leaves the caches and cores
        stop_note = {"stopped_while_timing": len(stopped), "stopped_at": time.strftime("%H:%M:%S") if stopped else None}
        if "demo" in only:
            dt, tail = timed(["make", "demo"], clone, env)
            rows.append({"command": "make demo", "seconds": round(dt, 1), "what": "fresh clone: .venv from the pinned set, then the demo"})
        if "test" in only:
            dt, tail = timed(["make", "test"], clone, env)
            summary = [ln for ln in tail.splitlines() if " passed" in ln]
            rows.append({"command": "make test", "seconds": round(dt, 1), "what": summary[-1].strip("= ") if summary else "",
                         "shared_data": (clone.parent / "shared" / "data").is_dir()})
        if "browser" in only:  # as .ci/run does: Playwright into the clone's .venv, Debian's chromium on the machine
            subprocess.run([str(clone / ".venv" / "bin" / "python"), "-m", "pip", "install", "-q", "-r",
                            str(clone / "requirements-browser.txt")],
                           check=True, capture_output=True)
            dt, tail = timed([str(clone / ".venv" / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "tests/test_browser.py"], clone, env | {"LKR_REQUIRE_BROWSER": "1"})
            summary = [ln for ln in tail.splitlines() if " passed" in ln]
            rows.append({"command": "pytest tests/test_browser.py", "seconds": round(dt, 1),
                         "what": (summary[-1].strip("= ").split(" in ")[0] if summary else "") +
                                 ": JupyterLab in headless Chromium, notebooks 02 (demo) and 03 (cpu)"})
        if "figures" in only:
            dt, _ = timed(["make", "figures"], clone, env)
            rows.append({"command": "make figures", "seconds": round(dt, 1), "what": "every committed scale"})
        if "evaluate" in only:
            fer = clone.parent / "shared" / "data" / "fer2013.zip"
            if not fer.is_file():
                raise SystemExit(f"{fer}: missing; the evaluation is timed on the real FER2013")
            cache = clone / "out" / "bench-cold-cache"  # a new, empty cache: nothing decoded or detected yet
            dt, tail = timed([str(clone / ".venv" / "bin" / "lkr"), "evaluate", "--shipped", "--data", str(fer)],
                             clone, env | {"LKR_CACHE_DIR": str(cache)})
            rows.append({"command": "lkr evaluate --shipped --data fer2013.zip", "seconds": round(dt, 1),
                         "what": "cold cache (nothing decoded or detected before): " + tail.strip().splitlines()[0]
                         .split(": ", 1)[-1]})
        if "video" in only:
            py = str(clone / ".venv" / "bin" / "python")
            for frames in (60, 300):
                d = clone / "out" / f"bench-video-{frames}"
                subprocess.run([py, "-c", f"from lkr.video import example_clip; example_clip({str(d)!r}, frames={frames})"],
                               check=True, cwd=clone)
                dt, _ = timed([py, "-m", "lkr", "predict", str(d / "astronaut.mp4"), "--save", str(d / "out")],
                               clone, env)
                import csv

                with open(d / "out" / "astronaut.csv", newline="") as f:
                    faced = len({row["frame"] for row in csv.DictReader(f)})
                if faced != frames:
                    raise SystemExit(f"{d}: a face in {faced} of {frames} frames; the clip must show one in every frame")
                rows.append({"command": f"lkr predict clip.mp4 --save ({frames} frames)", "seconds": round(dt, 2),
                             "frames": frames, "frames_with_face": faced, "fps": round(frames / dt, 1),
                             "what": "end to end, start-up included, a face in every frame, torch's default threads"})
    finally:
        if stopped:
            import signal

            for p in stopped:
                try:
                    os.kill(p, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            print(f"continued them at {time.strftime('%H:%M:%S')}", flush=True)
        if not args.keep:
            shutil.rmtree(clone, ignore_errors=True)
    pip_conf = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    out = {"machine": f"{cpu_model()}, {os.cpu_count()} cores", "cpu": cpu_model(), "cores": os.cpu_count(),
           "date": time.strftime("%Y-%m-%d"), "commit": commit, "load_1min_at_start": load0,
           **stop_note,  # the 1-min load above was read before any stop; a stopped process does not run
           "local_packages": "find-links" in pip_conf or "file://" in pip_conf, "pip_config": pip_conf.strip(),
           "rows": rows}
    path = REPO / "benchmarks" / "results" / "commands-cpu.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    if args.only and old.get("rows"):  # a subset keeps the other rows, each with its own date and commit
        keep = [r for r in old["rows"] if r["command"] not in {x["command"] for x in rows}]
        for r in keep:  # each kept row keeps the date and commit it was measured at
            r.setdefault("date", old["date"])
            r.setdefault("commit", old["commit"])
        for r in keep:
            r.setdefault("machine", old["machine"])
        for r in rows:
            r |= {"date": out["date"], "commit": commit, "machine": out["machine"]}
        out["rows"] = keep + rows
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    for r in rows:
        print(f"{r['command']:<45}{r['seconds']:>9.1f} s  {r.get('what', '')}")
    print(f"wrote {path} ({out['machine']}, {commit})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
