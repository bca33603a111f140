"""The train command's flags: every RunConfig field, list fields included, reaches the config;
and every bad input is one line naming the thing and the fix, with exit status 2 (1 for a run
that failed), a traceback only on request."""

import json

import pytest

from adautomix.cli import build_parser, config_from_args, main


def parsed(*argv: str):
    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_list_and_optimiser_flags_reach_the_config():
    config = parsed(
        "--method",
        "adautomix",
        "--crop-scale",
        "0.5",
        "1",
        "--train-crop",
        "rrc",
        "--normalize-mean",
        "0.485",
        "0.456",
        "0.406",
        "--normalize-std",
        "0.229",
        "0.224",
        "0.225",
        "--mix-block-lr",
        "0.1",
        "--mix-block-min-lr",
        "0.001",
        "--grad-clip",
        "10",
        "--exclude-norm-bias-decay",
        "--randaugment",
    )
    assert config.crop_scale == [0.5, 1.0]
    assert config.normalize_mean == [0.485, 0.456, 0.406]
    assert config.normalize_std == [0.229, 0.224, 0.225]
    assert (config.mix_block_lr, config.mix_block_min_lr, config.grad_clip) == (0.1, 0.001, 10.0)
    assert config.exclude_norm_bias_decay and config.randaugment


def test_a_preset_keeps_its_lists_unless_a_flag_overrides_them():
    config = parsed("--preset", "cub200-r18-adautomix")
    assert config.crop_scale == [0.5, 1.0] and config.normalize_mean == [0.485, 0.456, 0.406]
    assert parsed("--preset", "cub200-r18-adautomix", "--crop-scale", "0.3", "1").crop_scale == [
        0.3,
        1.0,
    ]


def test_every_run_config_field_is_a_train_flag_with_its_help_and_default():
    import dataclasses

    from adautomix.config import RunConfig

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {option: action.help for action in train._actions for option in action.option_strings}
    for field in dataclasses.fields(RunConfig):
        if field.name != "method_args":
            flag = "--" + field.name.replace("_", "-")
            assert field.metadata["help"], field.name
            assert flags[flag].startswith(field.metadata["help"]), field.name
    assert flags["--batch-size"].endswith("[100]") and flags["--crop-scale"].endswith("[0.08 1.0]")


def test_a_preset_keeps_its_method_options_only_for_its_own_method():
    from adautomix.presets import get_preset

    recipe = get_preset("cifar100-r18-adautomix")
    tuned = parsed("--preset", "cifar100-r18-adautomix", "-o", "beta=0.5")
    assert tuned.method_args == {**recipe.method_args, "beta": 0.5}
    # another method starts from its own defaults, not from AdAutoMix's options
    assert parsed("--preset", "cifar100-r18-adautomix", "--method", "mixup").method_args == {}
    assert parsed(
        "--preset", "cifar100-r18-adautomix", "--method", "mixup", "-o", "alpha=0.4"
    ).method_args == {"alpha": 0.4}


# --- bad input: one line, naming the thing and the fix; exit 2 (bad input) or 1 (a failed run) --


def run_cli(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["train", "--lr", "nan"], "lr must be finite, got nan"),
        (["train", "--weight-decay", "inf"], "weight_decay must be finite"),
        (["train", "--momentum", "1.5"], "momentum must be in [0, 1)"),
        (
            ["train", "--method", "mixup", "-o", "alpha=abc"],
            "option alpha takes a finite number, got 'abc'",
        ),
        (
            ["train", "--method", "adautomix", "-o", "is_random=maybe"],
            "is_random takes a boolean (true, false, yes, no, 1, 0)",
        ),
        (["train", "--method", "mixup", "-o", "alpha"], "expected KEY=VALUE"),
        (
            ["train", "--config", "/no/such/config.json"],
            "--config /no/such/config.json: no such file",
        ),
        (["evaluate", "/no/such/run"], "/no/such/run holds no config.json"),
        (["train", "--val-subset", "500"], "--val-subset is now --test-subset; use --test-subset"),
        (["evaluate", "/no/such/run", "--test-subset", "-1"], "--test-subset must be >= 0"),
        (
            ["data", "verify", "cifar10", "--data-root", "/no/such/root"],
            "dataset cifar10 is not prepared",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, fragment):
    status, out, err = run_cli(capsys, *argv)
    assert status == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err
    assert "Traceback" not in err


def test_a_malformed_config_file_is_named(capsys, tmp_path):
    (tmp_path / "bad.json").write_text('{"lr": 0.1,')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "typed.json").write_text(json.dumps({"epochs": "three"}))
    for name, fragment in (
        ("bad.json", "is not valid JSON"),
        ("list.json", "holds a JSON list"),
        ("typed.json", "epochs must be an integer, got 'three'"),
    ):
        status, _, err = run_cli(capsys, "train", "--config", str(tmp_path / name))
        assert status == 2 and fragment in err and err.count("\n") == 1, err


def test_debug_shows_the_traceback(capsys, monkeypatch):
    from adautomix.config import ConfigError

    with pytest.raises(ConfigError, match="lr must be finite"):
        main(["--debug", "train", "--lr", "nan"])
    monkeypatch.setenv("ADAUTOMIX_DEBUG", "1")
    with pytest.raises(ConfigError, match="lr must be finite"):
        main(["train", "--lr", "nan"])


def test_an_unreachable_tracking_server_is_exit_1_without_its_password(capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:s3cret@127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    status, out, err = run_cli(capsys, "compare", "--experiment", "x")
    assert status == 1 and err.count("\n") == 1
    assert "http://alice:***@127.0.0.1:9 cannot be reached" in err
    assert "s3cret" not in out + err


def test_strict_boolean_options_reach_the_config_as_booleans():
    config = parsed(
        "--method", "adautomix", "-o", "is_random=no", "-o", "mix_samples=2", "--batch-size", "4"
    )
    assert config.method_args == {"is_random": False, "mix_samples": 2}
    assert parsed("--method", "mixup", "-o", "alpha=1").method_args == {"alpha": 1.0}


def test_evaluate_names_the_split_it_counts_and_reads_its_old_flag_with_a_warning(capsys):
    """`train --subset` counts training images; evaluate's counts test images, so it is
    --test-subset. The old spelling still reaches the same check, with a warning naming the new
    one."""
    status, _, err = run_cli(capsys, "evaluate", "/no/such/run", "--subset", "-1")
    assert status == 2
    warning, error = err.strip().splitlines()
    assert "evaluate's --subset is now --test-subset" in warning
    assert error == "error: --test-subset must be >= 0 (0: the whole test split), got -1"
