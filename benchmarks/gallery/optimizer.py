"""The optimizer as given (NN506, NN801-NN804, NN806)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .case import CLASSIFY, Case, Expect, Setup, classifier_setup, mlp, seeded
from .healthy import TT2
from .structure import BatchNormMLP

ISSUE = "issue 14"
TA = "torch-audit"


def sgd(lr: float, **kw):
    return lambda m: torch.optim.SGD(m.parameters(), lr=lr, **kw)


@seeded
def head_replaced_after_optimizer() -> Setup:
    """torchtest2 README #1: the optimizer holds the old head; the new one never trains."""
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1000))  # "pretrained" model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model[2] = nn.Linear(64, 10)  # new head for 10 classes
    setup = classifier_setup(model, with_optimizer=False)
    setup.optimizer = optimizer
    return setup


@seeded
def sgd_lr_1e5() -> Setup:
    """torchtest2 README #10: SGD(lr=1e-5), the loss does not move in 200 steps."""
    return classifier_setup(optimizer=sgd(1e-5))


@seeded
def sgd_lr_1e7() -> Setup:
    return classifier_setup(optimizer=sgd(1e-7))


@seeded
def sgd_lr_10() -> Setup:
    return classifier_setup(optimizer=sgd(10.0))


@seeded
def lr_zero() -> Setup:
    return classifier_setup(optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=0.0))


@seeded
def momentum_one() -> Setup:
    """momentum=1.0: the velocity never decays, every past gradient is applied for ever."""
    return classifier_setup(optimizer=sgd(0.01, momentum=1.0))


@seeded
def adam_coupled_weight_decay() -> Setup:
    """torch-audit demo_general/demo_nlp (TA401): Adam(weight_decay=1e-2), L2 through the
    adaptive step."""
    return classifier_setup(optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=1e-3, weight_decay=1e-2))


def decay_groups(model: nn.Module, decay: float = 1e-2,
                 no_decay: tuple[type, ...] = (nn.BatchNorm1d, nn.LayerNorm, nn.Embedding)):
    """The usual groups: decay on weight matrices, none on biases, norms and embeddings."""
    skip = {id(p) for m in model.modules() if isinstance(m, no_decay) for p in m.parameters(recurse=False)}
    decayed = [p for p in model.parameters() if p.ndim >= 2 and id(p) not in skip]
    rest = [p for p in model.parameters() if p.ndim < 2 or id(p) in skip]
    return [{"params": decayed, "weight_decay": decay}, {"params": rest, "weight_decay": 0.0}]


@seeded
def decay_on_norm_and_bias() -> Setup:
    """torch-audit demo_general (TA402); issue 14: SGD weight decay over BatchNorm and biases."""
    return classifier_setup(BatchNormMLP(), optimizer=sgd(0.05, momentum=0.9, weight_decay=5e-4))


@seeded
def sgd_param_groups() -> Setup:
    return classifier_setup(BatchNormMLP(), optimizer=lambda m: torch.optim.SGD(decay_groups(m, 5e-4), lr=0.05,
                                                                                momentum=0.9))


@seeded
def adamw_param_groups() -> Setup:
    model = BatchNormMLP()
    return classifier_setup(model, optimizer=lambda m: torch.optim.AdamW(decay_groups(m), lr=1e-3))


class TinyLM(nn.Module):
    """torch-audit demo_nlp, without its ghost layer."""

    def __init__(self, vocab_size: int = 128, d_model: int = 64):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.proj = nn.Sequential(nn.Linear(d_model, d_model, bias=True), nn.ReLU())
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, input_ids):
        return self.head(self.proj(self.embed(input_ids).mean(dim=1)))


def tiny_lm_setup(make_optimizer) -> Setup:
    model = TinyLM()
    return Setup(model, torch.randint(0, 128, (16, 8)), torch.randint(0, 128, (16,)), F.cross_entropy,
                 make_optimizer(model))


@seeded
def decay_on_embeddings() -> Setup:
    """torch-audit demo_nlp (TA403): AdamW's decay pulls rarely seen token rows to zero."""
    return tiny_lm_setup(lambda m: torch.optim.AdamW(m.parameters(), lr=3e-4, weight_decay=1e-2))


@seeded
def tiny_lm() -> Setup:
    return tiny_lm_setup(lambda m: torch.optim.AdamW(decay_groups(m), lr=3e-4))


def backbone_head() -> nn.Sequential:
    """torchtest2 README #6's model: a backbone block and a head."""
    return nn.Sequential(nn.Sequential(nn.Linear(32, 64), nn.ReLU()), nn.Linear(64, 10))


