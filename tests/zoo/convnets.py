"""Modern CNN blocks, small, as torchvision / the papers' code write them: ConvNeXt (layer scale
1e-6, LayerNorm in both layouts), MobileNetV3 and EfficientNet inverted residuals (depthwise conv,
Hardswish/SiLU, a squeeze-and-excitation gate with Hardsigmoid/Sigmoid) and DenseNet (BN-ReLU-Conv
layers whose outputs are concatenated).
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Optional

import torch
from torch import nn
import torch.nn.functional as F

from .case import ZooCase, images, seeded


# ----- ConvNeXt (facebookresearch/ConvNeXt, models/convnext.py) ------------------------------------

class LayerNorm(nn.Module):
    """LayerNorm over channels for either layout: channels_last via F.layer_norm, channels_first
    written out, as ConvNeXt's own LayerNorm does."""

    def __init__(self, normalized_shape: int, eps: float = 1e-6, data_format: str = "channels_last"):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps
        self.data_format = data_format
        self.normalized_shape = (normalized_shape,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.data_format == "channels_last":
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvNeXtBlock(nn.Module):
    """dwconv 7x7 -> LayerNorm -> Linear 4x -> GELU -> Linear -> gamma (layer scale) -> + input."""

    def __init__(self, dim: int, layer_scale_init_value: float = 1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim)) if layer_scale_init_value > 0 else None
        self.drop_path = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        input = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        x = self.norm(x)
        x = self.pwconv1(x)
        x = self.act(x)
        x = self.pwconv2(x)
        if self.gamma is not None:
            x = self.gamma * x
        x = x.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
        return input + self.drop_path(x)


