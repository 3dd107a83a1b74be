"""Dataset readers: every release of FER2013 and CK+ a user may have, read into one
:class:`~lkr.dataset.FaceDataset`.

:func:`load_dataset` looks at the path and picks the reader:

=============== ====================================================== =========== =============
path            layout                                                 name        kind
=============== ====================================================== =========== =============
``demo``        the built-in synthetic set (:mod:`lkr.demo`)           demo-...    demo
``*.csv``       Kaggle FER2013 CSV ``emotion,pixels,Usage``            fer2013     fer2013-csv
folder / .zip   holding such a CSV (and none of the layouts below)     fer2013     fer2013-csv
folder / .zip   FER2013 image release ``train|test/<class>/*.jpg``     fer2013     fer2013-folder
folder / .zip   full CK+ ``cohn-kanade-images/`` + ``Emotion/``        ckplus      ckplus-full
folder / .zip   CK+48 ``<class>/S###_###_########.png``                ckplus      ckplus48
=============== ====================================================== =========== =============

The dataset's folders may sit up to two levels down in the folder or archive (e.g.
``fer2013.zip:fer2013/train/...``). Images are ordered by path, so indices are stable.

FER2013:
    The CSV's emotion codes 0..6 are already :data:`~lkr.classes.FER2013_CLASSES` order; its
    ``Usage`` column is the split (Training, PublicTest, PrivateTest). A CSV without ``Usage``
    (e.g. Kaggle's challenge ``train.csv``), or with no Training row, is refused at once
    (:class:`~lkr.errors.MissingSplitError`): FER2013 is trained and reported on its official
    splits, and the kit makes up none. An image's path is ``"file.csv:row N"``, N
    being the CSV line number (the header is row 1, the first image row 2). In a folder or
    zip holding several CSVs (Kaggle's challenge download has ``icml_face_data.csv``,
    ``train.csv``, ``test.csv``) the first with emotion, pixels and Usage columns is read.
    In the image release the split is the file-name prefix ``Training_`` / ``PublicTest_`` /
    ``PrivateTest_``; images without one take it from their folder (``train/`` -> Training,
    ``test/`` -> one split ``"Test"``) and a note says so. Images are keyed by their full path:
    two file names occur in two classes.

CK+48:
    The 48x48 face crops of the last 3 frames of each labelled sequence; subject ``S010`` and
    sequence ``S010_004`` are taken from the file name ``S010_004_00000017.png``; one split
    ``"all"`` (folds are made by subject elsewhere).

Full CK+ (640x490 frames):
    Only labelled sequences (those with an ``Emotion/S###/###/*_emotion.txt``, codes
    :data:`~lkr.classes.CKPLUS_EMOTION_CODES`) are read, and of each only its last
    ``ck_frames`` frames (default 3, as in CK+48). Each frame is cropped to a 48x48 grayscale
    face like CK+48's: facenet-pytorch's MTCNN finds the face box (the largest face in the
    frame); the crop is the square centred on that box whose side is
    :data:`CK_CROP_SCALE` times the box's longer side (1.0: the box itself, made square on its
    longer side; MTCNN's box spans brows to chin, which matches CK+48's crops), padded with
    black where it leaves the frame, and resized to 48x48 (PIL bilinear, antialiased). Where
    MTCNN finds no face the centre square of the frame (side = the frame's shorter side) is
    used and a note counts those frames. Detection runs on the CPU: the full CK+ (981 frames
    at ck_frames=3) takes a minute or two once, then comes from the cache.

Decode cache:
    A decoded dataset is saved as an ``.npz`` (:meth:`FaceDataset.save`) in ``$LKR_CACHE_DIR``
    (default ``~/.cache/lkr``). Its key is the absolute source path, a fingerprint of the
    source (size and mtime of the file; of every file for a folder), the reader options and
    ``lkr.__version__``; the file name carries a hash of the key and the file stores the key
    itself, which must match exactly when read. An unreadable or mismatching cache file is
    ignored and rebuilt. ``use_cache=False`` neither reads nor writes the cache.

Bad input raises a :class:`~lkr.errors.DataError` with a one-line message naming the file
or row: :class:`~lkr.errors.NotADatasetError` (no such path, or not a layout above),
:class:`~lkr.errors.BadImageError` (an unreadable image, or one not 48x48 in CK+48 / FER2013),
:class:`~lkr.errors.BadRowError` (a bad CSV row, e.g. an unknown Usage, or CK+ emotion file),
:class:`~lkr.errors.MissingClassError` (a missing or empty class folder),
:class:`~lkr.errors.MissingSplitError` (a FER2013 CSV without its official splits). With
``skip_bad=True`` bad items (images, rows, emotion files, labelled sequences without frames)
are skipped and a note counts them; a missing or empty class folder is still an error, since
it changes the label space every result depends on.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Collection, TextIO

import numpy as np
from PIL import Image, UnidentifiedImageError

import lkr
from lkr.classes import CKPLUS_CLASSES, CKPLUS_EMOTION_CODES, FER2013_CLASSES, canonical
from lkr.dataset import IMAGE_SIZE, FaceDataset
from lkr.errors import (BadImageError, BadRowError, DataError, MissingClassError,
                        MissingSplitError, NotADatasetError)

CK_CROP_SCALE = 1.0
"""Side of the CK+ face crop as a multiple of the longer side of MTCNN's face box."""
CK_MIN_FACE = 80
"""MTCNN's smallest face in pixels for full CK+ frames (faces there are about 200-300 px)."""

