"""What a fix does to parameters, as data both fixers read: `ParamInit(param, InitSpec)`.

A re-init, a zero-init, a bias fill and a final-layer rescale all come down to "call this
`torch.nn.init` function on this parameter". The runtime fixer calls it on the tensor; the source fixer
writes the same call into the user's file. Keeping the decision here, once, is what makes the two agree.

No torch import at module level: the rendering half is used by the source fixer's tests without it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from nnlint.diagnostics import Fix

# torch.nn.init.calculate_gain for the names a rule may put in `nonlinearity`.
_GAIN = {"linear": 1.0, "identity": 1.0, "sigmoid": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0,
         "tanh": 5.0 / 3, "relu": math.sqrt(2.0), "selu": 3.0 / 4}

# Which param-init wins when several fixes touch one parameter: the re-init that comes with an
# activation swap matches the new activation, a zero-init is a deliberate choice, a plain re-init last.
PRIORITY = {"swap_activation": 3, "zero_init": 2, "scale_final_layer": 2, "bias_fill": 1, "reinit": 1}


@dataclass(frozen=True)
class InitSpec:
    """A `torch.nn.init` call: its function name and keyword arguments, in the order they are written.

    `gain_of` names the nonlinearity whose `calculate_gain` is the xavier gain, so that the source reads
    `gain=nn.init.calculate_gain("tanh")` rather than 1.6666.
    """

    initializer: str                                  # "kaiming_normal_", "xavier_normal_", "zeros_", ...
    kwargs: tuple[tuple[str, Any], ...] = ()
    gain_of: Optional[str] = None
    why: str = field(default="", compare=False)       # a few words for the source comment

    def runtime_kwargs(self) -> dict[str, Any]:
        out = dict(self.kwargs)
        if self.gain_of is not None:
            out["gain"] = _GAIN.get(self.gain_of, 1.0)
        return out


@dataclass(frozen=True)
class ParamInit:
    """Initialize the parameter `param` (qualified name, "fc1.weight") as `spec` says."""

    param: str
    spec: InitSpec
    kind: str = "reinit"          # the Fix kind it came from (for priority)
    # a companion init (the zero bias of a re-init): skipped when the tensor is already in PyTorch's
    # default range, so that a fix does not rewrite what is not wrong
    optional: bool = field(default=False, compare=False)

    @property
    def module(self) -> str:
        return self.param.rpartition(".")[0]

    def describe(self) -> str:
        """`nn.init.kaiming_normal_(fc1.weight, nonlinearity="relu")`."""
        return render_call(self.spec, self.param)

    @property
    def attr(self) -> str:
        return self.param.rpartition(".")[2]


def join(module: str, attr: str) -> str:
    return f"{module}.{attr}" if module else attr


def spec_from_params(params: dict[str, Any], why: str = "") -> InitSpec:
    """The InitSpec a rule's re-init params describe (initializer, nonlinearity, a, mode, gain)."""
    initializer = params.get("initializer") or "kaiming_normal_"
    nonlinearity = params.get("nonlinearity") or "relu"
    if initializer.startswith("kaiming"):
        kwargs: list[tuple[str, Any]] = []
        if nonlinearity == "leaky_relu":
            a = params.get("a")
            kwargs.append(("a", 0.01 if a is None else float(a)))
        mode = params.get("mode") or "fan_in"
        if mode != "fan_in":
            kwargs.append(("mode", mode))
        kwargs.append(("nonlinearity", "leaky_relu" if nonlinearity == "leaky_relu" else "relu"))
        return InitSpec(initializer, tuple(kwargs), why=why or f"Kaiming init for the {nonlinearity} that follows")
    if initializer.startswith("xavier"):
        gain = params.get("gain")
        named = nonlinearity if nonlinearity in _GAIN and nonlinearity not in ("linear", "identity") else None
        if named is not None and (gain is None or math.isclose(float(gain), _GAIN[named], rel_tol=1e-6)) \
                and _GAIN[named] != 1.0:
            return InitSpec(initializer, (), gain_of=named, why=why or f"Xavier init for the {nonlinearity} that follows")
        kwargs = () if gain is None or float(gain) == 1.0 else (("gain", float(gain)),)
        return InitSpec(initializer, kwargs, why=why or f"Xavier init for the {nonlinearity} that follows")
    if initializer in ("zeros_", "ones_"):
        return InitSpec(initializer, (), why=why)
    if initializer == "constant_":
        return InitSpec(initializer, (("val", float(params.get("val", 0.0))),), why=why)
    if initializer == "normal_":
        return InitSpec(initializer, (("std", float(params.get("std", 0.01))),), why=why)
    return InitSpec(initializer, tuple((k, params[k]) for k in ("gain",) if k in params), why=why)


