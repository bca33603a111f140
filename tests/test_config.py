import json
import logging

import pytest

from adautomix.config import (
    ConfigError,
    RunConfig,
    parse_override,
    resume_changes,
    upgrade_saved_config,
)
from tests.helpers import old_format


def test_defaults_are_valid_and_round_trip(tmp_path):
    config = RunConfig(method="mixup", method_args={"alpha": 0.5}, epochs=3)
    config.save(tmp_path / "c.json")
    assert RunConfig.load(tmp_path / "c.json") == config
    assert json.loads((tmp_path / "c.json").read_text())["method_args"] == {"alpha": 0.5}


@pytest.mark.parametrize(
    "field,value,names",
    [
        ("dataset", "mnist", "fashion-mnist"),
        ("model", "resnet19", "resnet18"),
        ("method", "mixupp", "adautomix"),
        ("optimizer", "adam", "adamw"),
    ],
)
def test_unknown_name_lists_valid_ones(field, value, names):
    with pytest.raises(ConfigError) as err:
        RunConfig(**{field: value})
    assert repr(value) in str(err.value) and names in str(err.value)


@pytest.mark.parametrize(
    "changes,fragment",
    [
        ({"epochs": 0}, "epochs must be > 0"),
        ({"batch_size": -1}, "batch_size must be > 0"),
        ({"lr": 0.1, "min_lr": 0.2}, "min_lr"),
        ({"warmup_epochs": 5, "epochs": 5}, "warmup_epochs"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"subset": 10, "batch_size": 100}, "subset"),
    ],
)
def test_invalid_values_fail_on_construction(changes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        RunConfig(**changes)


def test_unknown_field_in_dict_is_named():
    with pytest.raises(ConfigError, match="learning_rate"):
        RunConfig.from_dict({"learning_rate": 0.1})


def test_flat_expands_method_args():
    flat = RunConfig(method="adautomix", method_args={"beta": 0.3}).flat()
    assert flat["method_args.beta"] == 0.3 and "method_args" not in flat


@pytest.mark.parametrize(
    "text,expected",
    [
        ("alpha=0.2", ("alpha", 0.2)),
        ("mix_samples=3", ("mix_samples", 3)),
        ("lam_concat=false", ("lam_concat", False)),
        ("upsampling=bilinear", ("upsampling", "bilinear")),
    ],
)
def test_parse_override(text, expected):
    assert parse_override(text) == expected


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "field",
    [
        "lr",
        "min_lr",
        "momentum",
        "weight_decay",
        "grad_clip",
        "warmup_epochs",
        "label_smoothing",
        "ema_decay",
        "mix_block_lr",
    ],
)
@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_non_finite_numbers_are_refused(field, value):
    changes = {field: value}
    if field == "mix_block_lr":
        changes["method"] = "automix"
    with pytest.raises(ConfigError, match=f"{field} must be finite"):
        RunConfig(**changes)


