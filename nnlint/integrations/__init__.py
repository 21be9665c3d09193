"""Training-framework callbacks built on nnlint.guard's pieces; each imports its library only when used.

    trainer = L.Trainer(callbacks=[nnlint.integrations.lightning.NNLintCallback()])
    trainer = transformers.Trainer(..., callbacks=[nnlint.integrations.transformers.NNLintCallback()])
"""
from __future__ import annotations

import dataclasses
import importlib
import random
from contextlib import contextmanager
from typing import Iterable, Iterator, Optional

from nnlint.config import Config
from nnlint.guard import Guard, make_guard

__all__ = ["lightning", "transformers", "TrainingCheck"]


class TrainingCheck:
    """What both callbacks do, whatever the framework calls its hooks: check the model once, on the first
    training batch, with the framework's own step computing the loss (or, where that cannot be had, on
    the first batch the model's forward receives); run the gradient rules at the first optimizer step;
    watch the loop's first two optimizer steps (nnlint.probes.loopwatch: the rules that read "loop");
    and take everything off when training ends.

    `watch_pre_hook`: the optimizer's own step pre-hook says when a step's gradients are final (the
    HF Trainer steps without a closure); a framework that steps with a closure (Lightning) says False
    and calls `loop_step` from its own hook instead."""

    watch_pre_hook = True

    def __init__(self, *, on_error: str = "raise", select: Optional[Iterable[str]] = None,
                 ignore: Optional[Iterable[str]] = None, config: Optional[Config] = None):
        # Built now, so that a bad option or configuration fails when the callback is made, not mid-run.
        self.template = make_guard(None, on_error=on_error, select=select, ignore=ignore, config=config)
        self.guard: Optional[Guard] = None
        self.batch_checked = False
        self.gradients_checked = False

    @property
    def report(self):
        """What the check found (None before training starts)."""
        return None if self.guard is None else self.guard.report

    def start(self, model, optimizer=None) -> None:
        """Training starts: the check waits for its first batch."""
        self.guard = dataclasses.replace(self.template, model=model, optimizer=optimizer)
        self.batch_checked = self.gradients_checked = False
        self.guard.watch(pre_hook=self.watch_pre_hook)

    def loop_step(self, *, scaler: Optional[bool] = None, clip_threshold: Optional[float] = None) -> None:
        """The framework's hook where a step's gradients are final, just before the update."""
        if self.guard is not None:
            self.guard.loop_step(scaler=scaler, clip_threshold=clip_threshold)

    def check_step(self, batch, step) -> None:
        """Check the model on this batch, with `step(model, batch)` (the framework's training step)
        computing the loss; where the step cannot be traced, the first batch forward receives instead.

        The check itself gives back the torch RNG; a step may also draw from Python's or NumPy's, which
        are given back here, so the real first step draws what it would have."""
        if self.guard is None or self.batch_checked:
            return
        self.batch_checked = True
        with random_state_kept():
            report = self.guard.check_batch(
                batch, step=step, instead="it checks the first training batch the model's forward receives instead")
        if report is None:
            self.guard.install(step=False)

    def check_first_forward(self) -> None:
        """No batch could be had here: check the first training batch the model's forward receives."""
        if self.guard is None or self.batch_checked:
            return
        self.batch_checked = True
        self.guard.install(step=False)

    def gradients_ready(self) -> None:
        if self.guard is None or self.gradients_checked:
            return
        self.gradients_checked = True
        self.guard.remove(loop=False)   # whatever the forward hook was to see, it has seen by now
        self.guard.check_gradients()

    def stop(self) -> None:
        if self.guard is not None:
            self.guard.remove()


@contextmanager
def random_state_kept() -> Iterator[None]:
    """Give back the RNG of torch (CPU and initialized CUDA devices), Python and NumPy (where installed)."""
    import torch

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    py_state = random.getstate()
    try:
        import numpy
    except ImportError:   # torch does not need it, nor do these checks
        numpy = None
    np_state = numpy.random.get_state() if numpy is not None else None
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py_state)
        if numpy is not None:
            numpy.random.set_state(np_state)


def missing_library(integration: str, package: str, extra: str) -> ImportError:
    """The error for an integration whose library is not installed: what to install."""
    return ImportError(f'nnlint.integrations.{integration} needs {package}, which is not installed: '
                       f'pip install "nnlint[{extra}]"')


def __getattr__(name):
    # `nnlint.integrations.lightning` works without an explicit import of the submodule.
    if name in ("lightning", "transformers"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
