"""The paper's scale on one lent GPU, in one call: everything in priority order inside a wall-clock
budget, each configuration packed into its group's archive under ``--out`` as soon as it ends.

Usage (``scripts/gpu_run.sh`` prepares a bare GPU machine and calls this; docs/gpu-runs.md has
the exact ``run`` call and what travels):

    python scripts/gpu_run.py --out $OUT                        # the GPU call, defaults below
    python scripts/gpu_run.py --out /tmp/dry --dry-run          # the same code on a CPU, tiny

Order (a unit starts only when its measured estimate fits the budget left):

1. probes: 2 epochs of VGG19 and of LKRNet on FER2013 (their training images/s at full width
   -> ``throughput.json``) and 2 epochs of LKRNet on one CK+ fold; from these the epochs: the
   paper's 60, or fewer when the budget cannot hold FER2013 (six configurations) plus CK+ (four
   configurations x 10 folds) at 60. Fewer epochs keep the paper's schedule's shape: warm-up on
   a third of them (20 of 60), then the constant rate.
2. FER2013 at scale "full", seed 0, in this order: VGG19, LKRNet, then LKRNet with the mask at
   stage 1 and its face-mask partner (docs/real-faces-design.md), then the other four
   configurations of ``lkr.experiments.CONFIGS``; the epochs are planned so that VGG19, LKRNet
   and CK+ fit, and every later FER2013 run starts only while CK+ still fits after it. Each
   trained on Training, epoch selected on PublicTest (ten-crop), PrivateTest once with ten-crop;
   exported with ``embeddings.npz`` (the UMAP is drawn later on a CPU) and Grad-CAM of 16 faces.
3. CK+48, the four paper configurations, 10 subject-independent folds, from scratch.
4. CK+48 fine-tuned from each configuration's FER2013 run (``cpu-ft``'s protocol at full scale:
   scale "full-ft" when ``lkr.config.SCALES`` has it, else "full" with ``init_from``; results
   under ``full-ft/`` either way).
5. Seeds 1 and 2 of VGG19 and LKRNet on FER2013, then of LKRNet with the mask at stage 1 when its seed 0
   ran and both fit (small files only).

Files under ``--out`` (at most 7, so that a call that may return 8 files returns all of them):
``fer2013-full.tar.gz``, ``ckplus-full.tar.gz``, ``ckplus-full-ft.tar.gz``,
``fer2013-full-seeds.tar.gz`` (each in the ``results/`` layout, rewritten as configurations
end: unpack with ``tar -xzf X -C results/``), ``throughput.json``, ``summary.json`` (the plan,
every run's numbers, what was skipped and why) and ``log.txt`` (written by gpu_run.sh). Each
run's ``metrics.json`` holds the device's name, the precision, ``wall_seconds`` and
``epochs_note``.

``--dry-run``: the same steps on the CPU with a few hundred images of each dataset, 1 epoch,
VGG19 at 1/8 width, 2 of the 10 CK+ folds (tests/test_gpu_call.py), so that the call cannot
fail on a typo.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

T_START = time.monotonic()  # the budget counts from here (imports included)
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

FER_ORDER = ["vgg19", "lkrnet", "lkrnet-s1", "face-s1", "baseline1", "baseline2", "lkrnet-cover", "lkrnet-l0.4"]
CORE_FER = ("vgg19", "lkrnet")
"""The FER2013 runs the epochs are planned for (with CK+): every other FER2013 configuration runs,
in FER_ORDER, only while the estimate of CK+ still fits after it."""
STAGE1_FACTOR = 2.0
"""A stage-1 arm's epoch against LKRNet's (mask at stage 5) until one has been measured: the mask
on the first block's maps runs the whole tail twice (on a CPU at 1/8 width 37 s against about
23 s; at full width on a GPU assumed 2x, then replaced by the first stage-1 run's own time)."""
CK_ORDER = ["vgg19", "lkrnet", "baseline1", "baseline2"]
SEED_CONFIGS = ["vgg19", "lkrnet"]
"""The FER2013 configurations of the extra seeds, every seed of them first."""
SEED_AFTER = ["lkrnet-s1"]
"""Extra seeds after :data:`SEED_CONFIGS`': the README's capacity table shows LKRNet with the mask at
stage 1 only with seeds 0-2 (``lkr.results.BEYOND_SEEDS``), so they run only when its seed 0 ran and
all its extra seeds fit the time left (a lone seed 1 would be time spent on a row never shown)."""
PROBE_CONFIGS = ("vgg19", "lkrnet")  # one without and one with the local branch
SAFETY = 1.10  # estimates are multiplied by this before they are compared with the time left
RESERVE_S = 8.0  # kept free at the end for the last packing and the summary
POST_GUESS = {"fer2013": 3.0, "ckplus": 0.3}  # export / Grad-CAM / packing per run, until measured
DRY_OVERRIDES: dict[str, Any] = {  # --dry-run: VGG19 at 1/8 width, small batches, fixed precision
    "width": 0.125, "batch_size": 32, "cpu_precision": "fp32", "select_crops": "center", "embed_samples": 100,
    "fc_dims": (4096, 256)}
ANCHORS_H100 = {"common PyTorch pipeline": 5490, "compiled GPU-resident VGG19": 50173}


