"""The second region control's committed results (``results/control-v2/<set>/<arm>/``, written
by ``scripts/control.py``; design: ``docs/control-design.md``): loading, completeness, and the
one Holm family of seven contrasts of each (set, stage, λ) table.

Each arm's folder holds ``runs.json`` (one record a run: seed, fold, accuracy, each branch's
accuracy, the share of predictions that follow the cue, the design commit it ran under) and
``predictions.npz`` (every run's test predictions: seed, fold, index, label, pred, cue, and on
CK+48 subject). A seed's CK+48 runs are its ten folds, pooled: every seed tests all 981 images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lkr.control import CONTRASTS, DESIGN_MASKS, arm_of, design_arms

SEEDS = {"synthetic": (0, 1, 2, 3, 4), "ckplus": (0, 1, 2)}
FOLDS = 10
MASK_LABELS = {"vgg19": "VGG19", "key": "key regions", "uniform": "uniform mask", "face": "face mask",
               "centre": "centre mask", "off-landmark": "off-landmark regions"}
SET_LABELS = {"synthetic-border": "synthetic, border cue", "synthetic-inner": "synthetic, cue inside the face",
              "ckplus-border": "CK+48, border cue", "ckplus-inner": "CK+48, cue inside the face"}
TAG_LABELS = {"l0": "λ 0", "l02": "λ 0.2"}


def expected_runs(dataset: str) -> set[tuple[int, int | None]]:
    """(seed, fold) of every run an arm of ``dataset`` has when complete."""
    if dataset.startswith("ckplus"):
        return {(s, f) for s in SEEDS["ckplus"] for f in range(FOLDS)}
    return {(s, None) for s in SEEDS["synthetic"]}


@dataclass
class Arm:
    """One arm's committed runs."""

    name: str
    records: list[dict[str, Any]]
    arrays: dict[str, np.ndarray]
    config: dict[str, Any] = field(default_factory=dict)

    def runs(self) -> set[tuple[int, int | None]]:
        return {(r["seed"], r["fold"]) for r in self.records}

    def seed_predictions(self) -> dict[int, dict[str, np.ndarray]]:
        """{seed: predictions} for :func:`lkr.stats.compare`, a CK+48 seed's folds pooled."""
        out = {}
        for s in sorted(set(int(x) for x in self.arrays["seed"])):
            sel = self.arrays["seed"] == s
            out[s] = {k: self.arrays[k][sel] for k in ("index", "label", "pred", "subject") if k in self.arrays}
        return out

    def seed_accuracy(self) -> dict[int, float]:
        return {s: float((p["pred"] == p["label"]).mean()) for s, p in self.seed_predictions().items()}

    def seed_mean(self, key: str) -> dict[int, float]:
        """Per seed, a run record's number averaged over the seed's runs weighted by their test
        images (a CK+48 seed's folds)."""
        out: dict[int, list] = {}
        for r in self.records:
            if r.get(key) is not None:
                out.setdefault(r["seed"], []).append((r[key], r["n"]))
        return {s: float(np.average([v for v, _ in xs], weights=[n for _, n in xs])) for s, xs in out.items()}


