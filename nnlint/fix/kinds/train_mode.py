"""`model.train()` before the training loop: a model left in eval mode (after a validation pass, or a
`model.eval()` at load time) trains with dropout off and BatchNorm frozen. In memory: the model is put
in training mode; in the source: the statement goes just before the loop the guard (or the loop probe)
saw, or first in a step function that has no loop of its own."""
from __future__ import annotations

from dataclasses import dataclass

from nnlint.fix.kind import Applied, FixKind, register
from nnlint.fix.loopsite import LoopSite


@dataclass(frozen=True)
class TrainModeParams:
    site: LoopSite


@register
class TrainMode(FixKind):
    name = "train_mode_in_loop"
    Params = TrainModeParams
    safe = True

    def apply(self, fix, ctx):
        ctx.model.train()
        return Applied("called model.train() on the whole model")

    def edit(self, fix, diagnostic, ctx):
        from nnlint.fix.loopsite import insert_before, loop_around, step_call

        loop = loop_around(ctx, step_call(ctx, fix.params.site))
        statement = f"{fix.params.site.model or 'model'}.train()"
        insert_before(ctx, loop, statement)
        return f"{statement} before the training loop on line {ctx.source.line(loop)}"
