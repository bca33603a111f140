"""The official recipes: every preset builds, names valid method options, matches the spec's key
numbers, and can be overridden field by field."""

from __future__ import annotations

import pytest

from adautomix.config import ConfigError, RunConfig
from adautomix.mixers import method_defaults
from adautomix.presets import PRESETS, get_preset

REQUIRED = {
    "cifar100-r18-adautomix",
    "cifar100-rx50-adautomix",
    "tiny-imagenet-r18-adautomix",
    "tiny-imagenet-rx50-adautomix",
    "imagenet-r18-adautomix",
    "imagenet-r50-adautomix",
    "cub200-r18-adautomix",
    "cub200-rx50-adautomix",
    "aircraft-r18-adautomix",
    "aircraft-rx50-adautomix",
    "cars-r18-adautomix",
    "cars-rx50-adautomix",
    "cifar100-swin-adautomix",
    "cifar100-convnext-adautomix",
    "cifar100-r18-automix",
}


def test_every_recipe_is_there_and_names_real_method_options():
    assert REQUIRED <= set(PRESETS)
    for name, preset in PRESETS.items():
        assert isinstance(preset, RunConfig)
        assert set(preset.method_args) <= set(method_defaults(preset.method)), name
        assert preset.output_dir == f"runs/{name}" and preset.run_name == name
        assert RunConfig.from_dict(preset.to_dict()) == preset


def test_the_main_cifar_recipe_is_the_official_one():
    p = PRESETS["cifar100-r18-adautomix"]
    assert (p.dataset, p.model, p.method) == ("cifar100", "resnet18", "adautomix")
    assert (p.epochs, p.batch_size, p.optimizer, p.lr, p.min_lr) == (800, 100, "sgd", 0.1, 0.05)
    assert (p.momentum, p.weight_decay, p.lr_schedule_by) == (0.9, 1e-4, "epoch")
    expected = {
        "mix_samples": 3,
        "beta": 0.3,
        "lam_concat": False,
        "lam_margin": 0.03,
        "teacher_momentum": 0.999,
        "end_momentum": 0.999999,
        "momentum_warmup": 0.1,
    }
    assert {k: p.method_args[k] for k in expected} == expected


@pytest.mark.parametrize(
    "name,beta,mix_samples,lam_concat",
    [
        ("tiny-imagenet-r18-adautomix", 0.4, 3, False),
        ("imagenet-r18-adautomix", 0.1, 2, True),
        ("cub200-rx50-adautomix", 0.1, 3, True),
        ("aircraft-rx50-adautomix", 0.6, 3, True),
        ("cars-r18-adautomix", 0.5, 3, True),
        ("cifar100-swin-adautomix", 0.3, 3, True),
    ],
)
def test_per_dataset_differences(name, beta, mix_samples, lam_concat):
    args = PRESETS[name].method_args
    assert (args["beta"], args["mix_samples"]) == (beta, mix_samples)
    assert args["lam_concat"] == lam_concat


def test_automix_recipe():
    p = PRESETS["cifar100-r18-automix"]
    assert p.method == "automix" and p.min_lr == 0.05
    assert p.method_args["alpha"] == 2.0 and p.method_args["lam_margin"] == 0.08
    assert p.method_args["mask_loss_weight"] == 0.1 and p.method_args["upsampling"] == "nearest"


def test_overrides_replace_fields_and_merge_method_args():
    p = get_preset("cifar100-r18-adautomix", epochs=10, method_args={"beta": 0.5})
    assert p.epochs == 10 and p.method_args["beta"] == 0.5 and p.method_args["mix_samples"] == 3
    assert PRESETS["cifar100-r18-adautomix"].method_args["beta"] == 0.3
    with pytest.raises(ConfigError, match="unknown config field"):
        get_preset("cifar100-r18-adautomix", epoch=10)


def test_unknown_preset_lists_the_valid_names():
    with pytest.raises(ConfigError, match="unknown preset 'cifar10-r18'.*cifar100-r18-adautomix"):
        get_preset("cifar10-r18")