class UserError(Exception):
    """Bad input: printed as one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + error; one line here
        raise UserError(message)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fer", default="auto", help="FER2013 data: a zip, a .tar.xz from --pack-data, 'demo'; 'auto': "
                                                   ".data/fer2013.tar.xz, else .data/fer2013.zip")
    ap.add_argument("--ck", default="auto", help="CK+48 data (or 'demo-ckplus'); 'auto': .data/CK+48.tar.xz, else "
                                                 ".data/CK+48.zip")
    ap.add_argument("--fer-landmarks", default="auto",
                    help="landmarks file of the FER2013 data (scripts/export_landmarks.py); 'auto': "
                         ".data/fer2013-landmarks.npz when present; 'none': attach them here (needs facenet-pytorch)")
    ap.add_argument("--ck-landmarks", default="auto", help="the same for CK+ ('auto': .data/ckplus-landmarks.npz)")
    ap.add_argument("--out", default=os.environ.get("OUT") or "out/gpu", help="archives and JSON files ($OUT)")
    ap.add_argument("--runs", default=None, help="run folders (checkpoints; default /dev/shm or /tmp)")
    ap.add_argument("--stage", default=None, help="results layout before packing (default /tmp/lkr-gpu-results)")
    ap.add_argument("--budget-s", type=float, default=540.0,
                    help="wall-clock seconds for everything from this script's start (default 540: the call's "
                         "600 s limit less setup)")
    ap.add_argument("--max-epochs", type=int, default=60, help="at most this many epochs (the paper's 60)")
    ap.add_argument("--epochs", type=int, default=0, help="force this many epochs (0: fitted to the budget)")
    ap.add_argument("--probe-epochs", type=int, default=2, help="epochs of each timing probe")
    ap.add_argument("--ck-folds", type=int, default=10, help="run the first N of the 10 subject folds")
    ap.add_argument("--extra-seeds", default="1,2", help="seeds of VGG19, LKRNet and LKRNet (stage 1) on FER2013 "
                                                           "after the rest "
                                                           "('' for none)")
    ap.add_argument("--only", default="fer,ck,ft,seeds", help="groups to run, in this order: fer,ck,ft,seeds")
    ap.add_argument("--subset", type=int, default=0,
                    help="keep N Training images and N/4 of each test split of FER2013, and whole CK+ subjects "
                         "up to N images (0: all)")
    ap.add_argument("--gradcam", type=int, default=16, help="Grad-CAM of this many PrivateTest faces")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a Config field for every run (repeatable)")
    ap.add_argument("--device", default=None, help="cuda / cpu (default: CUDA when present)")
    ap.add_argument("--pack-data", nargs=2, metavar=("ZIP", "TAR_XZ"),
                    help="only pack a dataset zip into a solid .tar.xz to carry (see pack_data) and exit")
    ap.add_argument("--dry-run", action="store_true",
                    help="the same steps on the CPU, tiny: --subset 200, 1 epoch, VGG19 at 1/8 width, batch 32, "
                         "2 CK+ folds, 1-epoch probes, Grad-CAM of 4 faces")
    args = ap.parse_args(argv)
    if args.pack_data:
        return args
    args.fer = _data_arg(args.fer, "fer2013")
    args.ck = _data_arg(args.ck, "CK+48")
    if args.dry_run:
        args.device = args.device or "cpu"
        args.subset = args.subset or 200
        args.max_epochs = min(args.max_epochs, 1)
        args.probe_epochs = 1
        args.ck_folds = min(args.ck_folds, 2)
        args.gradcam = min(args.gradcam, 4)
    for name in ("budget_s",):
        if not getattr(args, name) > 0:
            raise UserError(f"--{name.replace('_', '-')} must be > 0")
    for name in ("max_epochs", "probe_epochs"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be 1 or more")
    if args.epochs < 0 or args.subset < 0 or args.gradcam < 0:
        raise UserError("--epochs, --subset and --gradcam must be 0 or more")
    if not 1 <= args.ck_folds <= 10:
        raise UserError("--ck-folds must be in 1..10")
    try:
        args.seeds = [int(s) for s in args.extra_seeds.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--extra-seeds {args.extra_seeds!r}: expected seeds such as 1,2") from None
    if any(s <= 0 for s in args.seeds):
        raise UserError("--extra-seeds: seeds other than 0 (seed 0 is the main run)")
    args.groups = [g.strip() for g in args.only.split(",") if g.strip()]
    bad = [g for g in args.groups if g not in ("fer", "ck", "ft", "seeds")]
    if bad:
        raise UserError(f"--only {bad[0]!r}: choose from fer, ck, ft, seeds")
    for ref in (args.fer, args.ck):
        if ref not in ("demo", "demo-ckplus") and not Path(ref).exists():
            raise UserError(f"{ref}: no such file (copy the dataset there, see docs/gpu-runs.md, or pass --fer/--ck)")
    args.fer_landmarks = _landmarks_arg(args.fer_landmarks, REPO / ".data" / "fer2013-landmarks.npz", args.fer)
    args.ck_landmarks = _landmarks_arg(args.ck_landmarks, REPO / ".data" / "ckplus-landmarks.npz", args.ck)
    return args


def _data_arg(value: str, stem: str) -> str:
    if value != "auto":
        return value
    packed = REPO / ".data" / f"{stem}.tar.xz"
    return str(packed if packed.is_file() else REPO / ".data" / f"{stem}.zip")


def _landmarks_arg(value: str, default: Path, data: str) -> Path | None:
    if value == "none":
        return None
    if value == "auto":
        return default if default.is_file() and data not in ("demo", "demo-ckplus") else None
    if not Path(value).is_file():
        raise UserError(f"{value}: no such landmarks file (make it with scripts/export_landmarks.py)")
    return Path(value)


# --- data -------------------------------------------------------------------------------------
TAR_SUFFIXES = (".tar.xz", ".tar.gz", ".tar")


def pack_data(src: Path, dst: Path) -> None:
    """A dataset zip as one solid, reproducible ``.tar.xz`` (the same members, the same bytes):
    FER2013's 35,887 small JPEGs share their tables, so the solid archive is 41.4 MB against the
    zip's 53.9 MB, which is what lets the datasets travel with the repository (docs/gpu-runs.md)."""
    import zipfile

    if not zipfile.is_zipfile(src):
        raise UserError(f"{src}: not a zip file (--pack-data packs a dataset zip)")
    if not dst.name.endswith(".tar.xz"):
        raise UserError(f"{dst}: the packed file's name must end in .tar.xz")
    tmp = dst.with_name(dst.name + ".tmp")
    with zipfile.ZipFile(src) as z, tarfile.open(tmp, "w:xz", preset=9) as tar:
        for info in sorted((i for i in z.infolist() if not i.is_dir()), key=lambda i: i.filename):
            ti = tarfile.TarInfo(info.filename)
            ti.size, ti.mtime, ti.mode = info.file_size, 0, 0o644
            with z.open(info) as f:
                tar.addfile(ti, f)
    os.replace(tmp, dst)


