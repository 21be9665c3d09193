from __future__ import annotations

import dataclasses
import math

from nnlint.initmath import expected_std, measured_normal
from nnlint.registry import Chart, Faulty, Healthy, Rule
from nnlint.rulekit import describe_op, fmt, location_for, pct, reinit_fix
from nnlint.trace import ops as opnames
from nnlint.trace.graph import Graph

from nnlint.rules.activation._saturation import DESIGN_MARGIN, ERROR_FRACTION, WARNING_FRACTION, reported_fraction

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
    Nor for the state or candidate of a hand-written GRU/LSTM, which a sigmoid gate multiplies
    (`(1 - z) * h + z * tanh(q)`; RAFT's ConvGRU state `tanh(context)`): bounded by design, as
    inside nn.GRU (benchmarks/TRIAGE.md, T).

    Not reported either (below the error fraction) where the saturation is what the gain-correct init
    gives: the pre-activations' RMS is at most `design_margin` times what the feeding layer's Xavier
    std gives on unit-RMS inputs (`gain * sqrt(2 fan_in / (fan_in + fan_out))`). Xavier-tanh on
    standardized inputs saturates by design: 18.7% at fan_in = fan_out (pre-activation std 5/3), 29.5%
    at fan_in = 4 fan_out (std 2.1, the first layer of a 64-16 MLP), 35% as fan_in/fan_out grows;
    an init can do no better without leaving the range NN103 accepts, and a fixer that re-inits a layer
    with Xavier (NN101, NN103, this rule's own fix) must not have the result flagged. Measured
    (benchmarks/fix_training.py, digits): NN103's Xavier re-init of a default-init 11x16 tanh MLP puts
    `body.1` at 23% saturated (first layer 64 -> 16, pre-activation std 2.25 on a batch of RMS 1.11:
    1.07x the design std 2.11); this rule used to flag it and shrink `body.0` to std 0.115, and on the
    3x16 model that shrink followed by training ended 2 points under the broken original. Larger
    weights or un-scaled inputs put the RMS past the margin and are reported as before (std 1 weights:
    8x the design std; inputs at 3x: 3x).

    Nor for a sigmoid/tanh that feeds no weight layer (an output, a loss's own sigmoid) held in the flat
    region by a constant offset (|mean| past the threshold, std under 1): a prior bias. torchvision's
    RetinaNet v1/v2 and FCOS start their class logits at the focal-loss prior -log(0.99/0.01) = -4.6
    (std 0.02-0.32), so every anchor begins at p = 0.01 by design (Lin et al. 2017); they were reported
    as errors (100% saturated). A hidden unit held there still is (benchmarks/TRIAGE.md P).

    ## Options
    - `warning_fraction` (default 0.2): fraction of saturated pre-activations for a warning.
    - `error_fraction` (default 0.5): fraction for an error.
    - `design_margin` (default 1.15): under the error fraction, saturation is not reported while the
      pre-activation RMS is within this factor of the gain-correct init's on unit-RMS inputs (a 64-sample
      batch's RMS and a drawn weight's std are each a few percent off their expected values).

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
    options = {"warning_fraction": WARNING_FRACTION, "error_fraction": ERROR_FRACTION, "design_margin": DESIGN_MARGIN}
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
            batch = torch.randn(64, 32)   # about 10% in the flat region (64 -> 64: 19%, Xavier's design point)
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
            frac = reported_fraction(trace, graph, op, self.opts["warning_fraction"], self.opts["error_fraction"],
                                     self.opts["design_margin"])
            if frac is None:
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
    spec = measured_normal(p.std * TARGET_STD[op.kind] / z.std,
                           why=f"std measured on the batch, to keep the {op.kind} that follows out of its flat region")
    params = dataclasses.replace(fix.params, spec=spec)
    fix.params = params
    fix.description = (f"re-initialize {p.module}.{p.attr}: {params.call(p.module)} (measured: puts {op.kind}'s "
                       f"inputs at std {TARGET_STD[op.kind]:g}; Xavier would leave them at std {fmt(predicted)})")
    return fix
