"""The kinds that come down to parameter inits (re-init, zero-init, a final-layer rescale): both halves
only ask for their inits; the round applies them, one per parameter (runtime: on the tensors; source:
where the Placer finds they take effect)."""
from __future__ import annotations

from nnlint.diagnostics import Diagnostic, Fix
from nnlint.fix.kind import Applied, FixKind


class ParamInitKind(FixKind):
    safe = True

    def apply(self, fix: Fix, ctx) -> Applied:
        return Applied("", self.inits(fix, ctx.std_of))   # the inits that win are listed by the round

    def edit(self, fix: Fix, diagnostic: Diagnostic, ctx) -> str:
        ctx.request_inits(fix, diagnostic.code)
        return ""