ZERO_BIAS = "zero bias for the re-initialized layer"


def _bias_inits(module: str, params: dict[str, Any], kind: str, why: str) -> list[ParamInit]:
    bias = params.get("bias")
    if isinstance(bias, (int, float)) and not isinstance(bias, bool):
        value = float(bias)
        spec = InitSpec("zeros_", why=ZERO_BIAS) if value == 0.0 else \
            InitSpec("constant_", (("val", value),), why="a small positive bias keeps the ReLU units active")
        return [ParamInit(join(module, "bias"), spec, kind)]
    if params.get("zero_bias"):
        return [ParamInit(join(module, "bias"), InitSpec("zeros_", why=ZERO_BIAS), kind, optional=True)]
    return []


# ---------------------------------------------------------------------------------------------
# Fix kinds that come down to parameter inits


def reinit_inits(fix: Fix, std_of: Callable[[str], Optional[float]]) -> list[ParamInit]:
    """A re-init: the target's weight (and bias), plus every layer of `params["chain"]` (NN401/NN402)."""
    p = fix.params
    why = _why(fix)
    out = [ParamInit(join(fix.target, p.get("param", "weight")), spec_from_params(p, why=why), "reinit")]
    out += _bias_inits(fix.target, p, "reinit", why)
    for link in p.get("chain") or []:
        target = link.get("target")
        if target is None or target == fix.target:
            continue
        out.append(ParamInit(join(target, link.get("param", "weight")), spec_from_params(link, why=why), "reinit"))
    return out


def zero_init_inits(fix: Fix, std_of: Callable[[str], Optional[float]]) -> list[ParamInit]:
    """Zero-init of the last layer (or last norm weight) of residual branches: one target or several."""
    p = fix.params
    targets = p.get("targets") or [join(fix.target, p.get("param", "weight"))]
    why = p.get("why") or "each residual block starts as the identity"
    return [ParamInit(t, InitSpec("zeros_", why=why), "zero_init") for t in targets]


def bias_fill_inits(fix: Fix, std_of: Callable[[str], Optional[float]]) -> list[ParamInit]:
    value = float(fix.params.get("value", fix.params.get("bias", 0.01)))
    return [ParamInit(join(fix.target, fix.params.get("param", "bias")),
                      InitSpec("constant_", (("val", value),), why="a small positive bias keeps the ReLU units alive"),
                      "bias_fill")]


def scale_final_layer_inits(fix: Fix, std_of: Callable[[str], Optional[float]]) -> list[ParamInit]:
    """Scale the output layer down: redraw its weight with `factor` times its current std (an explicit
    init reads better in source than an in-place multiply, and is the same distribution scale), and
    zero its bias (the class log-priors are zero for balanced classes)."""
    p = fix.params
    weight = join(fix.target, p.get("param", "weight"))
    std = std_of(weight)
    factor = float(p.get("factor", 0.1))
    if std is None or not std > 0:
        spec = InitSpec("zeros_", why="an output layer that starts unconfident")
    else:
        spec = InitSpec("normal_", (("std", float(f"{factor * std:.3g}")),),
                        why=f"{factor:g}x the current std: the output layer starts unconfident")
    return [ParamInit(weight, spec, "scale_final_layer"),
            ParamInit(join(fix.target, "bias"), InitSpec("zeros_", why="uniform class scores at init"), "scale_final_layer")]


def swap_reinit_inits(fix: Fix, std_of: Callable[[str], Optional[float]]) -> list[ParamInit]:
    """The re-init that comes with an activation swap: the layer feeding the new activation."""
    reinits = fix.params.get("reinit") or []
    if isinstance(reinits, dict):
        reinits = [reinits]
    why = f"Kaiming init for the new {fix.params.get('to', 'relu')}"
    out = []
    for r in reinits:
        if r.get("target") is None:
            continue
        out.append(ParamInit(join(r["target"], r.get("param", "weight")), spec_from_params(r, why=why), "swap_activation"))
        out += _bias_inits(r["target"], r, "swap_activation", why)
    return out


PARAM_INITS: dict[str, Callable[[Fix, Callable[[str], Optional[float]]], list[ParamInit]]] = {
    "reinit": reinit_inits,
    "zero_init": zero_init_inits,
    "bias_fill": bias_fill_inits,
    "scale_final_layer": scale_final_layer_inits,
    "swap_activation": swap_reinit_inits,
}


