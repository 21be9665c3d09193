"""A BatchNorm built with `track_running_stats=False` gets its running statistics back: in memory, the
buffers (mean 0, variance 1, which training fills); in source, the argument removed."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nnlint.fix.kind import Applied, CannotFix, CannotPlace, FixKind, register


@dataclass(frozen=True)
class KeepRunningStatsParams:
    num_features: Optional[int] = None
    momentum: Optional[float] = None


@register
class KeepRunningStats(FixKind):
    name = "keep_running_stats"
    Params = KeepRunningStatsParams
    safe = True

    def apply(self, fix, ctx):
        import torch

        bn = ctx.module(fix.target)
        if not hasattr(bn, "track_running_stats") or getattr(bn, "num_features", None) is None:
            raise CannotFix(f"{fix.target} is not a BatchNorm layer")
        if not bn.track_running_stats:
            like = bn.weight if getattr(bn, "weight", None) is not None else torch.empty(0)
            kw = {"device": like.device, "dtype": like.dtype if like.is_floating_point() else torch.float32}
            bn.running_mean = torch.zeros(bn.num_features, **kw)
            bn.running_var = torch.ones(bn.num_features, **kw)
            bn.num_batches_tracked = torch.tensor(0, dtype=torch.long, device=kw["device"])
            bn.track_running_stats = True
        return Applied(f"{fix.target} now keeps running statistics (track_running_stats=True)")

    def edit(self, fix, diagnostic, ctx):
        import libcst as cst

        from nnlint.fix.edits import NodeEdit

        module = ctx.modules.get(fix.target)
        if module is None:
            raise CannotPlace(f"no module {fix.target}")
        cls = type(module).__name__
        call = ctx.construction_call(fix.target, {cls}, self.name)

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
