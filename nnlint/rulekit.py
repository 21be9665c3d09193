"""Small helpers the rules share: number formatting, locations, and the gain-correct re-init fix for a
layer (the init itself is nnlint.initmath's).

No torch here.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

from nnlint.diagnostics import Fix, Location
from nnlint.fix.kind import CallSite
from nnlint.fix.kinds.insert_norm import InsertNorm, InsertNormParams, NormAfter, norm_for
from nnlint.fix.kinds.normalize_input import NormalizeInput, NormalizeInputParams
from nnlint.fix.kinds.reinit import Reinit, ReinitParams
from nnlint.fix.kinds.swap_activation import SwapActivation, SwapActivationParams
from nnlint.fix.specs import LayerInit
from nnlint.initmath import correct_init, is_weight_matrix
from nnlint.trace import ops as opnames
from nnlint.trace import vocab
from nnlint.trace.graph import Graph
from nnlint.trace.records import OpRecord, Trace
from nnlint.trace.structure import Structure

def fmt(x: float, digits: int = 2) -> str:
    """A number as a person reads it: 0.036, 0.5, 1.3e-05, 2.4e+03."""
    if x != x:
        return "nan"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1e4 or a < 1e-3:
        return f"{x:.{max(digits - 1, 1)}e}"
    return f"{x:.{digits}g}" if a < 1 else f"{x:.{digits + (1 if a >= 10 else 0) + (1 if a >= 100 else 0) + (1 if a >= 1000 else 0)}g}"


def pct(f: float) -> str:
    return f"{100 * f:.0f}%"





def reinit_fix(trace: Trace, module: str, nonlinearity: str, slope: Optional[float] = None, *, why: str = "",
               param: str = "weight", bias: Optional[float] = None) -> Fix:
    """Re-initialize `module.param` with the gain-correct init for the nonlinearity that follows it."""
    params = ReinitParams(spec=correct_init(nonlinearity, slope), param=param, bias=bias)
    return Reinit.make(module, f"re-initialize {module}.{param}: {params.call(module)}" + (f" ({why})" if why else ""),
                       params)


def measured_gain(trace: Trace, op: OpRecord) -> Optional[tuple[float, float]]:
    """A weight layer's measured (std(W x) / rms(x), rms(x)), with the bias's share of the output variance
    taken out: what it does to the signal, as NN103 judges it and the output hold predicts from."""
    inp, out = op.stats.get("in"), op.stats.get("out")
    if inp is None or out is None or inp.nonfinite or out.nonfinite:
        return None
    rms_in = math.sqrt(inp.std ** 2 + inp.mean ** 2)
    if not rms_in > 1e-12:
        return None
    bias_var = 0.0
    for s in op.inputs:
        name = trace.param_serials.get(s)
        if name is not None and name != op.weight:
            b = trace.params.get(name)
            if b is not None and len(b.shape) == 1:
                bias_var += b.std ** 2
    return math.sqrt(max(out.std ** 2 - bias_var, 0.0)) / rms_in, rms_in


def is_functional(trace: Trace, op: OpRecord) -> bool:
    """True when the op was called functionally (torch.sigmoid(x) in a forward), not by its own
    torch.nn module (nn.Sigmoid)."""
    rec = trace.modules.get(op.module)
    return rec is None or not (rec.is_torch_builtin and rec.is_leaf)


# The slope of the LeakyReLU a swap puts in where a ReLU's units would die: they still pass a tenth of
# the gradient.
LEAKY_SLOPE = 0.1
# Layers narrower than this get a LeakyReLU, not a ReLU, when their activation is swapped: with a few
# units a ReLU layer easily has most of them dead on the whole batch at init (measured: an 11-layer,
# 5-wide sigmoid stack swapped to ReLU with Kaiming init has NN203 errors in 6 of its 11 layers; at
# LeakyReLU(0.1), none), and a narrow deep ReLU net can be born dead (Lu et al. 2019, Dying ReLU and
# Initialization).
NARROW_WIDTH = 16


def swap_fix(trace: Trace, graph: Graph, op: OpRecord, to: Optional[str] = None) -> Fix:
    """Swap an activation call site for `to` ("relu", or "leaky_relu" with LEAKY_SLOPE; None: ReLU, or a
    LeakyReLU where a layer that feeds the site is narrow), with the re-init the new activation needs
    for every layer that feeds that site (a call in a loop, `for fc in self.hidden: x =
    torch.sigmoid(fc(x))`, is fed by each of them)."""
    site = call_site(trace, op)
    same_site = [o for o in graph.ops if o.kind == op.kind and o.module == op.module
                 and (o.location == op.location if site.functional else True)]
    feeding = [trace.params[f.weight] for f in (graph.feeding_weight_op(o) for o in same_site)
               if f is not None and f.weight in trace.params]
    if to is None:
        to = "leaky_relu" if any(0 < _width(trace, p.module) < NARROW_WIDTH for p in feeding) else "relu"
    slope = LEAKY_SLOPE if to == "leaky_relu" else None
    reinits = {p.name: LayerInit(p.module, correct_init(to, slope), p.attr) for p in feeding}
    shown = "ReLU" if to == "relu" else f"LeakyReLU({slope:g})" if to == "leaky_relu" else to
    init = correct_init(to, slope).family
    return SwapActivation.make(
        op.module, f"replace {op.kind} with {shown} and re-initialize the layer before it with {init}",
        SwapActivationParams(source=op.kind, site=site, to=to, negative_slope=slope, reinit=tuple(reinits.values())))


def swap_ladder(trace: Trace, graph: Graph, op: OpRecord) -> list[Fix]:
    """The swap, then (where it was a ReLU and its units still die) a LeakyReLU: the activation steps of
    an escalation ladder."""
    first = swap_fix(trace, graph, op)
    return [first] + ([swap_fix(trace, graph, op, "leaky_relu")] if first.params.to == "relu" else [])


def _width(trace: Trace, module: str) -> int:
    """A weight layer's output units (features, channels); 0 when unknown."""
    rec = trace.modules.get(module)
    attrs = rec.attrs if rec is not None else {}
    return int(attrs.get("out_features") or attrs.get("out_channels") or 0)


