"""`nnlint.check(model, batch, step=...)`: a training step that computes the loss runs in place of
`model(batch)`, whatever modules it calls, and its loss drives the backward pass."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nnlint
from model_state import assert_same, snapshot
from nnlint.errors import ConfigError, ModelRaised


class Task(nn.Module):
    """A LightningModule-like container: no forward of its own; the step calls its parts."""

    def __init__(self, zero_hidden=False):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 32), nn.ReLU())
        self.head = nn.Linear(32, 4)
        for layer in (self.encoder[0], self.encoder[3]):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
        nn.init.normal_(self.head.weight, std=0.05)
        nn.init.zeros_(self.head.bias)
        if zero_hidden:
            nn.init.zeros_(self.encoder[3].weight)


def training_step(model, batch):
    x, y = batch
    return F.cross_entropy(model.head(model.encoder(x.view(len(x), -1))), y)


def batch(n=64):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 4, 4, generator=g), torch.randint(0, 4, (n,), generator=g)


def codes(report):
    return sorted((d.code, d.module) for d in report.diagnostics if d.severity != "info")


def test_a_zero_hidden_layer_behind_a_step_is_found_on_its_module():
    report = nnlint.check(Task(zero_hidden=True), batch(), step=training_step)
    assert ("NN101", "encoder.3") in codes(report)


def test_the_healthy_twin_is_quiet_and_its_gradients_are_the_real_loss_s():
    report = nnlint.check(Task(), batch(), step=training_step)
    assert codes(report) == []
    trace = report.trace
    assert trace.backward_ran and not trace.loss_is_surrogate
    assert trace.loss == pytest.approx(1.386, abs=0.1)   # cross-entropy of 4 classes at init
    assert [c.loss for c in trace.objective.calls] == ["cross_entropy"]
    assert all(trace.params[n].grad_norm for n in ("encoder.0.weight", "encoder.3.weight", "head.weight"))
    # The model's output is the head's logits, not the loss; the labels are not a model input.
    assert [trace.calls[0].module, trace.inputs[0].path, len(trace.inputs)] == ["encoder", "batch[0]", 1]


def test_the_step_leaves_the_model_and_the_rng_as_it_found_them():
    model = Task()
    before, rng = snapshot(model), torch.get_rng_state()
    nnlint.check(model, batch(), step=training_step)   # dropout draws from the RNG
    assert_same(before, snapshot(model))
    assert torch.equal(rng, torch.get_rng_state())


def test_an_uncentered_regression_target_is_the_loss_s_not_an_input_to_normalize():
    def regression_step(model, batch):
        x, y = batch
        return F.mse_loss(model.head(model.encoder(x.view(len(x), -1)))[:, :3], y)

    x, _ = batch()
    targets = 100 + 30 * torch.randn(len(x), 3, generator=torch.Generator().manual_seed(2))
    report = nnlint.check(Task(), (x, targets), step=regression_step)
    assert report.by_code("NN301") == [] and [i.path for i in report.trace.inputs] == ["batch[0]"]


def test_a_step_that_returns_outputs_is_driven_by_the_surrogate_loss():
    report = nnlint.check(Task(), batch(), step=lambda model, b: model.head(model.encoder(b[0].view(len(b[0]), -1))))
    assert report.trace.backward_ran and report.trace.loss_is_surrogate
    assert any("surrogate" in note for note in report.notes)


def test_a_step_that_returns_no_loss_runs_no_backward_and_says_so():
    def no_loss(model, b):
        model.encoder(b[0].view(len(b[0]), -1))

    report = nnlint.check(Task(), batch(), step=no_loss)
    assert not report.trace.backward_ran
    assert any("returned no loss" in note for note in report.notes)


def test_a_step_that_raises_is_named_in_the_error():
    def broken_step(model, b):
        raise KeyError("logits")

    with pytest.raises(ModelRaised, match=r"broken_step raised KeyError: 'logits'"):
        nnlint.check(Task(), batch(), step=broken_step)


def test_step_and_loss_fn_together_are_an_error_that_says_why():
    with pytest.raises(ConfigError, match="either step .* or loss_fn and target, not both"):
        nnlint.check(Task(), batch(), step=training_step, loss_fn=F.cross_entropy)
    with pytest.raises(ConfigError, match="step must be a function"):
        nnlint.check(Task(), batch(), step="training_step")
