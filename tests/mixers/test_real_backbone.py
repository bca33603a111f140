"""A learned-mix step on a real network: the CIFAR-stem ResNet-18 with BatchNorm that the paper's
main setting trains (3×3 stem, no max-pool), not the tiny test net, at 16 px (a 4×4 stage-3
map) to stay fast.
Forward and backward in both memory formats: gradients reach the online network, both heads'
trainable side and the mix block, never the teacher, and the two formats agree."""

from __future__ import annotations

import pytest
import torch

from adautomix.mixers import create_method
from adautomix.models import create_model


def one_step(name: str, memory_format: torch.memory_format):
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10, in_chans=3).to(memory_format=memory_format)
    method = create_method(name, model, 10).to(memory_format=memory_format)
    g = torch.Generator().manual_seed(1)
    images = torch.randn(4, 3, 16, 16, generator=g).to(memory_format=memory_format)
    labels = torch.randint(0, 10, (4,), generator=g)
    running_before = method.net_k.stages[2][0].bn1.running_mean.clone()
    torch.manual_seed(2)
    loss, logs = method.training_step(model, images, labels, step=0)
    loss.backward()
    return model, method, loss.detach(), logs, running_before


@pytest.mark.parametrize("name", ["adautomix", "automix"])
def test_a_learned_mix_step_on_a_cifar_resnet18_in_both_memory_formats(name):
    results = {fmt: one_step(name, fmt) for fmt in (torch.channels_last, torch.contiguous_format)}
    for memory_format, (model, method, loss, logs, running_before) in results.items():
        assert model.stages[2][0].conv1.weight.is_contiguous(memory_format=memory_format)
        assert torch.isfinite(loss) and all(torch.isfinite(v) for v in logs.values())
        trainable = [
            *model.parameters(),
            *method.head_mix_q.parameters(),
            *method.mix_block_parameters(),
        ]
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)
        assert all(p.grad.abs().sum() > 0 for p in method.mix_block_parameters())
        teacher = [*method.net_k.parameters(), *method.head_mix_k.parameters()]
        assert all(not p.requires_grad and p.grad is None for p in teacher)
        # the teacher's train-mode passes moved its BN statistics, which evaluation reads
        assert not torch.equal(method.net_k.stages[2][0].bn1.running_mean, running_before)

    (_, last_method, last_loss, _, _), (_, first_method, first_loss, _, _) = results.values()
    torch.testing.assert_close(last_loss, first_loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(last_method.mix_block_parameters(), first_method.mix_block_parameters()):
        torch.testing.assert_close(a.grad.contiguous(), b.grad.contiguous(), rtol=1e-3, atol=1e-6)
