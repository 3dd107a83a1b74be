"""One config dataclass whose defaults are the paper's values (Table 1, Sec. 3-4.2).

The four configurations of the paper are this config with two fields changed:

=========== ============ ================
variant     local_branch triplet_lambda
=========== ============ ================
vgg19       False        0.0
baseline1   True         0.0
baseline2   False        0.2
lkrnet      True         0.2
=========== ============ ================

Every choice the paper leaves open is a field here and is explained in ``docs/method.md``.

Scales: the whole experiment set is trained at a named scale (:data:`SCALES`): "full" is the
paper's (these defaults), "cpu" a reduced scale that trains on a CPU; the built-in demo set
always gets its own preset (:data:`DEMO_OVERRIDES`, scale "demo"). A config records its scale
in ``scale``, results are kept apart by it (:mod:`lkr.results`), and every figure names it
(:func:`scale_label`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping

VARIANTS: dict[str, dict[str, Any]] = {
    "vgg19": {"local_branch": False, "triplet_lambda": 0.0},
    "baseline1": {"local_branch": True, "triplet_lambda": 0.0},
    "baseline2": {"local_branch": False, "triplet_lambda": 0.2},
    "lkrnet": {"local_branch": True, "triplet_lambda": 0.2},
}

MASK_POOLS = ("grid", "cover")
MASK_SOURCES = ("regions", "uniform", "face", "centre", "off-landmark", "off-landmark-band")
"""Where the local branch's mask comes from (:func:`lkr.regions.run_masks`)."""
SILENT_NEW_FIELDS = frozenset({"mask_band"})
"""Fields added after records were written whose default changes nothing for a record without
them (``mask_band`` acts only with the centre and off-landmark-band masks, which such a record
cannot have): a run folder that lacks them is read without a warning."""
TRIPLET_IMAGES_PER_ANCHOR = {"random": 3, "batch_hard": 1, "semi_hard": 1}
"""Each triplet mining mode and the images a step feeds per anchor: [anchors; positives;
negatives] for random triplets, the batch itself for the in-batch miners (:mod:`lkr.losses`
forms the triplets; this table is owned here, so the config never imports the losses)."""
TRIPLET_MININGS = tuple(TRIPLET_IMAGES_PER_ANCHOR)

# VGG19's conv stack as data: numbers are 3x3 conv widths, "M" a 2x2 max-pool (Fig. 3).
VGG19_CFG: tuple = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                    512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


