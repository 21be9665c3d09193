"""SARIF 2.1.0, as GitHub code scanning reads it (`nnlint check model.py --format sarif > nnlint.sarif`).

What GitHub requires, and where it comes from here:
- `tool.driver`: name, version, and one rule per code that fired, with id, name, shortDescription (the
  rule's summary), fullDescription (its "What it does"), help (its whole documentation, as text and as
  markdown: the docstring is already markdown) and the default level;
- each result: ruleId, ruleIndex, level (error / warning / note), message.text, and one
  physicalLocation whose artifactLocation.uri is relative to the repository root (`%SRCROOT%`) and
  whose region has a startLine.
The module a finding is about (named as the text table names it) goes into the message, and into a
logicalLocation when it has a qualified name.
"""
from __future__ import annotations

import json
import re
from typing import Any, Optional

from nnlint.diagnostics import Diagnostic
from nnlint.output import module_label
from nnlint.output.locations import finding_location, relative_path, repo_root

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def render(report, *, root: Optional[str] = None) -> str:
    return json.dumps(sarif_log(report, root=root), indent=2) + "\n"


def sarif_log(report, *, root: Optional[str] = None) -> dict[str, Any]:
    from nnlint._version import __version__

    base = repo_root(root)
    diagnostics = report.sorted()
    codes = sorted({d.code for d in diagnostics})
    index = {code: i for i, code in enumerate(codes)}
    by_code = {d.code: d for d in diagnostics}
    run = {
        "tool": {"driver": {
            "name": "nnlint",
            "version": __version__,
            "semanticVersion": __version__,
            "rules": [_rule(code, by_code[code]) for code in codes],
        }},
        "originalUriBaseIds": {"%SRCROOT%": {"uri": base.as_uri() + "/"}},
        "results": [_result(d, index[d.code], report, base) for d in diagnostics],
        "invocations": [{"executionSuccessful": True}],
    }
    return {"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}


def _rule(code: str, example: Diagnostic) -> dict[str, Any]:
    from nnlint.registry import all_rules

    cls = all_rules().get(code)
    doc = cls.documentation() if cls is not None else ""
    summary = cls.summary if cls is not None else example.name
    return {
        "id": code,
        "name": example.name,
        "shortDescription": {"text": summary},
        "fullDescription": {"text": what_it_does(doc) or summary},
        "help": {"text": doc or summary, "markdown": doc or summary},
        "defaultConfiguration": {"level": LEVEL.get(cls.severity if cls is not None else example.severity, "warning")},
        "properties": {"tags": ["nnlint"] + ([_family(cls)] if cls is not None else [])},
    }


def what_it_does(doc: str) -> str:
    """The paragraph under `## What it does`, on one line."""
    m = re.search(r"^## What it does\s*\n(.*?)(?:\n\s*\n|\n##|\Z)", doc, re.S | re.M)
    return " ".join(m.group(1).split()) if m else ""


def _family(cls) -> str:
    # nnlint.rules.activation.nn203_dead_relu -> "activation"
    parts = cls.__module__.split(".")
    return parts[2] if len(parts) > 3 else "rules"


def _result(d: Diagnostic, rule_index: int, report, base) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": d.code,
        "ruleIndex": rule_index,
        "level": LEVEL.get(d.severity, "warning"),
        "message": {"text": f"{module_label(d)}: {d.message}"},
    }
    loc = finding_location(d, report)
    if loc is not None:
        rel = relative_path(loc.file, base)
        artifact = {"uri": rel, "uriBaseId": "%SRCROOT%"} if rel is not None else {"uri": _file_uri(loc.file)}
        result["locations"] = [{
            "physicalLocation": {"artifactLocation": artifact, "region": {"startLine": max(int(loc.line), 1)}},
            **({"logicalLocations": [{"fullyQualifiedName": d.module, "kind": "module"}]} if d.module else {}),
        }]
    if d.fix is not None:
        result["properties"] = {"fix": d.fix.description, "fixSafety": "safe" if d.fix.safe else "unsafe"}
    return result


def _file_uri(file: str) -> str:
    from pathlib import Path

    return Path(file).resolve().as_uri()
