"""The official recipes as named RunConfigs (spec §5, §6): plain data, one base per family of
configs and each preset naming what differs from it.

`adautomix presets` lists them, `adautomix presets NAME` prints one, and `adautomix train --preset
NAME --epochs 10 -o beta=0.4` overrides any field. From Python: `get_preset(name, **overrides)`.

The mix block's own learning rate and cosine floor (Tiny-ImageNet, ImageNet, fine-grained, ViTs)
are `mix_block_lr`/`mix_block_min_lr`; the ViTs' gradient clipping and weight-decay exemptions are
`grad_clip`/`exclude_norm_bias_decay` (engine/optim.py). The engine drops every train split's
partial last batch, which only CUB's official config asks for (`drop_last`); on Aircraft and Cars
that loses at most 15 of the ~6,700/8,100 images per epoch.

Input size and augmentation (spec §5.2) are the data fields `image_size`, `train_crop`,
`crop_scale`, `interpolation`, `resize_before_crop` and `randaugment` (data/augment.py): CIFAR keeps
the default reflect-padded crop at 32 px; Tiny-ImageNet takes a bicubic RandomResizedCrop at 64 px
and tests at 64 as is; ImageNet a bicubic RandomResizedCrop 224, tested by Resize 256 and
CenterCrop 224; the fine-grained sets resize to 256 first and crop 224 from scale [0.5, 1], tested
the same way; Swin on CIFAR upscales to 224 with a bicubic RandomResizedCrop and RandAugment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import METHODS, ConfigError, RunConfig

# The constants the official configs normalise with (spec §5): CIFAR-10's for CIFAR-100 too, and
# ImageNet's for Tiny-ImageNet, ImageNet and the fine-grained sets (their backbones are
# ImageNet-pretrained).
CIFAR_NORMALIZE = dict(
    normalize_mean=[0.4914, 0.4822, 0.4465], normalize_std=[0.2023, 0.1994, 0.201]
)
IMAGENET_NORMALIZE = dict(normalize_mean=[0.485, 0.456, 0.406], normalize_std=[0.229, 0.224, 0.225])

# Each family of official configs (CIFAR, Tiny-ImageNet, ImageNet, fine-grained) shares all but a
# few values, as the official files do: a family is one base, and each preset names what differs.
# AdAutoMix's options common to every AdAutoMix recipe:
ADAUTOMIX = {
    "mix_samples": 3,
    "alpha": 1.0,
    "lam_concat": False,
    "upsampling": "bilinear",
    "lam_margin": 0.03,
    "teacher_momentum": 0.999,
    "end_momentum": 0.999999,
    "momentum_warmup": 0.1,
}
SGD_BY_EPOCH = dict(optimizer="sgd", momentum=0.9, weight_decay=1e-4, lr_schedule_by="epoch")
CIFAR = dict(
    dataset="cifar100",
    epochs=800,
    batch_size=100,
    lr=0.1,
    min_lr=0.05,
    **SGD_BY_EPOCH,
    **CIFAR_NORMALIZE,
)
TINY_IMAGENET = dict(
    dataset="tiny-imagenet",
    epochs=400,
    batch_size=100,
    lr=0.2,
    min_lr=0.0,
    **SGD_BY_EPOCH,
    mix_block_lr=0.1,
    mix_block_min_lr=0.0,
    image_size=64,
    train_crop="rrc",
    interpolation="bicubic",
    **IMAGENET_NORMALIZE,
)
IMAGENET = dict(
    dataset="imagenet",
    epochs=100,
    batch_size=256,
    lr=0.1,
    min_lr=0.0,
    **SGD_BY_EPOCH,
    mix_block_lr=0.1,
    mix_block_min_lr=1e-3,
    image_size=224,
    train_crop="rrc",
    interpolation="bicubic",
    **IMAGENET_NORMALIZE,
)
IMAGENET_ADAUTOMIX = {
    **ADAUTOMIX,
    "mix_samples": 2,
    "beta": 0.1,
    "lam_concat": True,
    "end_momentum": 0.99999,
}
# CUB-200, FGVC-Aircraft and Stanford Cars: ImageNet-pretrained backbones at lr 0.001; the mix
# block trains at lr 0.1 with its own cosine to 1e-3.
FINE_GRAINED = dict(
    pretrained=True,
    epochs=200,
    batch_size=16,
    lr=0.001,
    min_lr=0.0,
    **{**SGD_BY_EPOCH, "weight_decay": 5e-4},
    mix_block_lr=0.1,
    mix_block_min_lr=1e-3,
    image_size=224,
    train_crop="rrc",
    resize_before_crop=256,
    crop_scale=[0.5, 1.0],
    **IMAGENET_NORMALIZE,
)
FINE_GRAINED_ADAUTOMIX = {**ADAUTOMIX, "lam_concat": True, "end_momentum": 0.99999}


def _recipe(
    name: str, base: dict[str, Any], method: str, method_args: dict[str, Any], **fields: Any
) -> RunConfig:
    """Preset `name`: a family's `base` with `fields` on top, writing to runs/NAME."""
    return RunConfig(
        **{**base, **fields},
        method=method,
        method_args=method_args,
        output_dir=f"runs/{name}",
        run_name=name,
    )


