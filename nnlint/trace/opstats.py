"""Which statistics the tracer takes on which op, as a registry: one decorated function per statistic.

    @statistic("saturated", kinds=opnames.SATURATING, on="input")
    def saturated(x, op, ctx):
        stats.saturated_fraction(x, opnames.FLAT_REGION[op.kind], ctx.pending, ctx.store(op, "saturated"))

A statistic is taken on an op's first floating input (`on="input"`, before the call: an in-place op
would overwrite it) or on its first floating output (`on="output"`), for the op kinds it names, and is
stored in `OpRecord.stats[name]` once the pass's values are read back. Rules read it from there. Every
op's output summary (`stats["out"]`) is taken by the recorder itself: the graph's structure reads it
everywhere. Adding a statistic is one function here (and its reduction in stats.py when it needs a
new one); registering a name twice is an error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from nnlint.trace import ops as opnames
from nnlint.trace import stats
from nnlint.trace.records import OpRecord, TensorSummary


@dataclass(frozen=True)
class Statistic:
    name: str
    kinds: frozenset[str]
    on: str                                   # "input" | "output"
    take: Callable[[Any, OpRecord, "StatContext"], None]


class StatContext:
    """What a statistic needs from the recorder: the pending read-back, the per-value summary cache,
    which dimension of a tensor holds units, and the op's other inputs."""

    def __init__(self, pending: stats.PendingStats, summarize: Callable, unit_dim: Callable[[Any, int], int]):
        self.pending = pending
        self.summarize = summarize            # summarize(tensor, store): once per tensor value
        self.unit_dim = unit_dim              # unit_dim(tensor, serial): 1 for conv maps, else -1
        self.inputs: list[Any] = []           # the op's tensor inputs (set per op)
        self.serial: int = 0                  # the serial of the tensor the statistic is taken on

    @staticmethod
    def store(op: OpRecord, key: str) -> Callable[[Any], None]:
        return lambda value: op.stats.__setitem__(key, value)


REGISTRY: dict[str, Statistic] = {}
_INDEX: dict[str, dict[str, list[Statistic]]] = {}   # on -> kind -> statistics, rebuilt after a registration


def statistic(name: str, *, kinds: Iterable[str], on: str):
    if on not in ("input", "output"):
        raise ValueError(f"statistic {name!r}: on must be 'input' or 'output', not {on!r}")

    def register(fn):
        if name in REGISTRY:
            raise ValueError(f"statistic {name!r} is registered twice")
        REGISTRY[name] = Statistic(name, frozenset(kinds), on, fn)
        _INDEX.clear()
        return fn

    return register


def for_op(kind: str, on: str, wanted: Optional[set[str]] = None) -> list[Statistic]:
    """The statistics to take on an op of this kind, before (input) or after (output) the call."""
    return [s for s in _by_kind(on).get(kind, ()) if wanted is None or s.name in wanted]



def _by_kind(on: str) -> dict[str, list[Statistic]]:
    index = _INDEX.get(on)
    if index is None:
        index = {}
        for s in REGISTRY.values():
            if s.on == on:
                for k in s.kinds:
                    index.setdefault(k, []).append(s)
        _INDEX[on] = index
    return index


# ---------------------------------------------------------------------------------------------
# The statistics


@statistic("in", kinds=opnames.ACTIVATIONS | opnames.WEIGHT_OPS | opnames.NORM_OPS, on="input")
def input_summary(x, op: OpRecord, ctx: StatContext) -> None:
    """Mean/std of what an activation, a weight layer or a norm receives (a layer's gain; NN103)."""
    ctx.summarize(x, ctx.store(op, "in"))


@statistic("saturated", kinds=opnames.SATURATING, on="input")
def saturated(x, op: OpRecord, ctx: StatContext) -> None:
    """Fraction of sigmoid/tanh pre-activations in the flat region."""
    stats.saturated_fraction(x, opnames.FLAT_REGION[op.kind], ctx.pending, ctx.store(op, "saturated"))


@statistic("operands", kinds={"add"}, on="input")
def add_operands(x, op: OpRecord, ctx: StatContext) -> None:
    """Both operands of a two-tensor add, as they were before it ran (an in-place `out += x` overwrites
    the first): a residual block's stream and branch."""
    operands = [t for t in ctx.inputs if t.is_floating_point() and t.dim() > 0]
    if len(operands) != 2:
        return
    results: list[Optional[TensorSummary]] = [None, None]

    def store(i, s):
        results[i] = s
        if all(r is not None for r in results):
            op.stats["operands"] = list(results)

    for i, t in enumerate(operands):
        ctx.summarize(t, lambda s, i=i: store(i, s))


@statistic("unit_active", kinds=opnames.OPEN_ABOVE, on="input")
def unit_active(x, op: OpRecord, ctx: StatContext) -> None:
    """Per unit (channel of a conv map, feature of a linear layer), the fraction of positions where a
    ReLU-like activation's pre-activation is out of its flat region (ops.ALIVE_ABOVE): dead units. For
    a tanh/sigmoid, where its gate is open (ops.GATE_OPEN_ABOVE): what NN203 reads when it is the gate
    of a written-out GELU or Swish."""
    unit_dim = ctx.unit_dim(x, ctx.serial)
    op.args["unit_dim"] = unit_dim % max(x.dim(), 1)
    stats.active_fraction_per_unit(x, unit_dim, ctx.pending, ctx.store(op, "unit_active"),
                                   above=opnames.OPEN_ABOVE[op.kind])
