"""Drop the softmax/sigmoid at the end of a model whose loss applies its own (`cross_entropy`,
`BCEWithLogitsLoss`): the model then returns logits. A torch.nn module (`nn.Softmax(dim=1)`) becomes
`nn.Identity()`; a functional call (`torch.softmax(x, dim=1)` in a forward) returns its input.

Unsafe: the model's output changes from probabilities to logits, so code that reads it as probabilities
(inference, metrics) must apply the softmax itself."""
from __future__ import annotations

import os
from dataclasses import dataclass

from nnlint.fix.kind import Applied, CallSite, CannotFix, CannotPlace, FixKind, register


@dataclass(frozen=True)
class DropSquashParams:
    func: str                             # the op at the output: "softmax", "sigmoid"
    site: CallSite                        # where it is called (its module's own call when not functional)
    module_type: str = ""                 # "Softmax", "Sigmoid" when a torch.nn module makes the call


def return_input(func, args, kwargs, rewrite, module):
    """The call-site action: the call's input, unchanged."""
    return args[0] if args else kwargs.get("input")


@register
class DropSquash(FixKind):
    name = "drop_squash"
    Params = DropSquashParams
    safe = False

    def _is_module(self, p: DropSquashParams, module) -> bool:
        return not p.site.functional and module is not None and type(module).__name__ == p.module_type

    def apply(self, fix, ctx):
        import torch.nn as nn

        p: DropSquashParams = fix.params
        module = ctx.module(fix.target)
        if self._is_module(p, module):
            if not fix.target:
                raise CannotFix(f"the model itself is the {p.module_type}; remove it where the model is built")
            ctx.replace_module(fix.target, nn.Identity())
            return Applied(f"replaced {fix.target} ({p.module_type}) with Identity: the model returns logits")
        file, line = ctx.install_rewrite(module, p.site, (p.func,), return_input, {})
        return Applied(f"{p.func}() called at {os.path.basename(file)}:{line} now returns its input (in memory)")

    def edit(self, fix, diagnostic, ctx):
        import libcst as cst

        from nnlint.fix.edits import NodeEdit

        p: DropSquashParams = fix.params
        if self._is_module(p, ctx.modules.get(fix.target)):
            call = ctx.construction_call(fix.target, {p.module_type}, self.name)
            ctx.rename_call(call, "Identity", args=[])
            return f"nn.{p.module_type}(...) on line {call.start_line} -> nn.Identity(): the model returns logits"
        call = ctx.call_site(p.site, {p.func})
        node = call.node
        namespaces = {"torch", "F", "torch.nn.functional"} | {
            s for s in (ctx.source.spelling(m) for m in ("torch", "torch.nn.functional", "torch.special")) if s}
        if call.receiver is not None and isinstance(node.func, cst.Attribute) and call.receiver not in namespaces:
            replacement = node.func.value            # x.softmax(dim=1) -> x
        elif node.args:
            replacement = node.args[0].value         # torch.softmax(x, dim=1) -> x
        else:
            raise CannotPlace(f"the {p.func}() call on line {call.start_line} has no input argument to keep")
        ctx.edits.node_edits.append(NodeEdit(node, lambda _: replacement))
        return f"{p.func}(...) on line {call.start_line} -> its input: the model returns logits"
