"""A training step as the check's forward: `step(model, batch)` runs what one step of the user's training
loop runs up to the loss (a Lightning `training_step`, a Trainer's `compute_loss`) and returns the loss.

The recorder's module hooks are global, so every module the step calls is seen, wherever the call
comes from: `self(x)`, `self.net(x)`, an encoder and then a decoder. What the tracer reads of the
model's own call otherwise, it reads here from those calls:
- the model's outputs are the outputs of the outermost module calls the step made, less those that a
  later one consumed (an encoder's output feeding the decoder) and those of loss modules (their
  output is the loss, not what the model computed);
- the model's inputs are the batch tensors that the ops inside those calls read (the labels that only
  the loss reads are not an input the data rules should judge);
- the loss is what the step returns: a scalar is the real loss (the gradient rules then speak of real
  gradients, and the objective rules read the loss calls made in the step); a
  structure of tensors is an output, driven by the surrogate loss; None runs no backward. The torch loss
  calls the step makes are recorded as the objective's (nnlint.trace.lossprobe).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from nnlint.trace.batch import iter_tensors
from nnlint.trace.lossprobe import describe_value, surrogate_loss
from nnlint.trace.records import LossCall, ModuleCall, Objective, Trace


def step_name(step: Callable) -> str:
    """How messages name the step: its qualified name (`Classifier.training_step`)."""
    return getattr(step, "__qualname__", None) or getattr(step, "__name__", None) or "the training step"


def model_calls(model, calls: list[ModuleCall]) -> list[ModuleCall]:
    """The outermost module calls of the training pass that are the model's, in order: not nested in
    another call (each call lists its op range, and a nested call's range lies inside its parent's),
    and not a loss module."""
    import torch

    loss_modules = {name for name, m in model.named_modules() if isinstance(m, torch.nn.modules.loss._Loss)}
    outer: list[ModuleCall] = []
    end = -1
    for call in calls:
        if call.phase != "train" or call.first_op < end:
            continue
        end = max(end, call.end_op)
        if call.module not in loss_modules:
            outer.append(call)
    return outer


def step_outputs(calls: list[ModuleCall], result: Any, serial: Callable[[Any], int]) -> list[int]:
    """The serials of the model's outputs in a step: what its outermost calls returned that no later
    one took in; the step's own result when it called no module."""
    taken_later: set[int] = set()
    outputs: list[int] = []
    for call in reversed(calls):
        outputs[:0] = [s for s in call.outputs if s not in taken_later]
        taken_later.update(call.inputs)
    return outputs or [serial(t) for t in iter_tensors(result)]


def keep_model_inputs(trace: Trace, calls: list[ModuleCall]) -> None:
    """Drop the batch tensors that the model's calls did not read, directly or through what the step
    computed from them first (`x.view(...)`, an augmentation): the labels, read only by the loss."""
    inside = {i for call in calls for i in range(call.first_op, call.end_op)}
    origins: dict[int, set[int]] = {i.serial: {i.serial} for i in trace.inputs}   # tensor -> batch tensors it came from
    read: set[int] = set()
    for op in trace.ops_in("train"):
        came_from = set().union(*(origins.get(s, ()) for s in op.inputs))
        if op.index in inside:
            read |= came_from
        elif came_from:
            for s in op.outputs:
                origins[s] = came_from
    kept = [i for i in trace.inputs if i.serial in read]
    if kept:
        trace.inputs = kept
        trace.input_serials = [i.serial for i in kept]


def loss_of_step(step: Callable, result: Any, calls: list[LossCall], trace: Trace):
    """The loss to run the backward pass from, as the step returned it (see the module's docstring)."""
    import torch

    if isinstance(result, torch.Tensor) and result.is_floating_point() and result.numel() == 1:
        trace.loss_is_surrogate = False
        trace.objective = Objective("step", step_name(step), calls=list(calls), value=describe_value(result),
                                    backward="loss" if result.requires_grad else "none")
        return result.reshape(())
    floats: list[Any] = [t for t in iter_tensors(result) if t.is_floating_point()]
    if floats:
        trace.notes.append(f"{step_name(step)} returned no scalar loss: a surrogate loss over what it returned "
                           "drove the backward pass, so the gradients are relative")
        return surrogate_loss(floats)
    trace.notes.append(f"{step_name(step)} returned no loss, so the check ran no backward pass: the gradient "
                       "rules did not run")
    return None


def check_step_arguments(step: Optional[Callable], target: Any, loss_fn: Optional[Callable]) -> None:
    from nnlint.errors import ConfigError

    if step is None:
        return
    if not callable(step):
        raise ConfigError(f"step must be a function step(model, batch) that returns the loss, not a "
                          f"{type(step).__name__}")
    if target is not None or loss_fn is not None:
        raise ConfigError("give either step (a function step(model, batch) that computes the loss) or "
                          "loss_fn and target, not both: the step computes the loss itself")
