"""The source fixer: turns fixes into edits of the user's model file (libcst), as plain torch code.

One small applier per Fix.kind plans the edits for one fix: parameter inits go to the Placer (which
finds where they take effect and how to name the module there), call-site edits rewrite one call
(`nn.Sigmoid()` -> `nn.ReLU()`, `F.dropout(x, 0.5)` -> `F.dropout(x, 0.5, training=self.training)`),
mode and input-normalization statements go after the model is built. An applier that cannot place
its edit raises CannotPlace with what to change by hand; a kind with no applier is not fixable
automatically. New kinds plug in with `@source_applier("kind")`.

Nothing is written unless the edited file parses and a re-check of it (the file loaded and checked
again, from a temporary copy beside it) no longer reports the fixed findings; a fix whose finding
survives is dropped and reported as failed, and the rest re-verified without it. See fix_file.
"""
from __future__ import annotations

import contextlib
import difflib
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import libcst as cst

from nnlint.diagnostics import Diagnostic, Fix, Location
from nnlint.fix.cstfile import CallInfo, SourceFile, SourceSyntaxError
from nnlint.fix.edits import START, EditSet, Insertion, NodeEdit, apply_edits
from nnlint.fix.placement import CannotPlace, Placer, Request, RootScope, root_scope_of
from nnlint.fix.result import APPLIED, FAILED, NOT_FIXABLE, FixOutcome, FixResult, Ledger, diagnostic_key, triage
from nnlint.fix.sites import WriteLog, init_code_keys, module_paths, record_writes
from nnlint.fix.specs import PARAM_INITS, join_detail, resolve


@dataclass
class SourceContext:
    """What an applier needs: the file, the loaded model, where each module was built, the placer."""

    source: SourceFile
    path: str
    model: Any
    trace: Any
    origins: dict
    placer: Placer
    round_targets: dict[str, set[str]]              # Fix.kind -> targets fixed this round
    batch: Any = None
    edits: EditSet = field(default_factory=EditSet)
    requests: list[tuple[Request, int]] = field(default_factory=list)   # (param init, owning fix index)
    current: int = 0                                                    # index of the fix being planned
    normalized_inputs: dict[str, str] = field(default_factory=dict)     # input path -> the code whose fix normalizes it

    def __post_init__(self):
        self.paths = module_paths(self.model)
        self.modules = dict(self.model.named_modules(remove_duplicate=False))

    def std_of(self, name: str) -> Optional[float]:
        module, _, attr = name.rpartition(".")
        t = getattr(self.modules.get(module), attr, None)
        try:
            return None if t is None or t.numel() < 2 else float(t.detach().float().std())
        except AttributeError:
            return None

    def tensor_exists(self, name: str) -> bool:
        module, _, attr = name.rpartition(".")
        return getattr(self.modules.get(module), attr, None) is not None

    def request_inits(self, fix: Fix, code: str) -> list[str]:
        inits = PARAM_INITS[fix.kind](fix, self.std_of)
        for init in inits:
            self.requests.append((Request(init, (code,)), self.current))
        return [init.param for init in inits]

    # -- construction sites and call sites --
    def module_location(self, name: str) -> Location:
        rec = self.trace.modules.get(name) if self.trace is not None else None
        loc = rec.location if rec is not None else None
        if loc is None:
            raise CannotPlace(f"nnlint does not know where {name or 'the model'} is built")
        if os.path.abspath(loc.file) != os.path.abspath(self.path):
            raise CannotPlace(f"{name} is built in {loc.file}:{loc.line}, outside this file; change it there")
        return loc

    def construction_call(self, name: str, class_names: set[str], kind: str) -> CallInfo:
        """The `nn.Sigmoid()` call that built module `name`. Several modules built by one call (a loop, a
        comprehension) are changed together only when all of them are fixed alike."""
        loc = self.module_location(name)
        module = self.modules[name]
        same = [mid for mid, at in self.origins.items()
                if at == loc and mid in self.paths and type(self.modules[self.paths[mid]]) is type(module)]
        calls = self.source.calls_at(loc.line, class_names)
        if not calls or id(module) not in same:
            raise CannotPlace(f"cannot find the {type(module).__name__}(...) call that builds {name} on line {loc.line}")
        rank = same.index(id(module))
        index = rank % len(calls)
        built_together = {self.paths[mid] for i, mid in enumerate(same) if i % len(calls) == index}
        others = built_together - self.round_targets.get(kind, set())
        if others:
            raise CannotPlace(f"line {loc.line} builds {name} together with {', '.join(sorted(others))}, which need no "
                              f"change; build {name} separately")
        return calls[index]

    def call_site(self, fix: Fix, names: set[str]) -> CallInfo:
        file, line = fix.params.get("file"), fix.params.get("line")
        if not file or not line:
            raise CannotPlace("the call site is unknown")
        if os.path.abspath(file) != os.path.abspath(self.path):
            raise CannotPlace(f"the call is in {file}:{line}, outside this file; change it there")
        # not `self.sigmoid(x)`: a module attribute called, which the module swap handles
        calls = [c for c in self.source.calls_at(int(line), names) if not re.fullmatch(r"self(\.\w+)*", c.receiver or "")]
        if len(calls) != 1:
            what = "no" if not calls else f"{len(calls)}"
            raise CannotPlace(f"line {line} has {what} {'/'.join(sorted(names))}() call(s); change the right one by hand")
        return calls[0]

    def self_name(self, call: CallInfo) -> str:
        """`self` of the method the call is in (for `self.training`)."""
        fn = self.source.enclosing_function(call.node)
        params = fn.params.params if fn is not None else ()
        if not params or params[0].name.value != "self":
            raise CannotPlace(f"the call on line {call.start_line} is not in a module method (no `self.training` there)")
        return params[0].name.value

    def spell(self, full: str) -> str:
        """How to write `torch` / `torch.nn` here; adds the import when the file lacks it."""
        found = self.source.spelling(full)
        if found is not None:
            return found
        if full == "torch":
            self.edits.insertions.append(Insertion(None, "imports", ["import torch"]))
            return "torch"
        self.edits.insertions.append(Insertion(None, "imports", ["from torch import nn"]))
        return "nn" if full == "torch.nn" else "nn" + full[len("torch.nn"):]


