"""RunConfig: the one object that describes a training run.

It is validated when built, so a typo fails at once with the list of valid names, not an hour
into a run. It round-trips through plain dicts (`to_dict`/`from_dict`) so it can be saved beside
the checkpoints, logged to MLflow verbatim and rebuilt on resume.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError

# Names are listed here rather than imported from their packages so that building a config
# (for example while compiling a pipeline) needs neither torch nor any dataset on disk.
DATASETS = (
    "fashion-mnist",
    "cifar10",
    "cifar100",
    "tiny-imagenet",
    "imagenet",
    "image-folder",
    "cub200",
    "aircraft",
    "cars",
)
MODELS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnext50",
    "preactresnet18",
    "tv_resnet18",
    "tv_resnet34",
    "tv_resnet50",
    "tv_resnet101",
    "tv_resnext50",
    "swin_t",
    "convnext_t",
)
METHODS = (
    "vanilla",
    "mixup",
    "cutmix",
    "manifoldmix",
    "saliencymix",
    "fmix",
    "puzzlemix",
    "resizemix",
    "automix",
    "adautomix",
)
MIX_BLOCK_METHODS = ("automix", "adautomix")
# The methods that bring their own EMA teacher (Method.teacher() is not None): it is their EMA
# network, so the engine's (ema_decay, ema_warmup) does not apply to them.
TEACHER_METHODS = ("automix", "adautomix")
# adautomix.eval.METRICS, in its order (docs/evaluation.md says what each reports)
EVAL_METRICS = ("top1", "top5", "loss", "ece", "fgsm", "corruption", "occlusion")
OPTIMIZERS = ("sgd", "adamw")
LOADERS = ("auto", "torch", "memory", "dali")
PRECISIONS = ("fp32", "bf16", "fp16")  # adautomix/precision.py
DEVICES = ("auto", "cpu", "cuda")
TRAIN_CROPS = ("auto", "pad", "flip", "rrc")
INTERPOLATIONS = ("bilinear", "bicubic")
CROP_SCALE = (0.08, 1.0)  # torchvision's RandomResizedCrop default area range


class ConfigError(InputError):
    """A run configuration that cannot work; the message names the field and the fix."""


# The one list of fields that say where a run happens and how visibly, never what it computes:
# its weights and figures are the same whatever their values (a step checkpoint's resume is
# exact, so checkpoint_minutes is one of them). The pipeline's checkpoint key leaves them out
# (steps/train.py), `compare` pools runs over them (compare.py) and a resume may change them.
UNCOMPUTED_FIELDS = (
    "output_dir",
    "data_root",
    "run_name",
    "progress",
    "num_workers",
    "checkpoint_minutes",
)
# Fields a resumed run may change besides: how long it runs (a finished run extended by more
# epochs; its cosine schedule is stretched from the resume on, and the change is logged), how
# often it logs sample grids, the device it continues on, how it reacts to a bad loss and the
# batch it evaluates in. Each
# may change a run's figures, so they stay in the checkpoint key and in compare's settings; every
# other field changes what is computed, and a resume under a different value is refused.
RESUMABLE_FIELDS = (
    *UNCOMPUTED_FIELDS,
    "epochs",
    "log_images_every",
    "device",
    "nonfinite_loss_limit",
    "eval_batch_size",
)
SEED_RANGE = 2**32  # numpy's seeds are 32-bit
# Names changed since runs were first written. A config.json or checkpoint written under the old
# ones still loads, mapped with a warning (upgrade_saved_config), so no earlier run is stranded.
RENAMED_FIELDS = {"val_subset": "test_subset"}
RENAMED_TEACHER_OPTIONS = {"momentum": "teacher_momentum"}

log = logging.getLogger("adautomix.config")


def _one_of(field_name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"unknown {field_name} {value!r}; valid: {', '.join(valid)}")


@dataclass(frozen=True)
class RunConfig:
    # what to train
    dataset: str = "fashion-mnist"
    model: str = "resnet18"
    method: str = "vanilla"
    # method options, e.g. {"alpha": 1.0} or AdAutoMix's {"mix_samples": 3, "beta": 0.3};
    # each method validates its own keys (see adautomix.mixers.create_method)
    method_args: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = False
    model_width: int = 0  # CIFAR-stem ResNets: stem/first-stage channels; 0: the paper's 64

    # data
    data_root: str = "data"  # prepared datasets live in data_root/NAME/
    subset: int = 0  # >0: train on the first N images of a fixed shuffle
    test_subset: int = 0  # >0: the test split is its first N images (0: all of them)
    # >0: each epoch's test figures during training (the curves, the median of the last epochs)
    # are measured on the first N test images only; the selected networks are still evaluated on
    # the whole test split (or test_subset) by `adautomix evaluate` and the pipeline's evaluate
    # step. A run of many short epochs then does not spend most of its time on the test split.
    epoch_test_subset: int = 0
    # Train images held out, stratified by class, as the validation split that selects the
    # checkpoint and judges the champion (data/split.py); 0: the paper's protocol, no validation
    # split (the last epoch is the one kept and it is judged on test).
    val_size: int = 0
    loader: str = "auto"
    num_workers: int = 2
    # images per evaluation batch (under torchrun: over all processes); 0: batch_size. Larger
    # batches only make evaluation faster (no autograd, eval-mode BatchNorm)
    eval_batch_size: int = 0
    # augmentation (adautomix/data/augment.py says what each loader does with these)
    image_size: int = 0  # 0: the dataset's native size for arrays, 224 for folders
    train_crop: str = "auto"  # pad: reflect-padded random crop; flip: no crop, a flip
    # only (arrays); rrc: RandomResizedCrop;
    # auto: pad for arrays, rrc for folders (whatever image_size)
    crop_scale: list[float] = field(default_factory=lambda: list(CROP_SCALE))  # rrc area fraction
    interpolation: str = "bilinear"  # of every resize: bilinear, bicubic
    resize_before_crop: int = 0  # rrc only: shorter side resized to this first (and the test
    # split centre-crops from it); 0: off
    randaugment: bool = False  # RandAugment, 2 ops at magnitude 9 (torch and dali loaders)
    # Per-channel normalisation in [0, 1] units; empty: the dataset's own train statistics. The
    # official recipes use fixed constants (CIFAR's or ImageNet's), which the presets set.
    normalize_mean: list[float] = field(default_factory=list)
    normalize_std: list[float] = field(default_factory=list)

    # optimisation
    epochs: int = 2
    batch_size: int = 100
    optimizer: str = "sgd"
    lr: float = 0.1
    min_lr: float = 0.0  # cosine floor
    warmup_epochs: float = 0.0
    lr_schedule_by: str = (
        "epoch"  # "epoch": lr set once per epoch (mmcv style); "step": per iteration
    )
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # The mix block's own schedule (AutoMix/AdAutoMix beyond CIFAR): 0 keeps it in the main group.
    mix_block_lr: float = 0.0
    mix_block_min_lr: float = 0.0
    exclude_norm_bias_decay: bool = False  # no weight decay on norms, biases, position tables
    grad_clip: float = 0.0  # max global gradient norm; 0 disables
    label_smoothing: float = 0.0
    ema_decay: float = 0.999  # EMA of the online weights, evaluated every epoch; 0 disables
    ema_warmup: bool = True  # decay min(ema_decay, (1 + t) / (10 + t)) at step t
    # autocast of the training step's and evaluation's forward passes: fp32 (none, as the
    # paper trained), bf16, or fp16 with loss scaling (CUDA only); adautomix/precision.py
    precision: str = "fp32"
    # NHWC convolution weights and activations: faster on CPUs (oneDNN) and on tensor cores
    channels_last: bool = True
    # Distributed runs (torchrun): BatchNorm computes its batch statistics over every rank's
    # share of the batch (SyncBatchNorm), in the online network and the EMA teacher; CUDA only
    sync_bn: bool = False

    # run
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    output_dir: str = "runs/default"
    experiment: str = "adautomix"
    run_name: str = ""
    log_images_every: int = 1  # epochs between mixed-sample grids (0: never)
    progress: bool = True
    # Stop the run (FAILED, nothing checkpointed or registered) once this many training losses
    # were NaN or infinite; 1 stops at the first. Below the limit, such a step is skipped.
    nonfinite_loss_limit: int = 1
    # Minutes between mid-epoch checkpoints (besides the one at every epoch's end), so a lost
    # node costs at most this much training; 0: epoch ends only. A resume from one is exact.
    checkpoint_minutes: float = 10.0

    def __post_init__(self) -> None:
        self._check_types()
        _one_of("dataset", self.dataset, DATASETS)
        _one_of("model", self.model, MODELS)
        _one_of("method", self.method, METHODS)
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("loader", self.loader, LOADERS)
        _one_of("device", self.device, DEVICES)
        _one_of("precision", self.precision, PRECISIONS)
        if self.precision == "fp16" and self.device == "cpu":
            raise ConfigError(
                "precision fp16 needs a CUDA device; use --precision bf16 or fp32 on the CPU"
            )
        self._check_augmentation()
        _one_of("lr_schedule_by", self.lr_schedule_by, ("epoch", "step"))
        if not isinstance(self.method_args, dict):
            raise ConfigError(f"method_args must be a dict, got {type(self.method_args).__name__}")
        positive = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "nonfinite_loss_limit": self.nonfinite_loss_limit,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        non_negative = {
            "subset": self.subset,
            "test_subset": self.test_subset,
            "epoch_test_subset": self.epoch_test_subset,
            "val_size": self.val_size,
            "eval_batch_size": self.eval_batch_size,
            "model_width": self.model_width,
            "num_workers": self.num_workers,
            "min_lr": self.min_lr,
            "warmup_epochs": self.warmup_epochs,
            "weight_decay": self.weight_decay,
            "log_images_every": self.log_images_every,
            "mix_block_lr": self.mix_block_lr,
            "mix_block_min_lr": self.mix_block_min_lr,
            "grad_clip": self.grad_clip,
            "checkpoint_minutes": self.checkpoint_minutes,
        }
        for name, value in non_negative.items():
            if not value >= 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")
        if not 0 <= self.seed < SEED_RANGE:
            raise ConfigError(f"seed must be in [0, 2**32), got {self.seed}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.min_lr > self.lr:
            raise ConfigError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if self.mix_block_lr and self.method not in MIX_BLOCK_METHODS:
            raise ConfigError(
                f"mix_block_lr is set but method {self.method!r} has no mix block; "
                f"use it with {' or '.join(MIX_BLOCK_METHODS)}, or set it to 0"
            )
        if self.mix_block_min_lr > self.mix_block_lr:
            raise ConfigError(
                f"mix_block_min_lr ({self.mix_block_min_lr}) must not exceed "
                f"mix_block_lr ({self.mix_block_lr}); a mix_block_lr of 0 keeps the "
                "mix block on the main schedule"
            )
        if self.warmup_epochs >= self.epochs:
            raise ConfigError(
                f"warmup_epochs ({self.warmup_epochs}) must be < epochs ({self.epochs})"
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        self._check_ema()
        if self.subset and self.subset < self.batch_size:
            raise ConfigError(
                f"subset ({self.subset}) is smaller than one batch ({self.batch_size}); "
                "raise --subset or lower --batch-size"
            )

    def _check_ema(self) -> None:
        """A method with its own teacher evaluates that teacher as its EMA network, so the
        engine's EMA settings would be recorded but never used: a changed one is refused."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        changed = [
            name for name in ("ema_decay", "ema_warmup") if getattr(self, name) != defaults[name]
        ]
        if self.method in TEACHER_METHODS and changed:
            raise ConfigError(
                f"method {self.method!r} brings its own EMA teacher, so {' and '.join(changed)} "
                "(the engine's EMA, for methods without one) would not be used: drop "
                f"{' and '.join('--' + n.replace('_', '-') for n in changed)}, and set the "
                "teacher with the method options teacher_momentum, end_momentum and "
                "momentum_warmup"
            )

    def _check_augmentation(self) -> None:
        _one_of("train_crop", self.train_crop, TRAIN_CROPS)
        _one_of("interpolation", self.interpolation, INTERPOLATIONS)
        scale = self.crop_scale
        if (
            not isinstance(scale, (list, tuple))
            or len(scale) != 2
            or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scale)
            or not 0 < scale[0] <= scale[1] <= 1
        ):
            raise ConfigError(
                f"crop_scale must be [low, high] with 0 < low <= high <= 1, got {scale!r}"
            )
        # A list of floats whatever was passed, so that the config survives JSON unchanged.
        object.__setattr__(self, "crop_scale", [float(s) for s in scale])
        for name in ("image_size", "resize_before_crop"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if 0 < self.resize_before_crop < self.image_size:
            raise ConfigError(
                f"resize_before_crop ({self.resize_before_crop}) must be 0 or at "
                f"least image_size ({self.image_size}): the test split "
                "centre-crops image_size out of it"
            )
        mean, std = self.normalize_mean, self.normalize_std
        if (
            len(mean) != len(std)
            or not all(0 < s <= 1 for s in std)
            or not all(0 <= m <= 1 for m in mean)
        ):
            raise ConfigError(
                f"normalize_mean {mean} and normalize_std {std} must both be empty "
                "(the dataset's own statistics) or give one value per channel in "
                "[0, 1] units, with every std > 0"
            )
        object.__setattr__(self, "normalize_mean", [float(m) for m in mean])
        object.__setattr__(self, "normalize_std", [float(s) for s in std])
        if self.train_crop != "rrc" and (
            self.resize_before_crop or self.crop_scale != list(CROP_SCALE)
        ):
            raise ConfigError(
                "crop_scale and resize_before_crop shape the rrc crop only; set "
                "train_crop rrc or leave them at their defaults"
            )

    def _check_types(self) -> None:
        """Each field has its declared type (an int for a float is widened) and every number is
        finite, so no later comparison lets a NaN through and no string reaches the network."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "float" and _is_number(value):
                object.__setattr__(self, f.name, float(value))
            elif (
                f.type.startswith("list")
                and isinstance(value, (list, tuple))
                and all(_is_number(v) for v in value)
            ):
                object.__setattr__(self, f.name, [float(v) for v in value])
            elif not _has_type(value, f.type):
                raise ConfigError(
                    f"{f.name} must be {_TYPE_NAMES[f.type.split('[')[0]]}, got "
                    f"{value!r} ({type(value).__name__})"
                )
            if f.name != "method_args" and not all(map(math.isfinite, _numbers_in(value))):
                raise ConfigError(f"{f.name} must be finite, got {value!r}")
        for key, value in self.method_args.items():
            if not isinstance(key, str):
                raise ConfigError(f"method_args keys must be option names, got {key!r}")
            if not all(map(math.isfinite, _numbers_in(value))):
                raise ConfigError(f"method option {key} must be finite, got {value!r}")

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        now = {**RENAMED_FIELDS, "amp": "precision"}
        renamed = [f"{old} is now {now[old]}" for old in unknown if old in now]
        if renamed:
            raise ConfigError(f"unknown config field(s) {unknown}: {'; '.join(renamed)}")
        if unknown:
            raise ConfigError(
                f"unknown config field(s) {unknown}; valid: {', '.join(sorted(known))}"
            )
        return cls(**values)

    def replace(self, **changes: Any) -> RunConfig:
        return self.from_dict({**self.to_dict(), **changes})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """A saved config.json (one written under older names included)."""
        return cls.from_dict(upgrade_saved_config(json.loads(Path(path).read_text()), str(path)))

    def flat(self) -> dict[str, Any]:
        """Flattened for MLflow params: method_args become method_args.KEY."""
        out = {k: v for k, v in self.to_dict().items() if k != "method_args"}
        out.update({f"method_args.{k}": v for k, v in sorted(self.method_args.items())})
        return out


_TYPE_NAMES = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list": "a list of numbers",
    "dict": "a dict of method options",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _has_type(value: Any, declared: str) -> bool:
    if declared == "bool":
        return isinstance(value, bool)
    if declared == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if declared == "str":
        return isinstance(value, str)
    if declared.startswith("dict"):
        return isinstance(value, dict)
    return False  # floats and lists of floats that got here are not numbers


def _numbers_in(value: Any):
    """Every float inside a value, through lists, tuples and dicts (method_args included)."""
    if isinstance(value, float):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _numbers_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _numbers_in(v)


def resume_changes(saved: dict[str, Any], new: RunConfig) -> tuple[dict, dict]:
    """How `new` differs from the config a checkpoint was written under, split into the changes
    a resume may make (RESUMABLE_FIELDS) and those it may not: {field: (saved, new)} each."""
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    saved = upgrade_saved_config(saved, "the checkpoint's config")
    # A field added since the checkpoint was written takes its default there.
    saved = RunConfig.from_dict({k: v for k, v in saved.items() if k in fields}).to_dict()
    changed = {k: (saved[k], v) for k, v in new.to_dict().items() if saved[k] != v}
    allowed = {k: c for k, c in changed.items() if k in RESUMABLE_FIELDS}
    refused = {k: c for k, c in changed.items() if k not in RESUMABLE_FIELDS}
    return allowed, refused


def upgrade_saved_config(values: dict[str, Any], source: str) -> dict[str, Any]:
    """A saved config's fields under today's names, with a warning naming what was mapped:
    renamed fields and teacher options take their new names, `amp` (fp16 autocast on CUDA)
    becomes its `precision`, and the engine's EMA settings, which a method with its own teacher
    never used, their defaults. Such runs load, evaluate and resume as they trained."""
    values = dict(values)
    mapped = []
    if "amp" in values:
        amp = values.pop("amp")
        if "precision" not in values:
            values["precision"] = "fp16" if amp is True else "fp32"
            mapped.append(f"amp {str(amp).lower()} -> precision {values['precision']}")
    for old, new in RENAMED_FIELDS.items():
        if old in values and new not in values:
            values[new] = values.pop(old)
            mapped.append(f"{old} -> {new}")
    if values.get("method") in TEACHER_METHODS:
        options = values.get("method_args")
        if isinstance(options, dict):
            options = dict(options)
            for old, new in RENAMED_TEACHER_OPTIONS.items():
                if old in options and new not in options:
                    options[new] = options.pop(old)
                    mapped.append(f"method option {old} -> {new}")
            values["method_args"] = options
        defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
        for name in ("ema_decay", "ema_warmup"):
            if name in values and values[name] != defaults[name]:
                mapped.append(
                    f"{name} {values[name]} -> {defaults[name]} (unused by "
                    f"{values['method']}, which evaluates its own teacher)"
                )
                values[name] = defaults[name]
    if mapped:
        log.warning("%s uses older names, read as: %s", source, "; ".join(mapped))
    return values


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value`, the value parsed as JSON where it can be (numbers, bools, lists), else text."""
    if "=" not in text:
        raise ConfigError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        lowered = raw.lower()
        value = {"true": True, "false": False}.get(lowered, raw)
    return key.strip(), value
