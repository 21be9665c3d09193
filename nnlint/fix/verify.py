"""The outcome probe of `nnlint.fix(..., verify_steps=N)` and `nnlint fix --verify-steps N`: "the
finding is gone" is not "the model now trains", so a copy of the original setup and a copy of the fixed
one are trained N steps on the sample batch, from the same random state, and their loss curves are
reported side by side. A fix that does not train better is said so, not hidden.

What is minimized: the user's loss (`loss_fn`, or a Hugging Face model's `outputs.loss`); without one, a
surrogate that can fall: cross-entropy on the target (class indices) or mean squared error (a float
target of the output's shape), and with no target at all cross-entropy against fixed random labels for
an (N, C) output, else mean squared error against a fixed random target (fitting one batch is the
first sanity check of every recipe, and a broken model cannot). What steps: a copy of the user's
optimizer with its state (nnlint.probes.copies), parameters a fix added (an inserted norm) in a group of
their own with the first group's hyperparameters; without an optimizer, Adam(lr=1e-3).

Nothing here touches the user's model, optimizer or random state: both runs work on deep copies inside
a forked RNG seeded the same for both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from nnlint.probes.copies import DEFAULT_OPTIMIZER, copy_setup, default_optimizer, step_of
from nnlint.trace.state import seed_all

SEED = 0
# A fixed model "trains better" when its final loss is this much below the original's (relative), and
# worse when this much above: closer than that, the two curves are the same curve (two inits of one
# healthy model fitting one batch at Adam 1e-3 for 50 steps differ by up to ~15%).
MARGIN = 0.2
FALL_MARGIN = 0.1   # ... or when it fell this much more of its first loss than the original did
FITTED = 0.01   # both final losses under this share of the first: both fit the batch, it cannot tell them apart
SHOWN_POINTS = 6   # steps shown in the side-by-side table


@dataclass
class Setup:
    """What one side of the comparison trains: the model, its batch, and where given the loss, target
    and optimizer (the optimizer's parameters are the model's)."""

    model: Any
    batch: Any
    target: Any = None
    loss_fn: Optional[Callable] = None
    optimizer: Any = None


@dataclass
class Curve:
    losses: list[float] = field(default_factory=list)
    nonfinite_at: Optional[int] = None   # the step whose loss was inf/NaN (1-based)
    error: str = ""                      # the step raised: what it said

    @property
    def ok(self) -> bool:
        return self.nonfinite_at is None and not self.error and bool(self.losses)

    @property
    def final(self) -> Optional[float]:
        """The loss at the end, as the verdict reads it: the mean of the last fifth of the steps (one
        noisy step decides nothing)."""
        if not self.ok:
            return None
        tail = self.losses[-max(1, len(self.losses) // 5):]
        return sum(tail) / len(tail)

    @property
    def last(self) -> Optional[float]:
        return self.losses[-1] if self.ok else None


@dataclass
class Verification:
    steps: int
    objective: str                # what was minimized, in words
    optimizer: str                # what stepped, in words
    original: Curve
    fixed: Curve
    lr_advice: list[str] = field(default_factory=list)   # the first update of the fixed model, where off

    @property
    def verdict(self) -> str:
        """"better", "no better" or "worse": the fixed model's curve against the original's."""
        a, b = self.original, self.fixed
        if not b.ok:
            return "worse" if a.ok else "no better"
        if not a.ok:
            return "better"
        if self.both_fit:
            return "no better"
        # by the end, or by how far each fell from where it started (a head at the right scale starts
        # higher and falls faster: 2.32 -> 1.89 against 2.30 -> 2.24 is a fix that trains)
        fell_a, fell_b = _fall(a), _fall(b)
        if b.final < (1 - MARGIN) * a.final or (b.final < a.final and fell_b - fell_a > FALL_MARGIN):
            return "better"
        if b.final > (1 + MARGIN) * a.final or (b.final > a.final and fell_a - fell_b > FALL_MARGIN):
            return "worse"
        return "no better"

    @property
    def both_fit(self) -> bool:
        a, b = self.original, self.fixed
        start = max(abs(a.losses[0]), abs(b.losses[0])) if a.ok and b.ok else 0.0
        return a.ok and b.ok and max(abs(a.final), abs(b.final)) < FITTED * start

    def lines(self) -> list[str]:
        shown = _shown_steps(self.steps)
        out = [f"trained a copy of the original and of the fixed model {self.steps} steps on the batch "
               f"(the same seed; {self.objective}; {self.optimizer}):"]
        width = max(9, *(len(_value(c, s)) + 2 for c in (self.original, self.fixed) for s in shown))
        out.append("  " + "step".ljust(10) + "".join(str(s).rjust(width) for s in shown))
        for name, curve in (("original", self.original), ("fixed", self.fixed)):
            out.append("  " + name.ljust(10) + "".join(_value(curve, s).rjust(width) for s in shown))
        out.append("  " + self._conclusion())
        out += [f"  {line}" for line in self.lr_advice]
        return out

    def _conclusion(self) -> str:
        a, b = self.original, self.fixed
        where = f"at step {self.steps}"
        if self.verdict == "better":
            if not a.ok:
                return f"the fixed model trains: loss {_fmt(b.last)} {where}; the original {_failure(a)}"
            return f"the fixed model trains better: loss {_fmt(b.last)} {where}, against {_fmt(a.last)}"
        if self.verdict == "worse":
            if not b.ok:
                return f"the fixed model trains WORSE: it {_failure(b)}, the original reaches {_fmt(a.last)}"
            return (f"the fixed model trains WORSE on this batch: loss {_fmt(b.last)} {where}, against {_fmt(a.last)}; "
                    "review the fixes before training (more steps, or your own data, may tell them apart)")
        if not a.ok and not b.ok:
            return f"neither trains: the original {_failure(a)}, the fixed model {_failure(b)}"
        if self.both_fit:
            return (f"both fit the batch (loss {_fmt(b.last)} fixed, {_fmt(a.last)} original, {where}): one batch "
                    "cannot tell them apart; the findings fixed are what a longer run would feel")
        return (f"the fixed model trains NO BETTER on this batch: loss {_fmt(b.last)} {where}, against "
                f"{_fmt(a.last)}; the findings are gone, but the outcome did not change")

    def as_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "objective": self.objective, "optimizer": self.optimizer,
                "verdict": self.verdict, "lr_advice": self.lr_advice,
                "original": _curve_dict(self.original), "fixed": _curve_dict(self.fixed)}


def verify(original: Setup, fixed: Setup, steps: int, *, lr_advice: Callable[[Setup], list[str]] = lambda s: []
           ) -> Verification:
    """Train copies of both setups `steps` steps from the same random state; the user's objects and RNG
    are left as found."""
    import torch

    objective, objective_text = _objective(original)
    devices = _cuda_devices(original.model)
    with torch.random.fork_rng(devices=devices):
        curves, optimizer_text = [], ""
        for setup, new_names in ((original, set()), (fixed, _added_parameters(original.model, fixed.model))):
            seed_all(SEED)
            model, optimizer, optimizer_text = _copy(setup, new_names)
            curves.append(_train(model, optimizer, setup.batch, objective, steps))
    result = Verification(steps, objective_text, optimizer_text, curves[0], curves[1])
    result.lr_advice = lr_advice(fixed)
    return result


def _train(model, optimizer, batch, objective: Callable, steps: int) -> Curve:
    import torch

    from nnlint.trace.batch import call_model

    curve = Curve()
    step = step_of(optimizer)
    model.train()
    try:
        with torch.enable_grad():
            for k in range(steps):
                optimizer.zero_grad(set_to_none=True)
                loss = objective(call_model(model, batch))
                value = float(loss.detach())
                curve.losses.append(value)
                if not math.isfinite(value):
                    curve.nonfinite_at = k + 1
                    break
                loss.backward()
                step()
    except Exception as exc:   # the comparison reports it; the fix result itself stands
        curve.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    return curve


def _copy(setup: Setup, new_names: set[str]):
    """Deep copies of the model and optimizer (Adam(lr=1e-3) when none is given); parameters a fix added
    join the optimizer in a group of their own."""

    from nnlint.trace.inventory import unwrap_optimizer

    given = unwrap_optimizer(setup.optimizer) if setup.optimizer is not None else None
    model, optimizer = copy_setup(setup.model, given)
    if optimizer is None:
        optimizer = default_optimizer(model)
        return model, optimizer, f"{DEFAULT_OPTIMIZER}, nnlint's default: no optimizer was given"
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    added = [p for n, p in model.named_parameters() if n in new_names and p.requires_grad and id(p) not in held]
    if added:
        optimizer.add_param_group({"params": added})
    lr = optimizer.param_groups[0].get("lr")
    text = f"a copy of your {type(optimizer).__name__}" + (f"(lr={lr:g})" if isinstance(lr, (int, float)) else "")
    return model, optimizer, text + (f", with the {len(added)} parameter(s) the fixes added" if added else "")


def _added_parameters(before, after) -> set[str]:
    return {n for n, _ in after.named_parameters()} - {n for n, _ in before.named_parameters()}


def _objective(setup: Setup) -> tuple[Callable, str]:
    """The loss both copies minimize, and how the report names it. The surrogate's random labels or
    target are drawn once, from their own generator, so both copies fit the same ones."""
    import torch
    import torch.nn.functional as F

    from nnlint.trace.batch import call_model, iter_tensors
    from nnlint.trace.lossprobe import output_loss

    target, loss_fn = setup.target, setup.loss_fn
    if loss_fn is not None:
        name = getattr(loss_fn, "__name__", type(loss_fn).__name__)
        return (lambda out: loss_fn(out, target) if target is not None else loss_fn(out)), f"your loss {name}"
    with torch.no_grad(), torch.random.fork_rng(devices=_cuda_devices(setup.model)):
        example = call_model(setup.model, setup.batch)
    if output_loss(example) is not None:
        return output_loss, "the model's outputs.loss"

    def first(out):
        return next(t for t in iter_tensors(out) if t.is_floating_point())

    out = first(example)
    if isinstance(target, torch.Tensor):
        if not target.is_floating_point() and out.dim() >= 2 and out.shape[0] == target.shape[0]:
            return (lambda o: F.cross_entropy(first(o), target)), "cross-entropy on your target (no loss_fn given)"
        if target.is_floating_point() and target.numel() == out.numel():
            return (lambda o: F.mse_loss(first(o), target.reshape(first(o).shape))), \
                "mean squared error on your target (no loss_fn given)"
    generator = torch.Generator(device=out.device).manual_seed(SEED)
    if out.dim() == 2 and out.shape[1] > 1:
        labels = torch.randint(out.shape[1], (out.shape[0],), generator=generator, device=out.device)
        return (lambda o: F.cross_entropy(first(o), labels)), \
            "cross-entropy against fixed random labels (no loss or target given): fitting one batch"
    goal = torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
    return (lambda o: F.mse_loss(first(o), goal)), \
        "mean squared error against a fixed random target (no loss or target given): fitting one batch"


def _cuda_devices(model) -> list:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


def _fall(curve: Curve) -> float:
    """How much of its first loss the curve lost by the end."""
    start = curve.losses[0]
    return (start - curve.final) / abs(start) if start else 0.0


def _shown_steps(steps: int) -> list[int]:
    if steps <= SHOWN_POINTS:
        return list(range(1, steps + 1))
    return sorted({1, steps, *(round(1 + i * (steps - 1) / (SHOWN_POINTS - 1)) for i in range(SHOWN_POINTS))})


def _value(curve: Curve, step: int) -> str:
    if step <= len(curve.losses):
        v = curve.losses[step - 1]
        return _fmt(v) if math.isfinite(v) else "nan"
    return "error" if curve.error else "-"


def _fmt(v: Optional[float]) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def _failure(curve: Curve) -> str:
    if curve.error:
        return f"raised at step {len(curve.losses) + 1} ({curve.error})"
    if curve.nonfinite_at is not None:
        return f"goes non-finite at step {curve.nonfinite_at}"
    return "did not run"


def _curve_dict(curve: Curve) -> dict[str, Any]:
    return {"losses": [v if math.isfinite(v) else None for v in curve.losses], "final": curve.last,
            "nonfinite_at": curve.nonfinite_at, "error": curve.error or None}


def first_update_advice(setup: Setup, report=None) -> list[str]:
    """Where the fixed model needs another learning rate: the first-update findings (a suggested
    learning rate in their evidence) of the re-check with the user's optimizer (`report`), or, without
    an optimizer, of a check of a copy with the default Adam, run for the rules that read the first
    update only."""
    if setup.optimizer is None or report is None:
        from nnlint.api import check
        from nnlint.registry import rules_reading

        model, optimizer = copy_setup(setup.model)
        optimizer = default_optimizer(model)
        codes = rules_reading("update_ratio")
        if not codes:
            return []
        try:
            report = check(model, setup.batch, target=setup.target, loss_fn=setup.loss_fn, optimizer=optimizer,
                           select=codes)
        except Exception:   # the advice is a bonus; the comparison stands without it
            return []
    return [f"learning rate: {d.message}" for d in report.diagnostics if d.evidence.get("suggested_lr")]
