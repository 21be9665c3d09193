"""Structure seen in the trace (NN204, NN704-NN707) and the peers' architecture hints."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .case import CLASSIFY, Case, Expect, Setup, classifier_setup, seeded

ISSUE = "issue 13"
TA = "torch-audit"


@seeded
def collapsed_linear() -> Setup:
    """Linear into Linear: the stack is one linear map (the ReLU of the README MLP forgotten)."""
    return classifier_setup(nn.Sequential(nn.Linear(32, 64), nn.Linear(64, 10)))


class ExpHidden(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(torch.exp(self.fc1(x)))


@seeded
def exp_hidden() -> Setup:
    return classifier_setup(ExpHidden())


@seeded
def softmax_hidden() -> Setup:
    return classifier_setup(nn.Sequential(nn.Linear(32, 64), nn.Softmax(dim=1), nn.Linear(64, 10)))


class Classifier(nn.Module):
    """torchtest2 README quick start: a LayerNorm defined but never used."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(32, 64), nn.ReLU())
        self.norm = nn.LayerNorm(64)  # defined...
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.encoder(x))  # ...but never used


@seeded
def unused_layernorm() -> Setup:
    return classifier_setup(Classifier())


class WithGhost(nn.Module):
    """torch-audit demo_general / demo_cv / demo_nlp / demo_lightning: `self.ghost` never called."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(32, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)
        self.ghost = nn.Linear(128, 128)

    def forward(self, x):
        return self.head(self.features(x))


@seeded
def zombie_layer() -> Setup:
    return classifier_setup(WithGhost())


class BatchNormMLP(nn.Module):
    """Linear -> BatchNorm -> ReLU twice. `shared_bn`: one BatchNorm called at both places;
    `bias`: the Linear layers keep a bias the BatchNorm subtracts away; `width` of the first."""

    def __init__(self, shared_bn: bool = False, bias: bool = False, width: int = 64):
        super().__init__()
        self.fc1 = nn.Linear(32, width, bias=bias)
        self.bn1 = nn.BatchNorm1d(width)
        self.fc2 = nn.Linear(width, 64, bias=bias)
        self.bn2 = self.bn1 if shared_bn else nn.BatchNorm1d(64)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.fc1(x)))
        return self.head(F.relu(self.bn2(self.fc2(x))))


@seeded
def batchnorm_mlp() -> Setup:
    return classifier_setup(BatchNormMLP())


@seeded
def batchnorm_reused() -> Setup:
    return classifier_setup(BatchNormMLP(shared_bn=True))


@seeded
def bias_before_batchnorm() -> Setup:
    return classifier_setup(BatchNormMLP(bias=True))


@seeded
def tensor_core_misaligned() -> Setup:
    """torch-audit demo_general: a 127-wide layer (TA200)."""
    return classifier_setup(BatchNormMLP(width=127))


def conv_net(kernel: int = 3) -> nn.Sequential:
    """torch-audit demo_cv's BadConvNet, its bugs removed (bias=False, odd kernel, no ghost)."""
    return nn.Sequential(nn.Conv2d(3, 16, kernel_size=kernel, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def images(n: int = 16) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32)


def conv_setup(model: nn.Module, x: torch.Tensor) -> Setup:
    return Setup(model, x, torch.randint(0, 10, (x.shape[0],)), F.cross_entropy,
                 torch.optim.SGD(model.parameters(), lr=1e-2))


@seeded
def small_convnet() -> Setup:
    return conv_setup(conv_net(), images())


@seeded
def even_kernel() -> Setup:
    return conv_setup(conv_net(kernel=2), images())


OUT_OF_SCOPE_PERF = "a performance hint (throughput on GPUs), not a training bug; nnlint checks training"

CASES = [
    Case("collapsed_linear", "structure", ISSUE, collapsed_linear, Expect("NN704", ("0", "1")), twin="classifier",
         options=CLASSIFY),
    Case("exp_hidden", "structure", ISSUE, exp_hidden, Expect("NN204", ("", "fc1")), twin="classifier",
         options=CLASSIFY),
    Case("softmax_hidden", "structure", ISSUE, softmax_hidden, Expect("NN204", "1"), twin="classifier",
         options=CLASSIFY),
    Case("unused_layernorm", "structure", "torchtest2 README quick start", unused_layernorm,
         Expect("NN705", "norm"), twin="classifier", options=CLASSIFY),
    Case("zombie_layer", "structure", f"{TA} demos (TA500)", zombie_layer, Expect("NN705", "ghost"),
         twin="classifier", options=CLASSIFY),
    Case("batchnorm_mlp", "structure", f"{ISSUE}: healthy twin", batchnorm_mlp, options=CLASSIFY),
    Case("batchnorm_reused", "structure", f"{TA} TA501; {ISSUE}", batchnorm_reused, Expect("NN706", "bn1"),
         twin="batchnorm_mlp", options=CLASSIFY),
    Case("bias_before_batchnorm", "structure", f"{TA} demo_general/demo_cv (TA400); {ISSUE}",
         bias_before_batchnorm, Expect("NN707", ("fc1", "fc2")), twin="batchnorm_mlp", options=CLASSIFY),
    Case("tensor_core_misaligned", "structure", f"{TA} demo_general (TA200)", tensor_core_misaligned,
         twin="batchnorm_mlp", options=CLASSIFY, out_of_scope=OUT_OF_SCOPE_PERF),
    Case("small_convnet", "structure", f"{TA} demo_cv: healthy twin", small_convnet, options=CLASSIFY),
    Case("even_kernel", "structure", f"{TA} demo_cv (TA404)", even_kernel, twin="small_convnet", options=CLASSIFY,
         out_of_scope="a style hint (even kernels shift the grid), info in torch-audit; not a training-setup bug"),
]
