"""The optimizer's parameter groups rebuilt from the final model, in the model file's `optimizer(model)`:
every trainable parameter (`model.parameters()`), or two groups that decay the weight matrices and
kernels only (`p.ndim >= 2`) and leave norms, biases and other 1-D parameters undecayed.

The optimizer is the user's training code, not the model: there is nothing to change in memory (the
runtime half says so); the source half rewrites the first argument of the optimizer's construction call
and keeps every hyperparameter written there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nnlint.fix.kind import Applied, CannotFix, CannotPlace, FixKind, register

ALL, DECAY_GROUPS = "all", "decay_groups"


@dataclass(frozen=True)
class OptimizerParamsParams:
    groups: str = ALL                        # ALL | DECAY_GROUPS
    weight_decay: Optional[float] = None     # DECAY_GROUPS: the decay of the matrices and kernels


def groups_code(model: str, params: OptimizerParamsParams) -> str:
    """The expression the optimizer is built from."""
    if params.groups == ALL:
        return f"{model}.parameters()"
    wd = f"{params.weight_decay:g}" if params.weight_decay is not None else "0.01"
    return (f'[{{"params": [p for p in {model}.parameters() if p.ndim >= 2], "weight_decay": {wd}}}, '
            f'{{"params": [p for p in {model}.parameters() if p.ndim < 2], "weight_decay": 0.0}}]')


@register
class OptimizerParams(FixKind):
    name = "optimizer_params"
    Params = OptimizerParamsParams
    safe = True

    def apply(self, fix, ctx) -> Applied:
        raise CannotFix("the optimizer is built by your training code, not part of the model: rebuild it there")

    def edit(self, fix, diagnostic, ctx) -> str:
        import libcst as cst

        from nnlint.fix.cstfile import dotted
        from nnlint.fix.edits import NodeEdit

        fn = ctx.source.top_level_function("optimizer")
        if fn is None or not fn.params.params:
            raise CannotPlace("the optimizer is not built in a `def optimizer(model):` of this file; build it there "
                              "from the final model")
        model = fn.params.params[0].name.value
        returns = [n for n in _walk(fn) if isinstance(n, cst.Return) and isinstance(n.value, cst.Call)]
        call = returns[-1].value if returns else None
        name = dotted(call.func) if call is not None else None
        if call is None or name is None or not call.args or call.args[0].keyword is not None:
            raise CannotPlace(f"{fn.name.value}() does not end with `return torch.optim.X(params, ...)`; "
                              f"build it from {groups_code(model, fix.params)}")
        new = cst.parse_expression(groups_code(model, fix.params))

        def rewrite(node: cst.Call) -> cst.Call:
            args = list(node.args)
            args[0] = args[0].with_changes(value=new)
            return node.with_changes(args=args)

        ctx.edits.node_edits.append(NodeEdit(call, rewrite))
        what = "every trainable parameter" if fix.params.groups == ALL else "decay on matrices and kernels only"
        return f"{name}(...) on line {ctx.source.line(call)} is built from {what}"


def _walk(node):
    """Every node under `node` (libcst has no ast.walk)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(list(current.children)))
