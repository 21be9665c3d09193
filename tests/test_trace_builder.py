"""Rules unit-tested on hand-made traces (nnlint.trace.builder): no torch run, only the numbers the rule
reads, so a threshold's edge is tested exactly."""
from __future__ import annotations

import pytest

from nnlint.api import run_rules
from nnlint.trace.builder import TraceBuilder


def dead_relu_trace(dead: int, units: int = 50):
    b = TraceBuilder()
    x = b.input((64, 32))
    h = b.linear("fc1", x, 32, units, weight_std=0.25)
    a = b.activation("act1", "relu", h, unit_active=[0.0] * dead + [0.5] * (units - dead))
    b.output(b.linear("fc2", a, units, 10, weight_std=0.1))
    return b.build()


@pytest.mark.parametrize("dead, severity", [(10, None), (11, "warning"), (25, "warning"), (26, "error")])
def test_dead_relu_thresholds_are_strictly_above_20_and_50_percent(dead, severity):
    found = run_rules(dead_relu_trace(dead), select=["NN203"])
    assert [d.severity for d in found] == ([severity] if severity else [])
    if severity:
        assert found[0].module == "act1" and found[0].evidence["dead_units"] == dead
        assert found[0].fix.target == "fc1"   # the layer feeding the dead units is re-initialized


def test_a_saturated_tanh_is_judged_on_its_measured_fraction():
    b = TraceBuilder()
    x = b.input((64, 16))
    h = b.linear("fc1", x, 16, 16, weight_std=1.0)
    t = b.activation("act", "tanh", h, units=16, saturated=0.51)
    b.output(b.linear("fc2", t, 16, 2, weight_std=0.3))
    [d] = run_rules(b.build(), select=["NN202"])
    assert (d.module, d.severity) == ("act", "error") and d.evidence["saturated_fraction"] == 0.51


def test_weight_decay_on_norm_and_bias_parameters_is_read_from_the_optimizer_record():
    b = TraceBuilder()
    x = b.input((64, 16))
    b.module("bn", "BatchNorm1d")
    b.param("bn.weight", (16,), std=0.0, mean=1.0)
    b.param("bn.bias", (16,), std=0.0)
    b.output(b.linear("fc", x, 16, 4, weight_std=0.3))
    b.optimizer("SGD", [{"params": ["fc.weight", "fc.bias", "bn.weight", "bn.bias"], "weight_decay": 1e-4}])
    [d] = run_rules(b.build(), select=["NN506"])
    assert d.evidence["finding"] == "decayed_norm_bias"
    assert (d.evidence["norm"], d.evidence["bias"]) == (2, 1)
