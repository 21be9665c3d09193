"""Lightning: check the first training step, and its first real gradients.

    trainer = L.Trainer(callbacks=[nnlint.integrations.lightning.NNLintCallback()])

At the first training batch (`on_train_batch_start`: the batch is already on the module's device) the
LightningModule's own `training_step` is traced on it, with the trainer attached and in the trainer's
precision context. Every module it calls is measured, however it calls them (`self(x)`, `self.net(x)`,
an encoder then a decoder), and the loss it returns (a tensor, or a dict's "loss") is the loss the
check's backward starts from, so the gradient rules read the real loss's gradients. In manual
optimization, the loss handed to the first `manual_backward` is.

The traced step must not act on the run, so while it runs:
- `self.log` and `self.log_dict` do nothing (the real step logs once, as it would have);
- `manual_backward`, and any optimizer's `step`, end the step there: no update is made;
- torchmetrics metrics that the step updates get their states back;
and the check gives back the model's buffers (BatchNorm statistics), grads, modes and the RNG of
torch, Python and NumPy: the real first step computes what it would have without the callback.

A training_step that cannot be traced is named in a warning, and the first training batch the
module's forward receives is checked instead. The gradient rules run again on the gradients of the
first optimizer step, in `on_before_optimizer_step` (after the closure's backward, before the update),
and the loop's first two steps are watched from there (the rules that read "loop", NN807-NN811:
gradients that pile up in manual optimization, a module left in eval mode, a maximized loss), with
the trainer's gradient scaler and `gradient_clip_val`.
Errors stop `fit` on every rank; rank 0 prints. Works with `lightning` or, where only that is
installed, `pytorch_lightning`.
"""
from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator

from nnlint.integrations import TrainingCheck, missing_library

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:   # the older package name
    try:
        from pytorch_lightning.callbacks import Callback
    except ImportError:
        raise missing_library("lightning", "lightning", "lightning") from None


class NNLintCallback(TrainingCheck, Callback):
    """Options as nnlint.guard's: on_error="raise"|"warn", select, ignore, config."""

    # Lightning steps with a closure (the backward runs inside optimizer.step): the loop's watch is told
    # in on_before_optimizer_step, where the closure's backward has run, with the trainer's own gradient
    # scaler and clipping threshold (Lightning clips after this hook).
    watch_pre_hook = False

    def on_fit_start(self, trainer, pl_module) -> None:
        optimizers = list(getattr(trainer, "optimizers", None) or [])
        self.start(pl_module, optimizers[0] if optimizers else None)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.batch_checked:
            self.check_step(batch, traced_training_step(trainer, pl_module, batch_idx))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.gradients_ready()
        precision = getattr(trainer, "precision_plugin", None)
        clip = getattr(trainer, "gradient_clip_val", None)
        by_norm = str(getattr(trainer, "gradient_clip_algorithm", "norm")).lower().endswith("norm")
        self.loop_step(scaler=getattr(precision, "scaler", None) is not None,
                       clip_threshold=float(clip) if clip and by_norm else None)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.stop()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.stop()


class _StepEnded(BaseException):
    """Raised where the traced training_step would start updating (manual_backward, an optimizer step),
    with the loss it reached. A BaseException, so that a user's `except Exception` does not swallow it."""

    def __init__(self, loss=None):
        super().__init__()
        self.loss = loss


def traced_training_step(trainer, pl_module, batch_idx: int) -> Callable:
    """`step(model, batch)` for nnlint.check: the module's training_step, called as the fit loop calls it,
    kept from acting on the run, returning its loss."""
    takes_batch_idx = _takes_batch_idx(pl_module.training_step)
    precision = getattr(trainer, "precision_plugin", None)

    def training_step(model, batch):
        context = precision.train_step_context() if precision is not None else nullcontext()
        with _kept_from_the_run(trainer, model), context:
            try:
                out = model.training_step(batch, batch_idx) if takes_batch_idx else model.training_step(batch)
            except _StepEnded as ended:
                return ended.loss
        return out.get("loss") if isinstance(out, Mapping) else out

    training_step.__qualname__ = f"{type(pl_module).__name__}.training_step"
    return training_step


def _takes_batch_idx(training_step) -> bool:
    """As Lightning decides: `batch_idx` by name, *args, or a second parameter after the batch."""
    try:
        params = inspect.signature(training_step).parameters
    except (TypeError, ValueError):
        return True
    return "batch_idx" in params or any(p.kind == p.VAR_POSITIONAL for p in params.values()) or len(params) >= 2


@contextmanager
def _kept_from_the_run(trainer, pl_module) -> Iterator[None]:
    def nothing(*args, **kwargs):
        return None

    def end_step(loss=None, *args, **kwargs):
        raise _StepEnded(loss)

    def end_before_update(optimizer, args, kwargs):
        raise _StepEnded()

    patched = [(pl_module, "log", nothing), (pl_module, "log_dict", nothing), (pl_module, "manual_backward", end_step)]
    saved = [(obj, name, obj.__dict__.get(name, _ABSENT)) for obj, name, _ in patched]
    metrics = _metric_states(pl_module)
    # The optimizers' own step pre-hooks: whichever wrapper the step goes through (LightningOptimizer,
    # the strategy, the precision plugin), the torch optimizer's step is where an update would begin.
    hooks = [opt.register_step_pre_hook(end_before_update) for opt in getattr(trainer, "optimizers", None) or []]
    for obj, name, replacement in patched:
        obj.__dict__[name] = replacement
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()
        for obj, name, before in saved:
            if before is _ABSENT:
                obj.__dict__.pop(name, None)
            else:
                obj.__dict__[name] = before
        for metric, state in metrics:
            for key, value in state.items():
                setattr(metric, key, value)


_ABSENT = object()


def _metric_states(pl_module) -> list[tuple[Any, dict[str, Any]]]:
    """The states of the torchmetrics metrics in the module (`self.train_acc(preds, y)` in the step
    updates them), copied, with the counters that say whether they were updated or computed."""
    saved = []
    for module in pl_module.modules():
        names = getattr(module, "_defaults", None)
        if isinstance(names, dict) and hasattr(module, "metric_state"):   # a torchmetrics.Metric
            keys = [*names, "_update_count", "_computed", "_forward_cache"]
            saved.append((module, {k: copy.deepcopy(getattr(module, k)) for k in keys if hasattr(module, k)}))
    return saved