SOURCE_APPLIERS: dict[str, Callable[[Fix, Diagnostic, SourceContext], str]] = {}


def source_applier(kind: str):
    def register(fn):
        SOURCE_APPLIERS[kind] = fn
        return fn

    return register


# ---------------------------------------------------------------------------------------------
# Parameter inits: the Placer decides where


def _param_init_applier(fix: Fix, d: Diagnostic, ctx: SourceContext) -> str:
    ctx.request_inits(fix, d.code)
    return ""   # the inits that win (specs.resolve) are listed by plan_edits


for _kind in ("reinit", "zero_init", "bias_fill", "scale_final_layer"):
    SOURCE_APPLIERS[_kind] = _param_init_applier


# ---------------------------------------------------------------------------------------------
# Call edits


def _rename_call(call: CallInfo, new_name: str, ctx: SourceContext, *, nn_module: str = "torch.nn",
                 args: Optional[list[cst.Arg]] = None) -> None:
    """`nn.Sigmoid()` -> `nn.ReLU()`: same receiver, new name (a bare imported name gets a qualified one)."""
    if isinstance(call.node.func, cst.Attribute):
        def rewrite(node: cst.Call) -> cst.Call:
            changes = {"func": node.func.with_changes(attr=cst.Name(new_name))}
            if args is not None:
                changes["args"] = args
            return node.with_changes(**changes)
    else:
        prefix = ctx.spell(nn_module)

        def rewrite(node: cst.Call) -> cst.Call:
            changes = {"func": cst.parse_expression(f"{prefix}.{new_name}")}
            if args is not None:
                changes["args"] = args
            return node.with_changes(**changes)
    ctx.edits.node_edits.append(NodeEdit(call.node, rewrite))


ACTIVATION_CLASS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "ReLU", "leaky_relu": "LeakyReLU", "gelu": "GELU"}


