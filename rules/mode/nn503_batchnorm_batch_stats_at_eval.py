from __future__ import annotations

from nnlint.fix.kinds.keep_running_stats import KeepRunningStats, KeepRunningStatsParams
from nnlint.registry import Faulty, Healthy, Rule


class BatchNormBatchStatsAtEval(Rule):
    """## What it does
    Reports every BatchNorm layer (`BatchNorm1d/2d/3d`, `SyncBatchNorm`, the lazy variants and
    subclasses) built with `track_running_stats=False`.

    ## Why is this bad?
    Without running statistics, BatchNorm has nothing to use in eval mode but the statistics of the
    batch it is given: `model.eval()` does not change what it does. Test predictions then depend on
    which other samples share the batch and are wrong for a batch of one class or one domain; a
    single-sample batch fails (`BatchNorm1d` on `(1, C)`) or is normalized on its own, like
    InstanceNorm (`BatchNorm2d`). Serving a model one request at a time no longer gives the
    predictions it was validated with.

    InstanceNorm's default `track_running_stats=False` is intended (it normalizes each sample on its
    own) and is not reported.

    ## Options
    None.

    ## Fix safety
    Safe: registers the running mean/variance buffers (mean 0, variance 1), which training then
    fills; the training-mode forward is unchanged.
    """

    code = "NN503"
    name = "batchnorm-batch-stats-at-eval"
    severity = "warning"
    summary = "BatchNorm built with track_running_stats=False uses batch statistics in eval mode"
    reads = frozenset({"modules"})
    cause = ("type",)
    fixable = "safe"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Conv2d(3, 16, 3, bias=False), nn.BatchNorm2d(16, track_running_stats=False), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
            batch = torch.randn(16, 3, 16, 16)
            """, module='1'),
        Healthy("""
            model = nn.Sequential(nn.Conv2d(3, 16, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
            batch = torch.randn(16, 3, 16, 16)
            """, note="""
            Use GroupNorm/LayerNorm if batch-independent normalization is what you want.
            """),
    )

    def check(self, trace):
        for name, rec in trace.modules.items():
            if "BatchNorm" not in rec.type or rec.attrs.get("track_running_stats") is not False:
                continue
            features = rec.attrs.get("num_features")
            built = f"{rec.type}({features if features is not None else '...'}, track_running_stats=False)"
            yield self.diagnostic(
                name,
                f"{built} normalizes with each batch's own statistics in eval mode too: test predictions "
                f"depend on the other samples in the batch, and a single-sample batch fails or is normalized on its own; keep running "
                f"statistics: {rec.type}({features if features is not None else '...'}) (track_running_stats=True)",
                location=rec.location,
                evidence={"type": rec.type, "num_features": features, "track_running_stats": False,
                          "momentum": rec.attrs.get("momentum")},
                fix=KeepRunningStats.make(name, f"build {name} with track_running_stats=True (register running_mean/running_var)",
                                          KeepRunningStatsParams(features, rec.attrs.get("momentum"))),
            )
