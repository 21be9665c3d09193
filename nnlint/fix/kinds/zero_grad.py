"""`optimizer.zero_grad(set_to_none=True)` first in the training loop's body: without it every backward
adds to the gradients of all the steps before. The loop is the user's code, not the model, so there
is nothing to change in memory; the source half edits the loop the guard (or the loop probe) saw."""
from __future__ import annotations

from dataclasses import dataclass

from nnlint.fix.kind import CannotFix, FixKind, register
from nnlint.fix.loopsite import LoopSite


@dataclass(frozen=True)
class ZeroGradParams:
    site: LoopSite


@register
class ZeroGrad(FixKind):
    name = "zero_grad_in_loop"
    Params = ZeroGradParams
    safe = True

    def apply(self, fix, ctx):
        raise CannotFix("the training loop is your code, not part of the model: add "
                        "optimizer.zero_grad(set_to_none=True) at the top of its body")

    def edit(self, fix, diagnostic, ctx):
        from nnlint.fix.loopsite import loop_around, optimizer_name, prepend_to_body, step_call

        call = step_call(ctx, fix.params.site)
        loop = loop_around(ctx, call)
        statement = f"{optimizer_name(call, fix.params.site)}.zero_grad(set_to_none=True)"
        prepend_to_body(ctx, loop, statement)
        return f"{statement} first in the loop body on line {ctx.source.line(loop)}"
