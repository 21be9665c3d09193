"""The text and JSON emitters, and the lookup of emitters by name."""
from __future__ import annotations

import json
import math
import sys

import pytest

import nnlint
from nnlint.diagnostics import Diagnostic, Fix, Location
from nnlint.errors import ConfigError
from nnlint.output import FORMATS, emitter, module_label
from nnlint.output import json as json_output
from nnlint.output import text
from nnlint.report import Report

FILE = "/project/models/net.py"
LONG = ("71% of tanh inputs are in the flat region (|z| > 2.2, input std 7.9); gradients vanish: "
        "Xavier-init fc1 and normalize the inputs so that the pre-activations stay in the linear range")


def sample_report(**overrides) -> Report:
    fields = dict(
        model_name="Net",
        batch_description="64x784",
        seconds=0.42,
        source_file=FILE,
        notes=["the model's forward wrote to parameters in place: fc1.weight"],
        diagnostics=[
            Diagnostic("NN202", "saturated-activation", "error", "act1", LONG, Location(FILE, 15),
                       {"saturated_fraction": 0.71}, Fix("reinit", "fc1", "Xavier re-init of fc1")),
            Diagnostic("NN201", "sigmoid-tanh-hidden", "warning", "act1", "tanh is a hidden nonlinearity",
                       Location(FILE, 15), fix=Fix("swap_activation", "act1", "swap for ReLU", safe=False)),
            Diagnostic("NN301", "uncentered-input", "info", "", "batch: channel means 0.13 (std 0.31)"),
            Diagnostic("NN101", "zero-weights", "error", "blocks.0.fc", "weight is all zeros",
                       Location("/elsewhere/blocks.py", 7)),
        ],
    )
    fields.update(overrides)
    return Report(**fields)


# ---------------------------------------------------------------------------------------------
# text


def test_text_report_layout():
    out = text.render(sample_report(), width=100)
    lines = out.splitlines()
    assert lines[0] == f"{FILE}: Net on a batch of 64x784 (0.4 s)"
    assert lines[1] == ""
    assert lines[2].split() == ["module", "code", "severity", "line", "finding"]
    body = "\n".join(lines[3:])
    # the input first (it has no module), then the modules in report order; a module's name once
    assert lines[3].split()[:4] == ["input", "NN301", "info", "-"]
    act_rows = [line for line in lines if "NN202" in line or "NN201" in line]
    assert act_rows[0].split()[0] == "act1" and act_rows[1].split()[0] == "NN201"
    # a layer built in another file shows that file; one in the checked file, the line alone
    assert " blocks.py:7 " in body and " 15  " in body
    assert "4 problems (2 errors, 1 warning, 1 info)" in out
    assert "note: the model's forward wrote to parameters in place: fc1.weight" in out
    assert "\x1b[" not in out


@pytest.mark.parametrize("width", [80, 100, 120])
def test_long_findings_wrap_within_the_width(width):
    out = text.render(sample_report(), width=width)
    assert max(len(line) for line in out.splitlines()) <= width
    assert "pre-activations" in out   # wrapped, not cut


def test_color_only_when_asked():
    plain = text.render(sample_report(), width=100)
    colored = text.render(sample_report(), width=100, color=True)
    assert "\x1b[" not in plain and "\x1b[31m" in colored      # errors in red
    import click

    assert click.unstyle(colored) == plain


def test_clean_report_is_one_line():
    out = text.render(sample_report(diagnostics=[], notes=[]))
    assert out == f"{FILE}: no problems found (Net on a batch of 64x784, 0.4 s)\n"
    without_file = text.render(sample_report(diagnostics=[], notes=[], source_file=None))
    assert without_file == "no problems found (Net on a batch of 64x784, 0.4 s)\n"


@pytest.mark.parametrize("width", [80, 120])
def test_fixable_summary(width):
    # one safe and one unsafe fix in the sample; a command is named only when the CLI has one
    lines = text.render(sample_report(), width=width, fix_command="nnlint fix net.py").splitlines()
    at = next(i for i, s in enumerate(lines) if s.startswith("4 problems"))
    hint = "1 fixable with `nnlint fix net.py` (1 more with --unsafe-fixes)"
    if width == 120:
        assert lines[at] == f"4 problems (2 errors, 1 warning, 1 info); {hint}"
    else:   # too long for one line: the hint goes on its own
        assert lines[at:at + 2] == ["4 problems (2 errors, 1 warning, 1 info)", hint]
    without = text.render(sample_report(), width=120).splitlines()
    assert "4 problems (2 errors, 1 warning, 1 info); 2 with a suggested fix" in without
    only_unsafe = sample_report(diagnostics=sample_report().diagnostics[1:])
    assert "1 fixable with `nnlint fix net.py --unsafe-fixes`" in text.render(only_unsafe, fix_command="nnlint fix net.py")