PRESETS: dict[str, RunConfig] = {
    preset.run_name: preset
    for preset in [
        # The quickstart's main job: AdAutoMix that learns Fashion-MNIST on two CPU cores in
        # minutes. A ResNet-18 of width 8 (1/64 of the paper's compute), pairs of images
        # (mix_samples 2: no linear-mix pass), 500 steps of 100 with a per-step cosine lr, and a
        # teacher whose momentum suits so few steps: 0.9 rising to 0.99 (the paper's 0.999 ->
        # 0.999999 averages over more steps than a short run has, so its teacher stays near its
        # random start: 10 % top-1). No crop, a flip only: over two short epochs the pad crop's
        # shifts cost more than they give (one epoch of 55,000: 87.3 % test top-1 against 83.8 %
        # with it; docs/benchmarks.md "Quickstart"). 5,000 training images are held out as the
        # validation split the champion is judged on; the test split is all 10,000 images.
        _recipe(
            "fashion-mnist-quickstart",
            {},
            "adautomix",
            {
                "mix_samples": 2,
                "alpha": 1.0,
                "beta": 0.3,
                "teacher_momentum": 0.9,
                "end_momentum": 0.99,
                "momentum_warmup": 0.1,
            },
            dataset="fashion-mnist",
            model="resnet18",
            model_width=8,
            epochs=2,
            batch_size=100,
            subset=25000,
            val_size=5000,
            train_crop="flip",
            optimizer="sgd",
            lr=0.2,
            min_lr=0.0,
            momentum=0.9,
            weight_decay=1e-4,
            lr_schedule_by="step",
        ),
        # The paper's main setting (ADAM r18_adautomix_bilinear.py, as printed in the 800-epoch
        # log). The high lr floor is the AutoMix convention; it leaves the online network well
        # behind the EMA.
        _recipe(
            "cifar100-r18-adautomix",
            CIFAR,
            "adautomix",
            {**ADAUTOMIX, "beta": 0.3},
            model="resnet18",
        ),
        # The released config; the committed 800-epoch log ran older code with min_lr 0.08.
        _recipe(
            "cifar100-rx50-adautomix",
            CIFAR,
            "adautomix",
            {**ADAUTOMIX, "beta": 0.3},
            model="resnext50",
        ),
        # Official mix-block lr 0.1 (backbone 0.2), both annealed to 0.
        _recipe(
            "tiny-imagenet-r18-adautomix",
            TINY_IMAGENET,
            "adautomix",
            {**ADAUTOMIX, "beta": 0.4},
            model="resnet18",
        ),
        # Official mix-block lr 0.1 with its own cosine to 1e-3; fp16 as in the official run.
        _recipe(
            "tiny-imagenet-rx50-adautomix",
            TINY_IMAGENET,
            "adautomix",
            {**ADAUTOMIX, "beta": 0.4},
            model="resnext50",
            min_lr=0.05,
            mix_block_min_lr=1e-3,
            precision="fp16",
        ),
        # Official batch 4×64 on four GPUs; mix block lr 0.1 with its own cosine to 1e-3.
        _recipe(
            "imagenet-r18-adautomix", IMAGENET, "adautomix", IMAGENET_ADAUTOMIX, model="tv_resnet18"
        ),
        _recipe(
            "imagenet-r50-adautomix", IMAGENET, "adautomix", IMAGENET_ADAUTOMIX, model="tv_resnet50"
        ),
        _recipe(
            "cub200-r18-adautomix",
            FINE_GRAINED,
            "adautomix",
            {**FINE_GRAINED_ADAUTOMIX, "is_random": True, "beta": 0.3},
            dataset="cub200",
            model="tv_resnet18",
        ),
        _recipe(
            "cub200-rx50-adautomix",
            FINE_GRAINED,
            "adautomix",
            {**FINE_GRAINED_ADAUTOMIX, "is_random": False, "beta": 0.1},
            dataset="cub200",
            model="tv_resnext50",
            mix_block_min_lr=5e-4,
        ),
        _recipe(
            "aircraft-r18-adautomix",
            FINE_GRAINED,
            "adautomix",
            {**FINE_GRAINED_ADAUTOMIX, "is_random": True, "beta": 0.3, "lam_margin": 0.0},
            dataset="aircraft",
            model="tv_resnet18",
            min_lr=0.0005,
        ),
        _recipe(
            "aircraft-rx50-adautomix",
            FINE_GRAINED,
            "adautomix",
            {**FINE_GRAINED_ADAUTOMIX, "is_random": True, "beta": 0.6},
            dataset="aircraft",
            model="tv_resnext50",
        ),
        _recipe(
            "cars-r18-adautomix",
            FINE_GRAINED,
            "adautomix",
            {**FINE_GRAINED_ADAUTOMIX, "is_random": False, "beta": 0.5},
            dataset="cars",
            model="tv_resnet18",
        ),
        _recipe(
            "cars-rx50-adautomix",
            FINE_GRAINED,
            "adautomix",
            {**FINE_GRAINED_ADAUTOMIX, "is_random": False, "beta": 0.3},
            dataset="cars",
            model="tv_resnext50",
        ),
        # CIFAR-100 upscaled to 224 px (ADAM swin_t_adautomix_nearest.py): the generator reads
        # the last stage's 7×7×768 map. Official mix block lr 1e-3, grad clip 10, no decay on
        # norms and biases.
        _recipe(
            "cifar100-swin-adautomix",
            CIFAR,
            "adautomix",
            {
                **ADAUTOMIX,
                "is_random": True,
                "beta": 0.3,
                "lam_concat": True,
                "upsampling": "nearest",
                "lam_margin": 0.0,
                "feature_stage": 4,
                "end_momentum": 0.99996,
                "momentum_warmup": 0.25,
            },
            model="swin_t",
            epochs=200,
            optimizer="adamw",
            lr=5e-4,
            min_lr=1e-4,
            warmup_epochs=20,
            lr_schedule_by="step",
            weight_decay=0.05,
            label_smoothing=0.1,
            mix_block_lr=1e-3,
            mix_block_min_lr=1e-4,
            grad_clip=10.0,
            exclude_norm_bias_decay=True,
            image_size=224,
            train_crop="rrc",
            interpolation="bicubic",
            randaugment=True,
        ),
        # Known only from a log of the pre-release code (ConvNeXt_CIFAR at 32 px, whose stage-3
        # map is 8×8; torchvision's ConvNeXt-T patchifies by 4 and gives 2×2). Official mix block
        # lr 5e-4; what the log does not show keeps the CIFAR AdAutoMix settings.
        _recipe(
            "cifar100-convnext-adautomix",
            CIFAR,
            "adautomix",
            {
                **ADAUTOMIX,
                "beta": 0.3,
                "upsampling": "nearest",
                "end_momentum": 0.99996,
                "momentum_warmup": 0.25,
            },
            model="convnext_t",
            epochs=200,
            optimizer="adamw",
            lr=2e-3,
            min_lr=0.0,
            weight_decay=0.05,
            mix_block_lr=5e-4,
            mix_block_min_lr=0.0,
        ),
        # OMX r18_l2_a2_near_L1_01_mlr5e_2.py at the paper's 800 epochs.
        _recipe(
            "cifar100-r18-automix",
            CIFAR,
            "automix",
            {
                "alpha": 2.0,
                "lam_margin": 0.08,
                "mask_loss_weight": 0.1,
                "mask_loss_margin": 0.1,
                "lam_concat": False,
                "upsampling": "nearest",
                "teacher_momentum": 0.999,
                "end_momentum": 0.999999,
                "momentum_warmup": 0.1,
            },
            model="resnet18",
        ),
    ]
}


