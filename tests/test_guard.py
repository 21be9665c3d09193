"""nnlint.guard: the first real training step is checked, and computes exactly what it would without it."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nnlint
from nnlint import guard as guard_module
from nnlint.config import Config
from nnlint.guard import NNLintWarning, UnhealthyModelError, batch_from_call, with_real_gradients


class Net(nn.Module):
    """BatchNorm (running stats) and dropout (RNG): what a check could disturb if it were careless."""

    def __init__(self, dead: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.bn = nn.BatchNorm1d(32)
        self.drop = nn.Dropout(0.2)
        self.fc2 = nn.Linear(32, 32)
        self.act = nn.ReLU()
        self.head = nn.Linear(32, 4)
        for fc in (self.fc1, self.fc2):
            nn.init.kaiming_normal_(fc.weight, nonlinearity="relu")
            nn.init.zeros_(fc.bias)
        nn.init.xavier_normal_(self.head.weight)
        if dead:
            nn.init.constant_(self.fc2.bias, -20.0)   # the planted fault: every unit of act is dead

    def forward(self, x):
        h = self.drop(F.relu(self.bn(self.fc1(x))))
        return self.head(self.act(self.fc2(h)))


def make(dead=False, seed=0):
    torch.manual_seed(seed)
    model = Net(dead)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, optimizer


def data(steps=3):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(64, 16, generator=g), torch.randint(0, 4, (64,), generator=g)) for _ in range(steps)]


def train(model, optimizer, batches, seed=123):
    """A plain training loop; returns the losses."""
    torch.manual_seed(seed)   # dropout draws from here
    losses = []
    for x, y in batches:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return losses


def test_guarded_training_is_bit_identical_to_unguarded():
    batches = data()
    guarded, guarded_opt = make()
    with warnings.catch_warnings():
        warnings.simplefilter("error", NNLintWarning)   # the healthy model is quiet
        g = nnlint.guard(guarded, guarded_opt, config=Config())
        guarded_losses = train(guarded, guarded_opt, batches)
    guarded_rng = torch.get_rng_state()
    plain, plain_opt = make()
    plain_losses = train(plain, plain_opt, batches)
    assert g.report is not None and g.report.ok, "the guard did not check the first batch"
    for a, b in zip(plain_losses, guarded_losses):
        assert torch.equal(a, b)
    for (name, a), b in zip(plain.state_dict().items(), guarded.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs"   # weights, BatchNorm running stats, counters
    for p, q in zip(plain.parameters(), guarded.parameters()):
        assert torch.equal(plain_opt.state[p]["momentum_buffer"], guarded_opt.state[q]["momentum_buffer"])
    # The check's own dropout draws were given back: the RNG stream is where it would have been.
    assert torch.equal(torch.get_rng_state(), guarded_rng)


def test_hooks_are_gone_after_the_watched_steps():
    # the batch and gradients are checked at the first step, the loop watched for two (NN807-NN811);
    # every hook goes at the next forward (an optimizer's hook table cannot lose one while it runs them)
    model, optimizer = make()
    g = nnlint.guard(model, optimizer, config=Config())
    assert model._forward_pre_hooks and optimizer._optimizer_step_pre_hooks
    train(model, optimizer, data(3))
    assert not g.active
    assert not model._forward_pre_hooks and not optimizer._optimizer_step_pre_hooks


def test_planted_fault_stops_training_before_the_first_update():
    model, optimizer = make(dead=True)
    before = copy.deepcopy(model.state_dict())
    nnlint.guard(model, optimizer, config=Config())
    with pytest.raises(UnhealthyModelError) as err:
        train(model, optimizer, data())
    text = str(err.value)
    assert "NN203" in text and "act" in text and "100%" in text
    assert [d.code for d in err.value.report.diagnostics if d.severity == "error"] == ["NN203"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), f"{name} was updated"
    assert not model._forward_pre_hooks   # raised once; the next run of the loop is not checked again


def test_on_error_warn_reports_and_lets_training_run():
    model, optimizer = make(dead=True)
    g = nnlint.guard(model, optimizer, on_error="warn", config=Config())
    with pytest.warns(NNLintWarning, match="NN203") as record:
        train(model, optimizer, data())
    assert len([w for w in record if "NN203" in str(w.message)]) == 1   # reported once, not every step
    assert [d.module for d in g.report.by_code("NN203")] == ["act"]


def test_warnings_warn_and_do_not_stop():
    model, optimizer = make()
    nnlint.guard(model, optimizer, config=Config())
    unscaled = [(x * 255 + 128, y) for x, y in data()]   # images in [0, 255]: NN301/NN302 are warnings
    with pytest.warns(NNLintWarning, match="NN30"):
        train(model, optimizer, unscaled)


def test_select_ignore_and_configuration():
    # The dead units also starve the layers before them of gradient (NN406): the consequence is
    # reported by its own code, so silencing the fault means naming both.
    for options in (dict(select=["NN1"]), dict(ignore=["NN203", "NN406"]),
                    dict(config=Config(per_module_ignores={"act": ["NN203"], "*": ["NN406"]}))):
        model, optimizer = make(dead=True)
        nnlint.guard(model, optimizer, **{"config": Config(), **options})
        with warnings.catch_warnings():
            warnings.simplefilter("error", NNLintWarning)
            train(model, optimizer, data(1))


def test_evaluation_calls_are_let_through_until_the_first_training_batch():
    model, optimizer = make(dead=True)
    g = nnlint.guard(model, optimizer, config=Config())
    x, _ = data(1)[0]
    model.eval()
    with torch.no_grad():
        model(x)          # a sanity validation: not the training batch
    model.train()
    with torch.no_grad():
        model(x)          # no grad: not a training step either
    assert g.active and g.report is None
    with pytest.raises(UnhealthyModelError):
        model(x)


def test_guard_works_as_a_context_manager_and_can_be_removed():
    model, optimizer = make(dead=True)
    with nnlint.guard(model, optimizer, config=Config()) as g:
        assert g.active
    assert not model._forward_pre_hooks and not optimizer._optimizer_step_pre_hooks
    train(model, optimizer, data(1))   # nothing checked any more


def test_keyword_and_multi_argument_batches_reach_the_check():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(8, 8)
            self.b = nn.Linear(8, 8)
            nn.init.zeros_(self.a.weight)   # NN101: a hidden layer that is all zeros
            self.head = nn.Linear(8, 2)

        def forward(self, x, mask):
            return self.head(torch.relu(self.a(x) + self.b(mask)))

    x, mask = torch.randn(32, 8), torch.randn(32, 8)
    for call in (lambda m: m(x, mask), lambda m: m(x=x, mask=mask)):
        torch.manual_seed(0)
        model = TwoInputs()
        nnlint.guard(model, config=Config())
        with pytest.raises(UnhealthyModelError, match="NN101"):
            call(model)
    assert batch_from_call((x,), {}) is x
    assert batch_from_call(((x, mask),), {})[0][1] is mask   # one tuple argument stays one argument
    assert batch_from_call((x,), {"mask": mask}) is None


def test_a_mixed_call_is_let_through_with_a_warning():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x, scale=1.0):
            return self.fc(x) * scale

    model = Net()
    nnlint.guard(model, config=Config())
    with pytest.warns(NNLintWarning, match="both positional and keyword"):
        model(torch.randn(8, 4), scale=2.0)


def test_the_check_failing_does_not_stop_training():
    calls = []   # outside the model: the check puts the model's own attributes back as it found them

    class Picky(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            calls.append(1)
            if len(calls) == 1:
                raise ValueError("first call fails")   # the check's own forward is the first call
            return self.fc(x)

    model = Picky()
    nnlint.guard(model, config=Config())
    with pytest.warns(NNLintWarning, match="could not check"):
        out = model(torch.randn(8, 4))
    assert out.shape == (8, 2)


def test_with_real_gradients_measures_the_gradients_the_model_holds():
    model, _ = make()
    x, y = data(1)[0]
    report = nnlint.check(model, x, config=Config())
    F.cross_entropy(model(x), y).backward()
    model.head.weight.grad[0, 0] = float("nan")
    model.fc2.bias.grad = None
    trace = with_real_gradients(report.trace, model)
    assert trace.params["head.weight"].grad_nonfinite
    assert trace.params["fc2.bias"].grad_norm is None
    assert trace.params["fc1.weight"].grad_norm == pytest.approx(model.fc1.weight.grad.norm().item(), rel=1e-5)
    assert not trace.loss_is_surrogate and trace.backward_ran
    assert report.trace.params["head.weight"].grad_nonfinite is False   # the original trace is untouched


def test_gradient_rules_run_on_the_real_gradients_of_the_first_step(monkeypatch):
    """The step pre-hook hands the real gradients to the rules that read gradients (here a stand-in for
    NN405, so that this holds whatever the catalog has), and stops before the update."""
    from nnlint import registry
    from nnlint.registry import Rule

    class NonFiniteGradients(Rule):
        code, name, severity, summary = "NN405", "exploding-gradients", "error", "test stand-in"
        reads = frozenset({"gradients"})   # what makes the guard run it on the real gradients

        def check(self, trace):
            for p in trace.params.values():
                if p.grad_nonfinite:
                    yield self.diagnostic(p.module, f"{p.name} has a non-finite gradient")

    monkeypatch.setattr(registry, "_catalog", {**registry.all_rules(), "NN405": NonFiniteGradients})
    model, optimizer = make()
    before = copy.deepcopy(model.state_dict())
    g = nnlint.guard(model, optimizer, config=Config())
    x, y = data(1)[0]
    loss = F.cross_entropy(model(x), y) * torch.tensor(float("nan"))   # a real loss gone NaN
    loss.backward()
    with pytest.raises(UnhealthyModelError, match="non-finite gradient") as err:
        optimizer.step()
    assert {d.module for d in err.value.report.diagnostics} >= {"fc1", "fc2", "head"}
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())   # not updated
    assert {d.code for d in g.report.diagnostics if d.severity != "info"} == {"NN405"}


def test_a_closure_step_waits_for_gradients():
    model, optimizer = make()
    g = nnlint.guard(model, optimizer, config=Config())
    x, y = data(1)[0]

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    optimizer.step(closure)   # no gradients before the step: the step hook waits
    assert "step" in g._handles
    optimizer.step(closure)   # the gradients are checked; the loop's watch has seen its two steps
    assert g.report is not None and [s["closure"] for s in g.report.trace.probes["loop"]["steps"]] == [True, True]
    optimizer.step(closure)   # its forward takes the hooks off
    assert not g.active


def test_nnlint_guard_stays_callable_after_the_module_is_imported():
    assert callable(guard_module) and nnlint.guard is not None
    model = nn.Linear(4, 2)
    g = nnlint.guard(model, config=Config())
    assert isinstance(g, guard_module.Guard)
    g.remove()
