"""Gradients that are cut, zero or non-finite (NN002, NN402/NN405/NN406, NN805)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .case import CLASSIFY, Case, Expect, Setup, classifier_setup, seeded, x_features, y_classes
from .healthy import NNC, TT2


class Net(nn.Module):
    """torchtest2 README #2: `.data` silently detaches the backbone (`cut` False: the twin)."""

    def __init__(self, cut: bool = True):
        super().__init__()
        self.cut = cut
        self.backbone = nn.Linear(32, 64)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        features = self.backbone(x)
        if self.cut:
            features = features.data  # legacy .data silently detaches
        return self.head(F.relu(features))


@seeded
def graph_cut_data() -> Setup:
    return classifier_setup(Net(cut=True), with_optimizer=False)


@seeded
def graph_connected() -> Setup:
    return classifier_setup(Net(cut=False), with_optimizer=False)


class Embedder(nn.Module):
    """torchtest2 README #7: pairwise distances; sqrt's derivative is infinite at 0, the diagonal.
    `eps` > 0 is the usual guard (the twin)."""

    def __init__(self, eps: float = 0.0):
        super().__init__()
        self.eps = eps
        self.fc = nn.Linear(32, 8)

    def forward(self, x):
        z = self.fc(x)
        return ((z[:, None] - z[None, :]).pow(2).sum(-1) + self.eps).sqrt()


@seeded
def nan_gradient_sqrt() -> Setup:
    return Setup(Embedder(), x_features())


@seeded
def sqrt_with_eps() -> Setup:
    return Setup(Embedder(eps=1e-6), x_features())


class NoisyNet(nn.Module):
    """torchtest2 README #11: Gaussian noise with a learnable variance; torch.where does not
    protect sqrt's backward once SGD pushes `var` below 0. `log_var` True (the twin) learns the
    log-variance instead, which cannot go negative."""

    def __init__(self, log_var: bool = False):
        super().__init__()
        self.log_var = log_var
        self.fc = nn.Linear(32, 10)
        self.var = nn.Parameter(torch.tensor(0.0 if log_var else 1.0))

    def forward(self, x):
        logits = self.fc(x)
        if self.training:
            if self.log_var:
                std = torch.exp(0.5 * self.var)
            else:
                std = torch.where(self.var > 0, torch.sqrt(self.var), torch.zeros_like(self.var))
            logits = logits + std * torch.randn_like(logits)
        return logits


def noisy_setup(log_var: bool) -> Setup:
    return classifier_setup(NoisyNet(log_var), optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1))


@seeded
def nan_after_steps() -> Setup:
    return noisy_setup(log_var=False)


@seeded
def noisy_log_variance() -> Setup:
    return noisy_setup(log_var=True)


class Square(torch.autograd.Function):
    """torchtest2 README #12: the derivative of x**2 is 2x; `backward` returns x."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**2

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return x * grad  # BUG: the derivative of x**2 is 2 * x


class SquareNet(nn.Module):
    def __init__(self, custom: bool = True):
        super().__init__()
        self.custom = custom
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(Square.apply(x) if self.custom else x**2)


@seeded
def wrong_custom_backward() -> Setup:
    return classifier_setup(SquareNet(custom=True), with_optimizer=False)


@seeded
def square_native() -> Setup:
    return classifier_setup(SquareNet(custom=False), with_optimizer=False)


@seeded
def dropout_p1() -> Setup:
    """neural_net_checklist tests' "Funnn bug": Dropout(1.0) zeroes every output in training."""
    return Setup(nn.Sequential(nn.Linear(10, 10), nn.Dropout(1.0)), torch.randn(100, 10),
                 torch.randint(0, 10, (100,)), F.cross_entropy)


@seeded
def nan_parameter() -> Setup:
    """torch-audit TA100: a NaN inside a weight (a bad checkpoint, a diverged run resumed)."""
    setup = classifier_setup()
    with torch.no_grad():
        setup.model[0].weight[3, 5] = float("nan")
    return setup


def deep_mlp(std: float, depth: int = 6, width: int = 256) -> nn.Sequential:
    """`depth` Linear+ReLU layers initialized N(0, std^2); std = sqrt(2 / width) is Kaiming."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layer = nn.Linear(32 if i == 0 else width, width)
        nn.init.normal_(layer.weight, std=std if i else (2 / 32) ** 0.5)
        nn.init.zeros_(layer.bias)
        layers += [layer, nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


@seeded
def exploding_gradients() -> Setup:
    """torch-audit TA102 (global gradient norm over 100): weights 3x too large, 6 layers deep."""
    model = deep_mlp(std=3 * (2 / 256) ** 0.5)
    return Setup(model, x_features(), y_classes(), F.cross_entropy, torch.optim.Adam(model.parameters(), lr=1e-3))


@seeded
def kaiming_deep_mlp() -> Setup:
    model = deep_mlp(std=(2 / 256) ** 0.5)
    return Setup(model, x_features(), y_classes(), F.cross_entropy, torch.optim.Adam(model.parameters(), lr=1e-3))


CASES = [
    Case("graph_cut_data", "gradients", f"{TT2} #2", graph_cut_data, Expect("NN406", "backbone"),
         twin="graph_connected", options=CLASSIFY),
    Case("graph_connected", "gradients", f"{TT2} #2: healthy twin", graph_connected, options=CLASSIFY),
    Case("nan_gradient_sqrt", "gradients", f"{TT2} #7", nan_gradient_sqrt, Expect("NN405", ("fc", "")),
         twin="sqrt_with_eps"),
    Case("sqrt_with_eps", "gradients", f"{TT2} #7: healthy twin", sqrt_with_eps,
         note="compares samples on purpose (pairwise distances): torchtest2's README says to skip "
              "batch_independence for such models; an NN701 must exempt outputs with two batch dimensions"),
    Case("nan_after_steps", "gradients", f"{TT2} #11", nan_after_steps, Expect("NN805", None),
         twin="noisy_log_variance", options=CLASSIFY),
    Case("noisy_log_variance", "gradients", f"{TT2} #11: healthy twin", noisy_log_variance, options=CLASSIFY),
    Case("wrong_custom_backward", "gradients", f"{TT2} #12 (gradcheck)", wrong_custom_backward,
         twin="square_native", options=CLASSIFY,
         out_of_scope="no rule in the catalog: a wrong autograd.Function.backward needs gradcheck on a float64 copy"),
    Case("square_native", "gradients", f"{TT2} #12: healthy twin", square_native, options=CLASSIFY),
    Case("dropout_p1", "gradients", f"{NNC} tests (non-zero gradients)", dropout_p1, Expect("NN406", "0"),
         twin="nnc_linear", options=CLASSIFY),
    Case("nan_parameter", "gradients", "torch-audit TA100", nan_parameter, Expect("NN002", "0"),
         twin="classifier", options=CLASSIFY),
    Case("exploding_gradients", "gradients", "torch-audit TA102", exploding_gradients, Expect("NN402", None),
         twin="kaiming_deep_mlp", options=CLASSIFY),
    Case("kaiming_deep_mlp", "gradients", "torch-audit TA102: healthy twin", kaiming_deep_mlp, options=CLASSIFY),
]
