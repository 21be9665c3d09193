"""The opt-in training probe (`steps=N`): N optimizer steps on the sample batch, on copies of the model
and the optimizer, with the user's loss (or nnlint's surrogate, and the report says so).

Overfitting one batch is the first sanity check of every training recipe: the loss must fall. The
probe records the loss at every step, the first step whose loss, gradients or parameters go
non-finite (and which parameter; the step is then replayed under `torch.autograd.detect_anomaly` to
name the backward op and the forward line that made it), which trainable parameters never changed and
which declared-frozen ones did, and, with class-index targets (cross-entropy) or float targets of the
output's shape (mean squared error), a reference loss before and after the steps: the user's loss
falling while the reference rises is an inverted objective (a flipped sign). The user's model,
optimizer, tensors and RNG are left as found: it works on deep copies (nnlint.probes.copies), and the
runner puts the RNG back. Without an optimizer it uses Adam(lr=1e-3) and says so.
"""
from __future__ import annotations

import re
import time
from contextlib import nullcontext
import warnings
from typing import Any, Optional

from nnlint.probes.base import Probe, ProbeContext, probe
from nnlint.probes.copies import copy_setup, default_optimizer, step_of
from nnlint.probes.frozen import declared_frozen
from nnlint.trace.batch import call_model, iter_tensors
from nnlint.trace.inventory import unwrap_optimizer
from nnlint.trace.lossprobe import surrogate_loss

ANOMALY = re.compile(r"Function '(\w+)' returned nan values")
FRAME = re.compile(r'File "([^"]+)", line (\d+)')


@probe
class TrainSteps(Probe):
    name = "train_steps"
    summary = "N optimizer steps on the batch, on copies: the loss curve, non-finite steps, unchanged parameters"

    def wanted(self, options) -> bool:
        return bool(options.steps)

    def run(self, ctx: ProbeContext) -> dict[str, Any]:
        from nnlint.trace.state import ModelState

        started = time.perf_counter()
        steps = int(ctx.options.steps)
        rng = ModelState.capture(ctx.model)   # the replay draws what the steps drew (dropout, noise)
        out = _run(ctx, steps, anomaly_at=None)
        if out["nonfinite"] is not None and out["nonfinite"]["what"] != "loss":
            rng.restore()
            out["nonfinite"].update(_replay_with_anomaly(ctx, out["nonfinite"]["step"]))
        out["seconds"] = time.perf_counter() - started
        out["per_step"] = out["seconds"] / max(out["ran"], 1)
        out["traced_step"] = ctx.trace.seconds
        return out


def _run(ctx: ProbeContext, steps: int, anomaly_at: Optional[int]) -> dict[str, Any]:
    import torch

    given = unwrap_optimizer(ctx.optimizer) if ctx.optimizer is not None else None
    model, optimizer = copy_setup(ctx.model, given)
    default = optimizer is None
    if default:
        optimizer = default_optimizer(model)
    step = step_of(optimizer)
    model.train()
    names = dict(model.named_parameters())
    frozen = set(declared_frozen(list(names), ctx.options.frozen))
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    with torch.no_grad():
        before = {n: p.detach().clone() for n, p in names.items() if p.requires_grad or n in frozen}
    got_grad: set[str] = set()
    losses: list[Any] = []
    reference: list[Any] = []
    nonfinite = None
    ran = 0
    for k in range(steps):
        optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad(), (torch.autograd.detect_anomaly(check_nan=True) if anomaly_at == k else nullcontext()):
            output = call_model(model, ctx.batch) if ctx.step is None else ctx.step(model, ctx.batch)
            loss, surrogate = _loss(ctx, output)
            if loss is None:
                break
            losses.append(loss.detach().float().reshape(()))
            if k == 0:
                reference.append(_reference(ctx, output))
            if not bool(torch.isfinite(loss)):
                nonfinite = {"step": k + 1, "what": "loss", "param": None}
                break
            loss.backward()
        ran = k + 1
        bad = _first_nonfinite([(n, p.grad) for n, p in names.items() if p.grad is not None])
        got_grad.update(n for n, p in names.items() if p.grad is not None)
        if bad is not None:
            nonfinite = {"step": k + 1, "what": "gradient", "param": bad}
            break
        step()
        bad = _first_nonfinite([(n, p) for n, p in names.items() if p.requires_grad])
        if bad is not None:
            nonfinite = {"step": k + 1, "what": "parameter", "param": bad}
            break
    if nonfinite is None and ran == steps and ctx.step is None:
        with torch.no_grad():
            reference.append(_reference(ctx, call_model(model, ctx.batch)))
    with torch.no_grad():
        values = torch.stack(losses).tolist() if losses else []
        unchanged = [n for n, p in names.items() if p.requires_grad and n in before and torch.equal(p, before[n])]
        frozen_changed = [n for n in frozen if n in before and not torch.equal(names[n], before[n])]
    ref = [r for r in reference if r is not None]
    return {
        "steps": steps, "ran": ran, "losses": values, "loss_is_surrogate": bool(losses) and surrogate,
        "optimizer": type(optimizer).__name__, "default_optimizer": default, "nonfinite": nonfinite,
        "reference": {"kind": ref[0][0], "start": ref[0][1], "end": ref[1][1]} if len(ref) == 2 else None,
        "unchanged": [{"name": n, "in_optimizer": id(names[n]) in held, "got_gradient": n in got_grad,
                       "lr": _lr_of(optimizer, names[n])} for n in unchanged],
        "frozen": list(ctx.options.frozen), "frozen_changed": frozen_changed,
    }


