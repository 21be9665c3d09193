"""Residual and main-path structure read from a trace's lineage, for the signal-propagation rules and
the report's charts.

What it finds (pure Python over a Graph, no torch):
- residual blocks: `x + f(x)` adds with an identity skip, and projection shortcuts `P(x) + f(x)` whose
  skip has its own weight layer (torchvision's downsample); written as `x = x + self.block(x)`,
  `out += identity` (in place: the result has a fresh serial), `torch.add`, or Hugging Face's
  `hidden_states = residual + hidden_states`;
- the stream: which block's output is the next block's input with no normalization in between, so
  runs of consecutive blocks and the growth of the stream's variance along them;
- the main path: weight layers outside residual branches whose outputs reach another weight layer with
  no normalization in between, linked into chains that restart at each normalization, and how much
  each one scales the signal.
`Structure.of(trace)` computes it once per trace; every rule and the HTML report share it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Optional

from nnlint.trace import ops as opnames
from nnlint.trace import vocab
from nnlint.trace.graph import Graph
from nnlint.trace.mainpath import MainPath
from nnlint.trace.records import OpRecord, TensorSummary, Trace
from nnlint.trace.vocab import is_weight_layer

# Ops that take a slice of a tensor: a shortcut through one of these is not a projection of x.
_SLICING = {"__getitem__", "split", "chunk", "narrow", "select", "unbind"}

# Ops a projection shortcut may hold besides its one weight layer (ResNet-D: AvgPool -> 1x1 conv -> BN).
_SHORTCUT_KINDS = opnames.NORM_OPS | {"pool", "dropout", "add"} | (opnames.PASSTHROUGH - _SLICING)


@dataclass(frozen=True)
class ResidualBlock:
    """One residual addition and the two paths into it."""

    add: OpRecord
    source: int                       # serial of the stream value x entering the block
    skip: int                         # operand serial: x itself, or P(x) for a projection shortcut
    branch: int                       # operand serial: f(x)
    branch_ops: tuple[OpRecord, ...]  # ops on the paths from x to f(x)
    skip_ops: tuple[OpRecord, ...] = ()   # ops of the projection shortcut; empty for an identity skip

    @property
    def projection(self) -> bool:
        return bool(self.skip_ops)


@dataclass
class StreamStep:
    """One block on the stream, with the variances that say how it changed the stream."""

    block: ResidualBlock
    var_in: float                     # the stream entering the block (x)
    var_branch: float                 # f(x)
    var_out: float                    # x + f(x)
    previous: Optional["StreamStep"] = None   # the block whose output this block's input is
    successors: list["StreamStep"] = field(default_factory=list)

    @property
    def gain(self) -> float:
        """Var(f(x)) / Var(x): how much of the stream's scale the branch adds."""
        return self.var_branch / self.var_in if self.var_in > 0 else math.inf

    @property
    def factor(self) -> float:
        """How much this block multiplied the stream's variance: output over the previous block's
        output (so a ReLU between blocks counts, and the factors of a run multiply to its growth)."""
        ref = self.previous.var_out if self.previous is not None else self.var_in
        return self.var_out / ref if ref > 0 else math.inf