@source_applier("swap_activation")
def swap_activation(fix: Fix, d: Diagnostic, ctx: SourceContext) -> str:
    src, to = fix.params.get("from", "sigmoid"), fix.params.get("to", "relu")
    module = ctx.modules.get(fix.target)
    if not fix.params.get("functional") and module is not None and type(module).__name__ == ACTIVATION_CLASS.get(src):
        call = ctx.construction_call(fix.target, {ACTIVATION_CLASS[src]}, "swap_activation")
        args = [cst.Arg(cst.parse_expression(repr(float(fix.params.get("negative_slope", 0.01)))))] if to == "leaky_relu" else []
        _rename_call(call, ACTIVATION_CLASS.get(to, "ReLU"), ctx, args=args)
        what = f"nn.{ACTIVATION_CLASS[src]}() on line {call.start_line} -> nn.{ACTIVATION_CLASS.get(to, 'ReLU')}()"
    else:
        call = ctx.call_site(fix, {src})
        if to == "leaky_relu":
            raise CannotPlace("a functional swap to leaky_relu needs its slope argument; change the call by hand")
        if call.receiver is None:
            torch = ctx.spell("torch")
            ctx.edits.node_edits.append(NodeEdit(call.node, lambda node: node.with_changes(
                func=cst.parse_expression(f"{torch}.{to}"))))
        else:
            ctx.edits.node_edits.append(NodeEdit(call.node, lambda node: node.with_changes(
                func=node.func.with_changes(attr=cst.Name(to)))))
        what = f"{call.receiver + '.' if call.receiver else ''}{src}() on line {call.start_line} -> {to}()"
    ctx.request_inits(fix, d.code)
    return what


_DROPOUT_FUNCS = {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"}


@source_applier("functional_dropout_training")
def functional_dropout_training(fix: Fix, d: Diagnostic, ctx: SourceContext) -> str:
    func = fix.params.get("func") or "dropout"
    call = ctx.call_site(fix, {func} if func in _DROPOUT_FUNCS else _DROPOUT_FUNCS)
    me = ctx.self_name(call)
    training = cst.parse_expression(f"{me}.training")
    positional_name = "train" if call.receiver == "torch" else "training"

    def rewrite(node: cst.Call) -> cst.Call:
        args = list(node.args)
        for i, arg in enumerate(args):
            if arg.keyword is not None and arg.keyword.value in ("training", "train"):
                args[i] = arg.with_changes(value=training)
                return node.with_changes(args=args)
        positional = [i for i, a in enumerate(args) if a.keyword is None and not a.star]
        if len(positional) >= 3:
            args[positional[2]] = args[positional[2]].with_changes(value=training)
            return node.with_changes(args=args)
        if args:
            args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        args.append(cst.Arg(value=training, keyword=cst.Name(positional_name),
                            equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""),
                                                  whitespace_after=cst.SimpleWhitespace(""))))
        return node.with_changes(args=args)

    ctx.edits.node_edits.append(NodeEdit(call.node, rewrite))
    return f"{func}() on line {call.start_line} gets {positional_name}={me}.training"


@source_applier("dropout2d")
def dropout2d(fix: Fix, d: Diagnostic, ctx: SourceContext) -> str:
    replacement = fix.params.get("replacement") or "Dropout2d"
    module = ctx.modules.get(fix.target)
    if not fix.params.get("functional") and module is not None and type(module).__name__ == "Dropout":
        call = ctx.construction_call(fix.target, {"Dropout"}, "dropout2d")
        _rename_call(call, replacement, ctx)
        return f"nn.Dropout on line {call.start_line} -> nn.{replacement}"
    func = fix.params.get("func") or "dropout"
    call = ctx.call_site(fix, {func})
    if call.receiver is None:
        raise CannotPlace(f"{func}() on line {call.start_line} is a bare name; call F.{replacement.lower()} there by hand")
    ctx.edits.node_edits.append(NodeEdit(call.node, lambda node: node.with_changes(
        func=node.func.with_changes(attr=cst.Name(replacement.lower())))))
    return f"{call.receiver}.{func}() on line {call.start_line} -> {call.receiver}.{replacement.lower()}()"


