"""Is a difference real? Paired tests of two configurations on the same test images.

The paper compares configurations by single runs whose gaps (0.3 to 3 points on FER2013) are of
the order of seed-to-seed noise. Every comparison the kit shows carries its uncertainty:

- **McNemar's exact test** (statsmodels) on one seed's test predictions of two configurations:
  of the images exactly one of them gets right, does either win more often than a fair coin
  says? Shown per seed.
- **One test per pair over all its seeds** (the p that Holm's correction and the verdict use):
  a sign-flip permutation test (scipy) of each image's seed-averaged difference (a right minus
  b right, averaged over the seeds): under the null hypothesis the two configurations are
  exchangeable on every image, so each image's difference is as likely to have either sign.
  With one seed and no clusters it is McNemar's exact test itself. Holm's correction
  (statsmodels) runs once over the paper's comparisons, on these p-values.
- **A bootstrap 95% interval** of the accuracy difference (scipy, BCa), resampling test images
  with both configurations' outcomes on an image kept together (paired). With several seeds the
  difference is that of the seed-averaged accuracies and each image's outcome is averaged over
  the seeds first, so this interval covers the test-set sampling of the seed-averaged gap, not
  the seed-to-seed noise. That noise is shown beside it: each seed's difference, and a t
  interval over the per-seed differences (:attr:`Comparison.seed_ci_low`; wide with few seeds).
  A verdict ("A better") needs the bootstrap interval to exclude 0, the pair's (Holm) p below
  0.05, every seed's gap to point the same way, and, with several seeds, the t interval over
  seeds to exclude 0, so that one lucky seed cannot carry it. From one seed a verdict says so
  ("A better (one seed)"): seed noise is then not covered at all.
- **CK+**: a subject's frames are not independent (several frames of one sequence), so when
  the predictions carry subject ids both the interval and the test work on subjects: the
  bootstrap resamples subjects (each subject's correct counts and image count travel
  together), and McNemar's test becomes its clustered form, a sign-flip permutation test
  (scipy) of the per-subject differences (only-A-right minus only-B-right frames): under the
  null hypothesis each subject's difference is as likely to have either sign. With one image
  per subject it is McNemar's exact test (exactly so while scipy enumerates every sign pattern,
  i.e. up to 13 subjects that differ; beyond that a Monte Carlo estimate from 9,999 sign
  patterns, whose smallest p is 1/10,000).

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
BATCH = 500
"""Resamples the bootstrap evaluates at once (memory: BATCH x test images floats)."""
PERMUTATION_BATCH = 1000
"""Sign patterns the permutation test evaluates at once. scipy draws them one after the other
whatever the batch (the same null distribution and p to the bit as in one batch of 9,999, checked
in tests/test_stats.py), and 1,000 at a time is 3-4x faster than all at once (at 3,000
differences, on 2 AMD EPYC cores: 9,999 x 3,000 x 2 indices do not fit in the caches)."""
_MEMO: dict[tuple, Any] = {}
"""Results of :func:`sign_flip_test` and :func:`bootstrap_difference` by their inputs' bytes:
the tables and figures of one redraw test many pairs more than once (a Holm family's table, its
verdict sentence, the headline), and each is a pure function of its inputs."""


def _memo_key(name: str, arrays: Sequence[Any], **kw: Any) -> tuple:
    import hashlib

    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"-")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return (name, h.hexdigest(), tuple(sorted(kw.items())))


def _codes(groups: Any) -> np.ndarray | None:
    """Cluster ids as the tests use them (``np.unique``'s inverse: their sorted order), so that
    two group arrays share a memo key exactly when they give the same computation."""
    if groups is None:
        return None
    return np.unique(np.asarray(groups), return_inverse=True)[1].astype(np.int64).ravel()


def _memoized(key: tuple, compute: Any) -> Any:
    if key not in _MEMO:
        _MEMO[key] = compute()
    return _MEMO[key]

PAPER_PAIRS: tuple[tuple[str, str], ...] = (
    ("lkrnet", "vgg19"), ("baseline1", "vgg19"), ("baseline2", "vgg19"),
    ("lkrnet", "baseline1"), ("lkrnet", "baseline2"),
)
"""The comparisons the paper's tables make (first minus second): each ingredient and both
against VGG19, and LKRNet against each single ingredient. Holm's correction runs over these."""

EXTRA_PAIRS: tuple[tuple[str, str], ...] = (("lkrnet-cover", "lkrnet"), ("lkrnet-l0.4", "lkrnet"))
"""Our own ablations (mask pooling, lambda), tested but outside the paper's family."""

REGION_PAIRS: tuple[tuple[str, str], ...] = (
    ("lkrnet-s1", "vgg19"), ("lkrnet-s1", "face-s1"), ("lkrnet-s1", "off-landmark-s1"), ("lkrnet-s1", "uniform-s1"),
    ("lkrnet-s1", "lkrnet"), ("face-s1", "vgg19"), ("uniform-s1", "vgg19"),
)
"""The region question on real faces (docs/real-faces-design.md): LKRNet with the mask at stage 1
against VGG19, against its partners without landmarks (the face box, the same rectangles off the
landmarks, a uniform mask) and against LKRNet at the paper's stage 5; the face and uniform masks
against VGG19. One Holm family of its own."""


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
        p_values: per seed, two-sided p of ``seed_test`` (shown, not used by the verdict).
        p: the pair's two-sided p over all its seeds (``test``).
        p_holm: ``p`` Holm-adjusted over the family compared together (None outside one).
        diff_per_seed: per seed, acc_a - acc_b.
        seed_ci_low, seed_ci_high: t interval (``confidence``) of the mean of
            ``diff_per_seed`` (the seed-to-seed noise); None with fewer than two seeds or when
            the seeds' differences are all equal (no spread to estimate from).
        seed_test: "McNemar exact" (images) or "clustered sign-flip" (subjects,
            :func:`mcnemar_clustered`).
        test: what ``p`` comes from: "McNemar exact" (one seed, images), else "sign-flip over
            images" or "sign-flip over subjects" of the seed-averaged differences
            (:func:`sign_flip_test`). It covers test-sample noise (which images were drawn), not
            seed noise.
        p_seeds: the seed-level test: a paired t-test over the seeds (one-sample t of
            ``diff_per_seed`` against 0, :func:`seed_test`): it covers seed-to-seed noise (how
            the gap moves when the networks are trained again), not test-sample noise. None
            with fewer than two seeds or no spread.
        p_seeds_holm: ``p_seeds`` Holm-adjusted over the same family as ``p_holm``.
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
    p: float
    p_holm: float | None = None
    diff_per_seed: list[float] = field(default_factory=list)
    confidence: float = CONFIDENCE
    seed_ci_low: float | None = None
    seed_ci_high: float | None = None
    seed_test: str = "McNemar exact"
    test: str = "McNemar exact"
    p_seeds: float | None = None
    p_seeds_holm: float | None = None

    def verdict(self, alpha: float = 0.05) -> str:
        """In words: "a better" when both noises are covered: the image-level p (Holm-adjusted
        where available) is below ``alpha`` and the bootstrap interval lies above 0, on every
        seed ``a`` got more images right that ``b`` missed than the reverse, and with two or more
        seeds the seed-level p (Holm-adjusted where available) is below ``alpha`` too; "b
        better" the other way round; else "not told apart". A verdict from one seed reads "a
        better (one seed)" (seed noise not covered)."""
        sig = (self.p_holm if self.p_holm is not None else self.p) < alpha
        several = len(self.seeds) > 1
        p_seeds = self.p_seeds_holm if self.p_holm is not None else self.p_seeds
        seeds_sig = p_seeds is not None and p_seeds < alpha
        for sign, name in ((1, self.a), (-1, self.b)):
            low, high = sorted((sign * self.ci_low, sign * self.ci_high))
            seeds_agree = all(sign * (x - y) > 0 for x, y in zip(self.a_only, self.b_only))
            if sig and low > 0 and seeds_agree and (seeds_sig or not several):
                return f"{name} better" + ("" if several else " (one seed)")
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


def mcnemar_clustered(correct_a: np.ndarray, correct_b: np.ndarray, groups: np.ndarray, *,
                      n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[int, int, float]:
    """McNemar's test for clustered images (CK+: several frames per subject): a sign-flip
    permutation test (scipy) of the per-cluster differences d_i = (images of cluster i only
    ``a`` got right) - (only ``b``), statistic sum(d_i).

    Under the null hypothesis each cluster's difference is as likely positive as negative,
    whatever the frames of one subject share. Exact when the clusters with d_i != 0 allow
    ``n_resamples`` sign patterns or fewer, else Monte Carlo with ``n_resamples``. With one
    image per cluster it equals :func:`mcnemar_exact` on the exact path (a Monte Carlo estimate of it
    beyond).

    Returns:
        (a_only, b_only, p) as :func:`mcnemar_exact` (counts over all images).
    """
    from scipy.stats import permutation_test

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    groups = np.asarray(groups)
    if a.shape != b.shape or groups.shape != a.shape:
        raise ValueError(f"runs and clusters differ in shape ({a.shape}, {b.shape}, {groups.shape})")
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p = sign_flip_test(a.astype(float) - b.astype(float), groups, n_resamples=n_resamples, seed=seed)
    return a_only, b_only, p


def sign_flip_test(diffs: np.ndarray, groups: np.ndarray | None = None, *, n_resamples: int = N_RESAMPLES,
                   seed: int = BOOTSTRAP_SEED) -> float:
    """Two-sided p of a paired sign-flip permutation test (scipy ``permutation_test``, one
    sample, ``permutation_type="samples"``) of sum(d): per-image differences ``diffs`` (e.g. a
    right minus b right, or its mean over seeds), summed per cluster first when ``groups`` is
    given. Exact when the non-zero (cluster) differences allow ``n_resamples`` sign patterns or
    fewer (up to 13 at 9,999), else Monte Carlo; 1.0 when every difference is 0."""
    d = np.asarray(diffs, float)
    return _memoized(_memo_key("sign_flip", (d, _codes(groups)), n=n_resamples, seed=seed),
                     lambda: _sign_flip_test(d, groups, n_resamples, seed))


def _sign_flip_test(d: np.ndarray, groups: np.ndarray | None, n_resamples: int, seed: int) -> float:
    from scipy.stats import permutation_test

    if groups is not None:
        _, inv = np.unique(np.asarray(groups), return_inverse=True)
        d = np.bincount(inv, d)
    d = d[d != 0]  # (clusters of) images without a difference add nothing to either side
    if not len(d):
        return 1.0
    res = permutation_test((d,), lambda x, axis=-1: x.sum(axis=axis), permutation_type="samples",
                           vectorized=True, n_resamples=n_resamples, alternative="two-sided",
                           batch=PERMUTATION_BATCH, rng=np.random.default_rng(seed))
    return float(min(1.0, res.pvalue))


def seed_interval(diffs: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """t interval (scipy) of the mean of per-seed differences; (None, None) for one seed.

    The seeds are the sample here: it says how far the seed-averaged gap could move with other
    seeds, which the bootstrap over test images does not. With three seeds (2 degrees of
    freedom) it is wide: t = 4.30 at 95%.
    """
    from scipy.stats import t

    v = np.asarray(diffs, float)
    if len(v) < 2:
        return None, None
    sd = float(v.std(ddof=1))
    if sd == 0:  # equal differences: no spread to estimate from, which is not certainty
        return None, None
    low, high = t.interval(confidence, len(v) - 1, loc=v.mean(), scale=sd / np.sqrt(len(v)))
    return float(low), float(high)


def seed_test(diffs: Sequence[float]) -> float | None:
    """The seed-level test: two-sided p of a paired t-test over seeds (scipy's one-sample t-test
    of the per-seed differences against 0). The seeds are the sample: it covers how the gap
    moves when the networks are trained again, not which test images were drawn. None for one
    seed, or when every seed gives the same difference (no spread to test with)."""
    from scipy.stats import ttest_1samp

    v = np.asarray(diffs, float)
    if len(v) < 2 or float(v.std(ddof=1)) == 0:
        return None
    return float(ttest_1samp(v, 0.0).pvalue)


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
    a, b = np.asarray(correct_a, float), np.asarray(correct_b, float)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"expected two equal non-empty 1-D arrays, got {a.shape} and {b.shape}")
    key = _memo_key("bootstrap", (a, b, _codes(groups)), n=n_resamples, confidence=confidence, seed=seed)
    return _memoized(key, lambda: _bootstrap_difference(a, b, groups, n_resamples, confidence, seed))


def _bootstrap_difference(a: np.ndarray, b: np.ndarray, groups: np.ndarray | None, n_resamples: int,
                          confidence: float, seed: int) -> tuple[float, float, float]:
    from scipy.stats import bootstrap

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
    res = bootstrap(data, stat, paired=True, vectorized=True, n_resamples=n_resamples, batch=BATCH,
                    confidence_level=confidence, method="BCa", rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(low) and np.isfinite(high)):  # BCa degenerate (e.g. one cluster): percentile
        res = bootstrap(data, stat, paired=True, vectorized=True, n_resamples=n_resamples, batch=BATCH,
                        confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return diff, low, high


def _aligned(pa: Mapping[str, np.ndarray], pb: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Row orders that put two prediction sets on the same images (by dataset index)."""
    if ("index" in pa) != ("index" in pb):
        raise ValueError("only one of the two runs stored its test images' dataset index; cannot pair them")
    if "index" in pa:
        ia, ib = np.asarray(pa["index"]), np.asarray(pb["index"])
        for i in (ia, ib):
            if len(np.unique(i)) != len(i):
                raise ValueError("a run's predictions name the same test image twice")
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
            (rows are matched on it) and "subject" (then subjects are resampled and the
            clustered test replaces McNemar's exact test).

    Raises:
        ValueError: when they share no seed, were tested on different images (also from one
            seed to the next), or only one of them carries the index or the subjects.
    """
    import warnings

    seeds = sorted(set(preds_a) & set(preds_b))
    if not seeds:
        raise ValueError(f"{a} and {b} share no seed")
    ca, cb, groups, images = [], [], None, None
    a_only, b_only, ps, diffs = [], [], [], []
    for s in seeds:
        pa, pb = preds_a[s], preds_b[s]
        ra, rb = _aligned(pa, pb)
        xa = correct(pa["label"], pa["pred"])[ra]
        xb = correct(pb["label"], pb["pred"])[rb]
        if not np.array_equal(np.asarray(pa["label"])[ra], np.asarray(pb["label"])[rb]):
            raise ValueError(f"{a} and {b} (seed {s}) disagree on the test labels")
        idx = np.asarray(pa["index"])[ra] if "index" in pa else np.arange(len(xa))
        if images is None:
            images = idx
        elif not np.array_equal(idx, images):
            raise ValueError(f"seed {s} was tested on other images than seed {seeds[0]}")
        if ("subject" in pa) != ("subject" in pb):
            raise ValueError(f"only one of {a} and {b} (seed {s}) stored the test subjects; cannot pair them by subject")
        g = np.asarray(pa["subject"])[ra] if "subject" in pa else None
        if g is not None and not np.array_equal(g, np.asarray(pb["subject"])[rb]):
            raise ValueError(f"{a} and {b} (seed {s}) disagree on the test subjects")
        if s != seeds[0] and (g is None) != (groups is None):
            raise ValueError(f"seed {s} of {a} and {b} stored subjects where seed {seeds[0]} did not, or the reverse")
        if s != seeds[0] and g is not None and not np.array_equal(g, groups):
            raise ValueError(f"seed {s} of {a} and {b} gives the test images other subjects than seed {seeds[0]}")
        groups = g if groups is None else groups
        ca.append(xa)
        cb.append(xb)
        n_a, n_b, p = (mcnemar_clustered(xa, xb, groups, n_resamples=n_resamples, seed=seed) if groups is not None
                       else mcnemar_exact(xa, xb))
        a_only.append(n_a)
        b_only.append(n_b)
        ps.append(p)
        diffs.append(float(xa.mean() - xb.mean()))
    if groups is not None and len(np.unique(groups)) == len(groups):
        warnings.warn(f"{a} vs {b}: every test image has its own subject id", stacklevel=2)
    ma, mb = np.mean(ca, axis=0), np.mean(cb, axis=0)
    diff, low, high = bootstrap_difference(ma, mb, groups=groups, n_resamples=n_resamples,
                                           confidence=confidence, seed=seed)
    s_low, s_high = seed_interval(diffs, confidence)
    if len(seeds) == 1:  # the seed's own test: McNemar's exact test, or its clustered form
        p, test = ps[0], ("clustered sign-flip" if groups is not None else "McNemar exact")
    else:
        p = sign_flip_test(ma - mb, groups, n_resamples=n_resamples, seed=seed)
        test = f"sign-flip over {'subjects' if groups is not None else 'images'}"
    return Comparison(a=a, b=b, seeds=seeds, n=len(ma), acc_a=float(ma.mean()), acc_b=float(mb.mean()), diff=diff,
                      ci_low=low, ci_high=high, resampled="subjects" if groups is not None else "images",
                      a_only=a_only, b_only=b_only, p_values=ps, p=p, diff_per_seed=diffs, confidence=confidence,
                      seed_ci_low=s_low, seed_ci_high=s_high,
                      seed_test="clustered sign-flip" if groups is not None else "McNemar exact", test=test,
                      p_seeds=seed_test(diffs))


def holm_adjust(pvals: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (statsmodels ``multipletests``), remembered by the p-values: its
    Holm branch calls ``gc.collect()`` each time, 0.1 s on a process that holds the results."""
    key = ("holm", tuple(float(p) for p in pvals))
    if key not in _MEMO:
        from statsmodels.stats.multitest import multipletests

        _MEMO[key] = [float(q) for q in multipletests(list(key[1]), method="holm")[1]] if key[1] else []
    return list(_MEMO[key])


def holm(comparisons: Sequence[Comparison]) -> None:
    """Holm's step-down correction (statsmodels) over a family of comparisons, of each noise's
    p-values apart: the image-level ones (:attr:`Comparison.p`, into ``p_holm``) and the
    seed-level ones (:attr:`Comparison.p_seeds`, into ``p_seeds_holm``, over the pairs with two
    seeds or more; one without spread counts as p = 1); in place."""
    if not comparisons:
        return
    for c, q in zip(comparisons, holm_adjust([c.p for c in comparisons])):
        c.p_holm = float(q)
    # a pair without a seed-level p (one seed, or no spread) stays in the family as p = 1, so the
    # correction of the others is as strict as the family is large; its own adjusted p stays None
    with_seeds = [c for c in comparisons if len(c.seeds) > 1]
    if with_seeds:
        adj = holm_adjust([1.0 if c.p_seeds is None else c.p_seeds for c in with_seeds])
        for c, q in zip(with_seeds, adj):
            c.p_seeds_holm = None if c.p_seeds is None else float(q)


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
