"""The bug gallery: every example of the peers' README galleries (torchtest2, torch-audit,
neural_net_checklist), their healthy examples, and the bugs of issues 13 and 14, as plain-torch
factories. `all_cases()` in a stable order; `case_by_name(name)`."""
from __future__ import annotations

from . import data, dataflow, gradients, healthy, init, loop, loss, mode, optimizer, structure
from .case import Case, Expect, Setup, call, default_optimizer, run_loop, standard_step

MODULES = (healthy, loss, dataflow, structure, gradients, init, data, mode, optimizer, loop)


def all_cases() -> list[Case]:
    cases = [case for module in MODULES for case in module.CASES]
    names = [c.name for c in cases]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise ValueError(f"gallery case names defined twice: {sorted(duplicated)}")
    missing = {c.twin for c in cases if c.twin and c.twin not in names}
    if missing:
        raise ValueError(f"gallery twins that are not cases: {sorted(missing)}")
    return cases


def case_by_name(name: str) -> Case:
    for case in all_cases():
        if case.name == name:
            return case
    raise KeyError(f"no gallery case named {name!r}")


__all__ = ["Case", "Expect", "Setup", "all_cases", "call", "case_by_name", "default_optimizer", "run_loop",
           "standard_step"]