@source_applier("keep_running_stats")
def keep_running_stats(fix: Fix, d: Diagnostic, ctx: SourceContext) -> str:
    module = ctx.modules.get(fix.target)
    if module is None:
        raise CannotPlace(f"no module {fix.target}")
    cls = type(module).__name__
    call = ctx.construction_call(fix.target, {cls}, "keep_running_stats")

    def rewrite(node: cst.Call) -> cst.Call:
        args = list(node.args)
        keep = [a for a in args if not (a.keyword is not None and a.keyword.value == "track_running_stats")]
        if len(keep) != len(args):
            if keep and args[-1] is not keep[-1]:
                keep[-1] = keep[-1].with_changes(comma=args[-1].comma if args[-1].comma is not cst.MaybeSentinel.DEFAULT
                                                 else cst.MaybeSentinel.DEFAULT)
            return node.with_changes(args=keep)
        positional = [i for i, a in enumerate(args) if a.keyword is None]
        if len(positional) >= 5:
            args[positional[4]] = args[positional[4]].with_changes(value=cst.Name("True"))
        return node.with_changes(args=args)

    ctx.edits.node_edits.append(NodeEdit(call.node, rewrite))
    return f"{cls}(...) on line {call.start_line} keeps running statistics (track_running_stats=False removed)"


# ---------------------------------------------------------------------------------------------
# Statements after the model is built


@source_applier("set_eval")
def set_eval(fix: Fix, d: Diagnostic, ctx: SourceContext) -> str:
    return _whole_model_mode(ctx)


@source_applier("set_train")
def set_train(fix: Fix, d: Diagnostic, ctx: SourceContext) -> str:
    return _whole_model_mode(ctx)


def _whole_model_mode(ctx: SourceContext) -> str:
    scope = ctx.placer.root_scope()
    method = "train" if ctx.model.training else "eval"
    statement = f"{scope.base}.{method}()"
    if not any(text == statement for text, _ in scope.extra):
        scope.extra.append((statement, "every submodule in the model's mode (nnlint NN502)"))
    return f"add {statement} after the model is built"


@source_applier("normalize_input")
def normalize_input(fix: Fix, d: Diagnostic, ctx: SourceContext) -> str:
    from nnlint.fix.inputs import broadcast_shape, overall, robust_stds

    p = fix.params
    path, argument = _input_argument(fix, d, ctx)
    if argument is None:
        return f"{path} is normalized by the edit for {ctx.normalized_inputs[path]}"
    mean, std = list(p.get("mean") or []), robust_stds(list(p.get("std") or []))
    if not mean or len(mean) != len(std):
        raise CannotPlace(f"no per-channel statistics for {path}")
    rec = next((r for r in ctx.trace.inputs if r.path == path), None) if ctx.trace is not None else None
    ndim = len(rec.summary.shape) if rec is not None else 2
    torch = ctx.spell("torch")
    if len(mean) > 16:
        # many features (a flattened image, a table): the whole input's mean and std read better, and
        # are what the message suggests
        m, s = overall(mean, std)
        mean_code, std_code = f"{torch}.tensor({_float(m)})", f"{torch}.tensor({_float(s)})"
        what = "mean/std"
    else:
        shape = broadcast_shape(ndim, p.get("channel_dim"))
        view = "" if shape == [-1] else f".view({', '.join(str(x) for x in shape)})"
        mean_code = f"{torch}.tensor({_vector([_float(x) for x in mean])}){view}"
        std_code = f"{torch}.tensor({_vector([_float(x) for x in std])}){view}"
        what = f"per-{'channel' if p.get('channel_dim') == 1 and ndim >= 3 else 'feature'} mean/std"
    return _transform_input(ctx, path, argument, [("mean", mean_code), ("std", std_code)], "({x} - {b}_mean) / {b}_std",
                            f"normalize {path} with the {what} measured on the sample batch (nnlint {d.code})")


@source_applier("whiten_input")
def whiten_input(fix: Fix, d: Diagnostic, ctx: SourceContext) -> str:
    from nnlint.fix.inputs import input_tensor, zca

    path, argument = _input_argument(fix, d, ctx)
    if argument is None:
        return f"{path} is whitened by the edit for {ctx.normalized_inputs[path]}"
    x = input_tensor(ctx.batch, argument)
    if x is None or x.dim() != 2 or not x.is_floating_point():
        raise CannotPlace(f"{path} is not a (samples, features) float tensor")
    if x.shape[1] > 32:
        raise CannotPlace(f"{path} has {x.shape[1]} features: a {x.shape[1]}x{x.shape[1]} whitening matrix does not "
                          "belong in source; whiten in the data pipeline")
    mean, w = zca(x, float(fix.params.get("eps", 1e-5)))
    torch = ctx.spell("torch")
    rows = ",\n".join("    [" + ", ".join(_float(v) for v in row) + "]" for row in w.tolist())
    scale = float(x.detach().double().std())
    means = [_float(v, scale) for v in mean.tolist()]
    mean_code = f"{torch}.zeros({len(means)})" if all(v == "0.0" for v in means) else f"{torch}.tensor({_vector(means)})"
    return _transform_input(ctx, path, argument, [("mean", mean_code), ("whitening", f"{torch}.tensor([\n{rows},\n])")],
                            "({x} - {b}_mean) @ {b}_whitening",
                            f"whiten {path} (ZCA measured on the sample batch; better: on the training set) (nnlint {d.code})")


