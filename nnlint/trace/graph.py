"""Structure read from a trace's lineage: who produced a tensor, who consumed it, what follows a layer.

Pure Python over OpRecords (no torch), shared by the rules and the fixer so that "the nonlinearity that
follows this layer" or "is this add a residual connection" means the same thing everywhere.
"""
from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterator, Optional

from nnlint.trace import ops as opnames
from nnlint.trace.records import OpRecord, Trace

# Ops a signal passes through unchanged in kind: following a layer to "the next thing that matters"
# walks through these.
TRANSPARENT = opnames.PASSTHROUGH | {"dropout", "pool", "mean", "cat", "div", "sub", "opaque_passthrough"}


@dataclass(frozen=True)
class Follower:
    """What a weight layer's output meets next: an activation, a norm, another weight layer, a gate, the output."""

    kind: str                     # "activation" | "norm" | "weight" | "gate" | "add" | "output" | "none"
    op: Optional[OpRecord]
    activation: Optional[str] = None   # "relu", "tanh", ... when kind == "activation"


class Graph:
    """Producer/consumer maps over one phase's ops."""

    def __init__(self, trace: Trace, phase: str = "train"):
        self.trace = trace
        self.ops = trace.ops_in(phase)
        self.producer: dict[int, OpRecord] = {}
        self.consumers: dict[int, list[OpRecord]] = defaultdict(list)
        for op in self.ops:
            for s in op.inputs:
                self.consumers[s].append(op)
            for s in op.outputs:
                self.producer.setdefault(s, op)
        self.output_serials = set(trace.output_serials if phase == "train" else trace.eval_output_serials)
        self.param_serials = trace.param_serials

    @classmethod
    def of(cls, trace: Trace, phase: str = "train") -> "Graph":
        """The graph of a trace, built once and shared by every rule that reads it (its cached
        structure, such as residual_adds, is then computed once per check, not once per rule)."""
        cache = trace.__dict__.setdefault("_graphs", {})
        key = (phase, len(trace.ops))   # a trace whose ops changed gets a fresh graph
        if key not in cache:
            cache[key] = cls(trace, phase)
        return cache[key]

    # -- basic walks --
    def next_ops(self, op: OpRecord) -> list[OpRecord]:
        seen: dict[int, OpRecord] = {}
        for s in op.outputs:
            for c in self.consumers.get(s, ()):
                if c.index > op.index:
                    seen.setdefault(c.index, c)
        return [seen[i] for i in sorted(seen)]

    def is_model_output(self, op: OpRecord) -> bool:
        return any(s in self.output_serials for s in op.outputs)

    def ancestors(self, serial: int, limit: int = 100000) -> set[int]:
        """Serials this tensor was computed from (parameters excluded)."""
        seen: set[int] = set()
        queue = deque([serial])
        while queue and len(seen) < limit:
            s = queue.popleft()
            op = self.producer.get(s)
            if op is None:
                continue
            for i in op.inputs:
                if i not in seen and i not in self.param_serials:
                    seen.add(i)
                    queue.append(i)
        return seen

    def ops_between(self, start: int, end: int) -> Iterator[OpRecord]:
        """Ops on some path from serial `start` to serial `end` (exclusive of start's producer)."""
        upstream = self.ancestors(end) | {end}
        if start not in upstream:
            return iter(())
        reach: set[int] = {start}
        out: list[OpRecord] = []
        for op in self.ops:
            if any(i in reach for i in op.inputs) and any(o in upstream for o in op.outputs):
                out.append(op)
                reach.update(op.outputs)
        return iter(out)

    # -- what follows a layer --
    def follower(self, op: OpRecord, max_steps: int = 64) -> Follower:
        """The first thing that matters downstream of `op`: skips views, dropout, pooling.

        A mul is a gate; an add is reported as "add" (residual or bias) unless it adds a constant.
        """
        queue = deque(self.next_ops(op))
        seen: set[int] = set()
        steps = 0
        if not queue:
            return Follower("output" if self.is_model_output(op) else "none", None)
        while queue and steps < max_steps:
            nxt = queue.popleft()
            steps += 1
            if nxt.index in seen:
                continue
            seen.add(nxt.index)
            k = nxt.kind
            if k in opnames.RELU_FAMILY or k in opnames.SATURATING or k in ("hardsigmoid", "hardtanh", "softmax", "log_softmax"):
                return Follower("activation", nxt, k)
            if k in opnames.NORM_OPS:
                return Follower("norm", nxt)
            if k in opnames.WEIGHT_OPS or k in ("rnn", "attention", "opaque"):
                return Follower("weight", nxt)
            if k == "mul":
                return Follower("gate", nxt)
            if k == "add" and self.is_binary_tensor_op(nxt):
                return Follower("add", nxt)
            if self.is_model_output(nxt) and not self.next_ops(nxt):
                return Follower("output", nxt)
            queue.extend(self.next_ops(nxt))
        return Follower("output" if self.reaches_output(op) else "none", None)

    def first_downstream(self, op: OpRecord, match: Callable[[OpRecord], bool],
                         through: Callable[[OpRecord], bool], max_steps: int = 64) -> Optional[OpRecord]:
        """The first op after `op` that `match`es, reached by walking consumers only through ops
        that `through` accepts."""
        return self._first(deque(self.next_ops(op)), self.next_ops, match, through, max_steps)

    def first_upstream(self, op: OpRecord, match: Callable[[OpRecord], bool],
                       through: Callable[[OpRecord], bool], max_steps: int = 64) -> Optional[OpRecord]:
        """The first op before `op` (producers of its non-parameter inputs) that `match`es, walking
        back only through ops that `through` accepts."""
        return self._first(deque(self._producers(op)), self._producers, match, through, max_steps)

    def _producers(self, op: OpRecord) -> list[OpRecord]:
        return [self.producer[s] for s in op.inputs if s not in self.param_serials and s in self.producer]

    @staticmethod
    def _first(queue, step, match, through, max_steps) -> Optional[OpRecord]:
        seen: set[int] = set()
        while queue and len(seen) < max_steps:
            nxt = queue.popleft()
            if nxt.index in seen:
                continue
            seen.add(nxt.index)
            if match(nxt):
                return nxt
            if through(nxt):
                queue.extend(step(nxt))
        return None

    def is_binary_tensor_op(self, op: OpRecord) -> bool:
        return len([s for s in op.inputs if s not in self.param_serials]) >= 2

    def reaches_output(self, op: OpRecord) -> bool:
        return any(s in self.output_serials for s in self.descendant_serials(op))

    def descendant_serials(self, op: OpRecord, limit: int = 100000) -> set[int]:
        seen: set[int] = set(op.outputs)
        queue = deque(op.outputs)
        while queue and len(seen) < limit:
            s = queue.popleft()
            for c in self.consumers.get(s, ()):
                for o in c.outputs:
                    if o not in seen:
                        seen.add(o)
                        queue.append(o)
        return seen

    # -- uses of an activation's output --
    def feeds_weight_layer(self, op: OpRecord, max_steps: int = 256) -> Optional[OpRecord]:
        """The first weight layer this op's output reaches without passing through a multiplication
        (a gate) — i.e. the activation is a hidden-layer nonlinearity. None when it only gates or
        reaches the output."""
        queue = deque(self.next_ops(op))
        seen: set[int] = set()
        steps = 0
        while queue and steps < max_steps:
            nxt = queue.popleft()
            steps += 1
            if nxt.index in seen:
                continue
            seen.add(nxt.index)
            if nxt.kind in ("mul", "div") or nxt.kind in ("softmax", "log_softmax"):
                continue   # a gate, or a normalization of the activation: not a hidden layer
            if nxt.kind in opnames.WEIGHT_OPS or nxt.kind in ("rnn", "attention"):
                if nxt.weight is not None or nxt.kind in ("rnn", "attention") or nxt.kind == "linear" or nxt.kind == "conv":
                    return nxt
                continue   # a matmul of two activations (attention scores): not a weight layer
            queue.extend(self.next_ops(nxt))
        return None

    def is_formula_gate(self, op: OpRecord) -> bool:
        """True for tanh/sigmoid inside an activation formula x * f(x) (GELU-tanh, Swish, Mish): the
        activation's output, possibly shifted/scaled, multiplies a tensor of the same shape that the
        activation's input was computed from."""
        shape = op.stats.get("in").shape if op.stats.get("in") is not None else None
        upstream = set()
        for s in op.inputs:
            upstream |= self.ancestors(s, limit=64) | {s}
        downstream = self.descendant_serials(op, limit=64)
        queue = deque(self.next_ops(op))
        for _ in range(8):
            if not queue:
                break
            nxt = queue.popleft()
            if nxt.kind == "mul":
                others = [s for s in nxt.inputs if s not in downstream]
                if any(s in upstream for s in others):
                    out = nxt.out
                    return shape is None or out is None or tuple(out.shape) == tuple(shape)
                continue
            if nxt.kind in ("add", "sub", "div") or nxt.kind in opnames.PASSTHROUGH:
                queue.extend(self.next_ops(nxt))
        return False

    def feeding_weight_op(self, op: OpRecord, max_steps: int = 32) -> Optional[OpRecord]:
        """The weight layer whose output (through norms, views, bias adds) feeds this op."""
        queue = deque(s for s in op.inputs if s not in self.param_serials)
        seen: set[int] = set()
        steps = 0
        while queue and steps < max_steps:
            s = queue.popleft()
            steps += 1
            if s in seen:
                continue
            seen.add(s)
            prod = self.producer.get(s)
            if prod is None:
                continue
            if prod.kind in opnames.WEIGHT_OPS and prod.weight is not None:
                return prod
            if prod.kind in ("linear", "conv"):
                return prod
            if prod.kind in opnames.RELU_FAMILY or prod.kind in opnames.SATURATING:
                return None
            queue.extend(i for i in prod.inputs if i not in self.param_serials)
        return None

    # -- residual structure --
    @cached_property
    def residual_adds(self) -> list["ResidualAdd"]:
        """Adds `x + f(x)` where the skip operand x is an ancestor of the branch f(x) through ops
        that use parameters (a real branch, not a bias or a constant)."""
        found = []
        for op in self.ops:
            if op.kind != "add":
                continue
            operands = [s for s in op.inputs if s not in self.param_serials]
            if len(operands) != 2:
                continue
            for skip, branch in ((operands[0], operands[1]), (operands[1], operands[0])):
                branch_anc = self.ancestors(branch)
                if skip in branch_anc and self._has_weight_between(skip, branch):
                    found.append(ResidualAdd(op, skip, branch))
                    break
        return found

    def _has_weight_between(self, start: int, end: int) -> bool:
        return any(o.kind in opnames.WEIGHT_OPS or o.kind in ("opaque", "rnn", "attention")
                   for o in self.ops_between(start, end))

    def branch_ops(self, add: "ResidualAdd") -> list[OpRecord]:
        return list(self.ops_between(add.skip, add.branch))


@dataclass(frozen=True)
class ResidualAdd:
    op: OpRecord
    skip: int      # serial of the identity (or downsampled) operand
    branch: int    # serial of f(x)
