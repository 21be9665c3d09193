"""ResNet as torchvision writes it (torchvision/models/resnet.py), at a quarter of the width.

Kept faithful where the rules look: one `self.relu` module called several times per block, the
in-place `out += identity`, the downsample branch (1x1 conv + norm) on the first block of a stage,
a pluggable `norm_layer`, torchvision's init (kaiming_normal_ fan_out for convs, norm weight 1 and
bias 0) and `zero_init_residual`.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Optional

import torch
from torch import nn

from .case import ZooCase, images, labels, seeded


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = norm_layer(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv3(out)
        out = self.bn3(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    def __init__(self, block, layers: list[int], num_classes: int = 10, zero_init_residual: bool = False,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d, width: int = 16):
        super().__init__()
        self._norm_layer = norm_layer
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        # Zero-initialize the last BN in each residual branch, so that the residual branch starts
        # with zeros and each residual block behaves like an identity (Goyal et al., 2017).
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        norm_layer = self._norm_layer
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       norm_layer(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, norm_layer)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, norm_layer=norm_layer) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(**kwargs) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


def resnet50(**kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


def blocks(model: ResNet) -> list[str]:
    """Every residual block, in order."""
    return [name for name, m in model.named_modules() if isinstance(m, (BasicBlock, Bottleneck))]


def identity_blocks(model: ResNet) -> list[str]:
    """The blocks whose skip is the identity (no downsample branch): where `x + f(x)` is pure."""
    return [name for name, m in model.named_modules()
            if isinstance(m, (BasicBlock, Bottleneck)) and m.downsample is None]


def branch_end(model: ResNet) -> str:
    """The last module of a block's residual branch: its last norm (or the Identity in its place)."""
    return "bn3" if isinstance(model.layer1[0], Bottleneck) else "bn2"


# ----- cases ------------------------------------------------------------------------------------

def resnet18_bn() -> ZooCase:
    with seeded(0):
        model = resnet18()
    return ZooCase("resnet18_bn", model, images(), note="BatchNorm: the stream grows additively within a stage")


def resnet50_bn() -> ZooCase:
    with seeded(0):
        model = resnet50()
    return ZooCase("resnet50_bn", model, images())


def resnet50_zero_init_residual() -> ZooCase:
    with seeded(0):
        model = resnet50(zero_init_residual=True)
    return ZooCase("resnet50_zero_init_residual", model, images(),
                   note="each identity block starts as the identity: the stream is flat within a stage")


def resnet18_sgd_weight_decay_everywhere() -> ZooCase:
    """The classic ImageNet recipe as often written: SGD with weight decay on every parameter,
    BatchNorm weights and biases included (NN506, info)."""
    with seeded(0):
        model = resnet18()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    return ZooCase("resnet18_sgd_weight_decay_everywhere", model, images(), expect={"NN506": [""]},
                   optimizer=optimizer, loss_fn=nn.CrossEntropyLoss(), target=labels(8, 10))


def resnet50_no_norm() -> ZooCase:
    """BatchNorm replaced by Identity, torchvision's Kaiming init kept: every residual branch keeps
    the scale of its input (branch gain >= 0.5), so each identity block multiplies the stream's
    variance by about 2 (NN403 on the block's residual add)."""
    with seeded(0):
        model = resnet50(norm_layer=nn.Identity)
    return ZooCase("resnet50_no_norm", model, images(), expect={"NN403": identity_blocks(model)},
                   consequences={"NN402": [""], "NN404": [""], "NN405": [""], "NN203": [""]})


def resnet18_no_norm() -> ZooCase:
    """timm's resnet18 with norm_layer=Identity (NN403's calibration): the identity blocks multiply
    the stream by 2.9, 4.7, 1.9, 1.3 and 1.1 here, with branch gains 2.8, 5.7, 2.9, 1.2 and 0.6. The
    last one (gain 0.6) is over NN403's 0.5 and belongs to the same growing run, so it is flagged too."""
    with seeded(0):
        model = resnet18(norm_layer=nn.Identity)
    return ZooCase("resnet18_no_norm", model, images(),
                   expect={"NN403": ["layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]},
                   consequences={"NN402": [""], "NN404": [""], "NN405": [""], "NN203": [""]})


def resnet18_no_running_stats() -> ZooCase:
    """BatchNorm with track_running_stats=False: at eval time it normalizes with the test batch's own
    statistics (NN503 on every BatchNorm)."""
    with seeded(0):
        model = resnet18(norm_layer=partial(nn.BatchNorm2d, track_running_stats=False))
    bns = [name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    return ZooCase("resnet18_no_running_stats", model, images(), expect={"NN503": bns})


class DetachedBackbone(nn.Module):
    """A ResNet trunk with a new head, where `.detach()` was meant to freeze the backbone but the
    backbone's parameters still require grad (and sit in the optimizer): they never get a gradient."""

    def __init__(self, trunk: ResNet, num_classes: int = 5):
        super().__init__()
        self.features = nn.Sequential(trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool,
                                      trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4,
                                      trunk.avgpool, nn.Flatten())
        self.head = nn.Linear(trunk.fc.in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).detach())


def resnet18_detached_backbone() -> ZooCase:
    with seeded(0):
        model = DetachedBackbone(resnet18())
    return ZooCase("resnet18_detached_backbone", model, images(), expect={"NN406": ["features"]})
