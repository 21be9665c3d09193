"""Per-layer numbers through depth, read from a Trace: what the HTML report plots.

One value per layer call in execution order (training pass): activation std and mean after each weight
layer, the fraction of dead units of each ReLU-family call, the saturated fraction of each sigmoid/tanh
call, the relative gradient of each weight, and the variance of the residual stream after each
residual add. Pure Python over the Trace (no torch), so it runs wherever the report is rendered.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from nnlint.output.svg import format_number as _num
from nnlint.trace import ops as opnames
from nnlint.trace import vocab
from nnlint.trace.structure import Structure

@dataclass
class LayerValue:
    position: int                 # 1-based place among the plotted layers, in execution order
    site: str                     # "layer1.0.relu" or "layer1.0.relu (call 2)"
    module: str                   # qualified module name, to match diagnostics
    module_type: str
    label: str                    # for people: "layer1.0.relu (ReLU)", "relu() in block.forward"
    value: Optional[float]        # None: not measured here (no gradient reached it ...)
    detail: str                   # the numbers behind the value, for hover text
    secondary: Optional[float] = None   # a second series at the same layer (the activation mean)


@dataclass
class DepthProfile:
    activations: list[LayerValue] = field(default_factory=list)   # value: std of the output, secondary: mean
    dead: list[LayerValue] = field(default_factory=list)          # value: fraction of dead units
    saturated: list[LayerValue] = field(default_factory=list)     # value: fraction in the flat region
    gradients: list[LayerValue] = field(default_factory=list)     # value: grad_norm / weight norm
    residual: list[LayerValue] = field(default_factory=list)      # value: variance of the stream after the add
    backward_ran: bool = False


def depth_profile(trace, active_below: Optional[float] = None) -> DepthProfile:
    """The series through depth. Dead units are counted only with `active_below` (the dead-unit rule's
    threshold, which the caller takes from the rule that draws the chart)."""
    ops = [o for o in trace.ops if o.phase == "train"]
    profile = DepthProfile(backward_ran=bool(getattr(trace, "backward_ran", False)))
    weight_layers = [o for o in ops if vocab.applies_weights(o) and o.kind not in vocab.FUSED]
    for op in weight_layers:
        out = op.out
        if out is None:
            continue
        profile.activations.append(_value(trace, profile.activations, op, out.std,
                                          f"output std {_num(out.std)}, mean {_num(out.mean)}"
                                          + (" (non-finite values)" if out.nonfinite else ""),
                                          secondary=out.mean))
    for op in ops:
        active = op.stats.get("unit_active")
        if op.kind in opnames.ALIVE_ABOVE and active and active_below is not None:
            dead = sum(1 for a in active if a < active_below)
            profile.dead.append(_value(trace, profile.dead, op, dead / len(active),
                                       f"{dead}/{len(active)} units dead ({100 * dead / len(active):.0f}%)"))
        saturated = op.stats.get("saturated")
        if op.kind in opnames.SATURATING and saturated is not None:
            profile.saturated.append(_value(trace, profile.saturated, op, float(saturated),
                                            f"{100 * saturated:.0f}% of {op.kind} inputs in the flat region"))
    if profile.backward_ran:
        seen: set[str] = set()
        for op in weight_layers:
            rec = trace.params.get(op.weight) if op.weight else None
            if rec is None or op.weight in seen or not rec.requires_grad:
                continue
            seen.add(op.weight)
            value, detail = _relative_gradient(rec)
            profile.gradients.append(_value(trace, profile.gradients, op, value, detail))
    for step in _stream(trace):
        detail = (f"stream variance {_num(step.var_out)} (stream {_num(step.var_in)} + branch {_num(step.var_branch)}"
                  + (", a projection shortcut" if step.block.projection else "") + ")")
        profile.residual.append(_value(trace, profile.residual, step.block.add, step.var_out, detail))
    return profile


def _relative_gradient(rec) -> tuple[Optional[float], str]:
    if rec.grad_norm is None:
        return None, f"{rec.name}: no gradient reached it"
    if rec.grad_nonfinite:
        return math.inf, f"{rec.name}: gradient is non-finite"
    if rec.norm == 0:
        # An all-zero weight: any gradient is infinitely large relative to it.
        return (math.inf if rec.grad_norm > 0 else 0.0), f"{rec.name}: weight norm 0, gradient norm {_num(rec.grad_norm)}"
    return rec.grad_norm / rec.norm, (f"{rec.name}: gradient norm {_num(rec.grad_norm)} / weight norm "
                                      f"{_num(rec.norm)} = {_num(rec.grad_norm / rec.norm)}")


def _stream(trace) -> list:
    """The residual blocks along the stream, as the residual-growth rule judges them (Structure.of);
    plot nothing if structure detection fails: the rest of the report must still render."""
    try:
        return list(Structure.of(trace).stream)
    except Exception:   # noqa: BLE001 - a report must render even if structure detection breaks
        return []


def _value(trace, existing: list[LayerValue], op, value, detail, secondary=None) -> LayerValue:
    return LayerValue(position=len(existing) + 1, site=op.site, module=op.module, module_type=op.module_type,
                      label=_label(trace, op), value=value, detail=detail, secondary=secondary)


def _label(trace, op) -> str:
    """The module and its type for a layer run by its own torch.nn module; for a functional call
    (torch.relu(x) inside some forward) the function and the forward it was called from."""
    rec = trace.modules.get(op.module)
    if rec is not None and rec.is_leaf and rec.is_torch_builtin:
        return f"{op.site} ({op.module_type})" if op.module_type else op.site
    if op.kind == "add":
        return f"{op.site} ({op.module_type})" if op.module and op.module_type else (op.site or "forward")
    return f"{op.func}() in {op.site}.forward" if op.module else f"{op.func}() in forward"
