import json

import pytest

from adautomix.config import ConfigError, RunConfig, parse_override


def test_defaults_are_valid_and_round_trip(tmp_path):
    config = RunConfig(method="mixup", method_args={"alpha": 0.5}, epochs=3)
    config.save(tmp_path / "c.json")
    assert RunConfig.load(tmp_path / "c.json") == config
    assert json.loads((tmp_path / "c.json").read_text())["method_args"] == {"alpha": 0.5}


@pytest.mark.parametrize("field,value,names", [
    ("dataset", "mnist", "fashion-mnist"),
    ("model", "resnet19", "resnet18"),
    ("method", "mixupp", "adautomix"),
    ("optimizer", "adam", "adamw"),
])
def test_unknown_name_lists_valid_ones(field, value, names):
    with pytest.raises(ConfigError) as err:
        RunConfig(**{field: value})
    assert repr(value) in str(err.value) and names in str(err.value)


@pytest.mark.parametrize("changes,fragment", [
    ({"epochs": 0}, "epochs must be > 0"),
    ({"batch_size": -1}, "batch_size must be > 0"),
    ({"lr": 0.1, "min_lr": 0.2}, "min_lr"),
    ({"warmup_epochs": 5, "epochs": 5}, "warmup_epochs"),
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"subset": 10, "batch_size": 100}, "subset"),
])
def test_invalid_values_fail_on_construction(changes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        RunConfig(**changes)


def test_unknown_field_in_dict_is_named():
    with pytest.raises(ConfigError, match="learning_rate"):
        RunConfig.from_dict({"learning_rate": 0.1})


def test_flat_expands_method_args():
    flat = RunConfig(method="adautomix", method_args={"beta": 0.3}).flat()
    assert flat["method_args.beta"] == 0.3 and "method_args" not in flat


@pytest.mark.parametrize("text,expected", [
    ("alpha=0.2", ("alpha", 0.2)), ("mix_samples=3", ("mix_samples", 3)),
    ("lam_concat=false", ("lam_concat", False)), ("upsampling=bilinear", ("upsampling", "bilinear")),
])
def test_parse_override(text, expected):
    assert parse_override(text) == expected
