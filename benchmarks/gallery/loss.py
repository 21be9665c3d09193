"""The objective (NN6xx): the loss, the targets and the head's starting point."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .case import CLASSIFY, Case, Expect, Setup, classifier_setup, mlp, seeded, x_features

ISSUE = "issue 13"


def binary_targets(n: int = 16) -> torch.Tensor:
    return torch.randint(0, 2, (n, 1)).float()


def regression_targets(n: int = 16, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    return mean + std * torch.randn(n, 1)


@seeded
def double_softmax_ce() -> Setup:
    """The model ends in Softmax and CrossEntropyLoss applies log_softmax again."""
    return classifier_setup(mlp(32, 64, 10, nn.Softmax(dim=1)), loss_fn=nn.CrossEntropyLoss())


@seeded
def binary_classifier() -> Setup:
    model = mlp(32, 64, 1)
    return Setup(model, x_features(), binary_targets(), nn.BCEWithLogitsLoss(),
                 torch.optim.Adam(model.parameters(), lr=1e-3))


@seeded
def sigmoid_bce_logits() -> Setup:
    model = mlp(32, 64, 1, nn.Sigmoid())
    return Setup(model, x_features(), binary_targets(), nn.BCEWithLogitsLoss(),
                 torch.optim.Adam(model.parameters(), lr=1e-3))


@seeded
def log_softmax_nll() -> Setup:
    return classifier_setup(mlp(32, 64, 10, nn.LogSoftmax(dim=1)), loss_fn=F.nll_loss)


@seeded
def raw_scores_nll() -> Setup:
    """nll_loss just picks -output[target]: on raw scores it is unbounded below."""
    return classifier_setup(loss_fn=F.nll_loss)


@seeded
def raw_scores_bce() -> Setup:
    model = mlp(32, 64, 1)
    return Setup(model, x_features(), binary_targets(), nn.BCELoss(), torch.optim.Adam(model.parameters(), lr=1e-3))


@seeded
def regression() -> Setup:
    model = mlp(32, 64, 1)
    return Setup(model, x_features(), regression_targets(), F.mse_loss, torch.optim.Adam(model.parameters(), lr=1e-3))


@seeded
def mse_broadcast() -> Setup:
    """(16, 1) output against a (16,) target: mse_loss broadcasts to 16 x 16 (with a UserWarning)."""
    model = mlp(32, 64, 1)
    return Setup(model, x_features(), regression_targets().squeeze(1), F.mse_loss,
                 torch.optim.Adam(model.parameters(), lr=1e-3))


@seeded
def unstandardized_regression() -> Setup:
    """Targets with mean 50 and std 100 against a head whose output starts near 0 with std < 1."""
    model = mlp(32, 64, 1)
    return Setup(model, x_features(), regression_targets(mean=50.0, std=100.0), F.mse_loss,
                 torch.optim.Adam(model.parameters(), lr=1e-3))


@seeded
def class_index_out_of_range() -> Setup:
    """Labels 0..11 for a 10-way head (CrossEntropyLoss raises on CPU, device-side assert on CUDA)."""
    setup = classifier_setup()
    setup.target = torch.randint(0, 12, (16,))
    setup.target[0] = 11
    return setup


@seeded
def one_hot_targets() -> Setup:
    """F.one_hot labels where cross_entropy wants class indices."""
    setup = classifier_setup()
    setup.target = F.one_hot(setup.target, 10)
    return setup


@seeded
def reduction_none() -> Setup:
    """torchtest2 README #10: the per-sample loss is never reduced."""
    return classifier_setup(loss_fn=nn.CrossEntropyLoss(reduction="none"))


def loss_through_item(outputs, targets):
    """The loss rebuilt from a Python float: backward runs and reaches no parameter."""
    return torch.tensor(F.cross_entropy(outputs, targets).item(), requires_grad=True)


def loss_through_numpy(outputs, targets):
    """A NumPy round trip: the graph ends at .numpy()."""
    return F.cross_entropy(torch.from_numpy(outputs.detach().numpy()), targets)


@seeded
def loss_via_item() -> Setup:
    return classifier_setup(loss_fn=loss_through_item)


@seeded
def loss_numpy_roundtrip() -> Setup:
    return classifier_setup(loss_fn=loss_through_numpy)


