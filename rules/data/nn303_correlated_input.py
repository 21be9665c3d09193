from __future__ import annotations

from nnlint.fix.kinds.whiten_input import WhitenInput, WhitenInputParams
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import fmt, input_location
from nnlint.trace import ops as opnames
from nnlint.trace.graph import Graph

WHITEN_CODE = ("X = train_features; mu = X.mean(0); L, U = torch.linalg.eigh(torch.cov((X - mu).T)); "
               "W = U @ torch.diag((L + 1e-5).rsqrt()) @ U.T; x = (x - mu) @ W")


# What an input may pass through on its way to the dense layer that reads it: views, casts, an
# in-model standardization, a norm (none of them decorrelates).
TO_DENSE_LAYER = opnames.PASSTHROUGH | opnames.NORM_OPS | {"sub", "div", "dropout"}


def feeds_dense_layer(graph: Graph, serial: int) -> bool:
    """True when a Linear (or a matmul with a weight) reads this input as features. A mask multiplied
    in, or a signal a conv reads, is not a feature vector, and whitening is not the advice for it."""
    dense = lambda o: o.kind in ("linear", "bilinear") or (o.kind == "matmul" and o.weight is not None)  # noqa: E731
    return graph.reaches(serial, dense, through=lambda o: o.kind in TO_DENSE_LAYER)


class CorrelatedInput(Rule):
    """## What it does
    Measures the correlation between the features of every 2-D floating-point model input
    (samples x features: tabular data, embeddings, hand-made features) that a dense layer (`Linear`)
    reads, and reports one whose mean absolute off-diagonal correlation exceeds 0.5. Image batches
    (3-D and more) are not checked: their neighbouring pixels are correlated by nature, and
    convolutions are built for it; neither are 2-D inputs that are not fed to a dense layer (a float
    attention mask, a 1-D signal a convolution reads).

    ## Why is this bad?
    Correlated inputs make the Hessian of the first layer's loss ill-conditioned: gradient descent
    zig-zags along the few directions of large variance and crawls along the others (LeCun et al.,
    Efficient BackProp, 1998, sec. 4.3: inputs should be shifted to zero mean, decorrelated, and
    scaled to equal covariance). Strongly correlated features are also largely redundant.

    ## Options
    - `max_mean_abs_correlation` (default 0.5): report above this mean |correlation| between features.
    - `min_samples` (default 32): the batch must have at least this many rows for the correlation to be
      measured rather than noise. Measured on independent Gaussian features, largest of 20 draws: at 16
      rows 0.56 for 2 features and 0.26 for 10; at 32 rows 0.36 and 0.18; at 64 rows 0.29 and 0.13.
      Features driven by a shared factor with correlation rho measure rho (0.50 at rho 0.5, 0.88 at
      0.9, 256 rows), and a one-hot categorical with 5 levels measures 0.25, under the threshold.

    ## Fix safety
    Unsafe: inserts a whitening of the input (computed on the sample batch) in front of the model. It
    is better computed on the whole training set, in the data pipeline.

    ## References
    - LeCun, Bottou, Orr, Müller, "Efficient BackProp" (1998), sec. 4.3, "Normalizing the inputs".
    """

    code = "NN303"
    name = "correlated-input"
    severity = "info"
    summary = "features of a 2-D input are strongly correlated (mean |correlation| > 0.5)"
    reads = frozenset({"inputs", "forward"})
    about = "input"
    options = {"max_mean_abs_correlation": 0.5, "min_samples": 32}
    fixable = "unsafe"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 1))
            factor = torch.randn(256, 1)
            batch = 0.9 * factor + 0.3 * torch.randn(256, 12)   # 12 features driven by one latent factor
            """, module=''),
        Healthy("""
            model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 1))
            batch = torch.randn(256, 12)                         # independent features
            """, note="""
            Whiten the features on the training set (PCA/ZCA), so that their covariance is the identity:
            ```python
            mu = X.mean(0)
            L, U = torch.linalg.eigh(torch.cov((X - mu).T))
            W = U @ torch.diag((L + 1e-5).rsqrt()) @ U.T    # ZCA
            x = (x - mu) @ W
            ```
            or drop the redundant features.
            """),
    )

    def check(self, trace):
        graph = Graph.of(trace)
        for rec in trace.inputs:
            corr = rec.mean_abs_correlation
            shape = rec.summary.shape
            if not rec.is_float or corr is None or len(shape) != 2 or rec.summary.nonfinite:
                continue
            samples, features = shape
            if samples < self.opts["min_samples"] or corr <= self.opts["max_mean_abs_correlation"]:
                continue
            if not feeds_dense_layer(graph, rec.serial):
                continue
            yield self.diagnostic(
                "",
                f"{rec.path}: its {features} features are strongly correlated: mean |correlation| between "
                f"features {fmt(corr)} over {samples} samples (threshold {fmt(self.opts['max_mean_abs_correlation'])}); "
                f"decorrelate them on the training set (PCA/ZCA whitening: {WHITEN_CODE}) or drop redundant features",
                location=input_location(trace),
                evidence={"input": rec.path, "mean_abs_correlation": corr, "features": features,
                          "samples": samples, "threshold": self.opts["max_mean_abs_correlation"]},
                fix=WhitenInput.make("", f"whiten {rec.path} (ZCA, covariance measured on the batch) before the model",
                                     WhitenInputParams(rec.path)),
            )
