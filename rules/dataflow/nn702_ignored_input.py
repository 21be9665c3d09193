from __future__ import annotations

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import input_location, is_all_off_activation
from nnlint.trace.graph import Graph
from nnlint.trace.records import OpRecord, Trace

# How many ops the walk from an input to the outputs visits at most (only when a finding is made).
_WALK = 200000


class IgnoredInput(Rule):
    """## What it does
    Finds inputs the model never reads: a tensor of the batch, a mask, or a slice of a feature tensor
    with no influence on any output, measured in eval mode on 2 samples of the batch.

    - Float inputs: the gradient of a fixed random projection of every output with respect to the
      input is exactly zero everywhere (the input is ignored), or over a run of features (the input's
      channel dim: channels of an image, features of a table or a sequence): "features 16-31 have no
      influence" is a two-tower model that hands both towers the same half of its input.
    - Integer and bool inputs (token ids, attention masks): sample 0's values are swapped for another
      sample's (so they stay valid); when every output stays bit-identical, the forward never reads it.

    Not reported: features that are zero in every sample of the batch (padding columns), inputs that
    are the same in every sample (nothing to vary), and an input cut off from every output by an
    all-zero weight (NN101) or a ReLU layer with every unit off (NN203): those rules report the
    cause. When no input has any influence at all, the model's output is constant: the no-gradient
    findings on its parameters (NN406) are a consequence.
    Nor a model whose outputs are constant only in eval mode while its traced training step's vary,
    with BatchNorm layers keeping running statistics: at init those statistics (mean 0, variance 1)
    do not renormalize, and Hugging Face MobileViT (BatchNorm weights ~ N(0, 0.02)) measures exactly
    0 logits in eval mode at init; a property of the untrained running statistics, not of forward.

    ## Why is this bad?
    Information the model was meant to use is thrown away: an attention mask that is passed but never
    applied lets padding into every average, a second input forgotten in forward is silently dropped,
    a slice taken twice leaves the other half unread. Nothing fails; the model just learns less.

    ## Options
    None.

    ## Fix safety
    No automatic fix: use the input in forward (apply the mask, pass the context), or stop passing it.
    """

    code = "NN702"
    name = "ignored-input"
    severity = "warning"
    summary = "an input, a mask or a slice of features has no influence on any output"
    reads = frozenset({"ignored_input"})
    about = "input"

    examples = (
        Faulty("""
            class TwoInputs(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = nn.Linear(32, 10)
                    self.context = nn.Linear(8, 10)

                def forward(self, x, context):
                    return self.fc(x)              # context is passed, never used


            model = TwoInputs()
            batch = (torch.randn(16, 32), torch.randn(16, 8))
            """, module=""),
        Healthy("""
            class TwoInputs(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = nn.Linear(32, 10)
                    self.context = nn.Linear(8, 10)

                def forward(self, x, context):
                    return self.fc(x) + self.context(context)


            model = TwoInputs()
            batch = (torch.randn(16, 32), torch.randn(16, 8))
            """),
    )

    def check(self, trace: Trace):
        result = trace.probes.get("ignored_input")
        if result is None or not result.tested:
            return
        if result.outputs_constant and _eval_collapse(trace):
            return   # constant only in eval mode, where BatchNorm's running statistics are still at init
        for found in result.ignored:
            if found.whole and _cut_off(trace, found.path):
                continue   # an all-zero layer or an all-off ReLU cuts every path: NN101/NN203 report it
            if found.whole:
                how = ("swapping sample 0's values for another sample's leaves every output bit-identical"
                       if found.how == "swapped" else
                       "the gradient of every output with respect to it is exactly zero")
                message = f"{found.path} has no influence on any output ({how}): use it in forward, or stop passing it"
                if result.outputs_constant:
                    message += ("; no input has any: the output does not depend on the batch at all, and the "
                                "no-gradient findings on the parameters (NN406) follow from it")
            else:
                spans = ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in found.features[:6])
                count = sum(b - a + 1 for a, b in found.features)
                unit = "channel" if found.feature_dim == 1 and _is_image(trace, found.path) else "feature"
                message = (f"{unit}s {spans} of {found.path} ({count} of {found.num_features}, dim {found.feature_dim}) have "
                           "no influence on any output (their gradient is exactly zero): the forward never reads them "
                           "(one slice taken twice, or a slice bound off?); use them, or drop them from the batch")
            yield self.diagnostic(
                "", message, location=input_location(trace),
                evidence={"input": found.path, "whole": found.whole, "features": [list(r) for r in found.features],
                          "feature_dim": found.feature_dim, "num_features": found.num_features, "how": found.how,
                          "outputs_constant": result.outputs_constant},
            )


def _eval_collapse(trace: Trace) -> bool:
    """The eval-mode outputs are constant, but the traced training step's outputs vary and the model
    has BatchNorm layers with running statistics: at init those are mean 0 and variance 1, so layers
    whose scale starts small (Hugging Face MobileViT's BatchNorm weights ~ N(0, 0.02)) shrink the eval
    signal to exactly 0 after a few dozen of them, while in training each renormalizes by the batch.
    The probe, run in eval mode, then sees no input influence that training has."""
    graph = Graph.of(trace)
    running = any(op.kind == "batch_norm" and (trace.modules.get(op.module) is None
                                               or trace.modules[op.module].attrs.get("track_running_stats") is not False)
                  for op in graph.ops)
    varies = any(op.out is not None and op.out.std > 0 and not op.out.nonfinite
                 for op in graph.ops if graph.is_model_output(op))
    return running and varies


def _is_image(trace: Trace, path: str) -> bool:
    rec = next((r for r in trace.inputs if r.path == path), None)
    return rec is not None and len(rec.summary.shape) >= 4


def _cut_off(trace: Trace, path: str) -> bool:
    """Every path from the input to the outputs in the traced step crosses an op that multiplies by an
    all-zero weight or a ReLU with every unit off."""
    rec = next((r for r in trace.inputs if r.path == path), None)
    if rec is None:
        return False
    graph = Graph.of(trace)
    frontier, seen = [rec.serial], {rec.serial}
    blocked = False
    while frontier and len(seen) < _WALK:
        serial = frontier.pop()
        if serial in graph.output_serials:
            return False
        for op in graph.consumers.get(serial, ()):
            if _blocks(trace, graph, op):
                blocked = True
                continue
            for s in op.outputs:
                if s not in seen:
                    seen.add(s)
                    frontier.append(s)
    return blocked and not frontier


def _blocks(trace: Trace, graph: Graph, op: OpRecord) -> bool:
    if is_all_off_activation(op):
        return True
    params = [trace.params.get(graph.param_serials[s]) for s in op.inputs if s in graph.param_serials]
    return op.kind in ("linear", "conv", "matmul", "mul", "bilinear") and \
        any(p is not None and p.all_zero and p.attr != "bias" for p in params)
