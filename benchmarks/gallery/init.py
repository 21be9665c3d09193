"""Initialization and the loss at init (NN101, NN102, NN304)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .case import CLASSIFY, Case, Expect, Setup, classifier_setup, mlp, seeded
from .healthy import NNC, TT2
from .structure import conv_net, conv_setup, images


@seeded
def overconfident_init() -> Setup:
    """torchtest2 README #8: the head initialized N(0, 1) instead of U(-1/8, 1/8)."""
    model = mlp(32, 256, 10)
    nn.init.normal_(model[2].weight, std=1.0)
    return classifier_setup(model)


@seeded
def overconfident_bias() -> Setup:
    """neural_net_checklist tests (loss at init, calibration at init): bias[0] = 1000."""
    model = nn.Linear(10, 10)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
        model.bias[0] = 1000.0
    return Setup(model, torch.randn(100, 10), torch.randint(0, 10, (100,)), F.cross_entropy)


def wide_mlp_setup(model: nn.Module) -> Setup:
    """torch-audit demo_general's shape: 64 features in, 128 hidden, 10 classes."""
    return Setup(model, torch.randn(16, 64), torch.randint(0, 10, (16,)), F.cross_entropy,
                 torch.optim.Adam(model.parameters(), lr=1e-3))


@seeded
def constant_fill() -> Setup:
    """torch-audit demo_general: `weight.fill_(-1.0); bias.fill_(-1.0)` to provoke dead units
    (TA105/TA103): every hidden unit computes the same function, for ever."""
    model = mlp(64, 128, 10)
    with torch.no_grad():
        model[0].weight.fill_(-1.0)
        model[0].bias.fill_(-1.0)
    return wide_mlp_setup(model)


@seeded
def wide_mlp() -> Setup:
    return wide_mlp_setup(mlp(64, 128, 10))


@seeded
def dead_conv_filters() -> Setup:
    """torch-audit demo_cv (TA405): 13 of 16 filters zeroed (pruning gone wrong)."""
    model = conv_net()
    with torch.no_grad():
        model[0].weight[3:] = 0.0
    return conv_setup(model, images())


CASES = [
    Case("overconfident_init", "init", f"{TT2} #8", overconfident_init, Expect("NN304", "2"), twin="classifier",
         options=CLASSIFY),
    Case("overconfident_bias", "init", f"{NNC} tests (loss + calibration at init)", overconfident_bias,
         Expect("NN304", ""), twin="nnc_linear", options=CLASSIFY),
    Case("constant_fill", "init", "torch-audit demo_general (TA105/TA103)", constant_fill, Expect("NN102", "0"),
         twin="wide_mlp", options=CLASSIFY),
    Case("wide_mlp", "init", "torch-audit demo_general: healthy twin", wide_mlp, options=CLASSIFY),
    Case("dead_conv_filters", "init", "torch-audit demo_cv (TA405)", dead_conv_filters, Expect("NN101", "0"),
         twin="small_convnet", options=CLASSIFY,
         note="NN101 as specified needs the whole weight zero; this needs a per-filter check"),
]
