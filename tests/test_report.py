"""The README's and docs/results.md's result tables are generated from results/ (lkr.report) and
must stay what results/ gives; the Makefile refuses an old Python in one line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lkr import report

REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/results.md", "docs/method.md", "docs/cpu-runs.md", "docs/performance.md")


@pytest.mark.parametrize("doc", DOCS)
def test_every_result_table_in_the_docs_is_what_results_give(doc):
    """A number in a result table that is not what `results/` gives fails here: run
    `python scripts/readme_tables.py --write README.md docs/results.md docs/method.md docs/cpu-runs.md docs/performance.md` (make
    figures does)."""
    text = (REPO / doc).read_text()
    specs = report.specs(text)
    assert specs, f"{doc} holds no generated table"
    assert report.render(text, REPO / "results") == text, f"{doc}: tables differ from results/; run make figures"


def test_the_docs_carry_every_kind_of_table():
    specs = {s.split()[0] for doc in DOCS for s in report.specs((REPO / doc).read_text())}
    assert {"summary", "seeds", "perclass", "differences", "folds", "versus", "capacity", "control", "headline",
            "cross", "design", "design-verdicts", "control-ten-crop", "commands", "timing", "regions"} <= specs


VERDICT_WORDS = ("told apart", "carry the gain", "carries the gain", "carry a gain", "carries a gain",
                 "not detected", "no region effect", "does as well", "do as well", "beats", "beat the")
REGION_WORDS = ("carry the gain", "carries the gain", "carry a gain", "carries a gain", "no region effect",
                "does as well", "do as well", "did as well")
"""Words that only a region verdict uses: checked in every paragraph, whatever it mentions."""


@pytest.mark.parametrize("doc", DOCS)
def test_no_verdict_on_the_region_control_is_written_by_hand(doc):
    """Every verdict word about the region control in the README and the docs comes from
    lkr/report.py (a generated block, checked against results/ above): a paragraph outside the
    generated blocks that speaks of the control carries none, so no sentence can say more than
    its table."""
    import re

    text = report.BLOCK.sub("", (REPO / doc).read_text())
    for para in text.split("\n\n"):
        low = " ".join(para.split()).lower()
        words = VERDICT_WORDS if any(w in low for w in ("control", "key region", "mask")) else REGION_WORDS
        said = re.sub(r'"[^"]*"', "", low)  # a phrase in quotes is named, not claimed
        hit = [w for w in words if w in said]
        assert not hit, f"{doc}: a hand-written verdict on the region control ({hit}): {para[:300]}"


def test_the_design_verdicts_are_in_every_doc_that_speaks_of_the_control():
    for doc in DOCS:
        text = (REPO / doc).read_text()
        assert "design-verdicts" in " ".join(report.specs(text)) or doc in ("README.md", "docs/cpu-runs.md", "docs/performance.md")
    assert "headline" in report.specs((REPO / "README.md").read_text())


def test_render_rewrites_only_what_is_between_the_markers(tmp_path):
    from test_figures import make_fake_results

    make_fake_results(tmp_path / "results", scale="cpu", datasets=("fer2013", "ckplus"))
    text = ("before\n<!-- lkr-table: seeds cpu fer2013 -->\nstale | row\n<!-- /lkr-table -->\nmiddle 1.23\n"
            "<!-- lkr-table: differences cpu ckplus -->\n<!-- /lkr-table -->\nafter\n")
    out = report.render(text, tmp_path / "results")
    assert out.startswith("before\n<!-- lkr-table: seeds cpu fer2013 -->\n| configuration | seed 0 | mean ± sd |")
    assert "stale" not in out and "middle 1.23\n" in out and out.endswith("<!-- /lkr-table -->\nafter\n")
    assert "| A − B | seeds |" in out and report.render(out, tmp_path / "results") == out
    with pytest.raises(KeyError, match="no fer2013 results"):
        report.render("<!-- lkr-table: seeds full fer2013 -->\n<!-- /lkr-table -->", tmp_path / "results")


def test_readme_tables_check_fails_on_a_stale_table(tmp_path):
    import sys

    doc = tmp_path / "doc.md"
    doc.write_text("<!-- lkr-table: summary -->\n| old |\n<!-- /lkr-table -->\n")
    cmd = [sys.executable, str(REPO / "scripts" / "readme_tables.py"), "--check", str(doc)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 1 and "differ from results/" in r.stdout
    subprocess.run(cmd[:2] + ["--write", str(doc)], check=True, capture_output=True)
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0


def test_make_refuses_an_old_python_in_one_line(tmp_path):
    """A Python older than 3.11 gets one line from make, and no .venv is made."""
    fake = tmp_path / "python3.10"
    fake.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Python 3.10.13'; exit 0; fi\n"
                    "if [ \"$1\" = -c ]; then exit 1; fi\nexit 3\n")
    fake.chmod(0o755)
    work = tmp_path / "clone"
    work.mkdir()
    for f in ("Makefile", "pyproject.toml", "requirements.txt"):
        (work / f).write_bytes((REPO / f).read_bytes())
    r = subprocess.run(["make", "-C", str(work), "setup", f"PYTHON={fake}"], capture_output=True, text=True,
                       env={**os.environ, "MAKEFLAGS": ""})
    assert r.returncode != 0 and not (work / ".venv").exists()
    lines = [ln for ln in r.stdout.splitlines() if "lkr needs" in ln]
    assert len(lines) == 1 and "Python >= 3.11" in lines[0] and "Python 3.10.13" in lines[0]


def test_a_run_without_the_real_datasets_says_how_many_tests_skipped_and_what_to_set(tmp_path):
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env |= {"LKR_SHARED_DATA": str(tmp_path / "nowhere"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/test_verify.py::test_the_committed_results_match_the_real_archives"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300).stdout
    assert "1 skipped" in out
    assert (f"lkr: 1 test skipped without the real datasets ({tmp_path / 'nowhere' / 'fer2013.zip'}: 1); "
            "put fer2013.zip and CK+48.zip in that folder, or set LKR_SHARED_DATA") in out


def test_the_real_face_region_table_is_one_holm_family_and_waits_for_every_arm(tmp_path):
    """docs/real-faces-design.md: LKRNet with the mask at stage 1, its partners without landmarks,
    VGG19 and LKRNet at stage 5, seeds 0-2 each; seven contrasts Holm-corrected together, and a
    verdict sentence only once every configuration has every seed (a one-seed comparison is no
    verdict)."""
    import numpy as np

    from lkr.results import load_results
    from lkr.runfolder import save_npz, write_json
    from lkr.stats import REGION_PAIRS, compare, holm

    root = tmp_path / "results"
    n = 400
    label = (np.arange(n) % 7).astype(np.int8)
    accs = {"vgg19": 0.50, "lkrnet": 0.52, "lkrnet-s1": 0.90, "face-s1": 0.60, "off-landmark-s1": 0.55,
            "uniform-s1": 0.50}

    def write(cfg, seed):
        d = root / "cpu" / "fer2013" / cfg / ("" if seed == 0 else f"seed{seed}")
        d.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(100 * seed + sorted(accs).index(cfg))
        pred = np.where(rng.random(n) < accs[cfg], label, (label + 1) % 7).astype(np.int8)
        write_json(d / "metrics.json", {"accuracy": float((pred == label).mean()), "variant": cfg, "n": n})
        save_npz(d / "predictions.npz", index=np.arange(n), label=label, pred=pred)

    for cfg in accs:
        write(cfg, 0)
    line = report.regions_lines(root, "cpu", "fer2013")[0]  # seed 0 only: no table, no verdict
    assert line.startswith("In progress at scale cpu:") and "seeds 1, 2" in line
    assert report.regions_verdict(load_results(root / "cpu")["fer2013"]) is None
    assert not any("mask at stage 1" in b for b in report.headline(root))
    for cfg in accs:
        for seed in (1, 2):
            write(cfg, seed)
    res = load_results(root / "cpu")["fer2013"]
    lines = report.regions_lines(root, "cpu", "fer2013")
    assert lines[0].startswith("| contrast (one Holm family of 7)") and len(lines) == 2 + len(REGION_PAIRS)
    want = [compare(a, b, res[a].seed_predictions(), res[b].seed_predictions()) for a, b in REGION_PAIRS]
    holm(want)
    assert f"({report.F._p(want[0].p_holm)})" in lines[2]
    v = "a gain over VGG19 that needs the landmarks (the face mask and the off-landmark rectangles are below it)"
    assert report.regions_verdict(res) == v
    assert any(b.startswith("- FER2013 at scale cpu, LKRNet with the mask at stage 1: " + v + "; whether the "
                            "landmarks matter (the key regions against the face mask): above it, told apart; Holm over "
                            "the 7 contrasts of its table")
               for b in report.headline(root))
    accs["face-s1"] = 0.97  # a mask without landmarks above LKRNet at stage 1: said so
    for seed in (0, 1, 2):
        write("face-s1", seed)
    assert report.regions_verdict(load_results(root / "cpu")["fer2013"]) == \
        "a gain over VGG19 that a mask without landmarks exceeds"
    assert any("(the key regions against the face mask): below it, told apart;" in b for b in report.headline(root))
    accs["face-s1"] = accs["lkrnet-s1"]  # level with the face mask: not told apart, whatever the design's verdict
    for seed in (0, 1, 2):
        write("face-s1", seed)
    assert any("(the key regions against the face mask): not told apart;" in b for b in report.headline(root))


def test_the_real_face_stage_was_chosen_by_the_control_designs_rule_from_the_committed_tables():
    """docs/real-faces-design.md names stage 1 and two numbers of the synthetic region control:
    they are what the committed tables give, and the rule of docs/control-design.md (the larger
    told-apart key − off-landmark difference of stages 1 and 3, synthetic-border, λ 0.2) picks
    the stage the kit's REGION_CONFIGS use."""
    import re

    from lkr.control_results import design_table
    from lkr.experiments import REGION_STAGE

    text = (REPO / "docs" / "real-faces-design.md").read_text()
    got = {}
    for stage in (1, 3):
        t = design_table(REPO / "results", "synthetic-border", stage, "l02")
        assert t.complete, f"the synthetic-border stage-{stage} table is not complete"
        got[stage] = t.contrast("key", "off-landmark")
        assert f"{report._pts(got[stage].diff)} points at stage {stage}" in text or \
            f"{report._pts(got[stage].diff)} at stage {stage}" in text
    told = {s: c.verdict() == "key better" for s, c in got.items()}
    chosen = max((s for s in got if told[s]), key=lambda s: got[s].diff, default=1)
    assert chosen == REGION_STAGE == int(re.search(r"the\s+stage\s+is\s+\*\*(\d)\*\*", text).group(1))