FER_SPLITS = ("Training", "PublicTest", "PrivateTest")
FER_PIXELS = IMAGE_SIZE * IMAGE_SIZE
IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".webp"})
# Folder names the releases use, for messages.
_FER_FOLDER = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happiness": "happy",
               "sadness": "sad", "surprise": "surprise", "neutral": "neutral"}
_CK48_FOLDER = {"anger": "anger", "disgust": "disgust", "fear": "fear", "happiness": "happy",
                "sadness": "sadness", "surprise": "surprise", "contempt": "contempt"}
_CK_NAME = re.compile(r"^(S\d+)_(\d+)_(\d+)\.[A-Za-z]+$")
_CACHE_FORMAT = 2  # 2: a FER2013 CSV without Usage is an error (1 cached it as split "all")


# --- entry point -----------------------------------------------------------------------------
def load_dataset(path: str | os.PathLike, *, skip_bad: bool = False, use_cache: bool = True,
                 ck_frames: int = 3, splits: Collection[str] | None = None) -> FaceDataset:
    """Read a dataset in any supported form (see the module docstring).

    Args:
        path: a FER2013 ``.csv``, a folder or ``.zip`` of the FER2013 image release, of CK+48
            or of the full CK+ release; or ``"demo"`` / ``"demo-ckplus"`` for the built-in set.
        skip_bad: skip unreadable items (noted in ``ds.notes``) instead of raising.
        use_cache: read and write the decode cache.
        ck_frames: full CK+ only: how many of each labelled sequence's last frames to take (>= 1).
        splits: only the images of these splits (e.g. ``{"PrivateTest"}`` for ``lkr evaluate``):
            FER2013's files of other splits are not decoded (its CSV's rows of other splits not
            parsed), and the whole dataset's decode cache is used when present. None: all.
            Data without such splits (CK+) is read whole.

    Returns:
        The dataset: images (N, 48, 48) uint8 in 0..255, ordered by source path.

    Raises:
        NotADatasetError, BadImageError, BadRowError, MissingClassError, MissingSplitError: see
            the module docstring.
    """
    if isinstance(path, str) and path in ("demo", "demo-ckplus"):
        from lkr.demo import make_demo  # lazy: the demo renderer is not needed otherwise

        return make_demo("fer2013" if path == "demo" else "ckplus")
    if ck_frames < 1:
        raise ValueError(f"ck_frames must be >= 1, got {ck_frames}")
    p = Path(path).expanduser()
    if not p.exists():
        raise NotADatasetError(f"{path}: no such file or folder")
    p = p.resolve()
    if not use_cache:
        return _subset(_read_source(p, skip_bad=skip_bad, ck_frames=ck_frames, splits=splits), splits)
    key = _cache_key(p, skip_bad=skip_bad, ck_frames=ck_frames)
    cache = _cache_file(p, key)
    ds = _read_cache(cache, key)
    if ds is not None:
        return _subset(ds, splits)
    if splits is not None:  # a part: its own cache, the whole one is left to a whole read
        part_key = {**key, "splits": sorted(splits)}
        part_cache = _cache_file(p, part_key)
        part = _read_cache(part_cache, part_key)
        if part is not None:
            return part
        try:
            part = _read_source(p, skip_bad=skip_bad, ck_frames=ck_frames, splits=splits)
        except DataError:  # e.g. a CSV with no row of these splits: the whole read says what is wrong
            part = None
        if part is not None and np.isin(part.splits, list(splits)).any():
            part = _subset(part, splits)
            try:
                part.save(part_cache, extra=part_key)
            except OSError:
                pass
            return part
        if part is not None and not np.isin(part.splits, list(splits)).any():
            ds = part  # data without these splits (CK+) was read whole: cached as the whole
        else:
            ds = _read_source(p, skip_bad=skip_bad, ck_frames=ck_frames)
    else:
        ds = _read_source(p, skip_bad=skip_bad, ck_frames=ck_frames)
    try:
        ds.save(cache, extra=key)
    except OSError:  # a read-only or full cache folder only costs speed
        pass
    return ds


