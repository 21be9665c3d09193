from __future__ import annotations

import dataclasses
import math

from nnlint.initmath import InitSpec, expected_std
from nnlint.registry import Chart, Faulty, Healthy, Rule
from nnlint.rulekit import describe_op, fmt, location_for, pct, reinit_fix
from nnlint.trace import ops as opnames
from nnlint.trace.graph import Graph

FLAT_REGION = opnames.FLAT_REGION


SATURATION_CHART = Chart(
    "saturated", "Saturated sigmoid/tanh",
    "Fraction of pre-activations in the flat region, where the derivative is under 5% of its peak.",
    x_label="sigmoid/tanh call, execution order", y_label="saturated fraction", empty="no sigmoid or tanh ran",
    y_range=(0.0, 1.0), references=(("warning_fraction", "warning"), ("error_fraction", "error")))

class SaturatedActivation(Rule):
    """## What it does
    Measures, for every sigmoid and tanh call, the fraction of its pre-activations that sit in the flat
    region, where the derivative is under 5% of its peak: |z| > 2.2 for tanh, |z| > 4.4 for sigmoid.

    ## Why is this bad?
    In the flat region the gradient is close to zero: those units barely learn, and the layers before
    them receive almost nothing. It is the classic result of weights too large for tanh/sigmoid (std 1
    instead of Xavier's sqrt(2/(fan_in+fan_out))) or of un-normalized inputs.

    Not reported for tanh/sigmoid inside an activation formula that multiplies its own input
    (`0.5 * x * (1 + tanh(...))`, Swish, Mish): saturation there is the formula working as intended.

    ## Options
    - `warning_fraction` (default 0.2): fraction of saturated pre-activations for a warning.
    - `error_fraction` (default 0.5): fraction for an error.

    The thresholds of the flat region (derivative under 5% of its peak) are fixed: tanh'(2.2) = 0.048,
    sigmoid'(4.4)/sigmoid'(0) = 0.047.

    ## Fix safety
    Safe: Xavier re-init (with tanh's gain 5/3) of the weight layer that feeds the activation. When the
    measurement says Xavier would still leave more than half the warning fraction saturated (Xavier's
    fan average is large for a narrow output head fed by ReLU features, e.g. a tanh action head), the
    fix instead draws the weight with the std that puts the measured pre-activations at std 1 (tanh)
    or 2 (sigmoid), where the activation is close to linear.
    """

    code = "NN202"
    name = "saturated-activation"
    severity = "warning"
    summary = "sigmoid/tanh pre-activations sit in the flat region; gradients vanish"
    reads = frozenset({"forward"})
    cause = ("threshold",)
    chart = SATURATION_CHART
    options = {"warning_fraction": 0.2, "error_fraction": 0.5}
    fixable = "safe"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))
            nn.init.normal_(model[0].weight, std=1.0)
            batch = torch.randn(64, 64)
            """, module='1'),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 10))
            nn.init.xavier_normal_(model[0].weight, gain=nn.init.calculate_gain("tanh"))
            batch = torch.randn(64, 32)   # about 10% in the flat region (64 -> 64 would sit at 19%, the edge)
            """, note="""
            and normalize the inputs; or use a ReLU-family activation.
            """),
    )

    def check(self, trace):
        graph = Graph.of(trace)
        for op in graph.ops:
            if op.kind not in opnames.SATURATING:
                continue
            if op.out is not None and op.out.nonfinite:
                continue   # NN002's finding
            frac = op.stats.get("saturated")
            if frac is None or frac <= self.opts["warning_fraction"] or graph.is_formula_gate(op):
                continue
            severity = "error" if frac > self.opts["error_fraction"] else "warning"
            feeding = graph.feeding_weight_op(op)
            fix = None
            if feeding is not None and feeding.weight is not None:
                nonlin, slope = graph.nonlinearity_after(feeding)
                fix = reinit_fix(trace, feeding.module, op.kind if nonlin == "linear" else nonlin, slope)
                fix = _measured_scale(trace, op, feeding, fix, self.opts["warning_fraction"])
            z = op.stats.get("in")
            yield self.diagnostic(
                op.module,
                f"{pct(frac)} of {describe_op(trace, op)} inputs are in the flat region (|z| > {FLAT_REGION[op.kind]}"
                + (f", input std {fmt(z.std)}" if z is not None else "")
                + "); gradients vanish"
                + (f": Xavier-init {feeding.module} and normalize the inputs" if feeding is not None else ": scale its input down"),
                severity=severity,
                location=location_for(trace, op.module, op),
                evidence={"saturated_fraction": frac, "threshold": FLAT_REGION[op.kind],
                          "input_std": None if z is None else z.std, "feeding_layer": feeding.module if feeding else None},
                fix=fix,
            )


# Where a re-init that keeps the activation near its linear range puts the pre-activation std.
TARGET_STD = {"tanh": 1.0, "sigmoid": 2.0}


def _measured_scale(trace, op, feeding, fix, warning_fraction: float):
    """Predict the saturation Xavier would leave (the pre-activation std scales with the weight std);
    when it is still over half the warning fraction, switch the fix to the weight std that gives the
    pre-activations the target std. Returns the fix to use."""
    z = op.stats.get("in")
    p = trace.params.get(feeding.weight)
    if z is None or p is None or not p.std > 0 or not z.std > 0 or p.fan_in <= 0:
        return fix
    xavier = expected_std(p.fan_in, p.fan_out, op.kind)
    predicted = z.std * xavier / p.std
    if math.erfc(FLAT_REGION[op.kind] / (predicted * math.sqrt(2))) <= warning_fraction / 2:
        return fix
    std = float(f"{p.std * TARGET_STD[op.kind] / z.std:.3g}")
    spec = InitSpec("normal_", (("std", std),),
                    why=f"std measured on the batch, to keep the {op.kind} that follows out of its flat region")
    params = dataclasses.replace(fix.params, spec=spec)
    fix.params = params
    fix.description = (f"re-initialize {p.module}.{p.attr}: {params.call(p.module)} (measured: puts {op.kind}'s "
                       f"inputs at std {TARGET_STD[op.kind]:g}; Xavier would leave them at std {fmt(predicted)})")
    return fix
