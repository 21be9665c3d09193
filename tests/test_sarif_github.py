"""The SARIF and GitHub-annotation emitters: snapshots, the fields GitHub requires, escaping."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

import nnlint
from nnlint.diagnostics import Diagnostic, Fix, Location
from nnlint.output import github, sarif
from nnlint.report import Report

SNAPSHOTS = Path(__file__).parent / "snapshots"
ROOT = "/project"   # a root that does not exist: no .git above it, so it is the root itself


def sample_report() -> Report:
    return Report(
        model_name="Net",
        batch_description="64x16",
        source_file=f"{ROOT}/models/net.py",
        diagnostics=[
            Diagnostic("NN203", "dead-relu", "error", "encoder.act",
                       "100% of units (32 of 32) never activate on this batch: 50% is an error",
                       Location(f"{ROOT}/models/net.py", 14), {"dead_fraction": 1.0},
                       Fix("reinit", "encoder.fc", "re-init encoder.fc with kaiming_normal_(nonlinearity='relu')")),
            Diagnostic("NN101", "zero-weights", "warning", "head",
                       "weight is all zeros, 100%: units stay identical, e.g. a,b: c",
                       Location(f"{ROOT}/models/net.py", 16)),
            Diagnostic("NN301", "uncentered-input", "info", "",
                       "channel means 0.13 (std 0.31)\nsubtract the mean"),
        ],
    )


def check_snapshot(name: str, text: str) -> None:
    """Compare with tests/snapshots/<name>; NNLINT_UPDATE_SNAPSHOTS=1 rewrites it."""
    path = SNAPSHOTS / name
    if os.environ.get("NNLINT_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text)
    assert path.exists(), f"no snapshot {name}; create it with NNLINT_UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(), f"{name} changed; rerun with NNLINT_UPDATE_SNAPSHOTS=1 if intended"


# ---------------------------------------------------------------------------------------------
# SARIF


def assert_github_code_scanning_fields(log: dict) -> None:
    """The fields GitHub code scanning requires of an uploaded SARIF file (its documented subset)."""
    assert log["version"] == "2.1.0" and "sarif-2.1.0" in log["$schema"]
    [run] = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "nnlint" and driver["version"] == nnlint.__version__
    rule_ids = []
    for rule in driver["rules"]:
        assert re.fullmatch(r"NN\d{3}", rule["id"])
        for key in ("shortDescription", "fullDescription", "help"):
            assert rule[key]["text"].strip(), f"{rule['id']} has an empty {key}"
        assert rule["defaultConfiguration"]["level"] in ("error", "warning", "note")
        rule_ids.append(rule["id"])
    assert len(rule_ids) == len(set(rule_ids))
    for result in run["results"]:
        assert result["ruleId"] in rule_ids
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note")
        assert result["message"]["text"].strip()
        [location] = result["locations"]
        physical = location["physicalLocation"]
        uri = physical["artifactLocation"]["uri"]
        assert not uri.startswith("/") and "\\" not in uri and ":" not in uri, f"{uri} is not repo-relative"
        assert isinstance(physical["region"]["startLine"], int) and physical["region"]["startLine"] >= 1


def test_sarif_snapshot():
    log = json.loads(sarif.render(sample_report(), root=ROOT))
    # The snapshot is of the emitter's shape: the version and the rules' own prose (their docstrings,
    # checked against the registry below) change for their own reasons.
    driver = log["runs"][0]["tool"]["driver"]
    driver["version"] = driver["semanticVersion"] = "<version>"
    for rule in driver["rules"]:
        for key in ("shortDescription", "fullDescription"):
            rule[key]["text"] = f"<{key} of {rule['id']}>"
        rule["help"] = {"text": f"<doc of {rule['id']}>", "markdown": f"<doc of {rule['id']}>"}
    check_snapshot("report.sarif", json.dumps(log, indent=2) + "\n")


def test_sarif_has_what_github_code_scanning_requires():
    log = json.loads(sarif.render(sample_report(), root=ROOT))
    assert_github_code_scanning_fields(log)
    results = log["runs"][0]["results"]
    assert [(r["ruleId"], r["level"]) for r in results] == [("NN301", "note"), ("NN203", "error"), ("NN101", "warning")]
    # The input finding has no line of its own: it points at the model file's first line.
    assert results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "models/net.py"
    assert results[0]["locations"][0]["physicalLocation"]["region"]["startLine"] == 1
    assert results[0]["message"]["text"].startswith("input: channel means 0.13")   # as the text table names it
    assert results[1]["message"]["text"].startswith("encoder.act: 100% of units")
    rules = {r["id"]: r for r in log["runs"][0]["tool"]["driver"]["rules"]}
    # The rule's own documentation (its docstring) is what the code-scanning page shows as help.
    from nnlint.registry import all_rules

    assert rules["NN203"]["help"]["markdown"] == all_rules()["NN203"].documentation()
    assert rules["NN203"]["fullDescription"]["text"].startswith("For every ReLU-family activation call")
    assert rules["NN203"]["shortDescription"]["text"] == all_rules()["NN203"].summary


def test_sarif_of_a_real_check_points_at_the_line_that_built_the_module(tmp_path, monkeypatch):
    (tmp_path / ".git").mkdir()
    models = tmp_path / "models"
    models.mkdir()
    (models / "dead.py").write_text(
        "import torch.nn as nn\n"
        "\n"
        "\n"
        "class Dead(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(16, 32)\n"
        "        self.act = nn.ReLU()\n"
        "        self.head = nn.Linear(32, 4)\n"
        "        nn.init.constant_(self.fc.bias, -5.0)\n"
        "\n"
        "    def forward(self, x):\n"
        "        return self.head(self.act(self.fc(x)))\n"
    )
    monkeypatch.syspath_prepend(str(models))
    monkeypatch.chdir(models)   # the root is found from the working directory upwards
    import torch
    from dead import Dead

    torch.manual_seed(0)
    report = nnlint.check(Dead(), torch.randn(64, 16))
    log = json.loads(sarif.render(report))
    assert_github_code_scanning_fields(log)
    [dead] = [r for r in log["runs"][0]["results"] if r["ruleId"] == "NN203"]
    physical = dead["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"] == {"uri": "models/dead.py", "uriBaseId": "%SRCROOT%"}
    assert physical["region"]["startLine"] == 8   # self.act = nn.ReLU()
    assert log["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"] == tmp_path.resolve().as_uri() + "/"
    sys.modules.pop("dead", None)


def test_a_file_outside_the_repository_keeps_an_absolute_uri():
    report = Report(diagnostics=[Diagnostic("NN101", "zero-weights", "error", "fc", "zeros",
                                            Location("/elsewhere/net.py", 3))])
    [result] = json.loads(sarif.render(report, root=ROOT))["runs"][0]["results"]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"] == {"uri": "file:///elsewhere/net.py"}


def test_an_empty_report_is_a_valid_run():
    log = json.loads(sarif.render(Report(diagnostics=[]), root=ROOT))
    assert log["runs"][0]["results"] == [] and log["runs"][0]["tool"]["driver"]["rules"] == []


# ---------------------------------------------------------------------------------------------
# GitHub workflow commands


def test_github_snapshot():
    check_snapshot("report.github.txt", github.render(sample_report(), root=ROOT))


def unescape_property(value: str) -> str:
    # the runner's ActionCommand.cs, reversed in the opposite order of escaping
    return value.replace("%0D", "\r").replace("%0A", "\n").replace("%3A", ":").replace("%2C", ",").replace("%25", "%")


def parse_command(line: str):
    m = re.fullmatch(r"::(\w+) ([^:]*)::(.*)", line)
    assert m, line
    props = dict(kv.split("=", 1) for kv in m.group(2).split(","))
    return m.group(1), {k: unescape_property(v) for k, v in props.items()}, unescape_property(m.group(3))


def test_github_annotations_round_trip_through_the_runners_unescaping():
    lines = github.render(sample_report(), root=ROOT).splitlines()
    assert len(lines) == 3   # one line per finding: newlines inside messages are escaped
    commands = [parse_command(line) for line in lines]
    assert [c[0] for c in commands] == ["notice", "error", "warning"]
    notice, error, warning = commands
    assert notice[1] == {"file": "models/net.py", "line": "1", "title": "NN301 uncentered-input (input)"}
    assert notice[2] == "channel means 0.13 (std 0.31)\nsubtract the mean"
    assert error[1] == {"file": "models/net.py", "line": "14", "title": "NN203 dead-relu (encoder.act)"}
    assert error[2].endswith("\nFix: re-init encoder.fc with kaiming_normal_(nonlinearity='relu')")
    assert warning[2] == "weight is all zeros, 100%: units stay identical, e.g. a,b: c"


@pytest.mark.parametrize("raw, data, prop", [
    ("50% a:b,c", "50%25 a:b,c", "50%25 a%3Ab%2Cc"),
    ("line1\r\nline2", "line1%0D%0Aline2", "line1%0D%0Aline2"),
    ("%0A", "%250A", "%250A"),
])
def test_escaping_matches_the_actions_toolkit(raw, data, prop):
    assert github.escape_data(raw) == data
    assert github.escape_property(raw) == prop
