"""The source fixer: turns fixes into edits of the user's model file (libcst), as plain torch code.

Each fix's kind plans its edits with its source half (`FixKind.edit(fix, diagnostic, ctx)`), through the
SourceContext here: parameter inits go to the Placer (which finds where they take effect and how to name
the module there), call-site edits rewrite one call (`nn.Sigmoid()` -> `nn.ReLU()`, `F.dropout(x, 0.5)`
-> `F.dropout(x, 0.5, training=self.training)`), mode and input-normalization statements go after the
model is built. A kind that cannot place its edit raises CannotPlace with what to change by hand.

The run (plan, verify, write) is in filefix.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional

import libcst as cst

from nnlint.diagnostics import Diagnostic, Fix, Location
from nnlint.fix.cstfile import CallInfo, SourceFile
from nnlint.fix.edits import EditSet, Insertion, NodeEdit, apply_edits
from nnlint.fix.kind import CallSite, CannotPlace, all_kinds, kind_of
from nnlint.fix.placement import Placer, Request, RootScope
from nnlint.fix.sites import WriteLog, module_paths
from nnlint.fix.specs import join_detail, resolve


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
        inits = kind_of(fix).inits(fix, self.std_of)
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

    def call_site(self, site: CallSite, names: set[str]) -> CallInfo:
        file, line = site.file, site.line
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

    def rename_call(self, call: CallInfo, new_name: str, *, nn_module: str = "torch.nn",
                    args: Optional[list[cst.Arg]] = None) -> None:
        """`nn.Sigmoid()` -> `nn.ReLU()`: same receiver, new name (a bare imported name gets a qualified
        one); `args` replaces the arguments."""
        def changes(node: cst.Call) -> dict:
            return {} if args is None else {"args": args}

        if isinstance(call.node.func, cst.Attribute):
            def rewrite(node: cst.Call) -> cst.Call:
                return node.with_changes(func=node.func.with_changes(attr=cst.Name(new_name)), **changes(node))
        else:
            prefix = self.spell(nn_module)

            def rewrite(node: cst.Call) -> cst.Call:
                return node.with_changes(func=cst.parse_expression(f"{prefix}.{new_name}"), **changes(node))
        self.edits.node_edits.append(NodeEdit(call.node, rewrite))

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
        kinds = all_kinds()
        targets: dict[str, set[str]] = {}
        for i, d in enumerate(diagnostics):
            if i not in excluded:
                targets.setdefault(d.fix.kind, set()).update(kinds[d.fix.kind].modules(d.fix))
        ctx = SourceContext(source, path, loaded.model, trace, loaded.origins, placer, targets, loaded.batch)
        applied: dict[int, str] = {}
        newly: dict[int, str] = {}
        for i, d in enumerate(diagnostics):
            if i in excluded:
                continue
            ctx.current = i
            try:
                applied[i] = kinds[d.fix.kind].edit(d.fix, d, ctx)
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

