"""The source fixer: turns fixes into edits of the user's model file (libcst), as plain torch code.

One small applier per Fix.kind plans the edits for one fix: parameter inits go to the Placer (which
finds where they take effect and how to name the module there), call-site edits rewrite one call
(`nn.Sigmoid()` -> `nn.ReLU()`, `F.dropout(x, 0.5)` -> `F.dropout(x, 0.5, training=self.training)`),
mode and input-normalization statements go after the model is built. An applier that cannot place
its edit raises CannotPlace with what to change by hand; a kind with no applier is not fixable
automatically. New kinds plug in with `@source_applier("kind")`.

Input normalization and whitening live in source_inputs; the run (plan, verify, write) in filefix.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import libcst as cst

from nnlint.diagnostics import Diagnostic, Fix, Location
from nnlint.fix.cstfile import CallInfo, SourceFile
from nnlint.fix.edits import EditSet, Insertion, NodeEdit, apply_edits
from nnlint.fix.placement import CannotPlace, Placer, Request, RootScope
from nnlint.fix.sites import WriteLog, module_paths
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


from nnlint.fix import source_inputs  # noqa: E402,F401  (registers the input appliers)
