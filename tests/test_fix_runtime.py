"""nnlint.fix(model, batch): the runtime fixer clears each rule's finding on the model in memory, runs
twice without changing anything the second time, keeps unsafe fixes behind `unsafe=True`, and reports a
fix that does not clear its finding as failed, never as done."""
from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

import nnlint
from nnlint.diagnostics import Diagnostic, Fix
from nnlint.fix.result import Ledger, triage
from nnlint.fix.kind import KINDS, Applied, all_kinds
from nnlint.fix.specs import ParamInit, already_satisfied, resolve
from nnlint.initmath import InitSpec, correct_init
from nnlint.loader import load_target
from nnlint.registry import all_rules

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# For every rule that declares a fix: a fixture on which it fires.
RUNTIME_CASES = {
    "NN101": "init_zero_hidden_layer.py",
    "NN102": "init_constant_fill.py",
    "NN103": "init_scale_too_large.py",
    "NN201": "activation_sigmoid_hidden.py",
    "NN204": "activation_exp_hidden.py",
    "NN202": "activation_saturated_tanh.py",
    "NN203": "activation_dead_relu_mlp.py",
    "NN301": "data_uncentered_images.py",
    "NN302": "data_unscaled_pixels.py",
    "NN303": "data_correlated_features.py",
    "NN304": "loss_at_init_overconfident.py",
    "NN401": "propagation_vanishing_mlp.py",
    "NN402": "propagation_exploding_cnn.py",
    "NN403": "propagation_residual_no_norm.py",
    "NN405": "gradients_normalized_stem.py",
    "NN501": "mode_dropout_active_in_eval.py",
    "NN502": "mode_mixed_train_eval.py",
    "NN503": "mode_batchnorm_no_running_stats.py",
    "NN504": "mode_dropout_on_conv_maps.py",
    "NN505": "mode_dropout_before_batchnorm.py",
    "NN601": "objective_double_softmax.py",
    "NN606": "objective_imbalanced_priors.py",
    "NN701": "dataflow_gru_sequence_first.py",
    "NN707": "structure_bias_before_batchnorm.py",
    "NN808": "loop_eval_mode.py",
}
# Rules whose fix edits the user's training code (the optimizer in `optimizer(model)`, the loop in
# `train`), not the model: there is nothing to change in memory, and the runtime fixer says so (their
# source fixes are verified in tests/test_rules_optimizer.py).
SOURCE_ONLY = {
    "NN506": "mode_sgd_decays_norms.py",
    "NN801": "optimizer_params_forgotten.py",
    "NN802": "optimizer_param_twice.py",
    "NN807": "loop_missing_zero_grad.py",
}


def load(name: str):
    return load_target(str(FIXTURES / name))


def run_fix(loaded, **kwargs):
    return nnlint.fix(loaded.model, loaded.batch, **loaded.check_arguments(), **kwargs)


def test_every_rule_that_declares_a_fix_has_a_runtime_case():
    fixable = {code for code, cls in all_rules().items() if cls.fixable != "none"}
    assert fixable == set(RUNTIME_CASES) | set(SOURCE_ONLY)


@pytest.mark.parametrize("code", sorted(SOURCE_ONLY))
def test_a_fix_of_the_training_code_is_not_fixable_in_memory_and_says_why(code):
    result = run_fix(load(SOURCE_ONLY[code]))
    [outcome] = [o for o in result.not_fixable if o.diagnostic.code == code]
    assert "your" in outcome.detail and "by hand" in outcome.detail
    assert result.report.by_code(code)


@pytest.mark.parametrize("code", sorted(RUNTIME_CASES))
def test_the_runtime_fix_clears_the_finding(code):
    loaded = load(RUNTIME_CASES[code])
    before = nnlint.check(loaded.model, loaded.batch, **loaded.check_arguments())
    assert before.by_code(code), f"{code} does not fire on {RUNTIME_CASES[code]}"
    unsafe = all_rules()[code].fixable == "unsafe"
    result = run_fix(loaded, unsafe=unsafe)
    assert not result.report.by_code(code), result.summary()
    assert code in {o.diagnostic.code for o in result.applied}
    assert not result.failed, result.summary()


def test_running_it_twice_changes_nothing_the_second_time():
    loaded = load("tanh_mlp.py")
    first = run_fix(loaded, unsafe=True)
    assert first.applied and first.ok
    state = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    structure = repr(loaded.model)
    second = run_fix(loaded, unsafe=True)
    assert not second.applied and not second.failed
    assert repr(loaded.model) == structure
    after = loaded.model.state_dict()
    assert state.keys() == after.keys() and all(torch.equal(state[k], after[k]) for k in state)