@seeded
def frozen_backbone_trains() -> Setup:
    """torchtest2 README #6: meant `model[1].parameters()`, set every parameter trainable."""
    model = backbone_head()
    for p in model.parameters():  # BUG: meant model[1].parameters()
        p.requires_grad = True
    return classifier_setup(model)


@seeded
def frozen_backbone() -> Setup:
    model = backbone_head()
    model[0].requires_grad_(False)
    return classifier_setup(model, optimizer=lambda m: torch.optim.Adam(m[1].parameters(), lr=1e-3))


@seeded
def frozen_params_in_optimizer() -> Setup:
    model = backbone_head()
    model[0].requires_grad_(False)
    return classifier_setup(model)


@seeded
def duplicate_param_across_groups() -> Setup:
    """A group appended to `param_groups` by hand (add_param_group would refuse it): the head's
    weight is in both groups and is stepped twice."""
    setup = classifier_setup(optimizer=sgd(0.05, momentum=0.9))
    opt = setup.optimizer
    opt.param_groups.append({**opt.defaults, "params": [setup.model[2].weight], "lr": 0.01})
    return setup


@seeded
def foreign_optimizer_tensor() -> Setup:
    """The optimizer was given a tensor that is no parameter of the model."""
    model = mlp()
    stray = torch.zeros(10, requires_grad=True)
    return classifier_setup(model, optimizer=lambda m: torch.optim.Adam([*m.parameters(), stray], lr=1e-3))


CASES = [
    Case("head_replaced_after_optimizer", "optimizer", f"{TT2} #1", head_replaced_after_optimizer,
         Expect("NN801", "2"), twin="adamw_classifier", options=CLASSIFY),
    Case("sgd_lr_1e-5", "optimizer", f"{TT2} #10 (overfit_batch)", sgd_lr_1e5, Expect("NN804", None),
         twin="sgd_classifier", options=CLASSIFY),
    Case("sgd_lr_1e-7", "optimizer", ISSUE, sgd_lr_1e7, Expect("NN804", None), twin="sgd_classifier",
         options=CLASSIFY),
    Case("sgd_lr_10", "optimizer", ISSUE, sgd_lr_10, Expect("NN804", None), twin="sgd_classifier",
         options=CLASSIFY),
    Case("lr_zero", "optimizer", ISSUE, lr_zero, Expect("NN803", None), twin="classifier", options=CLASSIFY),
    Case("momentum_one", "optimizer", ISSUE, momentum_one, Expect("NN803", None), twin="sgd_momentum_classifier",
         options=CLASSIFY),
    Case("adam_coupled_weight_decay", "optimizer", f"{TA} demo_general/demo_nlp (TA401); {ISSUE}",
         adam_coupled_weight_decay, Expect("NN506", None), twin="classifier", options=CLASSIFY),
    Case("decay_on_norm_and_bias", "optimizer", f"{TA} demo_general (TA402); {ISSUE}", decay_on_norm_and_bias,
         Expect("NN506", None), twin="sgd_param_groups", options=CLASSIFY),
    Case("sgd_param_groups", "optimizer", f"{ISSUE}: healthy twin (SGD, no decay on norms/biases)", sgd_param_groups,
         options=CLASSIFY),
    Case("adamw_param_groups", "optimizer", f"{ISSUE}: healthy twin (AdamW, groups)", adamw_param_groups,
         options=CLASSIFY),
    Case("decay_on_embeddings", "optimizer", f"{TA} demo_nlp (TA403)", decay_on_embeddings, Expect("NN506", None),
         twin="tiny_lm", note="NN506 as specified names norms and biases only; embeddings are an extension"),
    Case("tiny_lm", "optimizer", f"{TA} demo_nlp: healthy twin", tiny_lm),
    Case("frozen_backbone_trains", "optimizer", f"{TT2} #6", frozen_backbone_trains, Expect("NN806", "0"),
         twin="frozen_backbone", options={**CLASSIFY, "frozen": ["0"]}),
    Case("frozen_backbone", "optimizer", f"{TT2} #6: healthy twin", frozen_backbone,
         options={**CLASSIFY, "frozen": ["0"]}),
    Case("frozen_params_in_optimizer", "optimizer", ISSUE, frozen_params_in_optimizer, Expect("NN802", "0"),
         twin="frozen_backbone", options={**CLASSIFY, "frozen": ["0"]}),
    Case("duplicate_param_across_groups", "optimizer", ISSUE, duplicate_param_across_groups,
         Expect("NN802", "2"), twin="sgd_momentum_classifier", options=CLASSIFY),
    Case("foreign_optimizer_tensor", "optimizer", ISSUE, foreign_optimizer_tensor, Expect("NN802", None),
         twin="classifier", options=CLASSIFY),
]
