"""A run's data on its device: which images train, which select the epoch, which are reported,
and the region masks of the local branch.

Protocol: the epoch is selected on a split that is never reported. Data evaluated on official
splits (FER2013): train on Training, select on PublicTest (or, without one, a seeded stratified
hold-out of Training), report PrivateTest (or Test). Data evaluated by subject folds (CK+): the
fold's test subjects are reported, a validation part of its training subjects selects
(:func:`lkr.folds.fold_split`). Which of the two a dataset is, it says itself
(:attr:`lkr.dataset.FaceDataset.evaluation`).

The trainer and the re-evaluation of a run folder (``lkr evaluate``) both stand on this module,
so both see the same parts of the same data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lkr.config import Config
from lkr.dataset import FaceDataset
from lkr.errors import TrainingError


@dataclass
class Prepared:
    """A dataset moved to the training device.

    images (N,48,48) uint8, masks (N,48,48) float32 in [0,1] or None, labels (N,) int64, and
    ``index``: {"train", "select", "test"} -> int64 tensors of dataset positions.
    """

    images: torch.Tensor
    masks: torch.Tensor | None
    labels: torch.Tensor
    index: dict[str, torch.Tensor]
    split_names: dict[str, str]
    notes: list[str]


def split_indices(ds: FaceDataset, cfg: Config, *, fold: int | None = None, folds: int = 10
                  ) -> tuple[dict[str, np.ndarray], dict[str, str], list[str]]:
    """Dataset positions of the train / select / test parts, their names, and notes.

    Args:
        ds: the dataset; ``ds.evaluation`` says whether its splits or subject folds are used.
        cfg: uses ``select_split``, ``test_split``, ``val_fraction`` and ``seed``.
        fold, folds: subject folds: which of ``folds`` folds is the test part (default 0).

    Returns:
        ({"train", "select", "test"} -> sorted int64 positions, their names, notes for the user).

    Raises:
        TrainingError: when there is no test split, the selection part is empty, or the
            selection split is the reported one.
    """
    if ds.evaluation == "folds":
        return _fold_indices(ds, cfg, fold=fold, folds=folds)
    notes: list[str] = []
    train = np.flatnonzero(ds.splits == "Training")
    names = ds.split_names
    if cfg.select_split in names and cfg.select_split != "Training":
        select = np.flatnonzero(ds.splits == cfg.select_split)
        sel_name = cfg.select_split
    else:
        # No official selection split (e.g. an image-folder release without prefixes):
        # hold out a seeded, stratified part of Training. Never select on the test split.
        from sklearn.model_selection import train_test_split

        train, select = train_test_split(train, test_size=cfg.val_fraction, random_state=cfg.seed,
                                         stratify=ds.labels[train])
        train, select = np.sort(train), np.sort(select)
        sel_name = f"Training-holdout-{cfg.val_fraction:g}"
        notes.append(f"no {cfg.select_split} split: epochs are selected on {sel_name}")
    test_name = cfg.test_split if cfg.test_split in names else ("Test" if "Test" in names else None)
    if test_name is None:
        raise TrainingError(f"{ds.source}: no test split ({cfg.test_split} or Test) to report")
    if sel_name == test_name:
        raise TrainingError(f"select_split {sel_name} is the reported split: epochs are never selected on it")
    test = np.flatnonzero(ds.splits == test_name)
    if len(select) == 0:
        raise TrainingError(f"{ds.source}: the selection split {sel_name} is empty")
    return {"train": train, "select": select, "test": test}, \
        {"train": "Training", "select": sel_name, "test": test_name}, notes


def _fold_indices(ds: FaceDataset, cfg: Config, *, fold: int | None, folds: int
                  ) -> tuple[dict[str, np.ndarray], dict[str, str], list[str]]:
    """:func:`split_indices` for data evaluated by subject-independent folds."""
    from lkr.folds import fold_split

    notes: list[str] = []
    if fold is None:
        fold = 0
        notes.append("no --fold given: fold 0 is used")
    # Folds by subject only: without subject ids fold_split refuses (one line), rather than
    # splitting a subject's sequences over train and test.
    parts = fold_split(ds.subjects, ds.labels, fold, k=folds, seed=cfg.seed, val_fraction=cfg.val_fraction)
    idx = {"train": np.flatnonzero(parts["train"]), "select": np.flatnonzero(parts["val"]),
           "test": np.flatnonzero(parts["test"])}
    if len(idx["select"]) == 0:
        raise TrainingError(f"{ds.source}: fold {fold} has no selection subjects (val_fraction="
                            f"{cfg.val_fraction}); epochs are never selected on the test subjects")
    names = {"train": f"fold{fold}-train", "select": f"fold{fold}-val", "test": f"fold{fold}-test"}
    return idx, names, notes


def prepare_data(ds: FaceDataset, cfg: Config, *, fold: int | None = None, folds: int = 10,
                 device: torch.device | str = "cpu", progress: bool = False) -> Prepared:
    """Landmarks (computed and cached when missing), masks, splits, all moved to ``device``.

    Args:
        ds: the dataset.
        cfg: uses ``local_branch``, ``alpha`` and ``mask_merge`` (masks), and the split fields.
        fold, folds: subject folds: which fold is the test part (see :func:`split_indices`).
        device: where the tensors go.
        progress: a progress bar while landmarks are detected.

    Returns:
        The :class:`Prepared` data; masks only when ``cfg.local_branch``.
    """
    device = torch.device(device)
    idx, names, notes = split_indices(ds, cfg, fold=fold, folds=folds)  # split errors before any MTCNN
    masks = None
    if cfg.local_branch:
        if not ds.has_landmarks:
            from lkr.landmarks import attach_landmarks

            ds = attach_landmarks(ds, progress=progress)
        from lkr.regions import run_masks

        masks = torch.from_numpy(run_masks(cfg, ds.boxes, ds.points, size=ds.images.shape[1])).to(device)
    return Prepared(
        images=torch.from_numpy(ds.images).to(device),
        masks=masks,
        labels=torch.from_numpy(ds.labels).to(device),
        index={k: torch.from_numpy(v).long().to(device) for k, v in idx.items()},
        split_names=names,
        notes=notes,
    )
