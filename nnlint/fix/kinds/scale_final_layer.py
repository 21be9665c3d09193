"""Scale an over-confident output layer down: redraw its weight with `factor` times its current std (an
explicit init reads better in source than an in-place multiply, and is the same distribution scale), and
zero its bias (the class log-priors are zero for balanced classes)."""
from __future__ import annotations

from dataclasses import dataclass

from nnlint.fix.kind import register
from nnlint.fix.kinds._param_inits import ParamInitKind
from nnlint.fix.specs import ParamInit, join
from nnlint.initmath import InitSpec, measured_normal


@dataclass(frozen=True)
class ScaleFinalLayerParams:
    factor: float
    param: str = "weight"


@register
class ScaleFinalLayer(ParamInitKind):
    name = "scale_final_layer"
    Params = ScaleFinalLayerParams
    init_priority = 2

    def inits(self, fix, std_of):
        p: ScaleFinalLayerParams = fix.params
        weight = join(fix.target, p.param)
        std = std_of(weight)
        if std is None or not std > 0:
            spec = InitSpec("zeros_", why="an output layer that starts unconfident")
        else:
            spec = measured_normal(p.factor * std, why=f"{p.factor:g}x the current std: the output layer starts unconfident")
        return [ParamInit(weight, spec, self.init_priority),
                ParamInit(join(fix.target, "bias"), InitSpec("zeros_", why="uniform class scores at init"),
                          self.init_priority)]
