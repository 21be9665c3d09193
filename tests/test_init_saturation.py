"""NN103 and NN202 agree: a layer drawn with the gain-correct init that NN103 (and NN202's own fix)
asks for is not then reported as saturating its tanh, so the fixer never produces a model its own
rules flag; saturation beyond that design point (weights too large, inputs not standardized) still is."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import nnlint


def tanh_layer(fan_in: int, fan_out: int, std=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(fan_in, fan_out), nn.Tanh(), nn.Linear(fan_out, 10))
    if std is None:
        nn.init.xavier_normal_(model[0].weight, gain=nn.init.calculate_gain("tanh"))
    else:
        nn.init.normal_(model[0].weight, std=std)
    nn.init.zeros_(model[0].bias)
    return model


def standardized(n: int, features: int, scale: float = 1.0):
    return scale * torch.randn(n, features, generator=torch.Generator().manual_seed(1))


def saturated(model, batch) -> float:
    with torch.no_grad():
        return float((model[0](batch).abs() > 2.2).float().mean())


@pytest.mark.parametrize("fan_in,fan_out", [(64, 64), (64, 16), (256, 16)])
def test_xavier_tanh_on_standardized_inputs_is_not_reported_as_saturated(fan_in, fan_out):
    model, x = tanh_layer(fan_in, fan_out), standardized(256, fan_in)
    # the design point: 18.7% saturated at fan_in = fan_out, 29.5% at fan_in = 4 fan_out
    design = math.erfc(2.2 / (5 / 3 * math.sqrt(2 * fan_in / (fan_in + fan_out)) * math.sqrt(2)))
    assert saturated(model, x) == pytest.approx(design, abs=0.03)
    assert nnlint.check(model, x, select=["NN202", "NN103"]).diagnostics == []


@pytest.mark.parametrize("std,scale", [(1.0, 1.0), (None, 3.0)], ids=["weights-too-large", "inputs-not-standardized"])
def test_saturation_beyond_the_design_point_is_still_reported(std, scale):
    model, x = tanh_layer(64, 16, std), standardized(256, 64, scale)
    [d] = nnlint.check(model, x, select=["NN202"]).diagnostics
    assert d.module == "1" and d.evidence["saturated_fraction"] > 0.5 and d.severity == "error"


def test_the_fixer_leaves_no_saturation_after_its_own_xavier_reinit():
    # five default-init tanh layers, the first 64 -> 16: NN103 re-inits them with Xavier-tanh, which
    # saturates the first tanh 29% on standardized inputs, the design point, not a new finding
    torch.manual_seed(0)
    layers = []
    for i in range(5):
        layers += [nn.Linear(64 if i == 0 else 16, 16), nn.Tanh()]
    model = nn.Sequential(*layers, nn.Linear(16, 10))
    x = standardized(64, 64)
    result = nnlint.fix(model, x)
    assert {o.diagnostic.code for o in result.applied} == {"NN103"}
    assert saturated(model, x) > 0.2
    assert [d.code for d in result.report.diagnostics if d.severity != "info"] == []


def test_unsafe_fixes_still_swap_a_tanh_that_saturates():
    # NN202 fires (an error), which raises NN201 to a warning: the swap is a repair there
    model, x = tanh_layer(64, 16, std=1.0), standardized(64, 64)
    model = nn.Sequential(model[0], model[1], nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 10))
    result = nnlint.fix(model, x, unsafe=True)
    assert "NN201" in {o.diagnostic.code for o in result.applied}
    assert not isinstance(model[1], nn.Tanh)
