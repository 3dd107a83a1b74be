"""Imports run one way: every module of lkr imports alone, evaluation does not pull in the
trainer, and no two modules of lkr import each other (directly or through others)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

LKR = Path(__file__).resolve().parents[1] / "lkr"
MODULES = sorted(p.stem for p in LKR.glob("*.py") if p.stem not in ("__init__", "__main__"))


def import_graph() -> dict[str, set[str]]:
    """{module: the lkr modules it imports}, top-level and function-level imports alike (not
    those under ``if TYPE_CHECKING:``, which never run)."""
    graph: dict[str, set[str]] = {}
    for path in LKR.glob("*.py"):
        deps: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
                       for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "lkr":  # from lkr import distributed
                    deps |= {a.name for a in node.names if (LKR / f"{a.name}.py").exists()}
                elif node.module.startswith("lkr."):
                    deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lkr.")}
        deps.discard(path.stem)
        graph[path.stem] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state and (c := visit(d)):
                return c
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_the_graph_sees_function_level_imports():
    g = import_graph()
    assert "train" in g["experiments"]  # imported inside run_experiments only
    assert "distributed" in g["train"]  # from lkr import distributed
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_two_lkr_modules_import_each_other():
    assert find_cycle(import_graph()) is None


def test_nothing_imports_the_trainer_to_read_or_write_a_run_folder():
    g = import_graph()
    # cli runs `lkr train`, experiments and predict (a demo run for photos) train; none reads
    # or writes a run folder through it (that is lkr.runfolder).
    assert {m for m, deps in g.items() if "train" in deps} <= {"cli", "experiments", "predict"}


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone(module):
    code = f"import sys, lkr.{module}; print('lkr.train' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=LKR.parent)
    assert done.returncode == 0, done.stderr
    if module in ("evaluate", "results", "runfolder", "prepare", "device", "export", "gradcam", "figures"):
        assert done.stdout.strip() == "False", f"importing lkr.{module} imports lkr.train"


CARRY_LIMIT = 64 * 2**20
"""What a device ``run`` call carries: the working tree and the paths named in ``carry``."""
LANDING_RESERVE = 4 * 2**20
"""Room kept for what a GPU call lands and for untracked files: a full call's results and figures
are about 2 MB (``docs/gpu-runs.md``, "After the call", measured by the cpu-scale folders it
mirrors), and a later call (the skipped groups) must still carry the repository with them."""


def _data_carry(doc: Path) -> int:
    """Bytes of the data and wheels a GPU call carries beside the tracked files: the ``.data/`` and
    ``.whl/`` rows of the measured "What travels" table of ``docs/gpu-runs.md``, each row the larger
    of the table's bytes and the path's own where this checkout has it (prepared for a call)."""
    total = 0
    for line in doc.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith(("`.data/", "`.whl/")):
            path = doc.parents[1] / cells[0].split("`")[1]
            here = (sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir()
                    else path.stat().st_size if path.is_file() else 0)
            total += max(int(cells[1].replace(",", "")), here)
    return total


def test_the_tracked_repository_leaves_room_for_the_gpu_call():
    """A GPU call carries the tracked files beside the packed data (docs/gpu-runs.md): together
    they stay within the carry limit with room for one call's landing, so results/ keeps to small
    artifacts (figures' PDFs are redrawn by `make figures`, not tracked). The bound comes from the
    carry, not from a round number: it was "under 9 MiB" until 2026-12-05, which a full call's
    landing (about 2 MB) would have broken although the carry still fits."""
    repo = Path(__file__).resolve().parents[1]
    data = _data_carry(repo / "docs" / "gpu-runs.md")
    assert 40 * 2**20 < data < 50 * 2**20, f"data carry read from docs/gpu-runs.md: {data} bytes"
    r = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True)
    if r.returncode:
        pytest.skip("not a git checkout")
    files = [repo / f for f in r.stdout.decode().split("\0") if f]
    total = sum(f.stat().st_size for f in files if f.is_file())
    bound = CARRY_LIMIT - data - LANDING_RESERVE
    assert total < bound, (f"tracked files: {total / 2**20:.2f} MiB; with the data carry "
                           f"({data / 2**20:.1f} MiB) and {LANDING_RESERVE / 2**20:.0f} MiB kept for a "
                           f"landing the bound is {bound / 2**20:.2f} MiB")
