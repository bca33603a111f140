"""torchvision's ResNet, ResNeXt, Swin-T and ConvNeXt-T behind the Backbone interface.

The wrappers hold torchvision's own submodules as stem and stages, so pretrained weights are loaded
into the torchvision model first and nothing is copied afterwards. Only two modules are new: the
head, a Linear for `num_classes` (N(0, 0.01²), as the other models), and the first conv when the
images do not have 3 channels.

Pretrained weights come only from the local torch hub cache ($TORCH_HOME/hub/checkpoints): the
training machines may have no internet, and a silent download attempt there would hang or fail
late, so a missing file is an error that says where to put it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torchvision.models as tvm
from torch import nn
from torchvision.models import WeightsEnum
from torchvision.ops import Permute

from ..config import ConfigError
from .backbone import Backbone, linear_head


def _cached_state_dict(weights: WeightsEnum) -> dict[str, torch.Tensor]:
    path = Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights {weights} not found at {path}, and they are never downloaded "
            f"here. Fetch {weights.url} on a machine with internet and copy it to that path; the "
            "folder is $TORCH_HOME/hub/checkpoints (TORCH_HOME defaults to ~/.cache/torch)."
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def _torchvision_net(
    builder: Callable[..., nn.Module], weights: WeightsEnum, pretrained: bool
) -> nn.Module:
    net = builder(weights=None)
    if pretrained:
        net.load_state_dict(_cached_state_dict(weights))
    return net


def _input_conv(
    conv: nn.Conv2d, in_chans: int, pretrained: bool, init: Callable[[nn.Conv2d], None] | None
) -> nn.Conv2d:
    """The first conv, rebuilt for `in_chans` channels when they are not RGB.

    Pretrained RGB kernels are summed over colour, so a grey image gets the response the pretrained
    net gives to that image copied into R, G and B. Without pretrained weights the new conv gets the
    family's own initialisation (`init`; None when the family keeps PyTorch's default)."""
    if in_chans == conv.in_channels:
        return conv
    if pretrained and in_chans != 1:
        raise ConfigError(
            f"pretrained weights take 1 or 3 input channels, got in_chans={in_chans}; "
            "train from scratch (pretrained=False) for other inputs"
        )
    new = nn.Conv2d(
        in_chans,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        bias=conv.bias is not None,
    )
    if pretrained:
        with torch.no_grad():
            new.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    elif init is not None:
        init(new)
    return new


def _resnet_conv_init(conv: nn.Conv2d) -> None:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")


def _convnext_conv_init(conv: nn.Conv2d) -> None:
    nn.init.trunc_normal_(conv.weight, std=0.02)
    nn.init.zeros_(conv.bias)


def _channels_first(*modules: nn.Module) -> nn.Sequential:
    """Swin's modules work on NHWC maps; the Backbone interface hands NCHW maps between stages."""
    return nn.Sequential(Permute([0, 2, 3, 1]), *modules, Permute([0, 3, 1, 2]))


