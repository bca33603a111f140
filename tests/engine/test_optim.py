import math

import pytest
import torch

from adautomix.config import RunConfig
from adautomix.engine.optim import lr_at


def test_epoch_cosine_matches_mmcv_log_value():
    # spec §2 step 10: mmcv's log line "Epoch [100]" (1-based, so e = 99) of 800 shows 9.813e-2
    config = RunConfig(epochs=800, lr=0.1, min_lr=0.05)
    assert lr_at(config, step=99 * 500, steps_per_epoch=500) == pytest.approx(0.09813, abs=1e-5)


def test_epoch_schedule_is_constant_within_an_epoch_and_reaches_floor_region():
    config = RunConfig(epochs=4, lr=0.1, min_lr=0.01)
    assert lr_at(config, 0, 10) == lr_at(config, 9, 10) == pytest.approx(0.1)
    assert lr_at(config, 10, 10) < 0.1
    last = lr_at(config, 39, 10)
    assert 0.01 < last < 0.03


def test_warmup_is_linear_then_cosine_by_step():
    config = RunConfig(epochs=10, lr=1.0, min_lr=0.0, warmup_epochs=1, lr_schedule_by="step")
    assert lr_at(config, 0, 10) == pytest.approx(0.1)
    assert lr_at(config, 4, 10) == pytest.approx(0.5)
    assert lr_at(config, 10, 10) == pytest.approx(1.0)
    assert lr_at(config, 55, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def _groups(config, method_name="adautomix"):
    from adautomix.mixers import create_method
    from adautomix.engine.optim import param_groups
    from tests.tiny_backbone import TinyBackbone

    torch.manual_seed(0)
    model = TinyBackbone()
    method = create_method(method_name, model, 10)
    named = [*model.named_parameters(prefix="model"), *method.named_parameters(prefix="method")]
    return model, method, param_groups(config, named, method.mix_block_parameters())


@pytest.mark.parametrize("method_name", ["automix", "adautomix"])
def test_mix_block_follows_its_own_cosine_to_its_own_floor(method_name):
    from adautomix.engine.optim import build_optimizer, set_lr

    config = RunConfig(
        method=method_name,
        epochs=10,
        lr=0.2,
        min_lr=0.05,
        mix_block_lr=0.1,
        mix_block_min_lr=1e-3,
        lr_schedule_by="step",
    )
    model, method, groups = _groups(config, method_name)
    optimizer = build_optimizer(config, groups)
    by_name = {group["name"]: group for group in optimizer.param_groups}
    assert set(by_name) == {"main", "mix_block"}
    mix_ids = {id(p) for p in method.mix_block_parameters()}
    assert {id(p) for p in by_name["mix_block"]["params"]} == mix_ids
    assert not mix_ids & {id(p) for p in by_name["main"]["params"]}
    # every trainable parameter in exactly one group, the frozen EMA network in none
    trainable = [p for p in (*model.parameters(), *method.parameters()) if p.requires_grad]
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(trainable)

    assert set_lr(optimizer, config, 0, 10) == pytest.approx(0.2)
    assert by_name["mix_block"]["lr"] == pytest.approx(0.1)
    halfway = set_lr(optimizer, config, 50, 10)
    assert halfway == pytest.approx((0.2 + 0.05) / 2)
    assert by_name["mix_block"]["lr"] == pytest.approx((0.1 + 1e-3) / 2)
    set_lr(optimizer, config, 100, 10)
    assert by_name["main"]["lr"] == pytest.approx(0.05)
    assert by_name["mix_block"]["lr"] == pytest.approx(1e-3)


def test_without_mix_block_lr_one_group_holds_everything():
    config = RunConfig(method="adautomix")
    _, _, groups = _groups(config)
    assert [g["name"] for g in groups] == ["main"]


def test_norms_biases_and_position_tables_are_exempt_from_weight_decay():
    from adautomix.engine.optim import exempt_from_decay

    config = RunConfig(
        method="adautomix",
        weight_decay=0.05,
        exclude_norm_bias_decay=True,
        mix_block_lr=1e-3,
        mix_block_min_lr=1e-4,
    )
    model, method, groups = _groups(config)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"main", "main_no_decay", "mix_block", "mix_block_no_decay"}
    assert by_name["main"]["weight_decay"] == by_name["mix_block"]["weight_decay"] == 0.05
    assert (
        by_name["main_no_decay"]["weight_decay"]
        == by_name["mix_block_no_decay"]["weight_decay"]
        == 0
    )
    exempt = {id(p) for p in by_name["main_no_decay"]["params"]}
    assert id(model.stem[1].weight) in exempt and id(model.head.bias) in exempt
    assert id(model.stem[0].weight) not in exempt and id(model.head.weight) not in exempt
    assert exempt_from_decay("features.1.0.attn.relative_position_bias_table", torch.zeros(169, 3))
    assert not exempt_from_decay("features.1.0.attn.qkv.weight", torch.zeros(288, 96))


def test_gradient_clipping_bounds_the_update():
    from adautomix.engine.optim import optimizer_step

    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(50))
    before = weight.detach().clone()
    optimizer = torch.optim.SGD([weight], lr=1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loss = (1000 * weight).square().sum()
    optimizer_step(loss, optimizer, scaler, grad_clip=0.5)
    assert torch.linalg.vector_norm(weight.detach() - before) == pytest.approx(0.5, rel=1e-4)
    # without clipping the same loss moves the weights by the raw gradient
    unclipped = torch.nn.Parameter(before.clone())
    optimizer = torch.optim.SGD([unclipped], lr=1.0)
    optimizer_step((1000 * unclipped).square().sum(), optimizer, scaler)
    assert torch.linalg.vector_norm(unclipped.detach() - before) > 1000


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"method": "mixup", "mix_block_lr": 0.1}, "has no mix block"),
        ({"method": "automix", "mix_block_lr": 0.1, "mix_block_min_lr": 0.2}, "must not exceed"),
        ({"grad_clip": -1.0}, "grad_clip must be >= 0"),
    ],
)
def test_bad_optimiser_settings_are_named(changes, message):
    from adautomix.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        RunConfig(**changes)