@dataclass
class Config:
    """Everything a run needs; saved in every checkpoint and run folder.

    Model:
        variant: name of the configuration (informational; the two fields below decide).
        scale: name of the scale preset the config came from (informational, like ``variant``;
            the fields decide): a name of :data:`SCALES`, "demo" (the demo set's preset) or
            "custom" (a config built by hand). Records without it count as "full".
        local_branch: add the local key region branch p' = p * M (Eq. 4).
        triplet_lambda: weight of the triplet loss (Eq. 5); 0 = cross-entropy only.
        num_classes: 7 for both datasets.
        vgg_cfg: the conv stack.
        width: multiplier on every conv width (1.0 = VGG19; the CPU demo uses a thin net).
        batch_norm: BatchNorm after each conv. The paper does not say; the widely used PyTorch
            VGG19 for FER2013 has it, and VGG19 trained from scratch without it barely learns.
        mask_stage: index of the max-pool (1..5) *before which* the mask multiplies the
            feature maps. 5 (default) = the last 2x2 maps of a 44x44 crop; 4 = the 5x5 maps.
        mask_source: where the local branch's mask comes from: "regions" (Eq. 1-3 around the five
            landmarks; the paper's) or "uniform" (M = 1 everywhere: the local branch with no
            region information, a second head; a negative control, :mod:`lkr.control`), and the
            region control's masks without landmarks (:func:`lkr.regions.run_masks`): "face" (ones
            inside the face box), "centre" (ones on the centre square, zeros on a border band of
            ``mask_band`` pixels) and "off-landmark" (the five Eq. 3 rectangles centred on the
            forehead and cheeks, away from the landmarks); "off-landmark-band" is the latter with the
            border band of ``mask_band`` pixels zeroed (CK+48's tight crops put those rectangles on
            the border).
        mask_band: width in pixels of the border band that the "centre" and "off-landmark-band"
            masks zero.
        mask_pool: how the 44x44 mask is brought to the feature maps' size (Eq. 4's M(p)↓):
            "grid" = average-pooled on the grid the max-pools floor onto (44 -> 22 -> 11 -> 5 -> 2:
            only rows and columns 0-31 of the crop reach the 2x2 maps, so the mouth regions
            barely count); "cover" = adaptive average pooling of the whole crop onto (h, w)
            (each 2x2 cell averages a 22x22 quarter). See docs/method.md for the coverage of
            each region under both.
        fc_dims: hidden widths of each branch's head (FC 4096 -> FC 256 -> FC classes).
        dropout: drop probability after each hidden FC. The paper's Table 1 "0.8" is read as a
            keep probability (TensorFlow convention), i.e. p = 0.2 in PyTorch.
        fusion: how the branches' logits make the prediction: "mean" of the two logits.
        head_init: initialisation of the heads' FC layers: "pytorch" (default) = PyTorch's own
            Linear init (uniform, scaled by 1/sqrt(fan_in)): the paper's model is "based on
            PyTorch" and says nothing of initialisation, so a plain nn.Linear is the likeliest
            reading; "vgg" = N(0, 0.01) as torchvision's VGG. With thin heads (the CPU demo)
            N(0, 0.01) shrinks the signal through three layers so much that short runs only learn
            the class prior.
    Local key regions (Eq. 1-3):
        alpha: region size as a fraction of the face box (0.3).
        mask_merge: how overlapping regions merge: "max".
    Loss (Eq. 5-9):
        triplet_margin: alpha of Eq. 8-9, on squared distances.
        normalize_embeddings: L2-normalise the 256-d embeddings before the triplet loss.
        triplet_mining: how triplets are formed. "random" = for each of the B anchors a random
            positive and negative of the training set are drawn and pushed through the network
            too (3B images a step, cross-entropy over all of them); "batch_hard" = in-batch
            mining (Hermans et al. 2017): every image of an ordinary batch of B is an anchor, its
            farthest positive and nearest negative in the batch form its triplet; "semi_hard" =
            FaceNet's (Schroff et al. 2015, cited by the paper): every (anchor, positive) pair of
            the batch with the nearest negative that is still farther than the positive (the
            farthest negative when none is). With in-batch mining a step holds B images, as the
            lambda = 0 configurations do. The default, at every scale, is "semi_hard": every
            configuration then sees the same B images and BatchNorm batch a step, so that a
            comparison with VGG19 is not a comparison of 3B against B images (docs/method.md);
            "random" stays an option.
        batch_classes: 0 = an ordinary shuffled batch (anchors whose class has no other image in
            the batch get no triplet); P > 0 = each batch holds P classes drawn at random,
            batch_size // P images of each (so that every anchor has positives). It changes the
            class mix the cross-entropy sees, so it applies to every configuration that sets it,
            lambda = 0 ones included (an experiment set's overrides give all of them the same
            batches); refused only with random triplets, which draw their own positives.
    Training (Sec. 4.2, Table 1):
        epochs, batch_size (anchors per step; a triplet step holds 3x as many images),
        lr, momentum, weight_decay, warmup_epochs, warmup_lr,
        schedule: "paper" (warmup_lr for warmup_epochs, then lr) or "cosine" (linear warm-up to
            lr over warmup_epochs, then cosine decay to 0).
        crop: training crop size (44 of 48). flip_p: horizontal flip probability.
        erase_blocks, erase_size: number and side of random black blocks per image.
        amp: bf16 autocast on CUDA.
        cpu_precision: on a CPU, "auto" (bf16 autocast only where a short measurement of this
            model on this machine finds it faster, see :mod:`lkr.cpu`), "fp32" or "bf16".
        channels_last: NHWC memory (CUDA and CPU: oneDNN's convolutions are faster in it).
        seed: seeds every random choice (weights, sampling, augmentation).
        select_split: the split used for epoch selection ("PublicTest" on FER2013, "val" on CK+).
        test_split: the split that is reported ("PrivateTest" on FER2013, "test" on CK+).
        eval_every: evaluate the selection split every this many epochs.
        select_crops: how the selection split is evaluated: "ten" (ten-crop, as the reported
            split always is) or "center" (the centre crop only: ten times cheaper).
        val_fraction: CK+ only: fraction of a fold's training subjects held out for selection.
        compile: wrap the model in torch.compile (CUDA only; compile time counts).
        checkpoint_every: write the resumable checkpoint every this many epochs (and at the end).
        embed_samples: how many test images (a fixed seeded subsample) keep their 256-d
            embedding in the run folder (float16), to keep run folders small.
        deterministic: deterministic GPU algorithms (``torch.use_deterministic_algorithms``,
            no cuDNN benchmarking, ``CUBLAS_WORKSPACE_CONFIG``); slower. CPU runs are
            bit-exact either way. See docs/determinism.md.
        init_from: "" (the default: weights initialised as the paper's network is, from
            scratch), or a trained run folder whose selected weights (``best.pt``) start this
            run: fine-tuning, e.g. CK+ from a FER2013 run of the same configuration. Every layer
            is copied but the class layers (``fc3`` of each head: the two datasets' class sets
            differ), which start fresh. The source must have the same architecture
            (:func:`lkr.runfolder.init_weights_from`).
    """

    variant: str = "lkrnet"
    scale: str = "full"
    local_branch: bool = True
    triplet_lambda: float = 0.2
    num_classes: int = 7
    vgg_cfg: tuple = VGG19_CFG
    width: float = 1.0
    batch_norm: bool = True
    mask_stage: int = 5
    mask_pool: str = "grid"
    mask_source: str = "regions"
    mask_band: int = 7
    fc_dims: tuple = (4096, 256)
    dropout: float = 0.2
    fusion: str = "mean"
    head_init: str = "pytorch"

    alpha: float = 0.3
    mask_merge: str = "max"

    triplet_margin: float = 0.2
    normalize_embeddings: bool = True
    triplet_mining: str = "semi_hard"
    batch_classes: int = 0

    epochs: int = 60
    batch_size: int = 128
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 20
    warmup_lr: float = 1e-4
    schedule: str = "paper"
    crop: int = 44
    flip_p: float = 0.5
    erase_blocks: int = 1
    erase_size: int = 3
    amp: bool = True
    cpu_precision: str = "auto"
    channels_last: bool = True
    seed: int = 0
    select_split: str = "PublicTest"
    test_split: str = "PrivateTest"
    eval_every: int = 1
    select_crops: str = "ten"
    val_fraction: float = 0.1
    compile: bool = False
    checkpoint_every: int = 1
    embed_samples: int = 1000
    deterministic: bool = False
    init_from: str = ""

    def __post_init__(self) -> None:
        """Reject values the model or the trainer cannot use, with one line naming the field.

        Raises:
            ConfigError: a ValueError and an LkrError (the CLI prints it as one line).
        """
        from lkr.errors import ConfigError

        pools = sum(1 for v in self.vgg_cfg if v == "M")
        checks = [
            (self.epochs >= 1, "epochs must be 1 or more"),
            (self.batch_size >= 1, "batch_size must be 1 or more"),
            (self.lr > 0 and self.warmup_lr >= 0, "lr must be > 0 and warmup_lr >= 0"),
            (self.warmup_epochs >= 0, "warmup_epochs must be 0 or more"),
            (0 < self.alpha <= 1, "alpha must be in (0, 1]"),
            (1 <= self.crop <= 48, "crop must be in 1..48"),
            (len(self.fc_dims) == 2, "fc_dims must hold two widths (hidden, embedding)"),
            (1 <= self.mask_stage <= pools, f"mask_stage must be in 1..{pools}"),
            (self.schedule in ("paper", "cosine"), "schedule must be paper or cosine"),
            (self.select_crops in ("ten", "center"), "select_crops must be ten or center"),
            (self.cpu_precision in ("auto", "fp32", "bf16"), "cpu_precision must be auto, fp32 or bf16"),
            (self.mask_pool in MASK_POOLS, f"mask_pool must be one of {', '.join(MASK_POOLS)}"),
            (self.mask_source in MASK_SOURCES, f"mask_source must be one of {', '.join(MASK_SOURCES)}"),
            (0 <= self.mask_band < 24, "mask_band must be in 0..23"),
            (self.triplet_mining in TRIPLET_MININGS, f"triplet_mining must be one of {', '.join(TRIPLET_MININGS)}"),
            (self.batch_classes >= 0 and (self.batch_classes == 0 or self.images_per_anchor == 1),
             "batch_classes must be >= 0, and > 0 only with in-batch triplet_mining (or lambda = 0)"),
            (self.batch_classes <= self.num_classes, "batch_classes must be at most num_classes"),
            (self.batch_classes == 0 or self.batch_size % self.batch_classes == 0,
             "batch_size must be a multiple of batch_classes"),
            (self.fusion == "mean", "fusion must be mean"),
            (self.mask_merge in ("max", "sum"), "mask_merge must be max or sum"),
            (self.head_init in ("vgg", "pytorch"), "head_init must be vgg or pytorch"),
            (0 <= self.flip_p <= 1, "flip_p must be in [0, 1]"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (self.triplet_lambda >= 0 and self.triplet_margin >= 0, "triplet_lambda and triplet_margin must be >= 0"),
            (self.eval_every >= 1 and self.checkpoint_every >= 1, "eval_every and checkpoint_every must be 1 or more"),
            (0 <= self.val_fraction < 1, "val_fraction must be in [0, 1)"),
            (self.width > 0, "width must be > 0"),
            (self.scale in SCALE_NAMES, f"scale must be one of {', '.join(SCALE_NAMES)}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"config: {msg}")

    @classmethod
    def for_variant(cls, variant: str, **overrides: Any) -> "Config":
        """The config of one of the paper's four configurations, with overrides.

        ``triplet_lambda`` given in overrides replaces the variant's default (e.g. LKRNet at 0.4).
        """
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
        kw = {"variant": variant, **VARIANTS[variant], **overrides}
        return cls(**kw)

    def check_trainable(self) -> None:
        """Refuse, in one line, a config that would train to nothing: a run that never leaves its
        warm-up. Checked when training starts (:func:`lkr.train.train`), not when a record is
        read, so that an older short run can still be evaluated, exported and used to predict.

        Raises:
            ConfigError: naming the fields and what to change.
        """
        from lkr.errors import ConfigError

        if not self.leaves_warmup:
            raise ConfigError(
                f"config: epochs ({self.epochs}) against warmup_epochs ({self.warmup_epochs}): this run never leaves "
                f"the warm-up (lr {self.warmup_lr:g}) and would stay near chance; pass fewer --warmup-epochs (e.g. 1) "
                "or more --epochs")

    @property
    def leaves_warmup(self) -> bool:
        """False for a run that never gets past its warm-up: under the "paper" schedule
        ``epochs <= warmup_epochs`` (every step at ``warmup_lr``), under "cosine" ``epochs <
        warmup_epochs`` (the ramp never reaches ``lr``)."""
        if self.warmup_lr >= self.lr:
            return True
        return self.epochs > self.warmup_epochs if self.schedule == "paper" else self.epochs >= self.warmup_epochs

    @property
    def uses_triplet(self) -> bool:
        return self.triplet_lambda > 0

    @property
    def images_per_anchor(self) -> int:
        """Images a step feeds per anchor: 3 with random triplets ([anchors; positives;
        negatives]), else 1 (lambda = 0, or triplets mined inside the batch); from
        :data:`TRIPLET_IMAGES_PER_ANCHOR`."""
        return TRIPLET_IMAGES_PER_ANCHOR[self.triplet_mining] if self.uses_triplet else 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def trains_like(self, other: "Config") -> bool:
        """Whether two configs train the same run: every field equal but ``scale``, which only
        names the preset a config came from (a run made with the same values by flags resumes
        under ``--scale``); ``init_from`` compares as the folder it names (relative or absolute)."""
        def key(c: "Config") -> dict[str, Any]:  # init_from: the same folder however it is spelled
            src = str(Path(c.init_from).expanduser().resolve()) if c.init_from else ""
            return {**c.to_dict(), "scale": None, "init_from": src}

        return key(self) == key(other)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        return cls(**kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# A small, short configuration for the built-in demo set on a CPU (used when the data is the
# demo set): the same architecture family written as data, but 5 VGG stages of one 3x3 conv
# each (8-16-32-64-64 channels) instead of VGG19's 16 convs, FC 256 heads (the embedding stays
# 256-d), PyTorch's default FC init (N(0, 0.01) leaves such thin heads stuck at the class
# prior), a warm-up + cosine schedule, and selection every 2 epochs. The demo's wall time is
# measured by benchmarks/bench_commands.py (docs/performance.md). A run on the FER2013-shaped
# demo set (1120 training images) takes ~10-15 s on one core, a CK+-shaped fold 2-5 s; every
# configuration ends far above chance (14%). 8 epochs instead of 10 left LKRNet at 28% on one
# CK+-shaped fold, so the preset keeps 10.
DEMO_OVERRIDES: dict[str, Any] = {
    "vgg_cfg": (8, "M", 16, "M", 32, "M", 64, "M", 64, "M"), "width": 1.0, "fc_dims": (256, 256),
    "head_init": "pytorch", "epochs": 10, "batch_size": 32, "lr": 0.1, "schedule": "cosine",
    "warmup_epochs": 1, "dropout": 0.1, "eval_every": 2, "embed_samples": 500,
    # fp32: a thin net gains little from bf16, and a fixed precision keeps the demo's runs (and
    # the tests built on them) independent of a timing measurement.
    "cpu_precision": "fp32",
}


# The scales the paper's experiment set is trained at: Config overrides, applied before the
# variant's fields and any flag. "full" = the paper's values (full-width VGG19, 60 epochs, the
# paper's schedule), the default, meant for a GPU. "cpu" = a reduced scale at which the whole set
# trains on a CPU. The "cpu" values were chosen by the sweep recorded in docs/cpu-runs.md; they
# live here and nowhere else.
SCALES: dict[str, dict[str, Any]] = {
    "full": {},
    # chosen by the sweep in docs/cpu-runs.md: VGG19 at 1/8 width reached 63.6% on PublicTest in
    # 28 epochs, 1/4 width 62.7% in 12 (about the same idle time); 1/8 trains the paper's
    # configurations at ~18 s an epoch on 2 cores, so 50 epochs keep the six FER2013 runs within
    # 2 hours. In-batch semi-hard mining: every configuration sees 128 images a step.
    "cpu": {"width": 0.125, "epochs": 50, "schedule": "cosine", "warmup_epochs": 1, "lr": 0.05,
            "triplet_mining": "semi_hard", "select_crops": "center", "eval_every": 1},
}
# "cpu-ft": CK+ at the CPU scale, each configuration fine-tuned from its own FER2013 run at the
# "cpu" scale (same seed): FINE_TUNE names the source. Chosen in docs/cpu-runs.md on the
# validation subjects of CK+ folds 0-2, against training from scratch at 1/8 and 1/4 width.
SCALES["cpu-ft"] = dict(SCALES["cpu"])
# "cpu-quarter": the "cpu" preset at 1/4 width (four times 1/8's conv FLOPs, everything else
# equal), to see whether LKRNet's gain over VGG19 grows with the network (docs/cpu-runs.md).
SCALES["cpu-quarter"] = {**SCALES["cpu"], "width": 0.25}
# "full-ft": CK+ at the paper's scale fine-tuned from the FER2013 "full" runs (the GPU call's
# third group, scripts/gpu_run.py): cpu-ft's protocol at full width.
SCALES["full-ft"] = dict(SCALES["full"])
FINE_TUNE: dict[str, tuple[str, str]] = {"cpu-ft": ("cpu", "fer2013"), "full-ft": ("full", "fer2013")}
"""Scales whose runs start from another run (``Config.init_from``): scale -> (the source's
scale, the source's dataset key); the source is the same configuration and seed."""
DEMO_SCALE = "demo"
"""The scale of every run on the built-in demo set (which always gets :data:`DEMO_OVERRIDES`)."""
SCALE_NAMES: tuple[str, ...] = (*SCALES, DEMO_SCALE, "custom")
"""Every value ``Config.scale`` may hold ("custom": a config built by hand)."""


def scale_preset(scale: str, *, demo: bool = False) -> tuple[str, dict[str, Any]]:
    """The scale a run is recorded under and the Config fields its preset sets.

    Args:
        scale: a name of :data:`SCALES`, or "demo".
        demo: the data is the built-in demo set: it always gets ("demo", :data:`DEMO_OVERRIDES`),
            whatever ``scale`` asks for.

    Returns:
        (scale name, Config overrides) (a copy: the caller may change it).

    Raises:
        ConfigError: for an unknown scale, or "demo" asked for other data than the demo set.
    """
    from lkr.errors import ConfigError

    if scale not in SCALES and scale != DEMO_SCALE:
        raise ConfigError(f"scale {scale!r}: choose from {', '.join(SCALES)}")
    if demo:
        return DEMO_SCALE, dict(DEMO_OVERRIDES)
    if scale == DEMO_SCALE:
        raise ConfigError(f"scale demo is the built-in demo set's preset; choose from {', '.join(SCALES)}")
    return scale, dict(SCALES[scale])


def scale_of(info: Mapping[str, Any]) -> str:
    """The scale a config.json or metrics.json dict records. Records written before scales
    existed count as "full", or "demo" when they are of the demo set."""
    if info.get("scale"):
        return str(info["scale"])
    demo = info.get("kind") == DEMO_SCALE or str(info.get("dataset") or "").startswith("demo")
    return DEMO_SCALE if demo else "full"


def scale_label(info: "Config | Mapping[str, Any]") -> str:
    """The scale of a run (or of a set of runs) in words, for figure and table titles.

    E.g. "CPU scale: VGG19 at 1/4 width, 24 epochs, AMD EPYC, 2 threads", "full scale (the
    paper's): VGG19, 60 epochs, NVIDIA H200", "demo set (synthetic): 10 epochs".

    Args:
        info: a :class:`Config`, or a config.json / metrics.json dict: its ``scale``
            (:func:`scale_of`), ``width``, ``epochs`` (an int, or a text such as "12-24"),
            ``vgg_cfg`` (absent: VGG19) and ``device`` (metrics only; a text or a list of texts)
            are used when present.
    """
    d = info.to_dict() if isinstance(info, Config) else dict(info)
    scale = scale_of(d)
    epochs = d.get("epochs")
    if epochs is not None:
        epochs = f"{epochs} epoch" if str(epochs) == "1" else f"{epochs} epochs"
    if scale == DEMO_SCALE:
        return "demo set (synthetic)" + (f": {epochs}" if epochs else "")
    width = float(d.get("width") or 1.0)
    vgg = tuple(d["vgg_cfg"]) if d.get("vgg_cfg") is not None else VGG19_CFG
    net = "VGG19" if vgg == VGG19_CFG else f"a {sum(v != 'M' for v in vgg)}-conv VGG"
    parts = [net if width == 1.0 else f"{net} at {_fraction(width)} width"]
    if epochs:
        parts.append(epochs)
    devices = d.get("device")
    devices = [devices] if isinstance(devices, str) else list(devices or [])
    if devices:
        parts.append(" / ".join(_short_device(x) for x in devices))
    precisions = d.get("precision")  # metrics: {"precision": "bf16", ...} per run, or a list of them
    precisions = [precisions] if isinstance(precisions, (dict, str)) else list(precisions or [])
    names = sorted({p.get("precision") if isinstance(p, dict) else p for p in precisions} - {None})
    if names and scale != "full":
        parts.append(" / ".join(names))
    paper = width == 1.0 and vgg == VGG19_CFG and d.get("epochs") in (None, Config.epochs)
    name = {"full": "full scale (the paper's)" if paper else "full scale", "cpu": "CPU scale",
            "cpu-ft": "CPU scale, fine-tuned from FER2013",
            "cpu-quarter": "CPU scale at 1/4 width",
            "full-ft": "full scale, fine-tuned from FER2013"}.get(scale, f"{scale} scale")
    return f"{name}: {', '.join(parts)}"


def _fraction(width: float) -> str:
    """0.25 -> "1/4"; a width that is no unit fraction -> "0.3×"."""
    f = Fraction(width).limit_denominator(64)
    return f"1/{f.denominator}" if f.numerator == 1 and float(f) == width else f"{width:g}×"


def _short_device(device: str) -> str:
    """"cpu (AMD EPYC, 2 threads)" (:func:`lkr.device.device_name`) -> "AMD EPYC, 2 threads"."""
    short = device[5:-1] if device.startswith("cpu (") and device.endswith(")") else device
    return short.replace(", 1 threads", ", 1 thread")  # records written before the plural was fixed
