"""The fixer's escalation ladder and its whole-model acceptance, in memory (nnlint.fix), on the
fixtures that need each step: a round is kept only when the model is better as a whole, and a finding
whose fix did not hold gets the next step of its ladder, from the least invasive to the most. The
source half of every step is a golden diff in tests/test_fix_source.py (the same fixtures)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nnlint
from nnlint.loader import load_target

from model_state import assert_same, snapshot

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def load(name: str):
    return load_target(str(FIXTURES / name))


def outcome(result, code: str, status: str = "applied"):
    found = [o for o in getattr(result, status) if o.diagnostic.code == code]
    assert found, f"no {status} {code}: {result.summary()}"
    return found[0]


def loud(report) -> set[str]:
    return {d.code for d in report.diagnostics if d.severity in ("error", "warning")}


def test_exp_as_hidden_activation_is_replaced_with_a_relu_and_the_model_is_finite_again():
    # NN402's re-init alone moves the overflow one layer down; NN204 names exp as the cause and its
    # first step, unsafe, is the swap with the Kaiming re-init it needs
    loaded = load("propagation_exp_hidden.py")
    assert not torch.isfinite(loaded.model(loaded.batch)).all()
    result = nnlint.fix(loaded.model, loaded.batch, unsafe=True)
    swaps = [o for o in result.applied if o.fix.kind == "swap_activation"]
    exp = [o for o in swaps if o.fix.params.source == "exp"]
    assert {o.diagnostic.code for o in exp} == {"NN204"} and all(o.fix.params.to == "relu" for o in exp)
    assert len({o.fix.params.site for o in exp}) == 2            # both calls: the input layer's and the loop's
    # a ReLU whose units then die goes on to LeakyReLU (NN203's ladder), never back to exp
    assert all(o.fix.params.to == "leaky_relu" for o in swaps if o.fix.params.source != "exp")
    assert not loud(result.report)
    assert torch.isfinite(loaded.model(loaded.batch)).all()


def test_nn402_escalates_from_a_reinit_to_a_relu_where_it_alone_reports_exp():
    # without NN204 (ignored), NN402's own ladder gets there: re-init, still reported, then the swap
    loaded = load("propagation_exp_hidden.py")
    result = nnlint.fix(loaded.model, loaded.batch, unsafe=True, ignore=["NN204"])
    swap = next(o for o in result.applied if o.diagnostic.code == "NN402" and o.fix.kind == "swap_activation")
    assert swap.step == 1 and "re-initialize" in swap.earlier[0] and "still reported" in swap.earlier[0]
    assert swap.fix.params.source == "exp"
    assert "step 2 of" in swap.line()
    assert torch.isfinite(loaded.model(loaded.batch)).all()


def test_without_unsafe_fixes_a_failed_reinit_is_undone_and_the_swap_only_proposed():
    loaded = load("propagation_exp_hidden.py")
    before = snapshot(loaded.model)
    result = nnlint.fix(loaded.model, loaded.batch)
    assert_same(before, snapshot(loaded.model))      # the re-init did not hold: undone, bit for bit
    proposed = [o for o in result.skipped_unsafe if o.diagnostic.code == "NN402"]
    assert any(o.fix.kind == "swap_activation" and o.step == 1 for o in proposed), result.summary()


def test_a_narrow_stack_gets_leaky_relu_at_once():
    loaded = load("activation_narrow_sigmoid.py")
    result = nnlint.fix(loaded.model, loaded.batch, unsafe=True)
    swaps = [o for o in result.applied if o.diagnostic.code == "NN201"]
    assert len(swaps) == 11 and all(o.step == 0 for o in swaps)
    acts = [m for m in loaded.model if not isinstance(m, nn.Linear)]
    assert all(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.1 for m in acts)
    assert not loud(result.report), [d.message for d in result.report.diagnostics]


def test_a_relu_swap_that_makes_the_model_worse_is_undone_and_leaky_relu_holds(monkeypatch):
    # The case: a deep, narrow sigmoid stack swapped to ReLU clears NN201 but leaves ReLU
    # layers dead (new NN203 errors). With the width rule off, ReLU is tried first: the model as a
    # whole is worse, so the swap is undone and the next step, LeakyReLU, is kept.
    from nnlint import rulekit

    monkeypatch.setattr(rulekit, "NARROW_WIDTH", 0)
    torch.manual_seed(0)
    layers = [nn.Linear(16, 2), nn.Sigmoid()]
    for _ in range(7):
        layers += [nn.Linear(2, 2), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(2, 4))
    torch.manual_seed(1)
    batch = torch.randn(64, 16)
    result = nnlint.fix(model, batch, unsafe=True)
    escalated = [o for o in result.applied if o.diagnostic.code == "NN201" and o.step == 1]
    assert escalated, result.summary()
    assert all("replace sigmoid with ReLU" in o.earlier[0] for o in escalated)
    assert all("made the model worse" in o.earlier[0] or "no better as a whole" in o.earlier[0] for o in escalated)
    assert any("new error NN203" in o.earlier[0] for o in escalated)
    for o in result.applied:
        if o.diagnostic.code == "NN201":
            assert isinstance(model.get_submodule(o.diagnostic.module), nn.LeakyReLU if o.step else nn.ReLU)
    assert not {d.code for d in result.report.diagnostics if d.severity == "error"}


def test_units_a_relu_swap_leaves_dead_get_their_own_ladder(monkeypatch):
    # Wider (5 units) the ReLU swap is better as a whole and kept; the few layers it leaves with dead
    # units (NN203) then escalate, each on its own, from a re-init to a LeakyReLU.
    from nnlint import rulekit

    monkeypatch.setattr(rulekit, "NARROW_WIDTH", 0)
    loaded = load("activation_narrow_sigmoid.py")
    result = nnlint.fix(loaded.model, loaded.batch, unsafe=True)
    assert all(o.step == 0 for o in result.applied if o.diagnostic.code == "NN201")
    dead = [o for o in result.applied if o.diagnostic.code == "NN203"]
    assert dead and all(o.step == 1 and o.fix.params.to == "leaky_relu" for o in dead), result.summary()
    assert "NN203" not in loud(result.report)


def test_dead_units_a_reinit_cannot_revive_get_leaky_relu():
    loaded = load("activation_dead_relu_deep.py")
    result = nnlint.fix(loaded.model, loaded.batch, unsafe=True)
    step = outcome(result, "NN203")
    assert step.step == 1 and step.fix.kind == "swap_activation" and step.fix.params.to == "leaky_relu"
    assert "still reported" in step.earlier[0]
    model, x = loaded.model, loaded.batch
    h = torch.relu(model.inp(x))          # only the loop's call site was dead: the first stays a ReLU
    for fc in model.hidden:
        h = F.leaky_relu(fc(h), 0.1)
    assert torch.allclose(model.head(h), model(x))
    assert "NN203" not in loud(result.report)


def test_a_chain_a_reinit_cannot_mend_gets_a_norm_after_each_layer():
    loaded = load("propagation_scaled_chain.py")
    safe = nnlint.fix(loaded.model, loaded.batch)
    assert not safe.applied and "NN401" in loud(safe.report)
    result = nnlint.fix(loaded.model, loaded.batch, unsafe=True)
    step = outcome(result, "NN401")
    assert step.step == 1 and step.fix.kind == "insert_norm"
    for layer in loaded.model.layers:
        assert isinstance(layer, nn.Sequential) and isinstance(layer[0], nn.Linear)
        assert isinstance(layer[1], nn.LayerNorm) and layer[1].normalized_shape == (64,)
    assert "NN401" not in loud(result.report)
    again = nnlint.fix(loaded.model, loaded.batch, unsafe=True)   # fixing a fixed model changes nothing
    assert not again.applied


def test_a_norm_is_the_last_resort_while_a_swap_is_left_to_try():
    # exp overflow: NN402's chain has a norm as its second step, the exp site a ReLU swap; the swap is
    # tried first, and it makes the norms unnecessary.
    loaded = load("propagation_exp_hidden.py")
    result = nnlint.fix(loaded.model, loaded.batch, unsafe=True)
    assert not any(o.fix.kind == "insert_norm" for o in result.applied)
    assert not any(isinstance(m, nn.LayerNorm) for m in loaded.model.modules())


@pytest.mark.parametrize("name", ["activation_relu_mlp_kaiming.py", "activation_tanh_xavier.py"])
def test_a_healthy_model_is_left_alone(name):
    loaded = load(name)
    before = snapshot(loaded.model)
    result = nnlint.fix(loaded.model, loaded.batch, unsafe=True)
    assert not result.applied and not result.failed
    assert_same(before, snapshot(loaded.model))
