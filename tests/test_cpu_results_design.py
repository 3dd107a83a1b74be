"""scripts/cpu_results.py names the design a set of runs ran under in their metrics: only the runs of
the dataset and seed it was asked for, never a partner's older seed (issue 32: the CK+48 seeds 1-2 of
VGG19 and LKRNet must not stamp their seed-0 runs, trained before the design)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("cpu_results_script", REPO / "scripts" / "cpu_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_name_design_stamps_only_the_seed_and_dataset_it_ran(tmp_path):
    name_design = _script().name_design
    files = {}
    for key in ("ckplus", "fer2013"):
        for rel in ("metrics.json", "fold0/metrics.json", "seed1/metrics.json", "seed1/fold0/metrics.json",
                    "seed2/metrics.json"):
            f = tmp_path / "cpu" / key / "vgg19" / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps({"accuracy": 0.5}))
            files[(key, rel)] = f
    older = tmp_path / "cpu" / "ckplus" / "vgg19" / "seed1" / "metrics.json"
    name_design(tmp_path, "cpu", "ckplus", ["vgg19"], 1, "abc")
    stamped = {k for k, f in files.items() if "design_commit" in json.loads(f.read_text())}
    assert stamped == {("ckplus", "seed1/metrics.json"), ("ckplus", "seed1/fold0/metrics.json")}
    older.write_text(json.dumps({"accuracy": 0.5, "design_commit": "earlier"}))
    name_design(tmp_path, "cpu", "ckplus", ["vgg19"], 1, "later")  # a run keeps the design it ran under
    assert json.loads(older.read_text())["design_commit"] == "earlier"
    name_design(tmp_path, "cpu", "fer2013", ["vgg19"], 0, "abc")
    stamped = {k for k, f in files.items() if "design_commit" in json.loads(f.read_text())}
    assert ("fer2013", "metrics.json") in stamped and ("fer2013", "fold0/metrics.json") in stamped
    assert ("fer2013", "seed1/metrics.json") not in stamped and ("ckplus", "metrics.json") not in stamped