def unpack_data(src: Path, work: Path) -> Path:
    """The zip a ``.tar.xz`` from :func:`pack_data` was made of (same member names and bytes,
    stored), under ``work``; the kit reads it as it reads the original."""
    import zipfile

    name = src.name
    for suffix in TAR_SUFFIXES:
        if name.endswith(suffix):
            name = name[:-len(suffix)]
    dst = work / f"{name}.zip"
    work.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    try:
        with tarfile.open(src, "r:*") as tar, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
            for m in tar:
                if m.isfile():
                    z.writestr(m.name, tar.extractfile(m).read())
    except (tarfile.TarError, EOFError, OSError) as e:
        raise UserError(f"{src}: cannot be unpacked ({type(e).__name__}: {e}); pack it again with "
                        "--pack-data") from None
    os.replace(tmp, dst)
    return dst


def attach_landmarks_file(ds, path: Path):
    """Attach boxes / points / detected from a file written by scripts/export_landmarks.py,
    matched by each image's path relative to the dataset; the template rows are set again as
    :func:`lkr.landmarks.attach_landmarks` sets them (Training faces only, or the built-in
    template for data without a Training split)."""
    from lkr.landmarks import dataset_template

    with np.load(path, allow_pickle=False) as z:
        where = {p: i for i, p in enumerate(z["paths"].tolist())}
        rel = ds.relative_paths().tolist()
        missing = [p for p in rel if p not in where]
        if missing:
            raise UserError(f"{path}: lacks {len(missing)} of the {len(rel)} images of {ds.source} (e.g. "
                            f"{missing[0]}); export it again from this data with scripts/export_landmarks.py")
        idx = np.array([where[p] for p in rel], dtype=np.int64)
        boxes, points = z["boxes"][idx].astype(np.float32), z["points"][idx].astype(np.float32)
        detected = z["detected"][idx].astype(bool)
    tb, tp, _ = dataset_template(ds, boxes, points, detected)
    boxes[~detected], points[~detected] = tb, tp
    from dataclasses import replace

    return replace(ds, boxes=boxes, points=points, detected=detected, notes=list(ds.notes))


