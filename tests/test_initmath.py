"""Init math is defined once (nnlint.initmath): what NN103's message expects is what the fix draws, to the
digit, with the initializer the message names, for every nonlinearity nnlint knows."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import nnlint
from nnlint.initmath import InitSpec, bounded_output_std, correct_init, expected_std, fans

WIDTH = 64
# name -> (module factory, the slope its init uses, the family the message names, the gain-correct std)
NONLINEARITIES = {
    "relu": (nn.ReLU, None, "Kaiming", math.sqrt(2 / WIDTH)),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), 0.2, "Kaiming", math.sqrt(2 / (1 + 0.2 ** 2)) / math.sqrt(WIDTH)),
    "gelu": (nn.GELU, None, "Kaiming", math.sqrt(2 / WIDTH)),
    "silu": (nn.SiLU, None, "Kaiming", math.sqrt(2 / WIDTH)),
    "elu": (nn.ELU, None, "Kaiming", math.sqrt(2 / WIDTH)),
    "mish": (nn.Mish, None, "Kaiming", math.sqrt(2 / WIDTH)),
    "prelu": (nn.PReLU, 0.25, "Kaiming", math.sqrt(2 / (1 + 0.25 ** 2)) / math.sqrt(WIDTH)),
    "tanh": (nn.Tanh, None, "Xavier", 5 / 3 * math.sqrt(2 / (2 * WIDTH))),
    "sigmoid": (nn.Sigmoid, None, "Xavier", math.sqrt(2 / (2 * WIDTH))),
    "selu": (nn.SELU, None, "LeCun", 1 / math.sqrt(WIDTH)),
    "softplus": (nn.Softplus, None, "Kaiming", math.sqrt(2 / WIDTH)),
}


def mlp_drawn_too_small(act, std: float, depth: int = 6) -> nn.Sequential:
    """`depth` hidden Linear+act layers drawn 5x under `std`, then a head."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layer = nn.Linear(WIDTH, WIDTH)
        nn.init.normal_(layer.weight, std=std / 5)
        nn.init.zeros_(layer.bias)
        layers += [layer, act()]
    return nn.Sequential(*layers, nn.Linear(WIDTH, 10))


@pytest.mark.parametrize("name", list(NONLINEARITIES))
def test_nn103_expects_the_std_the_fix_draws_with_the_initializer_it_names(name):
    act, slope, family, std = NONLINEARITIES[name]
    assert correct_init(name, slope).std(WIDTH, WIDTH) == pytest.approx(std)
    model = mlp_drawn_too_small(act, std)
    batch = torch.randn(128, WIDTH, generator=torch.Generator().manual_seed(1))
    found = nnlint.check(model, batch, select=["NN103"]).diagnostics
    assert [d.module for d in found] == ["0", "2", "4", "6", "8", "10"]
    for d in found:
        assert d.evidence["nonlinearity"] == name and d.evidence["initializer"] == family
        assert d.evidence["expected_std"] == pytest.approx(std, rel=1e-6)
        assert f"for {name}" in d.message and f"({family})" in d.message
        assert d.fix.params.spec == correct_init(name, slope)
        assert d.fix.params.call(d.module) in d.message        # the call the message quotes is the fix's

    result = nnlint.fix(model, batch, select=["NN103"])
    assert {o.diagnostic.module for o in result.applied} == {"0", "2", "4", "6", "8", "10"}
    for i in range(0, 12, 2):
        drawn = float(model[i].weight.detach().std())
        assert drawn == pytest.approx(std, rel=0.05), f"layer {i} drew std {drawn}, the message expected {std}"
    assert result.report.diagnostics == []


def test_the_runtime_kwargs_give_torch_the_std_initmath_computes():
    """InitSpec.std is torch.nn.init's formula: drawing with the spec's own kwargs gives that std."""
    w = torch.empty(256, 128, 3, 3)
    fan_in, fan_out = fans(tuple(w.shape))
    assert (fan_in, fan_out) == (128 * 9, 256 * 9)
    for spec in (correct_init("relu"), correct_init("leaky_relu", 0.1), correct_init("selu"), correct_init("tanh"),
                 correct_init("sigmoid"), InitSpec("kaiming_normal_", (("mode", "fan_out"), ("nonlinearity", "relu")))):
        torch.manual_seed(0)
        getattr(nn.init, spec.initializer)(w, **spec.runtime_kwargs())
        assert float(w.std()) == pytest.approx(spec.std(fan_in, fan_out), rel=0.01), spec


def test_expected_std_of_a_nonlinearity_nnlint_does_not_know_is_xavier_linear():
    assert expected_std(100, 50, "softsign") == pytest.approx(math.sqrt(2 / 150))
    assert correct_init("softsign").family == "Xavier"


def test_bounded_output_std_is_the_std_of_tanh_and_sigmoid_of_a_gaussian():
    torch.manual_seed(0)
    z = torch.randn(2_000_000, dtype=torch.float64)
    for s in (0.05, 1.0, 5 / 3, 4.0):
        assert bounded_output_std("tanh", s) == pytest.approx(float(torch.tanh(s * z).std()), rel=2e-3)
        assert bounded_output_std("sigmoid", s) == pytest.approx(float(torch.sigmoid(s * z).std()), rel=2e-3)
    assert bounded_output_std("tanh", 1e-3) == pytest.approx(1e-3, rel=1e-5)       # linear near 0
    assert bounded_output_std("sigmoid", 1e-3) == pytest.approx(1e-3 / 4, rel=1e-5)
    assert bounded_output_std("relu", 1.0) is None                                  # scales with its input
