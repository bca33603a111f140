"""Method options are checked by name and by type against each method's defaults, and come out
as the type the method takes, so a string never reaches a network and "no" never means true."""

import pytest
import torch

from adautomix.config import METHODS, TEACHER_METHODS, ConfigError, RunConfig
from adautomix.engine.optim import build_optimizer, param_groups
from adautomix.mixers import BOOLEAN_SPELLINGS, checked_options, create_method, method_defaults
from tests.tiny_backbone import TinyBackbone


@pytest.mark.parametrize(
    "spelled,expected",
    [
        ("no", False),
        ("yes", True),
        ("False", False),
        ("TRUE", True),
        (0, False),
        (1, True),
        ("0", False),
        (True, True),
    ],
)
def test_boolean_options_take_only_their_spellings(spelled, expected):
    assert checked_options("adautomix", {"is_random": spelled}) == {"is_random": expected}


@pytest.mark.parametrize(
    "method,options,fragment",
    [
        ("adautomix", {"is_random": "maybe"}, "is_random takes a boolean"),
        ("adautomix", {"is_random": 2}, "is_random takes a boolean"),
        ("adautomix", {"is_random": 1.0}, "is_random takes a boolean"),
        ("mixup", {"alpha": "abc"}, "alpha takes a finite number, got 'abc'"),
        ("mixup", {"alpha": float("nan")}, "alpha takes a finite number"),
        ("mixup", {"alpha": True}, "alpha takes a finite number"),
        ("adautomix", {"mix_samples": 2.5}, "mix_samples takes an integer"),
        ("manifoldmix", {"layers": [0, 1.5]}, "layers takes a list of integers"),
        ("resizemix", {"scope": "wide"}, "scope takes a list of finite numbers"),
        ("automix", {"upsampling": 3}, "upsampling takes a string"),
        ("mixup", {"alhpa": 1.0}, r"has no option\(s\) \['alhpa'\]; valid: alpha"),
    ],
)
def test_wrong_option_types_name_the_option_and_what_it_takes(method, options, fragment):
    with pytest.raises(ConfigError, match=fragment):
        checked_options(method, options)


def test_the_error_lists_every_boolean_spelling():
    with pytest.raises(ConfigError) as error:
        checked_options("puzzlemix", {"transport": "on"})
    assert all(spelling in str(error.value) for spelling in BOOLEAN_SPELLINGS)


def test_numbers_come_out_as_the_method_takes_them():
    assert checked_options("mixup", {"alpha": 1}) == {"alpha": 1.0}
    assert isinstance(checked_options("mixup", {"alpha": 1})["alpha"], float)
    assert checked_options("resizemix", {"scope": [0, 1]}) == {"scope": [0.0, 1.0]}


@pytest.mark.parametrize(
    "method,options,fragment",
    [
        ("mixup", {"alpha": 0.0}, "alpha must be > 0"),
        ("manifoldmix", {"layers": [9]}, "method 'manifoldmix': manifoldmix layers must be in"),
    ],
)
def test_a_method_s_own_range_checks_are_config_errors(method, options, fragment):
    with pytest.raises(ConfigError, match=fragment):
        create_method(method, TinyBackbone(), 10, **options)


@pytest.mark.parametrize("method", METHODS)
def test_the_config_knows_which_methods_bring_their_own_teacher(method):
    """config.py names them without importing torch (to refuse ema_decay for them); the
    methods themselves say it by having a teacher."""
    has_teacher = create_method(method, TinyBackbone(), 10).teacher() is not None
    assert has_teacher == (method in TEACHER_METHODS)


@pytest.mark.parametrize("method", TEACHER_METHODS)
def test_the_teachers_momentum_is_teacher_momentum_and_sgd_keeps_momentum(method):
    assert "teacher_momentum" in method_defaults(method)
    assert "momentum" not in method_defaults(method)
    with pytest.raises(ConfigError, match=r"has no option\(s\) \['momentum'\]"):
        checked_options(method, {"momentum": 0.99})
    # the run's `momentum` is SGD's, beside a teacher: it reaches every group of the optimiser
    # the engine builds, and the teacher's own momentum stays its option's
    config = RunConfig(method=method, optimizer="sgd", momentum=0.5)
    model = TinyBackbone()
    optimizer = build_optimizer(config, param_groups(config, model.named_parameters()))
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups
    assert {group["momentum"] for group in optimizer.param_groups} == {0.5}
    teacher_momentum = method_defaults(method)["teacher_momentum"]
    assert teacher_momentum != 0.5
    assert create_method(method, model, 10).teacher_momentum == teacher_momentum
