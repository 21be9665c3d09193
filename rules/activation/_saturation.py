"""When a sigmoid/tanh counts as saturated: NN202's finding, and what raises NN201 to a warning."""
from __future__ import annotations

import math
from typing import Optional

from nnlint.initmath import correct_init
from nnlint.trace.ops import FLAT_REGION

WARNING_FRACTION, ERROR_FRACTION, DESIGN_MARGIN = 0.2, 0.5, 1.15


def reported_fraction(trace, graph, op, warning_fraction: float = WARNING_FRACTION,
                      error_fraction: float = ERROR_FRACTION, design_margin: float = DESIGN_MARGIN) -> Optional[float]:
    """The op's saturated fraction where it counts as saturated, else None: over `warning_fraction`,
    and, under `error_fraction`, beyond what the gain-correct init of the layer feeding it gives on
    unit-RMS inputs (NN202's docstring has the evidence)."""
    frac = op.stats.get("saturated")
    if frac is None or frac <= warning_fraction or bounded_on_purpose(graph, op):
        return None
    if frac <= error_fraction and _at_design_point(trace, op, graph.feeding_weight_op(op), design_margin):
        return None
    if _prior_offset(op) and graph.reaches_weight_layer(op) is None:
        return None
    return frac


def bounded_on_purpose(graph, op) -> bool:
    """A sigmoid/tanh that is not a hidden layer's nonlinearity: inside an activation formula that
    multiplies its own input (GELU-tanh, Swish, Mish), or the state or candidate a sigmoid gate
    multiplies (a hand-written GRU/LSTM). NN201 and NN202 leave both alone."""
    return graph.is_formula_gate(op) or graph.is_gated_state(op)


def _prior_offset(op) -> bool:
    """The pre-activations sit in the flat region as a constant offset (|mean| beyond it, std under 1):
    an output sigmoid at a prior bias, such as the focal-loss prior of RetinaNet/FCOS's class logits
    (bias -log(0.99/0.01) = -4.6, std 0.02-0.32: every anchor starts at p = 0.01 by design, Lin et al.
    2017; TRIAGE.md P). Only where the output feeds no weight layer: a hidden unit held there learns
    nothing."""
    z = op.stats.get("in")
    return z is not None and abs(z.mean) > FLAT_REGION.get(op.kind, float("inf")) and z.std < 1.0


def _at_design_point(trace, op, feeding, margin: float) -> bool:
    """The pre-activations' measured RMS is within `margin` of what the feeding layer gives at its
    gain-correct (Xavier) std on unit-RMS inputs: the saturation is the init's design point."""
    z = op.stats.get("in")
    p = trace.params.get(feeding.weight) if feeding is not None and feeding.weight else None
    if z is None or p is None or p.fan_in <= 0:
        return False
    design = correct_init(op.kind).std(p.fan_in, p.fan_out) * math.sqrt(p.fan_in)
    return math.sqrt(z.std ** 2 + z.mean ** 2) <= margin * design
