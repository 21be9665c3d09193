"""Hugging Face `Trainer`: check the model on a batch of the train dataloader when training begins, and
its first real gradients.

    trainer = transformers.Trainer(..., callbacks=[nnlint.integrations.transformers.NNLintCallback()])

`on_train_begin` takes one batch from the train dataloader (the RNG of torch, Python and numpy is given
back afterwards, so the shuffling and the collator's masking draw what they would have) and checks the
model on it, with `model(**batch)` as the Trainer calls it. Where no batch can be had, the first
training batch the model's forward receives is checked instead. `on_pre_optimizer_step` runs the
gradient rules on the first real gradients, after clipping, before the update. Errors stop training on
every rank; rank 0 prints.
"""
from __future__ import annotations

import random
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any, Optional

from transformers import TrainerCallback

from nnlint.integrations import TrainingCheck


class NNLintCallback(TrainingCheck, TrainerCallback):
    """Options as nnlint.guard's: on_error="raise"|"warn", select, ignore, config."""

    def on_train_begin(self, args, state, control, model=None, optimizer=None, train_dataloader=None, **kwargs):
        if model is not None:
            batch = first_batch(train_dataloader)
            self.start(model, optimizer, None if batch is None else _to_device(batch, _device_of(model)))

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.gradients_ready()

    def on_train_end(self, args, state, control, **kwargs):
        self.stop()


def first_batch(dataloader) -> Optional[Any]:
    """One batch of `dataloader`, leaving the random state as it was; None when it cannot be had.

    Accelerate wraps the Trainer's DataLoader, and its iteration registers itself with the
    gradient-accumulation state (and syncs RNGs across ranks); an abandoned iteration would leave that
    behind, so the batch is drawn from the DataLoader inside and moved to the device here."""
    loader = getattr(dataloader, "base_dataloader", dataloader)
    if loader is None:
        return None
    with _random_state_kept():
        try:
            iterator = iter(loader)
            try:
                return next(iterator, None)
            finally:
                del iterator   # shut any worker processes down now
        except Exception:   # the training loop will meet (and report) the same problem itself
            return None


@contextmanager
def _random_state_kept():
    import torch

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    py_state = random.getstate()
    try:
        import numpy
        np_state = numpy.random.get_state()
    except ImportError:   # pragma: no cover - transformers requires numpy
        numpy = np_state = None
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py_state)
        if numpy is not None:
            numpy.random.set_state(np_state)


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
