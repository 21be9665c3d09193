"""The user's model file as a libcst tree, with the lookups the source fixer needs: the calls on a line,
the function a frame ran, the top-level statement holding a line, how the file names `torch.nn`.

libcst keeps every comment and every space, so an edit changes only the nodes it replaces.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional, Union

import libcst as cst
from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider


class SourceSyntaxError(Exception):
    """The file does not parse: the message names the line; nothing is edited."""


@dataclass(frozen=True)
class CallInfo:
    node: cst.Call
    name: str                      # the called name: "normal_", "Sigmoid", "dropout"
    receiver: Optional[str]        # the code before `.name` ("nn.init", "F", "x"), None for a bare name
    start_line: int
    end_line: int


def dotted(node: cst.BaseExpression) -> Optional[str]:
    """`torch.nn.init` for an attribute chain of names, else None."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        inner = dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr.value}"
    return None


class SourceFile:
    def __init__(self, text: str, path: str = "<model file>"):
        self.text = text
        self.path = path
        try:
            self.module = cst.parse_module(text)
        except cst.ParserSyntaxError as exc:
            raise SourceSyntaxError(f"{path}:{exc.raw_line}:{exc.raw_column + 1}: syntax error: "
                                    f"{str(exc.message).rstrip('.')}") from None
        self.wrapper = MetadataWrapper(self.module, unsafe_skip_copy=True)
        self.positions = self.wrapper.resolve(PositionProvider)
        self.parents = self.wrapper.resolve(ParentNodeProvider)
        collector = _Collector(self.positions)
        self.module.visit(collector)
        self.calls: list[CallInfo] = collector.calls
        self.functions: list[cst.FunctionDef] = collector.functions
        self.loops: list[tuple[str, str]] = collector.loops          # (iterated code, loop variable)
        self.names: set[str] = collector.names
        self.quote = '"' if collector.quotes['"'] >= collector.quotes["'"] else "'"

    # -- positions --
    def line(self, node: cst.CSTNode) -> int:
        return self.positions[node].start.line

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)

    def calls_at(self, line: int, names: Union[str, tuple[str, ...], set[str]]) -> list[CallInfo]:
        """Calls of `name` that start on `line`, else those whose span covers it (a multi-line call)."""
        wanted = {names} if isinstance(names, str) else set(names)
        starting = [c for c in self.calls if c.name in wanted and c.start_line == line]
        if starting:
            return starting
        return [c for c in self.calls if c.name in wanted and c.start_line <= line <= c.end_line]

    def function(self, first_line: int, name: str) -> Optional[cst.FunctionDef]:
        """The function whose code object starts at `first_line` (the def line, or its first decorator's)."""
        for fn in self.functions:
            if fn.name.value != name:
                continue
            lines = {self.line(fn)} | ({self.line(fn.decorators[0])} if fn.decorators else set())
            if first_line in lines:
                return fn
        return None

    def top_level_function(self, name: str) -> Optional[cst.FunctionDef]:
        for stmt in self.module.body:
            if isinstance(stmt, cst.FunctionDef) and stmt.name.value == name:
                return stmt
        return None

    def top_level_class(self, name: str) -> Optional[cst.ClassDef]:
        for stmt in self.module.body:
            if isinstance(stmt, cst.ClassDef) and stmt.name.value == name:
                return stmt
        return None

    def method(self, cls: cst.ClassDef, name: str) -> Optional[cst.FunctionDef]:
        body = cls.body.body if isinstance(cls.body, cst.IndentedBlock) else ()
        for stmt in body:
            if isinstance(stmt, cst.FunctionDef) and stmt.name.value == name:
                return stmt
        return None

    def enclosing_function(self, node: cst.CSTNode) -> Optional[cst.FunctionDef]:
        current = self.parents.get(node)
        while current is not None and not isinstance(current, cst.FunctionDef):
            current = self.parents.get(current)
        return current

    def top_level_statement(self, line: int) -> Optional[cst.CSTNode]:
        for stmt in self.module.body:
            pos = self.positions[stmt]
            if pos.start.line <= line <= pos.end.line:
                return stmt
        return None

    def last_top_level_use(self, name: str) -> Optional[cst.CSTNode]:
        """The last top-level statement that mentions `name` (for `model.eval()` after the model is set up)."""
        found = None
        for stmt in self.module.body:
            if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
                continue
            finder = _NameFinder(name)
            stmt.visit(finder)
            if finder.found:
                found = stmt
        return found

    # -- how the file spells things --
    def bound_names(self) -> dict[str, str]:
        """Top-level import bindings: local name -> what it is ("torch", "torch.nn", "torch.nn.functional")."""
        out: dict[str, str] = {}
        for stmt in self.module.body:
            if not isinstance(stmt, cst.SimpleStatementLine):
                continue
            for small in stmt.body:
                if isinstance(small, cst.Import):
                    for alias in small.names:
                        full = dotted(alias.name) or ""
                        local = alias.asname.name.value if alias.asname and isinstance(alias.asname.name, cst.Name) \
                            else full.split(".")[0]
                        out[local] = full if alias.asname else full.split(".")[0]
                elif isinstance(small, cst.ImportFrom) and small.module is not None and not isinstance(small.names, cst.ImportStar):
                    base = dotted(small.module) or ""
                    for alias in small.names:
                        name = dotted(alias.name) or ""
                        local = alias.asname.name.value if alias.asname and isinstance(alias.asname.name, cst.Name) else name
                        out[local] = f"{base}.{name}"
        return out

    def spelling(self, full: str) -> Optional[str]:
        """How this file can write `full` ("torch.nn") with its imports: "nn", "torch.nn", or None."""
        bound = self.bound_names()
        for local, what in bound.items():
            if what == full:
                return local
        # the longest import that covers it: `nn.functional` rather than `torch.nn.functional`
        for local, what in sorted(bound.items(), key=lambda item: -len(item[1])):
            if full.startswith(what + "."):
                return local + full[len(what):]
        return None

    def loop_variable(self, iterated: str) -> Optional[str]:
        """The variable the file already uses in `for <var> in <iterated>:`."""
        counts = Counter(var for it, var in self.loops if it == iterated)
        return counts.most_common(1)[0][0] if counts else None


class _Collector(cst.CSTVisitor):
    def __init__(self, positions):
        self.positions = positions
        self.calls: list[CallInfo] = []
        self.functions: list[cst.FunctionDef] = []
        self.loops: list[tuple[str, str]] = []
        self.names: set[str] = set()
        self.quotes: Counter = Counter()
        self._module = cst.Module(body=[])

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if isinstance(func, cst.Name):
            name, receiver = func.value, None
        elif isinstance(func, cst.Attribute):
            name, receiver = func.attr.value, self._module.code_for_node(func.value)
        else:
            return
        pos = self.positions[node]
        self.calls.append(CallInfo(node, name, receiver, pos.start.line, pos.end.line))

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.functions.append(node)

    def visit_For(self, node: cst.For) -> None:
        if isinstance(node.target, cst.Name):
            self.loops.append((self._module.code_for_node(node.iter), node.target.value))

    def visit_Name(self, node: cst.Name) -> None:
        self.names.add(node.value)

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        quote = node.value.lstrip("rbuRBUfF")[:1]
        if quote in ("'", '"'):
            self.quotes[quote] += 1


class _NameFinder(cst.CSTVisitor):
    def __init__(self, name: str):
        self.name = name
        self.found = False

    def visit_Name(self, node: cst.Name) -> None:
        if node.value == self.name:
            self.found = True
