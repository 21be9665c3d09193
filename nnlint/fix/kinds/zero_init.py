"""Zero-initialize parameters: the last layer (or last norm weight) of residual branches, so that each
block starts as the identity."""
from __future__ import annotations

from dataclasses import dataclass

from nnlint.fix.kind import register
from nnlint.fix.kinds._param_inits import ParamInitKind
from nnlint.fix.specs import ParamInit
from nnlint.initmath import InitSpec


@dataclass(frozen=True)
class ZeroInitParams:
    params: tuple[str, ...]               # qualified parameter names
    why: str = "each residual block starts as the identity"


@register
class ZeroInit(ParamInitKind):
    name = "zero_init"
    Params = ZeroInitParams
    init_priority = 2

    def inits(self, fix, std_of):
        p: ZeroInitParams = fix.params
        return [ParamInit(name, InitSpec("zeros_", why=p.why), self.init_priority) for name in p.params]