def test_the_readme_timings_come_from_the_benchmark_record(tmp_path):
    """README's timings (make demo, make test, make figures, a clip) are generated from
    benchmarks/results/commands-cpu.json with the machine and commit named; a changed record
    changes the sentence, and a missing one is a one-line error naming the file."""
    import json

    (tmp_path / "results").mkdir()
    rec = tmp_path / "benchmarks" / "results" / "commands-cpu.json"
    with pytest.raises(KeyError, match="commands-cpu.json"):
        report.table("timing demo", tmp_path / "results")
    rec.parent.mkdir(parents=True)
    rows = [{"command": "make demo", "seconds": 247.0}, {"command": "make test", "seconds": 61.2, "what": "9 passed in 60s"},
            {"command": "make figures", "seconds": 12.0},
            {"command": "lkr predict clip.mp4 --save (60 frames)", "seconds": 6.0, "fps": 10.0, "frames": 60},
            {"command": "lkr predict clip.mp4 --save (300 frames)", "seconds": 10.8, "fps": 27.8, "frames": 300}]
    rec.write_text(json.dumps({"machine": "Intel Xeon, 2 cores", "cpu": "Intel Xeon", "cores": 2, "date": "2026-12-01",
                               "commit": "abc", "rows": rows}))
    assert report.table("timing demo", tmp_path / "results")[0].startswith(
        "`make demo` took 4 min 7 s from a fresh clone on 2 cores of an Intel Xeon (2026-12-01, commit abc;")
    assert "in 1 min 1 s on the same machine (9 passed, 2026-12-01, commit abc), without the real datasets" in \
        report.table("timing test", tmp_path / "results")[0]
    assert "in 12 s (2 cores of an Intel Xeon" in report.table("timing figures", tmp_path / "results")[0]
    video = report.table("timing video", tmp_path / "results")[0]  # 4.8 s over 240 frames: 20 ms a frame
    assert "27.8 frames a second over the whole call): about 4.8 s of start-up" in video
    assert "then about 20 ms a frame (50 frames a second)" in video
    assert "| `make figures` | 12.0 s |" in "\n".join(report.table("commands", tmp_path / "results"))
    with pytest.raises(KeyError, match="test_browser"):  # a row not measured yet names itself
        report.table("timing browser", tmp_path / "results")
