"""Every piece of code nnlint prints is Python that runs on that model: each snippet in the findings on
every fixture compiles, every `model...` expression names a real module or tensor of the loaded model,
and every torch call runs (on a copy of the model) when it names nothing but the model and torch (a span
taken from the middle of a longer recipe, such as the optimizer groups after `decay = ...`, only
compiles: its other names are the recipe's own)."""
from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nnlint
from nnlint.loader import load_target
from nnlint.pyexpr import code_in, module_expr

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.py")), ids=lambda p: p.stem)
def test_the_code_in_every_finding_runs_on_its_model(path):
    loaded = load_target(str(path))
    report = nnlint.check(loaded.model, loaded.batch, **loaded.check_arguments())
    for d in report.diagnostics:
        for span in code_in(d.message) + (code_in(d.fix.description) if d.fix is not None else []):
            code = compile(span, f"<{d.code} message>", "eval")
            scope = {"nn": nn, "torch": torch, "F": F, "model": copy.deepcopy(loaded.model)}
            names = {n.id for n in ast.walk(ast.parse(span, mode="eval")) if isinstance(n, ast.Name)}
            if names <= set(scope) | {"p", "n"}:
                with torch.no_grad():
                    eval(code, scope)   # noqa: S307 - the test's point: nnlint's own printed code runs


def test_module_expressions_are_python_for_any_module_name():
    model = nn.Sequential(nn.Linear(2, 2), nn.ModuleDict({"head": nn.Sequential(nn.ReLU(), nn.Linear(2, 2))}))
    assert module_expr("1.head.1", "weight") == "model[1].head[1].weight"
    assert eval(module_expr("1.head.1", "weight"), {"model": model}) is model[1]["head"][1].weight
    assert module_expr("") == "model"
