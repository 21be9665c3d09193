"""Zero-initialize parameters: the last layer (or last norm weight) of residual branches, so that each
block starts as the identity."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nnlint.fix.kind import register
from nnlint.fix.kinds._param_inits import ParamInitKind
from nnlint.fix.specs import LayerInit, ParamInit, layer_inits
from nnlint.initmath import InitSpec


@dataclass(frozen=True)
class ZeroInitParams:
    params: tuple[str, ...]               # qualified parameter names
    why: str = "each residual block starts as the identity"
    # A value for the bias of each parameter's module: a zero layer before a ReLU keeps its units active
    # with a small positive bias (relu(0) passes no gradient). None: the bias is left as it is.
    bias: Optional[float] = None


@register
class ZeroInit(ParamInitKind):
    name = "zero_init"
    Params = ZeroInitParams
    init_priority = 2

    def inits(self, fix, std_of):
        p: ZeroInitParams = fix.params
        out: list[ParamInit] = []
        for name in p.params:
            module, _, attr = name.rpartition(".")
            out += layer_inits(LayerInit(module, InitSpec("zeros_", why=p.why), attr), self.init_priority, p.bias,
                               zero_bias=False)
        return out
