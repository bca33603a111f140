"""The Backbone contract, checked on every model name of the config."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from adautomix.config import MODELS, ConfigError
from adautomix.models import SMALL_IMAGE_MODELS, TORCHVISION_MODELS, create_model

# (name, in_chans, input size): the small-image nets at CIFAR's 32 px (RGB) and Fashion-MNIST's
# 28 px (grey); the torchvision nets at 32 px, where stage 4 is 1×1, and grey for one net of each
# family (ResNet at 64 px, so that its stage-4 map is more than one pixel).
CASES = (
    [(name, 3, 32) for name in SMALL_IMAGE_MODELS]
    + [(name, 1, 28) for name in SMALL_IMAGE_MODELS]
    + [(name, 3, 32) for name in TORCHVISION_MODELS]
    + [("tv_resnet18", 1, 64), ("convnext_t", 1, 32), ("swin_t", 1, 32)]
)


def _images(in_chans: int, size: int) -> torch.Tensor:
    return torch.randn(2, in_chans, size, size, generator=torch.Generator().manual_seed(0))


def _small_size(name: str) -> int:
    """The cheapest input that keeps every stage's map: 16 px, or 32 for the torchvision nets."""
    return 16 if name in SMALL_IMAGE_MODELS else 32


def test_factory_knows_exactly_the_config_names():
    assert sorted({**SMALL_IMAGE_MODELS, **TORCHVISION_MODELS}) == sorted(MODELS)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown model 'resnet19'") as error:
        create_model("resnet19", 10)
    assert all(name in str(error.value) for name in MODELS)


def test_pretrained_small_image_model_is_refused():
    with pytest.raises(ConfigError, match="'resnet18' has no pretrained weights.*tv_resnet18"):
        create_model("resnet18", 10, pretrained=True)


@pytest.mark.parametrize("name, in_chans, size", CASES)
def test_feature_shapes_follow_stage_channels_and_strides(build, name, in_chans, size):
    model = build(name, in_chans).eval()
    assert (model.in_chans, model.num_stages) == (in_chans, 4)
    assert model.stage_channels[-1] == model.num_features
    with torch.no_grad():
        features = [model.features(_images(in_chans, size), upto=k) for k in range(5)]
    # no net here downsamples in stage 1, so the stem's output has stage 1's stride
    strides = (model.stage_strides[0], *model.stage_strides)
    for k, (h, stride) in enumerate(zip(features, strides)):
        assert h.shape[0] == 2 and h.shape[2:] == (math.ceil(size / stride),) * 2, (k, h.shape)
        if k > 0:
            assert h.shape[1] == model.stage_channels[k - 1], (k, h.shape)


@pytest.mark.parametrize("name", MODELS)
def test_forward_from_any_stage_matches_forward(build, name):
    model = build(name).eval()
    x = _images(3, _small_size(name))
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (2, model.num_classes)
        for k in range(5):
            resumed = model.forward_from(model.features(x, upto=k), k)
            assert torch.allclose(resumed, logits), k


@pytest.mark.parametrize("name", MODELS)
def test_head_is_a_fresh_small_linear(build, name):
    model = build(name)
    head = model.head
    assert head.weight.shape == (model.num_classes, model.num_features)
    assert abs(head.weight.std().item() - 0.01) < 1e-3
    assert not head.bias.any()


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_receives_gradient(build, name):
    model = copy.deepcopy(build(name)).train()
    with torch.no_grad():
        # zero-initialised weights (residual γ, biases) would stop gradient to what lies
        # before them in their branch; perturb them so every parameter has a live path
        for param in model.parameters():
            if not param.any():
                param.normal_(0.0, 0.1)
    x = _images(3, _small_size(name))
    loss = F.cross_entropy(model(x), torch.tensor([1, 2]))
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not dead


def test_stage_index_out_of_range_names_the_model(build):
    model = build("resnet18")
    with pytest.raises(ValueError, match="ResNetCIFAR has stages 0..4"):
        model.features(_images(3, 32), upto=5)


@pytest.mark.parametrize("name", MODELS)
def test_channels_last_computes_what_nchw_computes(build, name):
    """The engine runs every network in channels_last (RunConfig.channels_last) by default. The
    two layouts sum in different orders, so deep nets differ by rounding, relative to the scale
    of the whole map rather than of each element."""
    model = build(name).eval()
    nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = _images(3, _small_size(name))
    with torch.no_grad():
        for run in (lambda net: net(x), lambda net: net.features(x, upto=3)):
            expected, actual = run(model), run(nhwc)
            scale = expected.abs().max().item()
            assert (actual - expected).abs().max().item() <= 1e-4 * scale, name