def test_unsafe_fixes_only_when_asked():
    loaded = load("activation_sigmoid_hidden.py")
    result = run_fix(loaded)
    assert [o.diagnostic.code for o in result.skipped_unsafe] == ["NN201"]
    assert isinstance(loaded.model.act1, nn.Sigmoid)
    result = run_fix(loaded, unsafe=True)
    assert isinstance(loaded.model.act1, nn.ReLU)
    std = loaded.model.fc1.weight.std().item()
    assert std == pytest.approx((2 / 784) ** 0.5, rel=0.1)   # Kaiming for the new ReLU, not Xavier for the sigmoid


def test_a_functional_swap_keeps_the_class_and_still_copies_and_pickles():
    loaded = load("gradients_vanishing_sigmoid.py")
    model = loaded.model
    cls = type(model)
    result = run_fix(loaded, unsafe=True)
    assert "NN201" in {o.diagnostic.code for o in result.applied}
    assert type(model) is cls
    out = model(loaded.batch)
    twin = copy.deepcopy(model)
    assert torch.equal(twin(loaded.batch), out)
    clone = pickle.loads(pickle.dumps(model))
    assert torch.equal(clone(loaded.batch), out)
    # both call sites (the first layer's, and the one in the loop) run relu now; the loop's, eight
    # layers deep, has a quarter of its units dead after the swap (NN203), so its ReLU escalated to a
    # LeakyReLU(0.1)
    steps = {o.diagnostic.code: o.step for o in result.applied if o.diagnostic.code == "NN203"}
    assert steps == {"NN203": 1}
    x = torch.relu(model.first(loaded.batch))
    for fc in model.hidden:
        x = torch.nn.functional.leaky_relu(fc(x), 0.1)
    assert torch.allclose(model.head(x), out)


def test_functional_dropout_follows_the_mode_after_the_fix():
    loaded = load("mode_dropout_active_in_eval.py")
    run_fix(loaded)
    model = loaded.model.eval()
    with torch.no_grad():
        assert torch.equal(model(loaded.batch), model(loaded.batch))
    model.train()
    torch.manual_seed(0)
    a = model(loaded.batch)
    b = model(loaded.batch)
    assert not torch.equal(a, b)   # still dropping in training


def test_the_fix_leaves_the_global_rng_and_the_parameter_objects_alone():
    loaded = load("init_zero_hidden_layer.py")
    params = [id(p) for p in loaded.model.parameters()]
    state = torch.get_rng_state()
    run_fix(loaded)
    assert torch.equal(torch.get_rng_state(), state)
    assert [id(p) for p in loaded.model.parameters()] == params   # an optimizer built before still holds them


def test_input_normalization_is_buffers_and_a_hook_on_the_model():
    loaded = load("data_uncentered_images.py")
    run_fix(loaded, unsafe=True)
    model = loaded.model
    assert {"input_mean", "input_std"} <= set(dict(model.named_buffers()))
    seen = {}
    model.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    model(loaded.batch)
    x = seen["x"]
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-4 and (x.std(dim=(0, 2, 3)) - 1).abs().max() < 0.05


def test_a_fix_that_does_not_clear_its_finding_is_failed(monkeypatch):
    monkeypatch.setattr(all_kinds()["reinit"], "apply", lambda fix, ctx: Applied("pretended"))
    loaded = load("init_zero_hidden_layer.py")
    result = run_fix(loaded)
    assert [o.diagnostic.code for o in result.failed] == ["NN101"]
    assert "still reported" in result.failed[0].detail
    assert not result.applied


def test_an_unknown_fix_kind_is_not_fixable_automatically(monkeypatch):
    import nnlint.api

    real = nnlint.api.check

    def check(*args, **kwargs):
        report = real(*args, **kwargs)
        report.diagnostics.append(Diagnostic("NN999", "teleport", "warning", "fc1", "fc1 is too far away",
                                             fix=Fix("teleport", "fc1", "move fc1 closer")))
        return report

    monkeypatch.setattr(nnlint.api, "check", check)
    loaded = load("init_scale_kaiming.py")
    result = run_fix(loaded)
    assert [(o.diagnostic.code, o.status) for o in result.not_fixable] == [("NN999", "not_fixable")]
    assert "move fc1 closer" in result.not_fixable[0].detail


def test_triage_records_what_it_cannot_fix():
    ledger = Ledger()
    diags = [Diagnostic("NN406", "no-gradient", "error", "fc", "cut off"),
             Diagnostic("NN201", "sigmoid-tanh-hidden", "info", "act", "swap", fix=Fix("swap_activation", "act", "swap", safe=False)),
             Diagnostic("NN101", "zero-weights", "error", "fc2", "zero", fix=Fix("reinit", "fc2", "reinit"))]
    todo = triage(diags, ledger, unsafe=False, known_kinds=all_kinds())
    assert [d.code for d in todo] == ["NN101"]
    assert {k: o.status for k, o in ledger.outcomes.items()} == {
        ("NN406", "fc", None): "not_fixable", ("NN201", "act", None): "skipped_unsafe"}


