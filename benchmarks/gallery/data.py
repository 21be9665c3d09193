"""The input batch (NN301, NN302) and the peers' data hygiene checks."""
from __future__ import annotations

import torch

from .case import CLASSIFY, Case, Expect, Setup, seeded
from .optimizer import TinyLM
from .structure import BatchNormMLP, conv_net, conv_setup

TA = "torch-audit"


@seeded
def unscaled_pixels() -> Setup:
    """torch-audit demo_general/demo_cv (TA301): float pixels in [0, 255]."""
    return conv_setup(conv_net(), torch.rand(16, 3, 32, 32) * 255.0)


@seeded
def flat_input() -> Setup:
    """torch-audit TA302: a blank batch (a loader that returns zeros)."""
    return conv_setup(conv_net(), torch.zeros(16, 3, 32, 32))


@seeded
def channels_last_input() -> Setup:
    """torch-audit demo_cv (TA303): an NHWC batch for an NCHW model."""
    return conv_setup(conv_net(), torch.randn(16, 32, 32, 3))


@seeded
def tiny_batch_batchnorm() -> Setup:
    """torch-audit demo_general/demo_lightning (TA304): BatchNorm on 4 samples."""
    model = BatchNormMLP()
    return Setup(model, torch.randn(4, 32), torch.randint(0, 10, (4,)), torch.nn.functional.cross_entropy,
                 torch.optim.Adam(model.parameters(), lr=1e-3))


@seeded
def negative_token_ids() -> Setup:
    """torch-audit demo_nlp/demo_hf (TA305): a -1 token id."""
    ids = torch.randint(0, 128, (4, 8))
    ids[0, 2] = -1
    model = TinyLM()
    return Setup(model, ids, torch.randint(0, 128, (4,)), torch.nn.functional.cross_entropy,
                 torch.optim.Adam(model.parameters(), lr=3e-4))


CRASHES = "the model raises on it at once (an IndexError / a shape error): loud, not silent"

CASES = [
    Case("unscaled_pixels", "data", f"{TA} demo_general/demo_cv (TA301)", unscaled_pixels, Expect("NN302", ""),
         twin="small_convnet", options=CLASSIFY),
    Case("flat_input", "data", f"{TA} TA302", flat_input, Expect("NN302", ""), twin="small_convnet",
         options=CLASSIFY),
    Case("tiny_batch_batchnorm", "data", f"{TA} demo_general/demo_lightning (TA304)", tiny_batch_batchnorm,
         Expect("", None), twin="batchnorm_mlp", options=CLASSIFY,
         note="no code in the catalog yet: BatchNorm statistics from under 8 samples per batch"),
    Case("channels_last_input", "data", f"{TA} demo_cv (TA303)", channels_last_input, twin="small_convnet",
         options=CLASSIFY, out_of_scope=CRASHES),
    Case("negative_token_ids", "data", f"{TA} demo_nlp/demo_hf (TA305)", negative_token_ids, twin="tiny_lm",
         out_of_scope=CRASHES),
]