def negated_cross_entropy(outputs, targets):
    return -F.cross_entropy(outputs, targets)


@seeded
def flipped_loss_sign() -> Setup:
    """Gradient ascent: the loss the optimizer minimizes is minus the cross-entropy."""
    return classifier_setup(loss_fn=negated_cross_entropy)


PRIORS = (0.85, 0.05, 0.05, 0.05)


def imbalanced_setup(init_well: bool) -> Setup:
    """64 samples, 4 classes at 85/5/5/5%. Karpathy's "init well": the head's bias at the
    log-priors makes the loss at init the prior's entropy instead of log(4)."""
    model = mlp(32, 64, 4)
    if init_well:
        with torch.no_grad():
            model[2].bias.copy_(torch.tensor([math.log(p) for p in PRIORS]))
    target = torch.multinomial(torch.tensor(PRIORS), 64, replacement=True)
    return Setup(model, x_features(64), target, F.cross_entropy, torch.optim.Adam(model.parameters(), lr=1e-3))


@seeded
def imbalanced_priors() -> Setup:
    return imbalanced_setup(init_well=False)


@seeded
def imbalanced_priors_init_well() -> Setup:
    return imbalanced_setup(init_well=True)


HEAD = "2"   # the head of mlp(): Sequential(Linear, ReLU, Linear)

CASES = [
    Case("double_softmax_ce", "loss", f"{ISSUE} (static tools flag it)", double_softmax_ce,
         Expect("NN601", "3"), twin="classifier", options=CLASSIFY),
    Case("binary_classifier", "loss", f"{ISSUE}: healthy twin", binary_classifier),
    Case("sigmoid_bce_logits", "loss", f"{ISSUE} (static tools flag it)", sigmoid_bce_logits,
         Expect("NN601", "3"), twin="binary_classifier"),
    Case("log_softmax_nll", "loss", f"{ISSUE}: healthy twin", log_softmax_nll, options=CLASSIFY),
    Case("raw_scores_nll", "loss", ISSUE, raw_scores_nll, Expect("NN602", HEAD), twin="log_softmax_nll",
         options=CLASSIFY),
    Case("raw_scores_bce", "loss", ISSUE, raw_scores_bce, Expect("NN602", HEAD), twin="binary_classifier",
         note="BCELoss raises on values outside [0, 1]: the finding is the explanation"),
    Case("regression", "loss", f"{ISSUE}: healthy twin", regression),
    Case("mse_broadcast", "loss", ISSUE, mse_broadcast, Expect("NN603", HEAD), twin="regression"),
    Case("class_index_out_of_range", "loss", ISSUE, class_index_out_of_range, Expect("NN604", HEAD),
         twin="classifier", options=CLASSIFY),
    Case("one_hot_targets", "loss", ISSUE, one_hot_targets, Expect("NN604", HEAD), twin="classifier",
         options=CLASSIFY),
    Case("reduction_none", "loss", f"torchtest2 README #10; {ISSUE}", reduction_none, Expect("NN605", ""),
         twin="classifier", options=CLASSIFY),
    Case("loss_via_item", "loss", f"torchtest2 README #10; {ISSUE}", loss_via_item, Expect("NN605", ""),
         twin="classifier", options=CLASSIFY),
    Case("loss_numpy_roundtrip", "loss", f"torchtest2 README #10; {ISSUE}", loss_numpy_roundtrip,
         Expect("NN605", ""), twin="classifier", options=CLASSIFY),
    Case("flipped_loss_sign", "loss", "issue 14", flipped_loss_sign, Expect("NN805", None), twin="classifier",
         options=CLASSIFY),
    Case("imbalanced_priors", "loss", ISSUE, imbalanced_priors, Expect("NN606", HEAD),
         twin="imbalanced_priors_init_well", options={"num_classes": 4}),
    Case("imbalanced_priors_init_well", "loss", f"{ISSUE}: healthy twin (bias = log-priors)",
         imbalanced_priors_init_well, options={"num_classes": 4},
         note="neural_net_checklist's balanced-class asserts assume uniform priors"),
    Case("unstandardized_regression", "loss", ISSUE, unstandardized_regression, Expect("NN606", HEAD),
         twin="regression"),
]
