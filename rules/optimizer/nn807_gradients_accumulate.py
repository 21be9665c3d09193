from __future__ import annotations

from nnlint.fix.kinds.zero_grad import ZeroGrad, ZeroGradParams
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rules.optimizer._loop import loop_site, step_location, watched_steps, where


class GradientsAccumulate(Rule):
    """## What it does
    Watches the training loop's first two optimizer steps (`nnlint.guard`, the Lightning and HF Trainer
    callbacks, or a model file's `train(model, optimizer, batches)` under `nnlint check`): at the first
    backward after step 1, each parameter's `.grad` is looked at before the new gradient is added to
    it. When it is still the very tensor step 1 read, unchanged (no `zero_grad()` set it to None or to
    zero), step 2's gradient is step 1's plus step 2's. Reported, before step 2's update, with the
    number of parameters whose gradients piled up.

    Intentional gradient accumulation (backward on every micro-batch, `step()` and `zero_grad()` every
    k of them) zeroes after each step, and is not reported.

    ## Why is this bad?
    `loss.backward()` adds to `.grad`; it never replaces it. Without `optimizer.zero_grad()` every
    step applies the sum of all gradients so far: the effective learning rate grows with the step
    count, the direction is dominated by stale gradients, and training diverges or stalls. Nothing
    raises. (TrainCheck, OSDI 2025, found this bug only after inferring invariants from a reference run.)

    ## Options
    None.

    ## Fix safety
    Safe, in the source: `optimizer.zero_grad(set_to_none=True)` becomes the first statement of the loop
    body that called `optimizer.step()` (for a step function with no loop, its first statement).
    """

    code = "NN807"
    name = "gradients-accumulate"
    severity = "error"
    summary = "the guard sees step 2's .grad still holding step 1's: zero_grad() is missing"
    reads = frozenset({"loop"})
    about = "model"
    fixable = "safe"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            batch = (torch.randn(16, 32), torch.randint(0, 10, (16,)))
            loss_fn = nn.CrossEntropyLoss()


            def optimizer(model):
                return torch.optim.SGD(model.parameters(), lr=0.05)


            def train(model, optimizer, batches):
                for x, y in batches:
                    loss_fn(model(x), y).backward()   # no optimizer.zero_grad(): gradients pile up
                    optimizer.step()
            """, module='', fixed=False),
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
                    optimizer.step()
            """),
    )

    def check(self, trace):
        for step in watched_steps(trace):
            if step["index"] < 2 or not step.get("carried"):
                continue
            yield self.diagnostic(
                "", f"step {step['index']}'s gradients are step {step['index'] - 1}'s plus its own: "
                    f"{step['carried']} of {step['carried_of']} parameters still held the last step's .grad when "
                    f"the next backward added to it (no zero_grad() in between, {where(step)}); add "
                    f"{step.get('optimizer_name') or 'optimizer'}.zero_grad(set_to_none=True) at the top of the loop body",
                location=step_location(step),
                evidence={"step": step["index"], "carried": step["carried"], "of": step["carried_of"]},
                fix=ZeroGrad.make("", "optimizer.zero_grad(set_to_none=True) at the top of the loop body",
                                  ZeroGradParams(loop_site(step))))
            return
