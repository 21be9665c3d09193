"""A dropout that feeds a BatchNorm is removed: nn.Identity() in its place (indices and names stay), or a
functional call replaced by its input. BatchNorm already regularizes; moving the dropout after the
last BatchNorm is a design choice left to the user."""
from __future__ import annotations

import os
from dataclasses import dataclass

from nnlint.fix.kind import Applied, CallSite, CannotPlace, FixKind, register

DROPOUT_MODULES = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout")


@dataclass(frozen=True)
class MoveDropoutParams:
    batchnorm: str                        # the BatchNorm module it feeds
    p: float
    site: CallSite


def pass_through(func, args, kwargs, rewrite, module):
    """The call-site action: the call's input, unchanged."""
    return args[0] if args else kwargs["input"]


@register
class MoveDropout(FixKind):
    name = "move_dropout"
    Params = MoveDropoutParams
    safe = False

    def apply(self, fix, ctx):
        import torch.nn as nn

        p: MoveDropoutParams = fix.params
        module = ctx.module(fix.target)
        if isinstance(module, nn.modules.dropout._DropoutNd) and fix.target:
            ctx.replace_module(fix.target, nn.Identity())
            return Applied(f"removed {fix.target} ({type(module).__name__}(p={module.p})) in front of BatchNorm "
                           f"{p.batchnorm} (nn.Identity in its place)")
        func = p.site.func or "dropout"
        file, line = ctx.install_rewrite(module, p.site, (func,), pass_through, {})
        return Applied(f"{func}() at {os.path.basename(file)}:{line} now passes its input through")

    def edit(self, fix, diagnostic, ctx):
        from nnlint.fix.edits import NodeEdit

        p: MoveDropoutParams = fix.params
        module = ctx.modules.get(fix.target)
        cls = type(module).__name__ if module is not None else ""
        if cls in DROPOUT_MODULES and fix.target:
            call = ctx.construction_call(fix.target, {cls}, self.name)
            ctx.rename_call(call, "Identity", args=[])
            return (f"nn.{cls}(...) on line {call.start_line} -> nn.Identity(): BatchNorm {p.batchnorm} "
                    "already regularizes (to keep dropout, add it after the last BatchNorm)")
        func = p.site.func or "dropout"
        call = ctx.call_site(p.site, {func})
        if not call.node.args:
            raise CannotPlace(f"{func}() on line {call.start_line} has no input argument")
        ctx.edits.node_edits.append(NodeEdit(call.node, lambda node: node.args[0].value))
        return f"{func}(...) on line {call.start_line} replaced by its input: BatchNorm already regularizes"