def subset_of(ds, n: int):
    """A small part for a trial: FER2013-like data keeps n Training images and n // 4 of every
    other split (seeded); CK+-like data keeps whole subjects (seeded order) up to n images, and
    at least 20 subjects (10 folds of 2)."""
    rng = np.random.default_rng(0)
    if ds.evaluation == "folds":
        subj = np.asarray(ds.subjects).astype(str)
        keep: list[int] = []
        for i, s in enumerate(rng.permutation(np.unique(subj))):
            if len(keep) >= n and i >= 20:
                break
            keep.extend(np.flatnonzero(subj == s).tolist())
        return ds.subset(np.sort(np.array(keep, dtype=np.int64)))
    parts = [rng.permutation(np.flatnonzero(ds.splits == s))[:(n if s == "Training" else max(n // 4, 7))]
             for s in ds.split_names]
    return ds.subset(np.sort(np.concatenate(parts)))


def load_data(ref: str, landmarks: Path | None, subset: int, needs_landmarks: bool):
    from lkr.readers import load_dataset

    t0 = time.monotonic()
    if ref.endswith(TAR_SUFFIXES):
        ref = str(unpack_data(Path(ref), Path("/tmp/lkr-data")))
        log(f"unpacked into {ref} in {time.monotonic() - t0:.1f} s")
    ds = load_dataset(ref)
    if landmarks is not None:
        ds = attach_landmarks_file(ds, landmarks)
    if subset:
        ds = subset_of(ds, subset)
    if needs_landmarks and not ds.has_landmarks:
        try:
            import facenet_pytorch  # noqa: F401
        except ImportError:
            raise UserError(f"{ref}: no landmarks file and no facenet-pytorch here; export them on a CPU with "
                            "scripts/export_landmarks.py into .data/ (docs/gpu-runs.md)") from None
        from lkr.landmarks import attach_landmarks

        ds = attach_landmarks(ds, progress=False)
    log(f"data {ds.name}: {len(ds)} images {ds.summary()['splits']}, landmarks "
        f"{'from ' + str(landmarks) if landmarks else ('with the data' if ds.has_landmarks else 'none')}, "
        f"{time.monotonic() - t0:.1f} s")
    return ds


# --- bookkeeping ------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(f"[gpu_run {time.monotonic() - T_START:6.1f}s] {msg}", flush=True)


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    os.replace(tmp, path)


@dataclass
class Budget:
    seconds: float

    def left(self) -> float:
        return self.seconds - (time.monotonic() - T_START)

    def fits(self, estimate: float) -> bool:
        return estimate * SAFETY <= self.left() - RESERVE_S


@dataclass
class Costs:
    """Measured seconds: per epoch (training + selection) and per run besides its epochs."""

    fer_epoch: dict[str, float] = field(default_factory=dict)  # by probe config
    fer_fixed: dict[str, float] = field(default_factory=dict)
    ck_epoch: float = 0.0  # one fold, LKRNet
    ck_fixed: float = 0.0
    post: dict[str, float] = field(default_factory=lambda: dict(POST_GUESS))
    # whole runs measured in this call: (key, probe config, epochs) -> seconds of one run / CK+ fold,
    # its export and packing included; preferred to the probes' sums once there
    measured: dict[tuple[str, str, int], float] = field(default_factory=dict)

    def probe_of(self, name: str) -> str:
        from lkr.experiments import KNOWN_CONFIGS

        spec = KNOWN_CONFIGS[name]
        if spec.get("mask_stage", 5) == 1:
            return "stage1"  # estimated from LKRNet's probe (STAGE1_FACTOR) until one is measured
        return "lkrnet" if spec["variant"] in ("lkrnet", "baseline1") else "vgg19"

    def fer_run(self, name: str, epochs: int) -> float:
        p = self.probe_of(name)
        if ("fer2013", p, epochs) in self.measured:
            return self.measured[("fer2013", p, epochs)]
        if p == "stage1":
            return self.fer_fixed["lkrnet"] + epochs * self.fer_epoch["lkrnet"] * STAGE1_FACTOR + self.post["fer2013"]
        return self.fer_fixed[p] + epochs * self.fer_epoch[p] + self.post["fer2013"]

    def ck_config(self, name: str, epochs: int, folds: int) -> float:
        p = self.probe_of(name)
        if ("ckplus", p, epochs) in self.measured:
            return folds * self.measured[("ckplus", p, epochs)]
        if p == "stage1":
            ratio = STAGE1_FACTOR
        else:
            ratio = self.fer_epoch[p] / self.fer_epoch["lkrnet"] if self.fer_epoch.get("lkrnet") else 1.0
        return folds * (self.ck_fixed + epochs * self.ck_epoch * ratio + self.post["ckplus"])


def fit_epochs(costs: Costs, budget_left: float, max_epochs: int, fer: list[str], ck: list[str],
               folds: int) -> int:
    """The most epochs (<= max_epochs, >= 1) at which the FER2013 and CK+ groups both fit
    ``budget_left`` (each estimate times SAFETY, RESERVE_S kept free)."""
    def total(e: int) -> float:
        return (sum(costs.fer_run(n, e) for n in fer) + sum(costs.ck_config(n, e, folds) for n in ck)) * SAFETY

    e = max_epochs
    while e > 1 and total(e) > budget_left - RESERVE_S:
        e -= 1
    return e


def warmup_for(epochs: int, base_epochs: int, base_warmup: int) -> int:
    """The preset's warm-up share kept at fewer epochs (the paper: 20 of 60 -> a third)."""
    if epochs >= base_epochs:
        return base_warmup
    return int(round(epochs * base_warmup / max(base_epochs, 1)))


class Packer:
    """One archive per group under ``out``, rewritten (atomically) whenever a configuration ends."""

    def __init__(self, out: Path, stage: Path):
        self.out, self.stage = out, stage

    def folder(self, group: str) -> Path:
        return self.stage / group

    def pack(self, group: str) -> Path:
        dst = self.out / f"{group}.tar.gz"
        tmp = self.out / f".{group}.tar.gz.tmp"
        src = self.folder(group)
        with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
            for p in sorted(src.iterdir()):
                tar.add(p, arcname=p.name)
        os.replace(tmp, dst)
        mib = dst.stat().st_size / 2**20
        if mib >= 15.5:
            log(f"WARNING {dst.name} is {mib:.1f} MiB: a file back from the call must stay under 16 MiB")
        return dst


# --- the call ---------------------------------------------------------------------------------
class Call:
    def __init__(self, args: argparse.Namespace):
        import torch

        from lkr.train import _parse_set

        self.args = args
        self.torch = torch
        self.dev = torch.device(args.device) if args.device else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        if self.dev.type == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device here")
        self.device_name = (torch.cuda.get_device_name(self.dev) if self.dev.type == "cuda" else "cpu")
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.runs = Path(args.runs) if args.runs else _default_runs()
        self.stage = Path(args.stage) if args.stage else Path("/tmp/lkr-gpu-results")
        shutil.rmtree(self.stage, ignore_errors=True)
        self.packer = Packer(self.out, self.stage)
        self.budget = Budget(args.budget_s)
        try:
            self.overrides = {**(DRY_OVERRIDES if args.dry_run else {}), **_parse_set(args.set)}
        except Exception as e:  # lkr's TrainingError: one line
            raise UserError(str(e)) from None
        if "seed" in self.overrides:
            raise UserError("--set seed: the seeds are 0 and --extra-seeds")
        self.costs = Costs()
        self.rows: list[dict[str, Any]] = []
        self.skipped: list[dict[str, Any]] = []
        self.failed: list[dict[str, Any]] = []
        self.plan: dict[str, Any] = {}
        self.throughput: dict[str, Any] = {}
        self.fer_runs: dict[str, Path] = {}  # config -> finished seed-0 FER2013 run (fine-tuning sources)
        # what each run records as its data ("data" in metrics.json, for lkr evaluate): a packed
        # .tar.xz as the zip it was packed from, beside it, where the CPU that packed it has it
        self.fer_ref, self.ck_ref = _record_ref(args.fer), _record_ref(args.ck)
        self.ck_broken = False  # the CK+ probe failed: the CK+ groups are dropped, FER2013 goes on

    # configs --------------------------------------------------------------------------------
    def cfg(self, ds, name: str, *, epochs: int | None, seed: int = 0, scale: str = "full", **extra):
        from lkr.config import VGG19_CFG
        from lkr.experiments import config_of

        kw = dict(self.overrides)
        if self.args.dry_run and ds.kind == "demo":
            kw.setdefault("vgg_cfg", VGG19_CFG)  # the demo preset's thin stack -> VGG19 at 1/8 width
        base = config_of(ds, name, scale=scale, seed=seed, **{**kw, **extra})
        if epochs is None:
            return base
        warm = warmup_for(epochs, base.epochs, base.warmup_epochs)
        return config_of(ds, name, scale=scale, seed=seed,
                         **{**kw, **extra, "epochs": epochs, "warmup_epochs": warm, "checkpoint_every": epochs})

    def train(self, ds, cfg, run: Path, fold: int | None, data_ref: str) -> tuple[dict[str, Any], float]:
        from lkr.train import train

        shutil.rmtree(run, ignore_errors=True)
        t0 = time.monotonic()
        m = train(ds, cfg, run, device=self.dev, fold=fold, folds=10, progress=False, resume=False,
                  data_ref=data_ref)
        return m, time.monotonic() - t0

    # probes ---------------------------------------------------------------------------------
    def probe(self, fer, ck) -> None:
        """Time epochs of VGG19 and LKRNet on FER2013 and of LKRNet on a CK+ fold."""
        pe = self.args.probe_epochs
        for name in PROBE_CONFIGS:
            cfg = self.cfg(fer, name, epochs=pe)
            cfg = cfg.__class__(**{**cfg.to_dict(), "warmup_epochs": 0})
            m, wall = self.train(fer, cfg, self.runs / "probe" / name, None, self.fer_ref)
            hist = json.loads((self.runs / "probe" / name / "history.json").read_text())
            last = hist[-1]
            per_epoch = last["seconds"] + last.get("select_seconds", 0.0)
            epochs_s = sum(h["seconds"] + h.get("select_seconds", 0.0) for h in hist)
            self.costs.fer_epoch[name] = per_epoch
            self.costs.fer_fixed[name] = max(wall - epochs_s, 0.0)
            self.throughput[name] = {
                "images_per_s": last["images_per_s"], "epoch_seconds": last["seconds"],
                "select_seconds": last.get("select_seconds"), "n_train": m["n_train"],
                "steps_per_epoch": max(int(m["n_train"]) // min(cfg.batch_size, int(m["n_train"])), 1),
                "per_epoch_images_per_s": [h["images_per_s"] for h in hist], "run_overhead_seconds":
                self.costs.fer_fixed[name], "precision": m.get("precision"), "device": m.get("device")}
            log(f"probe fer2013 {name}: {last['seconds']:.2f} s/epoch training ({last['images_per_s']:.0f} images/s), "
                f"{last.get('select_seconds', 0):.2f} s selection, {self.costs.fer_fixed[name]:.1f} s besides epochs")
            shutil.rmtree(self.runs / "probe" / name, ignore_errors=True)
        self.write_throughput(cfg)
        if ck is not None:
            self.probe_ck(ck, pe)

    def probe_ck(self, ck, pe: int) -> None:
        try:
            cfg = self.cfg(ck, "lkrnet", epochs=pe)
            cfg = cfg.__class__(**{**cfg.to_dict(), "warmup_epochs": 0})
            m, wall = self.train(ck, cfg, self.runs / "probe" / "ck-lkrnet", 0, self.ck_ref)
            hist = json.loads((self.runs / "probe" / "ck-lkrnet" / "history.json").read_text())
            self.costs.ck_epoch = hist[-1]["seconds"] + hist[-1].get("select_seconds", 0.0)
            self.costs.ck_fixed = max(wall - sum(h["seconds"] + h.get("select_seconds", 0.0) for h in hist), 0.0)
            log(f"probe ckplus lkrnet fold 0: {self.costs.ck_epoch:.3f} s/epoch, {self.costs.ck_fixed:.1f} s besides")
            shutil.rmtree(self.runs / "probe" / "ck-lkrnet", ignore_errors=True)
        except Exception as e:  # noqa: BLE001 - CK+ must not cost FER2013 its runs
            self.fail("ckplus probe (CK+ groups dropped)", e)
            self.ck_broken = True

    def write_throughput(self, cfg) -> None:
        torch = self.torch
        doc = {"device": self.device_name, "date": time.strftime("%Y-%m-%d", time.gmtime()), "torch": torch.__version__,
               "cuda": torch.version.cuda if self.dev.type == "cuda" else None,
               "what": "training images/s of the kit's trainer (data and augmentation on the device, semi-hard "
                       "in-batch triplets where lambda > 0), the last epoch of a probe on FER2013 Training "
                       "(the first includes cuDNN autotuning); selection not included",
               "width": cfg.width, "batch_size": cfg.batch_size, "crop": cfg.crop, "amp": cfg.amp,
               "channels_last": cfg.channels_last, "compile": cfg.compile, "triplet_mining": cfg.triplet_mining,
               "probe_epochs": self.args.probe_epochs, "dry_run": self.args.dry_run,
               "configs": self.throughput, "anchors_h100_images_per_s": ANCHORS_H100}
        write_json_atomic(self.out / "throughput.json", doc)

    # groups ---------------------------------------------------------------------------------
    def note_metrics(self, path: Path, wall: float, epochs_note: str) -> None:
        from lkr.runfolder import write_json

        m = json.loads(path.read_text())
        m.update({"wall_seconds": wall, "epochs_note": epochs_note})  # device and precision: the trainer's
        write_json(path, m)

    def row(self, group: str, name: str, seed: int, m: dict[str, Any], wall: float, folds: int | None) -> None:
        prec = m.get("precision")
        prec = prec[0] if isinstance(prec, list) and prec else prec
        self.rows.append({"group": group, "config": name, "seed": seed, "folds": folds,
                          "accuracy": m.get("accuracy"), "select_accuracy": m.get("select_accuracy"),
                          "fold_accuracy_mean": m.get("fold_accuracy_mean"), "best_epoch": m.get("best_epoch"),
                          "epochs": m.get("epochs"), "train_seconds": m.get("train_seconds"), "wall_seconds": wall,
                          "precision": (prec or {}).get("precision") if isinstance(prec, dict) else prec,
                          "device": m.get("device")})
        self.write_summary()

    def write_summary(self, done: bool = False) -> None:
        write_json_atomic(self.out / "summary.json", {
            "device": self.device_name, "dry_run": self.args.dry_run, "budget_s": self.args.budget_s,
            "elapsed_s": time.monotonic() - T_START, "finished": done, "plan": self.plan,
            "costs": {"fer_epoch": self.costs.fer_epoch, "fer_fixed": self.costs.fer_fixed,
                      "ck_epoch": self.costs.ck_epoch, "ck_fixed": self.costs.ck_fixed, "post": self.costs.post,
                      "measured": {"/".join(map(str, k)): v for k, v in self.costs.measured.items()}},
            "runs": self.rows, "skipped": self.skipped, "failed": self.failed})

    def skip(self, what: str, why: str) -> None:
        self.skipped.append({"what": what, "why": why})
        log(f"skip {what}: {why}")
        self.write_summary()

    def fail(self, what: str, e: BaseException) -> None:
        self.failed.append({"what": what, "error": f"{type(e).__name__}: {e}"})
        log(f"FAILED {what}: {type(e).__name__}: {e}")
        self.write_summary()

    def fer_group(self, fer, names: list[str], epochs: int, seed: int, note: str,
                  keep_for: float = 0.0) -> None:
        """FER2013 runs in order; a run outside :data:`CORE_FER` starts only when it fits with
        ``keep_for`` seconds (the CK+ estimate) still left after it."""
        from lkr import results as res

        faces = None
        for name in names:
            what = f"fer2013 {name}" + (f" seed {seed}" if seed else "")
            est = self.costs.fer_run(name, epochs)
            keep = 0.0 if name in CORE_FER else keep_for
            if not self.budget.fits(est + keep):
                self.skip(what, f"needs ~{est:.0f} s" + (f" and ~{keep:.0f} s kept for CK+" if keep else "")
                          + f", {max(self.budget.left(), 0.0):.0f} s left")
                continue
            try:
                cfg = self.cfg(fer, name, epochs=epochs, seed=seed)
                group = f"fer2013-{cfg.scale}" + ("-seeds" if seed else "")
                run = res.run_dir_for(self.runs, cfg.scale, "fer2013", name, seed=seed)
                m, wall = self.train(fer, cfg, run, None, self.fer_ref)
                t0 = time.monotonic()
                dest = res.run_dir_for(self.packer.folder(group), cfg.scale, "fer2013", name, seed=seed)
                res.export_run(run, dest, embeddings=seed == 0)
                if seed == 0 and self.args.gradcam:
                    if faces is None:
                        faces = res.gradcam_faces(fer, np.load(run / "predictions.npz")["index"], n=self.args.gradcam)
                    res.export_gradcam(run, dest, fer, faces, device=str(self.dev))
                self.note_metrics(dest / "metrics.json", wall, note)
                self.packer.pack(group)
                (run / "checkpoint.pt").unlink(missing_ok=True)
                if seed == 0:
                    self.fer_runs[name] = run
                else:
                    (run / "best.pt").unlink(missing_ok=True)
                self.costs.post["fer2013"] = time.monotonic() - t0
                self.costs.measured[("fer2013", self.costs.probe_of(name), epochs)] = wall + self.costs.post["fer2013"]
                self.row(group, name, seed, m, wall, None)
                log(f"{what}: PrivateTest {100 * m['accuracy']:.2f}% (epoch {m['best_epoch']}/{cfg.epochs} on "
                    f"PublicTest {100 * m['select_accuracy']:.2f}%), {wall:.0f} s, packed {group}.tar.gz")
            except Exception as e:  # noqa: BLE001 - one run's failure must not cost the others
                self.fail(what, e)

    def ck_group(self, ck, names: list[str], epochs: int, note: str, fine_tune: bool) -> None:
        from lkr import results as res
        from lkr.config import FINE_TUNE, SCALES

        folds = list(range(self.args.ck_folds))
        for name in names:
            what = f"ckplus {name}" + (" fine-tuned" if fine_tune else "")
            extra: dict[str, Any] = {}
            scale = "full"
            if fine_tune:
                if name not in self.fer_runs:
                    self.skip(what, "its FER2013 run did not finish")
                    continue
                extra["init_from"] = str(self.fer_runs[name].resolve())
                scale = "full-ft" if "full-ft" in SCALES else "full"
            est = self.costs.ck_config(name, epochs, len(folds))
            if not self.budget.fits(est):
                self.skip(what, f"needs ~{est:.0f} s for {len(folds)} folds, {max(self.budget.left(), 0.0):.0f} s left")
                continue
            try:
                cfg = self.cfg(ck, name, epochs=epochs, scale=scale, **extra)
                folder = cfg.scale if (not fine_tune or cfg.scale in FINE_TUNE) else f"{cfg.scale}-ft"
                group = f"ckplus-{folder}"
                walls, t_post = [], 0.0
                for k in folds:
                    run = res.run_dir_for(self.runs, folder, "ckplus", name, k)
                    m, wall = self.train(ck, cfg, run, k, self.ck_ref)
                    t0 = time.monotonic()
                    dest = res.run_dir_for(self.packer.folder(group), folder, "ckplus", name, k)
                    res.export_run(run, dest, embeddings=False)
                    self.note_metrics(dest / "metrics.json", wall, note)
                    shutil.rmtree(run, ignore_errors=True)  # no CK+ run is a source of another
                    walls.append(wall)
                    t_post += time.monotonic() - t0
                pooled = res.pool_folds(res.run_dir_for(self.packer.folder(group), folder, "ckplus", name))
                self.note_metrics(res.run_dir_for(self.packer.folder(group), folder, "ckplus", name) / "metrics.json",
                                  float(sum(walls)), note)
                self.packer.pack(group)
                self.costs.post["ckplus"] = t_post / len(folds)
                self.costs.measured[("ckplus", self.costs.probe_of(name), epochs)] = (sum(walls) + t_post) / len(folds)
                self.row(group, name, 0, pooled, float(sum(walls)), len(folds))
                log(f"{what}: pooled {100 * pooled['accuracy']:.2f}% over {len(folds)} folds "
                    f"(mean {100 * pooled['fold_accuracy_mean']:.2f}%), {sum(walls):.0f} s, packed {group}.tar.gz")
            except Exception as e:  # noqa: BLE001
                self.fail(what, e)

    def run(self) -> int:
        args = self.args
        log(f"device {self.device_name} (torch {self.torch.__version__}), budget {args.budget_s:.0f} s, runs in "
            f"{self.runs}, out {self.out}")
        if self.dev.type == "cuda":  # CUDA's start here, not inside the first probe's timing
            self.torch.zeros(1, device=self.dev).add_(1)
            self.torch.cuda.synchronize(self.dev)
        want_ck = any(g in args.groups for g in ("ck", "ft"))
        fer = load_data(args.fer, args.fer_landmarks, args.subset, needs_landmarks=True)
        if fer.evaluation == "folds":
            raise UserError(f"--fer {args.fer}: CK+-like data (subject folds); pass FER2013 there")
        ck = load_data(args.ck, args.ck_landmarks, args.subset, needs_landmarks=True) if want_ck else None
        if ck is not None and ck.evaluation != "folds":
            raise UserError(f"--ck {args.ck}: data with official splits; pass CK+ there")
        self.probe(fer, ck)
        if self.ck_broken:
            ck = None

        fer_names = FER_ORDER if "fer" in args.groups else []
        ck_names = CK_ORDER if "ck" in args.groups and ck is not None else []
        base = self.cfg(fer, "vgg19", epochs=None)
        if args.epochs:
            epochs, why = args.epochs, f"{args.epochs} epochs as asked (--epochs)"
        else:
            epochs = fit_epochs(self.costs, self.budget.left(), min(args.max_epochs, base.epochs),
                                [n for n in fer_names if n in CORE_FER], ck_names, args.ck_folds)
            warm = warmup_for(epochs, base.epochs, base.warmup_epochs)
            if epochs == base.epochs:
                why = f"{epochs} epochs: the preset's {base.epochs}"
            elif epochs < args.max_epochs:
                why = (f"{epochs} of the preset's {base.epochs} epochs (warm-up {warm} of them), the most at which "
                       f"FER2013's VGG19 and LKRNet and CK+ fit the call's {args.budget_s:.0f} s budget (measured "
                       "epoch times)")
            else:
                why = f"{epochs} epochs (--max-epochs)"
        self.plan = {"epochs": epochs, "warmup_epochs": warmup_for(epochs, base.epochs, base.warmup_epochs),
                     "why": why, "groups": args.groups, "fer": fer_names, "ck": ck_names, "ck_folds": args.ck_folds,
                     "extra_seeds": args.seeds, "overrides": {k: v for k, v in self.overrides.items()}}
        log(f"plan: {why}")
        self.write_summary()

        if fer_names:
            keep_for = sum(self.costs.ck_config(n, epochs, args.ck_folds) for n in ck_names)
            self.fer_group(fer, fer_names, epochs, 0, why, keep_for=keep_for)
        ck_epochs, ck_why = epochs, why
        if ck is not None and not args.epochs:
            ck_epochs = fit_epochs(self.costs, self.budget.left(), epochs, [], ck_names or CK_ORDER, args.ck_folds)
            if ck_epochs < epochs:
                ck_why = (f"{ck_epochs} epochs (warm-up {warmup_for(ck_epochs, base.epochs, base.warmup_epochs)}): "
                          f"fewer than FER2013's {epochs}, to fit the time left after FER2013")
            self.plan["ck_epochs"] = ck_epochs
        if ck_names:
            self.ck_group(ck, ck_names, ck_epochs, ck_why, fine_tune=False)
        if "ft" in args.groups and ck is not None:
            self.ck_group(ck, CK_ORDER, ck_epochs, ck_why + "; fine-tuned from the same configuration's FER2013 run",
                          fine_tune=True)
        if "seeds" in args.groups:
            for seed in args.seeds:
                self.fer_group(fer, SEED_CONFIGS, epochs, seed, why)
            for name in SEED_AFTER if args.seeds else []:
                what = f"fer2013 {name} seeds {','.join(map(str, args.seeds))}"
                need = len(args.seeds) * self.costs.fer_run(name, epochs)
                if name not in self.fer_runs:
                    self.skip(what, "its seed 0 did not run: the table shows it only with every seed")
                elif not self.budget.fits(need):
                    self.skip(what, f"needs ~{need:.0f} s for all of them, {max(self.budget.left(), 0.0):.0f} s left")
                else:
                    for seed in args.seeds:
                        self.fer_group(fer, [name], epochs, seed, why)
        self.write_summary(done=True)
        self.print_table()
        files = sorted(p.name for p in self.out.iterdir())
        log(f"done in {time.monotonic() - T_START:.0f} s; {len(files)} files in {self.out}: {', '.join(files)}")
        return 1 if self.failed else 0

    def print_table(self) -> None:
        print(f"\n{'group':<20}{'config':<13}{'seed':>5}{'folds':>6}{'test %':>8}{'select %':>9}{'best':>5}"
              f"{'epochs':>7}{'wall s':>8}  precision / device")
        for r in self.rows:
            sel = r["select_accuracy"] if r["select_accuracy"] is not None else r["fold_accuracy_mean"]
            print(f"{r['group']:<20}{r['config']:<13}{r['seed']:>5}{r['folds'] or '':>6}{100 * r['accuracy']:>8.2f}"
                  f"{100 * (sel or 0):>9.2f}{r['best_epoch'] or '':>5}{r['epochs']:>7}{r['wall_seconds']:>8.0f}  "
                  f"{r['precision']} / {r['device']}")
        for s in self.skipped:
            print(f"skipped: {s['what']} ({s['why']})")
        for f in self.failed:
            print(f"FAILED: {f['what']} ({f['error']})")


def _record_ref(ref: str) -> str:
    """The data a run records: inside the checkout relative to it (the checkout's place on the
    GPU machine means nothing elsewhere); a packed archive as its zip."""
    for suffix in TAR_SUFFIXES:
        if ref.endswith(suffix):
            ref = ref[:-len(suffix)] + ".zip"
    p = Path(ref)
    if p.is_absolute() and p.resolve().is_relative_to(REPO):
        return str(p.resolve().relative_to(REPO))
    return ref


def _default_runs() -> Path:
    """Run folders in memory when there is room (checkpoints are written with fsync)."""
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 4 * 2**30:
            return shm / "lkr-gpu-runs"
    except OSError:
        pass
    return Path("/tmp/lkr-gpu-runs")


def main(argv: list[str] | None = None) -> int:
    from lkr.errors import LkrError

    try:
        args = parse_args(argv)
        if args.pack_data:
            src, dst = (Path(p) for p in args.pack_data)
            if not src.is_file():
                raise UserError(f"{src}: no such file")
            t0 = time.monotonic()
            pack_data(src, dst)
            print(f"{dst}: {dst.stat().st_size} bytes ({dst.stat().st_size / 2**20:.1f} MiB) from {src} "
                  f"({src.stat().st_size} bytes) in {time.monotonic() - t0:.0f} s")
            return 0
        return Call(args).run()
    except (UserError, LkrError) as e:
        print(f"gpu_run: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
