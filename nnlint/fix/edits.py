"""Edits of a model file, as data, and the one libcst pass that applies them all.

Two kinds: a NodeEdit rewrites one node in place (a call's name or arguments), an Insertion adds
statements at a point (the end of a function, before a factory's `return`, after a top-level
statement, the start of `forward`, the imports). Edits name their anchors by node identity in the
SourceFile's tree, so they never drift when other edits change line numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import libcst as cst

from nnlint.fix.cstfile import SourceFile

END, BEFORE_RETURN, AFTER, START, IMPORTS = "end", "before_return", "after", "start", "imports"


@dataclass
class NodeEdit:
    node: cst.CSTNode
    rewrite: Callable[[cst.CSTNode], cst.CSTNode]


@dataclass
class Insertion:
    anchor: Optional[cst.CSTNode]      # a FunctionDef (END, BEFORE_RETURN, START), a top-level statement (AFTER), None (IMPORTS)
    where: str
    statements: list[str]              # source text, one statement each (a `for` may span lines)
    comment: Optional[str] = None      # one comment line above the first statement
    bind_return_as: Optional[str] = None   # BEFORE_RETURN when the factory returns an expression: name it first


@dataclass
class EditSet:
    node_edits: list[NodeEdit] = field(default_factory=list)
    insertions: list[Insertion] = field(default_factory=list)

    def extend(self, other: "EditSet") -> None:
        self.node_edits += other.node_edits
        self.insertions += other.insertions

    def __bool__(self) -> bool:
        return bool(self.node_edits or self.insertions)


def apply_edits(source: SourceFile, edits: EditSet) -> str:
    """The file's text with every edit applied (comments and formatting elsewhere untouched)."""
    return source.module.visit(_Apply(edits)).code


def _statements(ins: Insertion) -> list[cst.BaseStatement]:
    out = [cst.parse_statement(text if text.endswith("\n") else text + "\n") for text in ins.statements]
    if ins.comment and out:
        comment = cst.EmptyLine(comment=cst.Comment(f"# {ins.comment}"))
        out[0] = out[0].with_changes(leading_lines=[comment, *out[0].leading_lines])
    return out


def _is_docstring(stmt: cst.CSTNode) -> bool:
    return (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and isinstance(stmt.body[0], cst.Expr)
            and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString)))


def _is_import(stmt: cst.CSTNode) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and all(isinstance(s, (cst.Import, cst.ImportFrom)) for s in stmt.body)


def _final_return(body: list) -> Optional[cst.Return]:
    if body and isinstance(body[-1], cst.SimpleStatementLine) and len(body[-1].body) == 1 \
            and isinstance(body[-1].body[0], cst.Return):
        return body[-1].body[0]
    return None


class _Apply(cst.CSTTransformer):
    def __init__(self, edits: EditSet):
        super().__init__()
        self.node_edits: dict[int, list[NodeEdit]] = {}
        for e in edits.node_edits:
            self.node_edits.setdefault(id(e.node), []).append(e)
        self.insertions: dict[int, list[Insertion]] = {}
        self.imports: list[Insertion] = []
        for ins in edits.insertions:
            if ins.where == IMPORTS:
                self.imports.append(ins)
            else:
                self.insertions.setdefault(id(ins.anchor), []).append(ins)

    def on_leave(self, original_node, updated_node):
        result = super().on_leave(original_node, updated_node)
        for e in self.node_edits.get(id(original_node), ()):
            result = e.rewrite(result)
        if isinstance(original_node, cst.FunctionDef) and id(original_node) in self.insertions:
            result = self._function(result, self.insertions[id(original_node)])
        if isinstance(original_node, cst.Module):
            result = self._module(original_node, result)
        return result

    def _function(self, fn: cst.FunctionDef, insertions: list[Insertion]) -> cst.FunctionDef:
        body = list(fn.body.body)
        start = [s for i in insertions if i.where == START for s in _statements(i)]
        end = [s for i in insertions if i.where == END for s in _statements(i)]
        before = [i for i in insertions if i.where == BEFORE_RETURN]
        at = 1 if body and _is_docstring(body[0]) else 0
        body[at:at] = start
        if end:
            ret = _final_return(body)
            if ret is not None and ret.value is None:
                body[-1:-1] = end
            else:
                body += end
        if before:
            ret = _final_return(body)
            statements = [s for i in before for s in _statements(i)]
            bind = next((i.bind_return_as for i in before if i.bind_return_as), None)
            if ret is None:
                raise ValueError(f"{fn.name.value} does not end with a return")
            if bind:
                line = body[-1]
                assign = line.with_changes(body=[cst.Assign(targets=[cst.AssignTarget(cst.Name(bind))], value=ret.value)])
                body[-1:] = [assign, *statements, cst.SimpleStatementLine(body=[cst.Return(value=cst.Name(bind))])]
            else:
                body[-1:-1] = statements
        return fn.with_changes(body=fn.body.with_changes(body=body))

    def _module(self, original: cst.Module, module: cst.Module) -> cst.Module:
        body = list(module.body)
        # statements after top-level anchors, by the anchor's position in the original body
        for index in reversed(range(len(original.body))):
            after = [s for ins in self.insertions.get(id(original.body[index]), ()) if ins.where == AFTER
                     for s in _statements(ins)]
            body[index + 1:index + 1] = after
        if self.imports:
            # after the file's leading imports (and its docstring)
            at = 1 if body and _is_docstring(body[0]) else 0
            while at < len(body) and _is_import(body[at]):
                at += 1
            body[at:at] = [s for ins in self.imports for s in _statements(ins)]
        return module.with_changes(body=body)
