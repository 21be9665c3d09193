"""Small, faithful copies of well-known architectures, each a factory returning a ZooCase (model,
batch, what must fire) with fixed seeds, cheap enough on a CPU to run in every test session.

HEALTHY cases are at their library's own init on a standardized batch: nnlint must stay quiet on
them (no warning, no error). FAULTY cases plant one known fault each and say, in `expect`, which
code must fire on which modules. `python -m tests.zoo.measure` prints what plain torch measures on
each of them (stream variance per block, saturation, dead units, input statistics).
"""
from __future__ import annotations

from .case import ZooCase
from .convnets import convnext, densenet, efficientnet, mobilenet_v3
from .mlp import deep_tanh_unit_weights, mlp_kaiming
from .moe import mixtral
from .resnet import (resnet18_bn, resnet18_detached_backbone, resnet18_no_norm, resnet18_no_running_stats,
                     resnet18_sgd_weight_decay_everywhere, resnet50_bn, resnet50_no_norm,
                     resnet50_zero_init_residual)
from .rnn import gru_regressor, lstm_classifier
from .transformer import bert, gpt2, llama
from .vgg import vgg11, vgg11_small_init

HEALTHY = [
    mlp_kaiming,
    resnet18_bn,
    resnet50_bn,
    resnet50_zero_init_residual,
    vgg11,
    gpt2,
    bert,
    llama,
    convnext,
    mobilenet_v3,
    efficientnet,
    densenet,
    lstm_classifier,
    gru_regressor,
    mixtral,
]

FAULTY = [
    resnet50_no_norm,                        # NN403 on every identity block
    resnet18_no_norm,                        # NN403 on the identity blocks with a clear branch gain
    vgg11_small_init,                        # NN401 at features.0, NN103 on every conv
    deep_tanh_unit_weights,                  # NN202 + NN201 on every tanh, NN103 on the Linears
    resnet18_detached_backbone,              # NN406 on the detached `features`
    resnet18_no_running_stats,               # NN503 on every BatchNorm
    resnet18_sgd_weight_decay_everywhere,    # NN506: weight decay on norms and biases
]

__all__ = ["ZooCase", "HEALTHY", "FAULTY"]
