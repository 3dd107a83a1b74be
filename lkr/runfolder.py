"""The run folder: its files, how they are written and read, and the trained model it holds.

One run (one configuration, one dataset, one fold) writes one folder::

    config.json       the Config (also inside every checkpoint)
    history.json      per epoch: lr, loss parts, selection accuracy, seconds
    checkpoint.pt     last state, for resuming (model, optimizer, history, best so far)
    best.pt           the selected weights and their config
    metrics.json      test metrics of the selected weights (+ selection split, timing, data)
    predictions.npz   test: dataset index, label, prediction, probabilities (float16); CK+-like
                      data also each image's subject id (for paired tests that resample subjects)
    embeddings.npz    256-d test embeddings of a fixed subsample (float16)

``metrics.json`` is written last: a folder without it holds no finished run.

Faults: every file is written through :func:`lkr.atomic.atomic_write` (a temporary file in the
folder, flushed, fsynced, renamed over its name), so a kill leaves either the old file or the new
one, never half a file. Temporaries a killed write left behind (``<name>*.tmp``) are never read
and are deleted when the next run opens the folder (:func:`open_run_folder`).

The trainer writes these files; evaluation, results, prediction and export read them from here,
never through the trainer.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lkr.atomic import atomic_write
from lkr.classes import CKPLUS_CLASSES, FER2013_CLASSES
from lkr.config import Config
from lkr.errors import ConfigError, RunError
from lkr.model import build_model

RUN_FILES = ("config.json", "history.json", "checkpoint.pt", "best.pt", "metrics.json", "predictions.npz",
             "embeddings.npz")
"""The files of a run folder (see the module docstring)."""


# --- the folder ------------------------------------------------------------------------------
def open_run_folder(out: str | Path) -> Path:
    """Create the run folder (parents too) and delete the temporaries killed writes left in it.

    No other process may be writing into ``out`` at the same time (one run per folder).

    Returns:
        ``out`` as a Path.

    Raises:
        RunError: when the folder cannot be created (one line).
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"{out}: cannot create the run folder ({e.strerror})") from None
    remove_stale_temps(out)
    return out


def remove_stale_temps(out: str | Path) -> list[Path]:
    """Delete the temporary files that killed writes left in a run folder.

    Only ``<run file><random>.tmp`` names of :data:`RUN_FILES` are touched. No other process
    may be writing into ``out`` at the same time (one run per folder).

    Returns:
        The deleted paths.
    """
    gone = []
    for f in Path(out).glob("*.tmp"):
        if f.is_file() and any(f.name.startswith(n) for n in RUN_FILES):
            try:
                f.unlink()
                gone.append(f)
            except FileNotFoundError:
                pass
    return gone


# --- writing: every file a later run trusts is written atomically ----------------------------
def write_json(path: Path, obj: Any, *, digits: int | None = None, compact: bool = False) -> None:
    """Write ``obj`` as JSON atomically (numpy scalars and arrays become numbers and lists).

    ``digits``: None = full precision, indented (or on one line with ``compact``: the metrics of
    ``results/``, a third of the bytes); else on one line with floats rounded to that many
    significant digits (exported histories: about half the bytes; figures need far fewer).
    """
    if digits is None:
        text = json.dumps(obj, indent=None if compact else 2, separators=(",", ":") if compact else None,
                          default=_json_default)
    else:
        text = json.dumps(_rounded(obj, digits), separators=(",", ":"), default=_json_default)
    atomic_write(path, lambda f: f.write(text.encode()))


def _rounded(o: Any, digits: int) -> Any:
    if isinstance(o, float):
        return float(f"{o:.{digits}g}")
    if isinstance(o, dict):
        return {k: _rounded(v, digits) for k, v in o.items()}
    if isinstance(o, list):
        return [_rounded(v, digits) for v in o]
    return o


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def save_torch(path: Path, obj: Any) -> None:
    """``torch.save`` atomically."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` atomically."""
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


