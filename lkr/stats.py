"""Is a difference real? Paired tests of two configurations on the same test images.

The paper compares configurations by single runs whose gaps (0.3 to 3 points on FER2013) are of
the order of seed-to-seed noise. Every comparison the kit shows carries its uncertainty:

- **McNemar's exact test** (statsmodels) on one seed's test predictions of two configurations:
  of the images exactly one of them gets right, does either win more often than a fair coin
  says? Per seed; Holm's correction over the pairs compared together (statsmodels).
- **A bootstrap 95% interval** of the accuracy difference (scipy, BCa), resampling test images
  with both configurations' outcomes on an image kept together (paired). With several seeds the
  difference is that of the seed-averaged accuracies and each image's outcome is averaged over
  the seeds first, so the interval covers the test-set sampling of the seed-averaged gap; the
  seed-to-seed spread is reported beside it (:func:`seed_summary`).
- **CK+**: a subject's frames are not independent, so the interval resamples subjects
  (clusters: each subject's correct counts and image count travel together) when the
  predictions carry subject ids. McNemar's test treats images as independent and overstates
  the evidence there; the subject-resampled interval is the one to read.

Everything works on ``(label, pred)`` arrays aligned on the same test images (the
``predictions.npz`` of :mod:`lkr.runfolder`, loaded by :mod:`lkr.results`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

N_RESAMPLES = 9999
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0

PAPER_PAIRS: tuple[tuple[str, str], ...] = (
    ("lkrnet", "vgg19"), ("baseline1", "vgg19"), ("baseline2", "vgg19"),
    ("lkrnet", "baseline1"), ("lkrnet", "baseline2"),
)
"""The comparisons the paper's tables make (first minus second): each ingredient and both
against VGG19, and LKRNet against each single ingredient. Holm's correction runs over these."""

EXTRA_PAIRS: tuple[tuple[str, str], ...] = (("lkrnet-cover", "lkrnet"), ("lkrnet-l0.4", "lkrnet"))
"""Our own ablations (mask pooling, lambda), tested but outside the paper's family."""


@dataclass
class Comparison:
    """One paired comparison of configuration ``a`` against ``b`` (difference = a - b).

    Attributes:
        a, b: configuration names.
        seeds: the seeds both have, in order.
        n: test images.
        acc_a, acc_b: accuracies (fractions) averaged over ``seeds``.
        diff: acc_a - acc_b.
        ci_low, ci_high: bootstrap interval of ``diff`` (``confidence``).
        resampled: "images" or "subjects" (what the bootstrap resampled).
        a_only, b_only: per seed, images only ``a`` (only ``b``) got right.
        p_values: per seed, McNemar's exact two-sided p.
        p_holm: per seed, Holm-adjusted p over the family compared together (None outside one).
        diff_per_seed: per seed, acc_a - acc_b.
    """

    a: str
    b: str
    seeds: list[int]
    n: int
    acc_a: float
    acc_b: float
    diff: float
    ci_low: float
    ci_high: float
    resampled: str
    a_only: list[int]
    b_only: list[int]
    p_values: list[float]
    p_holm: list[float | None] = field(default_factory=list)
    diff_per_seed: list[float] = field(default_factory=list)
    confidence: float = CONFIDENCE

    def verdict(self, alpha: float = 0.05) -> str:
        """In words: "a better", "b better" when the interval excludes 0 and every seed's
        (Holm-adjusted where available) McNemar p is below ``alpha``; else "not told apart"."""
        ps = [h if h is not None else p for p, h in zip(self.p_values, self.p_holm or [None] * len(self.p_values))]
        sig = bool(ps) and all(p < alpha for p in ps)
        if self.ci_low > 0 and sig:
            return f"{self.a} better"
        if self.ci_high < 0 and sig:
            return f"{self.b} better"
        return "not told apart"

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"verdict": self.verdict()}


