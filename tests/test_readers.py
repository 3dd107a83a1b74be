"""Dataset readers: real FER2013 / CK+48 archives, and small releases written by the tests in
every supported form, every kind of bad input, and the decode cache."""

from __future__ import annotations

import importlib.util
import io
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lkr
from lkr import readers
from lkr.classes import CKPLUS_CLASSES, FER2013_CLASSES
from lkr.dataset import FaceDataset
from lkr.errors import (BadImageError, BadRowError, DataError, MissingClassError, MissingSplitError,
                        NotADatasetError)
from lkr.readers import cache_path_for, load_dataset

FER_FOLDERS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
FER_CANON = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
             "neutral": "neutral", "sad": "sadness", "surprise": "surprise"}
CK48_FOLDERS = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")

# /work/shared/data/README.md, per class in FER_FOLDERS order.
FER_COUNTS = {
    "Training": (3995, 436, 4097, 7215, 4965, 4830, 3171),
    "PublicTest": (467, 56, 496, 895, 607, 653, 415),
    "PrivateTest": (491, 55, 528, 879, 626, 594, 416),
}
CK48_COUNTS = {"anger": 135, "contempt": 54, "disgust": 177, "fear": 75, "happy": 207,
               "sadness": 84, "surprise": 249}


# --- helpers ---------------------------------------------------------------------------------
def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _jpg(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a.astype(np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _face(seed: int, size: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _zip_dir(folder: Path, out: Path, prefix: str = "") -> Path:
    """Pack a folder's files into a zip, under an optional top folder."""
    with zipfile.ZipFile(out, "w") as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, prefix + f.relative_to(folder).as_posix())
    return out


def make_fer_folder(root: Path, *, prefixes: bool = True, per_class: int = 2,
                    omit: str | None = None) -> Path:
    """A FER2013 image release: train/ holds Training_, test/ PublicTest_ and PrivateTest_."""
    k = 0
    for split_dir, names in (("train", ["Training"]), ("test", ["PublicTest", "PrivateTest"])):
        for c in FER_FOLDERS:
            if c == omit:
                continue
            for prefix in names:
                for i in range(per_class):
                    k += 1
                    name = f"{prefix}_{1000 + k}.png" if prefixes else f"im{k}.png"
                    _write(root / split_dir / c / name, _png(_face(k)))
    return root


def make_ck48_folder(root: Path, *, omit: str | None = None) -> Path:
    """CK+48: one 3-frame sequence per class, two subjects."""
    for i, c in enumerate(CK48_FOLDERS):
        if c == omit:
            continue
        subject = f"S{10 + i % 2:03d}"
        for frame in (7, 8, 9):
            _write(root / c / f"{subject}_{i + 1:03d}_{frame:08d}.png", _png(_face(100 * i + frame)))
    return root


def make_fer_csv(path: Path, rows: list[tuple[str, str, str]] | None = None, usage: bool = True) -> Path:
    """A Kaggle-style CSV; default rows: one image of each Usage with labels 0, 3, 6."""
    if rows is None:
        rows = [(str(lab), " ".join(map(str, _face(lab).ravel())), u)
                for lab, u in ((0, "Training"), (3, "PublicTest"), (6, "PrivateTest"))]
    lines = ["emotion,pixels,Usage" if usage else "emotion,pixels"]
    lines += [f"{e},{p},{u}" if usage else f"{e},{p}" for e, p, u in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- real FER2013 ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def fer(fer2013_zip) -> FaceDataset:
    return load_dataset(fer2013_zip)


def test_fer2013_zip_counts(fer):
    assert (fer.name, fer.kind, len(fer)) == ("fer2013", "fer2013-folder", 35887)
    assert fer.class_names == FER2013_CLASSES
    assert fer.split_names == ["Training", "PublicTest", "PrivateTest"]
    counts = fer.counts()
    for split, per_class in FER_COUNTS.items():
        assert counts[split] == {FER_CANON[c]: n for c, n in zip(FER_FOLDERS, per_class)}
    assert fer.notes == []
    assert set(fer.subjects) == {""} and set(fer.sequences) == {""}


def test_fer2013_names_in_two_classes(fer):
    for name in ("Training_8475486.jpg", "Training_52789098.jpg"):
        idx = [i for i, p in enumerate(fer.paths) if p.endswith("/" + name)]
        assert len(idx) == 2
        assert len({int(fer.labels[i]) for i in idx}) == 2


def test_fer2013_pixels_match_pil(fer, fer2013_zip):
    assert fer.images.dtype == np.uint8 and fer.images.shape == (35887, 48, 48)
    assert 110 < fer.images.mean() < 145
    assert list(fer.paths) == sorted(fer.paths)
    with zipfile.ZipFile(fer2013_zip) as z:
        for i in (0, 1234, 20000, 35886):
            archive, member = fer.paths[i].rsplit(":", 1)
            assert archive == str(fer2013_zip.resolve())
            expected = np.asarray(Image.open(io.BytesIO(z.read(member))))
            np.testing.assert_array_equal(fer.images[i], expected)
            folder_class = member.split("/")[1]
            assert fer.class_names[fer.labels[i]] == FER_CANON[folder_class]
            assert member.split("/")[2].startswith(fer.splits[i] + "_")


def test_fer2013_second_load_uses_cache(fer, fer2013_zip, monkeypatch):
    assert cache_path_for(fer2013_zip).is_file()
    monkeypatch.setattr(readers, "_read_source", _no_decoding)
    again = load_dataset(fer2013_zip)
    assert np.array_equal(again.images, fer.images) and np.array_equal(again.paths, fer.paths)


def _no_decoding(*a, **k):
    raise AssertionError("decoded although the cache should have been used")


# --- real CK+48 ------------------------------------------------------------------------------
def test_ckplus48_zip(ckplus48_zip):
    ds = load_dataset(ckplus48_zip)
    assert (ds.name, ds.kind, len(ds), ds.split_names) == ("ckplus", "ckplus48", 981, ["all"])
    assert ds.class_names == CKPLUS_CLASSES
    s = ds.summary()
    assert (s["subjects"], s["sequences"]) == (118, 327)
    assert ds.counts()["all"] == {("happiness" if c == "happy" else c): n for c, n in CK48_COUNTS.items()}
    _, per_seq = np.unique(ds.sequences, return_counts=True)
    assert set(per_seq.tolist()) == {3}
    i = int(np.flatnonzero(ds.sequences == "S010_004")[0])
    assert ds.subjects[i] == "S010" and ds.paths[i].endswith("CK+48/anger/S010_004_00000017.png")
    assert ds.class_names[ds.labels[i]] == "anger"


# --- FER2013 CSV -----------------------------------------------------------------------------
def test_csv_three_usages(tmp_path):
    p = make_fer_csv(tmp_path / "fer.csv")
    ds = load_dataset(p)
    assert (ds.name, ds.kind, len(ds)) == ("fer2013", "fer2013-csv", 3)
    assert ds.labels.tolist() == [0, 3, 6]
    assert ds.splits.tolist() == ["Training", "PublicTest", "PrivateTest"]
    assert ds.paths.tolist() == [f"{p.resolve()}:row {n}" for n in (2, 3, 4)]
    for i, lab in enumerate((0, 3, 6)):
        np.testing.assert_array_equal(ds.images[i], _face(lab))
    assert ds.notes == []


@pytest.mark.parametrize("skip_bad", [False, True])
def test_csv_without_usage_is_refused(tmp_path, skip_bad):
    """No Usage column: no official splits, so refused while reading (before any landmark work),
    one line naming the file; also in a folder or zip holding only such a CSV."""
    p = make_fer_csv(tmp_path / "nousage.csv", usage=False)
    with pytest.raises(MissingSplitError) as e:
        load_dataset(p, skip_bad=skip_bad)
    msg = str(e.value)
    assert msg.startswith(f"{p.resolve()}: no Usage column") and "\n" not in msg
    assert "FER2013 needs its official splits (Training, PublicTest, PrivateTest) in a Usage column" in msg
    assert isinstance(e.value, DataError)
    folder = tmp_path / "kaggle"
    folder.mkdir()
    make_fer_csv(folder / "train.csv", usage=False)
    z = _zip_dir(folder, tmp_path / "kaggle.zip", "fer/")
    for src, where in ((folder, str(folder.resolve() / "train.csv")), (z, f"{z.resolve()}:fer/train.csv")):
        with pytest.raises(MissingSplitError, match=rf"^{re.escape(where)}: no Usage column"):
            load_dataset(src)
    assert not list(readers.cache_dir().glob("nousage*"))  # nothing cached for a refused file


def test_csv_without_training_rows_is_refused(tmp_path):
    p = make_fer_csv(tmp_path / "test.csv", [("1", PIX, "PublicTest"), ("2", PIX, "PrivateTest")])
    with pytest.raises(MissingSplitError, match=r"test.csv: no Training rows \(Usage holds only "
                                                r"PrivateTest, PublicTest\); FER2013 needs its official splits"):
        load_dataset(p)
    # unknown Usage values are bad rows; skipped, what is left must still hold Training rows
    p = make_fer_csv(tmp_path / "val.csv", [("1", PIX, "Validation"), ("2", PIX, "PublicTest")])
    with pytest.raises(BadRowError, match=r"val.csv row 2: unknown Usage 'Validation' \(FER2013's official splits"):
        load_dataset(p)
    with pytest.raises(MissingSplitError, match=r"val.csv: no Training rows"):
        load_dataset(p, skip_bad=True)


def test_csv_refused_although_an_old_cache_holds_it(tmp_path):
    """A decode cache written before a CSV without Usage was refused is not read."""
    p = make_fer_csv(tmp_path / "nousage.csv", usage=False)
    key = readers._cache_key(p.resolve(), skip_bad=False, ck_frames=3)
    old = dict(key, format=1)
    n = 3
    FaceDataset(name="fer2013", kind="fer2013-csv", images=np.zeros((n, 48, 48), np.uint8), labels=[0, 3, 6],
                class_names=FER2013_CLASSES, splits=["all"] * n, subjects=[""] * n, sequences=[""] * n,
                paths=[f"{p}:row {i + 2}" for i in range(n)], source=str(p)
                ).save(readers._cache_file(p.resolve(), old), extra=old)
    assert key["format"] >= 2
    with pytest.raises(MissingSplitError):
        load_dataset(p)


PIX = " ".join(["7"] * 2304)


@pytest.mark.parametrize("row, words", [
    (("0", " ".join(["7"] * 2303), "Training"), "2303 pixels"),
    (("0", PIX.replace("7", "7.5", 1), "Training"), "7.5"),
    (("0", PIX.replace("7", "300", 1), "Training"), "0..255"),
    (("7", PIX, "Training"), "unknown emotion label '7'"),
    (("happy", PIX, "Training"), "unknown emotion label 'happy'"),
    (("0", PIX, "Validation"), "unknown Usage 'Validation'"),
])
def test_csv_bad_row(tmp_path, row, words):
    p = make_fer_csv(tmp_path / "bad.csv", [("1", PIX, "Training"), row])
    with pytest.raises(BadRowError) as e:
        load_dataset(p)
    msg = str(e.value)
    assert f"bad.csv row 3" in msg and words in msg and "\n" not in msg
    assert msg.endswith("; --skip-bad (skip_bad=True) skips unreadable items and goes on")  # what to do
    ok = load_dataset(p, skip_bad=True)
    assert len(ok) == 1 and ok.notes == [f"skipped 1 unreadable items (first: {msg.split('; --skip-bad')[0]})"]


def test_csv_inside_zip_and_folder(tmp_path):
    """Kaggle's challenge download: several CSVs; the one with a Usage column is the data set."""
    folder = tmp_path / "kaggle"
    folder.mkdir()
    make_fer_csv(folder / "icml_face_data.csv")
    make_fer_csv(folder / "train.csv", usage=False)
    (folder / "test.csv").write_text("pixels\n" + PIX + "\n")
    z = _zip_dir(folder, tmp_path / "kaggle.zip", "fer/")
    for src, where in ((folder, str(folder.resolve() / "icml_face_data.csv")),
                       (z, f"{z.resolve()}:fer/icml_face_data.csv")):
        ds = load_dataset(src)
        assert (ds.kind, len(ds)) == ("fer2013-csv", 3)
        assert ds.split_names == ["Training", "PublicTest", "PrivateTest"]
        assert ds.paths[0] == f"{where}:row 2" and ds.source == str(src.resolve())
        np.testing.assert_array_equal(ds.images[2], _face(6))
    make_fer_csv(folder / "icml_face_data.csv", [("0", PIX, "Training"), ("9", PIX, "Training")])
    with pytest.raises(BadRowError, match=r"icml_face_data.csv row 3: unknown emotion label '9'"):
        load_dataset(folder)


def test_csv_not_fer(tmp_path):
    p = tmp_path / "other.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(NotADatasetError, match="other.csv: not a FER2013 CSV"):
        load_dataset(p)


# --- FER2013 image release -------------------------------------------------------------------
def test_fer_folder_zip_and_nested_zip_agree(tmp_path):
    folder = make_fer_folder(tmp_path / "fer")
    ds = load_dataset(folder)
    assert (ds.kind, len(ds)) == ("fer2013-folder", 42)
    assert {s: sum(c.values()) for s, c in ds.counts().items()} == {
        "Training": 14, "PublicTest": 14, "PrivateTest": 14}
    assert ds.notes == []
    i = int(np.flatnonzero(np.char.endswith(ds.paths, "train/happy/Training_1007.png"))[0])
    assert ds.class_names[ds.labels[i]] == "happiness"
    np.testing.assert_array_equal(ds.images[i], _face(7))
    for z in (_zip_dir(folder, tmp_path / "flat.zip"), _zip_dir(folder, tmp_path / "nested.zip", "fer2013/")):
        dz = load_dataset(z)
        assert dz.kind == "fer2013-folder"
        np.testing.assert_array_equal(dz.images, ds.images)
        np.testing.assert_array_equal(dz.labels, ds.labels)
        np.testing.assert_array_equal(dz.splits, ds.splits)
        assert all(p.startswith(f"{z.resolve()}:") for p in dz.paths)


def test_fer_folder_without_prefixes(tmp_path):
    folder = make_fer_folder(tmp_path / "fer", prefixes=False)
    for ds in (load_dataset(folder), load_dataset(_zip_dir(folder, tmp_path / "f.zip"))):
        assert ds.split_names == ["Training", "Test"]
        assert (ds.splits == "Training").sum() == 14 and (ds.splits == "Test").sum() == 28
        assert any("42 images have no Training_/PublicTest_/PrivateTest_" in n for n in ds.notes)


@pytest.mark.parametrize("zipped", [False, True])
def test_fer_folder_missing_class(tmp_path, zipped):
    src = make_fer_folder(tmp_path / "fer", omit="disgust")
    if zipped:
        src = _zip_dir(src, tmp_path / "fer.zip")
    for skip in (False, True):  # a missing class is an error even with skip_bad
        with pytest.raises(MissingClassError, match=r"train/: no class folder disgust/ \(disgust\)"):
            load_dataset(src, skip_bad=skip)


def test_fer_folder_empty_class(tmp_path):
    folder = make_fer_folder(tmp_path / "fer")
    shutil.rmtree(folder / "train" / "fear")
    (folder / "train" / "fear").mkdir()
    with pytest.raises(MissingClassError, match=r"train/fear/: class folder has no images"):
        load_dataset(folder)


def test_fer_folder_unknown_class(tmp_path):
    folder = make_fer_folder(tmp_path / "fer")
    _write(folder / "train" / "contempt" / "Training_1.png", _png(_face(0)))
    with pytest.raises(DataError, match="contempt/: not a class folder"):
        load_dataset(folder)


@pytest.mark.parametrize("zipped", [False, True])
@pytest.mark.parametrize("bad, words", [
    (b"not an image at all", "unreadable image"),
    (_jpg(_face(1))[:300], "unreadable image"),  # truncated JPEG
    (_png(_face(1, 64)), "image is 64x64, expected 48x48"),
])
def test_fer_folder_bad_image(tmp_path, zipped, bad, words):
    folder = make_fer_folder(tmp_path / "fer")
    _write(folder / "train" / "sad" / "Training_0001.png", bad)
    src = _zip_dir(folder, tmp_path / "fer.zip") if zipped else folder
    with pytest.raises(BadImageError) as e:
        load_dataset(src)
    msg = str(e.value)
    assert "train/sad/Training_0001.png" in msg and words in msg and "\n" not in msg and "--skip-bad" in msg
    ds = load_dataset(src, skip_bad=True)
    assert len(ds) == 42 and ds.notes == [f"skipped 1 unreadable items (first: {msg.split('; --skip-bad')[0]})"]


def test_corrupt_zip_member(tmp_path):
    z = _zip_dir(make_fer_folder(tmp_path / "fer"), tmp_path / "fer.zip")
    data = bytearray(z.read_bytes())
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo("train/sad/" + sorted(n.rsplit("/", 1)[1] for n in zf.namelist()
                                                if n.startswith("train/sad/"))[0])
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 50] ^= 0xFF  # the stored bytes no longer match the CRC
    z.write_bytes(bytes(data))
    with pytest.raises(BadImageError, match=rf"fer.zip:{info.filename}: unreadable"):
        load_dataset(z)


@pytest.mark.parametrize("make", ["missing", "textfile", "empty", "other", "notzip", "classes-only"])
def test_not_a_dataset(tmp_path, make):
    p = tmp_path / make
    if make == "textfile":
        p = tmp_path / "notes.txt"
        p.write_text("hello")
    elif make == "empty":
        p.mkdir()
    elif make == "other":
        _write(p / "photos" / "a.png", _png(_face(0)))
    elif make == "notzip":
        p = tmp_path / "broken.zip"
        p.write_bytes(b"PK\x03\x04 not really")
    elif make == "classes-only":  # FER class folders without train/ test/
        _write(p / "happy" / "a.png", _png(_face(0)))
    with pytest.raises(NotADatasetError) as e:
        load_dataset(p)
    assert p.name in str(e.value) and "\n" not in str(e.value)


# --- CK+48 -----------------------------------------------------------------------------------
def test_ck48_folder_and_zip(tmp_path):
    folder = make_ck48_folder(tmp_path / "CK+48")
    for src in (folder, _zip_dir(folder, tmp_path / "ck.zip", "CK+48/")):
        ds = load_dataset(src)
        assert (ds.kind, len(ds), ds.split_names) == ("ckplus48", 21, ["all"])
        assert set(ds.subjects) == {"S010", "S011"} and len(set(ds.sequences)) == 7
        assert ds.counts()["all"] == {c: 3 for c in CKPLUS_CLASSES}
        i = int(np.flatnonzero(ds.sequences == "S010_005")[-1])  # happy, 5th folder
        assert ds.class_names[ds.labels[i]] == "happiness" and ds.paths[i].endswith("S010_005_00000009.png")
        np.testing.assert_array_equal(ds.images[i], _face(409))


@pytest.mark.parametrize("zipped", [False, True])
def test_ck48_missing_class(tmp_path, zipped):
    src = make_ck48_folder(tmp_path / "CK+48", omit="fear")
    if zipped:
        src = _zip_dir(src, tmp_path / "ck.zip", "CK+48/")
    with pytest.raises(MissingClassError, match=r"no class folder fear/"):
        load_dataset(src)


def test_ck48_bad_image(tmp_path):
    folder = make_ck48_folder(tmp_path / "CK+48")
    _write(folder / "fear" / "S010_004_00000009.png", _png(_face(0, 100)))
    with pytest.raises(BadImageError, match=r"fear/S010_004_00000009.png: image is 100x100"):
        load_dataset(folder)


# --- full CK+ --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def one_thread():
    """MTCNN on two busy cores runs far faster on one thread."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _ck48_face(ckplus48_zip: Path | None) -> np.ndarray | None:
    if ckplus48_zip is None:
        return None
    with zipfile.ZipFile(ckplus48_zip) as z:
        return np.asarray(Image.open(io.BytesIO(z.read("CK+48/anger/S010_004_00000017.png"))))


def make_ckplus_full(root: Path, face: np.ndarray | None, frames: int = 5) -> dict[str, int]:
    """2 subjects x 2 labelled sequences (+1 unlabelled) of 640x490 frames.

    Each frame is a gray canvas with a 220x220 upscaled face pasted at (200, 130) where
    ``face`` is given. Returns {sequence: emotion code}.
    """
    codes = {"S010_001": 1, "S010_002": 2, "S011_001": 5, "S011_003": 7}
    for seq in [*codes, "S011_002"]:
        subject, num = seq.split("_")
        for k in range(1, frames + 1):
            canvas = Image.new("L", (640, 490), 90 + k)
            if face is not None:
                canvas.paste(Image.fromarray(face).resize((220, 220), Image.Resampling.BICUBIC), (200, 130))
            buf = io.BytesIO()
            canvas.save(buf, format="PNG")
            _write(root / "cohn-kanade-images" / subject / num / f"{seq}_{k:08d}.png", buf.getvalue())
        if seq in codes:
            _write(root / "Emotion" / subject / num / f"{seq}_{frames:08d}_emotion.txt",
                   f"   {codes[seq]:.7e}\n".encode())
    return codes


def test_ckplus_full_folder(tmp_path, request, one_thread):
    try:
        face = _ck48_face(request.getfixturevalue("ckplus48_zip"))
    except pytest.skip.Exception:
        face = None
    codes = make_ckplus_full(tmp_path / "CK+", face)
    ds = load_dataset(tmp_path / "CK+")
    assert (ds.name, ds.kind, len(ds), ds.split_names) == ("ckplus", "ckplus-full", 12, ["all"])
    assert ds.class_names == CKPLUS_CLASSES
    assert sorted(set(ds.sequences)) == sorted(codes) and set(ds.subjects) == {"S010", "S011"}
    expected = {"S010_001": "anger", "S010_002": "contempt", "S011_001": "happiness", "S011_003": "surprise"}
    for seq, name in expected.items():
        sel = ds.sequences == seq
        assert [ds.class_names[k] for k in ds.labels[sel]] == [name] * 3
        assert [p[-12:] for p in ds.paths[sel]] == ["00000003.png", "00000004.png", "00000005.png"]
    assert any("no images of class disgust, fear, sadness" in n for n in ds.notes)
    if face is None:
        assert any("no face found by MTCNN in 12 frames" in n for n in ds.notes)
    else:  # the crop finds the pasted face again, at about CK+48's framing
        assert not any("no face found" in n for n in ds.notes)
        r = np.corrcoef(ds.images[0].ravel().astype(float), face.ravel().astype(float))[0, 1]
        assert r > 0.6
    two = load_dataset(tmp_path / "CK+", ck_frames=2)
    assert len(two) == 8 and cache_path_for(tmp_path / "CK+", ck_frames=2).is_file()


def test_ckplus_full_zip_centre_crop_fallback(tmp_path, one_thread):
    root = tmp_path / "src"
    make_ckplus_full(root, None, frames=3)
    # frames: dark outside the centre 490x490 square, bright inside: the fallback crop is all bright
    for f in (root / "cohn-kanade-images").rglob("*.png"):
        a = np.full((490, 640), 20, np.uint8)
        a[:, 75:565] = 230
        f.write_bytes(_png(a))
    ds = load_dataset(_zip_dir(root, tmp_path / "ck.zip", "extended-cohn-kanade-images/"))
    assert (ds.kind, len(ds)) == ("ckplus-full", 12)
    assert any("no face found by MTCNN in 12 frames, centre crop used" in n for n in ds.notes)
    assert ds.images.min() >= 225
    assert ds.paths[0].startswith(f"{(tmp_path / 'ck.zip').resolve()}:extended-cohn-kanade-images/")


def test_ckplus_full_bad_emotion_file(tmp_path, one_thread):
    root = tmp_path / "CK+"
    make_ckplus_full(root, None, frames=3)
    bad = root / "Emotion" / "S011" / "003" / "S011_003_00000003_emotion.txt"
    bad.write_text("   9.0000000e+00\n")
    with pytest.raises(BadRowError, match=r"S011_003_00000003_emotion.txt: not a CK\+ emotion code"):
        load_dataset(root)
    ds = load_dataset(root, skip_bad=True)
    assert len(ds) == 9 and "S011_003" not in set(ds.sequences)
    assert any(n.startswith("skipped 1 unreadable items") for n in ds.notes)


# --- cache -----------------------------------------------------------------------------------
def _counting_reader(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = readers._read_source

    def wrapped(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(readers, "_read_source", wrapped)
    return calls


def test_cache_written_then_used(tmp_path, monkeypatch):
    folder = make_fer_folder(tmp_path / "fer", per_class=1)
    calls = _counting_reader(monkeypatch)
    first = load_dataset(folder)
    assert cache_path_for(folder).is_file() and len(calls) == 1
    second = load_dataset(folder)
    assert len(calls) == 1
    np.testing.assert_array_equal(second.images, first.images)
    assert second.paths.tolist() == first.paths.tolist() and second.source == first.source
    load_dataset(folder, use_cache=False)
    assert len(calls) == 2
    load_dataset(folder, skip_bad=True)  # other options: another cache entry
    assert len(calls) == 3 and cache_path_for(folder, skip_bad=True) != cache_path_for(folder)


def test_cache_follows_source_changes(tmp_path, monkeypatch):
    folder = make_fer_folder(tmp_path / "fer", per_class=1)
    before = cache_path_for(folder)
    load_dataset(folder)
    _write(folder / "train" / "sad" / "Training_9999.png", _png(_face(9)))
    assert cache_path_for(folder) != before
    assert len(load_dataset(folder)) == 22


def test_corrupt_cache_rebuilt(tmp_path, monkeypatch):
    p = make_fer_csv(tmp_path / "fer.csv")
    load_dataset(p)
    cache = cache_path_for(p)
    cache.write_bytes(cache.read_bytes()[:200])  # truncated
    calls = _counting_reader(monkeypatch)
    ds = load_dataset(p)
    assert len(calls) == 1 and len(ds) == 3
    assert len(FaceDataset.load(cache)) == 3  # rewritten whole
    cache.write_bytes(b"garbage")
    assert len(load_dataset(p)) == 3 and len(calls) == 2


def test_cache_from_another_version_not_trusted(tmp_path, monkeypatch):
    p = make_fer_csv(tmp_path / "fer.csv")
    load_dataset(p)
    old = cache_path_for(p)
    monkeypatch.setattr(lkr, "__version__", "99.0")
    new = cache_path_for(p)
    assert new != old
    # a file of another version under the current name is detected by the key stored inside it
    shutil.copy(old, new)
    calls = _counting_reader(monkeypatch)
    load_dataset(p)
    assert len(calls) == 1 and FaceDataset.saved_extra(new)["version"] == "99.0"
    load_dataset(p)
    assert len(calls) == 1


# --- demo ------------------------------------------------------------------------------------
@pytest.mark.skipif(importlib.util.find_spec("lkr.demo") is None, reason="lkr.demo not written yet")
@pytest.mark.parametrize("path, classes", [("demo", FER2013_CLASSES), ("demo-ckplus", CKPLUS_CLASSES)])
def test_demo(path, classes):
    ds = load_dataset(path)
    assert ds.class_names == classes and len(ds) > 0 and ds.images.shape[1:] == (48, 48)


@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_a_damaged_zip_is_called_damaged(tmp_path, damage):
    """A truncated download or random bytes named .zip: one line saying the zip is damaged, not
    "not a dataset"."""
    good = make_fer_csv(tmp_path / "f.csv", [("1", PIX, "Training")] * 3)
    z = tmp_path / "fer.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(good, "fer2013.csv")
    data = z.read_bytes()
    bad = tmp_path / "bad.zip"
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else np.random.default_rng(0).bytes(4000))
    with pytest.raises(NotADatasetError) as e:
        load_dataset(bad)
    assert "damaged zip archive" in str(e.value) and "\n" not in str(e.value) and str(bad) in str(e.value)


# --- one split only (lkr evaluate reads what it scores) -------------------------------------
def _counting_decoder(monkeypatch) -> list[str]:
    seen: list[str] = []
    real = readers._decode48

    def wrapped(data, where):
        seen.append(where)
        return real(data, where)

    monkeypatch.setattr(readers, "_decode48", wrapped)
    return seen


@pytest.mark.parametrize("form", ["folder", "zip", "csv"])
def test_one_split_decodes_only_its_images_and_equals_the_whole_read(tmp_path, monkeypatch, form):
    """load_dataset(splits=...) decodes (parses) only that split's images, and gives exactly the
    whole dataset's rows of it; a later whole read still reads the source; a whole cache, once
    written, serves the part without decoding."""
    if form == "csv":
        rows = [(str(i % 7), " ".join(map(str, _face(i).ravel())), u)
                for i, u in enumerate(["Training", "PrivateTest", "PublicTest", "PrivateTest", "Training"])]
        src = make_fer_csv(tmp_path / "fer.csv", rows)
    else:
        src = make_fer_folder(tmp_path / "fer", per_class=1)
        if form == "zip":
            src = _zip_dir(src, tmp_path / "fer.zip")
    seen = _counting_decoder(monkeypatch)
    parsed: list[str] = []
    real_row = readers._parse_fer_row
    monkeypatch.setattr(readers, "_parse_fer_row", lambda row, *a: (parsed.append(row[-1]), real_row(row, *a))[1])
    part = load_dataset(src, splits={"PrivateTest"})
    assert set(part.splits.tolist()) == {"PrivateTest"}
    if form == "csv":
        assert parsed == ["PrivateTest"] * 2 == part.splits.tolist()
    else:
        assert len(seen) == len(part) == 7 and all("PrivateTest_" in w for w in seen)
    assert not cache_path_for(src).is_file()  # nothing of the whole was cached
    whole = load_dataset(src)
    ref = whole.split("PrivateTest")
    for k in ("images", "labels", "paths", "splits"):
        assert np.array_equal(getattr(part, k), getattr(ref, k)), k
    monkeypatch.setattr(readers, "_read_source", _no_decoding)  # the whole cache now serves parts
    again = load_dataset(src, splits={"PrivateTest"})
    assert np.array_equal(again.images, part.images)


def test_one_split_of_data_without_it_is_the_whole_data(tmp_path, monkeypatch):
    """CK+ (and a FER2013 folder without file-name prefixes, and a CSV without PrivateTest rows)
    has no PrivateTest: asked for it, the reader gives every image, each decoded once (the CSV's
    first pass parses no row), cached as the whole (the caller decides)."""
    rows = [(str(i % 7), " ".join(map(str, _face(i).ravel())), u) for i, u in enumerate(["Training", "PublicTest"])]
    for src in (make_ck48_folder(tmp_path / "ck"), make_fer_folder(tmp_path / "plain", prefixes=False, per_class=1),
                make_fer_csv(tmp_path / "two.csv", rows)):
        calls = _counting_reader(monkeypatch)
        seen = _counting_decoder(monkeypatch)
        parsed: list[str] = []
        real_row = readers._parse_fer_row
        monkeypatch.setattr(readers, "_parse_fer_row", lambda row, *a: (parsed.append(row[-1]), real_row(row, *a))[1])
        part = load_dataset(src, splits={"PrivateTest"})
        assert len(seen) + len(parsed) == len(part) and cache_path_for(src).is_file()
        n = len(calls)
        assert len(load_dataset(src)) == len(part) and len(calls) == n  # the whole cache
        monkeypatch.undo()


def test_fer2013_private_test_alone(fer, fer2013_zip, tmp_path, monkeypatch):
    """The real FER2013: its 3,589 PrivateTest images read alone equal the whole read's."""
    monkeypatch.setenv("LKR_CACHE_DIR", str(tmp_path))  # cold: no whole cache to cut from
    part = load_dataset(fer2013_zip, splits={"PrivateTest"})
    ref = fer.split("PrivateTest")
    assert len(part) == 3589 and np.array_equal(part.images, ref.images) and np.array_equal(part.paths, ref.paths)
    assert not cache_path_for(fer2013_zip).is_file()  # the whole dataset was not decoded
