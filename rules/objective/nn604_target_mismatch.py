from __future__ import annotations

import math
from typing import Optional

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import fmt
from nnlint.rules.objective._loss import (TARGET_ROW_SUM_TOLERANCE, failure_evidence, head, loss_calls, loss_name,
                                          producer, where)
from nnlint.trace.objective import shape_text
from nnlint.trace.records import LossCall, Trace


class TargetMismatch(Rule):
    """## What it does
    Reads the target of each loss call, before the call is made, against the output it is compared
    with. For the class losses (`cross_entropy`, `nll_loss`):
    - integer class indices out of range of the head (`label 11`, where the head has 10 classes);
      ignore_index (-100) is not a label;
    - an integer target of the output's shape: one-hot labels (`F.one_hot(y)`) where indices are meant
      (or multi-hot 0/1 labels, a multi-label task);
    - a float target where indices are meant (`y.float()`);
    - soft targets (float, of the output's shape) whose rows do not sum to 1 (within `row_sum_tolerance`);
    - any other shape: the head and the targets disagree on the number of classes.
    For the binary cross-entropies: an integer target (they need float), or targets outside [0, 1].

    Several of these raise in torch (an IndexError on CPU; on CUDA a device-side assert that leaves the
    process unusable): the call is not made, the check goes on, and this finding explains the failure
    instead of "could not run".

    ## Why is this bad?
    An index out of range crashes the training run, on CUDA with an error that names no label. Soft
    targets that do not sum to 1 scale the loss per sample and are no distribution: the model is
    pulled toward several classes at once. A one-hot or float target where indices are meant is a data
    pipeline bug that the loss either rejects or silently reads as something else.

    ## Options
    - `row_sum_tolerance` (default 1e-3): how far from 1 the rows of soft targets may sum.

    ## Fix safety
    No automatic fix: the target comes from the user's data. Match the head to the number of classes
    (`nn.Linear(in, num_classes)`), pass class indices (`target.argmax(1)`, `target.long()`), or
    probabilities that sum to 1.
    """

    code = "NN604"
    name = "target-mismatch"
    severity = "error"
    summary = "class targets that do not fit the head: out of range, one-hot or float where indices are meant"
    reads = frozenset({"loss", "forward"})
    options = {"row_sum_tolerance": TARGET_ROW_SUM_TOLERANCE}
    about = "model"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))   # 10 classes
            batch = torch.randn(64, 32)
            target = torch.randint(0, 12, (64,))     # labels 0..11
            loss_fn = nn.CrossEntropyLoss()
            """, module='2'),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 12))   # one output per class
            batch = torch.randn(64, 32)
            target = torch.randint(0, 12, (64,))
            loss_fn = nn.CrossEntropyLoss()
            """),
    )

    def check(self, trace):
        reported: set[str] = set()
        for call in loss_calls(trace):
            if call.target is None:
                continue
            made_by = producer(trace, call)
            op = head(trace, call) or made_by.op
            module, location = where(trace, op if not made_by.in_loss_fn else None, call)
            problem = self._class_problem(call, module) if call.family == "class" else \
                self._binary_problem(call) if call.family == "binary" else None
            if problem is None or module in reported:
                continue
            reported.add(module)
            yield self._report(trace, call, problem, module, location)

    def _class_problem(self, call: LossCall, module: str) -> Optional[str]:
        t, x, classes = call.target, call.input, call.num_classes or 0
        index_shape = tuple(s for i, s in enumerate(x.shape) if i != (1 if len(x.shape) >= 2 else 0))
        if not t.is_float:
            if t.out_of_range:
                top = int(t.max)
                head_name = f" `{module}`" if module else ""
                return (f"{t.out_of_range} of {math.prod(t.shape)} labels are out of range for the head{head_name}, which has "
                        f"{classes} classes (0..{classes - 1}): the first is {t.first_out_of_range}, the largest {top}; torch "
                        "raises IndexError on CPU and a device-side assert on CUDA; give the head "
                        f"{max(top + 1, classes)} outputs, or fix the labels")
            if t.shape == x.shape:
                if t.one_hot:
                    return (f"the target is one-hot (shape {shape_text(t.shape)}, one 1 per row) where {call.loss} wants "
                            "class indices: pass target.argmax(1)")
                return (f"the target is an integer tensor of the output's shape {shape_text(t.shape)} (multi-hot 0/1 "
                        "labels?): for several labels per sample use nn.BCEWithLogitsLoss() with target.float(); for one, "
                        "pass class indices")
            if t.shape != index_shape:
                return self._count_mismatch(call, index_shape)
            return None
        if t.shape == index_shape:
            whole = f", whole numbers {fmt(t.min)}..{fmt(t.max)}" if t.integral else ""
            return (f"the target is float (shape {shape_text(t.shape)}{whole}) where {call.loss} wants integer class "
                    "indices: pass target.long()")
        if t.shape == x.shape and call.loss == "cross_entropy":
            lo, hi = t.row_sum or (1.0, 1.0)
            tol = self.opts["row_sum_tolerance"]
            if abs(lo - 1) <= tol and abs(hi - 1) <= tol:
                return None
            multi = t.integral and t.min >= 0 and t.max <= 1
            if multi:
                return (f"the soft targets are 0/1 rows summing to {fmt(lo)}..{fmt(hi)}: several labels per sample "
                        "(multi-label) need nn.BCEWithLogitsLoss(), not a softmax over classes")
            return (f"the soft targets' rows sum to {fmt(lo)}..{fmt(hi)}, not 1: they are no distribution over the "
                    "classes; normalize them: target / target.sum(1, keepdim=True)")
        return self._count_mismatch(call, index_shape)

    @staticmethod
    def _count_mismatch(call: LossCall, index_shape) -> str:
        t, x = call.target, call.input
        if len(t.shape) == len(x.shape) and len(x.shape) >= 2 and t.shape[0] == x.shape[0]:
            return (f"the head has {call.num_classes} classes but the targets have {t.shape[1]} (target "
                    f"{shape_text(t.shape)}, output {shape_text(x.shape)}): give the head one output per class")
        return (f"the target has shape {shape_text(t.shape)} where {call.loss} wants class indices of shape "
                f"{shape_text(index_shape)} (or probabilities of the output's shape {shape_text(x.shape)})")

    @staticmethod
    def _binary_problem(call: LossCall) -> Optional[str]:
        t = call.target
        if not t.is_float and call.loss != "multilabel_soft_margin_loss":
            return f"the target is {t.dtype} where {call.loss} needs a float one: pass target.float()"
        if t.min < 0 or t.max > 1:
            extra = (f"; labels 0..{fmt(t.max)} are class indices: use cross_entropy with {int(t.max) + 1} outputs"
                     if t.integral and t.min >= 0 else "")
            return f"binary targets must lie in [0, 1], but they range over [{fmt(t.min)}, {fmt(t.max)}]{extra}"
        return None

    def _report(self, trace: Trace, call: LossCall, problem: str, module: str, location):
        t = call.target
        message = f"{loss_name(call)}: {problem}"
        return self.diagnostic(module, message, location=location,
                               evidence={"loss": call.loss, "num_classes": call.num_classes, "target_shape": list(t.shape),
                                         "target_dtype": t.dtype, "target_min": t.min, "target_max": t.max,
                                         "out_of_range": t.out_of_range, **failure_evidence(call)})