def _subset(ds: FaceDataset, splits: Collection[str] | None) -> FaceDataset:
    """The images of ``splits`` (all when None, or when the data has none of them: CK+)."""
    if splits is None:
        return ds
    keep = np.isin(ds.splits, list(splits))
    return ds if keep.all() or not keep.any() else ds.subset(np.flatnonzero(keep))


def _starts_like_zip(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _read_source(p: Path, *, skip_bad: bool, ck_frames: int, splits: Collection[str] | None = None) -> FaceDataset:
    """Decode ``p`` (an existing absolute path) with the reader its layout calls for; FER2013's
    images of other splits than ``splits`` (when given) are not decoded."""
    if p.is_file() and p.suffix.lower() == ".csv":
        with open(p, newline="", encoding="utf-8-sig") as f:
            return _read_fer_csv(f, str(p), str(p), skip_bad, splits)
    if p.is_file() and not zipfile.is_zipfile(p):
        if p.suffix.lower() == ".zip" or _starts_like_zip(p):
            raise NotADatasetError(f"{p}: damaged zip archive, it cannot be opened (truncated or not a zip); "
                                   "copy or download it again")
        raise NotADatasetError(f"{p}: not a dataset (expected a FER2013 .csv, a .zip or a folder)")
    tree = _Tree(p)
    try:
        layout, root = _detect_layout(tree)
        bad = _Bad(skip_bad)
        if layout == "fer2013-csv":
            with tree.open_text(root) as f:
                return _read_fer_csv(f, tree.where(root), str(p), skip_bad, splits)
        if layout == "ckplus-full":
            ds = _read_ckplus_full(tree, bad, ck_frames)
        elif layout == "fer2013-folder":
            ds = _read_fer_folder(tree, root, bad, splits)
        else:
            ds = _read_ckplus48(tree, root, bad)
    finally:
        tree.close()
    ds.notes.extend(tree.notes())
    ds.notes.extend(bad.notes())
    return ds


# --- cache -----------------------------------------------------------------------------------
def cache_dir() -> Path:
    """The decode cache folder: ``$LKR_CACHE_DIR`` or ``~/.cache/lkr``."""
    return Path(os.environ.get("LKR_CACHE_DIR") or Path.home() / ".cache" / "lkr")


def cache_path_for(path: str | os.PathLike, *, skip_bad: bool = False, ck_frames: int = 3) -> Path:
    """The cache file :func:`load_dataset` uses for ``path`` with these options.

    Raises:
        NotADatasetError: if ``path`` does not exist.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise NotADatasetError(f"{path}: no such file or folder")
    p = p.resolve()
    return _cache_file(p, _cache_key(p, skip_bad=skip_bad, ck_frames=ck_frames))


def _fingerprint(p: Path) -> str:
    """Size and mtime of a file; for a folder a hash over every file's path, size and mtime."""
    if p.is_file():
        st = p.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(p):
        dirnames.sort()
        for name in sorted(filenames):
            f = Path(dirpath, name)
            try:
                st = f.stat()
            except OSError:
                continue
            h.update(f"{f.relative_to(p).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _cache_key(p: Path, *, skip_bad: bool, ck_frames: int) -> dict[str, Any]:
    return {"format": _CACHE_FORMAT, "version": lkr.__version__, "source": str(p),
            "fingerprint": _fingerprint(p), "skip_bad": bool(skip_bad), "ck_frames": int(ck_frames)}


def _cache_file(p: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    stem = re.sub(r"[^A-Za-z0-9_.+-]", "_", p.name) or "dataset"
    return cache_dir() / f"{stem}-{digest}.npz"


def _read_cache(cache: Path, key: dict[str, Any]) -> FaceDataset | None:
    """The cached dataset, or None when absent, unreadable or written under another key."""
    if not cache.is_file():
        return None
    try:
        if FaceDataset.saved_extra(cache) != key:
            return None
        return FaceDataset.load(cache)
    except DataError:  # corrupt, truncated, or arrays that fail FaceDataset's checks
        return None


# --- files of a folder or a zip --------------------------------------------------------------
class _Tree:
    """The files of a folder or a zip archive, by relative POSIX path, read without reopening."""

    _JUNK = {"thumbs.db", "desktop.ini"}

    def __init__(self, p: Path):
        self.root = p
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, str] = {}
        self.files: dict[str, list[str]] = {}  # folder -> sorted file paths directly in it
        self.dirs: dict[str, list[str]] = {}  # folder -> sorted names of its sub-folders
        self.ignored: list[str] = []  # non-image files inside dataset folders (filled by readers)
        paths: list[str] = []
        dirs: set[str] = {""}
        if p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if not self._skip(d))
                rel = Path(dirpath).relative_to(p).as_posix()
                rel = "" if rel == "." else rel
                dirs.update(_join(rel, d) for d in dirnames)
                paths.extend(_join(rel, f) for f in filenames if not self._skip(f))
        else:
            try:
                self._zip = zipfile.ZipFile(p)
                infos = self._zip.infolist()
            except (zipfile.BadZipFile, OSError) as e:
                raise NotADatasetError(f"{p}: not a readable zip archive ({e})") from None
            for info in infos:
                name = info.filename.replace("\\", "/").strip("/")
                parts = name.split("/")
                if not name or any(self._skip(x) for x in parts):
                    continue
                if info.is_dir():
                    dirs.add(name)
                else:
                    self._members[name] = info.filename
                    paths.append(name)
        for f in paths:  # parents of every file are folders too (zips may omit their entries)
            parent = _parent(f)
            while parent not in dirs:
                dirs.add(parent)
                parent = _parent(parent)
        for d in dirs:
            self.dirs.setdefault(d, [])
            if d:
                self.dirs.setdefault(_parent(d), []).append(PurePosixPath(d).name)
        for f in sorted(paths):
            self.files.setdefault(_parent(f), []).append(f)
        for v in self.dirs.values():
            v.sort()

    @classmethod
    def _skip(cls, name: str) -> bool:
        return name.startswith(".") or name == "__MACOSX" or name.lower() in cls._JUNK

    def where(self, rel: str) -> str:
        """A file's path for messages and ``FaceDataset.paths``: ``archive.zip:member`` or a
        path; a folder's ends in ``/``."""
        if not rel:
            return str(self.root)
        if rel in self.dirs:
            return f"{self.root}:{rel}/" if self._zip is not None else f"{self.root / rel}/"
        if self._zip is not None:
            return f"{self.root}:{self._members.get(rel, rel)}"
        return str(self.root / rel)

    def read(self, rel: str) -> bytes:
        """The bytes of one file.

        Raises:
            BadImageError: if the file or archive member cannot be read.
        """
        try:
            if self._zip is not None:
                return self._zip.read(self._members[rel])
            return (self.root / rel).read_bytes()
        except Exception as e:  # CRC error, truncated archive, vanished file
            raise BadImageError(f"{self.where(rel)}: unreadable ({type(e).__name__}: {e})") from None

    def open_text(self, rel: str) -> TextIO:
        """A text file (UTF-8, BOM dropped) opened for the csv module."""
        if self._zip is not None:
            return io.TextIOWrapper(self._zip.open(self._members[rel]), encoding="utf-8-sig", newline="")
        return open(self.root / rel, encoding="utf-8-sig", newline="")

    def images_in(self, folder: str) -> list[str]:
        """Image files directly in ``folder``, sorted; other files are recorded as ignored."""
        out = []
        for f in self.files.get(folder, []):
            (out if PurePosixPath(f).suffix.lower() in IMAGE_EXTS else self.ignored).append(f)
        return out

    def notes(self) -> list[str]:
        if not self.ignored:
            return []
        first = self.where(self.ignored[0])
        return [f"ignored {len(self.ignored)} files that are not images (first: {first})"]

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _join(a: str, b: str) -> str:
    return f"{a}/{b}" if a else b


def _depth(rel: str) -> int:
    return rel.count("/") + 1 if rel else 0


def _parent(rel: str) -> str:
    return rel.rsplit("/", 1)[0] if "/" in rel else ""


def _detect_layout(tree: _Tree) -> tuple[str, str]:
    """(kind, root folder) of the shallowest dataset layout in the tree (root at most 2 deep)."""
    for root in sorted((d for d in tree.dirs if _depth(d) <= 2), key=lambda d: (_depth(d), d)):
        subs = {s.lower() for s in tree.dirs[root]}
        if "cohn-kanade-images" in subs:
            return "ckplus-full", root
        if subs & {"train", "test"}:
            return "fer2013-folder", root
        if subs and all(_canonical_or_none(s) for s in subs) and any(
                _CK_NAME.match(PurePosixPath(f).name)
                for s in tree.dirs[root] for f in tree.files.get(_join(root, s), [])):
            return "ckplus48", root
    csv_file = _fer_csv_in(tree)
    if csv_file is not None:
        return "fer2013-csv", csv_file
    raise NotADatasetError(
        f"{tree.root}: no dataset found (expected a FER2013 train/ and test/ folder, CK+48 class "
        "folders of S###_###_########.png, or CK+'s cohn-kanade-images/ and Emotion/)")


def _fer_csv_in(tree: _Tree) -> str | None:
    """A FER2013 CSV in the tree (at most 3 deep): the first whose header has emotion, pixels
    and Usage, else the first with emotion and pixels (e.g. Kaggle's icml_face_data.csv)."""
    best: tuple[int, str] | None = None
    for folder, files in sorted(tree.files.items()):
        for f in files:
            if _depth(f) > 3 or not f.lower().endswith(".csv"):
                continue
            try:
                with tree.open_text(f) as fh:
                    cols = {c.strip().lower() for c in next(csv.reader(fh), [])}
            except (OSError, UnicodeDecodeError, csv.Error, zipfile.BadZipFile):
                continue
            score = ({"emotion", "pixels"} <= cols) + ({"emotion", "pixels", "usage"} <= cols)
            if score and (best is None or score > best[0]):
                best = (score, f)
    return best[1] if best else None


def _canonical_or_none(name: str) -> str | None:
    try:
        return canonical(name)
    except KeyError:
        return None


def _class_folders(tree: _Tree, folder: str, classes: tuple[str, ...],
                   release: dict[str, str]) -> dict[str, str]:
    """Map each of ``classes`` to its non-empty sub-folder of ``folder``.

    Raises:
        DataError: a sub-folder that is no class of this dataset, or two for one class.
        MissingClassError: a class without a folder, or with no images in it.
    """
    found: dict[str, str] = {}
    for name in tree.dirs.get(folder, []):
        c = _canonical_or_none(name)
        rel = _join(folder, name)
        if c not in classes:
            raise DataError(f"{tree.where(rel)}: not a class folder of this dataset "
                            f"(expected {', '.join(release[k] for k in classes)})")
        if c in found:
            raise DataError(f"{tree.where(rel)}: a second folder for class {c} (also {found[c]})")
        found[c] = rel
    for c in classes:
        if c not in found:
            raise MissingClassError(f"{tree.where(folder)}: no class folder {release[c]}/ ({c})")
        if not any(PurePosixPath(f).suffix.lower() in IMAGE_EXTS for f in tree.files.get(found[c], [])):
            raise MissingClassError(f"{tree.where(found[c])}: class folder has no images")
    return found


# --- decoding --------------------------------------------------------------------------------
class _Bad:
    """Collects skipped items when ``skip_bad`` is on; re-raises otherwise."""

    def __init__(self, skip: bool):
        self.skip = skip
        self.messages: list[str] = []

    def __call__(self, err: DataError) -> None:
        if not self.skip:
            raise type(err)(f"{err}; --skip-bad (skip_bad=True) skips unreadable items and goes on") from None
        self.messages.append(str(err))

    def notes(self) -> list[str]:
        if not self.messages:
            return []
        return [f"skipped {len(self.messages)} unreadable items (first: {self.messages[0]})"]


def _open_image(data: bytes, where: str) -> Image.Image:
    """Decode image bytes fully into a grayscale PIL image.

    Raises:
        BadImageError: if the bytes are no complete image.
    """
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
        return im if im.mode == "L" else im.convert("L")
    except UnidentifiedImageError:
        raise BadImageError(f"{where}: unreadable image (not a known image format)") from None
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError...
        raise BadImageError(f"{where}: unreadable image ({e})") from None


def _decode48(data: bytes, where: str) -> np.ndarray:
    """A 48x48 release image as a (48, 48) uint8 array.

    Raises:
        BadImageError: if unreadable or of another size.
    """
    im = _open_image(data, where)
    if im.size != (IMAGE_SIZE, IMAGE_SIZE):
        raise BadImageError(f"{where}: image is {im.size[0]}x{im.size[1]}, expected 48x48")
    return np.asarray(im, dtype=np.uint8)


def _decode_all(tree: _Tree, items: list[tuple[str, ...]], bad: _Bad,
                decode: Callable[[bytes, str], np.ndarray]) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Decode the first field (relative path) of each item; returns images and the kept items."""
    images, kept = [], []
    for item in items:
        try:
            images.append(decode(tree.read(item[0]), tree.where(item[0])))
            kept.append(item)
        except DataError as e:
            bad(e)
    if not images:
        raise DataError(f"{tree.root}: no readable images")
    return np.stack(images), kept


# --- FER2013 ---------------------------------------------------------------------------------
def _read_fer_csv(f: TextIO, where: str, source: str, skip_bad: bool,
                  wanted: Collection[str] | None = None) -> FaceDataset:
    """Read a FER2013 CSV from an open text file; ``where`` names it in paths and messages. With
    ``wanted`` (splits), rows of other splits are not parsed (the Training check is left to a whole read)."""
    bad = _Bad(skip_bad)
    images, labels, splits, paths = [], [], [], []
    notes: list[str] = []
    try:
        reader = csv.reader(f)
        header = next(reader, None) or []
        cols = [h.strip().lower() for h in header]
        if "emotion" not in cols or "pixels" not in cols:
            raise NotADatasetError(f"{where}: not a FER2013 CSV (header {','.join(header)[:80]!r}, "
                                   "expected emotion,pixels,Usage)")
        ie, ip = cols.index("emotion"), cols.index("pixels")
        if "usage" not in cols:
            # Without its splits FER2013 can be neither trained nor reported as in the paper
            # (and would pass as fold data, to fail only after minutes of landmark detection).
            raise MissingSplitError(
                f"{where}: no Usage column (header {','.join(header)[:80]!r}); FER2013 needs its "
                f"official splits ({', '.join(FER_SPLITS)}) in a Usage column, as in fer2013.csv "
                "or Kaggle's icml_face_data.csv")
        iu = cols.index("usage")
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            n = reader.line_num
            if wanted is not None and len(row) > iu and row[iu].strip() not in wanted:
                continue
            try:
                image, label, split = _parse_fer_row(row, ie, ip, iu, f"{where} row {n}")
            except BadRowError as e:
                bad(e)
                continue
            images.append(image)
            labels.append(label)
            splits.append(split)
            paths.append(f"{where}:row {n}")
    except (UnicodeDecodeError, csv.Error, zipfile.BadZipFile, OSError) as e:
        raise NotADatasetError(f"{where}: not a readable CSV ({type(e).__name__}: {e})") from None
    if not images:
        raise DataError(f"{where}: no image rows")
    if "Training" not in splits and wanted is None:
        raise MissingSplitError(
            f"{where}: no Training rows (Usage holds only {', '.join(sorted(set(splits)))}); FER2013 "
            f"needs its official splits ({', '.join(FER_SPLITS)}) in a Usage column")
    n = len(images)
    return FaceDataset(name="fer2013", kind="fer2013-csv", images=np.stack(images), labels=labels,
                       class_names=FER2013_CLASSES, splits=splits, subjects=[""] * n,
                       sequences=[""] * n, paths=paths, source=source, notes=notes + bad.notes())


def _parse_fer_row(row: list[str], ie: int, ip: int, iu: int | None,
                   where: str) -> tuple[np.ndarray, int, str]:
    """One CSV row as ((48, 48) uint8 image, label 0..6, split).

    Raises:
        BadRowError: missing columns, a bad label, bad pixels or an unknown Usage.
    """
    need = max(ie, ip, iu if iu is not None else 0) + 1
    if len(row) < need:
        raise BadRowError(f"{where}: {len(row)} columns, expected {need}")
    code = row[ie].strip()
    if not (code.isascii() and code.isdigit() and int(code) < len(FER2013_CLASSES)):
        raise BadRowError(f"{where}: unknown emotion label {code[:20]!r} (expected 0..6)")
    values = row[ip].split()
    if len(values) != FER_PIXELS:
        raise BadRowError(f"{where}: {len(values)} pixels, expected {FER_PIXELS}")
    try:
        pixels = np.array(values, dtype=np.int64)
    except ValueError:
        first = next((v for v in values if not (v.isascii() and v.lstrip("+-").isdigit())), values[0])
        raise BadRowError(f"{where}: pixel {first[:20]!r} is not an integer 0..255") from None
    if pixels.min() < 0 or pixels.max() > 255:
        raise BadRowError(f"{where}: pixel values outside 0..255")
    split = "all"
    if iu is not None:
        split = row[iu].strip()
        if split not in FER_SPLITS:
            raise BadRowError(f"{where}: unknown Usage {split[:20]!r} (FER2013's official splits are "
                              "Training, PublicTest and PrivateTest)")
    return pixels.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE), int(code), split


def _read_fer_folder(tree: _Tree, root: str, bad: _Bad, splits: Collection[str] | None = None) -> FaceDataset:
    items: list[tuple[str, ...]] = []  # (path, label, split)
    unprefixed = 0
    notes: list[str] = []
    subs = {s.lower(): s for s in tree.dirs[root]}
    for key, fallback in (("train", "Training"), ("test", "Test")):
        if key not in subs:
            notes.append(f"no {key}/ folder in {tree.where(root)}")
            continue
        folders = _class_folders(tree, _join(root, subs[key]), FER2013_CLASSES, _FER_FOLDER)
        for c, folder in folders.items():
            for f in tree.images_in(folder):
                prefix = PurePosixPath(f).name.split("_", 1)[0]
                split = prefix if prefix in FER_SPLITS else fallback
                unprefixed += prefix not in FER_SPLITS
                items.append((f, str(FER2013_CLASSES.index(c)), split))
    for other in sorted(set(subs) - {"train", "test"}):
        notes.append(f"ignored folder {tree.where(_join(root, subs[other]))}")
    if unprefixed:
        notes.append(f"{unprefixed} images have no Training_/PublicTest_/PrivateTest_ file-name prefix: "
                     "their split is their folder (train/ -> Training, test/ -> Test)")
    items.sort()
    if splits is not None and any(i[2] in splits for i in items):
        items = [i for i in items if i[2] in splits]  # the other splits' files are not decoded
    images, kept = _decode_all(tree, items, bad, _decode48)
    n = len(kept)
    return FaceDataset(name="fer2013", kind="fer2013-folder", images=images,
                       labels=[int(i[1]) for i in kept], class_names=FER2013_CLASSES,
                       splits=[i[2] for i in kept], subjects=[""] * n, sequences=[""] * n,
                       paths=[tree.where(i[0]) for i in kept], source=str(tree.root), notes=notes)


# --- CK+ -------------------------------------------------------------------------------------
def _read_ckplus48(tree: _Tree, root: str, bad: _Bad) -> FaceDataset:
    items: list[tuple[str, ...]] = []  # (path, label, subject, sequence)
    for c, folder in _class_folders(tree, root, CKPLUS_CLASSES, _CK48_FOLDER).items():
        for f in tree.images_in(folder):
            m = _CK_NAME.match(PurePosixPath(f).name)
            if m is None:
                bad(DataError(f"{tree.where(f)}: file name is not S###_###_########.png (no subject id)"))
                continue
            items.append((f, str(CKPLUS_CLASSES.index(c)), m[1], f"{m[1]}_{m[2]}"))
    items.sort()
    images, kept = _decode_all(tree, items, bad, _decode48)
    return FaceDataset(name="ckplus", kind="ckplus48", images=images,
                       labels=[int(i[1]) for i in kept], class_names=CKPLUS_CLASSES,
                       splits=["all"] * len(kept), subjects=[i[2] for i in kept],
                       sequences=[i[3] for i in kept], paths=[tree.where(i[0]) for i in kept],
                       source=str(tree.root))


def _shallowest(tree: _Tree, name: str) -> str | None:
    found = [d for d in tree.dirs if PurePosixPath(d).name.lower() == name and _depth(d) <= 3]
    return min(found, key=lambda d: (_depth(d), d)) if found else None


def _read_emotion(tree: _Tree, rel: str) -> int:
    """The class index (into CKPLUS_CLASSES) in one CK+ ``*_emotion.txt``.

    Raises:
        BadRowError: if the file holds no code 1..7.
    """
    text = tree.read(rel).decode("ascii", "replace").strip()
    try:
        code = float(text.split()[0])
    except (ValueError, IndexError):
        code = -1.0
    if code != int(code) or int(code) not in CKPLUS_EMOTION_CODES:
        raise BadRowError(f"{tree.where(rel)}: not a CK+ emotion code 1..7 ({text[:20]!r})")
    return CKPLUS_CLASSES.index(CKPLUS_EMOTION_CODES[int(code)])


def _read_ckplus_full(tree: _Tree, bad: _Bad, ck_frames: int) -> FaceDataset:
    img_root = _shallowest(tree, "cohn-kanade-images")
    emo_root = _shallowest(tree, "emotion")
    if emo_root is None:
        raise NotADatasetError(f"{tree.where(img_root or '')}: CK+ images without the Emotion/ label folder")
    items: list[tuple[str, ...]] = []  # (frame path, label, subject, sequence)
    for subject in tree.dirs[emo_root]:
        for seq in tree.dirs[_join(emo_root, subject)]:
            label_files = [f for f in tree.files.get(f"{emo_root}/{subject}/{seq}", [])
                           if f.endswith("_emotion.txt")]
            if not label_files:  # an unlabelled sequence
                continue
            try:
                label = _read_emotion(tree, label_files[-1])
                frames = tree.images_in(f"{img_root}/{subject}/{seq}")
                if not frames:
                    raise DataError(f"{tree.where(label_files[-1])}: labelled sequence has no frames "
                                    f"in {tree.where(f'{img_root}/{subject}/{seq}')}")
            except DataError as e:
                bad(e)
                continue
            items.extend((f, str(label), subject, f"{subject}_{seq}") for f in frames[-ck_frames:])
    if not items:
        raise DataError(f"{tree.root}: no labelled CK+ sequences with frames")
    items.sort()
    misses: list[str] = []

    def crop(data: bytes, where: str) -> np.ndarray:
        face, found = crop_face(_open_image(data, where))
        if not found:
            misses.append(where)
        return face

    images, kept = _decode_all(tree, items, bad, crop)
    labels = [int(i[1]) for i in kept]
    notes = []
    if misses:
        notes.append(f"no face found by MTCNN in {len(misses)} frames, centre crop used (first: {misses[0]})")
    absent = [c for k, c in enumerate(CKPLUS_CLASSES) if k not in labels]
    if absent:
        notes.append(f"no images of class {', '.join(absent)}")
    return FaceDataset(name="ckplus", kind="ckplus-full", images=images, labels=labels,
                       class_names=CKPLUS_CLASSES, splits=["all"] * len(kept),
                       subjects=[i[2] for i in kept], sequences=[i[3] for i in kept],
                       paths=[tree.where(i[0]) for i in kept], source=str(tree.root), notes=notes)


_DETECTOR = None


def _detector() -> Any:
    """One MTCNN on the CPU, made on first use (importing torch is slow)."""
    global _DETECTOR
    if _DETECTOR is None:
        from facenet_pytorch import MTCNN

        _DETECTOR = MTCNN(device="cpu", min_face_size=CK_MIN_FACE, select_largest=True)
    return _DETECTOR


def crop_face(frame: Image.Image, scale: float = CK_CROP_SCALE) -> tuple[np.ndarray, bool]:
    """A CK+48-like 48x48 face crop of a full-size grayscale frame.

    Args:
        frame: a PIL image of any size and mode (e.g. a 640x490 CK+ frame).
        scale: crop side as a multiple of the longer side of MTCNN's face box.

    Returns:
        ((48, 48) uint8 image, True) cropped around the largest face MTCNN finds, or the
        frame's centre square and False when it finds none.
    """
    gray = frame if frame.mode == "L" else frame.convert("L")
    boxes, _ = _detector().detect(gray.convert("RGB"))
    w, h = gray.size
    if boxes is None or len(boxes) == 0:
        side = min(w, h)  # the centre square
        face, _ = square_crop(gray, (w / 2 - side / 2, h / 2 - side / 2, w / 2 + side / 2, h / 2 + side / 2), 1.0)
        return face, False
    face, _ = square_crop(gray, boxes[0], scale)  # largest face first
    return face, True


def square_crop(gray: Image.Image, box: Any, scale: float = CK_CROP_SCALE
                ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The 48x48 face crop of :func:`crop_face` around a given face box.

    The crop is the square centred on ``box`` whose side is ``scale`` times the box's longer
    side, rounded to whole pixels, padded with black where it leaves the image, and resized to
    48x48 (PIL bilinear, antialiased).

    Args:
        gray: a grayscale ("L") PIL image of any size.
        box: x1, y1, x2, y2 of the face in ``gray``'s pixel coordinates (e.g. MTCNN's box).
        scale: crop side as a multiple of the longer side of ``box``.

    Returns:
        ((48, 48) uint8 face, (X1, Y1, X2, Y2) the integer crop region in ``gray``'s pixels).
    """
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)[:4]
    cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, scale * max(x2 - x1, y2 - y1)
    region = tuple(int(round(v)) for v in (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
    face = gray.crop(region).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)  # black outside
    return np.asarray(face, dtype=np.uint8), region
