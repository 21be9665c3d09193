"""Replace an activation (sigmoid/tanh, or an improper one: exp, a power, a softmax over features, in a
hidden layer) with a ReLU-family one, and re-initialize the layers that feed it for the new activation.
A torch.nn activation module is swapped for the new one; a functional call (`torch.sigmoid(x)`,
`torch.exp(x)`, `F.softmax(x, dim=1)` in a forward) runs the new function at that call site, on its
first argument only (a softmax's `dim`, a power's exponent are dropped)."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Optional

from nnlint.fix.kind import Applied, CallSite, CannotFix, FixKind, register
from nnlint.fix.specs import LayerInit, layer_inits
from nnlint.trace.ops import ACTIVATION_MODULES

# The modules of the improper activations a swap replaces (they are no activations to swap in).
_MODULES = {**ACTIVATION_MODULES, "softmax": "Softmax", "log_softmax": "LogSoftmax"}
# Sources whose calls carry more than the input: the swapped call keeps the first argument only.
_EXTRA_ARGUMENTS = {"softmax", "log_softmax", "pow"}


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
        return not p.site.functional and module is not None and type(module).__name__ == _MODULES.get(p.source)

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
        names = tuple(dict.fromkeys((p.source, p.site.func) if p.site.func else (p.source,)))   # x ** 2 calls __pow__
        file, line = ctx.install_rewrite(module, p.site, names, run_new_activation,
                                         {"to": p.to, **({"negative_slope": p.negative_slope} if p.negative_slope is not None else {})})
        return Applied(f"{p.source}() called at {os.path.basename(file)}:{line} now runs {p.to}() (in memory)",
                       self.inits(fix, ctx.std_of))

    def edit(self, fix, diagnostic, ctx):
        import libcst as cst

        from nnlint.fix.edits import NodeEdit

        p: SwapActivationParams = fix.params
        new_class = ACTIVATION_MODULES.get(p.to, "ReLU")
        if self._is_module_swap(p, ctx.modules.get(fix.target)):
            call = ctx.construction_call(fix.target, {_MODULES[p.source]}, self.name)
            slope = 0.01 if p.negative_slope is None else p.negative_slope
            args = [cst.Arg(cst.parse_expression(repr(float(slope))))] if p.to == "leaky_relu" else []
            ctx.rename_call(call, new_class, args=args)
            shown = repr(float(slope)) if p.to == "leaky_relu" else ""
            what = f"nn.{_MODULES[p.source]}() on line {call.start_line} -> nn.{new_class}({shown})"
        else:
            call = ctx.call_site(p.site, {p.source, p.site.func} - {""})
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
                keep = _kept_arguments(p.source, call)
                ctx.edits.node_edits.append(NodeEdit(call.node, lambda node: node.with_changes(
                    func=cst.parse_expression(f"{torch}.{p.to}"), args=keep(node))))
                what = f"{p.source}() on line {call.start_line} -> {p.to}()"
            else:
                keep = _kept_arguments(p.source, call)
                ctx.edits.node_edits.append(NodeEdit(call.node, lambda node: node.with_changes(
                    func=node.func.with_changes(attr=cst.Name(p.to)), args=keep(node))))
                what = f"{call.receiver}.{p.source}() on line {call.start_line} -> {p.to}()"
        ctx.request_inits(fix, diagnostic.code)
        return what


def _kept_arguments(source: str, call):
    """The arguments the swapped call keeps: all of them, or for a softmax or a power only the input
    (`F.softmax(x, dim=1)` -> `F.relu(x)`; the method form `x.pow(2)` -> `x.relu()`)."""
    import libcst as cst

    def keep(node):
        if source not in _EXTRA_ARGUMENTS:
            return node.args
        if not node.args or _is_method(call):
            return []
        return [node.args[0].with_changes(comma=cst.MaybeSentinel.DEFAULT)]

    return keep


def _is_method(call) -> bool:
    """`x.pow(2)`: the receiver is the tensor, not a module of functions (torch, F, torch.nn.functional)."""
    return call.receiver not in (None, "torch", "F", "torch.nn.functional", "nn.functional", "functional")


def _new_activation(p: SwapActivationParams):
    import torch.nn as nn

    if p.to == "leaky_relu":
        return nn.LeakyReLU(0.01 if p.negative_slope is None else p.negative_slope)
    cls = getattr(nn, ACTIVATION_MODULES.get(p.to, ""), None)
    if cls is None:
        raise CannotFix(f"unknown replacement activation {p.to!r}")
    return cls()