def correct(label: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-image correctness (bool) of one run's test predictions."""
    label, pred = np.asarray(label), np.asarray(pred)
    if label.shape != pred.shape:
        raise ValueError(f"labels {label.shape} and predictions {pred.shape} differ in shape")
    return label == pred


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int, float]:
    """McNemar's exact test (statsmodels) of two runs' per-image correctness on the same images.

    Returns:
        (a_only, b_only, p): images only ``a`` got right, only ``b`` got right, and the exact
        two-sided p-value (a binomial test of a_only against a_only + b_only at 1/2; 1.0 when
        the two runs disagree nowhere).
    """
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape:
        raise ValueError(f"the two runs were tested on different images ({a.shape} vs {b.shape})")
    table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
    a_only, b_only = table[0][1], table[1][0]
    p = 1.0 if a_only + b_only == 0 else float(mcnemar(table, exact=True).pvalue)
    return a_only, b_only, p


def bootstrap_difference(correct_a: np.ndarray, correct_b: np.ndarray, *, groups: np.ndarray | None = None,
                         n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE,
                         seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """Paired bootstrap interval (scipy, BCa) of accuracy(a) - accuracy(b) on the same images.

    Args:
        correct_a, correct_b: (n,) per-image correctness (bool, or a fraction when averaged
            over seeds).
        groups: (n,) cluster ids (CK+ subjects): clusters are resampled instead of images, each
            carrying its correct counts and size (a ratio estimate of the difference).
        n_resamples, confidence, seed: the bootstrap's.

    Returns:
        (difference, low, high) as fractions.
    """
    from scipy.stats import bootstrap

    a, b = np.asarray(correct_a, float), np.asarray(correct_b, float)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"expected two equal non-empty 1-D arrays, got {a.shape} and {b.shape}")
    diff = float(a.mean() - b.mean())
    if np.array_equal(a, b):  # no disagreement: every resample gives 0 (BCa is undefined there)
        return diff, diff, diff
    if groups is None:
        data: tuple[np.ndarray, ...] = (a, b)

        def stat(x, y, axis=-1):
            return x.mean(axis=axis) - y.mean(axis=axis)
    else:
        groups = np.asarray(groups)
        if groups.shape != a.shape:
            raise ValueError(f"groups {groups.shape} do not match the predictions {a.shape}")
        _, inv = np.unique(groups, return_inverse=True)
        data = (np.bincount(inv, a), np.bincount(inv, b), np.bincount(inv).astype(float))

        def stat(x, y, n, axis=-1):
            return (x.sum(axis=axis) - y.sum(axis=axis)) / n.sum(axis=axis)
    res = bootstrap(data, stat, paired=True, vectorized=True, n_resamples=n_resamples,
                    confidence_level=confidence, method="BCa", rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(low) and np.isfinite(high)):  # BCa degenerate (e.g. one cluster): percentile
        res = bootstrap(data, stat, paired=True, vectorized=True, n_resamples=n_resamples,
                        confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return diff, low, high


def _aligned(pa: Mapping[str, np.ndarray], pb: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Row orders that put two prediction sets on the same images (by dataset index)."""
    if "index" in pa and "index" in pb:
        ia, ib = np.asarray(pa["index"]), np.asarray(pb["index"])
        if ia.shape != ib.shape or not np.array_equal(np.sort(ia), np.sort(ib)):
            raise ValueError("the two runs were tested on different images")
        return np.argsort(ia, kind="stable"), np.argsort(ib, kind="stable")
    if len(pa["label"]) != len(pb["label"]):
        raise ValueError("the two runs were tested on different images")
    n = len(pa["label"])
    return np.arange(n), np.arange(n)


def compare(a: str, b: str, preds_a: Mapping[int, Mapping[str, np.ndarray]],
            preds_b: Mapping[int, Mapping[str, np.ndarray]], *, n_resamples: int = N_RESAMPLES,
            confidence: float = CONFIDENCE, seed: int = BOOTSTRAP_SEED) -> Comparison:
    """Paired comparison of two configurations over the seeds both have.

    Args:
        a, b: names (difference = a - b).
        preds_a, preds_b: {seed: predictions} with "label", "pred" and, where present, "index"
            (rows are matched on it) and "subject" (then subjects are resampled).

    Raises:
        ValueError: when they share no seed, or were tested on different images.
    """
    seeds = sorted(set(preds_a) & set(preds_b))
    if not seeds:
        raise ValueError(f"{a} and {b} share no seed")
    ca, cb, groups = [], [], None
    a_only, b_only, ps, diffs = [], [], [], []
    for s in seeds:
        ra, rb = _aligned(preds_a[s], preds_b[s])
        xa = correct(preds_a[s]["label"], preds_a[s]["pred"])[ra]
        xb = correct(preds_b[s]["label"], preds_b[s]["pred"])[rb]
        if not np.array_equal(np.asarray(preds_a[s]["label"])[ra], np.asarray(preds_b[s]["label"])[rb]):
            raise ValueError(f"{a} and {b} (seed {s}) disagree on the test labels")
        if ca and len(xa) != len(ca[0]):
            raise ValueError(f"seed {s} was tested on other images than seed {seeds[0]}")
        ca.append(xa)
        cb.append(xb)
        if "subject" in preds_a[s] and groups is None:
            groups = np.asarray(preds_a[s]["subject"])[ra]
        n_a, n_b, p = mcnemar_exact(xa, xb)
        a_only.append(n_a)
        b_only.append(n_b)
        ps.append(p)
        diffs.append(float(xa.mean() - xb.mean()))
    ma, mb = np.mean(ca, axis=0), np.mean(cb, axis=0)
    diff, low, high = bootstrap_difference(ma, mb, groups=groups, n_resamples=n_resamples,
                                           confidence=confidence, seed=seed)
    return Comparison(a=a, b=b, seeds=seeds, n=len(ma), acc_a=float(ma.mean()), acc_b=float(mb.mean()), diff=diff,
                      ci_low=low, ci_high=high, resampled="subjects" if groups is not None else "images",
                      a_only=a_only, b_only=b_only, p_values=ps, p_holm=[None] * len(seeds),
                      diff_per_seed=diffs, confidence=confidence)


def holm(comparisons: Sequence[Comparison]) -> None:
    """Holm's step-down correction (statsmodels) of the McNemar p-values over a family of
    comparisons, per seed; fills each comparison's ``p_holm`` in place."""
    from statsmodels.stats.multitest import multipletests

    if not comparisons:
        return
    seeds = sorted(set.intersection(*(set(c.seeds) for c in comparisons)))
    for c in comparisons:
        c.p_holm = [None] * len(c.seeds)
    for s in seeds:
        ps = [c.p_values[c.seeds.index(s)] for c in comparisons]
        adjusted = multipletests(ps, method="holm")[1]
        for c, q in zip(comparisons, adjusted):
            c.p_holm[c.seeds.index(s)] = float(q)


def compare_all(predictions: Mapping[str, Mapping[int, Mapping[str, np.ndarray]]], *,
                pairs: Sequence[tuple[str, str]] = PAPER_PAIRS, extra: Sequence[tuple[str, str]] = EXTRA_PAIRS,
                skipped: list[str] | None = None, **kw: Any) -> list[Comparison]:
    """Every pair of ``pairs`` (Holm-corrected together) and of ``extra`` (uncorrected) whose
    two configurations are both in ``predictions`` ({config: {seed: predictions}}).

    Args:
        skipped: when a list, pairs that cannot be compared (no common seed, other test
            images) are left out and their reasons appended here; else they raise.
    """
    def run(group: Sequence[tuple[str, str]]) -> list[Comparison]:
        out = []
        for a, b in group:
            if a not in predictions or b not in predictions:
                continue
            try:
                out.append(compare(a, b, predictions[a], predictions[b], **kw))
            except ValueError as e:
                if skipped is None:
                    raise
                skipped.append(f"{a} vs {b}: {e}")
        return out

    fam = run(pairs)
    holm(fam)
    return fam + run(extra)


def seed_summary(values: Sequence[float]) -> tuple[float, float | None]:
    """(mean, sample standard deviation) of a per-seed quantity; std None for one seed."""
    v = np.asarray(values, float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)
