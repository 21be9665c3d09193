"""What the optimizer rules share: where a finding about the optimizer points, how a group is named,
and the parameters of the model grouped by module (one finding per module, not per tensor)."""
from __future__ import annotations

from typing import Iterable, Optional

from nnlint.diagnostics import Location
from nnlint.rulekit import as_location
from nnlint.trace.records import Trace


def optimizer_location(trace: Trace) -> Optional[Location]:
    """The line that builds the optimizer (the model file's `optimizer(model)` return), when known."""
    return as_location(trace.target_info.get("optimizer_location"))


def by_module(trace: Trace, names: Iterable[str]) -> dict[str, list[str]]:
    """Parameter names grouped by the module that owns them, in the model's execution order."""
    out: dict[str, list[str]] = {}
    for name in names:
        rec = trace.params.get(name)
        out.setdefault(rec.module if rec is not None else name.rpartition(".")[0], []).append(name)
    order = trace.module_order
    return dict(sorted(out.items(), key=lambda kv: order.get(kv[0], len(order))))


def attrs(names: list[str]) -> str:
    """`weight, bias` for ["2.weight", "2.bias"]."""
    return ", ".join(n.rpartition(".")[2] for n in names)
