"""Subject-independent k-fold splits for CK+ (and any data set with subject ids).

CK+ keeps the last 3 frames of each sequence, near-duplicates of each other, and a subject
poses several expressions: a split by image would put the same face in training and test.
Folds are therefore made of whole subjects, with classes spread over the folds as evenly as
the subjects allow (scikit-learn's ``StratifiedGroupKFold``, stratified on the label, grouped
on the subject). Within a fold's training part a subject-grouped share is held out for model
selection, so the test fold is never used to pick an epoch.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from lkr.errors import DataError


class FoldError(DataError, ValueError):
    """Folds that cannot be made (e.g. fewer subjects than folds). A ``ValueError`` and an
    :class:`~lkr.errors.LkrError`, so the CLI prints it as one line."""


def _check(subjects: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    subjects = np.asarray(subjects, dtype=str)
    labels = np.asarray(labels)
    if subjects.ndim != 1 or subjects.shape != labels.shape:
        raise FoldError(f"subjects and labels must be two 1-d arrays of one length, got "
                        f"{subjects.shape} and {labels.shape}")
    if (subjects == "").any():
        raise FoldError(f"{int((subjects == '').sum())} images have no subject id; "
                        "subject-independent folds need one for every image")
    return subjects, labels


def _split(splitter: StratifiedGroupKFold, labels: np.ndarray, subjects: np.ndarray) -> list:
    """The splitter's (train, test) index pairs, without its warning about classes rarer than
    the number of folds: spreading them "as evenly as the subjects allow" is the contract."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return list(splitter.split(np.zeros(len(labels)), labels, groups=subjects))


def subject_folds(subjects: np.ndarray, labels: np.ndarray, k: int = 10, seed: int = 0) -> np.ndarray:
    """Assign every image to one of k folds, whole subjects at a time.

    Args:
        subjects: (N,) str subject id of each image (none may be "").
        labels: (N,) int class of each image; classes are spread over the folds as evenly as
            the subjects allow.
        k: number of folds, 2 <= k <= number of subjects.
        seed: the same seed gives the same folds.

    Returns:
        (N,) int64 fold index in 0..k-1; all images of a subject share one fold.

    Raises:
        FoldError (a ValueError): if k < 2, there are fewer subjects than k, or an image has
            no subject id.
    """
    subjects, labels = _check(subjects, labels)
    n_subj = len(np.unique(subjects))
    if k < 2:
        raise FoldError(f"need at least 2 folds, got k={k}")
    if n_subj < k:
        raise FoldError(f"cannot make {k} subject-independent folds from {n_subj} subjects; "
                        f"use at most {n_subj} folds")
    folds = np.full(len(labels), -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for i, (_, test) in enumerate(_split(splitter, labels, subjects)):
        folds[test] = i
    return folds


def fold_split(subjects: np.ndarray, labels: np.ndarray, fold: int, k: int = 10, seed: int = 0,
               val_fraction: float = 0.1) -> dict[str, np.ndarray]:
    """Train / val / test masks of one fold of :func:`subject_folds`.

    ``test`` is fold ``fold``. Of the remaining subjects, a seeded, label-stratified share of
    about ``val_fraction`` becomes ``val`` (whole subjects), the rest ``train``. No subject is
    in two of the three parts.

    Args:
        subjects: (N,) str subject id of each image.
        labels: (N,) int class of each image.
        fold: which fold is the test part, 0 <= fold < k.
        k: number of folds.
        seed: seeds both the folds and the val draw.
        val_fraction: share of the non-test subjects held out for model selection,
            0 <= val_fraction <= 0.5 (0: ``val`` is empty).

    Returns:
        {"train", "val", "test"}: (N,) bool masks, disjoint, covering every image.

    Raises:
        FoldError (a ValueError): for a fold outside 0..k-1, a val_fraction outside 0..0.5,
            or any reason :func:`subject_folds` gives.
    """
    if not 0 <= fold < k:
        raise FoldError(f"fold {fold} is outside 0..{k - 1}")
    if not 0 <= val_fraction <= 0.5:
        raise FoldError(f"val_fraction must be in 0..0.5, got {val_fraction}")
    subjects, labels = _check(subjects, labels)
    test = subject_folds(subjects, labels, k=k, seed=seed) == fold
    val = np.zeros(len(labels), dtype=bool)
    rest = np.flatnonzero(~test)
    n_rest = len(np.unique(subjects[rest]))
    if val_fraction > 0 and n_rest >= 2:
        # One part of a grouped, stratified split of the remaining subjects into ~1/val_fraction.
        n_parts = min(max(2, round(1 / val_fraction)), n_rest)
        splitter = StratifiedGroupKFold(n_splits=n_parts, shuffle=True, random_state=seed + 1000 * (fold + 1))
        _, held = _split(splitter, labels[rest], subjects[rest])[0]
        val[rest[held]] = True
    return {"train": ~test & ~val, "val": val, "test": test}
