"""VGG-11 as torchvision writes it (torchvision/models/vgg.py, configuration "A"), at a quarter of
the width, for 32x32 images: no normalization anywhere, so the signal through its 11 weight layers
is exactly what the init makes of it.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .case import ZooCase, images, seeded

CFG_A = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


def make_layers(cfg, width_divisor: int = 4) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            v = v // width_divisor
            layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, features: nn.Sequential, num_classes: int = 10, hidden: int = 256,
                 init_scale: float = 1.0):
        super().__init__()
        self.features = features
        channels = [m.out_channels for m in features if isinstance(m, nn.Conv2d)][-1]
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 2 * 2, hidden), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                # torchvision draws N(0, 0.01) for fan-ins of 25088 (512x7x7) and 4096; rescaled by
                # sqrt(that fan-in / ours), each narrower layer keeps VGG's std relative to 1/sqrt(fan_in).
                full_fan_in = 512 * 7 * 7 if m is self.classifier[0] else 4096
                nn.init.normal_(m.weight, 0, 0.01 * math.sqrt(full_fan_in / m.in_features))
                nn.init.constant_(m.bias, 0)
        if init_scale != 1.0:
            with torch.no_grad():
                for m in self.modules():
                    if isinstance(m, (nn.Conv2d, nn.Linear)):
                        m.weight.mul_(init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def weight_layers(model: VGG) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def vgg11() -> ZooCase:
    with seeded(0):
        model = VGG(make_layers(CFG_A))
    return ZooCase("vgg11", model, images(size=32),
                   note="Kaiming fan_out: the std of every weight layer's output stays within 0.15-0.6. "
                        "classifier.1 shows ~45% of its units inactive on all 8 images (the full-size "
                        "VGG-11 at 224 px: 36-45%): pooled features barely vary between images at init, "
                        "so a unit's sign is set by its weights; not a dead layer (NN203 stays quiet)")


def vgg11_small_init() -> ZooCase:
    """Every weight 0.1x its Kaiming value: each layer shrinks the signal ~10x and after 11 layers
    nothing is left (NN401, named at the first mis-scaled layer, and NN103 on every conv)."""
    with seeded(0):
        model = VGG(make_layers(CFG_A), init_scale=0.1)
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return ZooCase("vgg11_small_init", model, images(size=32),
                   expect={"NN401": ["features.0"], "NN103": convs},
                   consequences={"NN404": [""]})
