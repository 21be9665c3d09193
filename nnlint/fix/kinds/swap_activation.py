"""Replace an activation (sigmoid/tanh in a hidden layer, exp, a ReLU whose units die) with a ReLU or a
LeakyReLU, and re-initialize the layers that feed it for the new activation. A torch.nn activation module is swapped for the new one; a
functional call (`torch.sigmoid(x)` in a forward) runs the new function at that call site."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Optional

from nnlint.fix.kind import Applied, CallSite, CannotFix, FixKind, register
from nnlint.fix.specs import LayerInit, layer_inits
from nnlint.trace.ops import ACTIVATION_MODULES


@dataclass(frozen=True)
class SwapActivationParams:
    source: str                           # the activation now: "sigmoid", "tanh"
    site: CallSite                        # where it is called (a module's own call when not functional)
    to: str = "relu"
    negative_slope: Optional[float] = None   # for to="leaky_relu"
    reinit: tuple[LayerInit, ...] = ()    # the layers feeding it, initialized for the new activation


def run_new_activation(func, args, kwargs, rewrite, module):
    """The call-site action: the new activation on the call's input."""
    import torch
    import torch.nn.functional as F

    x = args[0] if args else kwargs.get("input")
    to = rewrite.params.get("to", "relu")
    if to == "leaky_relu":
        return F.leaky_relu(x, rewrite.params.get("negative_slope", 0.01))
    return getattr(torch, to)(x)


@register
class SwapActivation(FixKind):
    name = "swap_activation"
    Params = SwapActivationParams
    safe = False
    init_priority = 3

    def inits(self, fix, std_of):
        p: SwapActivationParams = fix.params
        return [init for layer in p.reinit for init in layer_inits(
            dataclasses.replace(layer, spec=dataclasses.replace(layer.spec, why=f"{layer.spec.family} init for the new {p.to}")),
            self.init_priority)]

    def _is_module_swap(self, p: SwapActivationParams, module) -> bool:
        return not p.site.functional and module is not None and type(module).__name__ == ACTIVATION_MODULES.get(p.source)

    def apply(self, fix, ctx):
        p: SwapActivationParams = fix.params
        module = ctx.module(fix.target)
        if self._is_module_swap(p, module):
            if not fix.target:
                raise CannotFix("the model itself is the activation; wrap it instead")
            new = _new_activation(p)
            ctx.replace_module(fix.target, new)
            return Applied(f"replaced {fix.target} ({type(module).__name__}) with {new!r}",
                           self.inits(fix, ctx.std_of))
        file, line = ctx.install_rewrite(module, p.site, (p.source,), run_new_activation,
                                         {"to": p.to, **({"negative_slope": p.negative_slope} if p.negative_slope is not None else {})})
        return Applied(f"{p.source}() called at {os.path.basename(file)}:{line} now runs {p.to}() (in memory)",
                       self.inits(fix, ctx.std_of))

    def edit(self, fix, diagnostic, ctx):
        import libcst as cst

        from nnlint.fix.edits import NodeEdit

        p: SwapActivationParams = fix.params
        new_class = ACTIVATION_MODULES.get(p.to, "ReLU")
        if self._is_module_swap(p, ctx.modules.get(fix.target)):
            call = ctx.construction_call(fix.target, {ACTIVATION_MODULES[p.source]}, self.name)
            slope = 0.01 if p.negative_slope is None else p.negative_slope
            args = [cst.Arg(cst.parse_expression(repr(float(slope))))] if p.to == "leaky_relu" else []
            ctx.rename_call(call, new_class, args=args)
            shown = repr(float(slope)) if p.to == "leaky_relu" else ""
            what = f"nn.{ACTIVATION_MODULES[p.source]}() on line {call.start_line} -> nn.{new_class}({shown})"
        else:
            call = ctx.call_site(p.site, {p.source})
            method = call.receiver is not None and call.receiver.split(".")[0] not in ctx.source.bound_names()
            if p.to == "leaky_relu":
                # F.leaky_relu(x, slope): the slope is an argument; a method call x.sigmoid() becomes one too
                functional = ctx.spell("torch.nn.functional")
                slope = repr(float(0.01 if p.negative_slope is None else p.negative_slope))

                def rewrite(node: cst.Call) -> cst.Call:
                    args = [cst.Arg(node.func.value)] if method else [a.with_changes(comma=cst.MaybeSentinel.DEFAULT)
                                                                        for a in node.args[:1]]
                    args[0] = args[0].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
                    return cst.Call(func=cst.parse_expression(f"{functional}.leaky_relu"),
                                    args=args + [cst.Arg(cst.parse_expression(slope))])

                ctx.edits.node_edits.append(NodeEdit(call.node, rewrite))
                what = f"{p.source}() on line {call.start_line} -> {functional}.leaky_relu(..., {slope})"
            elif call.receiver is None:
                torch = ctx.spell("torch")
                ctx.edits.node_edits.append(NodeEdit(call.node, lambda node: node.with_changes(
                    func=cst.parse_expression(f"{torch}.{p.to}"))))
                what = f"{p.source}() on line {call.start_line} -> {p.to}()"
            else:
                ctx.edits.node_edits.append(NodeEdit(call.node, lambda node: node.with_changes(
                    func=node.func.with_changes(attr=cst.Name(p.to)))))
                what = f"{call.receiver}.{p.source}() on line {call.start_line} -> {p.to}()"
        ctx.request_inits(fix, diagnostic.code)
        return what


def _new_activation(p: SwapActivationParams):
    import torch.nn as nn

    if p.to == "leaky_relu":
        return nn.LeakyReLU(0.01 if p.negative_slope is None else p.negative_slope)
    cls = getattr(nn, ACTIVATION_MODULES.get(p.to, ""), None)
    if cls is None:
        raise CannotFix(f"unknown replacement activation {p.to!r}")
    return cls()
