from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Optional

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import location_for
from nnlint.trace import ops as opnames
from nnlint.trace import vocab
from nnlint.trace.graph import Graph
from nnlint.trace.records import OpRecord, Trace

# How many ops the walk from one layer visits before it gives up (a collapse is a few views away).
_WALK = 64
# Ops that are affine in their one input: views and copies, dropout, pooling (the catalog counts no
# pooling as a nonlinearity), sums and means. Sums, products and concatenations with other tensors
# are judged by those tensors (_Source).
_AFFINE = opnames.PASSTHROUGH | {"dropout", "pool", "mean", "sum", "neg"}


@dataclass(frozen=True)
class Collapse:
    first: OpRecord
    second: OpRecord
    between: tuple[str, ...]     # the kinds of the ops between them, in order
    through_norm: bool


class CollapsedLinear(Rule):
    """## What it does
    Finds two weight layers (Linear, Conv, a matmul with a parameter) where the second's input is an
    affine function of the first's output alone: nothing but views, dropout, pooling, sums, a
    normalization, adding or multiplying by something that does not depend on the first layer (a
    bias, a residual of the layer's own input, a mask, a layer scale) sits between them, and the
    first layer's output goes nowhere else. Then `W2 (W1 x + b1) + b2` is one linear map: the pair has
    the capacity of a single layer.

    A norm, a residual add, pooling or a gate by an independent tensor do not make the map
    nonlinear (a norm only rescales each sample); a product of two tensors that both depend on the
    first layer does (GLU, SwiGLU, an SE gate computed from the same features).

    Not reported:
    - attention: q/k/v projections reach the output projection through a product with the attention
      weights, which is left alone here (each projection is linear in its own input by design);
    - low-rank factorizations: the inner width no larger than the input's and the output's and
      smaller than one of them (a bottleneck `Linear(512, 32) -> Linear(32, 512)`, LoRA, MobileNet's
      linear bottleneck into the next block's expansion: torchvision's MobileNetV3-Small projects 16
      channels to 16, then expands them to 72, with only a BatchNorm between), and depthwise-separable
      convolutions (a depthwise conv next to a pointwise one);
    - the final projection after a norm (the last block's output, its final LayerNorm, the head);
    - a layer whose output is also a model output or feeds anything else (a residual stream).

    ## Why is this bad?
    The extra layer adds parameters and compute but no expressive power, and it changes the
    optimization (the product of two matrices trains differently from one): usually an activation
    was forgotten between them.

    ## Options
    None.

    ## Fix safety
    No automatic fix: put an activation between them (`nn.ReLU()`), or merge them into one layer.
    """

    code = "NN704"
    name = "collapsed-linear"
    severity = "warning"
    summary = "two weight layers with no nonlinearity between them: together one linear map"
    reads = frozenset({"forward"})

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.Linear(64, 10))   # the ReLU between them is missing
            batch = torch.randn(64, 32)
            """, module="0"),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            nn.init.kaiming_normal_(model[0].weight, nonlinearity="relu")
            batch = torch.randn(64, 32)
            """),
    )

    def check(self, trace: Trace):
        graph = Graph.of(trace)
        seen: set[tuple[str, str]] = set()
        for op in graph.ops:
            if not vocab.is_weight_layer(op):
                continue
            found = collapse_after(graph, op)
            if found is None or _exempt(trace, graph, found):
                continue
            key = (found.first.module, found.second.module)
            if key in seen:
                continue
            seen.add(key)
            a, b = _name(found.first), _name(found.second)
            between = f"only {', '.join(dict.fromkeys(found.between))} between them" if found.between else "one feeds the other"
            yield self.diagnostic(
                found.first.module,
                f"{a} -> {b}: no nonlinearity ({between}), so together they are one linear map "
                f"({_shape(trace, found.first)} then {_shape(trace, found.second)}); put an activation between them "
                f"(nn.ReLU()), or merge them into one layer",
                location=location_for(trace, found.first.module, found.first),
                evidence={"first": found.first.module, "second": found.second.module, "between": list(found.between)},
            )


def collapse_after(graph: Graph, first: OpRecord) -> Optional[Collapse]:
    """The one weight layer whose input is an affine function of `first`'s input alone; None when a
    nonlinearity, another consumer, the model's output, attention, or another signal comes first."""
    reach: set[int] = set(first.outputs)
    queue: list[tuple[int, OpRecord]] = []
    queued: set[int] = set()
    inputs = graph.tensor_inputs(first)
    source = _Source(graph, inputs[0] if inputs else None)

    def push(serials) -> None:
        for s in serials:
            for c in graph.consumers.get(s, ()):
                if c.index > first.index and c.index not in queued:
                    queued.add(c.index)
                    heapq.heappush(queue, (c.index, c))

    if graph.is_model_output(first):
        return None
    push(first.outputs)
    between: list[str] = []
    through_norm = False
    second: Optional[OpRecord] = None
    for _ in range(_WALK):
        if not queue:
            break
        _, op = heapq.heappop(queue)
        if vocab.is_weight_layer(op) and graph.tensor_inputs(op)[:1] and graph.tensor_inputs(op)[0] in reach:
            if second is not None:
                return None              # it feeds two layers: they cannot be merged into one
            second = op
            continue
        norm = _is_norm(graph.trace, op)
        if not norm and not _affine_in(graph, op, reach, source):
            return None
        through_norm = through_norm or norm
        if not (norm and between and between[-1] == "norm"):
            between.append("norm" if norm else op.kind)
        reach.update(op.outputs)
        if graph.is_model_output(op):
            return None
        push(op.outputs)
    else:
        return None
    if second is None:
        return None
    return Collapse(first, second, tuple(between), through_norm)


