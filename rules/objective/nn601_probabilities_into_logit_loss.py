from __future__ import annotations

import math

from nnlint.fix.kinds.drop_squash import DropSquash, DropSquashParams
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import call_site, fmt, is_functional
from nnlint.rules.objective._loss import (Producer, failure_evidence, in_unit_interval, is_simplex, loss_calls,
                                          loss_name, name_of, producer, where)
from nnlint.trace.records import LossCall, Trace


class ProbabilitiesIntoLogitLoss(Rule):
    """## What it does
    Reads the tensor each loss call received. For the losses that apply their own softmax or sigmoid
    (`cross_entropy` / `nn.CrossEntropyLoss`, `binary_cross_entropy_with_logits` /
    `nn.BCEWithLogitsLoss`, `nn.MultiLabelSoftMarginLoss`), it fires when that tensor is already
    probabilities: for `cross_entropy`, every row is non-negative and sums to 1 (within 1e-4), or the op
    that made it is a softmax or a sigmoid; for the binary losses, every value lies in [0, 1] and a
    sigmoid (or softmax) made it. The op is found through the trace's lineage, so the finding names the
    module (`nn.Softmax` at the end of a `Sequential`) or the functional call and its line.

    Log-probabilities into `cross_entropy` (`log_softmax` then `CrossEntropyLoss`) are not reported:
    `log_softmax` is idempotent, so the loss and its gradients are exactly those of the logits.

    ## Why is this bad?
    The loss squashes a second time. After a softmax, the values `cross_entropy` sees lie in [0, 1],
    so the logits it normalizes differ by at most 1 and the loss can never go below
    `log(1 + (C - 1) / e)` (1.46 for 10 classes, where a perfect model should reach 0); its gradient is
    damped by the softmax's Jacobian, so training crawls and stalls far from a good fit. A sigmoid before
    `BCEWithLogitsLoss` is the same: the loss of a confident right answer stays at 0.31 (positives) and
    0.69 (negatives). The message quotes the floor for the batch.

    ## Options
    None.

    ## Fix safety
    Unsafe: the fix removes the final softmax/sigmoid (`nn.Softmax(dim=1)` becomes `nn.Identity()`, a
    `torch.softmax(x, dim=1)` call returns `x`), so the model returns logits; code that reads its
    output as probabilities must apply the softmax itself (`logits.softmax(-1)` at inference). The
    alternative, when the model must return probabilities, is the probability loss: `nn.NLLLoss()` on
    `torch.log(p)`, `nn.BCELoss()`.

    ## References
    - PyTorch documentation, `torch.nn.CrossEntropyLoss`: "The input is expected to contain the
      unnormalized logits for each class."
    """

    code = "NN601"
    name = "probabilities-into-logit-loss"
    severity = "error"
    summary = "a loss that applies its own softmax/sigmoid receives probabilities: a double squash"
    reads = frozenset({"loss", "forward"})
    fixable = "unsafe"
    about = "model"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10), nn.Softmax(dim=1))
            batch = torch.randn(64, 32)
            target = torch.randint(0, 10, (64,))
            loss_fn = nn.CrossEntropyLoss()          # applies log_softmax itself
            """, module='3'),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))   # returns logits
            batch = torch.randn(64, 32)
            target = torch.randint(0, 10, (64,))
            loss_fn = nn.CrossEntropyLoss()
            """, note="""
            Apply the softmax where probabilities are needed: `model(x).softmax(dim=1)` at inference.
            """),
    )

    def check(self, trace):
        reported: set[tuple] = set()
        for call in loss_calls(trace):
            if call.expects != "logits":
                continue
            made_by = producer(trace, call)
            if not self._squashed(call, made_by):
                continue
            module, location = where(trace, made_by.op if not made_by.in_loss_fn else None, call)
            key = (module, made_by.kind, made_by.in_loss_fn)
            if key in reported:
                continue
            reported.add(key)
            yield self._report(trace, call, made_by, module, location)

    @staticmethod
    def _squashed(call: LossCall, made_by: Producer) -> bool:
        if call.family == "class":
            return is_simplex(call) or made_by.kind in ("softmax", "sigmoid")
        return in_unit_interval(call) and made_by.kind in ("sigmoid", "softmax")

    def _report(self, trace: Trace, call: LossCall, made_by: Producer, module: str, location):
        x = call.input
        squash = made_by.kind or "softmax"
        if made_by.in_loss_fn:
            who = f"the loss function's {squash}()"
        elif made_by.op is not None:
            who = name_of(trace, made_by.op)
        else:
            who = "the model"
        own = "log_softmax" if call.family == "class" else "sigmoid"
        at_init = f"; {fmt(call.value, 3)} at init" if call.value is not None else ""
        if call.family == "class":
            classes = call.num_classes or x.shape[-1]
            floor = math.log(1 + (classes - 1) / math.e)
            shown = (f"rows sum to {x.row_sum[0]:.4f}..{x.row_sum[1]:.4f}" if is_simplex(call)
                     else f"values in [{fmt(x.min)}, {fmt(x.max)}]")
            bound = f"log(1 + {classes - 1}/e) = {fmt(floor, 3)} for {classes} classes (a perfect model reaches 0{at_init})"
            instead = "keep it and use F.nll_loss(torch.log(p), target)"
        else:
            rate = call.target.mean if call.target is not None else 0.5
            floor = rate * math.log1p(math.exp(-1)) + (1 - rate) * math.log(2)
            shown = f"values in [{fmt(x.min)}, {fmt(x.max)}]"
            bound = (f"{fmt(floor, 3)} on this batch (0.313 for a positive label, 0.693 for a negative; a perfect "
                     f"model reaches 0{at_init})")
            instead = "keep it and use nn.BCELoss()"
        drop = "remove it from the loss function" if made_by.in_loss_fn else \
            f"remove the final {squash} from the training path (apply it at inference)"
        message = (f"{who} turns the output into probabilities ({shown}) and {loss_name(call)} applies its own {own} "
                   f"on top: the loss can never go below {bound}, and its gradient is damped; {drop}, or {instead}")
        evidence = {"loss": call.loss, "squash": squash, "min": x.min, "max": x.max, "row_sum": x.row_sum,
                    "loss_floor": floor, "loss_value": call.value, **failure_evidence(call)}
        return self.diagnostic(module, message, location=location, evidence=evidence,
                               fix=self._fix(trace, made_by, squash))

    @staticmethod
    def _fix(trace: Trace, made_by: Producer, squash: str):
        op = made_by.op
        if made_by.in_loss_fn or op is None:
            return None
        rec = trace.modules.get(op.module)
        functional = is_functional(trace, op)
        if not functional and sum(1 for c in trace.calls if c.module == op.module and c.phase == "train") > 1:
            return None   # the same Softmax module also runs elsewhere (attention): removing it changes that too
        module_type = "" if functional or rec is None else rec.type
        return DropSquash.make(op.module, f"remove the final {squash} so that the model returns logits "
                                          "(apply it at inference)",
                               DropSquashParams(op.func, call_site(trace, op), module_type))