class TorchvisionBackbone(Backbone):
    def __init__(
        self,
        stem: nn.Module,
        stages: list[nn.Module],
        num_features: int,
        num_classes: int,
        in_chans: int,
    ):
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.head = linear_head(num_features, num_classes)
        self.num_features = num_features
        # all four families double their width at each of four stages, the first at stride 4
        self.stage_channels = tuple(num_features // 2 ** (3 - index) for index in range(4))
        self.stage_strides = (4, 8, 16, 32)
        self.in_chans = in_chans
        self.num_classes = num_classes


class TorchvisionResNet(TorchvisionBackbone):
    """ResNet and ResNeXt: stem = conv1, bn1, relu, maxpool; stages = layer1..layer4."""

    def __init__(self, net: tvm.ResNet, num_classes: int, in_chans: int, pretrained: bool):
        conv1 = _input_conv(net.conv1, in_chans, pretrained, _resnet_conv_init)
        super().__init__(
            nn.Sequential(conv1, net.bn1, net.relu, net.maxpool),
            [net.layer1, net.layer2, net.layer3, net.layer4],
            net.fc.in_features,
            num_classes,
            in_chans,
        )


class TorchvisionConvNeXt(TorchvisionBackbone):
    """stem = patchify conv + LayerNorm; each later stage starts with its downsampling layer.
    The classifier's LayerNorm comes after pooling, so it is part of `pre_logits`."""

    def __init__(self, net: tvm.ConvNeXt, num_classes: int, in_chans: int, pretrained: bool):
        features = net.features
        features[0][0] = _input_conv(features[0][0], in_chans, pretrained, _convnext_conv_init)
        super().__init__(
            features[0],
            [features[1], features[2:4], features[4:6], features[6:8]],
            net.classifier[2].in_features,
            num_classes,
            in_chans,
        )
        self.final_norm = net.classifier[0]

    def pre_logits(self, h: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(h, 1)
        return torch.flatten(self.final_norm(pooled), 1)


class TorchvisionSwin(TorchvisionBackbone):
    """stem = patch embedding; each later stage starts with its patch merging. Stage outputs are
    permuted to NCHW; the final LayerNorm, applied per position before pooling, is in
    `pre_logits`."""

    def __init__(self, net: tvm.SwinTransformer, num_classes: int, in_chans: int, pretrained: bool):
        features = net.features
        # torchvision's Swin leaves the patch conv at PyTorch's default init
        features[0][0] = _input_conv(features[0][0], in_chans, pretrained, None)
        stem = nn.Sequential(features[0], Permute([0, 3, 1, 2]))
        stages = [
            _channels_first(features[1]),
            _channels_first(features[2], features[3]),
            _channels_first(features[4], features[5]),
            _channels_first(features[6], features[7]),
        ]
        super().__init__(stem, stages, net.head.in_features, num_classes, in_chans)
        self.final_norm = net.norm

    def pre_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.final_norm(h.permute(0, 2, 3, 1)).mean(dim=(1, 2))


def tv_resnet18(num_classes: int, in_chans: int = 3, pretrained: bool = False) -> TorchvisionResNet:
    net = _torchvision_net(tvm.resnet18, tvm.ResNet18_Weights.DEFAULT, pretrained)
    return TorchvisionResNet(net, num_classes, in_chans, pretrained)


def tv_resnet34(num_classes: int, in_chans: int = 3, pretrained: bool = False) -> TorchvisionResNet:
    net = _torchvision_net(tvm.resnet34, tvm.ResNet34_Weights.DEFAULT, pretrained)
    return TorchvisionResNet(net, num_classes, in_chans, pretrained)


def tv_resnet50(num_classes: int, in_chans: int = 3, pretrained: bool = False) -> TorchvisionResNet:
    net = _torchvision_net(tvm.resnet50, tvm.ResNet50_Weights.DEFAULT, pretrained)
    return TorchvisionResNet(net, num_classes, in_chans, pretrained)


def tv_resnet101(
    num_classes: int, in_chans: int = 3, pretrained: bool = False
) -> TorchvisionResNet:
    net = _torchvision_net(tvm.resnet101, tvm.ResNet101_Weights.DEFAULT, pretrained)
    return TorchvisionResNet(net, num_classes, in_chans, pretrained)


def tv_resnext50_32x4d(
    num_classes: int, in_chans: int = 3, pretrained: bool = False
) -> TorchvisionResNet:
    net = _torchvision_net(tvm.resnext50_32x4d, tvm.ResNeXt50_32X4D_Weights.DEFAULT, pretrained)
    return TorchvisionResNet(net, num_classes, in_chans, pretrained)


def swin_t(num_classes: int, in_chans: int = 3, pretrained: bool = False) -> TorchvisionSwin:
    net = _torchvision_net(tvm.swin_t, tvm.Swin_T_Weights.DEFAULT, pretrained)
    return TorchvisionSwin(net, num_classes, in_chans, pretrained)


def convnext_tiny(
    num_classes: int, in_chans: int = 3, pretrained: bool = False
) -> TorchvisionConvNeXt:
    net = _torchvision_net(tvm.convnext_tiny, tvm.ConvNeXt_Tiny_Weights.DEFAULT, pretrained)
    return TorchvisionConvNeXt(net, num_classes, in_chans, pretrained)
