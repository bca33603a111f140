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
# batch it evaluates in. Each may change a run's figures, so they stay in the checkpoint key and
# in compare's settings; every other field changes what is computed, and a resume under a
# different value is refused.
RESUMABLE_FIELDS = (
    *UNCOMPUTED_FIELDS,
    "epochs",
    "log_images_every",
    "device",
    "nonfinite_loss_limit",
    "eval_batch_size",
)
SEED_RANGE = 2**32  # numpy's seeds are 32-bit
POSITIVE_FIELDS = ("epochs", "batch_size", "lr", "nonfinite_loss_limit")
NON_NEGATIVE_FIELDS = (
    "subset",
    "test_subset",
    "epoch_test_subset",
    "val_size",
    "eval_batch_size",
    "model_width",
    "num_workers",
    "min_lr",
    "warmup_epochs",
    "weight_decay",
    "log_images_every",
    "mix_block_lr",
    "mix_block_min_lr",
    "grad_clip",
    "checkpoint_minutes",
)
# Names changed since runs were first written. A config.json or checkpoint written under the old
# ones still loads, mapped with a warning (upgrade_saved_config), so no earlier run is stranded.
RENAMED_FIELDS = {"val_subset": "test_subset"}
RENAMED_TEACHER_OPTIONS = {"momentum": "teacher_momentum"}

log = logging.getLogger("adautomix.config")


def _one_of(field_name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"unknown {field_name} {value!r}; valid: {', '.join(valid)}")


