"""Hugging Face `Trainer`: check the model on a batch of the train dataloader when training begins, with the
Trainer's own `compute_loss` computing the loss, and its first real gradients.

    trainer = transformers.Trainer(..., callbacks=[nnlint.integrations.transformers.NNLintCallback()])

`on_train_begin` takes one batch from the train dataloader (the RNG of torch, Python and numpy is given
back afterwards, so the shuffling and the collator's masking draw what they would have), moves it to
the model's device, and checks the model on it with the Trainer's `compute_loss(model, batch)` as the
step, in the Trainer's `compute_loss_context_manager()`, as its training step calls it: a subclass
that overrides `compute_loss` is checked with its own loss, and the gradient rules read that loss's
gradients. The Trainer is the one whose training loop called the callback (callbacks are not handed
it, so it is found on the call stack); where there is none, the model is checked as `model(**batch)`
with the loss it returns. Where no batch can be had, the first training batch the model's forward
receives is checked instead. `on_pre_optimizer_step` runs the gradient rules on the first real
gradients, after clipping, before the update. The loop's first two optimizer steps are watched
(the rules that read "loop", NN807-NN811), from the optimizer's own step hooks inside the Trainer's
accelerate wrapper (so its fp16 GradScaler is seen). Errors stop training on every rank; rank 0 prints.
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Callable, Optional

from nnlint.integrations import TrainingCheck, missing_library, random_state_kept

try:
    from transformers import Trainer, TrainerCallback
except ImportError:
    raise missing_library("transformers", "transformers (with accelerate, which its Trainer needs)",
                          "transformers") from None


class NNLintCallback(TrainingCheck, TrainerCallback):
    """Options as nnlint.guard's: on_error="raise"|"warn", select, ignore, config."""

    def on_train_begin(self, args, state, control, model=None, optimizer=None, train_dataloader=None, **kwargs):
        if model is None:
            return
        self.start(model, optimizer)
        batch = first_batch(train_dataloader)
        if batch is None:
            self.check_first_forward()
            return
        trainer = calling_trainer()
        self.check_step(_to_device(batch, _device_of(model)), None if trainer is None else compute_loss_of(trainer))

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.gradients_ready()

    def on_train_end(self, args, state, control, **kwargs):
        self.stop()


def calling_trainer(depth: int = 12) -> Optional[Trainer]:
    """The Trainer whose training loop is calling this callback: the `self` of a frame below us."""
    frame = sys._getframe(1)
    for _ in range(depth):
        if frame is None:
            return None
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Trainer):
            return candidate
        frame = frame.f_back
    return None


def compute_loss_of(trainer: Trainer) -> Callable:
    """`step(model, batch)` for nnlint.check: the Trainer's compute_loss, as its training_step calls it."""

    def compute_loss(model, batch):
        # compute_loss may pop the labels out of the dict it is given: hand it a copy each time.
        inputs = dict(batch) if isinstance(batch, Mapping) else batch
        with trainer.compute_loss_context_manager():
            return trainer.compute_loss(model, inputs)

    compute_loss.__qualname__ = f"{type(trainer).__name__}.compute_loss"
    return compute_loss


def first_batch(dataloader) -> Optional[Any]:
    """One batch of `dataloader`, leaving the random state as it was; None when it cannot be had.

    Accelerate wraps the Trainer's DataLoader, and its iteration registers itself with the
    gradient-accumulation state (and syncs RNGs across ranks); an abandoned iteration would leave that
    behind, so the batch is drawn from the DataLoader inside and moved to the device here."""
    loader = getattr(dataloader, "base_dataloader", dataloader)
    if loader is None:
        return None
    with random_state_kept():
        try:
            iterator = iter(loader)
            try:
                return next(iterator, None)
            finally:
                del iterator   # shut any worker processes down now
        except Exception:   # the training loop will meet (and report) the same problem itself
            return None


def _device_of(model):
    return next((p.device for p in model.parameters()), None)


def _to_device(batch, device):
    import torch

    if device is None:
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch
