from __future__ import annotations

import math

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rules.objective._loss import failure_evidence, head, loss_calls, loss_name, producer, where
from nnlint.trace.objective import broadcast_shape, shape_text
from nnlint.trace.records import LossCall, Trace


class TargetBroadcast(Rule):
    """## What it does
    For the element-wise losses (`mse_loss`, `l1_loss`, `smooth_l1_loss`, `huber_loss`, the binary
    cross-entropies and their `nn` modules), compares the shapes of the input and the target each call
    received. It fires when they differ and broadcast to more elements than either has (an output of
    shape (N, 1) against a target of shape (N,) gives an N x N loss), or do not broadcast at all, or
    differ where the loss demands equal shapes (`BCEWithLogitsLoss` raises: this finding explains it).
    One side broadcast over the other (a (1, D) target for an (N, D) output, an (N, 1, D) prediction
    against (N, T, D) targets) compares what it says and is left alone.

    ## Why is this bad?
    `mse_loss` of (16, 1) against (16,) compares every output with every target: 256 terms, whose
    minimum is the batch mean, whatever the input. Training runs, the loss falls a little, and the
    model learns to predict a constant. torch only warns ("Using a target size that is different to
    the input size"), once, among other warnings.

    ## Options
    None.

    ## Fix safety
    No automatic fix: the reshape belongs in the user's data or loss code. Make the shapes equal:
    `target.view_as(output)`, or `output.squeeze(-1)` when the target is (N,).
    """

    code = "NN603"
    name = "target-broadcast"
    severity = "error"
    summary = "an element-wise loss gets an output and a target whose shapes broadcast to a larger shape"
    reads = frozenset({"loss", "forward"})
    about = "model"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))   # output (64, 1)
            batch = torch.randn(64, 8)
            target = torch.randn(64)                 # (64,): mse_loss broadcasts to (64, 64)
            loss_fn = nn.MSELoss()
            """, module='2'),
        Healthy("""
            model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
            batch = torch.randn(64, 8)
            target = torch.randn(64, 1)              # the output's shape
            loss_fn = nn.MSELoss()
            """),
    )

    def check(self, trace):
        reported: set[str] = set()
        for call in loss_calls(trace):
            if call.family == "class" or call.target is None or call.target.shape == call.input.shape:
                continue
            finding = self._report(trace, call)
            if finding is not None and finding.module not in reported:
                reported.add(finding.module)
                yield finding

    def _report(self, trace: Trace, call: LossCall):
        x, t = call.input.shape, call.target.shape
        both = broadcast_shape(x, t)
        if both is None:
            what = "do not broadcast, so torch raises"
        elif math.prod(both) > max(math.prod(x), math.prod(t)):
            what = (f"broadcast to {shape_text(both)}: {math.prod(both)} terms instead of {math.prod(x)}, each output "
                    "compared with every target, so the loss is minimized by predicting the batch mean and the model "
                    "learns a constant (torch only warns)")
        elif call.raised:
            what = "differ, and this loss demands equal shapes, so torch raises"
        else:
            return None   # a target that broadcasts over the output (a constant): the loss is what it says
        made_by = producer(trace, call)
        op = head(trace, call) or made_by.op
        module, location = where(trace, op if not made_by.in_loss_fn else None, call)
        fix = "target.view_as(output)" if math.prod(x) == math.prod(t) else f"a target of the output's shape {shape_text(x)}"
        message = (f"{loss_name(call)} gets an output of shape {shape_text(x)} and a target of shape {shape_text(t)}, which "
                   f"{what}; make the shapes equal: {fix} (or reshape the target where the batch is built)")
        return self.diagnostic(module, message, location=location,
                               evidence={"loss": call.loss, "input_shape": list(x), "target_shape": list(t),
                                         "broadcast_shape": list(both) if both is not None else None,
                                         **failure_evidence(call)})