def _vector(values: list[str], per_line: int = 8) -> str:
    """`[1.0, 2.0]`, or one wrapped line per `per_line` values when there are more."""
    if len(values) <= per_line:
        return f"[{', '.join(values)}]"
    lines = [", ".join(values[i:i + per_line]) for i in range(0, len(values), per_line)]
    return "[\n" + "".join(f"    {line},\n" for line in lines) + "]"


def _float(v: float, scale: float = 1.0) -> str:
    """A float literal with 4 significant digits (`127.0`, never `127`: an all-integer list would make an
    int64 buffer); float noise around zero (a mean of 1e-9 on standardized data) as 0.0."""
    return "0.0" if abs(v) < 1e-6 * max(scale, 1e-12) else repr(float(f"{v:.4g}"))


def _input_argument(fix: Fix, d: Diagnostic, ctx: SourceContext):
    """(input path, forward argument); the argument is None when another edit already transforms it."""
    from nnlint.fix.inputs import argument_of
    from nnlint.fix.runtime import CannotFix

    path = fix.params.get("input", "batch")
    if path in ctx.normalized_inputs:
        return path, None
    try:
        argument = argument_of(path)
    except CannotFix as exc:
        raise CannotPlace(str(exc)) from None
    ctx.normalized_inputs[path] = d.code
    return path, argument


def _transform_input(ctx: SourceContext, path: str, argument, buffers: list[tuple[str, str]], formula: str,
                     comment: str) -> str:
    """Buffers `<prefix>_<name>` on the root and `x = formula` applied to the input: first thing in the
    root's forward when its class is in this file, else in a forward pre-hook after the model is built."""
    from nnlint.fix.inputs import prefix_for

    q = ctx.source.quote
    prefix = prefix_for(argument)
    names = "/".join(f"{prefix}_{name}" for name, _ in buffers)
    forward_param = _forward_parameter(ctx, argument)
    if forward_param is not None:
        init_fn, forward_fn, name = forward_param
        ctx.edits.insertions.append(Insertion(init_fn, "end", [
            f"self.register_buffer({q}{prefix}_{b}{q}, {code})" for b, code in buffers],
            comment.replace(f" {path} ", f" {name} (the input) ", 1)))
        ctx.edits.insertions.append(Insertion(forward_fn, START, [
            f"{name} = " + formula.format(x=name, b=f"self.{prefix}")]))
        return f"the model transforms {path} first thing in forward, with buffers {names}"
    scope = ctx.placer.root_scope()
    base = scope.base
    if isinstance(argument, int):
        new = formula.format(x=f"args[{argument}]", b=f"module.{prefix}")
        before = f"*args[:{argument}], " if argument else ""
        hook = f"{base}.register_forward_pre_hook(lambda module, args: ({before}{new}, *args[{argument + 1}:]))"
    else:
        new = formula.format(x=f"kwargs[{q}{argument}{q}]", b=f"module.{prefix}")
        hook = (f"{base}.register_forward_pre_hook(lambda module, args, kwargs: (args, {{**kwargs, {q}{argument}{q}: "
                f"{new}}}), with_kwargs=True)")
    scope.extra += [(f"{base}.register_buffer({q}{prefix}_{b}{q}, {code})", comment) for b, code in buffers]
    scope.extra.append((hook, comment))
    return f"the model transforms {path} in a forward pre-hook, with buffers {names}"


