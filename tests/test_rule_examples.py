"""The test suite generated from the rules' own examples (Fixit style): every rule carries a faulty
model file it must fire on, on the module it names, and a healthy twin it must stay quiet on; where the
rule has a fix, nnlint.fix must clear the faulty example's finding. These are the Example and Use instead
sections of `nnlint rule CODE`, so the documentation's code is code that runs."""
from __future__ import annotations

import pytest

import nnlint
from nnlint.loader import load_target
from nnlint.registry import all_rules
from probe_args import check_kwargs


def _cases():
    for code, rule in all_rules().items():
        for i, example in enumerate(rule.examples):
            kind = "faulty" if example.faulty else "healthy"
            yield pytest.param(rule, example, id=f"{code}-{kind}-{i}")


def _load(example, tmp_path):
    path = tmp_path / "example.py"
    path.write_text(example.source, encoding="utf-8")
    return load_target(str(path))


def test_every_rule_carries_a_faulty_and_a_healthy_example():
    missing = {code: [k for k, want in (("faulty", True), ("healthy", False))
                      if not any(e.faulty is want for e in rule.examples)]
               for code, rule in all_rules().items()}
    assert {code: kinds for code, kinds in missing.items() if kinds} == {}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # NN001's example scripts a module
@pytest.mark.parametrize("rule, example", list(_cases()))
def test_example(rule, example, tmp_path):
    loaded = _load(example, tmp_path)
    arguments = {**loaded.check_arguments(), **check_kwargs(example.source)}   # `# nnlint check example.py --steps 50`
    if "frozen" in check_kwargs(example.source):
        arguments["frozen"] = tuple(loaded.frozen) + check_kwargs(example.source)["frozen"]
    report = nnlint.check(loaded.model, loaded.batch, select=[rule.code], **arguments)
    found = [d for d in report.diagnostics if d.code == rule.code]
    if not example.faulty:
        assert found == [], f"{rule.code} fires on its own healthy example: {[d.message for d in found]}"
        return
    assert example.module in {d.module for d in found}, \
        f"{rule.code} does not fire on {example.module!r} in its faulty example: {[(d.module, d.message) for d in found]}"
    if rule.fixable == "none" or not example.fixed:
        return
    fresh = _load(example, tmp_path)
    result = nnlint.fix(fresh.model, fresh.batch, unsafe=rule.fixable == "unsafe", select=[rule.code],
                        **fresh.check_arguments())
    left = [d for d in result.report.diagnostics if d.code == rule.code and d.module == example.module]
    assert left == [], f"nnlint.fix leaves {rule.code} on {example.module!r}: {left[0].message if left else ''}"
