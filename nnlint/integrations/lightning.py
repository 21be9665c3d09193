"""Lightning: check the model when `fit` starts, and its first real gradients.

    trainer = L.Trainer(callbacks=[nnlint.integrations.lightning.NNLintCallback()])

At fit start the LightningModule is checked on its `example_input_array` when it has one (moved to the
module's device the way Lightning moves batches); otherwise on the first training batch its `forward`
receives (a one-shot forward pre-hook: `training_step` must call `self(...)`). The gradient rules run on
the gradients of the first optimizer step, in `on_before_optimizer_step` (after the closure's backward,
before the update). Errors stop `fit` on every rank; rank 0 prints. Works with `lightning` or, where only
that is installed, `pytorch_lightning`.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Optional

from nnlint.config import Config
from nnlint.guard import Guard, make_guard

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:   # the older package name
    from pytorch_lightning.callbacks import Callback


class NNLintCallback(Callback):
    def __init__(self, *, on_error: str = "raise", select: Optional[Iterable[str]] = None,
                 ignore: Optional[Iterable[str]] = None, config: Optional[Config] = None):
        super().__init__()
        # Built now, so that a bad option or configuration fails here rather than mid-fit.
        self.template = make_guard(None, on_error=on_error, select=select, ignore=ignore, config=config)
        self.guard: Optional[Guard] = None
        self.gradients_checked = False

    @property
    def report(self):
        """What the check found (None before fit)."""
        return None if self.guard is None else self.guard.report

    def on_fit_start(self, trainer, pl_module) -> None:
        optimizers = list(getattr(trainer, "optimizers", None) or [])
        self.guard = dataclasses.replace(self.template, model=pl_module, optimizer=optimizers[0] if optimizers else None)
        self.gradients_checked = False
        example = getattr(pl_module, "example_input_array", None)
        if example is None:
            self.guard.install(step=False)   # the first training batch that reaches forward
            return
        self.guard.check_batch(_to_module_device(pl_module, example))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.guard is None or self.gradients_checked:
            return
        self.gradients_checked = True
        self.guard.remove()   # whatever the forward hook saw, it has seen it by now
        self.guard.check_gradients()

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.guard is not None:
            self.guard.remove()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.on_fit_end(trainer, pl_module)


def _to_module_device(pl_module, batch):
    transfer = getattr(pl_module, "_apply_batch_transfer_handler", None)   # what Lightning's summary uses
    if transfer is not None:
        return transfer(batch)
    return pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
