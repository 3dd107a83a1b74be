"""The paper's reported numbers (Tables 2 and 3), as data.

Each table maps a row name to per-class accuracies in percent, keyed by canonical class names
(:mod:`lkr.classes`), in the paper's column order. ``None`` marks a cell the paper leaves empty
(Lopes et al. report no contempt on CK+). The paper gives no overall accuracy per row; an
overall number comparable to ours is the per-class accuracies weighted by the test set's class
counts (:func:`weighted_accuracy`).

``OURS_TO_PAPER`` names the paper row that each of our configurations reproduces.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from lkr.classes import CKPLUS_CLASSES, FER2013_CLASSES

PaperTable = dict[str, dict[str, float | None]]


def _rows(classes: tuple[str, ...], rows: dict[str, tuple]) -> PaperTable:
    return {name: dict(zip(classes, values)) for name, values in rows.items()}


# Table 2 (CK+): Anger, Disgust, Fear, Happiness, Sadness, Surprise, Contempt (%).
TABLE2_CKPLUS: PaperTable = _rows(CKPLUS_CLASSES, {
    "VGG19": (95, 99, 71, 88, 87, 86, 78),
    "Baseline 1": (100, 99, 71, 100, 72, 91, 64),
    "Baseline 2": (69, 99, 76, 100, 100, 88, 78),
    "Zeng et al. [30]": (90, 99, 87, 100, 87, 98, 94),
    "Lopes et al. [12]": (91, 99, 92, 100, 82, 98, None),
    "DeRL [26]": (96, 96, 90, 99, 96, 99, 100),
    "Our method": (100, 100, 83, 100, 87, 91, 81),
})

# Table 3 (FER2013): Anger, Disgust, Fear, Happiness, Sadness, Surprise, Neutral (%).
TABLE3_FER2013: PaperTable = _rows(FER2013_CLASSES, {
    "VGG19": (60, 75, 53, 85, 60, 81, 68),
    "Baseline 1": (60, 73, 52, 88, 59, 81, 68),
    "Baseline 2": (64, 75, 54, 88, 58, 82, 70),
    "Xiang et al. [25]": (60, 41, 33, 81, 52, 74, 54),
    "Minaee et al. [16]": (53, 66, 46, 69, 63, 68, 80),
    "Hua et al. [9]": (66, 69, 48, 88, 65, 79, 74),
    "Our method": (65, 75, 55, 90, 61, 84, 70),
})

TABLES: dict[str, PaperTable] = {"ckplus": TABLE2_CKPLUS, "fer2013": TABLE3_FER2013}

# Our configuration names (lkr.experiments.CONFIGS) -> the paper row they reproduce.
OURS_TO_PAPER: dict[str, str] = {
    "vgg19": "VGG19", "baseline1": "Baseline 1", "baseline2": "Baseline 2", "lkrnet": "Our method",
}

# Class counts of the test sets the paper reports on (for weighted overall accuracies).
FER2013_PRIVATETEST_COUNTS: dict[str, int] = {
    "anger": 491, "disgust": 55, "fear": 528, "happiness": 879, "sadness": 594, "surprise": 416,
    "neutral": 626,
}
CKPLUS48_COUNTS: dict[str, int] = {
    "anger": 135, "disgust": 177, "fear": 75, "happiness": 207, "sadness": 84, "surprise": 249,
    "contempt": 54,
}


def paper_table(dataset: str) -> PaperTable:
    """The paper's table for ``"ckplus"`` (Table 2) or ``"fer2013"`` (Table 3).

    Raises:
        KeyError: for another dataset name.
    """
    return TABLES[dataset]


def weighted_accuracy(per_class: Mapping[str, float | None], counts: Mapping[str, int]) -> float | None:
    """Overall accuracy from per-class accuracies, weighted by class counts.

    Args:
        per_class: class name -> accuracy (any unit, e.g. percent); None for a missing cell.
        counts: class name -> number of test images of that class (>= 0).

    Returns:
        sum_c acc_c * n_c / sum_c n_c over the classes in ``counts``, in the unit of
        ``per_class``; None when a class with images has no accuracy, or no class has images.
    """
    names = [c for c, n in counts.items() if n > 0]
    if not names or any(per_class.get(c) is None for c in names):
        return None
    acc = np.array([float(per_class[c]) for c in names])
    n = np.array([float(counts[c]) for c in names])
    return float((acc * n).sum() / n.sum())


def overall_note(counts: Mapping[str, int], dataset: str = "this dataset") -> str:
    """The footnote of the paper rows' overall column in Tables 2 and 3.

    Args:
        counts: class name -> test images, the weights used.
        dataset: the name of the dataset the counts are from.

    Returns:
        One sentence, e.g. "Paper rows: the paper reports per-class accuracies only; their overall
        is the paper's per-class accuracies weighted by this dataset's test class counts (fer2013:
        Anger 491, ...), not a number from the paper."
    """
    from lkr.classes import short

    n = ", ".join(f"{short(c)} {int(k)}" for c, k in counts.items())
    return ("Paper rows: the paper reports per-class accuracies only; their overall is the paper's per-class "
            f"accuracies weighted by this dataset's test class counts ({dataset}: {n}), not a number from the paper.")


def paper_overall(dataset: str, counts: Mapping[str, int] | None = None) -> dict[str, float | None]:
    """Each paper row's overall accuracy (%) weighted by ``counts``.

    Args:
        dataset: "ckplus" or "fer2013".
        counts: class counts to weight by; default the paper's test set (FER2013 PrivateTest,
            or all 981 CK+48 images, which 10-fold cross-validation tests once each).

    Returns:
        row name -> weighted accuracy in percent (None for rows with a missing cell).
    """
    if counts is None:
        counts = CKPLUS48_COUNTS if dataset == "ckplus" else FER2013_PRIVATETEST_COUNTS
    return {row: weighted_accuracy(v, counts) for row, v in paper_table(dataset).items()}
