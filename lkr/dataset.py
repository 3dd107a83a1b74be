"""The one dataset form every part of the kit works on.

A :class:`FaceDataset` holds N grayscale 48x48 faces as uint8, integer labels into its own
``class_names`` (canonical names, paper order, see :mod:`lkr.classes`), a split name per image,
subject and sequence ids where the dataset has them ("" where not), and each image's source
path. Landmarks (MTCNN boxes and 5 points) are attached by :mod:`lkr.landmarks`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from lkr.atomic import atomic_write
from lkr.errors import DataError

IMAGE_SIZE = 48


@dataclass
class FaceDataset:
    """N faces in one form.

    Attributes:
        name: dataset family: "fer2013", "ckplus", "demo-fer2013" or "demo-ckplus".
        kind: the form it was read from, e.g. "fer2013-csv", "fer2013-folder", "ckplus-full",
            "ckplus48", "demo".
        images: (N, 48, 48) uint8.
        labels: (N,) int64 in [0, len(class_names)).
        class_names: the dataset's seven canonical class names, in the paper's table order.
        splits: (N,) str, e.g. "Training", "PublicTest", "PrivateTest", "Test" or "all".
        subjects: (N,) str subject id ("" where unknown).
        sequences: (N,) str sequence id, unique within the dataset, e.g. "S010_004" ("" where unknown).
        paths: (N,) str source path of each image (inside an archive: "archive.zip:member").
        source: the path the dataset was read from ("demo" for the built-in set).
        notes: messages the reader wants the user to see (e.g. a split it had to guess).
        boxes: (N, 4) float32 face box x1, y1, x2, y2 in 48x48 pixel coordinates, or None.
        points: (N, 5, 2) float32 landmarks (left eye, right eye, nose, left mouth corner,
            right mouth corner) as x, y in 48x48 pixel coordinates, or None.
        detected: (N,) bool, True where landmarks were detected, False where a template
            was used, or None.
    """

    name: str
    kind: str
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    splits: np.ndarray
    subjects: np.ndarray
    sequences: np.ndarray
    paths: np.ndarray
    source: str = ""
    notes: list[str] = field(default_factory=list)
    boxes: np.ndarray | None = None
    points: np.ndarray | None = None
    detected: np.ndarray | None = None

    _ARRAYS = ("images", "labels", "splits", "subjects", "sequences", "paths",
               "boxes", "points", "detected")

    def __post_init__(self) -> None:
        n = len(self.images)
        self.images = np.ascontiguousarray(self.images, dtype=np.uint8)
        if self.images.ndim != 3 or self.images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise DataError(f"{self.source or self.name}: images must be N x 48 x 48, got {self.images.shape}")
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.class_names = tuple(self.class_names)
        for attr in ("splits", "subjects", "sequences", "paths"):
            setattr(self, attr, np.asarray(getattr(self, attr), dtype=str))
        for attr in ("labels", "splits", "subjects", "sequences", "paths"):
            if len(getattr(self, attr)) != n:
                raise DataError(f"{self.source or self.name}: {attr} has {len(getattr(self, attr))} entries for {n} images")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise DataError(f"{self.source or self.name}: labels outside 0..{len(self.class_names) - 1}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def split_names(self) -> list[str]:
        """Split names in a stable order (Training, PublicTest, PrivateTest, Test, then others)."""
        order = {"Training": 0, "PublicTest": 1, "PrivateTest": 2, "Test": 3, "all": 4}
        return sorted(set(self.splits.tolist()), key=lambda s: (order.get(s, 9), s))

    @property
    def evaluation(self) -> str:
        """How the dataset is evaluated: "splits" when it has official splits (FER2013-like: a
        ``Training`` split, the others select and report), "folds" when it has none (CK+-like:
        subject-independent folds, :mod:`lkr.folds`)."""
        return "splits" if "Training" in self.split_names else "folds"

    @property
    def has_landmarks(self) -> bool:
        return self.points is not None

    def relative_paths(self) -> np.ndarray:
        """(N,) str: each image's path relative to the dataset's source, e.g.
        "test/angry/PrivateTest_10131363.jpg" — the same on every machine."""
        src = self.source
        return np.array([p[len(src):].lstrip(":/") if src and p.startswith(src) else p for p in self.paths.tolist()])

    def subset(self, index: np.ndarray | slice) -> "FaceDataset":
        """The images selected by a boolean mask or an index array, as a new dataset."""
        kw = {}
        for attr in self._ARRAYS:
            v = getattr(self, attr)
            kw[attr] = None if v is None else v[index]
        return replace(self, **kw, notes=list(self.notes))

    def split(self, name: str) -> "FaceDataset":
        """The images of one split."""
        if name not in self.split_names:
            raise DataError(f"{self.source or self.name}: no split {name!r} (has {', '.join(self.split_names)})")
        return self.subset(self.splits == name)

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class: {split: {class_name: count}}."""
        out: dict[str, dict[str, int]] = {}
        for s in self.split_names:
            lab = self.labels[self.splits == s]
            out[s] = {c: int((lab == i).sum()) for i, c in enumerate(self.class_names)}
        return out

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary: kind, counts per split and class, subjects and sequences."""
        subj = sorted(set(self.subjects.tolist()) - {""})
        seq = sorted(set(self.sequences.tolist()) - {""})
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "images": len(self),
            "classes": list(self.class_names),
            "splits": {s: int((self.splits == s).sum()) for s in self.split_names},
            "counts": self.counts(),
            "subjects": len(subj) if subj else None,
            "sequences": len(seq) if seq else None,
            "notes": list(self.notes),
        }
        if self.detected is not None:
            out["landmarks"] = {"detected": int(self.detected.sum()), "template": int((~self.detected).sum()),
                                "coverage": float(self.detected.mean()) if len(self) else 0.0}
        return out

    # --- persistence -------------------------------------------------------------------
    def save(self, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> None:
        """Write the dataset to an ``.npz`` file atomically (a kill never leaves half a file).

        Args:
            path: the ``.npz`` file.
            extra: JSON-able data stored beside the dataset (e.g. a cache key); read it back
                with :meth:`saved_extra`.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {a: getattr(self, a) for a in self._ARRAYS if getattr(self, a) is not None}
        meta = {"name": self.name, "kind": self.kind, "class_names": list(self.class_names),
                "source": self.source, "notes": self.notes}
        if extra is not None:
            meta["extra"] = extra
        atomic_write(path, lambda f: np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays))

    @staticmethod
    def saved_extra(path: str | os.PathLike) -> dict[str, Any] | None:
        """The ``extra`` data :meth:`save` stored in a file (None if none), without reading the arrays.

        Raises:
            DataError: if the file is unreadable or not a saved dataset.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                return json.loads(str(z["__meta__"])).get("extra")
        except Exception as e:  # corrupt, truncated, wrong format
            raise DataError(f"{path}: not a readable lkr dataset file ({type(e).__name__}: {e})") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FaceDataset":
        """Read a dataset written by :meth:`save`.

        Raises:
            DataError: if the file is unreadable or not a saved dataset.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["__meta__"]))
                arrays = {k: z[k] for k in z.files if k != "__meta__"}
        except Exception as e:  # corrupt, truncated, wrong format
            raise DataError(f"{path}: not a readable lkr dataset file ({type(e).__name__}: {e})") from None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in meta.items() if k in known}, **arrays)