def test_findings_without_a_module_group_by_what_they_are_about():
    model_wide = [Diagnostic("NN501", "dropout-active-in-eval", "error", "", "dropout in eval"),
                  Diagnostic("NN301", "uncentered-input", "warning", "", "channel means"),
                  Diagnostic("NN506", "weight-decay-setup", "info", "", "weight decay")]
    lines = text.render(sample_report(diagnostics=model_wide, notes=[]), width=100).splitlines()
    assert [line.split()[0] for line in lines[3:6]] == ["model", "NN506", "input"]


def test_module_label():
    d = Diagnostic("NN506", "weight-decay-setup", "info", "", "m")
    assert module_label(d) == "model"
    assert module_label(Diagnostic("NN301", "uncentered-input", "info", "", "m")) == "input"
    assert module_label(Diagnostic("NN203", "dead-relu", "info", "layer1.relu", "m")) == "layer1.relu"


# ---------------------------------------------------------------------------------------------
# json


def strict_loads(text_: str):
    """json.loads that rejects NaN/Infinity tokens, as strict parsers (JavaScript, Go) do."""
    def reject(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text_, parse_constant=reject)


def test_json_schema():
    doc = strict_loads(json_output.render(sample_report()))
    assert list(doc) == ["version", "nnlint_version", "file", "model", "batch", "seconds", "diagnostics", "summary"]
    assert doc["version"] == 1 and doc["nnlint_version"] == nnlint.__version__
    assert doc["file"] == FILE and doc["model"] == "Net" and doc["batch"] == "64x784"
    assert isinstance(doc["seconds"], float)
    assert doc["summary"] == {"errors": 2, "warnings": 1, "infos": 1, "total": 4, "fixable": 2, "ok": False}
    for d in doc["diagnostics"]:
        assert set(d) == {"code", "name", "severity", "module", "message", "location", "evidence", "fix", "escalation"}
        assert isinstance(d["escalation"], list)
        assert d["severity"] in ("error", "warning", "info")
        assert d["location"] is None or (isinstance(d["location"]["file"], str) and isinstance(d["location"]["line"], int))
    first_fix = next(d["fix"] for d in doc["diagnostics"] if d["fix"])
    assert set(first_fix) == {"kind", "target", "description", "params", "safe"}


def test_json_is_valid_with_non_finite_and_odd_evidence():
    d = Diagnostic("NN002", "non-finite-output", "error", "exp", "NaN", evidence={
        "max": math.inf, "min": -math.inf, "mean": math.nan, "shape": (2, 3), "codes": {"a"},
        "where": Location(FILE, 3), 7: "int key"})
    doc = strict_loads(json_output.render(sample_report(diagnostics=[d])))
    evidence = doc["diagnostics"][0]["evidence"]
    assert evidence["max"] == "inf" and evidence["min"] == "-inf" and evidence["mean"] == "nan"
    assert evidence["shape"] == [2, 3] and evidence["codes"] == ["a"]
    assert evidence["where"] == {"file": FILE, "line": 3} and evidence["7"] == "int key"


def test_json_without_source_file():
    assert strict_loads(json_output.render(sample_report(source_file=None)))["file"] is None


# ---------------------------------------------------------------------------------------------
# Looking emitters up by name


def test_every_listed_format_resolves_or_says_not_yet():
    for name in FORMATS:
        try:
            assert callable(emitter(name))
        except ConfigError as exc:
            assert "not available yet" in str(exc)
    assert emitter("text") is text.render and emitter("json") is json_output.render


def test_a_missing_emitter_is_not_available_yet(monkeypatch):
    monkeypatch.setitem(sys.modules, "nnlint.output.html", None)   # as if html.py did not exist
    with pytest.raises(ConfigError, match="html output is not available yet"):
        emitter("html")
    with pytest.raises(ConfigError, match="not available yet"):
        emitter("no_such_format")


def test_a_real_report_renders_in_both_formats():
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    report = nnlint.check(model, torch.randn(32, 8))
    out = text.render(report, width=100)
    assert "Sequential on a batch of 32x8" in out
    doc = strict_loads(json_output.render(report))
    assert doc["model"] == "Sequential" and doc["batch"] == "32x8"
    assert len(doc["diagnostics"]) == len(report.diagnostics)
