"""Structure read from a trace's lineage: who produced a tensor, who consumed it, what follows a layer.

Pure Python over OpRecords (no torch), shared by the rules, the fixer and the report so that "the
nonlinearity that follows this layer" or "does this activation feed a weight layer" means the same thing
everywhere. Every question that walks the graph goes through `walk`: breadth-first from an op, down its
consumers or up its producers, past the ops a `through` predicate accepts, at most `limit` ops.
What an op is (a weight layer, a norm, a view) is nnlint.trace.vocab's.
"""
from __future__ import annotations

import heapq
from collections import defaultdict, deque
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterator, Optional

from nnlint.trace import ops as opnames
from nnlint.trace import vocab
from nnlint.trace.records import OpRecord, Trace

# How many ops a walk visits at most: more than any path between two layers of a real model, few enough
# that a question about a 100,000-op trace stays cheap.
WALK_LIMIT = 4096

# Ops a signal passes through unchanged in kind: following a layer to "the next thing that matters"
# walks through these.
TRANSPARENT = opnames.PASSTHROUGH | {"dropout", "pool", "mean", "cat", "div", "sub"}

Predicate = Callable[[OpRecord], bool]


def _always(_: OpRecord) -> bool:
    return True


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
        self._ancestors: dict[tuple[int, int], frozenset[int]] = {}

    @cached_property
    def _position(self) -> dict[int, int]:
        """An op's place in `ops` by its index."""
        return {op.index: i for i, op in enumerate(self.ops)}

    @cached_property
    def _last_write(self) -> dict[int, int]:
        """The place in `ops` of the last op that outputs each serial (an in-place op writes its input's)."""
        return {s: i for i, op in enumerate(self.ops) for s in op.outputs}

    @classmethod
    def of(cls, trace: Trace, phase: str = "train") -> "Graph":
        """The graph of a trace, built once and shared by every rule that reads it."""
        cache = trace.__dict__.setdefault("_graphs", {})
        key = (phase, len(trace.ops))   # a trace whose ops changed gets a fresh graph
        if key not in cache:
            cache[key] = cls(trace, phase)
        return cache[key]

    # -- neighbours --
    def next_ops(self, op: OpRecord) -> list[OpRecord]:
        """The ops that consume this op's outputs, in execution order."""
        seen: dict[int, OpRecord] = {}
        for s in op.outputs:
            for c in self.consumers.get(s, ()):
                if c.index > op.index:
                    seen.setdefault(c.index, c)
        return [seen[i] for i in sorted(seen)]

    def producers(self, op: OpRecord) -> list[OpRecord]:
        """The ops that produced this op's tensor inputs (parameters excluded)."""
        return [self.producer[s] for s in op.inputs if s not in self.param_serials and s in self.producer]

    def tensor_inputs(self, op: OpRecord) -> list[int]:
        """The op's tensor operands, parameters excluded."""
        return [s for s in op.inputs if s not in self.param_serials]

    def is_model_output(self, op: OpRecord) -> bool:
        return any(s in self.output_serials for s in op.outputs)

    def is_binary_tensor_op(self, op: OpRecord) -> bool:
        return len(self.tensor_inputs(op)) >= 2

    # -- the walk --
    def walk(self, op: OpRecord, *, up: bool = False, through: Predicate = _always,
             limit: int = WALK_LIMIT) -> Iterator[OpRecord]:
        """Every op reached from `op` (not `op` itself), breadth-first, each once: down its consumers or,
        with `up`, up its producers; the walk goes on past an op only when `through(op)`."""
        step = self.producers if up else self.next_ops
        queue = deque(step(op))
        seen: set[int] = set()
        while queue and len(seen) < limit:
            nxt = queue.popleft()
            if nxt.index in seen:
                continue
            seen.add(nxt.index)
            yield nxt
            if through(nxt):
                queue.extend(step(nxt))

    def first(self, op: OpRecord, match: Predicate, *, up: bool = False, through: Predicate = _always,
              limit: int = WALK_LIMIT) -> Optional[OpRecord]:
        """The first op reached from `op` that `match`es, walking only past ops that `through` accepts."""
        return next((o for o in self.walk(op, up=up, through=lambda o: through(o) and not match(o), limit=limit)
                     if match(o)), None)

    def first_consumer(self, serial: int, through: Predicate) -> Optional[OpRecord]:
        """The first op (in execution order) that reads this tensor, looking past the ops `through` accepts."""
        found = []
        for consumer in self.consumers.get(serial, ()):
            found.append(consumer if not through(consumer) else self.first(consumer, lambda o: not through(o), through=through))
        found = [o for o in found if o is not None]
        return min(found, key=lambda o: o.index) if found else None

    def reaches(self, serial: int, match: Predicate, through: Predicate) -> bool:
        """A consumer of this tensor matches, or reaches a match walking only through `through` ops."""
        for consumer in self.consumers.get(serial, ()):
            if match(consumer) or (through(consumer) and self.first(consumer, match, through=through) is not None):
                return True
        return False

    # -- what follows a layer --
    def follower(self, op: OpRecord) -> Follower:
        """The first thing that matters downstream of `op`: skips views, dropout, pooling.

        A product of two tensors is a gate (a scaling by a constant is not); an add is reported as "add"
        (residual or bias) unless it adds a constant.
        """
        def matters(o: OpRecord) -> bool:
            return (o.kind in opnames.ACTIVATIONS or o.kind in opnames.NORM_OPS or vocab.multiplies(o)
                    or (o.kind in ("mul", "add") and self.is_binary_tensor_op(o))
                    or (self.is_model_output(o) and not self.next_ops(o)))

        if not self.next_ops(op):
            return Follower("output" if self.is_model_output(op) else "none", None)
        nxt = self.first(op, matters)
        if nxt is None:
            return Follower("output" if self.reaches_output(op) else "none", None)
        k = nxt.kind
        if k in opnames.ACTIVATIONS:
            return Follower("activation", nxt, k)
        if k in opnames.NORM_OPS:
            return Follower("norm", nxt)
        if vocab.multiplies(nxt):
            return Follower("weight", nxt)
        if k == "mul":
            return Follower("gate", nxt)
        if k == "add":
            return Follower("add", nxt)
        return Follower("output", nxt)

    def next_op(self, op: OpRecord) -> Optional[OpRecord]:
        """The first op after `op` that is not a view, a dropout or a pooling: what its output meets."""
        def trivial(o: OpRecord) -> bool:
            return vocab.is_passthrough(o) or o.kind in ("dropout", "pool")

        return self.first(op, lambda o: not trivial(o), through=trivial)

    def followed_by_norm(self, op: OpRecord) -> bool:
        """The op's output goes straight into a normalization (conv -> BatchNorm): its scale does not
        survive, and a layer before a norm is scale-invariant."""
        nxt = self.next_op(op)
        return nxt is not None and vocab.normalizes(nxt)

    def nonlinearity_after(self, op: OpRecord) -> tuple[str, Optional[float]]:
        """The nonlinearity a weight layer feeds ("relu", "tanh", "linear" ...) and, for a leaky one, the
        slope it has on this model (LeakyReLU's argument, PReLU's learned weight, RReLU's mean slope)."""
        f = self.follower(op)
        if f.kind == "norm" and f.op is not None:
            f = self.follower(f.op)   # a norm between the layer and its activation: the activation decides
        if f.kind == "activation" and f.activation and f.op is not None:
            return f.activation, self.activation_slope(f.op)
        return "linear", None

    def activation_slope(self, op: OpRecord) -> Optional[float]:
        if op.kind == "leaky_relu":
            return op.args.get("negative_slope")
        if op.kind == "prelu":
            weights = [self.trace.params[n] for n in map(self.param_serials.get, op.inputs) if n in self.trace.params]
            return weights[0].mean if weights else None
        if op.kind == "rrelu" and "lower" in op.args:
            return (op.args["lower"] + op.args["upper"]) / 2
        return None

    def feeds_weight_layer(self, op: OpRecord) -> Optional[OpRecord]:
        """For an activation: the first weight layer its output reaches as that layer's signal, without
        gating a product or being normalized to probabilities (a softmax): then the activation is a
        hidden-layer nonlinearity. None when it only gates or reaches the output. Scaling it by a constant,
        or combining it with itself (x * sigmoid(x)), keeps it the signal; the walk stops at a matmul of
        two activations (attention scores), which is no weight layer."""
        return self._first_layer_fed(op, weights_of_activations=False)

    def reaches_weight_layer(self, op: OpRecord) -> Optional[OpRecord]:
        """For a weight layer: the first weight layer its output reaches by any computation on its own
        output (an activation formula such as GPT-2's tanh GELU, attention among its own queries, keys
        and values, a softmax, norms, adds), short of multiplying another signal (a gate: its output
        modulates something else, as adaLN's projections do). None: it is a final layer or a gate."""
        return self._first_layer_fed(op, weights_of_activations=True)

    def _first_layer_fed(self, op: OpRecord, weights_of_activations: bool) -> Optional[OpRecord]:
        """Walk the consumers in execution order, tracking what is computed from `op`'s output alone; a
        product (mul, div, matmul) counts as carrying that output on only when each of its tensor operands
        is such a value (or a constant): otherwise it is a gate, and the walk stops there."""
        def layer(o: OpRecord) -> bool:
            return vocab.applies_weights(o) and o.kind != "opaque"

        derived: set[int] = set(op.outputs)
        heap = [(c.index, c) for c in self.next_ops(op)]
        heapq.heapify(heap)
        seen: set[int] = set()
        while heap and len(seen) < WALK_LIMIT:
            _, nxt = heapq.heappop(heap)
            if nxt.index in seen:
                continue
            seen.add(nxt.index)
            inputs = self.tensor_inputs(nxt)
            if inputs and not any(s in derived for s in inputs):
                continue          # reached through indices only (an MoE's expert routing): selects, carries nothing
            if layer(nxt):
                return nxt
            own = all(s in derived for s in inputs)
            if nxt.kind in ("mul", "div") and not own:
                continue          # a gate: this output modulates another signal
            if nxt.kind in opnames.WEIGHT_OPS and not (own and weights_of_activations):
                continue          # attention scores: for an activation, no layer; for a layer, its own attention
            if nxt.kind in ("softmax", "log_softmax") and not weights_of_activations:
                continue          # an activation normalized to probabilities is not a hidden signal
            derived.update(vocab.value_outputs(nxt))
            for c in self.next_ops(nxt):
                heapq.heappush(heap, (c.index, c))
        return None

    def feeding_weight_op(self, op: OpRecord) -> Optional[OpRecord]:
        """The weight layer whose output (through norms, views, bias adds) feeds this op; None when an
        activation comes first on the way back (the op then sits after a residual add of activations,
        where no single layer sets its input)."""
        def layer(o: OpRecord) -> bool:
            return (o.kind in opnames.WEIGHT_OPS and o.weight is not None) or o.kind in ("linear", "conv")

        def activation(o: OpRecord) -> bool:
            return o.kind in opnames.RELU_FAMILY or o.kind in opnames.SATURATING

        for o in self.walk(op, up=True, through=lambda o: not layer(o) and not activation(o), limit=32):
            if layer(o):
                return o
            if activation(o):
                return None
        return None

    def is_formula_gate(self, op: OpRecord) -> bool:
        """True for tanh/sigmoid inside an activation formula x * f(x) (GELU-tanh, Swish, Mish): the
        activation's output, possibly shifted/scaled, multiplies a tensor of the same shape that the
        activation's input was computed from. Only the few ops right after it are looked at."""
        shape = op.stats.get("in").shape if op.stats.get("in") is not None else None
        upstream: set[int] = set()
        for s in op.inputs:
            upstream |= self.ancestors(s, limit=64) | {s}
        downstream = self.descendant_serials(op, limit=64)

        def formula(o: OpRecord) -> bool:
            return o.kind in ("add", "sub", "div") or o.kind in opnames.PASSTHROUGH

        def from_the_input(s: int) -> bool:
            # the activation's input itself, or a scalar scaling of it (`0.5 * x * (1 + tanh(...))`, HF's
            # NewGELUActivation, multiplies by `0.5 * x`, computed beside the tanh's branch)
            for _ in range(4):
                if s in upstream:
                    return True
                prod = self.producer.get(s)
                operands = self.tensor_inputs(prod) if prod is not None else []
                if len(operands) != 1:
                    return False
                s = operands[0]
            return False

        for nxt in self.walk(op, through=formula, limit=8):
            if nxt.kind == "mul" and any(from_the_input(s) for s in nxt.inputs if s not in downstream):
                out = nxt.out
                return shape is None or out is None or tuple(out.shape) == tuple(shape)
        return False

    def is_gated_state(self, op: OpRecord) -> bool:
        """True for tanh/sigmoid whose output a sigmoid gate multiplies: the state or candidate of a
        hand-written GRU/LSTM, `h = (1 - z) * h + z * tanh(q)` (RAFT's ConvGRU, whose hidden state
        starts as `tanh(context)`). Bounded by design, as inside nn.GRU. Only the few ops right after
        it, and right before the gate's other operand, are looked at."""
        carried = set(op.outputs)     # the activation's value, through views (a gate computed from it counts)
        for nxt in self.walk(op, through=vocab.is_passthrough, limit=16):
            if vocab.is_passthrough(nxt):
                carried.update(nxt.outputs)
            if nxt.kind != "mul":
                continue
            for s in nxt.inputs:
                if s in carried or s in self.param_serials:
                    continue
                src = self.producer.get(s)
                for _ in range(3):    # through `1 - z` and views
                    if src is None or src.kind == "sigmoid":
                        break
                    if src.kind not in ("sub", "rsub", "add") and not vocab.is_passthrough(src):
                        src = None
                        break
                    ins = self.tensor_inputs(src)
                    src = self.producer.get(ins[0]) if len(ins) == 1 else None
                if src is not None and src.kind == "sigmoid" and src is not op:
                    return True
        return False

    # -- reach --
    def ancestors(self, serial: int, limit: int = 100000) -> frozenset[int]:
        """Serials this tensor was computed from (parameters excluded). Kept per serial: the residual
        structure asks it of every add's operands, twice or more (a 6-layer Llama: 186 walks of up to
        thousands of ops, 35 ms, before)."""
        key = (serial, limit)
        found = self._ancestors.get(key)
        if found is None:
            found = self._ancestors[key] = frozenset(self._walk_up(serial, limit))
        return found

    def _walk_up(self, serial: int, limit: int) -> set[int]:
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

    def reaches_output(self, op: OpRecord) -> bool:
        return any(s in self.output_serials for s in self.descendant_serials(op))

    def ops_between(self, start: int, end: int) -> list[OpRecord]:
        """Ops on some path from serial `start` to serial `end` (exclusive of start's producer)."""
        upstream = self.ancestors(end) | {end}
        if start not in upstream:
            return []
        reach: set[int] = {start}
        out: list[OpRecord] = []
        # Only the ops from the first that reads `start` to the last that writes a value upstream of
        # `end` can lie between them (ops are in execution order).
        readers = [self._position[op.index] for op in self.consumers.get(start, ())]
        writers = [self._last_write[s] for s in upstream if s in self._last_write]
        if not readers or not writers:
            return []
        for op in self.ops[min(readers):max(writers) + 1]:
            if any(i in reach for i in op.inputs) and any(o in upstream for o in op.outputs):
                out.append(op)
                reach.update(op.outputs)
        return out
