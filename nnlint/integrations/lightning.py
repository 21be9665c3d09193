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

from nnlint.integrations import TrainingCheck

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:   # the older package name
    from pytorch_lightning.callbacks import Callback


class NNLintCallback(TrainingCheck, Callback):
    """Options as nnlint.guard's: on_error="raise"|"warn", select, ignore, config."""

    def on_fit_start(self, trainer, pl_module) -> None:
        optimizers = list(getattr(trainer, "optimizers", None) or [])
        example = getattr(pl_module, "example_input_array", None)
        self.start(pl_module, optimizers[0] if optimizers else None,
                   None if example is None else _to_module_device(pl_module, example))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.gradients_ready()

    def on_fit_end(self, trainer, pl_module) -> None:
        self.stop()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.stop()


def _to_module_device(pl_module, batch):
    transfer = getattr(pl_module, "_apply_batch_transfer_handler", None)   # what Lightning's summary uses
    if transfer is not None:
        return transfer(batch)
    return pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
