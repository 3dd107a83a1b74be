"""Paired tests of two configurations (lkr.stats): worked by hand, against their definitions,
and on a results folder with seeds."""

from __future__ import annotations

import json
from math import comb

import numpy as np
import pytest

from lkr import stats
from lkr.results import load_config_result, run_dir_for
from lkr.runfolder import save_npz, write_json

FAST = dict(n_resamples=1999)


def _pair(both: int, a_only: int, b_only: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([1] * both + [1] * a_only + [0] * b_only + [0] * neither, bool)
    b = np.array([1] * both + [0] * a_only + [1] * b_only + [0] * neither, bool)
    return a, b


def test_mcnemar_exact_by_hand():
    a, b = _pair(50, 10, 2, 8)
    a_only, b_only, p = stats.mcnemar_exact(a, b)
    assert (a_only, b_only) == (10, 2)
    # exact two-sided: 2 * P(X <= 2), X ~ Binomial(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert p == pytest.approx(2 * (comb(12, 0) + comb(12, 1) + comb(12, 2)) / 2 ** 12)
    assert stats.mcnemar_exact(b, a)[2] == pytest.approx(p)  # symmetric
    # concordant images do not move the test
    assert stats.mcnemar_exact(*_pair(5000, 10, 2, 900))[2] == pytest.approx(p)


def test_identical_runs_differ_nowhere():
    a, _ = _pair(30, 5, 0, 5)
    assert stats.mcnemar_exact(a, a) == (0, 0, 1.0)
    assert stats.bootstrap_difference(a, a, **FAST) == (0.0, 0.0, 0.0)


def test_bootstrap_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    n = 3000
    a = rng.random(n) < 0.70
    b = np.where(rng.random(n) < 0.8, a, rng.random(n) < 0.66)  # correlated, as two nets on one test set
    diff, low, high = stats.bootstrap_difference(a, b, **FAST)
    d = a.astype(float) - b.astype(float)
    assert diff == pytest.approx(d.mean())
    se = d.std(ddof=1) / np.sqrt(n)
    assert low < diff < high
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert (low + high) / 2 == pytest.approx(diff, abs=0.5 * se)


def test_subject_resampling_widens_the_interval_of_repeated_frames():
    """Five identical frames per subject carry one subject's worth of evidence: resampling
    subjects gives an interval about sqrt(5) wider than resampling images."""
    rng = np.random.default_rng(2)
    subjects = 150
    a1 = rng.random(subjects) < 0.8
    b1 = np.where(rng.random(subjects) < 0.7, a1, rng.random(subjects) < 0.7)
    a, b = np.repeat(a1, 5), np.repeat(b1, 5)
    groups = np.repeat(np.arange(subjects), 5)
    _, lo_i, hi_i = stats.bootstrap_difference(a, b, **FAST)
    d, lo_s, hi_s = stats.bootstrap_difference(a, b, groups=groups, **FAST)
    assert d == pytest.approx(a1.mean() - b1.mean())
    assert (hi_s - lo_s) / (hi_i - lo_i) == pytest.approx(np.sqrt(5), rel=0.2)
    # the subject bootstrap on repeated frames = the image bootstrap on one frame per subject
    _, lo_1, hi_1 = stats.bootstrap_difference(a1, b1, **FAST)
    assert (hi_s - lo_s) == pytest.approx(hi_1 - lo_1, rel=0.15)


def _preds(label, pred, index=None, subject=None):
    p = {"label": np.asarray(label), "pred": np.asarray(pred)}
    if index is not None:
        p["index"] = np.asarray(index)
    if subject is not None:
        p["subject"] = np.asarray(subject)
    return p


def test_compare_pairs_rows_by_dataset_index():
    rng = np.random.default_rng(3)
    n = 400
    label = rng.integers(0, 7, n)
    pa = np.where(rng.random(n) < 0.7, label, (label + 1) % 7)
    pb = np.where(rng.random(n) < 0.6, label, (label + 2) % 7)
    idx = np.arange(1000, 1000 + n)
    perm = rng.permutation(n)
    ref = stats.compare("a", "b", {0: _preds(label, pa, idx)}, {0: _preds(label, pb, idx)}, **FAST)
    shuf = stats.compare("a", "b", {0: _preds(label, pa, idx)}, {0: _preds(label[perm], pb[perm], idx[perm])}, **FAST)
    assert (shuf.a_only, shuf.b_only, shuf.p_values) == (ref.a_only, ref.b_only, ref.p_values)
    assert (shuf.ci_low, shuf.ci_high) == pytest.approx((ref.ci_low, ref.ci_high))
    assert ref.diff == pytest.approx((pa == label).mean() - (pb == label).mean())
    assert ref.resampled == "images" and ref.seeds == [0]
    with pytest.raises(ValueError, match="different images"):
        stats.compare("a", "b", {0: _preds(label, pa, idx)}, {0: _preds(label, pb, idx + 1)})
    with pytest.raises(ValueError, match="share no seed"):
        stats.compare("a", "b", {0: _preds(label, pa)}, {1: _preds(label, pb)})


def test_compare_averages_seeds_and_tests_each():
    label = np.zeros(100, int)
    a = {0: _preds(label, np.r_[np.zeros(80), np.ones(20)]), 1: _preds(label, np.r_[np.zeros(70), np.ones(30)])}
    b = {0: _preds(label, np.r_[np.zeros(60), np.ones(40)]), 1: _preds(label, np.r_[np.zeros(60), np.ones(40)]),
         2: _preds(label, np.zeros(100))}
    c = stats.compare("a", "b", a, b, **FAST)
    assert c.seeds == [0, 1]  # seed 2 of b has no partner
    assert (c.acc_a, c.acc_b) == pytest.approx((0.75, 0.60))
    assert c.diff_per_seed == pytest.approx([0.20, 0.10])
    assert (c.a_only, c.b_only) == ([20, 10], [0, 0])
    assert c.p_values[0] == pytest.approx(2 * 0.5 ** 20)
    assert c.test == "sign-flip over images" and c.p <= 2 / 2000  # the Monte Carlo floor at 1,999 resamples
    # two seeds 10 points apart: t(1) makes the interval over seeds span 0, so no verdict yet
    assert c.ci_low > 0 and c.seed_ci_low < 0 and c.verdict() == "not told apart"
    # a third seed that agrees closely: now the seeds' interval lies above 0 too
    a3 = {s: _preds(label, np.r_[np.zeros(n), np.ones(100 - n)]) for s, n in enumerate((80, 78, 79))}
    b3 = {s: _preds(label, np.r_[np.zeros(60), np.ones(40)]) for s in range(3)}
    c3 = stats.compare("a", "b", a3, b3, **FAST)
    assert c3.seed_ci_low > 0 and c3.verdict() == "a better"


def test_holm_over_a_family():
    label = np.zeros(200, int)
    base = {0: _preds(label, np.r_[np.zeros(100), np.ones(100)])}
    better = {0: _preds(label, np.r_[np.zeros(130), np.ones(70)])}  # 30 more right, none fewer
    same = {0: _preds(label, np.r_[np.ones(2), np.zeros(98), np.ones(100)])}  # two swaps each way
    preds = {"vgg19": base, "lkrnet": better, "baseline1": same}
    fam = stats.compare_all(preds, **FAST)
    assert [(c.a, c.b) for c in fam] == [("lkrnet", "vgg19"), ("baseline1", "vgg19"), ("lkrnet", "baseline1")]
    ps = [c.p for c in fam]
    assert ps == [c.p_values[0] for c in fam]  # one seed: the pair's p is that seed's McNemar p
    order = np.argsort(ps)
    expected = np.maximum.accumulate([min(1.0, (len(ps) - r) * ps[i]) for r, i in enumerate(order)])
    assert [fam[i].p_holm for i in order] == pytest.approx(list(expected))
    assert fam[1].verdict() == "not told apart" and fam[0].verdict() == "lkrnet better (one seed)"


def _write_run(d, seed, label, pred, subjects=None):
    d.mkdir(parents=True, exist_ok=True)
    write_json(d / "config.json", {"seed": seed, "variant": "lkrnet"})
    write_json(d / "metrics.json", {"accuracy": float((label == pred).mean())})
    extra = {} if subjects is None else {"subject": np.asarray(subjects)}
    save_npz(d / "predictions.npz", index=np.arange(len(label)), label=label.astype(np.int8),
             pred=pred.astype(np.int8), **extra)


def test_results_folder_with_seeds(tmp_path):
    """Seed 0 in the configuration's folder, seed s in seed<s>/: loaded together, paired by seed."""
    label = np.arange(60) % 7
    for name, hits in (("vgg19", (40, 42)), ("lkrnet", (50, 47))):
        for seed, h in enumerate(hits):
            pred = np.where(np.arange(60) < h, label, (label + 1) % 7)
            _write_run(run_dir_for(tmp_path, "cpu", "fer2013", name, seed=seed), seed, label, pred)
    assert run_dir_for(tmp_path, "cpu", "fer2013", "vgg19", seed=1) == tmp_path / "cpu/fer2013/vgg19/seed1"
    assert run_dir_for(tmp_path, "cpu", "ckplus", "vgg19", fold=3, seed=2) == tmp_path / "cpu/ckplus/vgg19/seed2/fold3"
    r = {n: load_config_result(tmp_path / "cpu/fer2013" / n) for n in ("vgg19", "lkrnet")}
    assert list(r["lkrnet"].by_seed()) == [0, 1]
    assert r["lkrnet"].by_seed()[1].metrics["accuracy"] == pytest.approx(47 / 60)
    c = stats.compare("lkrnet", "vgg19", *({s: x.predictions for s, x in r[n].by_seed().items()}
                                           for n in ("lkrnet", "vgg19")), **FAST)
    assert c.seeds == [0, 1] and (c.a_only, c.b_only) == ([10, 5], [0, 0])
    assert c.diff == pytest.approx((10 + 5) / 120)


def test_ckplus_folds_carry_subjects_into_the_comparison(tmp_path):
    label = np.arange(40) % 7
    subjects = np.repeat([f"S{i:03d}" for i in range(10)], 4)
    for name, hits in (("vgg19", 24), ("lkrnet", 32)):
        d = tmp_path / name
        for fold in range(2):
            rows = slice(20 * fold, 20 * fold + 20)
            pred = np.where(np.arange(40) < hits, label, (label + 1) % 7)[rows]
            _write_run(d / f"fold{fold}", 0, label[rows], pred, subjects[rows])
            # fold predictions index the dataset; make fold 1's indices follow fold 0's
            z = dict(np.load(d / f"fold{fold}" / "predictions.npz"))
            z["index"] = np.arange(40)[rows]
            save_npz(d / f"fold{fold}" / "predictions.npz", **z)
        write_json(d / "metrics.json", {"accuracy": hits / 40, "pooled": True})
    r = {n: load_config_result(tmp_path / n) for n in ("vgg19", "lkrnet")}
    assert list(r["lkrnet"].predictions["subject"][:4]) == ["S000"] * 4
    c = stats.compare("lkrnet", "vgg19", {0: r["lkrnet"].predictions}, {0: r["vgg19"].predictions}, **FAST)
    assert c.resampled == "subjects" and c.n == 40
    assert c.diff == pytest.approx(8 / 40)
    assert json.loads((tmp_path / "lkrnet" / "metrics.json").read_text())["pooled"]


def test_run_experiments_puts_another_seed_beside_seed_0(tmp_path):
    """``seed=1`` trains into ``<config>/seed1/fold<k>`` (runs and results), pools there, stores
    the test subjects, and leaves seed 0's folder alone."""
    from lkr.demo import make_demo
    from lkr.experiments import run_experiments

    ds = make_demo("ckplus", n=160)
    kw = dict(names=["vgg19"], epochs=1, folds=[0], k_folds=5, progress=False)
    m1 = run_experiments(ds, tmp_path, seed=1, **kw)["vgg19"]
    cfg_dir = tmp_path / "results" / "demo" / "ckplus" / "vgg19"
    assert not (cfg_dir / "metrics.json").exists() and (cfg_dir / "seed1" / "metrics.json").exists()
    assert json.loads((tmp_path / "runs/demo/ckplus/vgg19/seed1/fold0/config.json").read_text())["seed"] == 1
    z = np.load(cfg_dir / "seed1" / "fold0" / "predictions.npz")
    assert len(z["subject"]) == len(z["label"]) and all(z["subject"])
    assert set(z["subject"]) == set(ds.subjects[z["index"]])
    m0 = run_experiments(ds, tmp_path, **kw)["vgg19"]
    r = load_config_result(cfg_dir)
    assert list(r.by_seed()) == [0, 1]
    assert r.by_seed()[1].metrics["accuracy"] == pytest.approx(m1["accuracy"])
    assert r.metrics["accuracy"] == pytest.approx(m0["accuracy"])


# --- review fixes: direction, clusters, seeds, pairing -------------------------------------
def _comparison(**kw):
    base = dict(a="lkrnet", b="vgg19", seeds=[0, 1], n=100, acc_a=0.6, acc_b=0.5, diff=0.1, ci_low=0.02,
                ci_high=0.18, resampled="images", a_only=[20, 20], b_only=[5, 5], p_values=[0.001, 0.001],
                p=0.001, p_holm=None, diff_per_seed=[0.15, 0.05], seed_ci_low=0.01, seed_ci_high=0.19,
                p_seeds=0.01, p_seeds_holm=None)
    return stats.Comparison(**(base | kw))


def test_verdict_needs_every_seed_to_point_the_same_way():
    assert _comparison().verdict() == "lkrnet better"
    # seed 1 goes the other way: the pooled interval and p alone cannot carry it
    assert _comparison(a_only=[30, 5], b_only=[2, 25]).verdict() == "not told apart"
    assert _comparison(diff=-0.1, ci_low=-0.18, ci_high=-0.02, a_only=[2, 3], b_only=[30, 25],
                       seed_ci_low=-0.19, seed_ci_high=-0.01).verdict() == "vgg19 better"
    assert _comparison(p=0.2).verdict() == "not told apart"
    assert _comparison(p_holm=0.06, p_seeds_holm=0.01).verdict() == "not told apart"
    # the seed-level test does not reject (or cannot be made): seed noise may explain the gap
    assert _comparison(p_seeds=0.2).verdict() == "not told apart"
    assert _comparison(p_seeds=None).verdict() == "not told apart"
    # in a Holm family, both columns are read corrected
    assert _comparison(p_holm=0.004, p_seeds_holm=0.06).verdict() == "not told apart"
    assert _comparison(p_holm=0.004, p_seeds_holm=0.049).verdict() == "lkrnet better"
    # one seed: said so
    one = _comparison(seeds=[0], a_only=[20], b_only=[5], p_values=[0.001], diff_per_seed=[0.1],
                      seed_ci_low=None, seed_ci_high=None)
    assert one.verdict() == "lkrnet better (one seed)"


def test_clustered_test_equals_mcnemar_with_one_image_per_subject():
    a, b = _pair(50, 10, 2, 8)
    groups = np.arange(len(a))
    assert stats.mcnemar_clustered(a, b, groups) == pytest.approx(stats.mcnemar_exact(a, b))


def test_clustered_test_counts_subjects_not_frames():
    # 12 subjects of 5 identical frames each: 4 subjects only A right, 1 only B right
    a1, b1 = _pair(5, 4, 1, 2)
    a, b, groups = np.repeat(a1, 5), np.repeat(b1, 5), np.repeat(np.arange(12), 5)
    a_only, b_only, p_naive = stats.mcnemar_exact(a, b)
    assert (a_only, b_only) == (20, 5) and p_naive < 0.01  # frames taken as independent
    _, _, p = stats.mcnemar_clustered(a, b, groups)
    # sign flips of d = (5, 5, 5, 5, -5): exactly P(|S| >= 15) = 12/32 (|S| = 15 or 25)
    assert p == pytest.approx(12 / 32)
    assert stats.mcnemar_clustered(a, a, groups)[2] == 1.0


def test_compare_uses_the_clustered_test_when_subjects_are_known():
    a1, b1 = _pair(5, 4, 1, 2)
    label = np.zeros(60, int)
    pa = {"label": label, "pred": np.where(np.repeat(a1, 5), 0, 1), "index": np.arange(60),
          "subject": np.repeat(np.arange(12), 5)}
    pb = pa | {"pred": np.where(np.repeat(b1, 5), 0, 1)}
    c = stats.compare("lkrnet", "vgg19", {0: pa}, {0: pb}, **FAST)
    assert c.test == "clustered sign-flip" and c.resampled == "subjects"
    assert c.p_values[0] == pytest.approx(12 / 32)
    assert c.verdict() == "not told apart"


def test_seed_interval_is_a_t_interval_over_seeds():
    from scipy.stats import t

    d = [0.01, 0.03, -0.01]
    low, high = stats.seed_interval(d)
    half = t.ppf(0.975, 2) * np.std(d, ddof=1) / np.sqrt(3)
    assert (low, high) == pytest.approx((0.01 - half, 0.01 + half))
    assert stats.seed_interval([0.02]) == (None, None)


def _run_preds(n_right, n=40, index=None):
    label = np.arange(n) % 7
    pred = np.where(np.arange(n) < n_right, label, (label + 1) % 7)
    return {"label": label, "pred": pred, "index": np.arange(n) if index is None else index}


def test_holm_runs_once_over_the_pairs_whatever_their_seeds():
    c1 = _comparison(seeds=[0, 1], p_values=[0.01, 0.01], p=0.01)
    c2 = _comparison(b="baseline1", seeds=[0], p_values=[0.04], a_only=[20], b_only=[5], p=0.04)
    stats.holm([c1, c2])
    assert (c1.p_holm, c2.p_holm) == pytest.approx((0.02, 0.04))
    stats.holm([])  # nothing to correct


def test_sign_flip_test_over_many_clusters_matches_the_binomial_test():
    """Beyond 13 differing clusters scipy draws sign patterns (Monte Carlo): with one image a
    cluster the p then estimates McNemar's exact p."""
    from scipy.stats import binomtest

    d = np.r_[np.ones(30), -np.ones(14), np.zeros(50)]
    p = stats.sign_flip_test(d, np.arange(len(d)), n_resamples=9999)
    assert p == pytest.approx(binomtest(30, 44).pvalue, abs=0.01)
    assert stats.sign_flip_test(np.zeros(5)) == 1.0


def test_later_seeds_must_keep_the_subjects():
    subjects = {0: np.arange(40) // 4, 1: np.arange(40) // 5}  # seed 1 names other subjects
    a = {s: _run_preds(30) | {"subject": subjects[s]} for s in (0, 1)}
    b = {s: _run_preds(20) | {"subject": subjects[s]} for s in (0, 1)}
    with pytest.raises(ValueError, match="other subjects"):
        stats.compare("a", "b", a, b, **FAST)


def test_pairing_refuses_what_cannot_be_paired():
    a, b = _run_preds(30), _run_preds(20)
    no_index = {k: v for k, v in b.items() if k != "index"}
    with pytest.raises(ValueError, match="only one of the two runs"):
        stats.compare("a", "b", {0: a}, {0: no_index}, **FAST)
    dup = _run_preds(20, index=np.r_[np.arange(39), 0])
    with pytest.raises(ValueError, match="twice"):
        stats.compare("a", "b", {0: a}, {0: dup}, **FAST)
    other = _run_preds(20, index=np.arange(1, 41))
    with pytest.raises(ValueError, match="other images than seed 0"):
        stats.compare("a", "b", {0: a, 1: other}, {0: b, 1: _run_preds(20, index=np.arange(1, 41))}, **FAST)
    with pytest.raises(ValueError, match="test subjects"):
        stats.compare("a", "b", {0: a | {"subject": np.arange(40) // 4}}, {0: b}, **FAST)


def test_a_seed_folder_must_hold_that_seed(tmp_path):
    label = np.arange(20) % 7
    _write_run(tmp_path / "vgg19", 0, label, label)
    _write_run(tmp_path / "vgg19" / "seed2", 1, label, label)  # a run of seed 1 in seed2/
    with pytest.raises(ValueError, match="seed 1, not 2"):
        load_config_result(tmp_path / "vgg19")


def test_run_experiments_refuses_two_seeds(tmp_path):
    from lkr.demo import make_demo
    from lkr.errors import ConfigError
    from lkr.experiments import run_experiments

    with pytest.raises(ConfigError, match="two seeds"):
        run_experiments(make_demo("ckplus", n=40), tmp_path, names=["vgg19"], epochs=1, folds=[0], progress=False,
                        seed=1, overrides={"seed": 2})


def test_seed_level_test_is_a_paired_t_test_over_seeds():
    """The audit's worked example (CK+ cpu-ft, Baseline 2 - VGG19): the three seeds' differences
    -2.65, -3.36, -3.77 points give p 0.0099; Holm over five comparisons, 0.0496."""
    from scipy.stats import t

    d = [-0.0265, -0.0336, -0.0377]
    p = stats.seed_test(d)
    m, sd = np.mean(d), np.std(d, ddof=1)
    assert p == pytest.approx(2 * t.sf(abs(m / (sd / np.sqrt(3))), 2))
    assert round(p, 4) == 0.0099
    assert stats.seed_test([0.01]) is None and stats.seed_test([0.01, 0.01]) is None
    others = [_comparison(p_seeds=q) for q in (0.5, 0.3, 0.2, 0.4)]
    fam = [_comparison(p_seeds=p)] + others
    stats.holm(fam)
    assert fam[0].p_seeds_holm == pytest.approx(5 * p) and round(fam[0].p_seeds_holm, 4) == 0.0496


def test_compare_fills_the_seed_level_p(tmp_path):
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 7, 400)
    preds = {}
    for name, hit in (("a", (0.70, 0.72, 0.69)), ("b", (0.60, 0.61, 0.63))):
        preds[name] = {s: {"label": lab, "pred": np.where(rng.random(400) < h, lab, (lab + 1) % 7),
                           "index": np.arange(400)} for s, h in enumerate(hit)}
    c = stats.compare("a", "b", preds["a"], preds["b"], **FAST)
    assert c.p_seeds == pytest.approx(stats.seed_test(c.diff_per_seed))
    one = stats.compare("a", "b", {0: preds["a"][0]}, {0: preds["b"][0]}, **FAST)
    assert one.p_seeds is None


def test_a_pair_without_a_seed_level_p_stays_in_the_holm_family():
    """Zero spread over seeds gives no t-test; the pair still counts (as p = 1), so the others'
    correction is as strict as the family is large."""
    fam = [_comparison(p_seeds=0.01), _comparison(p_seeds=None), _comparison(p_seeds=0.02)]
    stats.holm(fam)
    assert fam[1].p_seeds_holm is None
    assert fam[0].p_seeds_holm == pytest.approx(0.03) and fam[2].p_seeds_holm == pytest.approx(0.04)


def test_the_permutation_batch_gives_the_null_distribution_of_one_batch():
    """scipy draws the sign patterns one after the other whatever the batch: the kit's batch
    (faster) gives the p of one batch of every resample, to the bit (a Monte Carlo case)."""
    from scipy.stats import permutation_test

    d = np.random.default_rng(3).choice([-1.0, 1.0, 1 / 3, -2 / 3], size=400)
    kw = dict(permutation_type="samples", vectorized=True, n_resamples=stats.N_RESAMPLES, alternative="two-sided")
    one = permutation_test((d,), lambda x, axis=-1: x.sum(axis=axis), rng=np.random.default_rng(0), **kw)
    kit = permutation_test((d,), lambda x, axis=-1: x.sum(axis=axis), rng=np.random.default_rng(0),
                           batch=stats.PERMUTATION_BATCH, **kw)
    assert stats.PERMUTATION_BATCH < stats.N_RESAMPLES
    assert np.array_equal(one.null_distribution, kit.null_distribution) and one.pvalue == kit.pvalue
    assert stats.sign_flip_test(d) == min(1.0, one.pvalue)


def test_the_memo_returns_each_input_its_own_result():
    """sign_flip_test and bootstrap_difference remember results by their inputs' bytes: the same
    inputs give the same result without computing it again, other inputs (other groups, other
    subject ids as Python strings, another seed) their own."""
    rng = np.random.default_rng(5)
    a, b = rng.random(300) < 0.7, rng.random(300) < 0.6
    g = np.array([f"S{i % 30:03d}" for i in range(300)], dtype=object)
    stats._MEMO.clear()
    first = stats.bootstrap_difference(a, b, groups=g)
    n = len(stats._MEMO)
    assert stats.bootstrap_difference(a, b, groups=g.astype(str)) == first and len(stats._MEMO) == n
    g2 = g.copy()
    g2[:10] = "S999"
    assert stats.bootstrap_difference(a, b, groups=g2) != first
    # ids whose sorted order differs (numbers against their text) are other clusters in another order
    nums = np.array([10, 9] * 150, dtype=object)
    stats._MEMO.clear()
    as_text = stats.bootstrap_difference(a, b, groups=nums.astype(str))
    assert stats.bootstrap_difference(a, b, groups=nums) == stats._bootstrap_difference(
        a.astype(float), b.astype(float), nums, stats.N_RESAMPLES, stats.CONFIDENCE, stats.BOOTSTRAP_SEED)
    assert len(stats._MEMO) == 2  # two keys: the text ids did not answer for the numbers
    assert as_text == stats._bootstrap_difference(a.astype(float), b.astype(float), nums.astype(str),
                                                  stats.N_RESAMPLES, stats.CONFIDENCE, stats.BOOTSTRAP_SEED)
    assert stats.bootstrap_difference(a, b, groups=g, seed=1) != first
    d = a.astype(float) - b.astype(float)
    p = stats.sign_flip_test(d, g)
    stats._MEMO.clear()
    assert stats._sign_flip_test(d, g, stats.N_RESAMPLES, stats.BOOTSTRAP_SEED) == p == stats.sign_flip_test(d, g)
    assert stats.sign_flip_test(d) != p  # no clusters: another test
