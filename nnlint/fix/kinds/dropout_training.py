"""`F.dropout(x, 0.5)` called without `training=`: it keeps dropping in eval mode. The fix passes
`training=self.training` (in memory: the call follows the module's flag)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from nnlint.fix.kind import Applied, CallSite, FixKind, register

DROPOUT_FUNCS = {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"}


@dataclass(frozen=True)
class DropoutTrainingParams:
    site: CallSite


def follow_training_flag(func, args, kwargs, rewrite, module):
    """The call-site action: the dropout call with its training argument set to the module's flag.
    F.dropout(input, p=0.5, training=True, inplace=False); torch.dropout(input, p, train)."""
    args = list(args)
    if len(args) >= 3:
        args[2] = module.training
    else:
        key = "train" if getattr(func, "__module__", "") == "torch" or "train" in kwargs else "training"
        kwargs = {**kwargs, key: module.training}
    return func(*args, **kwargs)


@register
class DropoutTraining(FixKind):
    name = "functional_dropout_training"
    Params = DropoutTrainingParams
    safe = True

    def apply(self, fix, ctx):
        site = fix.params.site
        func = site.func or "dropout"
        file, line = ctx.install_rewrite(ctx.module(fix.target), site, (func,), follow_training_flag, {})
        return Applied(f"{func}() at {os.path.basename(file)}:{line} now follows the module's training flag")

    def edit(self, fix, diagnostic, ctx):
        import libcst as cst

        from nnlint.fix.edits import NodeEdit

        site = fix.params.site
        func = site.func or "dropout"
        call = ctx.call_site(site, {func} if func in DROPOUT_FUNCS else DROPOUT_FUNCS)
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