def insert_norm_fix(trace: Trace, layers: Iterable[str], why: str) -> Optional[Fix]:
    """A normalization after each of these weight layers (LayerNorm after a Linear, BatchNormNd after a
    ConvNd): the last step of a deep un-normalized chain's ladder. None when one of them is a layer no
    norm suits (a weight-matmul, a transposed conv), or when there are fewer than two: one norm does not
    make a chain trainable that re-inits could not."""
    out: list[NormAfter] = []
    for module in dict.fromkeys(layers):
        rec = trace.modules.get(module)
        norm = norm_for(rec.type, rec.attrs) if rec is not None and module else None
        if norm is None:
            return None
        out.append(NormAfter(module, *norm))
    if len(out) < 2:
        return None
    shown = ", ".join(f"{n.target} ({n.norm})" for n in out[:4]) + (f" and {len(out) - 4} more" if len(out) > 4 else "")
    return InsertNorm.make(out[0].target, f"put a normalization after each layer of the chain: {shown} ({why})",
                           InsertNormParams(tuple(out)))


def call_site(trace: Trace, op: OpRecord) -> CallSite:
    """Where an op was called, for a fix that rewrites that call (or swaps the module that made it)."""
    loc = op.location
    return CallSite(loc.file if loc else None, loc.line if loc else None, op.func, is_functional(trace, op))


def location_for(trace: Trace, module: str, op: Optional[OpRecord] = None):
    """Where a finding points: the line that built the module; for a functional op, its call line."""
    if op is not None and is_functional(trace, op) and op.location is not None:
        return op.location
    loc = trace.location_of(module)
    return loc if loc is not None else (op.location if op is not None else None)


def describe_op(trace: Trace, op: OpRecord) -> str:
    """`tanh` for a module, `torch.tanh in block.forward` for a functional call."""
    if is_functional(trace, op):
        where = f" in {op.module}.forward" if op.module else " in forward"
        return f"{op.func}(){where}"
    return op.kind


def ops_using(graph: Graph, param: str) -> list[OpRecord]:
    """The weight layers that read this parameter as their weight (the tracer keeps row statistics for
    those parameters only)."""
    return [o for o in graph.ops if o.weight == param]


def layers_weighted_by(graph: Graph, param: str) -> list[OpRecord]:
    """The weight layers whose weight this parameter is: as itself, else as a source of a weight
    computed in forward (benchmarks/TRIAGE.md, X4). For what a parameter's own values say (all zero)."""
    direct = ops_using(graph, param)
    p = graph.trace.params.get(param)
    if direct or p is None or not is_weight_matrix(p.shape):
        return direct      # a gain stored as (C, 1, 1, 1) scales the computed weight, it is not it
    return [o for o in graph.ops if param in computed_weight_sources(graph, o)]


