"""A recurrent layer, a MultiheadAttention or a Transformer layer that reads (seq, batch, ...) while it is
fed (batch, seq, ...): build it with `batch_first=True`. In memory, the module and every submodule
that has the flag get `batch_first = True` (torch reads the attribute at each call); in source, the
construction call gets `batch_first=True`."""
from __future__ import annotations

from dataclasses import dataclass

from nnlint.fix.kind import Applied, CannotFix, FixKind, register
from nnlint.fix.kinds._keyword import set_keyword


@dataclass(frozen=True)
class BatchFirstParams:
    module_type: str                      # the class built at the construction call: "GRU", "Encoder"


@register
class BatchFirst(FixKind):
    name = "batch_first"
    Params = BatchFirstParams
    safe = False   # the layer reads its input differently: code indexing its output by position may need a look

    def apply(self, fix, ctx):
        module = ctx.module(fix.target)
        flagged = [m for m in module.modules() if getattr(m, "batch_first", None) is False]
        if not flagged:
            raise CannotFix(f"{fix.target or 'the model'} has no module with batch_first=False")
        for m in flagged:
            m.batch_first = True
        return Applied(f"{fix.target or 'the model'}: batch_first=True on {len(flagged)} module(s) (in memory)")

    def edit(self, fix, diagnostic, ctx):
        p: BatchFirstParams = fix.params
        line = set_keyword(ctx, fix, {p.module_type}, self.name, "batch_first", "True")
        return f"{p.module_type}(...) on line {line} gets batch_first=True"
