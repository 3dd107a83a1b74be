"""Subject-independent folds: on synthetic subject arrays, the demo CK+ set and the real CK+48."""

from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest

from lkr.classes import CKPLUS_CLASSES, canonical
from lkr.errors import LkrError
from lkr.folds import fold_split, subject_folds


def _synthetic(n_subjects: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CK+-like: each subject has 1-6 sequences of distinct classes, 3 frames each."""
    rng = np.random.default_rng(seed)
    subjects, labels = [], []
    for s in range(n_subjects):
        for c in rng.choice(7, size=rng.integers(1, 7), replace=False):
            subjects += [f"S{s:03d}"] * 3
            labels += [int(c)] * 3
    return np.array(subjects), np.array(labels)


@pytest.fixture(scope="module")
def ckplus48(request) -> tuple[np.ndarray, np.ndarray]:
    """Subjects and labels of the real CK+48 (skips when the archive is absent)."""
    path = request.getfixturevalue("ckplus48_zip")
    try:
        from lkr.readers import load_dataset
    except ImportError:  # the reader is optional for this test: parse the names directly
        subjects, labels = [], []
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                m = re.search(r"/([^/]+)/(S\d{3})_\d{3}_\d+\.png$", name)
                if m:
                    subjects.append(m.group(2))
                    labels.append(CKPLUS_CLASSES.index(canonical(m.group(1))))
        return np.array(subjects), np.array(labels)
    ds = load_dataset(path)
    return ds.subjects, ds.labels


def _check_folds(subjects: np.ndarray, labels: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    folds = subject_folds(subjects, labels, k=k, seed=seed)
    assert folds.shape == labels.shape and folds.dtype == np.int64
    assert set(folds.tolist()) == set(range(k))  # each image in exactly one test fold
    for s in np.unique(subjects):  # no subject in two folds
        assert len(set(folds[subjects == s].tolist())) == 1, s
    # Balanced sizes: within 30 % of N/k, or one subject's images where subjects are coarse.
    sizes = np.bincount(folds, minlength=k)
    biggest = np.unique(subjects, return_counts=True)[1].max()
    assert np.abs(sizes - len(labels) / k).max() <= max(0.3 * len(labels) / k, biggest), sizes
    # Each class spread evenly, as far as whole subjects allow: per fold within half its share
    # of the class (or two sequences, for rare classes).
    for c in np.unique(labels):
        per_fold = np.bincount(folds[labels == c], minlength=k)
        share = (labels == c).sum() / k
        assert np.abs(per_fold - share).max() <= max(0.5 * share, 6), (c, per_fold)
    return folds


def test_synthetic_folds():
    subjects, labels = _synthetic()
    folds = _check_folds(subjects, labels, k=10)
    np.testing.assert_array_equal(folds, subject_folds(subjects, labels, k=10, seed=0))
    assert not np.array_equal(folds, subject_folds(subjects, labels, k=10, seed=1))
    _check_folds(subjects, labels, k=5, seed=3)


def test_real_ckplus48_folds(ckplus48):
    subjects, labels = ckplus48
    assert len(labels) == 981 and len(np.unique(subjects)) == 118
    folds = _check_folds(subjects, labels, k=10)
    # Every class, even contempt (54 images, 18 sequences), reaches most folds.
    for c in range(7):
        assert len(np.unique(folds[labels == c])) >= 7, CKPLUS_CLASSES[c]


def test_demo_ckplus_folds():
    from lkr.demo import make_demo

    ds = make_demo("ckplus")  # 160 sequences, 40 subjects
    _check_folds(ds.subjects, ds.labels, k=10)


@pytest.mark.parametrize("fold", [0, 4, 9])
def test_fold_split(fold):
    subjects, labels = _synthetic()
    parts = fold_split(subjects, labels, fold=fold, k=10, seed=0, val_fraction=0.1)
    assert set(parts) == {"train", "val", "test"}
    train, val, test = parts["train"], parts["val"], parts["test"]
    assert all(m.dtype == bool and m.shape == labels.shape for m in parts.values())
    assert (train.astype(int) + val + test == 1).all()  # disjoint and covering
    np.testing.assert_array_equal(test, subject_folds(subjects, labels, k=10, seed=0) == fold)
    sets = {k: set(subjects[m].tolist()) for k, m in parts.items()}
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"] and not sets["val"] & sets["test"]
    n_rest = len(sets["train"]) + len(sets["val"])
    assert 0.05 * n_rest <= len(sets["val"]) <= 0.2 * n_rest
    again = fold_split(subjects, labels, fold=fold, k=10, seed=0, val_fraction=0.1)
    for k in parts:
        np.testing.assert_array_equal(parts[k], again[k])


def test_fold_split_val_fraction_and_seed():
    subjects, labels = _synthetic()
    none = fold_split(subjects, labels, fold=1, val_fraction=0.0)
    assert not none["val"].any() and (none["train"] | none["test"]).all()
    big = fold_split(subjects, labels, fold=1, val_fraction=0.25)
    share = big["val"].sum() / (~big["test"]).sum()
    assert 0.15 < share < 0.35
    other = fold_split(subjects, labels, fold=1, seed=5)
    assert not np.array_equal(other["test"], fold_split(subjects, labels, fold=1, seed=0)["test"])


def test_real_ckplus48_fold_split(ckplus48):
    subjects, labels = ckplus48
    seen_test = np.zeros(len(labels), dtype=int)
    for fold in range(10):
        parts = fold_split(subjects, labels, fold=fold)
        seen_test += parts["test"]
        sets = {k: set(subjects[m].tolist()) for k, m in parts.items()}
        assert not sets["train"] & sets["val"] and not (sets["train"] | sets["val"]) & sets["test"]
        assert 4 <= len(sets["val"]) <= 20 and parts["val"].sum() >= 40
        assert len(np.unique(labels[parts["val"]])) >= 5  # stratified: val sees most classes
    assert (seen_test == 1).all()


def test_errors():
    subjects, labels = _synthetic(n_subjects=6)
    with pytest.raises(ValueError, match="cannot make 10 subject-independent folds from 6 subjects"):
        subject_folds(subjects, labels, k=10)
    with pytest.raises(LkrError):  # also a one-line CLI error
        subject_folds(subjects, labels, k=10)
    with pytest.raises(ValueError, match="at least 2 folds"):
        subject_folds(subjects, labels, k=1)
    with pytest.raises(ValueError, match="outside 0..4"):
        fold_split(subjects, labels, fold=5, k=5)
    with pytest.raises(ValueError, match="val_fraction"):
        fold_split(subjects, labels, fold=0, k=5, val_fraction=0.8)
    with pytest.raises(ValueError, match="no subject id"):
        subject_folds(np.array(["S1", ""] * 10), np.zeros(20, dtype=int), k=2)
    with pytest.raises(ValueError, match="one length"):
        subject_folds(subjects, labels[:-1], k=2)
