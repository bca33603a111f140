from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm

from adautomix.config import ConfigError
from adautomix.models import create_model
from adautomix.models.torchvision_nets import (
    TorchvisionConvNeXt,
    TorchvisionResNet,
    TorchvisionSwin,
)

RESNET18_FILE = "resnet18-f37072fd.pth"  # the file name of ResNet18_Weights.DEFAULT's URL


def _with_head(net, head):
    """Give a torchvision net the wrapper's head, so both must compute the same logits."""
    if isinstance(net, tvm.ResNet):
        net.fc = head
    elif isinstance(net, tvm.ConvNeXt):
        net.classifier[2] = head
    else:
        net.head = head
    return net


@pytest.mark.parametrize(
    "builder, wrapper",
    [
        (tvm.resnet18, TorchvisionResNet),
        (tvm.convnext_tiny, TorchvisionConvNeXt),
        (tvm.swin_t, TorchvisionSwin),
    ],
)
def test_wrapper_computes_what_torchvision_computes(builder, wrapper):
    torch.manual_seed(0)
    net = builder(weights=None)
    model = wrapper(net, num_classes=7, in_chans=3, pretrained=False).eval()
    net = _with_head(net, model.head).eval()
    wrapped = {id(p) for p in model.parameters()}
    assert wrapped == {id(p) for p in net.parameters()}  # the same tensors, nothing copied
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-6)


def test_missing_pretrained_weights_name_the_file_and_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / RESNET18_FILE
    with pytest.raises(FileNotFoundError, match="TORCH_HOME") as error:
        create_model("tv_resnet18", 10, pretrained=True)
    assert str(expected) in str(error.value)


def test_pretrained_weights_load_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(1)
    saved = tvm.resnet18().state_dict()
    torch.save(saved, checkpoints / RESNET18_FILE)

    rgb = create_model("tv_resnet18", 10, in_chans=3, pretrained=True).eval()
    grey = create_model("tv_resnet18", 10, in_chans=1, pretrained=True).eval()
    assert torch.equal(rgb.stem[0].weight, saved["conv1.weight"])
    assert torch.equal(rgb.stages[3][1].conv2.weight, saved["layer4.1.conv2.weight"])
    assert torch.equal(grey.stem[0].weight, saved["conv1.weight"].sum(dim=1, keepdim=True))
    assert rgb.head.weight.shape == (10, 512)

    # the summed kernels make a grey image look to the net as that image repeated on R, G and B
    image = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(
            grey.features(image), rgb.features(image.expand(-1, 3, -1, -1)), atol=1e-5
        )

    with pytest.raises(ConfigError, match="in_chans=2"):
        create_model("tv_resnet18", 10, in_chans=2, pretrained=True)


def test_grey_input_conv_keeps_the_family_init(build):
    conv = build("tv_resnet18", in_chans=1).stem[0]
    expected = (2.0 / (conv.out_channels * 7 * 7)) ** 0.5  # Kaiming fan_out, as torchvision
    assert conv.weight.shape == (64, 1, 7, 7)
    assert abs(conv.weight.std().item() / expected - 1.0) < 0.1
