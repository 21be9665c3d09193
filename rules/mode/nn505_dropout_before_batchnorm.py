from __future__ import annotations

from typing import Optional

from nnlint.fix.kinds.move_dropout import MoveDropout, MoveDropoutParams
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import active_dropouts, call_site, describe_dropout, fmt, location_for, once_per_site
from nnlint.trace import ops as opnames
from nnlint.trace.graph import Graph
from nnlint.trace.records import OpRecord

# What a dropped signal passes through unchanged in kind on its way to the BatchNorm: views, a
# ReLU (relu(dropout(x)) == dropout(relu(x))), pooling, another dropout, and a channel concatenation
# (DenseNet: the dropped new features go straight into the next layer's BatchNorm).
CARRIES_DROPOUT = opnames.PASSTHROUGH | opnames.RELU_FAMILY | {"pool", "dropout", "cat"}


def batchnorm_fed_by(graph: Graph, op: OpRecord) -> Optional[OpRecord]:
    """The first BatchNorm call that `op`'s output reaches without passing a weight layer or an add."""
    return graph.first(op, lambda o: o.kind == "batch_norm", through=lambda o: o.kind in CARRIES_DROPOUT)


def input_summary(graph: Graph, op: OpRecord):
    """The statistics of the tensor the dropout received (taken on the op that produced it)."""
    for s in op.inputs:
        producer = graph.producer.get(s)
        if producer is not None and producer.out is not None:
            return producer.out
    return None


class DropoutBeforeBatchNorm(Rule):
    """## What it does
    Follows every dropout active in training to what it feeds, through views, ReLUs, pooling and
    channel concatenation, and reports a dropout whose output reaches a BatchNorm layer directly. The
    message quotes the variance shift measured on the batch: the variance of the dropout's output (what
    BatchNorm's running statistics record in training) over that of its input (what BatchNorm sees in
    eval mode, where dropout is off).

    ## Why is this bad?
    Inverted dropout scales the kept activations by 1/(1-p), which keeps their mean but raises their
    variance: by 1/(1-p) for a centered signal (2x for p=0.5), more for a ReLU's output
    (E[x^2]/(1-p) - E[x]^2 over E[x^2] - E[x]^2: 2.5x for p=0.5 on a rectified Gaussian).
    BatchNorm's running variance is accumulated on that inflated signal; in eval mode the dropout is
    off, the variance is smaller, and BatchNorm normalizes with the wrong statistics: every output
    shrinks, and the error compounds through the following layers. Li et al. (2019) measure this
    "variance shift" and show that the test accuracy of such networks improves when dropout is moved
    after the last BatchNorm.

    A dropout followed by a weight layer and then a BatchNorm (Wide ResNet's conv-dropout-conv-bn) is
    not reported: by Li et al.'s analysis the shift through a weight layer shrinks as the layer gets
    wider, which is why Wide ResNet tolerates it.

    ## Options
    None.

    ## Fix safety
    Unsafe: moving the dropout after the last BatchNorm (or removing it) changes the architecture.

    ## References
    - Li, Chen, Hu, Yang, "Understanding the Disharmony between Dropout and Batch Normalization by
      Variance Shift" (CVPR 2019).
    """

    code = "NN505"
    name = "dropout-before-batchnorm"
    severity = "info"
    summary = "dropout feeds a BatchNorm layer (variance shift between train and eval)"
    reads = frozenset({"forward"})
    cause = ("p",)
    fixable = "unsafe"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Conv2d(3, 16, 3, bias=False), nn.ReLU(), nn.Dropout(0.5), nn.BatchNorm2d(16),
                                  nn.Conv2d(16, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
            batch = torch.randn(16, 3, 16, 16)
            """, module='2'),
        Healthy("""
            model = nn.Sequential(nn.Conv2d(3, 16, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Dropout(0.5), nn.Linear(16, 10))   # dropout after the last BatchNorm
            batch = torch.randn(16, 3, 16, 16)
            """),
    )

    def check(self, trace):
        graph = Graph.of(trace)
        for op in once_per_site(active_dropouts(graph)):
            bn = batchnorm_fed_by(graph, op)
            if bn is not None:
                yield self._diagnostic(trace, graph, op, bn)

    def _diagnostic(self, trace, graph: Graph, op: OpRecord, bn: OpRecord):
        p = op.args.get("p")
        before, after = input_summary(graph, op), op.out
        shift = None
        if before is not None and after is not None and before.var > 0:
            shift = after.var / before.var
        what = describe_dropout(trace, op)
        measured = (f"on this batch the variance it passes on is {fmt(shift)}x its input's, so `{bn.module}`'s "
                    f"running variance is {fmt(shift)}x what it sees in eval mode" if shift is not None else
                    f"it raises the variance `{bn.module}` records in training by at least {fmt(1 / (1 - p) if p < 1 else float('inf'))}x")
        return self.diagnostic(
            op.module,
            f"{what} feeds BatchNorm `{bn.module}`: {measured} (variance shift); put the dropout after the "
            f"last BatchNorm (e.g. before the classifier's Linear), or remove it: BatchNorm already regularizes",
            location=location_for(trace, op.module, op),
            evidence={"p": p, "batchnorm": bn.module, "variance_shift": shift,
                      "train_var": after.var if after is not None else None,
                      "eval_var": before.var if before is not None else None},
            fix=MoveDropout.make(op.module, f"move {what} after the last BatchNorm (or remove it)",
                                 MoveDropoutParams(bn.module, p, call_site(trace, op))),
        )
