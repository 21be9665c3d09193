"""The planted faults. Each one is a choice of hidden activation, initialization, layer block and input
scale, and it is written into the generated model's source as plain torch (models.render), the way a
user would have written the broken model; `healthy` is the twin every mutation departs from (ReLU,
Kaiming normal weights, zero biases, standardized inputs).

Which shapes each fault is planted in (`shapes`): every fault gets shallow, deep and narrow MLPs and at
least one CNN, spread so that every shape of the family is used; the full product (11 faults x 13
shapes x 2 tasks) would take hours on two cores, and a fault behaves alike on neighbouring shapes.
"""
from __future__ import annotations

from dataclasses import dataclass

MLP_SHAPES = [(d, w) for d in (3, 6, 11) for w in (5, 16, 64)]    # depth = Linear layers (head included)
CNN_SHAPES = [(d, c) for d in (3, 6) for c in (4, 16)]            # depth = conv layers (+ a Linear head)


@dataclass(frozen=True)
class Mutation:
    name: str
    title: str                        # what a reader of the table needs to know
    activation: str = "relu"          # relu | sigmoid | tanh (modules) | exp | softmax (functional calls)
    init: str = "kaiming"             # kaiming | default (PyTorch's own) | zeros | tiny | huge | dead
    block: str = "plain"              # plain: weight layer, activation | dropout_bn: Linear/Conv, Dropout, BatchNorm, ReLU
    raw: bool = False                 # inputs at 8-bit pixel scale (tasks.RAW_SCALE/RAW_OFFSET), not standardized
    mlp: tuple = ()                   # (depth, width) of the MLPs it is planted in
    cnn: tuple = ()                   # (depth, channels) of the CNNs

    @property
    def functional(self) -> bool:
        return self.activation in ("exp", "softmax")


HEALTHY = Mutation("healthy", "ReLU, Kaiming normal, zero bias, standardized inputs (the twin)")

MUTATIONS = [
    Mutation("sigmoid", "nn.Sigmoid() hidden activations, PyTorch's default init", activation="sigmoid", init="default",
             mlp=((3, 64), (6, 16), (11, 5), (11, 64)), cnn=((3, 16), (6, 4))),
    Mutation("tanh", "nn.Tanh() hidden activations, PyTorch's default init", activation="tanh", init="default",
             mlp=((3, 16), (6, 64), (11, 5), (11, 16)), cnn=((3, 4), (6, 16))),
    Mutation("exp", "torch.exp(...) as the hidden activation (functional), Kaiming init", activation="exp",
             mlp=((3, 16), (3, 64), (6, 16), (11, 5)), cnn=((3, 16),)),
    Mutation("softmax", "torch.softmax(..., dim=1) between hidden layers, PyTorch's default init", activation="softmax",
             init="default", mlp=((3, 16), (6, 64), (11, 16)), cnn=((6, 4),)),
    Mutation("zeros", "every weight and bias zero-initialized", init="zeros",
             mlp=((3, 5), (6, 64), (11, 16)), cnn=((3, 4),)),
    Mutation("tiny", "weights drawn from N(0, 1e-3^2)", init="tiny",
             mlp=((3, 16), (6, 64), (11, 64)), cnn=((6, 16),)),
    Mutation("huge", "weights drawn from N(0, 1)", init="huge",
             mlp=((3, 64), (6, 16), (11, 16)), cnn=((3, 16),)),
    Mutation("dead", "Kaiming weights, hidden biases -4: the ReLUs start dead", init="dead",
             mlp=((3, 16), (6, 5), (11, 64)), cnn=((6, 4),)),
    Mutation("raw", "a healthy model fed raw pixel-scale inputs (x * 64 + 128)", raw=True,
             mlp=((3, 64), (6, 16), (11, 5)), cnn=((3, 4),)),
    Mutation("deep", "a deep ReLU chain at PyTorch's default init, no normalization", init="default",
             mlp=((6, 5), (11, 16), (11, 64)), cnn=((6, 16),)),
    Mutation("dropout", "Dropout(0.5) placed before each BatchNorm (Kaiming init)", block="dropout_bn",
             mlp=((3, 64), (6, 16)), cnn=((3, 16),)),
]

BY_NAME = {m.name: m for m in [HEALTHY, *MUTATIONS]}
