"""The fixes the optimizer rules attach (their kinds live in nnlint.fix.kinds)."""
from __future__ import annotations

from typing import Optional

from nnlint.diagnostics import Fix
from nnlint.fix.kinds.optimizer_params import ALL, OptimizerParams, OptimizerParamsParams
from nnlint.trace.records import Trace


def rebuild_fix(trace: Trace, description: str, *, weight_decay: Optional[float] = None,
                decay_groups: bool = False) -> Optional[Fix]:
    """Rebuild the optimizer's groups in the model file's `optimizer(model)`; None when the check was not
    given an optimizer built there (nothing to edit)."""
    if trace.optimizer is None:
        return None
    params = OptimizerParamsParams("decay_groups", weight_decay) if decay_groups else OptimizerParamsParams(ALL)
    return OptimizerParams.make("", description, params)