def computed_weight_sources(graph: Graph, op: OpRecord) -> set[str]:
    """The parameters a linear/conv's weight operand is computed from, when it is computed from
    parameters alone: timm's StdConv/ScaledStdConv standardize `self.weight` with F.batch_norm in
    forward, a weight_norm or spectral_norm parametrization rescales it. Their values are what the
    parameters make them: an all-zero or a constant weight standardizes to an all-zero one. Empty for
    a layer that reads a parameter directly, or a weight computed from the batch (a hypernetwork)."""
    if op.kind not in ("linear", "conv") or len(op.inputs) < 2 or op.inputs[1] in graph.param_serials:
        return set()   # no weight operand, or a parameter itself (op.weight may name the bias then)
    inputs = set(graph.trace.input_serials)
    sources, queue, seen = set(), [op.inputs[1]], set()
    while queue and len(seen) < 256:
        s = queue.pop()
        if s in seen:
            continue
        seen.add(s)
        if s in inputs:
            return set()
        producer = graph.producer.get(s)
        if s in graph.param_serials:
            sources.add(graph.param_serials[s])
        elif producer is not None:
            queue.extend(producer.inputs)
    return sources if not queue else set()


def is_all_off_activation(op: OpRecord) -> bool:
    """A ReLU-family call where no unit fired at all on the batch, or a tanh/sigmoid whose every unit
    sat below its flat region (a written-out GELU's gate shut everywhere): nothing passes it, forward
    or back."""
    active = op.stats.get("unit_active")
    return op.kind in opnames.OPEN_ABOVE and bool(active) and max(active) == 0.0


def is_intentional_zero_layer(graph: Graph, op: OpRecord) -> bool:
    """Zero-init is a known good practice for: the last layer of a residual branch (each block starts
    as the identity), the model's final layer (no weight layer downstream), and gate/modulation
    projections (their output multiplies). A branch may end in a norm, or in an activation whose every
    unit is open on the batch (a zero layer outputs its bias there: a ReLU branch given a small positive
    bias, as NN403's fix does; with a unit shut, the layer is dead for good and not intentional)."""
    if graph.reaches_weight_layer(op) is None:
        return True
    current = op
    for _ in range(4):
        f = graph.follower(current)
        if f.kind == "gate":
            return True
        if f.kind == "add" and f.op is not None:
            block = Structure.of(graph.trace).block_of_add.get(f.op.index)
            return block is not None and block.branch in graph.descendant_serials(op) | set(op.outputs)
        if f.kind == "norm" and f.op is not None:
            current = f.op
            continue
        if f.kind == "activation" and f.op is not None and is_every_unit_open(f.op):
            current = f.op
            continue
        return False
    return False


def is_every_unit_open(op: OpRecord) -> bool:
    """A ReLU-family, tanh or sigmoid call where every unit passed signal somewhere on the batch (its
    `unit_active` count); True for an activation with no closed region (softsign, hardtanh)."""
    if op.kind not in opnames.OPEN_ABOVE:
        return True
    active = op.stats.get("unit_active")
    return bool(active) and min(active) > 0.0


def normalize_call(mean: list[float], std: list[float]) -> str:
    """`Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))` from measured channels."""
    def seq(v):
        vals = ", ".join(f"{x:.4g}" for x in v[:8]) + (", ..." if len(v) > 8 else "")
        return f"({vals},)" if len(v) == 1 else f"({vals})"

    if len(mean) == 1:
        return f"Normalize({mean[0]:.4g}, {std[0]:.4g})"
    if len(mean) > 8:
        # 784 numbers help nobody: name the shape of the fix and its typical values.
        return (f"a per-feature Normalize over {len(mean)} features (means {fmt(min(mean))} to {fmt(max(mean))}, "
                f"stds {fmt(min(std))} to {fmt(max(std))})")
    return f"Normalize(mean={seq(mean)}, std={seq(std)})"


def normalize_input_fix(rec) -> Fix:
    """Normalize an input record's channels with the statistics measured on the batch."""
    means, stds = rec.channel_mean, rec.channel_std
    return NormalizeInput.make(
        "", f"normalize {rec.path} with the statistics measured on the batch: {normalize_call(means, stds)}",
        NormalizeInputParams(rec.path, rec.channel_dim, tuple(means), tuple(s if s > 0 else 1.0 for s in stds)))


def input_location(trace: Trace):
    return trace.target_info.get("batch_location")


def as_location(value) -> Optional[Location]:
    """A Location from what a loader may have stored: a Location, a (file, line) pair or a dict."""
    if value is None or isinstance(value, Location):
        return value
    if isinstance(value, dict) and "file" in value and "line" in value:
        return Location(str(value["file"]), int(value["line"]))
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return Location(str(value[0]), int(value[1]))
    return None


def active_dropouts(graph: Graph) -> list[OpRecord]:
    """Dropout calls that really drop in the training pass (p > 0, training=True): `p=0` and
    `training=False` are no-ops, not regularization."""
    return [o for o in graph.ops if o.kind == "dropout" and o.args.get("training", True)
            and o.args.get("p", 0.0) > 0.0]


def describe_dropout(trace: Trace, op: OpRecord) -> str:
    """`nn.Dropout(p=0.5)` for a module, `F.dropout(p=0.1) in block.forward` for a functional call."""
    p = op.args.get("p")
    if is_functional(trace, op):
        return f"F.{op.func}(p={p}) in {op.module or trace.model_type}.forward"
    return f"nn.{op.module_type}(p={p})"


