"""The training loop of a model file, watched: `train(model, optimizer, batches)` (nnlint.loader) runs on
copies of the model and the optimizer, over copies of the sample batch, while a LoopWatcher
(nnlint.probes.loopwatch) watches its first two optimizer steps exactly as nnlint.guard watches a real
run; then the loop is stopped. The loop rules (NN807-NN811) read what it saw, and the source fixes
edit the loop it ran (the file and line of its `optimizer.step()`).

The batches are `(batch, target)` when the file gives a target, else the batch; up to 8 of them, so
that a loop that accumulates gradients over micro-batches reaches its second step.
"""
from __future__ import annotations

from typing import Any, Optional

from nnlint.probes.base import Probe, ProbeContext, probe
from nnlint.probes.copies import copy_setup, default_optimizer
from nnlint.probes.loopwatch import LoopWatcher
from nnlint.trace.inventory import unwrap_optimizer

BATCHES = 8
WATCHED = 2


class _Watched(BaseException):
    """Raised after the last watched step: the rest of the user's loop need not run. A BaseException,
    so that the loop's own `except Exception` does not swallow it."""


@probe
class Loop(Probe):
    name = "loop"
    summary = "the model file's train() for two optimizer steps on copies, watched as nnlint.guard watches a run"

    def wanted(self, options) -> bool:
        return options.loop is not None

    def run(self, ctx: ProbeContext) -> Optional[dict[str, Any]]:
        given = unwrap_optimizer(ctx.optimizer) if ctx.optimizer is not None else None
        model, optimizer = copy_setup(ctx.model, given)
        if optimizer is None:
            optimizer = default_optimizer(model)
            ctx.trace.notes.append("the loop probe ran train() with Adam(lr=1e-3): the file defines no optimizer(model)")

        watcher = LoopWatcher(model, optimizer, steps=WATCHED, source="probe").install()
        batch = (ctx.batch, ctx.target) if ctx.target is not None else ctx.batch
        try:
            ctx.options.loop(model, optimizer, _Batches(batch, watcher))
        except _Watched:
            pass
        finally:
            watcher.remove()
        if not watcher.observation.steps:
            ctx.trace.notes.append("train() made no optimizer step on the batches it was given, so the loop "
                                   "rules had nothing to watch")
        return watcher.observation.as_data()


class _Batches:
    """The batches train() iterates: the sample batch again and again, until the watcher has seen its
    steps (then the loop is stopped where it asks for the next batch)."""

    def __init__(self, batch, watcher: LoopWatcher):
        self.batch, self.watcher = batch, watcher

    def __iter__(self):
        for _ in range(BATCHES):
            if self.watcher.done:
                raise _Watched()
            yield self.batch

    def __len__(self) -> int:
        return BATCHES
