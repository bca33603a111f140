"""The networks' memory format (RunConfig.channels_last) is a speed choice only: the engine builds
every network of a run in it, and no method's loss or gradients depend on it."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from adautomix.config import RunConfig
from adautomix.engine.train import build_networks
from adautomix.mixers import create_method
from tests.tiny_backbone import TinyBackbone


def conv_weights(module: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in module.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("channels_last", [True, False])
def test_every_network_of_a_run_is_built_in_the_configured_format(channels_last):
    config = RunConfig(model="resnet18", method="adautomix", channels_last=channels_last)
    manifest = types.SimpleNamespace(num_classes=10, channels=3)
    model, method, _ = build_networks(config, manifest, torch.device("cpu"))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    # the method's own networks: the EMA teacher and the generator
    assert len(conv_weights(method.teacher())) == len(conv_weights(model))
    assert method.mix_block_parameters()
    weights = conv_weights(model) + conv_weights(method)
    assert all(w.is_contiguous(memory_format=memory_format) for w in weights)
    # 3×3 kernels tell the two formats apart (a 1×1 kernel is contiguous in both)
    assert any(not w.is_contiguous() for w in weights) == channels_last


@pytest.mark.parametrize("name", ["vanilla", "manifoldmix", "automix", "adautomix"])
def test_memory_format_changes_no_loss_or_gradient(name):
    def step(memory_format):
        torch.manual_seed(0)
        model = TinyBackbone(num_classes=10)
        method = create_method(name, model, 10)
        model.to(memory_format=memory_format)
        method.to(memory_format=memory_format)
        g = torch.Generator().manual_seed(1)
        images = torch.randn(8, 3, 16, 16, generator=g)
        labels = torch.randint(0, 10, (8,), generator=g)
        torch.manual_seed(2)
        loss, _ = method.training_step(model, images, labels, step=0)
        loss.backward()
        parameters = (*model.parameters(), *method.parameters())
        return loss.detach(), [p.grad.contiguous() for p in parameters if p.grad is not None]

    loss, grads = step(torch.channels_last)
    reference, reference_grads = step(torch.contiguous_format)
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-6)
    assert len(grads) == len(reference_grads) > 0
    for grad, expected in zip(grads, reference_grads):
        torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6)