class Structure(MainPath):
    """Residual blocks, the stream through them and the main-path chains of one trace's training pass."""

    is_norm = staticmethod(vocab.is_norm)

    def __init__(self, trace: Trace, graph: Optional[Graph] = None):
        self.trace = trace
        self.graph = graph if graph is not None else Graph.of(trace)
        self._input_summary = {rec.serial: rec.summary for rec in trace.inputs if rec.is_float}
        self._main_path: dict[int, bool] = {}   # op index -> is_main_path_layer, memoized
        self._call_summary: dict[int, TensorSummary] = {}
        for call in trace.calls:
            if call.phase == "train" and call.outputs and call.output_summary is not None:
                self._call_summary.setdefault(call.outputs[0], call.output_summary)

    @classmethod
    def of(cls, trace: Trace) -> "Structure":
        """The structure of a trace's training pass, computed once and shared (like Graph.of)."""
        cache = trace.__dict__.setdefault("_structures", {})
        key = len(trace.ops)
        if key not in cache:
            cache[key] = cls(trace)
        return cache[key]

    # ------------------------------------------------------------------ values
    def tensor_inputs(self, op: OpRecord) -> list[int]:
        """The op's tensor operands, parameters excluded."""
        return self.graph.tensor_inputs(op)

    def main_input(self, op: OpRecord) -> Optional[int]:
        ins = self.tensor_inputs(op)
        return ins[0] if ins else None

    def summary(self, serial: int) -> Optional[TensorSummary]:
        """Statistics of a tensor value: its producer's output stats, through views and reshapes."""
        for _ in range(64):
            prod = self.graph.producer.get(serial)
            if prod is None:
                return self._input_summary.get(serial) or self._call_summary.get(serial)
            if prod.out is not None and prod.outputs and prod.outputs[0] == serial:
                return prod.out
            if serial in self._call_summary:
                return self._call_summary[serial]
            if prod.kind not in opnames.PASSTHROUGH and prod.func not in opnames.PASSTHROUGH:
                return None
            nxt = self.main_input(prod)
            if nxt is None:
                return None
            serial = nxt
        return None

    def rms(self, serial: int) -> Optional[float]:
        """The root mean square of a value: what a weight layer's weights multiply. For a zero-mean signal
        it is the std; for a pooled post-activation vector (an SE block's squeeze: mean 0.38, std 0.03)
        it is the mean, and a layer after it is judged by its real gain, not by mapping a mean into
        spread."""
        s = self.summary(serial)
        return None if s is None or s.nonfinite else math.sqrt(s.std * s.std + s.mean * s.mean)

    def std(self, serial: int) -> Optional[float]:
        s = self.summary(serial)
        return None if s is None or s.nonfinite else s.std

    def nonfinite_sources(self) -> list[OpRecord]:
        """The ops where NaN/Inf that reach a model output start: a non-finite output computed from
        finite inputs, on the lineage of a non-finite model output, in execution order. Empty when every
        output is finite: an intermediate inf that a mask, a `where` or a softmax absorbs (T5's log(0)
        in its position buckets, an additive causal mask, `masked_fill(-inf)`) is a mask, not a fault;
        a float32 mask of `finfo.min` is finite but its summary overflows, and is not one either."""
        bad = [s for s in self.trace.output_serials if (x := self.summary(s)) is not None and x.nonfinite]
        if not bad:
            return []
        lineage: set[int] = set()
        for s in bad:
            lineage |= self.graph.ancestors(s) | {s}
        out = []
        for op in self.graph.ops:
            if op.out is None or not op.out.nonfinite or not lineage & set(op.outputs):
                continue
            ins = [self.summary(s) for s in self.tensor_inputs(op)]
            if ins and all(x is not None and not x.nonfinite for x in ins):
                out.append(op)
        return out

    def operand_summary(self, add: OpRecord, serial: int) -> Optional[TensorSummary]:
        """An add's operand as it was when the add ran (taken before an in-place add overwrote it)."""
        operands = add.stats.get("operands")
        tensors = self.tensor_inputs(add)
        if operands and len(operands) == len(add.inputs) and serial in add.inputs:
            return operands[add.inputs.index(serial)]
        if operands and len(operands) == len(tensors) and serial in tensors:
            return operands[tensors.index(serial)]
        return self.summary(serial)

    # ------------------------------------------------------------------ residual blocks
    @cached_property
    def blocks(self) -> list[ResidualBlock]:
        """Every residual block of the training pass, in execution order."""
        found: dict[int, ResidualBlock] = {}
        for op in self.graph.ops:
            if op.kind == "add":
                block = self._identity_block(op) or self._parallel_branch(op, found) or self._projection_block(op)
                if block is not None:
                    found[op.index] = block
        return [found[i] for i in sorted(found)]

    def _identity_block(self, add: OpRecord) -> Optional[ResidualBlock]:
        """`x + f(x)`: the skip operand x is an ancestor of the branch f(x) through ops that multiply
        (a real branch, not a bias or a constant)."""
        operands = self.tensor_inputs(add)
        if len(operands) != 2:
            return None
        for skip, branch in ((operands[0], operands[1]), (operands[1], operands[0])):
            if skip in self.graph.ancestors(branch):
                branch_ops = self._branch_ops(skip, branch)
                if any(vocab.multiplies(o) for o in branch_ops):
                    return ResidualBlock(add, skip, skip, branch, tuple(branch_ops))
        return None

    def _parallel_branch(self, add: OpRecord, found: dict[int, ResidualBlock]) -> Optional[ResidualBlock]:
        """`(x + attn(h)) + mlp(h)` with h = norm(x) (Cohere, GPT-J's parallel residual): the second add's
        one operand is a block's output, the other a further branch from that block's input x."""
        operands = self.tensor_inputs(add)
        if len(operands) != 2:
            return None
        for skip, branch in ((operands[0], operands[1]), (operands[1], operands[0])):
            producer = self.graph.producer.get(skip)
            first = found.get(producer.index) if producer is not None else None
            if first is None or skip in self.graph.ancestors(branch) or first.source not in self.graph.ancestors(branch):
                continue
            branch_ops = self._branch_ops(first.source, branch)
            if any(vocab.multiplies(o) for o in branch_ops):
                return ResidualBlock(add, first.source, skip, branch, tuple(branch_ops))
        return None

    def _branch_ops(self, entry: int, branch: int) -> list[OpRecord]:
        """The ops on the paths from the block's input to its branch output, and the projections of the
        side inputs the branch reads: cross-attention's keys and values project an encoder's memory, and
        belong to the decoder block's branch although the skip does not reach them. Walking up from a side
        input stops at its projections (weight layers, included), at a normalization or a model input,
        and at anything the block's input was computed from."""
        ops = {o.index: o for o in self.graph.ops_between(entry, branch)}
        stream = self.graph.ancestors(entry) | {entry}
        produced = {s for o in ops.values() for s in o.outputs}
        stack = [s for o in ops.values() for s in self.tensor_inputs(o) if s not in produced and s not in stream]
        seen: set[int] = set()
        while stack and len(seen) < 256:
            serial = stack.pop()
            prod = self.graph.producer.get(serial)
            if serial in seen or prod is None or serial in stream or self.is_norm(prod):
                continue
            seen.add(serial)
            ops.setdefault(prod.index, prod)
            if not is_weight_layer(prod):
                stack.extend(self.tensor_inputs(prod))
        return [ops[i] for i in sorted(ops)]

    @cached_property
    def block_of_add(self) -> dict[int, ResidualBlock]:
        return {b.add.index: b for b in self.blocks}

    @cached_property
    def branch_op_indices(self) -> set[int]:
        """Indices of the ops inside some residual branch f of x + f(x)."""
        return {o.index for b in self.blocks for o in b.branch_ops}

    def _projection_block(self, add: OpRecord) -> Optional[ResidualBlock]:
        """`P(x) + f(x)`: both operands computed from one x, the shortcut P a single weight layer (with
        pooling, a norm, views) and the branch f holding weight layers of its own."""
        operands = self.tensor_inputs(add)
        if len(operands) != 2 or operands[0] == operands[1]:
            return None
        shapes = [self.summary(s) for s in operands]
        if any(s is None for s in shapes) or shapes[0].shape != shapes[1].shape:
            return None
        a, b = operands
        common = (self.graph.ancestors(a) | {a}) & (self.graph.ancestors(b) | {b})
        if not common:
            return None
        # The nearest common ancestor: the latest-produced shared value (model inputs come first).
        x = max(common, key=lambda s: (self.graph.producer[s].index if s in self.graph.producer else -1, s))
        if x in (a, b):
            return None   # an identity skip without a weight layer on the branch: not a block
        best: Optional[ResidualBlock] = None
        for skip, branch in ((a, b), (b, a)):
            skip_ops = self.graph.ops_between(x, skip)
            branch_ops = self.graph.ops_between(x, branch)
            if not self._is_shortcut(skip_ops) or not any(is_weight_layer(o) for o in branch_ops):
                continue
            if {o.index for o in skip_ops} & {o.index for o in branch_ops}:
                continue
            if best is None or len(skip_ops) < len(best.skip_ops):
                best = ResidualBlock(add, x, skip, branch, tuple(branch_ops), tuple(skip_ops))
        return best

    @staticmethod
    def _is_shortcut(ops: list[OpRecord]) -> bool:
        weights = [o for o in ops if is_weight_layer(o)]
        return (len(weights) == 1 and len(ops) <= 6
                and all(is_weight_layer(o) or o.kind in _SHORTCUT_KINDS or o.func in _SHORTCUT_KINDS for o in ops))

    def branch_norms(self, block: ResidualBlock) -> list[OpRecord]:
        return [o for o in block.branch_ops if self.is_norm(o)]

    def skip_norms(self, block: ResidualBlock) -> list[OpRecord]:
        return [o for o in block.skip_ops if self.is_norm(o)]

    def last_weight_layer(self, block: ResidualBlock) -> Optional[OpRecord]:
        """The branch's last weight layer: what to zero-init so the block starts as the identity."""
        weights = [o for o in block.branch_ops if is_weight_layer(o)]
        return weights[-1] if weights else None

    def last_norm(self, block: ResidualBlock) -> Optional[OpRecord]:
        """A norm after the branch's last weight layer (ResNet's bn2/bn3), whose weight is the one to
        zero-init; None when the branch ends in a weight layer (pre-LN transformers)."""
        last = self.last_weight_layer(block)
        norms = [o for o in self.branch_norms(block) if last is None or o.index > last.index]
        return norms[-1] if norms else None

    def block_name(self, block: ResidualBlock) -> str:
        """The module that holds the block: the common prefix of its branch's modules (`layer1.0`)."""
        names = [o.module for o in block.branch_ops if o.module]
        if not names:
            return block.add.module
        parts = names[0].split(".")
        for name in names[1:]:
            other = name.split(".")
            n = 0
            while n < min(len(parts), len(other)) and parts[n] == other[n]:
                n += 1
            parts = parts[:n]
        prefix = ".".join(parts)
        add_module = block.add.module
        # The add runs in the block's own forward: prefer that module when it holds the branch.
        if add_module and (prefix == add_module or prefix.startswith(add_module + ".")):
            return add_module
        return prefix or add_module

    # ------------------------------------------------------------------ the stream
    def _stream_back(self, serial: int) -> Optional[ResidualBlock]:
        """The block whose output this stream value is, through activations, dropout and views; None
        when something else sits in between, a normalization included (post-LN restarts the stream)."""
        for _ in range(64):
            prod = self.graph.producer.get(serial)
            if prod is None or self.is_norm(prod):
                return None
            block = self.block_of_add.get(prod.index)
            if block is not None:
                return block
            nxt = self.main_input(prod)
            if not self._stream_transparent(prod) or nxt is None:
                return None
            serial = nxt
        return None

    def _stream_transparent(self, op: OpRecord) -> bool:
        k = op.kind
        single = len(self.tensor_inputs(op)) == 1
        return single and (k in opnames.ACTIVATIONS or k == "dropout" or k in opnames.PASSTHROUGH
                           or op.func in opnames.PASSTHROUGH)

    @cached_property
    def stream(self) -> list[StreamStep]:
        """Every block with its stream variances, linked to the block whose output it continues."""
        steps: dict[int, StreamStep] = {}
        for b in self.blocks:
            var_in = self._var(self.operand_summary(b.add, b.skip) if not b.projection else self.summary(b.source))
            var_branch = self._var(self.operand_summary(b.add, b.branch))
            var_out = self._var(b.add.out)
            if var_in is None or var_branch is None or var_out is None:
                continue
            step = StreamStep(b, var_in, var_branch, var_out)
            prev = self._stream_back(b.source)
            if prev is not None and prev.add.index in steps:
                step.previous = steps[prev.add.index]
                step.previous.successors.append(step)
            steps[b.add.index] = step
        return [steps[i] for i in sorted(steps)]

    @staticmethod
    def _var(s: Optional[TensorSummary]) -> Optional[float]:
        return None if s is None or s.nonfinite else s.var