@source_applier("move_dropout")
def move_dropout(fix: Fix, d: Diagnostic, ctx: SourceContext) -> str:
    """Dropout feeding a BatchNorm is removed: nn.Identity() in its place (indices and names stay), or a
    functional call replaced by its input."""
    module = ctx.modules.get(fix.target)
    cls = type(module).__name__ if module is not None else ""
    if cls.startswith(("Dropout", "AlphaDropout", "FeatureAlphaDropout")) and fix.target:
        call = ctx.construction_call(fix.target, {cls}, "move_dropout")
        _rename_call(call, "Identity", ctx, args=[])
        return (f"nn.{cls}(...) on line {call.start_line} -> nn.Identity(): BatchNorm {fix.params.get('batchnorm')} "
                "already regularizes (to keep dropout, add it after the last BatchNorm)")
    func = fix.params.get("func") or "dropout"
    call = ctx.call_site(fix, {func})
    if not call.node.args:
        raise CannotPlace(f"{func}() on line {call.start_line} has no input argument")
    ctx.edits.node_edits.append(NodeEdit(call.node, lambda node: node.args[0].value))
    return f"{func}(...) on line {call.start_line} replaced by its input: BatchNorm already regularizes"


def _forward_parameter(ctx: SourceContext, argument):
    """(root __init__, root forward, parameter name) when the root class is defined in this file."""
    root = ctx.model
    keys = init_code_keys(root)
    forward = getattr(type(root).forward, "__code__", None)
    if not keys or forward is None or os.path.abspath(keys[0][0]) != os.path.abspath(ctx.path) \
            or os.path.abspath(forward.co_filename) != os.path.abspath(ctx.path):
        return None
    init_fn = ctx.source.function(keys[0][1], "__init__")
    forward_fn = ctx.source.function(forward.co_firstlineno, "forward")
    if init_fn is None or forward_fn is None:
        return None
    params = [p.name.value for p in forward_fn.params.params][1:]
    if forward_fn.params.star_arg not in (cst.MaybeSentinel.DEFAULT, None) and isinstance(argument, int) and argument >= len(params):
        return None
    if isinstance(argument, int):
        return (init_fn, forward_fn, params[argument]) if argument < len(params) else None
    names = params + [p.name.value for p in forward_fn.params.kwonly_params]
    return (init_fn, forward_fn, argument) if argument in names else None


# ---------------------------------------------------------------------------------------------
# Planning one round


@dataclass
class Plan:
    text: str                                     # the edited file
    applied: dict[int, str]                       # fix index -> what its edits do
    failed: dict[int, str]                        # fix index -> why it could not be placed


def plan_edits(source: SourceFile, path: str, loaded, log: WriteLog, trace, root: RootScope,
               diagnostics: list[Diagnostic]) -> Plan:
    """Plan the edits of the diagnostics' fixes on this file. Fixes that cannot be placed are left out
    entirely (the plan is redone without them), so the text never holds half a fix."""
    excluded: dict[int, str] = {}
    while True:
        placer = Placer(source, loaded.model, log, root, path)
        targets: dict[str, set[str]] = {}
        for i, d in enumerate(diagnostics):
            if i not in excluded:
                targets.setdefault(d.fix.kind, set()).add(d.fix.target)
        ctx = SourceContext(source, path, loaded.model, trace, loaded.origins, placer, targets, loaded.batch)
        applied: dict[int, str] = {}
        newly: dict[int, str] = {}
        for i, d in enumerate(diagnostics):
            if i in excluded:
                continue
            ctx.current = i
            try:
                applied[i] = SOURCE_APPLIERS[d.fix.kind](d.fix, d, ctx)
            except CannotPlace as exc:
                newly[i] = str(exc)
        chosen = resolve([r.init for r, _ in ctx.requests])
        requests: dict[str, Request] = {}
        owners: dict[str, set[int]] = {}
        for request, owner in ctx.requests:
            owners.setdefault(request.init.param, set()).add(owner)
            if chosen.get(request.init.param) == request.init:
                previous = requests.get(request.init.param)
                codes = (previous.codes if previous else ()) + tuple(c for c in request.codes if not previous or c not in previous.codes)
                requests[request.init.param] = Request(request.init, codes)
        for param, reason in placer.place(list(requests.values())).items():
            for owner in owners.get(param, ()):
                newly.setdefault(owner, f"cannot place the init of {param}: {reason}")
        if newly:
            excluded.update(newly)
            continue
        edits = placer.edits()
        edits.extend(ctx.edits)
        text = apply_edits(source, edits) if edits else source.text
        for i in applied:
            params = [p for p in dict.fromkeys(r.init.param for r, owner in ctx.requests if owner == i)
                      if ctx.tensor_exists(p) and p in chosen]
            applied[i] = join_detail(applied[i], [chosen[p] for p in params if p not in placer.kept],
                                     [p for p in params if p in placer.kept])
        return Plan(text, applied, excluded)


