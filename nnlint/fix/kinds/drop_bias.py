"""A layer whose bias a following norm subtracts away gets none: in memory the bias parameter is removed
(Linear and Conv layers run without one), in source the construction call gets `bias=False`."""
from __future__ import annotations

from dataclasses import dataclass

from nnlint.fix.kind import Applied, CannotFix, FixKind, register
from nnlint.fix.kinds._keyword import set_keyword


@dataclass(frozen=True)
class DropBiasParams:
    module_type: str                      # the class built at the construction call: "Conv2d", "Linear"


@register
class DropBias(FixKind):
    name = "drop_bias"
    Params = DropBiasParams
    safe = False   # the same function, but a parameter fewer: old checkpoints and optimizers no longer fit

    def apply(self, fix, ctx):
        module = ctx.module(fix.target)
        if getattr(module, "bias", None) is None:
            raise CannotFix(f"{fix.target} has no bias")
        module.register_parameter("bias", None)
        return Applied(f"{fix.target} has no bias now (bias=False, in memory); rebuild the optimizer")

    def edit(self, fix, diagnostic, ctx):
        p: DropBiasParams = fix.params
        line = set_keyword(ctx, fix, {p.module_type}, self.name, "bias", "False")
        return f"{p.module_type}(...) on line {line} gets bias=False"
