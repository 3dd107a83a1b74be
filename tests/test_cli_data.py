"""``lkr data info``: counts of the real archives, JSON output, and one-line errors (exit 2)."""

from __future__ import annotations

import importlib.util
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lkr.cli import main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["data", "info", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _fer_folder(root: Path, omit: str | None = None) -> Path:
    """A tiny FER2013 image release: one image per split and class."""
    rng = np.random.default_rng(0)
    for split_dir, prefixes in (("train", ["Training"]), ("test", ["PublicTest", "PrivateTest"])):
        for c in ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"):
            if c == omit:
                continue
            (root / split_dir / c).mkdir(parents=True)
            for k, prefix in enumerate(prefixes):
                (root / split_dir / c / f"{prefix}_{k}.png").write_bytes(
                    _png(rng.integers(0, 256, (48, 48))))
    return root


def test_fer2013_text(capsys, fer2013_zip):
    rc, out, err = _run(capsys, fer2013_zip)
    assert rc == 0 and err == ""
    assert "fer2013 (fer2013-folder)" in out and "images: 35887" in out
    rows = {line.split()[0]: [int(x) for x in line.split()[1:]] for line in out.splitlines()
            if line.split() and line.split()[0] in ("Training", "PublicTest", "PrivateTest")}
    # columns: anger disgust fear happiness sadness surprise neutral total
    assert rows == {
        "Training": [3995, 436, 4097, 7215, 4830, 3171, 4965, 28709],
        "PublicTest": [467, 56, 496, 895, 653, 415, 607, 3589],
        "PrivateTest": [491, 55, 528, 879, 594, 416, 626, 3589],
    }


def test_fer2013_json(capsys, fer2013_zip):
    rc, out, _ = _run(capsys, fer2013_zip, "--json")
    s = json.loads(out)
    assert rc == 0 and s["images"] == 35887 and s["kind"] == "fer2013-folder"
    assert s["splits"] == {"Training": 28709, "PublicTest": 3589, "PrivateTest": 3589}
    assert s["counts"]["PrivateTest"]["disgust"] == 55 and s["notes"] == []


def test_ckplus48_text_and_json(capsys, ckplus48_zip):
    rc, out, _ = _run(capsys, ckplus48_zip)
    assert rc == 0 and "images: 981  subjects: 118  sequences: 327" in out
    assert "ckplus (ckplus48)" in out
    rc, out, _ = _run(capsys, ckplus48_zip, "--json")
    s = json.loads(out)
    assert (s["images"], s["subjects"], s["sequences"]) == (981, 118, 327)
    assert s["counts"]["all"] == {"anger": 135, "disgust": 177, "fear": 75, "happiness": 207,
                                  "sadness": 84, "surprise": 249, "contempt": 54}


def test_notes_printed(capsys, tmp_path):
    root = _fer_folder(tmp_path / "fer")
    for f in root.rglob("*.png"):  # file names without the split prefix: the folder is the split
        f.rename(f.with_name(f.name.split("_", 1)[1]))
    rc, out, _ = _run(capsys, root)
    assert rc == 0 and "note: 21 images have no Training_/PublicTest_/PrivateTest_ file-name prefix" in out


def _no_usage_csv(tmp_path: Path) -> tuple[Path, str]:
    """A FER2013 CSV without its splits: refused while reading, before any landmark work."""
    p = tmp_path / "nousage.csv"
    p.write_text("emotion,pixels\n3," + " ".join(["9"] * 2304) + "\n")
    return p, "nousage.csv: no Usage column"


def _no_training_csv(tmp_path: Path) -> tuple[Path, str]:
    p = tmp_path / "testonly.csv"
    good = " ".join(["9"] * 2304)
    p.write_text(f"emotion,pixels,Usage\n3,{good},PublicTest\n4,{good},PrivateTest\n")
    return p, "testonly.csv: no Training rows"


def _bad_usage_csv(tmp_path: Path) -> tuple[Path, str]:
    p = tmp_path / "fer.csv"
    good = " ".join(["9"] * 2304)
    p.write_text(f"emotion,pixels,Usage\n0,{good},Training\n2,{good},Validation\n")
    return p, "fer.csv row 3: unknown Usage 'Validation' (FER2013's official splits are Training"


def _bad_csv(tmp_path: Path) -> tuple[Path, str]:
    p = tmp_path / "fer.csv"
    good = " ".join(["9"] * 2304)
    p.write_text(f"emotion,pixels,Usage\n0,{good},Training\n2,{good} 9,PublicTest\n")
    return p, "fer.csv row 3: 2305 pixels, expected 2304"


def _corrupt_image(tmp_path: Path) -> tuple[Path, str]:
    root = _fer_folder(tmp_path / "fer")
    (root / "test" / "fear" / "PublicTest_0.png").write_bytes(b"\x89PNG broken")
    return root, "test/fear/PublicTest_0.png: unreadable image"


def _corrupt_image_zip(tmp_path: Path) -> tuple[Path, str]:
    root, _ = _corrupt_image(tmp_path)
    z = tmp_path / "fer.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(root.rglob("*.png")):
            zf.write(f, "fer2013/" + f.relative_to(root).as_posix())
    return z, "fer.zip:fer2013/test/fear/PublicTest_0.png: unreadable image"


def _missing_class(tmp_path: Path) -> tuple[Path, str]:
    return _fer_folder(tmp_path / "fer", omit="disgust"), "no class folder disgust/"


def _missing_path(tmp_path: Path) -> tuple[Path, str]:
    return tmp_path / "nowhere", "nowhere: no such file or folder"


def _no_dataset(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "a.txt").write_text("x")
    return tmp_path / "stuff", "stuff: no dataset found"


@pytest.mark.parametrize("make", [_bad_csv, _corrupt_image, _corrupt_image_zip, _missing_class,
                                  _missing_path, _no_dataset, _no_usage_csv, _no_training_csv,
                                  _bad_usage_csv])
def test_bad_input_one_line_exit_2(capsys, tmp_path, make):
    path, words = make(tmp_path)
    rc, out, err = _run(capsys, path)
    assert rc == 2 and out == ""
    assert err.startswith("lkr: error: ") and err.count("\n") == 1 and words in err
    assert "Traceback" not in err
    if make in (_no_usage_csv, _no_training_csv, _bad_usage_csv):
        assert "official splits" in err and "PublicTest" in err


@pytest.mark.parametrize("make", [_no_usage_csv, _no_training_csv])
def test_fer2013_without_splits_fails_before_landmarks(capsys, tmp_path, monkeypatch, make):
    """``lkr train`` and ``lkr landmarks`` refuse a FER2013 CSV without its splits while
    reading it: one line, exit 2, and no landmark detection (MTCNN) ran first."""
    import lkr.landmarks as lm

    def no_mtcnn(*a, **k):
        raise AssertionError("landmark detection ran before the bad CSV was refused")

    monkeypatch.setattr(lm, "detect_faces", no_mtcnn)
    monkeypatch.setattr(lm, "landmarks_for", no_mtcnn)
    path, words = make(tmp_path)
    for argv in (["train", "--data", str(path), "--out", str(tmp_path / "run"), "--epochs", "1", "--quiet"],
                 ["landmarks", str(path), "--quiet"]):
        rc = main(argv)
        out, err = capsys.readouterr()
        assert rc == 2 and err.count("\n") == 1 and words in err and "official splits" in err, argv
        assert "subject" not in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("make", [_bad_csv, _corrupt_image])
def test_skip_bad(capsys, tmp_path, make):
    path, words = make(tmp_path)
    rc, out, err = _run(capsys, path, "--skip-bad", "--no-cache")
    assert rc == 0 and err == ""
    assert "note: skipped 1 unreadable items (first: " in out and words in out


@pytest.mark.skipif(importlib.util.find_spec("lkr.demo") is None, reason="lkr.demo not written yet")
def test_demo(capsys):
    rc, out, _ = _run(capsys, "demo", "--json")
    assert rc == 0 and json.loads(out)["kind"] == "demo"


def test_a_closed_pipe_ends_quietly(monkeypatch):
    """`lkr ... --json | head -1`: the reader leaves early and the next write raises
    BrokenPipeError; lkr ends quietly (exit 141, as a process killed by SIGPIPE), no traceback."""
    import sys

    from lkr.cli import main

    class ClosedPipe:
        def write(self, s):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["data", "info", "demo", "--json"]) == 141