def _loss(ctx: ProbeContext, output):
    """(the loss to step on, whether it is nnlint's surrogate)."""
    import torch

    if ctx.step is not None:
        if isinstance(output, torch.Tensor) and output.is_floating_point() and output.numel() == 1:
            return output.reshape(()), False
    elif ctx.loss_fn is not None:
        loss = ctx.loss_fn(output, ctx.target) if ctx.target is not None else ctx.loss_fn(output)
        if isinstance(loss, torch.Tensor) and loss.dim() > 0 and loss.is_floating_point():
            loss = loss.mean()   # an unreduced loss (NN6xx reports it): stepped on its mean, as the check's backward
        return loss, False
    floats = [t for t in iter_tensors(output) if t.is_floating_point()]
    return surrogate_loss(floats), True


def _reference(ctx: ProbeContext, output) -> Optional[tuple[str, float]]:
    """A loss that cannot be inverted, to compare the user's against: the classification loss the
    user's loss computes (cross-entropy, NLL, binary cross-entropy, seen while it ran), taken on the
    model's output and the target as they are; else, for float targets of the output's shape, the mean
    squared error."""
    import torch
    import torch.nn.functional as F

    target = ctx.target
    if ctx.loss_fn is None or not isinstance(output, torch.Tensor) or not isinstance(target, torch.Tensor):
        return None
    objective = ctx.trace.objective
    calls = [c.loss for c in objective.calls] if objective is not None else []
    kind = next((c for c in calls if c != "mse_loss"), None) or ("mse" if target.is_floating_point() else None)
    out = output.detach().float()
    try:
        with torch.no_grad():
            if kind in ("cross_entropy", "nll_loss") and not target.is_floating_point() and out.dim() >= 2:
                return kind, float(getattr(F, kind)(out, target))
            if kind in ("binary_cross_entropy_with_logits", "binary_cross_entropy", "mse") and target.shape == out.shape:
                return kind, float(getattr(F, "mse_loss" if kind == "mse" else kind)(out, target.float()))
    except (RuntimeError, ValueError, IndexError):   # the loss reads the output differently (a view, a slice)
        return None
    return None


def _first_nonfinite(named) -> Optional[str]:
    import torch

    if not named:
        return None
    finite = torch.stack([torch.isfinite(t).all() for _, t in named]).tolist()   # one sync per step
    return next((n for (n, _), ok in zip(named, finite) if not ok), None)


def _lr_of(optimizer, p) -> Optional[float]:
    for g in optimizer.param_groups:
        if any(q is p for q in g["params"]):
            try:
                return float(g["lr"])
            except (TypeError, ValueError, KeyError):
                return None
    return None


def _replay_with_anomaly(ctx: ProbeContext, step: int) -> dict[str, Any]:
    """Replay the steps from fresh copies (the same RNG: the runner's state is the start's) with anomaly
    detection on the failing step's backward: the backward op that made the first NaN, and the line of
    the forward call it came from."""
    found: dict[str, Any] = {}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _run(ctx, step, anomaly_at=step - 1)
    except RuntimeError as exc:
        match = ANOMALY.search(str(exc))
        if match:
            found["op"] = match.group(1)
        for w in caught:
            frames = [(f, int(line)) for f, line in FRAME.findall(str(w.message)) if "/torch/" not in f]
            if frames:
                found["location"] = list(frames[-1])
    return found