@pytest.mark.parametrize(
    "changes,fragment",
    [
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ({"seed": -1}, "seed must be in"),
        ({"seed": 2**32}, "seed must be in"),
        ({"nonfinite_loss_limit": 0}, "nonfinite_loss_limit must be > 0"),
        ({"normalize_mean": [1.5], "normalize_std": [0.5]}, "normalize_mean"),
        ({"crop_scale": [NAN, 1.0], "train_crop": "rrc"}, "crop_scale"),
        ({"method_args": {"alpha": NAN}}, "method option alpha must be finite"),
        ({"precision": "fp8"}, "unknown precision 'fp8'; valid: fp32, bf16, fp16"),
        (
            {"precision": "fp16", "device": "cpu"},
            "precision fp16 needs a CUDA device; use --precision bf16 or fp32",
        ),
        ({"eval_batch_size": -1}, "eval_batch_size must be >= 0"),
    ],
)
def test_out_of_range_values_are_refused(changes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        RunConfig(**changes)


@pytest.mark.parametrize(
    "changes,fragment",
    [
        ({"lr": "abc"}, r"lr must be a number, got 'abc' \(str\)"),
        ({"epochs": 2.5}, "epochs must be an integer"),
        ({"epochs": True}, "epochs must be an integer"),
        ({"channels_last": "no"}, "channels_last must be true or false"),
        ({"channels_last": 1}, "channels_last must be true or false"),
        ({"dataset": 3}, "dataset must be a string"),
        ({"crop_scale": ["a", 1]}, "crop_scale must be a list of numbers"),
        ({"method_args": [1]}, "method_args must be a dict"),
    ],
)
def test_wrong_types_are_refused_as_json_gives_them(changes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        RunConfig(**changes)


def test_an_int_for_a_float_is_widened_so_the_json_round_trip_is_exact(tmp_path):
    config = RunConfig(lr=1, crop_scale=[1, 1], train_crop="rrc")
    assert isinstance(config.lr, float) and config.crop_scale == [1.0, 1.0]
    config.save(tmp_path / "c.json")
    assert RunConfig.load(tmp_path / "c.json").to_dict() == config.to_dict()


def test_resume_changes_split_allowed_from_refused():
    saved = RunConfig(method="mixup", epochs=2).to_dict()
    del saved["nonfinite_loss_limit"]  # written before the field existed
    allowed, refused = resume_changes(
        saved, RunConfig(method="cutmix", lr=0.2, epochs=4, num_workers=0, progress=False)
    )
    assert allowed == {"epochs": (2, 4), "num_workers": (2, 0), "progress": (True, False)}
    assert refused == {"method": ("mixup", "cutmix"), "lr": (0.1, 0.2)}
    assert resume_changes(saved, RunConfig(method="mixup", epochs=2)) == ({}, {})


def test_a_config_json_under_the_old_names_loads_mapped_with_a_warning(tmp_path, caplog):
    config = RunConfig(
        method="adautomix",
        test_subset=300,
        method_args={"teacher_momentum": 0.9, "end_momentum": 0.99},
    )
    (tmp_path / "config.json").write_text(json.dumps(old_format(config, ema_decay=0.99)))
    with caplog.at_level("WARNING", logger="adautomix.config"):
        assert RunConfig.load(tmp_path / "config.json") == config
    (warning,) = caplog.messages
    assert warning.startswith(f"{tmp_path / 'config.json'} uses older names, read as: ")
    for mapped in (
        "val_subset -> test_subset",
        "method option momentum -> teacher_momentum",
        "ema_decay 0.99 -> 0.999",
    ):
        assert mapped in warning


def test_a_config_under_todays_names_is_read_as_it_is(caplog):
    """Only the teacher's option was renamed (SGD's `momentum` field stays), and the engine's
    EMA settings of a method without a teacher are its own."""
    vanilla = RunConfig(method="vanilla", momentum=0.8, ema_decay=0.99, ema_warmup=False)
    with caplog.at_level("WARNING", logger="adautomix.config"):
        assert upgrade_saved_config(vanilla.to_dict(), "config.json") == vanilla.to_dict()
    assert caplog.messages == []


def test_a_checkpoint_under_the_old_names_resumes_with_no_change():
    config = RunConfig(method="automix", test_subset=16, method_args={"teacher_momentum": 0.9})
    assert resume_changes(old_format(config), config) == ({}, {})
    allowed, refused = resume_changes(old_format(config), config.replace(test_subset=32))
    assert (allowed, refused) == ({}, {"test_subset": (16, 32)})


def test_an_old_name_given_now_is_refused_with_its_new_name():
    with pytest.raises(
        ConfigError,
        match=r"unknown config field\(s\) \['val_subset'\]: "
        "val_subset is now test_subset",
    ):
        RunConfig.from_dict({"val_subset": 100})


@pytest.mark.parametrize("method", ["automix", "adautomix"])
@pytest.mark.parametrize(
    "changes, flags",
    [
        ({"ema_decay": 0.99}, "drop --ema-decay,"),
        ({"ema_warmup": False}, "drop --ema-warmup,"),
        ({"ema_decay": 0.0, "ema_warmup": False}, "drop --ema-decay and --ema-warmup,"),
    ],
)
def test_the_engines_ema_is_refused_for_a_method_with_its_own_teacher(method, changes, flags):
    with pytest.raises(ConfigError, match=f"method '{method}' brings its own EMA teacher") as e:
        RunConfig(method=method, **changes)
    assert flags in str(e.value) and "teacher_momentum" in str(e.value)
    assert RunConfig(method="mixup", **changes).ema_decay == changes.get("ema_decay", 0.999)


def test_a_config_written_with_amp_loads_as_the_precision_it_trained_in(tmp_path, caplog):
    """`precision` replaced `amp` (fp16 autocast on CUDA): old run folders still load, mapped
    with a warning, and a checkpoint written under amp resumes with the precision it trained in
    and no other change; `amp` given now is refused with its new name."""
    old = RunConfig().to_dict()
    del old["precision"]
    for amp, precision in ((True, "fp16"), (False, "fp32")):
        path = tmp_path / f"amp-{amp}.json"
        path.write_text(json.dumps({**old, "amp": amp}))
        with caplog.at_level(logging.WARNING, logger="adautomix"):
            assert RunConfig.load(path).precision == precision
        assert f"amp {str(amp).lower()} -> precision {precision}" in caplog.text
    with pytest.raises(ConfigError, match="amp is now precision"):
        RunConfig.from_dict({**old, "amp": True})
    assert resume_changes({**old, "amp": True}, RunConfig(precision="fp16")) == ({}, {})
    assert resume_changes({**old, "amp": False}, RunConfig(precision="bf16")) == (
        {},
        {"precision": ("fp32", "bf16")},
    )
