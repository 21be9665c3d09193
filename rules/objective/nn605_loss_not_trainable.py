from __future__ import annotations

import math
from typing import Optional

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rules.objective._loss import loss_calls
from nnlint.trace.objective import shape_text
from nnlint.trace.records import LossCall, Objective


class LossNotTrainable(Rule):
    """## What it does
    Reads the loss the training step would call `.backward()` on (what `loss_fn` returned, the model
    output's `.loss`, a step's loss) and fires when it cannot train the model:
    - it is not a scalar: a loss with `reduction="none"` left un-reduced (`loss.backward()` raises
      "grad can be implicitly created only for scalar outputs"); the check runs its own backward from the
      loss's mean, so the other rules still see real gradients;
    - it is not connected to the model's parameters: a Python number (`.item()`), a new leaf tensor
      rebuilt from one (`torch.tensor(loss.item(), requires_grad=True)`: backward runs and reaches no
      parameter), or a tensor that does not require grad (`.detach()`, a NumPy round trip, computed under
      `torch.no_grad()`). The message says which, from what the loss function did to the model's output:
      the loss calls it made and whether their input came from the model through the graph.
    Then no parameter gets a gradient from the loss. That is this one finding: the check drives its
    backward from a surrogate of the outputs instead, so the no-gradient rule (NN406) does not report
    every parameter as a consequence, and still reports a part of the model that is cut off by itself.

    ## Why is this bad?
    Training either crashes at the first `backward()` or, worse, runs: the optimizer steps with zero or
    no gradients and the loss never moves.

    ## Options
    None.

    ## Fix safety
    No automatic fix: the loss is the user's code. Reduce it (`loss.mean()`, or the default
    `reduction="mean"`); keep it a tensor in the graph: compute it with torch ops on the model's output,
    call `.item()` only for logging.
    """

    code = "NN605"
    name = "loss-not-trainable"
    severity = "error"
    summary = "the loss is not a scalar, or not connected to the model's parameters"
    reads = frozenset({"loss"})
    about = "model"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            batch = torch.randn(64, 32)
            target = torch.randint(0, 10, (64,))
            loss_fn = nn.CrossEntropyLoss(reduction="none")    # one loss per sample, never reduced
            """, module=''),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            batch = torch.randn(64, 32)
            target = torch.randint(0, 10, (64,))
            loss_fn = nn.CrossEntropyLoss()                    # reduction="mean": a scalar
            """, note="""
            With per-sample weights, reduce after weighting: `(nn.CrossEntropyLoss(reduction="none")(out, y) * w).mean()`.
            """),
    )

    def check(self, trace):
        objective = trace.objective
        if objective is None or objective.value is None or objective.failure is not None:
            return
        problem = self._problem(objective)
        if problem is None:
            return
        calls = loss_calls(trace)
        location = next((c.location for c in reversed(calls) if c.location is not None), objective.location)
        yield self.diagnostic("", f"{self._what(objective)} {problem}", location=location,
                              evidence={"loss_type": objective.value.type, "shape": list(objective.value.shape),
                                        "requires_grad": objective.value.requires_grad,
                                        "grad_fn": objective.value.grad_fn, "source": objective.source})

    @staticmethod
    def _what(objective: Objective) -> str:
        if objective.source == "loss_fn":
            return f"the loss returned by {objective.name}"
        if objective.source == "outputs.loss":
            return "the model output's loss"
        return f"the loss returned by {objective.name}"

    def _problem(self, objective: Objective) -> Optional[str]:
        value = objective.value
        calls = list(objective.calls)
        if value.type != "Tensor":
            return (f"is a Python {value.type}, not a tensor (a `.item()`?): loss.backward() is impossible and no "
                    "parameter can train; return the tensor, call .item() only to log it")
        if len(value.shape) > 0 and math.prod(value.shape) != 1:
            unreduced = next((c for c in calls if c.options.get("reduction") == "none"), None)
            how = f" ({unreduced.loss} with reduction=\"none\")" if unreduced is not None else ""
            return (f"has shape {shape_text(value.shape)}{how}, not a scalar: loss.backward() raises \"grad can be "
                    "implicitly created only for scalar outputs\"; reduce it: loss.mean() (or the default "
                    "reduction=\"mean\")")
        if value.requires_grad and value.grad_fn is None:
            return ("is a new leaf tensor (requires_grad=True but no grad_fn), rebuilt from a number "
                    "(`torch.tensor(loss.item(), requires_grad=True)`?): backward stops at it and no parameter gets a "
                    "gradient; compute the loss with torch ops on the model's output")
        if not value.requires_grad:
            return f"does not require grad: {self._cut(calls)}; no parameter gets a gradient"
        return None

    @staticmethod
    def _cut(calls: list[LossCall]) -> str:
        """Where the graph was cut, as far as the loss calls show it."""
        for call in calls:
            if call.serial is None:
                return (f"the input of {call.loss} is not the model's output but a tensor rebuilt outside the graph "
                        "(a NumPy round trip, torch.tensor(...)); compute the loss on the output itself")
            if "detach" in call.steps:
                return f"the loss function detaches the output (`.detach()` / `.data`) before {call.loss}; remove it"
            if not call.options.get("grad_enabled", True):
                return f"{call.loss} ran under torch.no_grad(); compute the loss outside it"
        return ("it was computed outside the autograd graph (`.detach()`, a NumPy round trip, `torch.no_grad()`); "
                "compute it with torch ops on the model's output")