def read_runs(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the saved ``runs.json``, its run records with what they share (``common``) merged in)."""
    saved = json.loads(Path(path).read_text())
    common = saved.get("common") or {}
    return saved, [{**common, **r} for r in saved["runs"]]


def load_arm(root: str | Path, dataset: str, arm: str) -> Arm | None:
    """The arm's committed runs, or None when it has none."""
    d = Path(root) / "control-v2" / dataset / arm
    if not (d / "runs.json").is_file():
        return None
    saved, records = read_runs(d / "runs.json")
    with np.load(d / "predictions.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return Arm(arm, records, arrays, saved.get("config") or {})


@dataclass
class DesignTable:
    """One (set, stage, λ) table: its arms, whether every run is in, and its seven contrasts
    (one Holm family; None while the table is incomplete)."""

    dataset: str
    stage: int
    tag: str
    arms: dict[str, Arm | None]
    missing: dict[str, int]
    comparisons: list[Any] | None

    @property
    def complete(self) -> bool:
        return not any(self.missing.values())

    def contrast(self, a: str, b: str):
        """The comparison of masks ``a`` − ``b`` ("key", "vgg19", ...), or None."""
        for (x, y), c in zip(CONTRASTS, self.comparisons or []):
            if (x, y) == (a, b):
                return c
        return None


def design_table(root: str | Path, dataset: str, stage: int, tag: str) -> DesignTable:
    """Load the arms of one table and, when all their runs are in, compare them: the seven
    :data:`lkr.control.CONTRASTS`, Holm-corrected together (both noises,
    :func:`lkr.stats.holm`)."""
    from lkr.stats import compare, holm

    names = ["vgg19", *DESIGN_MASKS]
    arms = {m: load_arm(root, dataset, arm_of(m, stage, tag)) for m in names}
    want = expected_runs(dataset)
    missing = {m: len(want - (a.runs() if a else set())) for m, a in arms.items()}
    extra = {m: sorted(a.runs() - want, key=str) for m, a in arms.items() if a and a.runs() - want}
    if extra:  # a run the design does not have (another seed or fold) never enters a table
        from lkr.errors import LkrError

        raise LkrError(f"{dataset}, stage {stage}, {tag}: runs outside the design's seeds and folds: {extra}")
    comparisons = None
    if not any(missing.values()):
        comparisons = [compare(a, b, arms[a].seed_predictions(), arms[b].seed_predictions()) for a, b in CONTRASTS]
        holm(comparisons)
    return DesignTable(dataset, stage, tag, arms, missing, comparisons)


def kept_arms(dataset: str, stage: int, tag: str) -> list[str]:
    """The first design's arms kept on the synthetic sets that belong in this table (no contrasts)."""
    return [a for a, spec in design_arms(dataset).items() if "landmarks" in spec
            and spec.get("mask_stage") == stage and a.endswith("-" + tag)]


def told(c) -> str:
    """A comparison's verdict in the kit's words: "told apart (<winner> above)" or "not told apart"."""
    v = c.verdict()
    if v == "not told apart":
        return v
    win = c.a if v.startswith(c.a) else c.b
    return f"told apart ({MASK_LABELS.get(win, win)} above)"


def favours(c, mask: str) -> bool:
    """Whether comparison ``c`` is told apart with ``mask`` above."""
    return c is not None and c.verdict() == f"{mask} better"


def set_verdict(t: DesignTable) -> str:
    """The design's reading of one table (docs/control-design.md, "What each outcome means", as
    amended on 2026-12-04: "not told apart" is never read as "equal", and a mask told apart
    above the key regions is said so), from its verdicts alone."""
    if not t.complete:
        return "in progress"
    key_centre, key_face, key_off = t.contrast("key", "centre"), t.contrast("key", "face"), t.contrast("key", "off-landmark")
    if t.dataset.endswith("border"):
        if favours(key_centre, "key") and favours(key_face, "key") and favours(key_off, "key"):
            return "the landmarks carry the gain" + (
                " (against off-landmark rectangles of less weight: amendment 1)" if t.dataset.startswith("ckplus") else "")
        if favours(key_centre, "centre"):
            return "a mask that only hides the border does better than the key regions"
        if not favours(key_centre, "key"):
            return "the key regions are not told apart from a mask that only hides the border"
        if favours(key_off, "off-landmark"):
            return ("the key regions beat a mask that only hides the border, but the same rectangles off the "
                    "landmarks do better")
        if not favours(key_off, "key"):
            return ("the key regions beat a mask that only hides the border, but are not told apart from the same "
                    "rectangles off the landmarks")
        if favours(key_face, "face"):
            return ("the key regions beat a mask that only hides the border and the same rectangles off the "
                    "landmarks, but the face mask does better")
        return ("the key regions beat a mask that only hides the border and the same rectangles off the landmarks, "
                "but not the face mask")
    if favours(key_face, "key"):
        # the design says so with this reading: the cue lies outside the regions by construction
        return ("the regions hide an on-face distractor that a face mask lets through (a property of where "
                "the cue was put, outside the regions by construction; not evidence of expression information "
                "at the landmarks)")
    if favours(key_face, "face"):
        return "the face mask does better than the key regions even with the distractor in its view"
    return "the key regions are not told apart from a face mask that sees the distractor"


TEN_CROP_COMMIT = "7c519e825e89a061744d5689da46e33d00c62408"
"""2026-11-30 07:28 UTC: the first CK+48 control's 55 runs as first tested, with ten-crop."""
TEN_CROP_KEYS = ("accuracy", "n", "cue_follow_rate", "cue_agrees_with_label", "accuracy_global_branch",
                 "accuracy_local_branch", "control_arm", "fold", "best_epoch")


def ten_crop_history(repo: str | Path) -> dict[str, dict[str, Any]]:
    """{``<arm>/seed<s>/metrics.json``: the numbers the tables use} of every run of the first
    CK+48 control at :data:`TEN_CROP_COMMIT`, read from git, with ``test_crops`` "ten".

    Raises:
        LkrError: the git history is not there (a copy without it cannot check them).
    """
    import subprocess

    from lkr.errors import LkrError

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout

    try:
        names = git("ls-tree", "-r", "--name-only", TEN_CROP_COMMIT, "results/control/ckplus/").split()
        out = {}
        for name in names:
            if name.endswith("/metrics.json"):
                m = json.loads(git("show", f"{TEN_CROP_COMMIT}:{name}"))
                rel = str(Path(name).relative_to("results/control/ckplus"))
                out[rel] = {k: m[k] for k in TEN_CROP_KEYS if k in m} | {"test_crops": "ten",
                                                                          "from_commit": TEN_CROP_COMMIT}
    except (OSError, subprocess.CalledProcessError):
        raise LkrError(f"needs the git history (commit {TEN_CROP_COMMIT[:10]}) to be checked") from None
    if not out:
        raise LkrError(f"commit {TEN_CROP_COMMIT[:10]} holds no CK+48 control run")
    return out


def design_commit(doc: str, repo: str | Path) -> str:
    """The commit that last changed the design document ``doc`` (a path inside ``repo``); refuses
    when it has uncommitted changes or was never committed: a run must name the design it ran
    under.

    Raises:
        LkrError: one line.
    """
    import subprocess

    from lkr.errors import LkrError

    try:
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", doc],
                               capture_output=True, text=True, check=True).stdout.strip()
        commit = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%H", "--", doc],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise LkrError(f"{doc}: cannot ask git which commit holds the design ({e})") from None
    if dirty or not commit:
        raise LkrError(f"{doc} has uncommitted changes (or was never committed): commit the design before its runs")
    return commit
