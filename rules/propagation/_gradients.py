"""What NN404 and NN405 share: each weight layer's relative gradient, in execution order.

Not a rule (no Rule subclass here): a helper the gradient-ratio rules import.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional

from nnlint.rulekit import fmt
from nnlint.trace.vocab import applies_weights, is_norm, is_passthrough, is_weight_layer
from nnlint.trace.graph import Graph
from nnlint.trace.records import OpRecord, Trace


@dataclass
class LayerGradient:
    """One weight layer: its relative gradient ‖grad‖/‖W‖, the measure of how fast SGD moves it."""

    op: OpRecord            # its first use in the training pass
    param: str
    grad_norm: float
    weight_norm: float
    siblings: list[str]     # other weight layers reading the same input (q/k/v, SwiGLU gate/up)

    @property
    def module(self) -> str:
        return self.op.module

    @property
    def relative(self) -> float:
        return self.grad_norm / self.weight_norm


def weight_layers(trace: Trace) -> list["LayerGradient"]:
    """Trainable Linear/Conv/weight-matmul layers that received a finite gradient, in execution order.

    Excluded: embeddings (a lookup: only the rows in the batch get a gradient, so its relative
    gradient says nothing about depth), frozen and tied weights, and weights of norm 0 (a zero-init
    layer has no relative gradient; NN101 judges it).
    """
    embedding = {o.weight for o in trace.ops_in("train") if o.kind == "embedding" and o.weight}
    out: list[LayerGradient] = []
    seen: set[str] = set()
    for op in trace.ops_in("train"):
        if not is_weight_layer(op) or op.weight in seen:
            continue
        seen.add(op.weight)
        p = trace.params.get(op.weight)
        if p is None or op.weight in embedding or not p.requires_grad or p.tied_to or p.grad_norm is None:
            continue
        if not (p.norm > 0 and math.isfinite(p.norm) and math.isfinite(p.grad_norm)):
            continue
        out.append(LayerGradient(op, op.weight, p.grad_norm, p.norm, []))
    return out


def parallel_groups(layers: list[LayerGradient], param_serials: dict[int, str]) -> list[LayerGradient]:
    """One representative per set of layers that read the same input tensor: the best-fed of them.

    Parallel projections are one layer for the question "does the gradient reach this depth": at init
    an attention's query and key get ~50x less gradient than its value (the softmax is near uniform;
    measured on Hugging Face BERT-base and bert-tiny), which is not depth at all.
    """
    by_input: dict[int, list[LayerGradient]] = {}
    order: list[int] = []
    for layer in layers:
        key = _data_input(layer.op, param_serials)
        if key not in by_input:
            by_input[key] = []
            order.append(key)
        by_input[key].append(layer)
    reps = []
    for key in order:
        group = by_input[key]
        best = max(group, key=lambda g: g.relative)
        best.siblings = [g.param for g in group if g is not best]
        reps.append(best)
    return reps


def _data_input(op: OpRecord, param_serials: dict[int, str]) -> int:
    """x in F.linear(x, w, b) or torch.addmm(b, x, w): the first input that is not a parameter."""
    return next((s for s in op.inputs if s not in param_serials), -1 - op.index)


@dataclass
class GradientRatio:
    first: LayerGradient
    last: LayerGradient

    @property
    def ratio(self) -> float:
        return self.first.relative / self.last.relative


def earliest_vs_last(trace: Trace) -> Optional[GradientRatio]:
    """The earliest layer's relative gradient against the best-fed later hidden layer's; None when that
    is not defined (no backward, no hidden layer after the earliest, or an exactly-zero gradient at
    either end: NN406's).

    The reference is the largest relative gradient among the later layers whose output still feeds a
    weight layer, not simply the last layer, because single layers carry intentional scale choices:
    - an output layer's relative gradient is set by its own init (a 0.02, 0.01 or zero-init head makes
      it huge, on purpose): against it, Hugging Face bert-tiny's encoder looks starved (8e-5);
    - the last hidden layer often sits in a residual branch scaled down on purpose (ConvNeXt's layer
      scale 1e-6, zero_init_residual, Fixup) and gets almost no gradient at init (2e-7 in ConvNeXt).
    - a layer followed by a normalization (straight, or through its activation) is scale-invariant:
      its relative gradient grows as 1/||W||^2, set by its own init (Hugging Face ModernBERT's MLM
      head transform, dense -> GELU -> LayerNorm at a small init: 47, against encoder layers at
      0.002-0.11), so it is no reference either.
    Vanishing means the earliest layer gets far less than the layers after it do; exploding, far more
    than any of them.
    """
    if not trace.backward_ran:
        return None
    groups = parallel_groups(weight_layers(trace), trace.param_serials)
    if len(groups) < 2:
        return None
    graph = Graph.of(trace)
    first = groups[0]
    hidden = [g for g in groups[1:] if _feeds_weight_layer(graph, g.op) and not before_norm(graph, g.op)]
    if not hidden:
        return None
    reference = max(hidden, key=lambda g: g.relative)
    if first.relative == 0 or reference.relative == 0:
        return None
    return GradientRatio(first, reference)


def before_norm(graph: Graph, op: OpRecord) -> bool:
    """The layer's output meets a normalization before anything else that weighs it: straight, or
    through its activation (ModernBERT's head: dense -> GELU -> LayerNorm). Such a layer is
    scale-invariant, so its relative gradient is set by its own init."""
    f, start = graph.follower(op), op
    if f.kind == "activation" and f.op is not None:
        start, f = f.op, graph.follower(f.op)
    if f.kind != "norm":
        return False
    # Only when nothing else reads it: a layer on a pre-norm residual stream (PoolFormer's and
    # ConvNeXt's downsampling convs feed the next block's norm and its skip) keeps its scale there.
    return all(is_norm(o) for o in graph.walk(start, through=is_passthrough) if not is_passthrough(o))


def _feeds_weight_layer(graph: Graph, op: OpRecord) -> bool:
    """Does anything downstream of this layer use a weight (through activations, norms, adds, gates)?"""
    return graph.first(op, applies_weights) is not None


def surrogate_note(trace: Trace) -> str:
    if trace.loss_is_surrogate:
        return (" (measured with nnlint's surrogate loss, as no loss_fn was given: the sizes are relative "
                "to each other, not absolute)")
    return ""


def describe(r: GradientRatio) -> str:
    return (f"relative gradient ‖grad‖/‖W‖ of {r.first.module} (the earliest weight layer) is "
            f"{fmt(r.first.relative)}, {fmt(r.ratio)} times that of {r.last.module} (the best-fed later hidden layer, {fmt(r.last.relative)})")


def evidence(r: GradientRatio) -> dict:
    return {"first_layer": r.first.module, "first_param": r.first.param, "first_relative_grad": r.first.relative,
            "last_layer": r.last.module, "last_param": r.last.param, "last_relative_grad": r.last.relative,
            "ratio": r.ratio}


def short_location(loc) -> str:
    """`model.py:23`: a source line as a message quotes it (the full path is in the evidence)."""
    return f"{os.path.basename(loc.file)}:{loc.line}"