# ---------------------------------------------------------------------------------------------
# Fix params -> init calls


def test_init_specs_follow_the_nonlinearity():
    assert correct_init("relu").render("w") == 'nn.init.kaiming_normal_(w, nonlinearity="relu")'
    leaky = correct_init("leaky_relu", 0.2)
    assert leaky.render("w", quote="'") == "nn.init.kaiming_normal_(w, a=0.2, nonlinearity='leaky_relu')"
    fan_out = InitSpec("kaiming_normal_", (("a", 0.2), ("mode", "fan_out"), ("nonlinearity", "leaky_relu")))
    assert fan_out.render("w", quote="'") == "nn.init.kaiming_normal_(w, a=0.2, mode='fan_out', nonlinearity='leaky_relu')"
    tanh = correct_init("tanh")
    assert tanh.render("w") == 'nn.init.xavier_normal_(w, gain=nn.init.calculate_gain("tanh"))'
    assert tanh.runtime_kwargs() == {"gain": pytest.approx(5 / 3)}
    assert correct_init("sigmoid").render("w", nn="torch.nn") == "torch.nn.init.xavier_normal_(w)"
    assert correct_init("selu").render("w") == 'nn.init.kaiming_normal_(w, nonlinearity="linear")'   # LeCun normal


def test_the_swap_reinit_wins_over_a_plain_reinit_of_the_same_weight():
    xavier = ParamInit("fc1.weight", InitSpec("xavier_normal_", gain_of="tanh"), KINDS["reinit"].init_priority)
    kaiming = ParamInit("fc1.weight", InitSpec("kaiming_normal_", (("nonlinearity", "relu"),)),
                        KINDS["swap_activation"].init_priority)
    assert resolve([xavier, kaiming])["fc1.weight"] is kaiming
    assert resolve([kaiming, xavier])["fc1.weight"] is kaiming


def test_already_gain_correct_weights_are_left_alone():
    torch.manual_seed(0)
    fc = nn.Linear(256, 256)
    kaiming = ParamInit("weight", InitSpec("kaiming_normal_", (("nonlinearity", "relu"),)))
    assert not already_satisfied(fc, kaiming)            # PyTorch's default is 2.4x too small for ReLU
    nn.init.kaiming_normal_(fc.weight, nonlinearity="relu")
    assert already_satisfied(fc, kaiming)
    assert already_satisfied(fc, ParamInit("bias", InitSpec("zeros_"), optional=True))   # default bias range
    nn.init.constant_(fc.bias, -4.0)
    assert not already_satisfied(fc, ParamInit("bias", InitSpec("zeros_"), optional=True))


def test_a_failed_fix_is_undone_and_the_others_are_kept(monkeypatch):
    # Two findings: NN101 (zero embed) and NN301 (an uncentered batch). The re-init is made to draw a
    # constant (NN102 then, and NN101's finding stays): it fails and must leave the weight as it was.
    reinit = all_kinds()["reinit"]
    real = reinit.apply

    def broken_reinit(fix, ctx):
        applied = real(fix, ctx)
        return Applied("drew zeros", [ParamInit(i.param, InitSpec("zeros_"), i.priority) for i in applied.inits])

    monkeypatch.setattr(reinit, "apply", broken_reinit)
    loaded = load("init_zero_hidden_layer.py")
    model = loaded.model
    with torch.no_grad():
        model.embed.bias.fill_(0.5)                      # zeros_ would change it: the undo must bring it back
    bias_before = model.embed.bias.detach().clone()
    batch = loaded.batch + 3.0
    result = nnlint.fix(model, batch, unsafe=True, select=["NN101", "NN301"])
    assert [(o.diagnostic.code, o.diagnostic.module) for o in result.failed] == [("NN101", "embed")]
    assert "undone" in result.failed[0].detail
    assert torch.equal(model.embed.bias, bias_before)
    assert "NN301" in {o.diagnostic.code for o in result.applied}
    assert {"input_mean", "input_std"} <= set(dict(model.named_buffers()))   # the working fix is kept


def test_a_fix_that_breaks_the_forward_is_undone(monkeypatch):
    def breaking_swap(fix, ctx):
        ctx.replace_module(fix.target, nn.Linear(3, 3))   # a module that cannot take the input
        return Applied("swapped for a broken module")

    monkeypatch.setattr(all_kinds()["swap_activation"], "apply", breaking_swap)
    loaded = load("activation_sigmoid_hidden.py")
    model = loaded.model
    before = {name: type(m) for name, m in model.named_modules()}
    result = nnlint.fix(model, loaded.batch, unsafe=True)
    assert result.failed and all("fails to run after it" in o.detail for o in result.failed)
    assert {name: type(m) for name, m in model.named_modules()} == before
    model(loaded.batch)                                   # and it still runs
