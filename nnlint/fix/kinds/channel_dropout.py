"""Element-wise dropout on convolutional feature maps becomes channel dropout (`nn.Dropout2d`,
`F.dropout2d`): it drops whole channels, whose neighbouring activations are correlated."""
from __future__ import annotations

import os
from dataclasses import dataclass

from nnlint.fix.kind import Applied, CallSite, CannotFix, CannotPlace, FixKind, register


@dataclass(frozen=True)
class ChannelDropoutParams:
    replacement: str                      # "Dropout1d" | "Dropout2d" | "Dropout3d"
    p: float
    site: CallSite


def channel_dropout(func, args, kwargs, rewrite, module):
    """The call-site action: F.dropout1d/2d/3d with the call's p and training flag."""
    import torch.nn.functional as F

    replacement = getattr(F, rewrite.params.get("to", "dropout2d"))
    args = list(args)
    p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
    training = args[2] if len(args) > 2 else kwargs.get("training", kwargs.get("train", True))
    return replacement(args[0] if args else kwargs["input"], p=p, training=training)


@register
class ChannelDropout(FixKind):
    name = "dropout2d"
    Params = ChannelDropoutParams
    safe = False

    def apply(self, fix, ctx):
        import torch.nn as nn

        p: ChannelDropoutParams = fix.params
        module = ctx.module(fix.target)
        if not p.site.functional and isinstance(module, nn.Dropout):
            cls = getattr(nn, p.replacement, None)
            if cls is None:
                raise CannotFix(f"torch.nn has no {p.replacement}")
            ctx.replace_module(fix.target, cls(p=module.p, inplace=module.inplace))
            return Applied(f"replaced {fix.target} (Dropout) with {p.replacement}(p={module.p})")
        func = p.site.func or "dropout"
        file, line = ctx.install_rewrite(module, p.site, (func,), channel_dropout, {"to": p.replacement.lower()})
        return Applied(f"{func}() at {os.path.basename(file)}:{line} now runs {p.replacement.lower()}()")

    def edit(self, fix, diagnostic, ctx):
        import libcst as cst

        from nnlint.fix.edits import NodeEdit

        p: ChannelDropoutParams = fix.params
        module = ctx.modules.get(fix.target)
        if not p.site.functional and module is not None and type(module).__name__ == "Dropout":
            call = ctx.construction_call(fix.target, {"Dropout"}, self.name)
            ctx.rename_call(call, p.replacement)
            return f"nn.Dropout on line {call.start_line} -> nn.{p.replacement}"
        func = p.site.func or "dropout"
        call = ctx.call_site(p.site, {func})
        if call.receiver is None:
            raise CannotPlace(f"{func}() on line {call.start_line} is a bare name; call F.{p.replacement.lower()} there by hand")
        ctx.edits.node_edits.append(NodeEdit(call.node, lambda node: node.with_changes(
            func=node.func.with_changes(attr=cst.Name(p.replacement.lower())))))
        return f"{call.receiver}.{func}() on line {call.start_line} -> {call.receiver}.{p.replacement.lower()}()"
