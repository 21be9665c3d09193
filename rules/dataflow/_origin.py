"""How the dependence rules name and locate where a dependence starts (a probe's Origin)."""
from __future__ import annotations

from typing import Optional

from nnlint.diagnostics import Location
from nnlint.rulekit import fmt
from nnlint.rules.propagation._gradients import short_location
from nnlint.trace.records import Trace


# Reductions: over the batch they mix samples (NN701), over the sequence they leak the future (NN703).
REDUCTIONS = {"sum", "mean", "max", "amax", "min", "amin", "std", "var", "prod", "logsumexp", "norm", "cumsum"}


def builtin_owner(trace: Trace, module: str) -> Optional[str]:
    """The outermost torch.nn module around `module`, up from it through torch.nn modules only (the
    TransformerEncoderLayer around its MultiheadAttention); None when `module` is the user's own."""
    rec = trace.modules.get(module)
    if rec is None or not rec.is_torch_builtin:
        return None
    owner = module
    parts = module.split(".") if module else []
    for n in range(len(parts) - 1, -1, -1):
        parent = trace.modules.get(".".join(parts[:n]))
        if parent is None or not parent.is_torch_builtin or parent.type in ("ModuleList", "Sequential", "ModuleDict"):
            break
        owner = parent.name
    return owner


def origin_location(trace: Trace, origin) -> Optional[Location]:
    """A torch.nn module's construction line (its call is inside torch), else the user's line that
    made the call."""
    owner = builtin_owner(trace, origin.module)
    if owner is not None:
        loc = trace.location_of(owner)
        if loc is not None:
            return loc
    return origin.location or trace.location_of(origin.module)


def share(x: float) -> str:
    """A relative change as a person reads it: 15%, 0.22%, 3.1e-05."""
    return f"{100 * x:.2g}%" if x >= 1e-3 else fmt(x)


def describe_origin(trace: Trace, origin) -> str:
    """`view() in forward (net.py:35)`, `softmax(dim=0) in 3 (Softmax)`, `rnn (GRU)`."""
    func = origin.func.strip("<>")
    dim = f"dim={origin.dim}" if origin.dim is not None and func in _DIM_FUNCS else ""
    where = origin.module or "the model"
    if origin.is_module:
        return f"{where} ({origin.module_type})"
    if builtin_owner(trace, origin.module) is not None:
        return f"{where} ({origin.module_type}: {func}({dim}))"
    line = f" at {short_location(origin.location)}" if origin.location is not None else ""
    return f"{func}({dim}) in {where + '.forward' if origin.module else 'forward'}{line}"


_DIM_FUNCS = {"softmax", "log_softmax", "normalize", "sum", "mean", "cumsum", "std", "var", "amax", "max",
              "logsumexp", "norm", "layer_norm", "batch_norm", "prod", "cumprod"}
