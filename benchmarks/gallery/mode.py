"""Train/eval mode (NN501)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .case import CLASSIFY, Case, Expect, Setup, classifier_setup, seeded


class DropoutNet(nn.Module):
    """torchtest2 README #9: F.dropout defaults to training=True (`follow_mode` False)."""

    def __init__(self, follow_mode: bool = False):
        super().__init__()
        self.follow_mode = follow_mode
        self.fc1, self.fc2 = nn.Linear(32, 64), nn.Linear(64, 10)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        h = F.dropout(h, p=0.2, training=self.training) if self.follow_mode else F.dropout(h, p=0.2)
        return self.fc2(h)


@seeded
def dropout_in_eval() -> Setup:
    return classifier_setup(DropoutNet(follow_mode=False), with_optimizer=False)


@seeded
def dropout_follows_mode() -> Setup:
    return classifier_setup(DropoutNet(follow_mode=True), with_optimizer=False)


CASES = [
    Case("dropout_in_eval", "mode", "torchtest2 README #9", dropout_in_eval, Expect("NN501", ""),
         twin="dropout_follows_mode", options=CLASSIFY),
    Case("dropout_follows_mode", "mode", "torchtest2 README #9: healthy twin", dropout_follows_mode,
         options=CLASSIFY),
]
