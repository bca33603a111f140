"""The train command's flags: every RunConfig field, list fields included, reaches the config."""

from adautomix.cli import build_parser, config_from_args


def parsed(*argv: str):
    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_list_and_optimiser_flags_reach_the_config():
    config = parsed("--method", "adautomix", "--crop-scale", "0.5", "1", "--train-crop", "rrc",
                    "--normalize-mean", "0.485", "0.456", "0.406",
                    "--normalize-std", "0.229", "0.224", "0.225",
                    "--mix-block-lr", "0.1", "--mix-block-min-lr", "0.001", "--grad-clip", "10",
                    "--exclude-norm-bias-decay", "--randaugment")
    assert config.crop_scale == [0.5, 1.0]
    assert config.normalize_mean == [0.485, 0.456, 0.406]
    assert config.normalize_std == [0.229, 0.224, 0.225]
    assert (config.mix_block_lr, config.mix_block_min_lr, config.grad_clip) == (0.1, 0.001, 10.0)
    assert config.exclude_norm_bias_decay and config.randaugment


def test_a_preset_keeps_its_lists_unless_a_flag_overrides_them():
    config = parsed("--preset", "cub200-r18-adautomix")
    assert config.crop_scale == [0.5, 1.0] and config.normalize_mean == [0.485, 0.456, 0.406]
    assert parsed("--preset", "cub200-r18-adautomix", "--crop-scale", "0.3", "1").crop_scale == [0.3, 1.0]
