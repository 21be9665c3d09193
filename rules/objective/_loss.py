"""What the objective rules share: the loss calls of a real loss, what produced each one's input (the op
of the model, through the trace's lineage, or the op the loss function applied first), the output layer
that made the logits, and how a finding names them.

Not a rule (no Rule subclass here): a helper the NN6xx rules and NN304 import.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from nnlint.diagnostics import Location
from nnlint.rulekit import describe_op, location_for
from nnlint.trace import vocab
from nnlint.trace.graph import Graph
from nnlint.trace.records import LossCall, OpRecord, Trace

# The torch.nn module of each functional loss: a message names both, as a user may write either.
LOSS_MODULES = {
    "cross_entropy": "CrossEntropyLoss", "nll_loss": "NLLLoss", "binary_cross_entropy": "BCELoss",
    "binary_cross_entropy_with_logits": "BCEWithLogitsLoss", "multilabel_soft_margin_loss": "MultiLabelSoftMarginLoss",
    "mse_loss": "MSELoss", "l1_loss": "L1Loss", "smooth_l1_loss": "SmoothL1Loss", "huber_loss": "HuberLoss",
}
SQUASHES = ("softmax", "sigmoid", "log_softmax", "logsigmoid")
ROW_SUM_TOLERANCE = 1e-4      # a row of probabilities sums to 1 within float32 rounding
TARGET_ROW_SUM_TOLERANCE = 1e-3   # soft targets, often rounded or smoothed in the data, sum to 1 within this


def loss_calls(trace: Trace) -> list[LossCall]:
    """The calls of the real loss; none for the surrogate (nothing to judge)."""
    return list(trace.objective.calls) if trace.objective is not None else []


@dataclass(frozen=True)
class Producer:
    """What made a loss input: the op (of the model, or None when the loss function made it), its kind
    ("softmax", "linear" ...), and where a finding points."""

    kind: str
    op: Optional[OpRecord]
    in_loss_fn: bool               # the loss function applied it (call.steps), not the model

    def module(self) -> str:
        return self.op.module if self.op is not None and not self.in_loss_fn else ""


def producer(trace: Trace, call: LossCall) -> Producer:
    """The last op that changed the values fed to the loss: one the loss function applied (`log_softmax`
    in `loss_fn`), else the model's op that made the tensor, past views and casts."""
    if call.steps:
        return Producer(call.steps[-1], None, True)
    op = source_op(trace, call.serial)
    return Producer(op.kind if op is not None else "", op, False)


def source_op(trace: Trace, serial: Optional[int]) -> Optional[OpRecord]:
    """The op that computed a tensor's values: its producer, or the first op above it that is not a
    view, a copy or a cast."""
    if serial is None:
        return None
    graph = Graph.of(trace)
    op = graph.producer.get(serial)
    if op is None or not vocab.is_passthrough(op):
        return op
    return graph.first(op, lambda o: not vocab.is_passthrough(o), up=True, through=vocab.is_passthrough)


def head(trace: Trace, call: LossCall) -> Optional[OpRecord]:
    """The weight layer whose output the loss reads (through a softmax/sigmoid, a bias add, a norm,
    views): the model's output layer."""
    op = source_op(trace, call.serial)
    if op is None:
        return None
    if vocab.is_weight_layer(op):
        return op
    graph = Graph.of(trace)
    if op.kind in SQUASHES:
        above = graph.producers(op)
        if not above:
            return None
        op = above[0] if not vocab.is_passthrough(above[0]) else (
            graph.first(above[0], lambda o: not vocab.is_passthrough(o), up=True, through=vocab.is_passthrough))
        if op is None:
            return None
        if vocab.is_weight_layer(op):
            return op
    return graph.feeding_weight_op(op)


def where(trace: Trace, op: Optional[OpRecord], call: LossCall) -> tuple[str, Optional[Location]]:
    """(module, location) of a finding about an op of the model; the loss call's line otherwise."""
    fallback = call.location or (trace.objective.location if trace.objective is not None else None)
    if op is None:
        return "", fallback
    return op.module, location_for(trace, op.module, op) or fallback


def name_of(trace: Trace, op: OpRecord) -> str:
    """`probs` (nn.Softmax) for a module's op, `sigmoid() in forward` for a functional call."""
    rec = trace.modules.get(op.module)
    described = describe_op(trace, op)
    if rec is not None and described == op.kind:
        kind = f"nn.{rec.type}" if rec.is_torch_builtin else rec.type
        return f"`{op.module}` ({kind})" if op.module else kind
    return described


def loss_name(call: LossCall) -> str:
    """`cross_entropy (nn.CrossEntropyLoss)`."""
    module = LOSS_MODULES.get(call.loss)
    return f"{call.loss} (nn.{module})" if module else call.loss


def is_simplex(call: LossCall) -> bool:
    """Every row is a probability distribution: non-negative, summing to 1."""
    x = call.input
    return x.row_sum is not None and x.min >= 0.0 and abs(x.row_sum[0] - 1) <= ROW_SUM_TOLERANCE \
        and abs(x.row_sum[1] - 1) <= ROW_SUM_TOLERANCE


def in_unit_interval(call: LossCall) -> bool:
    x = call.input
    return not x.nonfinite and x.min >= 0.0 and x.max <= 1.0


def log_probabilities(call: LossCall, tolerance: float) -> bool:
    """Rows are log-probabilities: their logsumexp is 0."""
    lse = call.input.row_logsumexp
    return lse is not None and math.isfinite(lse) and abs(lse) <= tolerance


def fed_as_expected(call: LossCall) -> bool:
    """The loss got the kind of values it is written for (what NN601/NN602 judge); its value then means
    what the loss-at-init rule reads into it."""
    if call.expects == "logits" and call.family == "class":
        return not is_simplex(call)
    if call.expects == "log_probabilities":
        return log_probabilities(call, 0.1)
    if call.expects == "probabilities":
        return in_unit_interval(call)
    return True


def target_fits(call: LossCall) -> bool:
    """The target is what the loss takes (what NN604 judges): a call that ran, and soft targets that are
    distributions. A loss of targets that do not fit means nothing to the rules about its value."""
    if call.raised:
        return False
    t = call.target
    if call.family != "class" or t is None or not t.is_float or t.row_sum is None:
        return True
    return all(abs(s - 1) <= TARGET_ROW_SUM_TOLERANCE for s in t.row_sum)


def failure_evidence(call: LossCall) -> dict:
    """The evidence key by which a finding explains a loss call that raised (nnlint.api reads it)."""
    return {"loss_failure": call.raised} if call.raised else {}
