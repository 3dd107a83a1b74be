"""docs/cpu-runs.md against results/: every number its run tables give for a committed run
(accuracy, correct count, selected epoch and its selection accuracy, training seconds, epochs,
folds, threads, precision, fold mean ± sd) is what that run's metrics.json says, and six
percentages its prose quotes for committed runs are recomputed, and so are its and the README's
totals of training time and the cpu-ft fold accuracies. Tables of probes whose runs are
not committed must say so where they stand."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "cpu-runs.md"
RESULTS = REPO / "results"

# section heading -> (scale, dataset) of the committed runs its "config" tables describe
SECTIONS = {
    "FER2013 at the CPU scale": ("cpu", "fer2013"),
    "CK+48 at the CPU scale": ("cpu", "ckplus"),
    "CK+48: a variant chosen on the validation subjects": ("cpu-ft", "ckplus"),
    "FER2013 seeds 1 and 2": ("cpu", "fer2013"),
    "FER2013 at 1/4 width (`cpu-quarter`)": ("cpu-quarter", "fer2013"),
    "The shipped model (issue 26)": ("shipped-before", "fer2013"),  # replaced by issue 34's: its card kept
    "The shipped model at 1/4 width (issue 34)": ("shipped", "fer2013"),
    "FER2013 with the mask at stage 1 (issue 32, `docs/real-faces-design.md`)": ("cpu", "fer2013"),
    "CK+48 with the mask at stage 1 (issue 32, `docs/real-faces-design.md`)": ("cpu", "ckplus"),
}
# columns that record how a run went rather than what it scored (not in metrics.json)
UNCHECKED = ("wall", "s/epoch")
PROBE_NOTE = "not in `results/`"


def _tables(text: str):
    """(section, header cells, [row cells]) of every markdown table, in order."""
    section, lines = None, text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("## "):
            section = lines[i][3:].strip()
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            head = [c.strip() for c in lines[i].strip("|").split("|")]
            rows, j = [], i + 2
            while j < len(lines) and lines[j].startswith("|"):
                rows.append([c.strip() for c in lines[j].strip("|").split("|")])
                j += 1
            yield section, head, rows, i + 1
            i = j
            continue
        i += 1


def _section_text(text: str, section: str) -> str:
    m = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    return m.group(1) if m else ""


def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}"


def _int(s: str) -> int:
    return int(s.replace(",", ""))


def _metrics(scale: str, key: str, cfg: str, seed: int) -> dict:
    if scale in ("shipped", "shipped-before"):  # the shipped model's card, or the card of the one it replaced
        card = json.loads((REPO / "lkr" / "data" / "model" / "card.json" if scale == "shipped"
                           else RESULTS / "shipped" / "before" / "card.json").read_text())
        t = card["training"]
        return {"accuracy": card["privatetest"]["accuracy"], "n": card["privatetest"]["n"],
                "best_epoch": t["best_epoch"], "select_accuracy": t["select_accuracy"],
                "epochs": t["epochs_run"], "wall_s": t["wall_s"], "precision": t["precision"], "seed": card["config"]["seed"],
                "card": True}
    d = RESULTS / scale / key / cfg / (f"seed{seed}" if seed else "")
    f = d / "metrics.json"
    assert f.is_file(), f"docs/cpu-runs.md names {cfg} seed {seed} at {scale}/{key}, but {f} is not committed"
    return json.loads(f.read_text())


def _check_cell(col: str, cell: str, m: dict, where: str) -> None:
    c = col.lower()
    if c.startswith(UNCHECKED) or c in ("config", "seed"):
        if c == "wall" and "wall_s" in m:  # the shipped model's card keeps its wall time
            assert cell == f"{m['wall_s']:,} s", where
        return
    if c == "epochs":
        assert _int(cell) == m["epochs"], where
    elif c == "folds":
        assert _int(cell) == len(m["folds"]), where
    elif c == "threads":
        assert _int(cell) == m["threads"], where
    elif c == "precision":
        p = m["precision"]
        got = {x["precision"] for x in p} if isinstance(p, list) else {p["precision"] if isinstance(p, dict) else p}
        assert got == {cell}, f"{where}: {cell} against {sorted(got)}"
    elif c.startswith("train s") and m.get("card"):
        return  # the shipped model's card records its wall time, not the sum of its epochs
    elif c.startswith("train s"):
        assert _int(cell) == round(m["train_seconds"]), f"{where}: {cell} against {m['train_seconds']:.1f}"
    elif c.startswith("selected epoch"):
        ep, acc = re.fullmatch(r"(\d+) \(([\d.]+) %\)", cell).groups()
        assert int(ep) == m["best_epoch"] and acc == _pct(m["select_accuracy"]), where
    elif c.startswith(("privatetest", "pooled test accuracy")):
        mm = re.fullmatch(r"\*\*([\d.]+) %\*\*(?: \(([\d,]+)\))?", cell)
        assert mm, f"{where}: {cell!r}"
        assert mm.group(1) == _pct(m["accuracy"]), f"{where}: {cell} against {100 * m['accuracy']:.2f}"
        if mm.group(2):
            assert _int(mm.group(2)) == round(m["accuracy"] * m["n"]), where
    elif c.startswith("fold mean"):
        assert cell == f"{_pct(m['fold_accuracy_mean'])} ± {_pct(m['fold_accuracy_std'])}", where
    else:
        raise AssertionError(f"{where}: column {col!r} has no check (add one, or list it in UNCHECKED)")


def test_every_run_table_of_committed_runs_matches_its_metrics():
    text = DOC.read_text()
    checked = 0
    for section, head, rows, line in _tables(text):
        if head[0] != "config":
            continue  # probes (below) and generated tables
        assert section in SECTIONS, f"docs/cpu-runs.md:{line}: a run table in section {section!r} is not mapped to results/"
        scale, key = SECTIONS[section]
        for r, row in enumerate(rows):
            cells = dict(zip(head, row))
            seed = int(cells.get("seed", 0))
            cfg = "lkrnet" if scale.startswith("shipped") else cells["config"]
            m = _metrics(scale, key, cfg, seed)
            for col, cell in cells.items():
                _check_cell(col, cell, m, f"docs/cpu-runs.md:{line + 2 + r} ({cfg}, seed {seed}, {col})")
                checked += 1
    assert checked > 200


def test_probe_tables_say_their_runs_are_not_committed():
    """A table whose runs are not in results/ (the sweep and the probes) says so in its section,
    so a reader knows its numbers come from logs and are not re-checked."""
    text = DOC.read_text()
    probes = [(s, line) for s, head, _, line in _tables(text) if head[0] in ("run", "variant")]
    assert len(probes) == 3
    for section, line in probes:
        assert PROBE_NOTE in _section_text(text, section), f"docs/cpu-runs.md:{line}: say the probe's runs are {PROBE_NOTE}"


def _cross(scale: str, cfg: str, seed: int) -> float:
    d = RESULTS / scale / "fer2013" / cfg / (f"seed{seed}" if seed else "") / "cross" / "ckplus"
    return json.loads((d / "metrics.json").read_text())["accuracy"]


def test_the_percentages_in_its_prose_are_the_committed_runs():
    text = " ".join(DOC.read_text().split())
    acc = lambda scale, key, cfg, seed=0: _metrics(scale, key, cfg, seed)["accuracy"]  # noqa: E731
    card = json.loads((REPO / "lkr" / "data" / "model" / "card.json").read_text())
    before = RESULTS / "shipped" / "before" / "card.json"  # issue 26's model, replaced by issue 34's
    first = json.loads(before.read_text()) if before.is_file() else card
    fer8 = [100 * acc("cpu", "fer2013", "lkrnet", s) for s in (0, 1, 2)]
    want = [
        f"The CPU scale from scratch gave LKRNet {_pct(acc('cpu', 'ckplus', 'lkrnet'))} % pooled",
        f"CPU scale (seed 0, {_pct(acc('cpu', 'fer2013', 'lkrnet'))} % on PrivateTest)",
        f"VGG19 {_pct(_cross('cpu-quarter', 'vgg19', 2))} %, LKRNet {_pct(_cross('cpu-quarter', 'lkrnet', 2))} %",
        f"(VGG19 {_pct(_cross('cpu-quarter', 'vgg19', 1))} %, LKRNet {_pct(_cross('cpu-quarter', 'lkrnet', 1))} %)",
        f"gives the same {_pct(first['privatetest']['accuracy'], 2)} % on PrivateTest and "
        f"{_pct(first['cross']['FER2013 -> CK+48']['accuracy'])} % on CK+48's 927 images",
        f"reached {np.mean(fer8):.1f} ± {np.std(fer8, ddof=1):.1f} over three seeds",
    ]
    if before.is_file():  # the model that replaced it: its file and what int8 moved
        t = card["training"]
        want.append(f"weight-only int8 ({card['bytes']:,} bytes; int8 changed {t['changed_predictions']} of the "
                    f"{card['privatetest']['n']:,} PrivateTest predictions and "
                    + ("none of the accuracy" if abs(card["privatetest"]["accuracy"] - t["float32_run_privatetest"]) < 5e-7
                       else "moved the accuracy"))
        want.append(("It misses" if card["privatetest"]["accuracy"] < card["target"] else "It reaches")
                    + f" the issue's {100 * card['target']:.0f} % on PrivateTest")
        old = first["training"]["select_accuracy"]
        want.append(f"Its PublicTest accuracy was higher than the 1/8-width model's ({_pct(t['select_accuracy'], 2)} % "
                    f"against {_pct(old, 2)} %")
        assert t["select_accuracy"] > old
        quarter = [acc("cpu-quarter", "fer2013", "lkrnet", s) for s in (0, 1, 2)]
        assert card["privatetest"]["accuracy"] < min(quarter)  # "below all three of their seeds"
        want.append(f"reached {_pct(quarter[0])} %, {_pct(quarter[1])} % and {_pct(quarter[2])} % (seeds 0, 1, 2); "
                    f"this one, seed 0 with FC 256 → 256 heads, {_pct(card['privatetest']['accuracy'])} %, "
                    f"{100 * (quarter[0] - card['privatetest']['accuracy']):.1f} points below seed 0")
    for phrase in want:
        assert phrase in text, f"docs/cpu-runs.md should say: {phrase}"


@pytest.mark.parametrize("cell,ok", [("**66.3 %** (2,381)", True), ("**66.3 %** (2,380)", False), ("**66.4 %**", False)])
def test_the_check_fails_on_a_changed_number(cell, ok):
    """The table check is not vacuous: one tenth of a point off fails."""
    m = {"accuracy": 0.6634159933129006, "n": 3589}
    if ok:
        _check_cell("PrivateTest (ten-crop)", cell, m, "here")
    else:
        with pytest.raises(AssertionError):
            _check_cell("PrivateTest (ten-crop)", cell, m, "here")


def _run_metrics(*parts: str) -> dict:
    return json.loads(RESULTS.joinpath(*parts, "metrics.json").read_text())


def test_the_prose_totals_are_what_the_runs_and_the_tables_give():
    """Numbers of the prose beside the tables: the seed-0 FER2013 training seconds of the four
    paper configurations (docs), the six FER2013 configurations' hours and the CK+ set's minutes
    (README, from the runs and from docs/cpu-runs.md's measured wall), and the seed-0 LKRNet's
    cpu-ft test folds 0-2 (docs)."""
    doc, readme = DOC.read_text(), (REPO / "README.md").read_text()
    four = sum(_run_metrics("cpu", "fer2013", c)["train_seconds"] for c in ("vgg19", "lkrnet", "baseline1", "baseline2"))
    assert f"({four:,.0f} s of training in all" in doc
    six = sum(m["train_seconds"] + m.get("select_seconds", 0) + m.get("eval_seconds", 0)
              for m in (_run_metrics("cpu", "fer2013", c) for c in
                        ("vgg19", "lkrnet", "baseline1", "baseline2", "lkrnet-cover", "lkrnet-l0.4")))
    assert f"the six FER2013 configurations took {six / 3600:.1f} h" in " ".join(readme.split())
    assert f"({six / 3600:.1f} h), on a" in " ".join(doc.split())
    wall = int(re.search(r"\*\*(\d+) s wall\*\* for all 40 runs", doc).group(1))
    assert f"the 40 CK+ runs {round(wall / 60)} min" in " ".join(readme.split())
    folds = " / ".join(f"{100 * _run_metrics('cpu-ft', 'ckplus', 'lkrnet', f'fold{f}')['accuracy']:.1f}" for f in range(3))
    assert f"{folds} % on test folds 0–2" in " ".join(doc.split())