def get_preset(name: str, **overrides: Any) -> RunConfig:
    """A preset with some fields replaced; `method_args` overrides merge into the preset's."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    if "method_args" in overrides:
        overrides["method_args"] = {**preset.method_args, **overrides["method_args"]}
    return preset.replace(**overrides)


# --- sweeps: budgets for comparing the methods --------------------------------------------------


@dataclass(frozen=True)
class Pilot:
    """A short run of a few methods that chose a sweep's budget: its own MLflow experiment, and
    what its command changes of the sweep's (`python -m pipeline run --local --sweep --preset
    NAME` + `flags`). The results page draws it when the store holds it."""

    experiment: str
    flags: str


@dataclass(frozen=True)
class Sweep:
    """A budget for the results table: the run every method shares (`run`, itself a preset of
    PRESETS under the sweep's name, training its first method), the methods and seeds of the
    table, each method's own options at this budget, and what the evaluate step measures.

    `python -m pipeline run --local --sweep --preset NAME` runs it; `adautomix results --preset
    NAME` writes its page from the MLflow store."""

    name: str
    run: RunConfig
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    method_args: dict[str, dict[str, Any]]
    test_metrics: tuple[str, ...]
    # where it is meant to run, for the page's header: the budget it was sized for
    sized_for: str
    pilots: tuple[Pilot, ...] = ()

    def method_options(self, method: str) -> dict[str, Any]:
        return dict(self.method_args.get(method, {}))


# A table's methods: every method, in the order config.METHODS lists them, which is the paper's
# (Table 1), Vanilla first as the reference.
TABLE_METHODS = METHODS
# The CPU table's budget, chosen by the pilot runs docs/results.md shows.
CPU_TABLE = {"subset": 1000, "val_size": 500, "epoch_test_subset": 500, "epochs": 50}
# What chose it: Vanilla and MixUp at seed 0 on twice the images for 20 epochs, set beside the
# table's own seed-0 runs of the two (the page draws both).
CPU_PILOTS = (
    Pilot(
        "pilot-fashion-mnist-2000x20",
        "--methods vanilla,mixup --seeds 0 --subset 2000 --val-size 1000 --epochs 20 "
        "--log-images-every 20 --experiment pilot-fashion-mnist-2000x20 "
        "--registered-model adautomix-pilot",
    ),
)
# Both learned mixers' teachers at a budget of hundreds of steps: the paper's momentum (0.999 ->
# 0.999999) averages over more steps than such a run has, and its teacher would stay near its
# random start (see fashion-mnist-quickstart).
SHORT_RUN_TEACHER = {"teacher_momentum": 0.9, "end_momentum": 0.99, "momentum_warmup": 0.1}
# The table's robustness (Table 3) on fixed subsets of the test split: FGSM on its first 1,000
# images, the 19 generated corruptions x 5 severities (fashion-mnist-c, generated once) of its
# first 500 (95 x 500 images a network: with 1,000 the evaluate step took a minute a run, a third
# of the CPU table's budget); ECE on the whole split, which costs nothing beside top-1.
CPU_TEST_METRICS = (
    "top1",
    "top5",
    "loss",
    "ece",
    "fgsm:images=1000",
    "corruption:images=500",
)
# On a GPU the whole test split costs seconds.
GPU_TEST_METRICS = ("top1", "top5", "loss", "ece", "fgsm", "corruption")


def _sweep(
    name: str,
    sized_for: str,
    method_args: dict[str, dict[str, Any]],
    test_metrics: tuple[str, ...],
    pilots: tuple[Pilot, ...] = (),
    **fields: Any,
) -> Sweep:
    """A sweep over TABLE_METHODS x seeds 0, 1, 2; its run trains AdAutoMix with its options."""
    return Sweep(
        name=name,
        run=RunConfig(
            method="adautomix",
            method_args=method_args["adautomix"],
            experiment=f"results-{name}",
            output_dir=f"runs/{name}",
            run_name=name,
            **fields,
        ),
        methods=TABLE_METHODS,
        seeds=(0, 1, 2),
        method_args=method_args,
        test_metrics=test_metrics,
        sized_for=sized_for,
        pilots=pilots,
    )


SWEEPS: dict[str, Sweep] = {
    sweep.name: sweep
    for sweep in [
        # The table this 2-core CPU affords (docs/results.md, "Why this budget"): a thousand
        # Fashion-MNIST training images and a ResNet-18 (CIFAR stem) of width 8 trained long
        # enough to overfit them, which is where mixing pays; more held out as the validation
        # split that selects the checkpoint, the whole 10,000-image test split reported, each
        # epoch's test curve on the first test images only.
        _sweep(
            "fashion-mnist-cpu-table",
            "2 CPU cores, at most 90 minutes for 10 methods x 3 seeds",
            {
                "automix": dict(SHORT_RUN_TEACHER),
                "adautomix": {**SHORT_RUN_TEACHER, "mix_samples": 2, "beta": 0.3},
            },
            CPU_TEST_METRICS,
            CPU_PILOTS,
            dataset="fashion-mnist",
            model="resnet18",
            model_width=8,
            subset=CPU_TABLE["subset"],
            val_size=CPU_TABLE["val_size"],
            epoch_test_subset=CPU_TABLE["epoch_test_subset"],
            epochs=CPU_TABLE["epochs"],
            batch_size=100,
            train_crop="flip",
            optimizer="sgd",
            lr=0.1,
            min_lr=0.0,
            momentum=0.9,
            weight_decay=5e-4,
            lr_schedule_by="step",
            eval_batch_size=1000,
            log_images_every=CPU_TABLE["epochs"],
            checkpoint_minutes=0,
        ),
        # The same table at full size, for the lent GPU (do not run it on a CPU: about a day of
        # one GPU, docs/benchmarks.md): the whole training split but a 5,000-image validation
        # split, the full-width network, 200 epochs as the FMix paper trains Fashion-MNIST (its
        # outside reference; it steps the lr down at epochs 100 and 150 with batch 128, here one
        # cosine for every method and the paper's batch 100), the pad-and-flip crop, and the
        # learned mixers with the paper's CIFAR options and teacher schedule.
        _sweep(
            "fashion-mnist-gpu-table",
            "one GPU, 10 methods x 3 seeds at full size",
            {
                "automix": {
                    "alpha": 2.0,
                    "lam_margin": 0.08,
                    "mask_loss_weight": 0.1,
                    "mask_loss_margin": 0.1,
                    "upsampling": "nearest",
                },
                "adautomix": {**ADAUTOMIX, "beta": 0.3},
            },
            GPU_TEST_METRICS,
            dataset="fashion-mnist",
            model="resnet18",
            val_size=5000,
            epochs=200,
            batch_size=100,
            train_crop="pad",
            optimizer="sgd",
            lr=0.1,
            min_lr=0.0,
            momentum=0.9,
            weight_decay=1e-4,
            lr_schedule_by="epoch",
            eval_batch_size=1000,
            log_images_every=20,
        ),
    ]
}
PRESETS.update({name: sweep.run for name, sweep in SWEEPS.items()})
