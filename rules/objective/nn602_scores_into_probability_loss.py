from __future__ import annotations

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import fmt
from nnlint.rules.objective._loss import (failure_evidence, in_unit_interval, is_simplex, log_probabilities, loss_calls,
                                          loss_name, name_of, producer, where)
from nnlint.trace import vocab
from nnlint.trace.records import LossCall, Trace


class ScoresIntoProbabilityLoss(Rule):
    """## What it does
    Reads the tensor each loss call received. For the losses that take probabilities or
    log-probabilities as they are (`nll_loss` / `nn.NLLLoss`, `binary_cross_entropy` / `nn.BCELoss`), it
    fires when that tensor is not what the loss is written for:
    - `nll_loss`: the rows' mean logsumexp is further than `max_logsumexp` (0.1) from 0, the value every
      row of log-probabilities has (`log_softmax` gives exactly 0): the input is raw scores (measured 2.3
      on a head's logits) or probabilities not yet logged (their rows sum to 1);
    - `binary_cross_entropy`: values outside [0, 1] (torch raises on them: the call is not made and this
      finding explains the failure), or values inside [0, 1] that come straight from a weight layer, with
      no sigmoid in between (they leave the interval as soon as the layer moves).

    ## Why is this bad?
    `nll_loss` just picks `-input[target]`: on raw scores it is unbounded below, so the loss falls by
    growing the target's score forever, not by learning a distribution (no peer tool notices: the loss
    even decreases). `binary_cross_entropy` takes `log(input)`: on scores it raises, or yields NaN once
    an output crosses 0 or 1.

    ## Options
    - `max_logsumexp` (default 0.1): how far from 0 the mean row logsumexp of an `nll_loss` input may be.

    ## Fix safety
    No automatic fix: the loss is the user's code. Use `cross_entropy` on the logits (it applies
    `log_softmax` itself) or put `log_softmax(dim=1)` before `nll_loss`; `nn.BCEWithLogitsLoss()` on the
    logits instead of `nn.BCELoss()`.

    ## References
    - PyTorch documentation, `torch.nn.NLLLoss`: "The input given through a forward call is expected to
      contain log-probabilities of each class."
    """

    code = "NN602"
    name = "scores-into-probability-loss"
    severity = "error"
    summary = "NLLLoss receives values that are not log-probabilities, or BCELoss values that are not probabilities"
    reads = frozenset({"loss", "forward"})
    options = {"max_logsumexp": 0.1}
    about = "model"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))   # logits
            batch = torch.randn(64, 32)
            target = torch.randint(0, 10, (64,))
            loss_fn = nn.NLLLoss()                   # expects log-probabilities
            """, module='2'),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10), nn.LogSoftmax(dim=1))
            batch = torch.randn(64, 32)
            target = torch.randint(0, 10, (64,))
            loss_fn = nn.NLLLoss()
            """, note="""
            or keep the logits and use `nn.CrossEntropyLoss()`, which is `log_softmax` and `nll_loss` in one.
            """),
    )

    def check(self, trace):
        reported: set[str] = set()
        for call in loss_calls(trace):
            if call.expects == "log_probabilities" and not log_probabilities(call, self.opts["max_logsumexp"]):
                finding = self._not_log_probabilities(trace, call)
            elif call.expects == "probabilities":
                finding = self._not_probabilities(trace, call)
            else:
                continue
            if finding is not None and finding.module not in reported:
                reported.add(finding.module)
                yield finding

    def _not_log_probabilities(self, trace: Trace, call: LossCall):
        made_by = producer(trace, call)
        module, location = where(trace, made_by.op if not made_by.in_loss_fn else None, call)
        x = call.input
        lse = x.row_logsumexp
        if is_simplex(call):
            what = (f"probabilities, not their log (rows sum to {x.row_sum[0]:.4f}..{x.row_sum[1]:.4f}): take "
                    "log_softmax instead of softmax")
        else:
            what = (f"raw scores (values in [{fmt(x.min)}, {fmt(x.max)}]): nll_loss only picks -input[target], so it is "
                    "unbounded below and falls by inflating the target's score, not by learning a distribution; put "
                    "log_softmax(dim=1) before it, or use cross_entropy on the logits")
        source = f" from {name_of(trace, made_by.op)}" if made_by.op is not None and not made_by.in_loss_fn else ""
        message = (f"{loss_name(call)} expects log-probabilities, whose rows have logsumexp 0, but its input{source} has "
                   f"mean row logsumexp {fmt(lse)}: these are {what}")
        return self.diagnostic(module, message, location=location,
                               evidence={"loss": call.loss, "row_logsumexp": lse, "min": x.min, "max": x.max,
                                         "row_sum": x.row_sum, **failure_evidence(call)})

    def _not_probabilities(self, trace: Trace, call: LossCall):
        made_by = producer(trace, call)
        x = call.input
        if in_unit_interval(call):
            # In [0, 1] by chance: only a weight layer's raw output, with no sigmoid, is certainly wrong.
            if made_by.op is None or made_by.in_loss_fn or not vocab.is_weight_layer(made_by.op):
                return None
            why = (f"its values lie in [{fmt(x.min)}, {fmt(x.max)}] only by chance: they come straight from "
                   f"{name_of(trace, made_by.op)} with no sigmoid, and leave [0, 1] as soon as it trains")
        else:
            raised = "; torch raises on them, so the loss was not computed" if call.raised else ""
            why = f"its input has values in [{fmt(x.min)}, {fmt(x.max)}], outside [0, 1]{raised}"
        module, location = where(trace, made_by.op if not made_by.in_loss_fn else None, call)
        message = (f"{loss_name(call)} expects probabilities, but {why}; use nn.BCEWithLogitsLoss() on the logits "
                   "(it applies the sigmoid itself, stably)")
        return self.diagnostic(module, message, location=location,
                               evidence={"loss": call.loss, "min": x.min, "max": x.max, **failure_evidence(call)})