def _why(fix: Fix) -> str:
    nonlinearity = fix.params.get("nonlinearity")
    if not nonlinearity:
        return ""
    initializer = str(fix.params.get("initializer", ""))
    if initializer.startswith("kaiming"):
        return f"Kaiming init for the {nonlinearity} that follows"
    if initializer == "normal_":   # NN202's measured std: Xavier would still leave the activation saturated
        return f"std measured on the batch, to keep the {nonlinearity} that follows out of its flat region"
    return f"Xavier init for the {nonlinearity} that follows"


def resolve(inits: list[ParamInit]) -> dict[str, ParamInit]:
    """One init per parameter: the highest-priority one; among equals an explicit one over an optional
    companion (NN203's 0.01 bias over a re-init's "zero bias if it is off"), else the first."""
    chosen: dict[str, ParamInit] = {}

    def rank(init: ParamInit) -> tuple[int, int]:
        return (PRIORITY.get(init.kind, 0), 0 if init.optional else 1)

    for init in inits:
        current = chosen.get(init.param)
        if current is None or rank(init) > rank(current):
            chosen[init.param] = init
    return chosen


# ---------------------------------------------------------------------------------------------
# Source rendering


def _literal(value: Any, quote: str) -> str:
    if isinstance(value, str):
        return f"{quote}{value}{quote}"
    if isinstance(value, float):
        return repr(float(f"{value:.6g}"))
    return repr(value)


def render_call(spec: InitSpec, target: str, *, nn: str = "nn", quote: str = '"') -> str:
    """`nn.init.kaiming_normal_(self.fc1.weight, nonlinearity="relu")`."""
    args = [target]
    for key, value in spec.kwargs:
        if key == "val" and spec.initializer == "constant_":
            args.append(_literal(value, quote))
        else:
            args.append(f"{key}={_literal(value, quote)}")
    if spec.gain_of is not None:
        args.append(f"gain={nn}.init.calculate_gain({quote}{spec.gain_of}{quote})")
    return f"{nn}.init.{spec.initializer}({', '.join(args)})"


def join_detail(what: str, inits: list[ParamInit], kept: Sequence[str] = ()) -> str:
    """An applier's own words plus the inits that won for its parameters, for the fix summary."""
    parts = [what] if what else []
    parts += [init.describe() for init in inits]
    if kept:
        parts.append(f"{', '.join(kept)} already right, left as is")
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
    expected = expected_std(t, spec)
    if expected is None or t.numel() < 2 or t.dim() < 2:
        return False
    std = float(t.std())
    # Kaiming with fan_in (forward-preserving) and with fan_out (backward-preserving, torchvision's
    # choice) are both right; 10% tells Kaiming from Xavier even for a 784 -> 256 layer (15% apart)
    candidates = [expected]
    if spec.initializer.startswith("kaiming"):
        other = "fan_in" if dict(spec.kwargs).get("mode") == "fan_out" else "fan_out"
        candidates.append(expected_std(t, InitSpec(spec.initializer, tuple(
            (k, v) for k, v in spec.kwargs if k != "mode") + (("mode", other),))))
    if not std > 0 or abs(float(t.mean())) > 0.1 * expected \
            or not any(abs(std / e - 1.0) <= 0.1 for e in candidates):
        return False
    rows = t.reshape(t.shape[0], -1)
    return not bool((rows == rows[:1]).all())


def expected_std(t, spec: InitSpec) -> Optional[float]:
    """The std `spec` draws for a tensor of this shape (torch.nn.init's formulas)."""
    if t.dim() < 2:
        return None
    receptive = t[0][0].numel()
    fan_in, fan_out = t.shape[1] * receptive, t.shape[0] * receptive
    kw = spec.runtime_kwargs()
    if spec.initializer.startswith("kaiming"):
        nonlinearity = kw.get("nonlinearity", "leaky_relu")
        a = float(kw.get("a", 0.0))
        gain = math.sqrt(2.0 / (1 + a * a)) if nonlinearity == "leaky_relu" else _GAIN.get(nonlinearity, 1.0)
        fan = fan_out if kw.get("mode") == "fan_out" else fan_in
        return gain / math.sqrt(max(fan, 1))
    if spec.initializer.startswith("xavier"):
        return float(kw.get("gain", 1.0)) * math.sqrt(2.0 / max(fan_in + fan_out, 1))
    if spec.initializer == "normal_":
        return float(kw.get("std", 1.0))
    return None
