"""Plain MLPs: the healthy baseline (ReLU, Kaiming) and the textbook deep tanh net with unit-variance
weights, whose every layer saturates."""
from __future__ import annotations

import torch
from torch import nn

from .case import ZooCase, features, seeded


class MLP(nn.Module):
    def __init__(self, widths: list[int], activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(fan_in, fan_out))
            if i < len(widths) - 2:
                layers.append(activation())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def linears(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def activations(model: nn.Module, kind: type[nn.Module]) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, kind)]


def mlp_kaiming() -> ZooCase:
    with seeded(0):
        model = MLP([784, 256, 256, 128, 10])
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
    return ZooCase("mlp_kaiming", model, features(64, 784))


def deep_tanh_unit_weights() -> ZooCase:
    """Six tanh layers with N(0, 1) weights: with fan-in 128 the pre-activations have std ~10, so
    nearly all of every tanh sits in the flat region (NN202, and NN201 as each one feeds the next
    layer); every Linear is ~10x Xavier (NN103)."""
    with seeded(0):
        model = MLP([64] + [128] * 6 + [10], activation=nn.Tanh)
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=1.0)
                nn.init.zeros_(m.bias)
    tanhs = activations(model, nn.Tanh)
    return ZooCase("deep_tanh_unit_weights", model, features(64, 64),
                   expect={"NN202": tanhs, "NN201": tanhs, "NN103": linears(model)[:-1]},
                   consequences={"NN402": [""], "NN404": [""]})