# --- reading ---------------------------------------------------------------------------------
def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """A ``checkpoint.pt`` or ``best.pt`` as the trainer saved it, its tensors on ``device``.

    Read with ``weights_only=True``: tensors, numbers, strings and containers only, so a run
    folder from elsewhere cannot run code on this machine (a pickle that would is refused).

    Raises:
        RunError: when the file cannot be read (one line: delete it to start over), or holds
            objects other than weights and plain data (one line: it is not loaded).
    """
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise RunError(f"{path}: holds objects other than weights and plain data (a pickle that could run "
                       "code); refused, not loaded") from None
    except Exception as e:
        raise RunError(f"{path}: unreadable checkpoint ({type(e).__name__}); delete it to start over") from None
    if isinstance(ck, dict) and isinstance(ck.get("model"), dict):
        scales = ck.pop("int8_scales", None)
        if scales is not None:
            if not isinstance(scales, dict):
                raise RunError(f"{path}: its int8 scales are not a table of tensors; the file was edited or written "
                               "by another version of lkr")
            ck["model"] = dequantize_weights(ck["model"], scales, path)
        left = [k for k, v in ck["model"].items() if isinstance(v, torch.Tensor) and v.dtype == torch.int8]
        if left:  # an int8 weight without its scale would load as its integers
            raise RunError(f"{path}: int8 weight {left[0]} has no scale; the file was edited or written by another "
                           "version of lkr")
    return ck


def dequantize_weights(state: dict[str, torch.Tensor], scales: dict[str, torch.Tensor],
                       where: Path) -> dict[str, torch.Tensor]:
    """Weights stored as int8 with one float scale per output channel (weight-only, symmetric,
    :func:`lkr.shipped.quantize_weights`) back to float32; the other tensors as they are.

    Raises:
        RunError: a scale without its int8 weight, or of the wrong length (one line).
    """
    out = dict(state)
    for k, s in scales.items():
        w = state.get(k)
        if not (isinstance(w, torch.Tensor) and isinstance(s, torch.Tensor) and w.dtype == torch.int8
                and s.is_floating_point() and s.dim() == 1 and w.dim() >= 1 and s.numel() == w.shape[0]):
            raise RunError(f"{where}: int8 weight {k} does not match its scales; the file was edited or written by "
                           "another version of lkr")
        out[k] = w.float() * s.float().view(-1, *([1] * (w.dim() - 1)))
    return out


def load_run_model(run: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, Config, dict]:
    """The selected weights of a trained run folder, in eval mode, in the memory format the
    trainer used (channels-last when ``cfg.channels_last``), so that re-evaluating a run gives
    its metrics again bit for bit on the same machine.

    Returns:
        (the network on ``device``, its Config, the run's info: data, dataset, kind, fold,
        folds, kit_version, world_size).

    Raises:
        RunError: if ``run`` is not a trained run folder.
    """
    run = Path(run)
    best = run / "best.pt"
    if not run.is_dir() or not best.exists():
        raise RunError(f"{run}: not a trained run folder (no best.pt)")
    ck = load_checkpoint(best, torch.device(device))
    if not isinstance(ck, dict) or not isinstance(ck.get("config"), dict) or not isinstance(ck.get("model"), dict):
        raise RunError(f"{best}: not a checkpoint of this kit (no config and model); train it again or use another run")
    cfg = config_of_record(ck["config"], best)
    if (run / "config.json").is_file():
        try:
            said = json.loads((run / "config.json").read_text())
        except ValueError:
            raise RunError(f"{run / 'config.json'}: not valid JSON") from None
        diff = [k for k, v in cfg.to_dict().items() if k in said and _plain(said[k]) != _plain(v)]
        if diff:
            k = diff[0]
            raise RunError(f"{run / 'config.json'}: says {k}={said[k]!r} but the weights in best.pt were trained with "
                           f"{k}={getattr(cfg, k)!r}; restore config.json or use the run as trained")
    model = build_model(cfg).to(device)
    fit_weights(model, ck["model"], best)
    if cfg.channels_last and torch.device(device).type in ("cuda", "cpu"):
        model = model.to(memory_format=torch.channels_last)  # as lkr.train._build
    model.eval()
    return model, cfg, ck.get("info", {})


