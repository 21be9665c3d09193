"""Init math, once: for each nonlinearity, the initializer that is correct for it, the std it draws for
a weight's fans, and the `torch.nn.init` call that says so in code.

Every rule that names an init (NN101, NN103, NN202, NN401 ...), the runtime fixer that draws it and the
source fixer that writes it ask this module, so what a message says is what the fix draws, to the digit.
No torch here: the gains are `torch.nn.init.calculate_gain`'s, written out, and `InitSpec.std` is
`torch.nn.init`'s own formula for each initializer.

Which init is correct for which nonlinearity:
- ReLU and the ReLU-like (ReLU6, GELU, SiLU, Mish, ELU, CELU, Hardswish, Softplus): Kaiming with
  ReLU's gain sqrt(2) (He et al. 2015). Their second moment through the activation is within 25% of
  ReLU's, and `calculate_gain` has no entry of its own for them.
- LeakyReLU, PReLU, RReLU: Kaiming with the slope, gain sqrt(2 / (1 + a^2)); PReLU's slope is its
  learned weight (0.25 at PyTorch's init), RReLU's the mean of its range.
- SELU: LeCun normal, std 1/sqrt(fan_in), as the SELU paper prescribes (Klambauer et al. 2017); torch's
  documentation asks for `kaiming_normal_(w, nonlinearity="linear")` for it, which is that.
- tanh: Xavier with gain 5/3; sigmoid and no nonlinearity (and the bounded, near-linear-at-0
  Hardtanh, Hardsigmoid, Softsign, softmax): Xavier with gain 1 (Glorot & Bengio 2010).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

KAIMING, XAVIER, LECUN = "Kaiming", "Xavier", "LeCun"

RELU_LIKE = frozenset({"relu", "relu6", "gelu", "silu", "mish", "elu", "celu", "hardswish", "softplus"})
LEAKY = frozenset({"leaky_relu", "prelu", "rrelu"})
# The slope a leaky nonlinearity has when the trace does not say: LeakyReLU's default, PReLU's initial
# weight, RReLU's mean of [1/8, 1/3].
DEFAULT_SLOPE = {"leaky_relu": 0.01, "prelu": 0.25, "rrelu": (1 / 8 + 1 / 3) / 2}
# torch.nn.init.calculate_gain for the nonlinearities a Xavier gain is written for.
XAVIER_GAIN = {"tanh": 5.0 / 3}


@dataclass(frozen=True)
class InitSpec:
    """A `torch.nn.init` call: its function and keyword arguments, in the order they are written.

    `gain_of` names the nonlinearity whose `calculate_gain` is a Xavier gain, so that the code reads
    `gain=nn.init.calculate_gain("tanh")` rather than 1.6666.
    """

    initializer: str                                  # "kaiming_normal_", "xavier_normal_", "zeros_", ...
    kwargs: tuple[tuple[str, Any], ...] = ()
    gain_of: Optional[str] = None
    why: str = field(default="", compare=False)       # a few words for the source comment
    # the std was measured on the batch for what runs around the layer (measured_normal): among fixes of
    # equal priority it wins over a named init, which only knows the layer and its activation
    measured: bool = False

    @property
    def family(self) -> str:
        """What the init is called: Kaiming, Xavier, LeCun (Kaiming with a linear gain), or its function."""
        if self.initializer.startswith("kaiming"):
            return LECUN if dict(self.kwargs).get("nonlinearity") == "linear" else KAIMING
        if self.initializer.startswith("xavier"):
            return XAVIER
        return self.initializer.rstrip("_")

    def runtime_kwargs(self) -> dict[str, Any]:
        out = dict(self.kwargs)
        if self.gain_of is not None:
            out["gain"] = XAVIER_GAIN.get(self.gain_of, 1.0)
        return out

    def std(self, fan_in: int, fan_out: int) -> Optional[float]:
        """The std this call draws for a weight with these fans (torch.nn.init's formulas); None for
        the inits that set values (zeros_, constant_)."""
        kw = self.runtime_kwargs()
        if self.initializer.startswith("kaiming"):
            nonlinearity = kw.get("nonlinearity", "leaky_relu")
            fan = fan_out if kw.get("mode") == "fan_out" else fan_in
            return kaiming_gain(nonlinearity, kw.get("a")) / math.sqrt(max(fan, 1))
        if self.initializer.startswith("xavier"):
            return float(kw.get("gain", 1.0)) * math.sqrt(2.0 / max(fan_in + fan_out, 1))
        if self.initializer == "normal_":
            return float(kw.get("std", 1.0))
        return None

    def render(self, target: str, *, nn: str = "nn", quote: str = '"') -> str:
        """`nn.init.kaiming_normal_(self.fc1.weight, nonlinearity="relu")`."""
        args = [target]
        for key, value in self.kwargs:
            if key == "val" and self.initializer == "constant_":
                args.append(_literal(value, quote))
            else:
                args.append(f"{key}={_literal(value, quote)}")
        if self.gain_of is not None:
            args.append(f"gain={nn}.init.calculate_gain({quote}{self.gain_of}{quote})")
        return f"{nn}.init.{self.initializer}({', '.join(args)})"


def _literal(value: Any, quote: str) -> str:
    if isinstance(value, str):
        return f"{quote}{value}{quote}"
    if isinstance(value, float):
        return repr(float(f"{value:.6g}"))
    return repr(value)


def kaiming_gain(nonlinearity: str, a: Optional[float] = None) -> float:
    """torch.nn.init.calculate_gain as kaiming_normal_ uses it (its default nonlinearity is leaky_relu
    with a=0, i.e. ReLU's sqrt(2))."""
    if nonlinearity == "leaky_relu":
        slope = 0.0 if a is None else float(a)
        return math.sqrt(2.0 / (1 + slope * slope))
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "selu":
        return 3.0 / 4
    return 1.0   # linear, conv, sigmoid


def slope_of(nonlinearity: str, slope: Optional[float] = None) -> Optional[float]:
    """The negative slope of a leaky nonlinearity (the measured one, else its default); None otherwise."""
    if nonlinearity not in LEAKY:
        return None
    return DEFAULT_SLOPE[nonlinearity] if slope is None else float(slope)


def correct_init(nonlinearity: str, slope: Optional[float] = None) -> InitSpec:
    """The gain-correct initializer for a weight layer followed by `nonlinearity` (fan_in mode: it keeps
    the forward signal's scale)."""
    if nonlinearity in RELU_LIKE:
        return InitSpec("kaiming_normal_", (("nonlinearity", "relu"),),
                        why=f"Kaiming init for the {nonlinearity} that follows")
    if nonlinearity in LEAKY:
        a = float(f"{slope_of(nonlinearity, slope):.4g}")
        return InitSpec("kaiming_normal_", (("a", a), ("nonlinearity", "leaky_relu")),
                        why=f"Kaiming init for the {nonlinearity} that follows")
    if nonlinearity == "selu":
        return InitSpec("kaiming_normal_", (("nonlinearity", "linear"),),
                        why="LeCun normal init for the selu that follows")
    if nonlinearity in XAVIER_GAIN:
        return InitSpec("xavier_normal_", (), gain_of=nonlinearity,
                        why=f"Xavier init for the {nonlinearity} that follows")
    shown = nonlinearity if nonlinearity not in ("identity", "linear") else "linear output"
    return InitSpec("xavier_normal_", (), why=f"Xavier init for the {shown} that follows")


def expected_std(fan_in: int, fan_out: int, nonlinearity: str, slope: Optional[float] = None) -> float:
    """The std the gain-correct initializer draws for these fans."""
    return correct_init(nonlinearity, slope).std(fan_in, fan_out)


def symmetric_std(fan: int, nonlinearity: str, slope: Optional[float] = None) -> float:
    """The gain-correct std with both fans equal to `fan`: for fan_in the forward-preserving value, for
    fan_out the backward-preserving one (Kaiming's mode="fan_out", torchvision's choice). Both are
    correct, so a rule accepts any std between them."""
    return expected_std(fan, fan, nonlinearity, slope)


def measured_normal(std: float, why: str) -> InitSpec:
    """`normal_(std=...)` with a std measured on the batch (3 significant figures, so the code reads
    `std=0.0231`): where no named init's gain fits what follows the layer."""
    return InitSpec("normal_", (("std", float(f"{std:.3g}")),), why=why, measured=True)


def second_moment_std(fan_in: int, gain_after: float) -> float:
    """The weight std that gives the next layer an input of the same mean square as this layer's, where
    the ops between them (activation, pooling, dropout) turn an output of mean square m into
    `gain_after * m`: Var(W x) = fan_in * std^2 * E[x^2] for zero-mean independent weights, so
    std = 1 / sqrt(gain_after * fan_in). Kaiming's sqrt(2 / fan_in) is this with a ReLU alone
    (gain_after 1/2); a max-pool or a train-mode dropout after the ReLU raises gain_after."""
    return 1.0 / math.sqrt(gain_after * fan_in)


def is_weight_matrix(shape: tuple[int, ...]) -> bool:
    """Two dims or more, and more than one value per output row: a per-channel gain or bias stored with
    singleton dims (torchvision ConvNeXt's `layer_scale`, (C, 1, 1)) is a vector whatever its ndim."""
    if len(shape) < 2:
        return False
    n = 1
    for s in shape:
        n *= s
    return n != shape[0]


# Under this fraction of 1/sqrt(fan_in) (LeCun's scale, the smallest gain-correct std), a weight starts
# at about zero on purpose: BEiT's head (trunc_normal 0.02 x head_init_scale 1e-3), timm ViT's cls_token
# (std 1e-6). What its first steps do is overwrite that zero, whatever the learning rate.
NEAR_ZERO = 1e-2


# The bias a fix gives a layer whose ReLU units must start active: a dead ReLU's layer (NN203), or a
# zero-initialized last layer of a residual branch that ends in a ReLU (NN403), where every unit then
# outputs relu(0.01) > 0 and passes gradient (relu(0) would pass none).
ACTIVE_BIAS = 0.01


def starts_near_zero(std: float, fan_in: int) -> bool:
    return fan_in > 0 and std < NEAR_ZERO / math.sqrt(fan_in)


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight, as torch.nn.init._calculate_fan_in_and_fan_out computes them."""
    if len(shape) < 2:
        n = shape[0] if shape else 1
        return n, n
    receptive = 1
    for s in shape[2:]:
        receptive *= s
    return shape[1] * receptive, shape[0] * receptive


# The bounded nonlinearities whose output std does not scale with their input's: a larger pre-activation
# std saturates them (tanh's output std tends to 1, sigmoid's to 0.5) instead of passing on.
BOUNDED = {"tanh": math.tanh, "sigmoid": lambda z: 0.5 * (1.0 + math.tanh(0.5 * z))}


def bounded_output_std(nonlinearity: str, z_std: float) -> Optional[float]:
    """The std of f(z) for z ~ N(0, z_std^2), for a bounded nonlinearity (tanh, sigmoid), by quadrature
    over +-8 std (a 401-point Simpson rule: 1e-6 accurate, no NumPy); None for the others, whose output
    std scales with their input's (ReLU-family exactly, the rest to first order)."""
    f = BOUNDED.get(nonlinearity)
    if f is None:
        return None
    if not z_std > 0:
        return 0.0
    n, lo = 400, -8.0
    h = 16.0 / n
    m1 = m2 = 0.0
    for i in range(n + 1):
        u = lo + i * h
        w = (1 if i in (0, n) else 4 if i % 2 else 2) * math.exp(-0.5 * u * u)
        y = f(z_std * u)
        m1 += w * y
        m2 += w * y * y
    norm = h / 3 / math.sqrt(2 * math.pi)
    m1, m2 = m1 * norm, m2 * norm
    return math.sqrt(max(m2 - m1 * m1, 0.0))
