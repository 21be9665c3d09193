"""The probe runner: a probe runs only when a selected rule reads it (an opt-in one only with its option),
its result lands in the trace, the model is put back whatever the probe did, and a probe that cannot run
costs a note, not the check."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import nnlint
from nnlint import registry
from nnlint.probes import base
from nnlint.registry import Rule


class Counting(base.Probe):
    name = "counting"
    runs = 0

    def run(self, ctx):
        Counting.runs += 1
        ctx.model.train()                         # a probe that leaves a mode changed: the runner puts it back
        with torch.no_grad():
            ctx.model[0].running_mean.add_(1.0)   # and a buffer
        return {"samples": int(ctx.batch.shape[0])}


class OptIn(Counting):
    name = "opt_in"

    def wanted(self, options):
        return options.steps is not None


class Broken(base.Probe):
    name = "broken"

    def run(self, ctx):
        raise ValueError("needs a batch of 4 at least")


class ReadsCounting(Rule):
    code, name, severity, summary = "NN990", "reads-counting", "info", "test rule"
    reads = frozenset({"counting", "opt_in", "broken"})

    def check(self, trace):
        for part, value in sorted(trace.probes.items()):
            yield self.diagnostic("", f"{part}: {value}")


@pytest.fixture
def probes(monkeypatch):
    catalog = {**registry.all_rules(), "NN990": ReadsCounting}   # validated against the real probes first
    monkeypatch.setattr(base, "PROBES", {"counting": Counting(), "opt_in": OptIn(), "broken": Broken()})
    monkeypatch.setattr(base, "all_probes", lambda: base.PROBES)
    monkeypatch.setattr(registry, "_catalog", catalog)
    Counting.runs = 0


def model():
    m = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 2))
    return m.eval()


def test_a_probe_runs_when_a_selected_rule_reads_it_and_the_model_is_put_back(probes):
    m = model()
    before = m[0].running_mean.clone()
    report = nnlint.check(m, torch.randn(8, 4), select=["NN990"])
    assert [d.message for d in report.diagnostics] == ["counting: {'samples': 8}"]
    assert Counting.runs == 1
    assert not m.training and torch.equal(m[0].running_mean, before)
    assert any("broken probe could not run on this model (ValueError: needs a batch of 4 at least)" in n
               for n in report.notes)


def test_no_probe_runs_when_no_selected_rule_reads_it(probes):
    nnlint.check(model(), torch.randn(8, 4), select=["NN101"])
    assert Counting.runs == 0


def test_an_opt_in_probe_runs_only_with_its_option(probes):
    report = nnlint.check(model(), torch.randn(8, 4), select=["NN990"], steps=5)
    assert [d.message.split(":")[0] for d in report.diagnostics] == ["counting", "opt_in"]


def test_a_write_to_the_parameters_during_a_probe_is_put_back_and_said(probes, monkeypatch):
    # the probes run on copies, so a write is the model's own eval forward (RWKV rescales its weights
    # for inference): the parameters are put back bit for bit, and the report says what happened
    class Writer(base.Probe):
        name = "counting"

        def run(self, ctx):
            with torch.no_grad():
                ctx.model[1].weight.mul_(2)

    monkeypatch.setitem(base.PROBES, "counting", Writer())
    net = model()
    before = net[1].weight.detach().clone()
    report = nnlint.check(net, torch.randn(8, 4), select=["NN990"])
    assert torch.equal(net[1].weight, before)
    assert any("writes its own parameters in place" in n and "put them back" in n for n in report.notes), report.notes


def test_registering_a_probe_twice_or_without_run_is_refused(monkeypatch):
    monkeypatch.setattr(base, "PROBES", {"counting": Counting()})
    with pytest.raises(ValueError, match="registered twice"):
        base.probe(type("Again", (base.Probe,), {"name": "counting", "run": lambda self, ctx: None}))
    with pytest.raises(TypeError, match="has no run"):
        base.probe(type("NoRun", (base.Probe,), {"name": "idle"}))
