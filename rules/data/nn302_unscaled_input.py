from __future__ import annotations

import statistics

from nnlint.registry import Chart, Faulty, Healthy, Rule
from nnlint.rulekit import fmt, input_location, input_scale_absorbed, judged_input, normalize_call, normalize_input_fix


def _off_scale(options: dict, mean: float, std: float) -> bool:
    return not options["min_std"] <= std <= options["max_std"]


# Below this input std, a per-sample norm after the first layer no longer divides the scale out: the
# variance it sees approaches its eps (1e-6 to 1e-5).
_ABSORBED_MIN_STD = 0.01

STD_CHART = Chart("input_std", "Std per {unit}", "", x_label="{unit}", y_label="std", flag=_off_scale)

class UnscaledInput(Rule):
    """## What it does
    Measures the per-channel / per-feature std of every floating-point model input and reports inputs
    whose typical (median) channel std is outside [0.2, 5] (images in [0, 255] have std ~70), or whose
    features' scales differ by more than 100x.

    ## Why is this bad?
    The first layer's init assumes unit-variance inputs: a 60x larger input makes its pre-activations
    60x too large (saturating tanh/sigmoid, exploding the signal), a tiny one makes them vanish. Features
    on very different scales give the loss surface a bad condition number: the learning rate that suits
    one feature is too large or too small for another.

    An input that is constant on the batch (every std 0: an all-zero tensor from a failed decode) is an
    error: the model sees no signal at all.

    Not reported for inputs the model normalizes itself before anything else reads them (`(x - mean) / std`
    first thing in forward, an input BatchNorm).

    ## Options
    - `min_std` (default 0.2), `max_std` (default 5.0): the accepted range of the median channel std.
    - `max_scale_ratio` (default 100): the largest accepted ratio between two features' stds.

    ## Fix safety
    Unsafe: inserts an input normalization in front of the model (better done in the data pipeline).
    """

    code = "NN302"
    name = "unscaled-input"
    severity = "warning"
    summary = "model inputs are not scaled (channel std outside [0.2, 5], or feature scales differ 100x)"
    reads = frozenset({"inputs", "forward"})
    about = "input"
    chart = STD_CHART
    options = {"min_std": 0.2, "max_std": 5.0, "max_scale_ratio": 100.0}
    fixable = "unsafe"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
            batch = torch.randn(64, 16) * 60    # centered, but on a scale of 60
            """, module=''),
        Healthy("""
            model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
            raw = torch.randn(64, 16) * 60
            batch = raw / raw.std(0)            # divided by each feature's std
            """),
    )

    def check(self, trace):
        for rec in trace.inputs:
            if not rec.is_float or not rec.channel_std or rec.summary.nonfinite:
                continue
            if not judged_input(trace, rec):
                continue   # normalized by the model first, read by no weight layer as a signal, or an InstanceNorm follows
            stds = rec.channel_std
            live = [s for s in stds if s > 1e-12]
            if not live:
                yield self.diagnostic(
                    "", f"{rec.path} is constant on this batch (every value {fmt(rec.summary.mean)}, std 0): the model sees "
                        "no signal; check the data pipeline (a failed decode, a wrong key, a mask passed as the input)",
                    severity="error", location=input_location(trace),
                    evidence={"input": rec.path, "median_std": 0.0, "std": stds, "constant": rec.summary.mean})
                continue
            median = statistics.median(live)
            ratio = max(live) / min(live)
            what = "channel" if rec.channel_dim == 1 and len(rec.summary.shape) >= 3 else "feature"
            if (median < self.opts["min_std"] or median > self.opts["max_std"]) and \
                    not (median > _ABSORBED_MIN_STD and input_scale_absorbed(trace, rec)):
                problem = (f"{rec.path}: typical {what} std is {fmt(median)} (expected about 1, accepted "
                           f"[{self.opts['min_std']}, {self.opts['max_std']}])")
            elif ratio > self.opts["max_scale_ratio"]:
                lo, hi = stds.index(min(live)), stds.index(max(live))
                problem = (f"{rec.path}: {what} scales differ {fmt(ratio)}x ({what} {hi} std {fmt(max(live))}, "
                           f"{what} {lo} std {fmt(min(live))})")
            else:
                continue
            means = rec.channel_mean
            yield self.diagnostic(
                "",
                f"{problem}: divide by the per-{what} std, e.g. {normalize_call(means, stds)}",
                location=input_location(trace),
                evidence={"input": rec.path, "median_std": median, "scale_ratio": ratio, "std": stds},
                fix=normalize_input_fix(rec),
            )
