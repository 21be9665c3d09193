from __future__ import annotations

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rules.optimizer._loop import step_location, watched_steps, where


class StepWithoutBackward(Rule):
    """## What it does
    Watches the training loop's first optimizer steps and reports a `step()` taken when no backward
    pass reached any trainable parameter since the last step (or since the watch began): the update
    uses no gradient of this step (none at all after `zero_grad(set_to_none=True)`; a stale one
    otherwise). A `step(closure)` computes its gradients inside the step and is not judged here.

    Not in the catalog's specification yet: proposed by benchmarks/PEERS.md ("NN811
    step-without-backward"), where torch-audit's TA104 finds the gallery's `missing_backward`.

    ## Why is this bad?
    `loss.backward()` forgotten (or called on a tensor that does not reach the model, or under
    `torch.no_grad()`) means nothing trains while the loop runs without an error.

    ## Options
    None.

    ## Fix safety
    No automatic fix: call `loss.backward()` before `optimizer.step()`.
    """

    code = "NN811"
    name = "step-without-backward"
    severity = "error"
    summary = "optimizer.step() with no backward since the last step"
    reads = frozenset({"loop"})
    about = "model"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            batch = (torch.randn(16, 32), torch.randint(0, 10, (16,)))
            loss_fn = nn.CrossEntropyLoss()


            def optimizer(model):
                return torch.optim.SGD(model.parameters(), lr=0.05)


            def train(model, optimizer, batches):
                for x, y in batches:
                    optimizer.zero_grad(set_to_none=True)
                    loss = loss_fn(model(x), y)       # loss.backward() forgotten
                    optimizer.step()
            """, module=''),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            batch = (torch.randn(16, 32), torch.randint(0, 10, (16,)))
            loss_fn = nn.CrossEntropyLoss()


            def optimizer(model):
                return torch.optim.SGD(model.parameters(), lr=0.05)


            def train(model, optimizer, batches):
                for x, y in batches:
                    optimizer.zero_grad(set_to_none=True)
                    loss = loss_fn(model(x), y)
                    loss.backward()
                    optimizer.step()
            """),
    )

    def check(self, trace):
        for step in watched_steps(trace):
            if step.get("closure") or step.get("reached") or not step.get("trainable"):
                continue
            yield self.diagnostic(
                "", f"optimizer step {step['index']} runs with no backward since the last step ({where(step)}): "
                    f"none of the {step['trainable']} trainable parameters received a gradient, so nothing learns; "
                    "call loss.backward() before optimizer.step()",
                location=step_location(step), evidence={"step": step["index"], "trainable": step["trainable"]})
            return
