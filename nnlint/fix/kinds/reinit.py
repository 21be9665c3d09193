"""Re-initialize a layer's weight with a named init (the gain-correct one, or a measured std), its bias
to zero (where it is off PyTorch's default range) or to a value, and optionally the rest of its chain."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nnlint.fix.kind import register
from nnlint.fix.kinds._param_inits import ParamInitKind
from nnlint.fix.specs import LayerInit, layer_inits
from nnlint.initmath import InitSpec
from nnlint.pyexpr import module_expr


@dataclass(frozen=True)
class ReinitParams:
    spec: InitSpec                        # the target's weight init (initmath.correct_init, usually)
    param: str = "weight"
    bias: Optional[float] = None          # a value for the bias (a dead ReLU's 0.01); None: zero it if off
    zero_bias: bool = True
    chain: tuple[LayerInit, ...] = ()     # the other layers of a drifting chain, re-initialized alike

    def call(self, target: str) -> str:
        """The weight's init as code, for a message: `nn.init.kaiming_normal_(model.fc1.weight, ...)`."""
        return self.spec.render(module_expr(target, self.param))


@register
class Reinit(ParamInitKind):
    name = "reinit"
    Params = ReinitParams
    init_priority = 1

    def inits(self, fix, std_of):
        p: ReinitParams = fix.params
        out = layer_inits(LayerInit(fix.target, p.spec, p.param), self.init_priority, p.bias, p.zero_bias)
        for link in p.chain:
            if link.target != fix.target:
                out += layer_inits(link, self.init_priority, zero_bias=False)
        return out