def once_per_site(ops):
    """Each call site once: a module run several times (one shared nn.Dropout) is one finding."""
    seen: set[tuple] = set()
    for op in ops:
        key = (op.module, op.func, op.location)
        if key not in seen:
            seen.add(key)
            yield op


# What an input's values pass through on their way to a weight layer that reads them as a signal:
# element-wise ops, views, norms, pooling, dropout, concatenation. Not a matmul without a weight (a
# graph's adjacency multiplying features is an operator, not a signal), not indexing into other tensors,
# comparisons or a loss (detection boxes go to the box coder and the matcher).
SIGNAL_CARRIERS = (opnames.PASSTHROUGH | opnames.ACTIVATIONS | opnames.NORM_OPS
                   | {"add", "sub", "mul", "div", "pow", "exp", "log", "sqrt", "rsqrt", "dropout", "pool", "mean", "cat"})


def judged_input(trace: Trace, rec) -> bool:
    """Whether an input's own statistics (its centering and scale) matter to the model, so that the
    input rules judge it: a floating input that a weight layer reads as a signal, that the model does
    not normalize itself first, and whose first layers are not followed by a per-sample, per-channel
    normalization (InstanceNorm makes the output invariant to the input's offset and scale: a style
    transfer network's output moves by 3e-6 of its std when the input is shifted)."""
    if not rec.is_float or rec.summary.nonfinite or input_normalized_by_model(trace, rec):
        return False
    graph = Graph.of(trace)
    carried = lambda o: o.kind in SIGNAL_CARRIERS or vocab.is_passthrough(o)   # noqa: E731
    if not graph.reaches(rec.serial, vocab.is_weight_layer, through=carried):
        return False
    return not _first_layers_feed(graph, rec, lambda o: o.kind == "instance_norm")


def input_scale_absorbed(trace: Trace, rec) -> bool:
    """True when every weight layer that reads the input first feeds a per-sample normalization
    (LayerNorm, GroupNorm, RMSNorm, InstanceNorm; ConvNeXt's and PoolFormer's stems). Then
    `norm(W (s x) + b) = norm(W x + b / s)`: the output and W's gradients do not depend on the input's
    overall scale, only the stem bias's relative weight does (timm's is zero at init). Measured in
    benchmarks/TRIAGE.md (X6): x255 moves ConvNeXt-atto's head input by 2.7e-7 of its norm. A
    BatchNorm does not count: at eval, until its running statistics catch up, it does not absorb the
    scale. The offset is not absorbed either (W c differs per channel), so NN301 still judges it."""
    return _first_layers_feed(Graph.of(trace), rec, vocab.is_per_sample_norm)


def _first_layers_feed(graph: Graph, rec, accepts) -> bool:
    """Whether every weight layer that reads the input with no weight layer before it feeds, through
    views only, nothing but ops `accepts` takes (a kind of normalization)."""
    firsts = []
    for consumer in graph.consumers.get(rec.serial, ()):
        reached = [consumer] if vocab.is_weight_layer(consumer) else \
            graph.walk(consumer, through=lambda o: not vocab.is_weight_layer(o))
        firsts += [o for o in reached if vocab.is_weight_layer(o)]
    if not firsts:
        return False
    for op in firsts:
        # every reader, not the first one: MLP-Mixer's stem feeds a pre-norm and the residual stream
        readers = [o for o in graph.walk(op, through=vocab.is_passthrough) if not vocab.is_passthrough(o)]
        if not readers or not all(accepts(o) for o in readers):
            return False
    return True


def input_normalized_by_model(trace: Trace, rec) -> bool:
    """True when the model normalizes this input itself before anything else reads it: every consumer
    (through views and dtype casts) is `x - mean` followed by `/ std`, `* (1 / std)` or a whitening
    `@ W`, or a
    normalization layer (an input BatchNorm). Then the first layer sees a normalized signal, whatever
    the raw batch looks like (torchvision's Inception with transform_input, nnlint fix's input
    normalization)."""
    graph = Graph.of(trace)

    def normalized(serial: int, depth: int = 0) -> bool:
        consumers = graph.consumers.get(serial, [])
        if not consumers or depth > 3:
            return False
        for op in consumers:
            if op.kind in opnames.NORM_OPS:
                continue
            if op.kind == "sub" and op.inputs[:1] == [serial] and any(n.kind in ("div", "mul", "matmul") for n in graph.next_ops(op)):
                continue
            if op.kind in opnames.PASSTHROUGH and all(normalized(s, depth + 1) for s in op.outputs):
                continue
            return False
        return True

    return normalized(rec.serial)
