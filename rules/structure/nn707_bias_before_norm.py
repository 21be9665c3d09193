from __future__ import annotations

from typing import Optional

from nnlint.fix.kinds.drop_bias import DropBias, DropBiasParams
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import location_for
from nnlint.trace import vocab
from nnlint.trace.graph import Graph
from nnlint.trace.records import OpRecord, Trace

# Norms whose mean is taken per channel, over positions where a channel's bias is one constant:
# BatchNorm (over the batch and space), InstanceNorm (over space). GroupNorm with one channel per
# group is InstanceNorm.
_PER_CHANNEL = {"batch_norm", "instance_norm"}


class BiasBeforeNorm(Rule):
    """## What it does
    Finds a weight layer with a bias whose output goes straight (through views only, and nowhere
    else) into a normalization that subtracts a per-channel mean: BatchNorm, InstanceNorm, or a
    GroupNorm with one channel per group. The norm removes the bias exactly, in training (batch
    mean) and at eval (the running mean has it too): the bias is dead weight.

    LayerNorm and GroupNorm with several channels per group are not reported, by the arithmetic:
    they subtract the mean over the features (a group), so only the bias's mean over them cancels,
    and `LayerNorm(Wx + b)` is not `LayerNorm(Wx)` in general. RMSNorm removes no mean at all. A
    residual add between the layer and the norm (BERT's `LayerNorm(dense(x) + x)`) means the layer
    does not feed the norm directly. torchvision's convolutions before a BatchNorm already use
    `bias=False`; a default `nn.Conv2d(...)` or `nn.Linear(...)` before one is what this finds.

    ## Why is this bad?
    Parameters that cannot affect anything: memory, optimizer state and weight decay spent on them,
    and a model that reads as if the bias mattered. Info only.

    ## Options
    None.

    ## Fix safety
    Unsafe, though the model computes the same: `bias=False` removes a parameter, so a checkpoint
    saved before no longer loads strictly, and an optimizer built before the fix still holds the
    old tensor (rebuild it).
    """

    code = "NN707"
    name = "bias-before-norm"
    severity = "info"
    summary = "a weight layer's bias feeds a mean-removing norm (BatchNorm) that subtracts it away"
    reads = frozenset({"forward", "modules"})
    fixable = "unsafe"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU())   # conv bias: subtracted away
            batch = torch.randn(8, 3, 16, 16)
            """, module="0"),
        Healthy("""
            model = nn.Sequential(nn.Conv2d(3, 16, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU())
            batch = torch.randn(8, 3, 16, 16)
            """),
    )

    def check(self, trace: Trace):
        graph = Graph.of(trace)
        seen: set[str] = set()
        for op in graph.ops:
            if not vocab.is_weight_layer(op) or op.module in seen:
                continue
            bias = trace.params.get(f"{op.module}.bias") if op.module else None
            if bias is None or not bias.requires_grad or op.kind not in ("linear", "conv"):
                continue
            norm = _norm_fed(trace, graph, op, bias.shape[0])
            if norm is None:
                continue
            seen.add(op.module)
            rec = trace.modules.get(op.module)
            kind = rec.type if rec is not None else op.kind
            yield self.diagnostic(
                op.module,
                f"{op.module}'s bias ({bias.shape[0]} values) feeds {norm.module or norm.func} ({norm.module_type}), which "
                f"subtracts each channel's mean: the bias cancels exactly and never matters; build {op.module} with "
                f"bias=False",
                location=location_for(trace, op.module, op),
                evidence={"norm": norm.module, "norm_type": norm.module_type, "bias": bias.name},
                fix=DropBias.make(op.module, f"build {op.module} with bias=False", DropBiasParams(kind)),
            )


def _norm_fed(trace: Trace, graph: Graph, op: OpRecord, channels: int) -> Optional[OpRecord]:
    """The mean-removing norm that is the only thing the layer's output reaches, through views."""
    frontier = list(op.outputs)
    seen: set[int] = set()
    norm: Optional[OpRecord] = None
    while frontier:
        serial = frontier.pop()
        if serial in graph.output_serials:
            return None
        for c in graph.consumers.get(serial, ()):
            if c.index <= op.index or c.index in seen:
                continue
            seen.add(c.index)
            if vocab.is_passthrough(c) and len(graph.tensor_inputs(c)) == 1:
                frontier.extend(c.outputs)
            elif _removes_channel_mean(trace, c, channels) and norm in (None, c):
                norm = c
            else:
                return None
        if len(seen) > 32:
            return None
    return norm


def _removes_channel_mean(trace: Trace, op: OpRecord, channels: int) -> bool:
    """BatchNorm and InstanceNorm over the layer's channels (a BatchNorm1d over the sequence of an
    (N, L, F) Linear output normalizes something else), a GroupNorm with one channel per group."""
    rec = trace.modules.get(op.module)
    attrs = rec.attrs if rec is not None and vocab.is_norm_type(rec.type) else {}
    if op.kind in _PER_CHANNEL:
        return attrs.get("num_features", channels) == channels
    if op.kind == "group_norm":
        return attrs.get("num_channels") == channels and attrs.get("num_groups") == channels
    return False
