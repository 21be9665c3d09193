"""Copies of the user's training setup that a probe may step: the optimizer (with its state) over
stand-in tensors, or the model and the optimizer together. Nothing here touches the originals.

Two things make a plain `copy.deepcopy(optimizer)` unsafe:
- the instance's hooks (`_optimizer_step_pre_hooks` ...) hold bound methods of their owners (nnlint's
  own guard, a logger); deep-copying a bound method deep-copies its owner, the model with it;
- an LR scheduler (or accelerate) replaces `optimizer.step` on the instance by a wrapper that calls
  the *original* optimizer: `copy.step()` would step the user's optimizer.
So the copies get empty hook tables, and are stepped through their class's own `step` (what
Optimizer's profiling wrapper wraps), never through the instance attribute.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, Callable, Optional


def _hook_tables(obj) -> dict[int, OrderedDict]:
    """Memo entries that replace every hook table of an optimizer with an empty one in its copy."""
    return {id(v): OrderedDict() for k, v in vars(obj).items() if k.startswith("_optimizer_") and k.endswith("_hooks")}


def shadow_optimizer(optimizer, stand_ins: dict[int, Any]):
    """A copy of `optimizer` (its class, groups, hyperparameters and state) whose parameters are the
    stand-in tensors (id of the original parameter -> its stand-in), without hooks."""
    memo: dict[int, Any] = {**_hook_tables(optimizer), **stand_ins}
    shadow = copy.deepcopy(optimizer, memo)
    vars(shadow).pop("step", None)   # an LR scheduler's wrapper around the original's step
    return shadow


def copy_setup(model, optimizer=None):
    """Deep copies of the model and of the optimizer over the copied model's parameters."""
    memo: dict[int, Any] = _hook_tables(optimizer) if optimizer is not None else {}
    model_copy, optimizer_copy = copy.deepcopy((model, optimizer), memo)
    if optimizer_copy is not None:
        vars(optimizer_copy).pop("step", None)
    return model_copy, optimizer_copy


def step_of(optimizer) -> Callable[[Optional[Callable]], Any]:
    """The optimizer's own update, as its class defines it: not the instance's attribute (see the module
    docstring), and not through torch's profiling wrapper, whose global hooks belong to the user's run."""
    step = type(optimizer).step
    if getattr(step, "hooked", False) and hasattr(step, "__wrapped__"):
        step = step.__wrapped__
    return lambda closure=None: step(optimizer) if closure is None else step(optimizer, closure)


DEFAULT_OPTIMIZER = "Adam(lr=1e-3)"   # what steps a copy when the user gave no optimizer


def default_optimizer(model):
    """The optimizer a probe steps with when the user gave none: Adam(lr=1e-3) over the trainable
    parameters (the reports say so, as DEFAULT_OPTIMIZER)."""
    import torch

    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
