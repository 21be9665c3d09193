from __future__ import annotations

from nnlint.fix.kinds.train_mode import TrainMode, TrainModeParams
from nnlint.pyexpr import module_expr
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rules.mode.nn502_mixed_train_eval_mode import MODE_DEPENDENT
from nnlint.rules.optimizer._loop import loop_site, step_location, watched_steps, where


class TrainingInEvalMode(Rule):
    """## What it does
    Watches the training loop's first optimizer steps (`nnlint.guard`, the training callbacks, a model
    file's `train(model, optimizer, batches)`) and reports a step taken while the model is in eval mode
    (`model.training` is False), or while a mode-dependent submodule (dropout, BatchNorm, InstanceNorm
    with running statistics) is. A submodule whose own parameters are all frozen is exempt: BatchNorm
    kept in eval mode while fine-tuning the rest is intentional.

    ## Why is this bad?
    In eval mode dropout does nothing and BatchNorm normalizes with its running statistics and stops
    updating them: the model trains without its regularization and with frozen normalization, and
    nothing raises. The usual cause is a validation pass (`model.eval()`) before the loop, or inside it,
    with no `model.train()` after it.

    ## Options
    None.

    ## Fix safety
    Safe: `model.train()` (in memory; in the source, just before the loop that called
    `optimizer.step()`, or first in a step function with no loop of its own).
    """

    code = "NN808"
    name = "training-in-eval-mode"
    severity = "warning"
    summary = "the guard sees an optimizer step while the model or a dropout/BatchNorm is in eval mode"
    reads = frozenset({"loop"})
    about = "model"
    fixable = "safe"
    cause = ("finding",)

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10))
            model.eval()                           # left over from a validation pass
            batch = (torch.randn(16, 32), torch.randint(0, 10, (16,)))
            loss_fn = nn.CrossEntropyLoss()


            def optimizer(model):
                return torch.optim.SGD(model.parameters(), lr=0.05)


            def train(model, optimizer, batches):
                for x, y in batches:
                    optimizer.zero_grad(set_to_none=True)
                    loss_fn(model(x), y).backward()
                    optimizer.step()
            """, module=''),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10))
            batch = (torch.randn(16, 32), torch.randint(0, 10, (16,)))
            loss_fn = nn.CrossEntropyLoss()


            def optimizer(model):
                return torch.optim.SGD(model.parameters(), lr=0.05)


            def train(model, optimizer, batches):
                model.train()
                for x, y in batches:
                    optimizer.zero_grad(set_to_none=True)
                    loss_fn(model(x), y).backward()
                    optimizer.step()
            """),
    )

    def check(self, trace):
        for step in watched_steps(trace):
            fix = TrainMode.make("", "model.train() before the training loop", TrainModeParams(loop_site(step)))
            name = step.get("model_name") or "model"
            if not step.get("model_training", True):
                off = [m for m in step.get("eval_modules", ()) if m["type"] in MODE_DEPENDENT]
                what = (f": {', '.join(sorted({m['type'] for m in off}))} {'is' if len(off) == 1 else 'are'} off"
                        if off else "")
                yield self.diagnostic(
                    "", f"optimizer step {step['index']} runs with the model in eval mode ({where(step)}){what}: "
                        f"dropout does nothing and BatchNorm neither uses nor updates batch statistics; call "
                        f"{name}.train() before the loop (after any validation pass)",
                    location=step_location(step), fix=fix,
                    evidence={"step": step["index"], "modules": [m["name"] for m in off], "finding": "model_eval"})
                return
            # a frozen BatchNorm (own parameters, none trainable) in eval mode is intentional (NN502 says the same)
            off = [m for m in step.get("eval_modules", ()) if m["type"] in MODE_DEPENDENT
                   and not (m.get("params") and not m.get("trainable"))]
            for m in off:
                yield self.diagnostic(
                    m["name"], f"optimizer step {step['index']} runs with {module_expr(m['name'])} ({m['type']}) in "
                               f"eval mode while the model trains ({where(step)}); call {name}.train() before the "
                               f"loop, or freeze it on purpose with requires_grad=False",
                    location=step_location(step), fix=fix,
                    evidence={"step": step["index"], "type": m["type"], "finding": "submodule_eval"})
            if off:
                return