def weights_sha256(run: str | Path) -> str:
    """The sha256 (hex) of a run folder's selected weights (``best.pt``): what identifies the
    source of a fine-tuned run beside its path."""
    import hashlib

    with open(Path(run) / "best.pt", "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def dataset_identity(name: str) -> str:
    """The dataset a name stands for, whatever was done to its images: "ckplus-cue" and
    "ckplus-inner-cue" (the region control's stamped copies) are "ckplus", "control-inner" (the
    synthetic set with the cue inside the face) is "control"."""
    return str(name).removesuffix("-inner-cue").removesuffix("-cue").removesuffix("-inner")


def init_source(source: str | Path, target_dataset: str) -> tuple[Path, str]:
    """Check a fine-tuning source (``Config.init_from``) for a run on ``target_dataset``.

    A source trained on the target's own dataset is refused, whatever the path that reaches it:
    a CK+ run of another fold has trained on this fold's test subjects, and a FER2013 run
    started from another FER2013 run is not the set's protocol.

    Args:
        source: a trained run folder (or its ``best.pt``).
        target_dataset: the name of the dataset the new run trains on (``FaceDataset.name``).

    Returns:
        (the source's run folder, the sha256 of its ``best.pt``).

    Raises:
        RunError: ``source`` is not a finished run folder.
        ConfigError: it was trained on ``target_dataset`` (one line naming both).
    """
    src = Path(source).expanduser()
    run = src.parent if src.name == "best.pt" else src
    if not (run / "best.pt").is_file() or not (run / "metrics.json").is_file():
        raise RunError(f"init_from {source}: not a finished run folder (no best.pt or no metrics.json)")
    try:
        trained_on = json.loads((run / "metrics.json").read_text()).get("dataset")
    except (OSError, ValueError):
        raise RunError(f"init_from {run}: its metrics.json cannot be read") from None
    if not trained_on:
        raise RunError(f"init_from {run}: its metrics.json does not say which dataset it was trained on; "
                       "a source must be shown to come from another dataset")
    if dataset_identity(trained_on) == dataset_identity(target_dataset):
        raise ConfigError(f"init_from {run}: it was trained on {trained_on}, the dataset this run trains on "
                          f"({target_dataset}); a source must come from another dataset (a run of another fold "
                          "has seen this fold's test subjects)")
    for ancestor, name in source_lineage(run):  # the source's own source, and so on: the whole chain
        if dataset_identity(name) == dataset_identity(target_dataset):
            raise ConfigError(f"init_from {run}: it started from {ancestor}, trained on {name}, the dataset this run "
                              f"trains on ({target_dataset}); no run in a source's chain may come from it")
    return run, weights_sha256(run)


def source_lineage(run: str | Path, _seen: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """(run folder, dataset) of every run a run was started from, nearest first: what its
    ``metrics.json`` recorded when it trained (``init_lineage``), else found by following each
    ``config.json``'s ``init_from``.

    Raises:
        RunError: a link of the chain cannot be read (its folder is gone and no record says
            what it was trained on).
    """
    run = Path(run)
    try:
        m = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        m = {}
    if isinstance(m.get("init_lineage"), list):
        return [(str(a), str(b)) for a, b in m["init_lineage"]]
    try:
        cfg = json.loads((run / "config.json").read_text())
    except (OSError, ValueError):
        return []
    src = cfg.get("init_from")
    if not src:
        return []
    src = Path(src).expanduser()
    src = src.parent if src.name == "best.pt" else src
    if str(src.resolve()) in _seen | {str(run.resolve())}:
        raise RunError(f"init_from {run}: its chain of sources comes back to {src}")
    try:
        name = json.loads((src / "metrics.json").read_text())["dataset"]
    except (OSError, ValueError, KeyError, TypeError):
        raise RunError(f"init_from {run}: it started from {src}, which cannot be read to say what it was trained "
                       "on; the whole chain of sources must be checked") from None
    return [(str(src), str(name)), *source_lineage(src, _seen | {str(run.resolve())})]


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def config_of_record(d: dict[str, Any], where: Path) -> Config:
    """The Config a stored record describes; fields this kit does not know, and fields the record
    lacks (given their defaults), are named in a warning (a run folder of another version).

    Raises:
        RunError: a value the config refuses (one line naming the file).
    """
    import dataclasses
    import warnings

    from lkr.config import SILENT_NEW_FIELDS

    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(d) - known)
    missing = sorted(known - set(d) - SILENT_NEW_FIELDS)
    if unknown or missing:
        parts = ([f"unknown fields {', '.join(unknown)} (ignored)"] if unknown else []) + (
            [f"missing fields {', '.join(missing)} (defaults used)"] if missing else [])
        warnings.warn(f"{where}: its record and this kit's config differ: {'; '.join(parts)}", RunFolderWarning,
                      stacklevel=3)
    try:
        return Config.from_dict(d)
    except (ConfigError, TypeError) as e:
        raise RunError(f"{where}: its config cannot be used ({e})") from None


class RunFolderWarning(UserWarning):
    """A run folder of another version of the kit: fields unknown or defaulted."""


def fit_weights(model: torch.nn.Module, state: dict[str, Any], where: Path) -> None:
    """Load ``state`` into ``model``, or say in one line which layer does not fit.

    Raises:
        RunError: a key missing, unexpected or of another shape (the first one named).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shape = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or shape:
        if shape:
            k = shape[0]
            what = f"layer {k} is {tuple(state[k].shape)} there, {tuple(own[k].shape)} in the config's network"
        elif missing:
            what = f"layer {missing[0]} is missing" + (f" (and {extra[0]} is not this network's)" if extra else "")
        else:
            what = f"layer {extra[0]} is not this network's"
        raise RunError(f"{where}: its weights do not fit its config: {what}; the folder was edited or written by "
                       "another version of lkr")
    model.load_state_dict(state)


CLASS_LAYERS = (".fc3.",)
"""State-dict key parts of the class layers, which :func:`init_weights_from` leaves fresh."""


def init_weights_from(model: torch.nn.Module, source: str | Path) -> str:
    """Copy a trained run's selected weights into ``model`` (``Config.init_from``), all but the
    class layers (:data:`CLASS_LAYERS`), which keep their fresh initialisation.

    Args:
        model: a freshly built network (:func:`lkr.model.build_model`), on any device.
        source: a trained run folder (or its ``best.pt``).

    Returns:
        A one-line note for the run's record: what was copied from where.

    Raises:
        RunError: when ``source`` is not a trained run folder.
        ConfigError: when its network differs from ``model``'s (one line naming the layer).
    """
    src = Path(source).expanduser()
    run = src.parent if src.name == "best.pt" else src
    if not (run / "best.pt").is_file() or not (run / "metrics.json").is_file():
        raise RunError(f"init_from {source}: not a finished run folder (no best.pt or no metrics.json)")
    ck = load_checkpoint(run / "best.pt", torch.device("cpu"))
    sha = weights_sha256(run)
    own = model.state_dict()
    keep = {k: v for k, v in ck["model"].items() if not any(c in k for c in CLASS_LAYERS)}
    for k, v in keep.items():
        if k not in own or own[k].shape != v.shape:
            got = "absent here" if k not in own else f"{tuple(own[k].shape)} here"
            raise ConfigError(f"init_from {run}: its layer {k} {tuple(v.shape)} does not fit this network "
                              f"({got}); train the same configuration (variant, width, vgg_cfg, fc_dims)")
    missing = [k for k in own if k not in keep and not any(c in k for c in CLASS_LAYERS)]
    if missing:
        raise ConfigError(f"init_from {run}: this network's layer {missing[0]} is not in it; train the same "
                          "configuration (variant, width, vgg_cfg, fc_dims)")
    model.load_state_dict(keep, strict=False)
    src_cfg = ck.get("config", {})
    m = json.loads((run / "metrics.json").read_text())
    return (f"weights from {run} ({src_cfg.get('variant', '?')}, lambda {src_cfg.get('triplet_lambda', '?')}, "
            f"seed {src_cfg.get('seed', '?')}, trained on {m.get('dataset', '?')}: epoch {m.get('best_epoch', '?')} "
            f"selected at {100 * float(m.get('select_accuracy') or 0):.2f}% on {m.get('select_split', '?')}; "
            f"best.pt sha256 {sha[:16]}), all but the class layers")


def run_class_names(run: str | Path, num_classes: int, info: dict[str, Any]) -> tuple[str, ...]:
    """The class names a run predicts, in its label order.

    Read from the checkpoint's info when it holds them (the shipped model), else from the run's
    ``predictions.npz`` (or ``metrics.json``); a run without either (killed after ``best.pt``)
    gets CK+'s names when its dataset is CK+-like, else FER2013's.

    Raises:
        RunError: when the names found do not match the model's number of classes.
    """
    run = Path(run)
    names: tuple[str, ...] | None = None
    if info.get("class_names"):  # inside the weights' own file (the shipped model: covered by its sha256)
        names = tuple(str(c) for c in info["class_names"])
    else:
        try:
            with np.load(run / "predictions.npz", allow_pickle=False) as z:
                names = tuple(str(c) for c in z["class_names"])
        except (OSError, KeyError, ValueError):
            try:
                names = tuple(json.loads((run / "metrics.json").read_text())["class_counts"])
            except (OSError, KeyError, ValueError, TypeError):
                ck = "ck" in str(info.get("dataset", "")).lower()
                names = CKPLUS_CLASSES if ck else FER2013_CLASSES
    if len(names) != num_classes:
        raise RunError(f"{run}: {len(names)} class names for a model of {num_classes} classes")
    return names
