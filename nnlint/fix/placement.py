"""Where a parameter init goes in the user's file, and how it names the module there.

For each parameter to initialize, in this order of preference:
1. **Edit the init call in place** when the line that last wrote the parameter is an explicit init
   (`nn.init.normal_(conv.weight, std=0.3)`, `m.weight.data.fill_(0)`) and every parameter whose final
   value that call decides needs the same new init: the call becomes `nn.init.kaiming_normal_(conv.weight,
   nonlinearity="relu")`, loop and all.
2. **Add a statement at the end of an `__init__`** that ran when the parameter was last written, from the
   innermost outwards (`Block.__init__`: `self.conv2.weight`; then `Net.__init__`: `self.blocks[2].conv2`).
   A class's `__init__` runs for each of its instances, so it is chosen only when every instance whose
   value it would decide needs the same init; otherwise the parent is tried.
3. **Add a statement after construction**: before the `return` of the factory (`build_model()`), or
   after the top-level statement that last wrote it (module-level `model`), naming the module from the
   root (`model[0].weight`, `model.blocks[2].conv2.weight`).
Whatever runs after the last recorded write (sites.WriteLog) is what wins, so each choice is one that
executes after it. Targets that cover a whole `nn.ModuleList`/`nn.Sequential` become one loop
(`for block in self.blocks:`), reusing the loop variable the file already uses for that container.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional

import libcst as cst

from nnlint.fix.cstfile import SourceFile
from nnlint.fix.edits import AFTER, BEFORE_RETURN, END, EditSet, Insertion, NodeEdit
from nnlint.fix.kind import CannotPlace
from nnlint.fix.sites import WriteLog, init_code_keys, module_paths
from nnlint.fix.specs import ParamInit, already_satisfied
from nnlint.initmath import InitSpec

# Tensor methods whose call can be replaced by an nn.init call on the same tensor: they set the
# values outright (copy_/mul_/add_ transform them, and are left alone).
_SETTING_METHODS = {"normal_", "uniform_", "fill_", "zero_", "constant_"}


@dataclass(frozen=True)
class RootScope:
    """Where the model is finished being built, in this file: "factory" (a top-level function that
    returns it), "class" (the root class, built by --model file.py:Net), "module" (a module-level
    `model`), or None when the file only imports it."""

    kind: Optional[str]
    name: str = ""


@dataclass
class Scope:
    kind: str                        # "class" | "factory" | "module"
    anchor: cst.CSTNode              # the FunctionDef, or the top-level statement to insert after
    base: str                        # "self", "model"
    module_path: str                 # the model path of the object `base` names ("" = root)
    where: str = END
    bind_return_as: Optional[str] = None
    items: list[tuple[str, str, InitSpec, tuple[str, ...]]] = field(default_factory=list)  # (module rel, attr, spec, codes)
    extra: list[tuple[str, str]] = field(default_factory=list)   # (statement, comment) added after the inits

    @property
    def key(self) -> tuple:
        return (self.kind, id(self.anchor), self.module_path, self.where)


@dataclass
class Request:
    init: ParamInit
    codes: tuple[str, ...]


def is_within(prefix: str, path: str) -> bool:
    return prefix == "" or path == prefix or path.startswith(prefix + ".")


def relative(prefix: str, path: str) -> str:
    return path if prefix == "" else path[len(prefix) + 1:] if path != prefix else ""


def accessor(root, path: str) -> str:
    """How Python code reaches the submodule `path` from `root`: `.blocks[2].conv2`, `[0]`."""
    import torch.nn as nn

    out = ""
    current = root
    parts = path.split(".") if path else []
    for i, part in enumerate(parts):
        child = current._modules.get(part)
        if isinstance(current, (nn.Sequential, nn.ModuleList)) and part.isdigit():
            out += f"[{part}]"
        elif isinstance(current, nn.ModuleDict):
            out += f'["{part}"]'
        elif part.isidentifier() and getattr(current, part, None) is child:
            out += f".{part}"
        else:
            return out + f'.get_submodule("{".".join(parts[i:])}")'
        current = child
    return out


def root_scope_of(source: SourceFile, factory: Optional[str]) -> RootScope:
    """Which convention built the model, read from the file the way the loader reads it."""
    if factory is not None:
        head = factory.split(".")[0]
        if source.top_level_function(head) is not None and "." not in factory:
            return RootScope("factory", head)
        if source.top_level_class(head) is not None and "." not in factory:
            return RootScope("class", head)
        return RootScope(None, factory)
    if source.top_level_function("build_model") is not None:
        return RootScope("factory", "build_model")
    for stmt in source.module.body:
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, (cst.Assign, cst.AnnAssign)):
                    targets = [t.target for t in small.targets] if isinstance(small, cst.Assign) else [small.target]
                    if any(isinstance(t, cst.Name) and t.value == "model" for t in targets):
                        return RootScope("module", "model")
    return RootScope(None)


class Placer:
    def __init__(self, source: SourceFile, model: Any, log: Optional[WriteLog], root: RootScope, path: str):
        self.source = source
        self.model = model
        self.log = log or WriteLog()
        self.root = root
        self.path = os.path.abspath(path)
        self.paths = module_paths(model)
        self.modules = dict(model.named_modules(remove_duplicate=False))
        self.last = self.log.last_writes(model)
        self.scopes: "OrderedDict[tuple, Scope]" = OrderedDict()
        self.node_edits: list[NodeEdit] = []
        self.nn = source.spelling("torch.nn") or "nn"
        self.needs_nn_import = source.spelling("torch.nn") is None
        self.uses_nn = False          # an in-place edit wrote `nn.init...` (insertions always do)
        self.kept: set[str] = set()   # parameters already as their init would make them: left alone

    # ------------------------------------------------------------------ public
    def place(self, requests: list[Request]) -> dict[str, str]:
        """Plan every request; returns {param: reason} for those that cannot be placed."""
        failures: dict[str, str] = {}
        wanted = {r.init.param: r for r in requests}
        for param, request in wanted.items():
            owner = self.modules.get(request.init.module)
            if owner is not None and already_satisfied(owner, request.init):
                self.kept.add(param)
        placed: set[str] = set(self.kept)
        placed |= self._in_place(wanted)
        for request in requests:
            param = request.init.param
            if param in placed:
                continue
            if self._tensor(param) is None:
                placed.add(param)   # bias=False: nothing to initialize
                continue
            try:
                covered = self._insert(request, wanted)
            except CannotPlace as exc:
                failures[param] = str(exc)
                continue
            placed |= covered
        return failures

    def root_scope(self) -> Scope:
        """The outermost scope: after the model is fully built (for modes and input normalization)."""
        kind = self.root.kind
        if kind == "factory":
            return self._factory_scope()
        if kind == "class":
            cls = self.source.top_level_class(self.root.name)
            init = self.source.method(cls, "__init__") if cls is not None else None
            if init is None:
                raise CannotPlace(f"class {self.root.name} has no __init__ in this file")
            return self._scope(Scope("class", init, "self", ""))
        if kind == "module":
            anchor = self.source.last_top_level_use(self.root.name)
            if anchor is None:
                raise CannotPlace("the module-level `model` is not bound in this file")
            return self._scope(Scope("module", anchor, self.root.name, "", where=AFTER))
        raise CannotPlace("this file does not build the model itself (it imports build_model or model); "
                          "fix the file that builds it")

    def edits(self) -> EditSet:
        out = EditSet(node_edits=list(self.node_edits))
        for scope in self.scopes.values():
            statements, comments = self._render(scope)
            for text, comment in zip(statements, comments):
                out.insertions.append(Insertion(scope.anchor, scope.where, [text], comment, scope.bind_return_as))
        if self.needs_nn_import and (self.uses_nn or any(s.items for s in self.scopes.values())):
            from nnlint.fix.edits import IMPORTS

            out.insertions.append(Insertion(None, IMPORTS, ["from torch import nn"]))
        return out

    # ------------------------------------------------------------------ in place
    def _in_place(self, wanted: dict[str, Request]) -> set[str]:
        by_site: dict[tuple, list[str]] = {}
        for name, write in self.last.items():
            site = write.site
            method = write.via.split(".")[-1]
            if os.path.abspath(site.file) != self.path:
                continue
            if not (write.via.startswith("nn.init.") or (write.via.startswith("tensor.") and method in _SETTING_METHODS)):
                continue
            by_site.setdefault((site.line, write.via), []).append(name)
        placed: set[str] = set()
        for (line, via), writers in by_site.items():
            if not all(w in wanted for w in writers) or all(w in self.kept for w in writers):
                continue
            specs = {wanted[w].init.spec for w in writers}
            if len(specs) != 1:
                continue
            spec = specs.pop()
            method = via.split(".")[-1]
            calls = self.source.calls_at(line, method)
            if len(calls) != 1:
                continue
            call = calls[0]
            if via.startswith("nn.init."):
                if not call.node.args:
                    continue
                target = self.source.code(call.node.args[0].value)
                if call.receiver and call.receiver.endswith("init"):
                    # keep the file's spelling of torch.nn.init (`nn.init`, `init`, `torch.nn.init`)
                    text = spec.render(target, nn="__NN__", quote=self.source.quote).replace("__NN__.init", call.receiver)
                else:   # a bare `normal_(...)` imported from torch.nn.init
                    text = spec.render(target, nn=self.nn, quote=self.source.quote)
                    self.uses_nn = True
            else:
                if not isinstance(call.node.func, cst.Attribute):
                    continue
                target = self.source.code(call.node.func.value)
                text = spec.render(target, nn=self.nn, quote=self.source.quote)
                self.uses_nn = True
            new = cst.parse_expression(text)
            self.node_edits.append(NodeEdit(call.node, lambda node, new=new: new.with_changes(
                lpar=node.lpar, rpar=node.rpar)))
            placed.update(writers)
        return placed

    # ------------------------------------------------------------------ insertion
    def _tensor(self, param: str):
        module, _, attr = param.rpartition(".")
        owner = self.modules.get(module)
        value = getattr(owner, attr, None) if owner is not None else None
        import torch

        return value if isinstance(value, torch.Tensor) else None

    def _insert(self, request: Request, wanted: dict[str, Request]) -> set[str]:
        init = request.init
        module_path, attr = init.module, init.attr
        write = self.last.get(init.param)
        for frame in (write.frames if write is not None else ()):
            if os.path.abspath(frame.file) != self.path:
                continue
            if frame.function == "__init__" and frame.self_id in self.paths:
                owner = self.paths[frame.self_id]
                if not is_within(owner, module_path):
                    continue
                fn = self.source.function(frame.first_line, "__init__")
                if fn is None:
                    continue
                covered = self._class_covers(frame.code_key, owner, relative(owner, module_path), attr, init.spec, wanted)
                if covered is None:
                    continue
                scope = self._scope(Scope("class", fn, "self", owner))
                scope.items.append((relative(owner, module_path), attr, init.spec, request.codes))
                return covered
            if self.root.kind == "factory" and frame.function == self.root.name:
                scope = self._factory_scope()
                scope.items.append((module_path, attr, init.spec, request.codes))
                return {init.param}
            if frame.function == "<module>" and self.root.kind == "module":
                stmt = self.source.top_level_statement(frame.line)
                scope = self._module_scope(stmt)
                scope.items.append((module_path, attr, init.spec, request.codes))
                return {init.param}
        scope = self.root_scope()
        if scope.kind == "class" and write is not None and not any(
                f.function == "__init__" and f.self_id == id(self.model) for f in write.frames):
            raise CannotPlace(f"{init.param} is last set outside {self.root.name}.__init__ "
                              f"({os.path.basename(write.site.file)}:{write.site.line}); initialize it there")
        scope.items.append((relative(scope.module_path, module_path), attr, init.spec, request.codes))
        return {init.param}

    def _class_covers(self, code_key, owner: str, rel: str, attr: str, spec: InitSpec,
                      wanted: dict[str, Request]) -> Optional[set[str]]:
        """The parameters a statement in this class's __init__ would decide, when all of them want
        `spec`; None when one of them wants something else (or lacks the parameter)."""
        covered: set[str] = set()
        for path, module in self.modules.items():
            if code_key not in init_code_keys(module):
                continue
            target_module = f"{path}.{rel}" if path and rel else (path or rel)
            param = f"{target_module}.{attr}" if target_module else attr
            if self._tensor(param) is None:
                return None
            write = self.last.get(param)
            decided_here = write is None or write.inside(code_key, id(module))
            if not decided_here:
                continue
            request = wanted.get(param)
            if request is None or request.init.spec != spec:
                return None
            covered.add(param)
        return covered

    def _scope(self, scope: Scope) -> Scope:
        return self.scopes.setdefault(scope.key, scope)

    def _factory_scope(self) -> Scope:
        fn = self.source.top_level_function(self.root.name)
        if fn is None:
            raise CannotPlace(f"{self.root.name}() is not defined in this file")
        body = fn.body.body
        last = body[-1] if body else None
        ret = last.body[0] if isinstance(last, cst.SimpleStatementLine) and len(last.body) == 1 \
            and isinstance(last.body[0], cst.Return) else None
        if ret is None or ret.value is None:
            raise CannotPlace(f"{self.root.name}() does not end with `return <model>`; add the init calls "
                              "before it returns by hand")
        if isinstance(ret.value, cst.Name):
            return self._scope(Scope("factory", fn, ret.value.value, "", where=BEFORE_RETURN))
        name = "model"
        used = _names_in(fn)
        while name in used:
            name += "_"
        return self._scope(Scope("factory", fn, name, "", where=BEFORE_RETURN, bind_return_as=name))

    def _module_scope(self, stmt) -> Scope:
        existing = next((s for s in self.scopes.values() if s.kind == "module"), None)
        binding = self.source.last_top_level_use(self.root.name)
        candidates = [s for s in (stmt, binding, existing.anchor if existing else None) if s is not None]
        anchor = max(candidates, key=lambda s: self.source.line(s))
        if existing is not None:
            if existing.anchor is not anchor:
                del self.scopes[existing.key]
                existing.anchor = anchor
                self.scopes[existing.key] = existing
            return existing
        return self._scope(Scope("module", anchor, self.root.name, "", where=AFTER))

    # ------------------------------------------------------------------ rendering
    def _render(self, scope: Scope) -> tuple[list[str], list[Optional[str]]]:
        """The statements of a scope: container loops for whole ModuleLists, single calls otherwise."""
        base_module = self.modules.get(scope.module_path, self.model)
        items = list(OrderedDict(((rel, attr), (rel, attr, spec, codes)) for rel, attr, spec, codes in scope.items).values())
        order = {name: i for i, name in enumerate(self.modules)}
        items.sort(key=lambda it: order.get(_join(scope.module_path, it[0]), 0))
        position = {(rel, attr): i for i, (rel, attr, _, _) in enumerate(items)}
        placed_rows: list[tuple[int, str, str, tuple[str, ...]]] = []     # (position, statement, why, codes)
        used_loops = self._type_loops(scope, base_module, items)
        typed = {key for group in used_loops for key in group[3]}
        used_loops += self._loops(scope, base_module, [it for it in items if (it[0], it[1]) not in typed])
        for text, why, codes, keys in used_loops:
            placed_rows.append((min(position[k] for k in keys), text, why, codes))
        looped = {key for group in used_loops for key in group[3]}
        for rel, attr, spec, codes in items:
            if (rel, attr) in looped:
                continue
            target = f"{scope.base}{accessor(base_module, rel)}.{attr}"
            placed_rows.append((position[(rel, attr)], spec.render(target, nn=self.nn, quote=self.source.quote),
                                spec.why or "re-initialized", codes))
        placed_rows.sort(key=lambda row: row[0])
        first_seen: dict[str, int] = {}
        for row in placed_rows:
            first_seen.setdefault(row[2], len(first_seen))
        placed_rows.sort(key=lambda row: first_seen[row[2]])   # stable: module order within each reason
        rows = [(text, why, codes) for _, text, why, codes in placed_rows]
        rows += [(text, comment, ()) for text, comment in scope.extra]
        # one comment per run of statements done for the same reason, naming all their rules
        statements, comments = [], []
        for i, (text, why, _) in enumerate(rows):
            statements.append(text)
            if i > 0 and rows[i - 1][1] == why:
                comments.append(None)
                continue
            codes: list[str] = []
            for _, w, c in rows[i:]:
                if w != why:
                    break
                codes += [x for x in c if x not in codes]
            comments.append(f"{why} (nnlint {', '.join(codes)})" if codes else why)
        return statements, comments

    def _type_loops(self, scope: Scope, base_module, items) -> list[tuple[str, str, tuple[str, ...], set]]:
        """`for m in self.modules(): if isinstance(m, nn.Conv2d): ...` when every module of a type under the
        scope gets the same inits (and they are spread over more than one container)."""
        by_module: dict[str, list] = {}
        for rel, attr, spec, codes in items:
            by_module.setdefault(rel, []).append((attr, spec, codes))
        out = []
        modules_by_type: dict[type, list[str]] = {}
        for name, module in base_module.named_modules():
            modules_by_type.setdefault(type(module), []).append(name)
        for cls, names in modules_by_type.items():
            spelled = self._class_spelling(cls)
            if spelled is None or len(names) < 3 or not all(n in by_module for n in names):
                continue
            shapes = {tuple(sorted((a, sp) for a, sp, _ in by_module[n])) for n in names}
            if len(shapes) != 1 or _whole_container(base_module, names):
                continue   # a plain loop over that container reads better (_loops)
            ops = sorted(by_module[names[0]], key=lambda o: o[0] != "weight")
            var = "m" if "m" != scope.base else "module"
            body = "\n".join(f"        {spec.render(f'{var}.{attr}', nn=self.nn, quote=self.source.quote)}"
                             for attr, spec, _ in ops)
            codes: tuple[str, ...] = ()
            for n in names:
                for _, _, c in by_module[n]:
                    codes += tuple(x for x in c if x not in codes)
            text = f"for {var} in {scope.base}.modules():\n    if isinstance({var}, {spelled}):\n{body}\n"
            keys = {(n, attr) for n in names for attr, _, _ in by_module[n]}
            out.append((text, ops[0][1].why or "re-initialized", codes, keys))
        return out

    def _class_spelling(self, cls: type) -> Optional[str]:
        """`nn.Conv2d` for torch.nn's own layers, `Block` for a class defined at the top of this file."""
        import torch.nn as nn

        if getattr(nn, cls.__name__, None) is cls:
            return f"{self.nn}.{cls.__name__}"
        if self.source.top_level_class(cls.__name__) is not None:
            return cls.__name__
        return None

    def _loops(self, scope: Scope, base_module, items) -> list[tuple[str, str, tuple[str, ...], set]]:
        """`for block in self.blocks: ...` for items that cover every element of a container alike."""
        import torch.nn as nn

        by_container: dict[str, dict[int, list]] = {}
        for rel, attr, spec, codes in items:
            parts = rel.split(".") if rel else []
            for i, part in enumerate(parts):
                prefix = ".".join(parts[:i])
                container = base_module.get_submodule(prefix) if prefix else base_module
                if part.isdigit() and isinstance(container, (nn.ModuleList, nn.Sequential)):
                    suffix = ".".join(parts[i + 1:])
                    by_container.setdefault(prefix, {}).setdefault(int(part), []).append((suffix, attr, spec, codes, rel))
                    break
        out = []
        for prefix, elements in by_container.items():
            container = base_module.get_submodule(prefix) if prefix else base_module
            shapes = {tuple((s, a, sp) for s, a, sp, _, _ in sorted(ops, key=lambda o: (o[0], o[1]))) for ops in elements.values()}
            if len(elements) < 2 or len(elements) != len(container) or len(shapes) != 1:
                continue
            iterated = f"{scope.base}{accessor(base_module, prefix)}"
            var = self._loop_variable(iterated, prefix, scope)
            first = container[0]
            body = []
            codes: tuple[str, ...] = ()
            spec0 = None
            for suffix, attr, spec, c, _ in sorted(elements[0], key=lambda o: (o[0], o[1])):
                body.append("    " + spec.render(f"{var}{accessor(first, suffix)}.{attr}", nn=self.nn, quote=self.source.quote))
                codes += tuple(x for x in c if x not in codes)
                spec0 = spec0 or spec
            text = f"for {var} in {iterated}:\n" + "\n".join(body) + "\n"
            keys = {(rel, attr) for ops in elements.values() for _, attr, _, _, rel in ops}
            out.append((text, spec0.why or "re-initialized", codes, keys))
        return out

    def _loop_variable(self, iterated: str, prefix: str, scope: Scope) -> str:
        existing = self.source.loop_variable(iterated)
        if existing:
            return existing
        last = prefix.split(".")[-1] if prefix else "layer"
        name = last[:-1] if last.endswith("s") and len(last) > 2 and last[:-1].isidentifier() else "layer"
        used = self.source.names | {scope.base}
        while name in used:
            name += "_"
        return name


def _whole_container(root, names: list[str]) -> bool:
    """`names` are exactly the elements of one nn.Sequential/ModuleList."""
    parents = {n.rpartition(".")[0] for n in names}
    if len(parents) != 1 or not all(n.rpartition(".")[2].isdigit() for n in names):
        return False
    parent = parents.pop()
    container = root.get_submodule(parent) if parent else root
    return len(container) == len(names)


def _join(prefix: str, rel: str) -> str:
    return rel if not prefix else prefix if not rel else f"{prefix}.{rel}"


def _names_in(node: cst.CSTNode) -> set[str]:
    names: set[str] = set()

    class V(cst.CSTVisitor):
        def visit_Name(self, n: cst.Name) -> None:
            names.add(n.value)

    node.visit(V())
    return names

