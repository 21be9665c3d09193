from __future__ import annotations

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import pct
from nnlint.rules.optimizer._loop import step_location, watched_steps, where


class Fp16WithoutGradScaler(Rule):
    """## What it does
    Watches the training loop's first optimizer steps and reports a step whose forward ran under float16
    autocast (`torch.autocast(dtype=torch.float16)`), or whose parameters are float16, that is not taken
    through a gradient scaler (`torch.amp.GradScaler.step`, as Lightning's "16-mixed" and the HF
    Trainer's `fp16=True` do). The message gives the fraction of exactly-zero gradient elements the
    step saw. bfloat16 needs no scaler and is not reported.

    ## Why is this bad?
    float16 represents nothing below 6e-8: small gradients of activations underflow to exactly zero in
    the backward pass, and whole layers stop learning, silently. Loss scaling (Micikevicius et al. 2018)
    multiplies the loss before backward and divides the gradients back before the update, and skips
    steps whose scaled gradients overflowed.

    ## Options
    None.

    ## Fix safety
    No automatic fix: wrap the step in a `torch.amp.GradScaler` (the message shows how), or use bfloat16.

    ## References
    - Micikevicius et al., "Mixed Precision Training" (ICLR 2018).
    - PyTorch, "Automatic Mixed Precision examples" (`torch.amp.GradScaler`).
    """

    code = "NN809"
    name = "fp16-without-grad-scaler"
    severity = "warning"
    summary = "float16 autocast (or float16 parameters) without a gradient scaler: gradients underflow"
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
                    with torch.autocast("cpu", dtype=torch.float16):
                        loss = loss_fn(model(x), y)
                    loss.backward()                   # no GradScaler: small gradients underflow
                    optimizer.step()
            """, module=''),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            batch = (torch.randn(16, 32), torch.randint(0, 10, (16,)))
            loss_fn = nn.CrossEntropyLoss()


            def optimizer(model):
                return torch.optim.SGD(model.parameters(), lr=0.05)


            def train(model, optimizer, batches):
                scaler = torch.amp.GradScaler("cpu")
                for x, y in batches:
                    optimizer.zero_grad(set_to_none=True)
                    with torch.autocast("cpu", dtype=torch.float16):
                        loss = loss_fn(model(x), y)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
            """),
    )

    def check(self, trace):
        for step in watched_steps(trace):
            if not (step.get("fp16_autocast") or step.get("fp16_params")) or step.get("scaler") is not False:
                continue
            how = "under float16 autocast" if step.get("fp16_autocast") else "with float16 parameters"
            zeros = step.get("zero_grad_fraction")
            seen = f"; {pct(zeros)} of the gradient elements are exactly zero at step {step['index']}" if zeros else ""
            yield self.diagnostic(
                "", f"the loop trains {how} without a gradient scaler ({where(step)}): float16 gradients below 6e-8 "
                    f"underflow to zero{seen}; scale the loss: scaler = torch.amp.GradScaler(); "
                    "scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update() (or autocast to "
                    "torch.bfloat16, which needs no scaler)",
                location=step_location(step),
                evidence={"step": step["index"], "fp16_autocast": bool(step.get("fp16_autocast")),
                          "fp16_params": bool(step.get("fp16_params")), "zero_grad_fraction": zeros})
            return
