from __future__ import annotations

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import fmt
from nnlint.rules.optimizer._loop import step_location, watched_steps, where


class ClippingEveryStep(Rule):
    """## What it does
    Watches the training loop's first two optimizer steps and compares, at each, the gradient norm the
    backward produced with the one the optimizer steps on (after `clip_grad_norm_`; a gradient scaler's
    loss scale is divided out; a framework's own clipping threshold, such as Lightning's
    `gradient_clip_val`, is compared directly). When every watched step was scaled down by more than
    `factor`, it reports both numbers.

    ## Why is this bad?
    Clipping is a safety net for the rare exploding step. A threshold far below the typical gradient
    norm rescales every step to the same length: the learning rate no longer sets the step size, the
    threshold does, and changing the learning rate does not do what it should.

    ## Options
    - `factor` (100): a step scaled down by more than this is clipped too hard.

    ## Fix safety
    No automatic fix: raise `max_norm` to about the measured norm, or lower the learning rate.
    """

    code = "NN810"
    name = "clipping-every-step"
    severity = "info"
    summary = "gradient clipping scales every watched step down more than 100x"
    options = {"factor": 100.0}
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
                    loss_fn(model(x), y).backward()
                    nn.utils.clip_grad_norm_(model.parameters(), max_norm=1e-3)   # the norm is ~1
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
                    loss_fn(model(x), y).backward()
                    nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
                    optimizer.step()
            """),
    )

    def check(self, trace):
        steps = watched_steps(trace)
        factors = [_factor(s) for s in steps]
        if len(steps) < 2 or any(f is None or f <= self.opts["factor"] for f in factors):
            return
        last = steps[-1]
        threshold = last.get("clip_threshold") or last.get("norm_at_step")
        yield self.diagnostic(
            "", f"gradient clipping scales every watched step down {'/'.join(fmt(f) for f in factors)}x ({where(last)}): "
                f"the gradient norm is {fmt(last['norm_after_backward'])} after backward, {fmt(threshold)} after "
                f"clipping, so the threshold, not the learning rate, sets the step; raise max_norm to about "
                f"{fmt(last['norm_after_backward'])}, or lower the learning rate",
            location=step_location(last),
            evidence={"factors": factors, "norm": last.get("norm_after_backward"), "clipped_to": threshold})


def _factor(step: dict):
    """How much the step's gradient was scaled down between backward and the update."""
    after = step.get("norm_after_backward")
    if not after:
        return None
    if step.get("clip_threshold"):
        return after / step["clip_threshold"]
    now = step.get("norm_at_step")
    if not now:
        return None
    return after / now / (step.get("scale") or 1.0)