# ---------------------------------------------------------------------------------------------
# The whole run: load, check, plan, verify, repeat


@dataclass
class SourceFixRun:
    path: Path
    original: str
    fixed: str
    result: FixResult

    @property
    def changed(self) -> bool:
        return self.fixed != self.original

    def diff(self, shown: Optional[str] = None) -> str:
        name = shown or str(self.path)
        return "".join(difflib.unified_diff(self.original.splitlines(keepends=True), self.fixed.splitlines(keepends=True),
                                            fromfile=f"a/{name}", tofile=f"b/{name}"))


@dataclass
class Checked:
    loaded: Any
    log: WriteLog
    report: Any
    key: Callable = diagnostic_key   # a finding's key, its line mapped back to the original file


def line_key(original: str, text: str, path: str) -> Callable[[Diagnostic], tuple]:
    """Keys for the findings of an edited version of the file: their lines mapped back to the original's
    (a finding on an unchanged or rewritten line is the same finding; one on an added line is new)."""
    back: dict[int, int] = {}
    matcher = difflib.SequenceMatcher(None, original.splitlines(), text.splitlines(), autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("equal", "replace"):
            for k in range(min(i2 - i1, j2 - j1)):
                back[j1 + k + 1] = i1 + k + 1
    path = os.path.abspath(path)

    def key(d: Diagnostic) -> tuple:
        line = d.location.line if d.location is not None else None
        if line is not None and os.path.abspath(d.location.file) == path:
            line = back.get(line, ("added", line))
        return (d.code, d.module, line)

    return key


class FileChecker:
    """Loads a version of the model file (the file itself, or edited text in a temporary copy beside it,
    so that its local imports resolve) with the write recorder on, and checks it."""

    def __init__(self, path: Path, *, factory=None, input_shape=None, device=None, select=None, ignore=None,
                 config=None):
        self.path = path
        self.factory, self.input_shape, self.device = factory, input_shape, device
        self.select, self.ignore, self.config = select, ignore, config

    def check_file(self, file: Path) -> Checked:
        from nnlint.api import check
        from nnlint.loader import load_target

        previous = sys.dont_write_bytecode
        sys.dont_write_bytecode = True   # no __pycache__ entry for the temporary copy
        try:
            with contextlib.redirect_stdout(sys.stderr):
                with record_writes() as log:
                    loaded = load_target(str(file), factory=self.factory, input_shape=self.input_shape,
                                         device=self.device)
                report = check(loaded.model, loaded.batch, select=self.select, ignore=self.ignore, config=self.config,
                               **loaded.check_arguments())
        finally:
            sys.dont_write_bytecode = previous
        return Checked(loaded, log, report)

    def check_text(self, text: str) -> Checked:
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.nnlint-fix-", suffix=".py", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            checked = self.check_file(Path(tmp))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        _relocate(checked.report, tmp, str(self.path))
        return checked


def _relocate(report, old: str, new: str) -> None:
    """Findings of the temporary copy point at the real file (same lines: it is the fixed text)."""
    for d in report.diagnostics:
        if d.location is not None and os.path.abspath(d.location.file) == os.path.abspath(old):
            d.location = Location(new, d.location.line)


def read_source(path: Path) -> SourceFile:
    from nnlint.errors import LoadError

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError(f"{path}: cannot read it: {exc}") from None
    try:   # Python's own message first: it names the line the way the user's editor does
        compile(text, str(path), "exec")
        return SourceFile(text, str(path))
    except SyntaxError as exc:
        where = f"{path}:{exc.lineno}" if exc.lineno else str(path)
        raise LoadError(f"{where}: syntax error: {exc.msg}\n    {(exc.text or '').strip()}\n"
                        "fix it by hand first; nnlint fix changed nothing") from None
    except SourceSyntaxError as exc:
        raise LoadError(f"{exc}\nfix it by hand first; nnlint fix changed nothing") from None


def fix_file(path, *, factory: Optional[str] = None, input_shape=None, device=None, unsafe: bool = False,
             select=None, ignore=None, config=None, max_rounds: int = 3) -> SourceFixRun:
    """Plan and verify the source fixes of the model file; writes nothing (see write_atomically)."""
    path = Path(path).resolve()
    source = read_source(path)
    original = source.text
    checker = FileChecker(path, factory=factory, input_shape=input_shape, device=device, select=select,
                          ignore=ignore, config=config)
    current = checker.check_file(path)
    root = root_scope_of(source, factory)
    ledger = Ledger()
    rounds = 0
    while rounds < max_rounds:
        ledger.key_of = current.key
        todo = triage(current.report.diagnostics, ledger, unsafe=unsafe, known_kinds=SOURCE_APPLIERS)
        if not todo:
            break
        rounds += 1
        accepted = _verified_round(source, path, current, root, todo, checker, ledger, original)
        if accepted is None:
            break
        source, current = accepted
    return SourceFixRun(path, original, source.text, ledger.result(current.report, rounds, key_of=current.key))


def _verified_round(source: SourceFile, path: Path, current: Checked, root: RootScope, todo: list[Diagnostic],
                    checker: FileChecker, ledger: Ledger, original: str):
    """Plan the fixes of `todo`, re-check the edited text, drop the fixes whose finding survives (or
    whose edit breaks the file) and try again without them. Returns (source, checked) when some fixes
    were verified, else None."""
    candidates = list(todo)
    while candidates:
        plan = plan_edits(source, str(current.loaded.path), current.loaded, current.log, current.report.trace, root,
                          candidates)
        for i, reason in plan.failed.items():
            d = candidates[i]
            ledger.record(FixOutcome(d, NOT_FIXABLE, f"cannot place it in this file: {reason}; by hand: {d.fix.description}"))
        kept = [candidates[i] for i in sorted(plan.applied)]
        if not kept or plan.text == source.text:
            for i in plan.applied:
                ledger.record(FixOutcome(candidates[i], FAILED, f"{plan.applied[i]}: produced no edit"))
            return None
        try:
            edited = SourceFile(plan.text, str(path))
            compile(plan.text, str(path), "exec")
        except (SourceSyntaxError, SyntaxError) as exc:   # a bug in an applier: never write such a file
            raise RuntimeError(f"the edited file does not parse ({exc}); nothing was written") from None
        from nnlint.errors import NNLintError

        try:
            checked = checker.check_text(plan.text)
        except NNLintError as exc:
            if len(kept) == 1:
                ledger.record(FixOutcome(kept[0], FAILED, f"the edited file fails to load or run: {exc}"))
                return None
            # find the culprit: verify each fix alone, keep those that survive
            survivors = []
            for d in kept:
                alone = plan_edits(source, str(current.loaded.path), current.loaded, current.log, current.report.trace,
                                   root, [d])
                try:
                    checker.check_text(alone.text)
                    survivors.append(d)
                except NNLintError as single:
                    ledger.record(FixOutcome(d, FAILED, f"the edited file fails to load or run: {single}"))
            candidates = survivors
            continue
        checked.key = line_key(original, plan.text, str(path))
        remaining = {checked.key(x): x for x in checked.report.diagnostics}
        survived = [d for d in kept if current.key(d) in remaining]
        if survived:
            for d in survived:
                still = remaining[current.key(d)]
                index = candidates.index(d)
                ledger.record(FixOutcome(d, FAILED, f"{plan.applied[index]}; the re-check still reports: {still.message}"))
            candidates = [d for d in kept if d not in survived]
            continue
        for i, d in enumerate(candidates):
            if i in plan.applied:
                ledger.record(FixOutcome(d, APPLIED, plan.applied[i]))
        return edited, checked
    return None


def write_atomically(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename it over the original: a reader
    (or a crash) sees the old file or the new one, never half of it. Keeps the file's permissions."""
    path = Path(path)
    mode = path.stat().st_mode & 0o7777 if path.exists() else None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
