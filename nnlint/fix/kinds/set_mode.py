"""Every submodule in the model's mode: `model.train()` or `model.eval()` on the whole model, after it is
built (a submodule left in the other mode uses batch statistics at eval, or keeps dropping)."""
from __future__ import annotations

from dataclasses import dataclass

from nnlint.fix.kind import Applied, FixKind, register


@dataclass(frozen=True)
class SetModeParams:
    training: bool                        # the mode the whole model should be in: the root's


@register
class SetMode(FixKind):
    name = "set_mode"
    Params = SetModeParams
    safe = True

    def apply(self, fix, ctx):
        ctx.model.train(fix.params.training)
        return Applied(f"called model.{'train' if fix.params.training else 'eval'}() on the whole model")

    def edit(self, fix, diagnostic, ctx):
        scope = ctx.placer.root_scope()
        statement = f"{scope.base}.{'train' if fix.params.training else 'eval'}()"
        if not any(text == statement for text, _ in scope.extra):
            scope.extra.append((statement, f"every submodule in the model's mode (nnlint {diagnostic.code})"))
        return f"add {statement} after the model is built"
