from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Optional

from nnlint.diagnostics import Fix
from nnlint.initmath import expected_std, fans
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import fmt, reinit_fix
from nnlint.rules.propagation._gradients import (GradientRatio, before_norm, describe, earliest_vs_last, evidence,
                                                 short_location, surrogate_note)
from nnlint.trace.graph import Graph

# A weight drawn this much under its gain-correct std is re-drawn at it; closer, the init is not the cause.
UNDER_INIT = 1.2


class ExplodingGradients(Rule):
    """## What it does
    After the backward pass, reports non-finite gradients (error; left to NN002 when the batch itself
    holds NaN/Inf: the gradients then only follow the data), or an earliest weight layer whose
    relative gradient ‖grad‖/‖W‖ is more than `max_ratio` (1e3) times that of every later hidden layer
    (warning). The layers are chosen as in NN404 (execution order; parallel projections reading one
    input count as one; embeddings, frozen, tied and all-zero weights left out).

    ## Why is this bad?
    A layer whose gradient is a thousand times larger, relative to its weights, than any later layer's
    is moved by one SGD step far more than the rest: at any learning rate that trains the late layers,
    the early ones jump around or diverge, and the loss turns to NaN. Non-finite gradients end training
    at the first step. Typical causes: weights scaled too large (NN103), deep chains without
    normalization, an `exp` or unbounded activation, a loss that divides by a near-zero value.

    A layer followed by a normalization is scale-invariant: its gradient grows as 1/‖W‖, so its relative
    step as 1/‖W‖². Weights drawn far too small before a BatchNorm/LayerNorm are the common way to get
    a ratio in the thousands (std 1e-4 before BatchNorm: 4e5; std 1e-2: 42). A homogeneous network
    (ReLU, no norm) whose weights are all too large does *not* show here: every layer's relative
    gradient grows alike (NN402 and NN103 see it in the forward signal).

    Calibration: the healthy models NN404 lists measure 5e-3 to 7 (the highest: ResNet with
    `zero_init_residual`, and ConvNeXt, whose 0.02-init stem conv sits before a LayerNorm).

    ## Options
    - `max_ratio` (default 1e3): report when the earliest layer's relative gradient exceeds this
      multiple of the best-fed later hidden layer's.

    Where the earliest layer's output is normalized, the message says so and names what sets its step:
    its weight's norm. A weight drawn more than 1.2x under the fan-in gain-correct std gets that re-init
    as the fix, with the ratio it predicts (the relative gradient scales as (std_before / std_after)^2:
    torchvision's SSDlite320 draws every backbone conv at std 0.03; its stem conv, before a BatchNorm
    where fan-in Kaiming gives 0.27, measures 2449 with the model's own loss and is predicted at 30; the
    re-check after the fix finds no NN405). Where the weight is already at that scale the growth comes through
    the depth of normalized blocks (the gradient explosion of BatchNorm networks at init, Yang et al.
    2019): warm the learning rate up and clip; adding a normalization would not help, it is there.

    ## Fix safety
    Safe where offered: the layer's output is normalized, so re-drawing its weight at a larger std
    changes nothing the next layer sees in training mode, only how far a step moves it. Elsewhere no
    automatic fix: the cause decides the remedy (NN103's re-init, normalization, a bounded activation).
    """

    code = "NN405"
    name = "exploding-gradients"
    severity = "warning"
    summary = "gradients are non-finite, or the earliest layer's relative gradient is over 1e3x the later layers'"
    reads = frozenset({"gradients"})
    options = {"max_ratio": 1e3}
    fixable = "safe"     # only for a normalized earliest layer drawn under its gain-correct std

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                                  nn.Linear(64, 10))
            nn.init.normal_(model[0].weight, std=1e-4)   # before a BatchNorm: its gradient grows as 1/|W|
            batch = torch.randn(64, 64)
            """, module='0'),
        Healthy("""
            model = nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                                  nn.Linear(64, 10))
            nn.init.kaiming_normal_(model[0].weight, nonlinearity="relu")
            batch = torch.randn(64, 64)
            """, note="""
            and clip gradients (`torch.nn.utils.clip_grad_norm_`) as a guard, not a cure.
            """),
    )

    def check(self, trace):
        if not trace.backward_ran:
            return
        bad = [p for p in trace.params.values() if p.grad_nonfinite and p.requires_grad and not p.tied_to]
        if bad:
            if not _input_non_finite(trace):   # else NN002 names the data; the gradients only follow
                yield self._non_finite(trace, bad)
            return
        r = earliest_vs_last(trace)
        if r is None or not r.ratio > self.opts["max_ratio"]:
            return
        advice = self._advice(trace, r)
        yield self.diagnostic(
            r.first.module,
            f"gradients explode: {describe(r)}, over the {self.opts['max_ratio']:g} limit{surrogate_note(trace)}; "
            f"one SGD step moves the early layers far more than the rest. {advice.text}",
            location=trace.location_of(r.first.module),
            evidence={**evidence(r), "normalized": advice.normalized, "predicted_ratio": advice.predicted_ratio},
            fix=advice.fix,
        )

    def _advice(self, trace, r: GradientRatio) -> "_Advice":
        graph = Graph.of(trace)
        if not before_norm(graph, r.first.op):
            return _Advice("Re-init with the gain-correct initializer (nn.init.kaiming_normal_ before ReLU, "
                           "xavier_normal_ before tanh), add nn.BatchNorm/nn.LayerNorm, and clip with "
                           "torch.nn.utils.clip_grad_norm_", False)
        module = r.first.module
        text = ("That layer's output is normalized, so its weight's norm sets its step: the relative gradient "
                "grows as 1/‖W‖²")
        p = trace.params[r.first.param]      # weight_layers keeps only recorded parameters of norm > 0
        nonlinearity, slope = graph.nonlinearity_after(r.first.op)
        expected = expected_std(*fans(p.shape), nonlinearity, slope)
        if 0 < p.std * UNDER_INIT < expected:      # a constant weight (std 0) is NN102's
            predicted = r.ratio * (p.std / expected) ** 2
            fix = reinit_fix(trace, module, nonlinearity, slope, why=f"weight std {fmt(p.std)} before a norm")
            text += (f", and its weight std {fmt(p.std)} is {fmt(expected / p.std)}x under the fan-in gain-correct "
                     f"{fmt(expected)}: re-init with {fix.params.call(module)}, which takes the ratio to about "
                     f"{fmt(predicted)}")
            if predicted > self.opts["max_ratio"]:
                text += "; then warm the learning rate up and clip with torch.nn.utils.clip_grad_norm_"
            return _Advice(text, True, predicted, fix)
        text += (f"; its weight is at the gain-correct scale, so the growth comes through the depth of the normalized "
                 "layers after it: warm the learning rate up over the first steps and clip with "
                 "torch.nn.utils.clip_grad_norm_ (a normalization is there already)")
        return _Advice(text, True)

    def _non_finite(self, trace, bad):
        order = trace.module_order
        bad.sort(key=lambda p: order.get(p.module, len(order)))
        # Non-finite values flow backward from where they arise: the layer nearest the output is the
        # closest to the source.
        source = bad[-1]
        loss = trace.loss
        names = ", ".join(p.name for p in bad[:6]) + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
        if loss is not None and not math.isfinite(loss):
            cause = f"the loss itself is {fmt(loss)}"
        else:
            suspect = _singular_op_after(trace, source.name)
            cause = "the loss is finite, so an op's backward makes them" + (
                f": {suspect.func}() at {short_location(suspect.location)} has an infinite derivative where its "
                "input is 0 (add an epsilon, or use torch.cdist / F.normalize)" if suspect is not None else
                " (a sqrt, log, pow or division at 0)")
        return self.diagnostic(
            source.module,
            f"gradients are NaN/Inf in {len(bad)} parameter(s) ({names}): {cause}; the first optimizer step "
            "would write NaN into the weights",
            severity="error",
            location=trace.location_of(source.module),
            evidence={"params": [p.name for p in bad], "loss": loss},
        )


SINGULAR_AT_ZERO = ("sqrt", "rsqrt", "log", "log2", "log10", "reciprocal", "pow", "norm", "div", "acos", "asin",
                    "std", "var")


def _singular_op_after(trace, param: str):
    """The first op after the parameter's layer whose derivative blows up at 0 (sqrt first)."""
    graph = Graph.of(trace)
    use = next((o for o in graph.ops if param in (trace.param_serials.get(s) for s in o.inputs)), None)
    if use is None:
        return None
    for kinds in (SINGULAR_AT_ZERO[:2], SINGULAR_AT_ZERO):
        found = graph.first(use, lambda o: o.kind in kinds)
        if found is not None and found.location is not None:
            return found
    return None


def _input_non_finite(trace) -> bool:
    return any(i.is_float and i.summary.nonfinite for i in trace.inputs)


@dataclass
class _Advice:
    text: str
    normalized: bool                         # the earliest layer's output is normalized: its norm sets its step
    predicted_ratio: Optional[float] = None  # the ratio after the fix's re-init
    fix: Optional[Fix] = None
