"""What a fix does to parameters, as data both fixers read: `ParamInit(param, InitSpec)`.

A re-init, a zero-init and a final-layer rescale all come down to "call this `torch.nn.init` function on
this parameter" (the spec, from nnlint.initmath). The runtime fixer calls it on the tensor; the source
fixer writes the same call into the user's file. When several fixes of one round name one parameter,
`resolve` picks one init for it, by the kinds' priorities.

No torch import at module level: the source fixer's rendering and its tests use this without it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

from nnlint.initmath import InitSpec, fans


@dataclass(frozen=True)
class LayerInit:
    """Initialize `target.param` (a module and one of its parameters) as `spec` says."""

    target: str
    spec: InitSpec
    param: str = "weight"


@dataclass(frozen=True)
class ParamInit:
    """Initialize the parameter `param` (qualified name, "fc1.weight") as `spec` says."""

    param: str
    spec: InitSpec
    priority: int = 0             # its fix kind's: the highest wins when two fixes name one parameter
    # a companion init (the zero bias of a re-init): skipped when the tensor is already in PyTorch's
    # default range, so that a fix does not rewrite what is not wrong
    optional: bool = field(default=False, compare=False)

    @property
    def module(self) -> str:
        return self.param.rpartition(".")[0]

    @property
    def attr(self) -> str:
        return self.param.rpartition(".")[2]

    def describe(self) -> str:
        """`nn.init.kaiming_normal_(fc1.weight, nonlinearity="relu")`."""
        return self.spec.render(self.param)


def join(module: str, attr: str) -> str:
    return f"{module}.{attr}" if module else attr


ZERO_BIAS = "zero bias for the re-initialized layer"


def layer_inits(layer: LayerInit, priority: int, bias: Optional[float] = None, zero_bias: bool = True) -> list[ParamInit]:
    """A layer's weight init and its bias: `bias` when given (NN203's small positive bias), else a zero
    bias that is applied only where the bias is out of PyTorch's default range (optional)."""
    out = [ParamInit(join(layer.target, layer.param), layer.spec, priority)]
    if bias is not None:
        spec = InitSpec("zeros_", why=ZERO_BIAS) if bias == 0.0 else \
            InitSpec("constant_", (("val", float(bias)),), why="a small positive bias keeps the ReLU units active")
        out.append(ParamInit(join(layer.target, "bias"), spec, priority))
    elif zero_bias:
        out.append(ParamInit(join(layer.target, "bias"), InitSpec("zeros_", why=ZERO_BIAS), priority, optional=True))
    return out


def resolve(inits: list[ParamInit]) -> dict[str, ParamInit]:
    """One init per parameter: the highest-priority kind's; among equals an explicit one over an optional
    companion (a dead-ReLU fix's 0.01 bias over a re-init's "zero bias if it is off"), then a std
    measured for what runs around the layer over a named init (a chain re-init's std, which counts
    the max-pools after the layer, over NN103's Kaiming for that layer alone), else the first."""
    chosen: dict[str, ParamInit] = {}

    def rank(init: ParamInit) -> tuple[int, int, int]:
        return (init.priority, 0 if init.optional else 1, 1 if init.spec.measured else 0)

    for init in inits:
        current = chosen.get(init.param)
        if current is None or rank(init) > rank(current):
            chosen[init.param] = init
    return chosen


def join_detail(what: str, inits: list[ParamInit], kept: Sequence[str] = ()) -> str:
    """An applier's own words plus the inits that won for its parameters, for the fix summary."""
    parts = [what] if what else []
    parts += [init.describe() for init in inits]
    if kept:
        shown = ", ".join(kept[:3]) + (f" and {len(kept) - 3} more" if len(kept) > 3 else "")
        parts.append(f"{shown} already right, left as is")
    return "; ".join(parts) or "nothing to change"


# ---------------------------------------------------------------------------------------------
# Already right?


def already_satisfied(owner, init: ParamInit) -> bool:
    """True when the tensor already is what the init would make it, statistically: a Kaiming/Xavier
    weight whose std is within 10% of the gain-correct one (no degenerate rows), a zero tensor for
    zeros_, a constant tensor for constant_, or (for an optional zero bias) a bias within PyTorch's
    default range 1/sqrt(fan_in). Re-drawing such a tensor changes nothing that matters, and leaving
    it keeps the diff and the user's weights as they were."""
    import torch

    tensor = getattr(owner, init.attr, None)
    if not isinstance(tensor, torch.Tensor) or tensor.numel() == 0:
        return False
    t = tensor.detach().float()
    spec = init.spec
    if init.optional and init.attr == "bias":
        weight = getattr(owner, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
            return bool((t == 0).all())
        fan_in = weight[0].numel()
        return bool(t.abs().max() <= 1.0 / math.sqrt(max(fan_in, 1)) + 1e-12)
    if spec.initializer == "zeros_":
        return bool((t == 0).all())
    if spec.initializer == "constant_":
        return bool((t == float(dict(spec.kwargs).get("val", 0.0))).all())
    if t.numel() < 2 or t.dim() < 2:
        return False
    fan_in, fan_out = fans(tuple(t.shape))
    expected = spec.std(fan_in, fan_out)
    if expected is None:
        return False
    std = float(t.std())
    # Kaiming with fan_in (forward-preserving) and with fan_out (backward-preserving, torchvision's
    # choice) are both right; 10% tells Kaiming from Xavier even for a 784 -> 256 layer (15% apart)
    candidates = [expected]
    if spec.initializer.startswith("kaiming"):
        other = "fan_in" if dict(spec.kwargs).get("mode") == "fan_out" else "fan_out"
        flipped = InitSpec(spec.initializer, tuple((k, v) for k, v in spec.kwargs if k != "mode") + (("mode", other),))
        candidates.append(flipped.std(fan_in, fan_out))
    if not std > 0 or abs(float(t.mean())) > 0.1 * expected \
            or not any(abs(std / e - 1.0) <= 0.1 for e in candidates):
        return False
    rows = t.reshape(t.shape[0], -1)
    return not bool((rows == rows[:1]).all())
