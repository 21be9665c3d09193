from __future__ import annotations

from nnlint.registry import Chart, Faulty, Healthy, Rule
from nnlint.rulekit import fmt, input_location, judged_input, normalize_call, normalize_input_fix


def _off_center(options: dict, mean: float, std: float) -> bool:
    return abs(mean) > options["mean_to_std"] * std


MEAN_CHART = Chart("input_mean", "Mean per {unit}, with ± one std", "", x_label="{unit}", y_label="mean ± std",
                   flag=_off_center)

class UncenteredInput(Rule):
    """## What it does
    Measures the per-channel (images: dim 1 of an NCHW batch) or per-feature mean and std of every
    floating-point model input, and reports inputs where most channels have |mean| > 0.5 std.

    ## Why is this bad?
    With inputs that are all positive (pixels in [0, 1]), every weight of a first-layer unit receives a
    gradient of the same sign, so the weights can only move together, in a zig-zag (LeCun et al.,
    Efficient BackProp). An offset also shifts the pre-activations of the first layer away from where
    the activations are useful (and saturates sigmoid/tanh).

    Integer inputs (token ids) are not checked, nor inputs the model normalizes itself before anything
    else reads them (`(x - mean) / std` first thing in forward, an input BatchNorm).

    ## Options
    - `mean_to_std` (default 0.5): a channel is off-center when |mean| > this times its std.
    - `channel_fraction` (default 0.5): report when more than this fraction of channels are off-center.

    ## Fix safety
    Unsafe: inserts an input normalization (the mean and std measured on the batch) in front of the
    model; better done in the data pipeline, where the message's `Normalize(...)` goes.
    """

    code = "NN301"
    name = "uncentered-input"
    severity = "warning"
    summary = "model inputs are not zero-centered (per-channel |mean| > 0.5 std)"
    reads = frozenset({"inputs", "forward"})
    about = "input"
    chart = MEAN_CHART
    options = {"mean_to_std": 0.5, "channel_fraction": 0.5}
    fixable = "unsafe"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
            batch = torch.rand(32, 3, 16, 16)   # pixels in [0, 1]: every channel's mean is 0.5
            """, module=''),
        Healthy("""
            model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
            pixels = torch.rand(32, 3, 16, 16)
            batch = (pixels - 0.5) / 0.29       # Normalize(mean, std), measured on the data
            """),
    )

    def check(self, trace):
        for rec in trace.inputs:
            if not rec.is_float or not rec.channel_mean or rec.summary.nonfinite:
                continue
            if not judged_input(trace, rec):
                continue   # normalized by the model first, read by no weight layer as a signal, or an InstanceNorm follows
            means, stds = rec.channel_mean, rec.channel_std
            off = [i for i, (m, s) in enumerate(zip(means, stds)) if abs(m) > self.opts["mean_to_std"] * s and abs(m) > 1e-6]
            if len(off) / len(means) <= self.opts["channel_fraction"]:
                continue
            what = "channel" if rec.channel_dim == 1 and len(rec.summary.shape) >= 3 else "feature"
            if len(means) <= 4:
                detail = (f"{what} means {', '.join(fmt(m) for m in means)} "
                          f"(std {', '.join(fmt(s) for s in stds)})")
                suggestion = normalize_call(means, stds)
            else:
                # Many features (a flattened image, a table): one overall mean/std is the readable advice.
                overall = rec.summary
                detail = (f"{len(off)}/{len(means)} {what}s off-center; overall mean {fmt(overall.mean)} "
                          f"(std {fmt(overall.std)})")
                suggestion = normalize_call([overall.mean], [overall.std]) + f" or per {what}"
            yield self.diagnostic(
                "",
                f"{rec.path}: {detail}: subtract the mean, e.g. {suggestion}",
                location=input_location(trace),
                evidence={"input": rec.path, "channel_dim": rec.channel_dim, "mean": means, "std": stds,
                          "off_center": len(off), "channels": len(means)},
                fix=normalize_input_fix(rec),
            )
