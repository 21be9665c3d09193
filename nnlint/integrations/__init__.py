"""Training-framework callbacks built on nnlint.guard's pieces; each imports its library only when used.

    trainer = L.Trainer(callbacks=[nnlint.integrations.lightning.NNLintCallback()])
    trainer = transformers.Trainer(..., callbacks=[nnlint.integrations.transformers.NNLintCallback()])
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Iterable, Optional

from nnlint.config import Config
from nnlint.guard import Guard, make_guard

__all__ = ["lightning", "transformers", "TrainingCheck"]


class TrainingCheck:
    """What both callbacks do, whatever the framework calls its hooks: check the model once training
    starts (on a batch the callback found, or else on the first batch its forward receives), run the
    gradient rules at the first optimizer step, and take everything off when training ends."""

    def __init__(self, *, on_error: str = "raise", select: Optional[Iterable[str]] = None,
                 ignore: Optional[Iterable[str]] = None, config: Optional[Config] = None):
        # Built now, so that a bad option or configuration fails when the callback is made, not mid-run.
        self.template = make_guard(None, on_error=on_error, select=select, ignore=ignore, config=config)
        self.guard: Optional[Guard] = None
        self.gradients_checked = False

    @property
    def report(self):
        """What the check found (None before training starts)."""
        return None if self.guard is None else self.guard.report

    def start(self, model, optimizer=None, batch: Any = None) -> None:
        self.guard = dataclasses.replace(self.template, model=model, optimizer=optimizer)
        self.gradients_checked = False
        if batch is None:
            self.guard.install(step=False)   # the first training batch that reaches forward
        else:
            self.guard.check_batch(batch)

    def gradients_ready(self) -> None:
        if self.guard is None or self.gradients_checked:
            return
        self.gradients_checked = True
        self.guard.remove()   # whatever the forward hook was to see, it has seen by now
        self.guard.check_gradients()

    def stop(self) -> None:
        if self.guard is not None:
            self.guard.remove()


def __getattr__(name):
    # `nnlint.integrations.lightning` works without an explicit import of the submodule.
    if name in ("lightning", "transformers"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