def setting(default: Any, help: str = "", **flag: Any) -> Any:
    """A settings field with its help beside its default, for the flag builder
    (adautomix/config_flags.py) to make its flag from. `flag` holds what a flag needs besides:
    `flag="--name"` (another name than the field's; None: no flag), `metavar`, `choices`,
    `empty` (what an empty default means, shown in its place) and `parse` (the repeated values
    of a list- or dict-valued flag -> the field's value). A list or dict default is copied for
    each instance."""
    metadata = {"help": help, **flag}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class RunConfig:
    # what to train
    dataset: str = setting("fashion-mnist", f"dataset name: {', '.join(DATASETS)}")
    model: str = setting("resnet18", f"network: {', '.join(MODELS)}")
    method: str = setting("vanilla", f"training method: {', '.join(METHODS)}")
    # e.g. {"alpha": 1.0} or AdAutoMix's {"mix_samples": 3, "beta": 0.3}; each method validates
    # its own keys (adautomix.mixers.create_method)
    method_args: dict[str, Any] = setting({}, "the method's options (-o KEY=VALUE)")
    pretrained: bool = setting(
        False, "start from torchvision's ImageNet weights (tv_* models; must be in TORCH_HOME)"
    )
    model_width: int = setting(
        0, "CIFAR-stem ResNets: channels of the stem and first stage (0 = the paper's 64)"
    )

    # data
    data_root: str = setting("data", "folder holding prepared datasets (data_root/NAME/)")
    subset: int = setting(
        0, "train on the first N training images of a fixed shuffle (0 = all); for quick runs"
    )
    test_subset: int = setting(0, "the test split is its first N images (0 = all)")
    # A run of many short epochs then does not spend most of its time on the test split; the
    # selected networks are still evaluated on the whole test split (or test_subset) by
    # `adautomix evaluate` and the pipeline's evaluate step.
    epoch_test_subset: int = setting(
        0,
        "each epoch's test figures during training on the first N test images only (0 = the "
        "whole test split); the selected networks are evaluated on all of it",
    )
    # data/split.py; without it the last epoch is the one kept, judged on test
    val_size: int = setting(
        0,
        "hold out N training images (stratified) as the validation split that selects the "
        "checkpoint and judges the champion (0 = none: the paper's protocol)",
    )
    loader: str = setting("auto", f"data loader: {', '.join(LOADERS)}")
    num_workers: int = setting(2, "worker processes of the torch loader")
    # Larger batches only make evaluation faster (no autograd, eval-mode BatchNorm).
    eval_batch_size: int = setting(
        0, "images per evaluation batch (under torchrun: over all processes; 0 = batch_size)"
    )
    # augmentation (adautomix/data/augment.py says what each loader does with these)
    image_size: int = setting(
        0, "side of the images fed to the network (0 = native for arrays, 224 for folders)"
    )
    train_crop: str = setting(
        "auto",
        "pad (reflect-padded random crop), flip (the whole image, flipped half the time; "
        "arrays), rrc (RandomResizedCrop) or auto (pad for arrays, rrc for folders)",
    )
    crop_scale: list[float] = setting(
        list(CROP_SCALE), "area fraction range of the rrc crop: LOW HIGH"
    )
    interpolation: str = setting("bilinear", "of every resize: bilinear or bicubic")
    resize_before_crop: int = setting(
        0,
        "rrc only: resize the shorter side to this first, and centre-crop the test split "
        "from it (0 = off)",
    )
    randaugment: bool = setting(
        False, "RandAugment (2 ops, magnitude 9) after the crop; torch and dali loaders"
    )
    # The official recipes use fixed constants (CIFAR's or ImageNet's), which the presets set.
    normalize_mean: list[float] = setting(
        [], "per-channel mean in [0, 1], e.g. 0.485 0.456 0.406 (none: the dataset's own)"
    )
    normalize_std: list[float] = setting(
        [], "per-channel std in [0, 1], one value per channel like normalize_mean"
    )

    # optimisation
    epochs: int = setting(2, "training epochs")
    batch_size: int = setting(
        100,
        "images per optimiser step (under torchrun: the global batch, split over the processes)",
    )
    optimizer: str = setting("sgd", f"{', '.join(OPTIMIZERS)}")
    lr: float = setting(0.1, "peak learning rate")
    min_lr: float = setting(0.0, "cosine floor of the learning rate")
    warmup_epochs: float = setting(0.0, "linear warm-up length in epochs")
    lr_schedule_by: str = setting(
        "epoch", "'epoch' (lr changes once per epoch, as the official recipes) or 'step'"
    )
    momentum: float = setting(
        0.9, "SGD momentum (AutoMix/AdAutoMix's teacher has its own: -o teacher_momentum=...)"
    )
    weight_decay: float = setting(1e-4, "weight decay")
    # The mix block's own schedule (AutoMix/AdAutoMix beyond CIFAR): 0 keeps it in the main group.
    mix_block_lr: float = setting(
        0.0,
        "AutoMix/AdAutoMix: the mix block's own lr, annealed to mix_block_min_lr (0 = the main lr)",
    )
    mix_block_min_lr: float = setting(0.0, "cosine floor of mix_block_lr")
    exclude_norm_bias_decay: bool = setting(
        False, "no weight decay on norms, biases and position tables (the ViT recipes)"
    )
    grad_clip: float = setting(0.0, "clip the global gradient norm to this (0 = off)")
    label_smoothing: float = setting(0.0, "label smoothing of the targets")
    ema_decay: float = setting(
        0.999,
        "decay of the EMA network evaluated every epoch (0 disables; AdAutoMix/AutoMix use "
        "their own teacher)",
    )
    ema_warmup: bool = setting(
        True,
        "warm the EMA's decay up as min(ema_decay, (1 + step) / (10 + step)), so a short "
        "run's EMA is not its random init",
    )
    # autocast of the training step's and evaluation's forward passes (adautomix/precision.py)
    precision: str = setting(
        "fp32",
        "fp32 (the paper's), bf16 (autocast; CPU or CUDA) or fp16 (autocast and loss scaling; "
        "CUDA only)",
    )
    # faster on CPUs (oneDNN) and on tensor cores
    channels_last: bool = setting(
        True, "NHWC memory format for the networks (faster convolutions on CPU and GPU)"
    )
    # in the online network and the EMA teacher
    sync_bn: bool = setting(
        False,
        "under torchrun: BatchNorm statistics over the whole global batch (SyncBatchNorm; "
        "CUDA only)",
    )

    # run
    seed: int = setting(0, "random seed")
    deterministic: bool = setting(False, "deterministic algorithms (slower; exact resume on GPU)")
    device: str = setting("auto", f"{', '.join(DEVICES)}")
    output_dir: str = setting("runs/default", "where config.json and checkpoint.pt are written")
    experiment: str = setting("adautomix", "MLflow experiment name")
    run_name: str = setting("", "MLflow run name")
    log_images_every: int = setting(
        1, "epochs between mixed-sample grids logged to MLflow (0 = never)"
    )
    progress: bool = setting(True, "show a progress bar")
    # Below the limit a bad step is skipped; at it nothing is checkpointed or registered.
    nonfinite_loss_limit: int = setting(
        1,
        "stop the run (FAILED, nothing checkpointed) once this many training losses were NaN "
        "or infinite; below it such a step is skipped",
    )
    # A lost node costs at most this much training; a resume from such a checkpoint is exact.
    checkpoint_minutes: float = setting(
        10.0,
        "minutes between checkpoints within an epoch (0 = at epoch ends only); a SIGTERM also "
        "checkpoints, then stops",
    )

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
        for name in POSITIVE_FIELDS:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in NON_NEGATIVE_FIELDS:
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
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