class _Source:
    """What the other operands of an op on the way may be: for a sum, the first layer's own input (a
    residual `x + W x` is still affine in x) or a constant (a position embedding, a bias); for a
    product, anything that does not depend on that input (a mask, a layer scale). A gate computed
    from the same input (GLU, SwiGLU) or a skip carrying another signal (MobileNet's linear
    bottleneck adds the block's input) makes the second layer's input more than an affine map of it."""

    def __init__(self, graph: Graph, serial: Optional[int]):
        self.graph, self.serial = graph, serial
        self.data = set(graph.trace.input_serials)

    def _upstream(self, s: int) -> set[int]:
        return self.graph.ancestors(s, limit=4096) | {s}

    def is_input(self, s: int) -> bool:
        """The first layer's input itself, through views."""
        for _ in range(16):
            if s == self.serial:
                return True
            prod = self.graph.producer.get(s)
            if prod is None or not vocab.is_passthrough(prod) or len(self.graph.tensor_inputs(prod)) != 1:
                return False
            s = self.graph.tensor_inputs(prod)[0]
        return False

    def constant(self, s: int) -> bool:
        return not (self._upstream(s) & self.data)

    def independent(self, s: int) -> bool:
        return self.serial is None or self.serial not in self._upstream(s)


def _affine_in(graph: Graph, op: OpRecord, reach: set[int], source: _Source) -> bool:
    """Whether the op's output is an affine function of the first layer's input."""
    tensors = graph.tensor_inputs(op)
    others = [s for s in tensors if s not in reach]
    if op.kind in _AFFINE or op.func in _AFFINE:
        return True
    if op.kind in ("add", "sub", "cat"):
        return all(source.is_input(s) or source.constant(s) for s in others)
    if op.kind == "mul":
        return len(others) == len(tensors) - 1 and all(source.independent(s) for s in others)
    if op.kind == "div":
        return (len(tensors) < 2 or tensors[1] not in reach) and all(source.independent(s) for s in others)
    return False


def _is_norm(trace: Trace, op: OpRecord) -> bool:
    """A norm op, or an op of a hand-written norm module (RMSNorm's pow/mean/rsqrt/mul): the catalog
    counts no norm as a nonlinearity, it only rescales each sample. The module must be a leaf: a
    model class named `BatchNormMLP` is no norm, though its name says Norm."""
    if op.kind in opnames.NORM_OPS:
        return True
    rec = trace.modules.get(op.module)
    return vocab.is_norm(op) and rec is not None and rec.is_leaf and bool(op.module)


def _exempt(trace: Trace, graph: Graph, found: Collapse) -> bool:
    first, second = _widths(trace, found.first), _widths(trace, found.second)
    if first is not None and second is not None:
        in1, inner, _ = first
        _, _, out2 = second
        if inner <= min(in1, out2) and inner < max(in1, out2):
            return True               # a factorization: a bottleneck no wider than either side
    if _depthwise(trace, found.first) or _depthwise(trace, found.second):
        return True                   # a depthwise-separable convolution
    if found.through_norm and graph.feeds_weight_layer(found.second) is None:
        return True                   # the final projection after a norm
    return False


def _widths(trace: Trace, op: OpRecord) -> Optional[tuple[int, int, int]]:
    """(input width, output width, output width) of a weight layer, from its weight's shape."""
    p = trace.params.get(op.weight) if op.weight else None
    if p is None or len(p.shape) < 2:
        return None
    if op.kind == "matmul" and len(p.shape) == 2:
        # x @ W: W is (in, out); F.linear and nn.Linear keep (out, in)
        return p.shape[0], p.shape[1], p.shape[1]
    groups = trace.modules.get(p.module).attrs.get("groups", 1) if trace.modules.get(p.module) else 1
    return p.shape[1] * (groups or 1), p.shape[0], p.shape[0]


def _depthwise(trace: Trace, op: OpRecord) -> bool:
    rec = trace.modules.get(op.module)
    if rec is None or op.kind != "conv":
        return False
    groups = rec.attrs.get("groups", 1) or 1
    return groups > 1 and groups == rec.attrs.get("in_channels")


def _name(op: OpRecord) -> str:
    return op.module or f"{op.func}()"


def _shape(trace: Trace, op: OpRecord) -> str:
    """`Linear(32 -> 64)`, `Conv2d(16 -> 72)`."""
    widths = _widths(trace, op)
    kind = op.module_type if op.module and vocab.is_weight_layer(op) else op.func
    return f"{kind}({widths[0]} -> {widths[1]})" if widths is not None else kind