class ConvNeXt(nn.Module):
    def __init__(self, num_classes: int = 10, depths=(2, 2, 2, 2), dims=(16, 32, 64, 128),
                 layer_scale_init_value: float = 1e-6, head_init_scale: float = 1.0):
        super().__init__()
        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4),
                                                    LayerNorm(dims[0], eps=1e-6, data_format="channels_first")))
        for i in range(3):
            self.downsample_layers.append(nn.Sequential(LayerNorm(dims[i], eps=1e-6, data_format="channels_first"),
                                                        nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)))
        self.stages = nn.ModuleList(
            nn.Sequential(*[ConvNeXtBlock(dims[i], layer_scale_init_value) for _ in range(depths[i])])
            for i in range(4))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)
        self.apply(self._init_weights)
        self.head.weight.data.mul_(head_init_scale)
        self.head.bias.data.mul_(head_init_scale)

    def _init_weights(self, m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x = stage(downsample(x))
        return self.head(self.norm(x.mean([-2, -1])))


# ----- MobileNetV3 / EfficientNet (torchvision/models/mobilenetv3.py, efficientnet.py) --------------

def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class Conv2dNormActivation(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                 activation_layer: Optional[Callable[..., nn.Module]] = nn.ReLU):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2,
                                             groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if activation_layer is not None:
            layers.append(activation_layer(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: scale = gate(fc2(act(fc1(avgpool(x))))); return scale * x."""

    def __init__(self, channels: int, squeeze: int, activation: Callable[..., nn.Module] = nn.ReLU,
                 scale_activation: Callable[..., nn.Module] = nn.Sigmoid):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(input))))
        return self.scale_activation(scale) * input


class InvertedResidual(nn.Module):
    """expand 1x1 -> depthwise kxk -> (SE) -> project 1x1 (+ input when the shapes allow)."""

    def __init__(self, cin: int, expanded: int, cout: int, kernel: int, stride: int,
                 activation: Callable[..., nn.Module], se: Optional[Callable[[int], nn.Module]]):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(Conv2dNormActivation(cin, expanded, 1, activation_layer=activation))
        layers.append(Conv2dNormActivation(expanded, expanded, kernel, stride, groups=expanded,
                                           activation_layer=activation))
        if se is not None:
            layers.append(se(expanded))
        layers.append(Conv2dNormActivation(expanded, cout, 1, activation_layer=None))
        self.block = nn.Sequential(*layers)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        result = self.block(input)
        if self.use_res_connect:
            result += input
        return result


# (in, kernel, expanded, out, use_se, activation, stride): the first blocks of MobileNetV3-Small
MOBILENET_V3_SMALL = [
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
]


class MobileNet(nn.Module):
    """features -> global average pool -> classifier, the layout both torchvision models share."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def init_mobile_net(model: nn.Module, linear: Callable[[torch.Tensor], object]) -> None:
    """torchvision's init for MobileNetV3 and EfficientNet: kaiming_normal_ fan_out convs, norm weight
    1 and bias 0, zero biases; the Linear weights differ (N(0, 0.01) vs uniform +-1/sqrt(out))."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            linear(m.weight)
            nn.init.zeros_(m.bias)


def _mobilenet_se(channels: int) -> nn.Module:
    return SqueezeExcitation(channels, _make_divisible(channels // 4, 8), scale_activation=nn.Hardsigmoid)


class MobileNetV3(MobileNet):
    def __init__(self, num_classes: int = 10, last_channel: int = 256):
        super().__init__()
        layers: list[nn.Module] = [Conv2dNormActivation(3, 16, 3, stride=2, activation_layer=nn.Hardswish)]
        for cin, k, exp, cout, use_se, act, stride in MOBILENET_V3_SMALL:
            layers.append(InvertedResidual(cin, exp, cout, k, stride, nn.Hardswish if act == "HS" else nn.ReLU,
                                           _mobilenet_se if use_se else None))
        last_conv = 6 * MOBILENET_V3_SMALL[-1][3]
        layers.append(Conv2dNormActivation(MOBILENET_V3_SMALL[-1][3], last_conv, 1, activation_layer=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(last_conv, last_channel), nn.Hardswish(inplace=True),
                                        nn.Dropout(0.2, inplace=True), nn.Linear(last_channel, num_classes))
        init_mobile_net(self, linear=lambda w: nn.init.normal_(w, 0, 0.01))


# (expand_ratio, kernel, stride, in, out, repeats): the first stages of EfficientNet-B0
EFFICIENTNET_B0 = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2)]


def _mbconv_se(channels: int, squeeze: int) -> nn.Module:
    return SqueezeExcitation(channels, squeeze, activation=nn.SiLU)


def _uniform_by_fan_out(weight: torch.Tensor) -> None:
    init_range = 1.0 / math.sqrt(weight.shape[0])
    nn.init.uniform_(weight, -init_range, init_range)


class EfficientNet(MobileNet):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [Conv2dNormActivation(3, 32, 3, stride=2, activation_layer=nn.SiLU)]
        for expand_ratio, k, stride, cin, cout, repeats in EFFICIENTNET_B0:
            for i in range(repeats):
                block_in = cin if i == 0 else cout
                # MBConv's SE squeezes to a quarter of the block's *input* channels, with SiLU
                se = partial(_mbconv_se, squeeze=max(1, block_in // 4))
                layers.append(InvertedResidual(block_in, block_in * expand_ratio, cout, k, stride if i == 0 else 1,
                                               nn.SiLU, se))
        head = 4 * EFFICIENTNET_B0[-1][4]
        layers.append(Conv2dNormActivation(EFFICIENTNET_B0[-1][4], head, 1, activation_layer=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=0.2, inplace=True), nn.Linear(head, num_classes))
        init_mobile_net(self, linear=_uniform_by_fan_out)


# ----- DenseNet (torchvision/models/densenet.py) --------------------------------------------------

class _DenseLayer(nn.Module):
    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        bottleneck = self.conv1(self.relu1(self.norm1(torch.cat(inputs, 1))))
        return self.conv2(self.relu2(self.norm2(bottleneck)))


class _DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers: int, num_input_features: int, bn_size: int, growth_rate: int):
        super().__init__()
        for i in range(num_layers):
            layer = _DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, init_features: torch.Tensor) -> torch.Tensor:
        features = [init_features]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, num_input_features: int, num_output_features: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, kernel_size=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    def __init__(self, growth_rate: int = 8, block_config=(3, 3, 3), num_init_features: int = 16,
                 bn_size: int = 4, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, num_init_features, kernel_size=7, stride=2, padding=3,
                                                    bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(num_init_features))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", _DenseBlock(num_layers, num_features, bn_size, growth_rate))
            num_features += num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(num_features, num_features // 2))
                num_features //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.features(x), inplace=True)
        out = F.adaptive_avg_pool2d(out, (1, 1))
        return self.classifier(torch.flatten(out, 1))


def residual_blocks(model: nn.Module) -> list[str]:
    """The inverted residual blocks that add their input back."""
    return [n for n, m in model.named_modules() if isinstance(m, InvertedResidual) and m.use_res_connect]


def se_squeeze_activations(model: nn.Module) -> list[str]:
    """The ReLU between an SE gate's two 1x1 convs: it sees one pooled value per image and channel."""
    return [f"{n}.activation" for n, m in model.named_modules()
            if isinstance(m, SqueezeExcitation) and isinstance(m.activation, nn.ReLU)]


# ----- cases ------------------------------------------------------------------------------------

def convnext() -> ZooCase:
    with seeded(0):
        model = ConvNeXt()
    return ZooCase("convnext", model, images(),
                   note="layer scale 1e-6: every block starts as the identity, the stream is flat within a stage")


def mobilenet_v3() -> ZooCase:
    with seeded(0):
        model = MobileNetV3()
    return ZooCase("mobilenet_v3", model, images(),
                   note="SE gates with Hardsigmoid, Hardswish. Each SE squeeze ReLU sees one value per image "
                        "and channel: on these 8 images 2 of the first one's 8 units never activate (25%; "
                        "62% on i.i.d. noise, 3% on 64 images), too few positions to call them dead")


def efficientnet() -> ZooCase:
    with seeded(0):
        model = EfficientNet()
    return ZooCase("efficientnet", model, images(), note="MBConv with SiLU and sigmoid SE gates")


def densenet() -> ZooCase:
    with seeded(0):
        model = DenseNet()
    return ZooCase("densenet", model, images())
