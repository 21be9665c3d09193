"""Where a statement goes in the user's training loop: found from the line that called
`optimizer.step()` (the guard and the loop probe record it), in the model file's source.

The loop body is the innermost `for`/`while` around that call inside its function; a step function
with no loop of its own (`def train_step(model, optimizer, batch)`, called once per batch) is its own
loop body. Statements are edits of that node (nnlint.fix.edits.NodeEdit), so they never drift when
other edits move lines.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Union

import libcst as cst

from nnlint.fix.kind import CannotPlace


@dataclass(frozen=True)
class LoopSite:
    """The user's `step()` call: file, line and, as that frame named them, the model and optimizer."""

    file: Optional[str]
    line: Optional[int]
    model: Optional[str] = None
    optimizer: Optional[str] = None


def step_call(ctx, site: LoopSite) -> cst.Call:
    if not site.file or not site.line:
        raise CannotPlace("the line that calls optimizer.step() is unknown")
    if os.path.abspath(site.file) != os.path.abspath(ctx.path):
        raise CannotPlace(f"the loop is in {site.file}:{site.line}, outside this file; change it there")
    calls = ctx.source.calls_at(int(site.line), {"step"})
    if len(calls) != 1:
        raise CannotPlace(f"line {site.line} has {'no' if not calls else len(calls)} .step() call(s)")
    return calls[0].node


def loop_around(ctx, node: cst.CSTNode) -> Union[cst.For, cst.While, cst.FunctionDef]:
    """The innermost loop around `node` in its function, else the function itself."""
    current = ctx.source.parents.get(node)
    while current is not None and not isinstance(current, (cst.For, cst.While, cst.FunctionDef)):
        current = ctx.source.parents.get(current)
    if current is None:
        raise CannotPlace("the optimizer.step() call is not in a function or a loop")
    return current


def optimizer_name(call: cst.Call, site: LoopSite) -> str:
    """`optimizer` of `optimizer.step()`, or of `scaler.step(optimizer)`."""
    from nnlint.fix.cstfile import dotted

    receiver = dotted(call.func.value) if isinstance(call.func, cst.Attribute) else None
    if call.args and isinstance(call.args[0].value, (cst.Name, cst.Attribute)) and call.args[0].keyword is None:
        arg = dotted(call.args[0].value)
        if arg and receiver and "scaler" in receiver.lower():
            return arg
    return receiver or site.optimizer or "optimizer"


def prepend_to_body(ctx, loop, statement: str) -> None:
    """`statement` first in the loop's (or function's) body."""
    from nnlint.fix.edits import START, Insertion, NodeEdit

    if isinstance(loop, cst.FunctionDef):
        ctx.edits.insertions.append(Insertion(loop, START, [statement]))
        return
    new = cst.parse_statement(statement + "\n")

    def rewrite(node):
        target = _unwrap(node)
        body = target.body.with_changes(body=[new, *target.body.body])
        return _rewrap(node, target.with_changes(body=body))

    ctx.edits.node_edits.append(NodeEdit(loop, rewrite))


def insert_before(ctx, loop, statement: str) -> None:
    """`statement` just before the loop (at the top of the function when there is no loop)."""
    from nnlint.fix.edits import START, Insertion, NodeEdit

    if isinstance(loop, cst.FunctionDef):
        ctx.edits.insertions.append(Insertion(loop, START, [statement]))
        return
    new = cst.parse_statement(statement + "\n")

    def rewrite(node):
        if isinstance(node, cst.FlattenSentinel):
            return cst.FlattenSentinel([new, *node.nodes])
        return cst.FlattenSentinel([new, node])

    ctx.edits.node_edits.append(NodeEdit(loop, rewrite))


def _unwrap(node):
    """The loop itself, when an earlier edit put a statement before it."""
    if isinstance(node, cst.FlattenSentinel):
        return next(n for n in node.nodes if isinstance(n, (cst.For, cst.While)))
    return node


def _rewrap(original, loop):
    if isinstance(original, cst.FlattenSentinel):
        return cst.FlattenSentinel([loop if isinstance(n, (cst.For, cst.While)) else n for n in original.nodes])
    return loop
