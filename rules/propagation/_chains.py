"""What NN401 and NN402 share: picking the worst link of each main-path chain, naming the layer where
the signal starts to go wrong, and the re-init fix for the chain."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import dataclasses
import math

from nnlint.diagnostics import Fix
from nnlint.fix.specs import LayerInit
from nnlint.initmath import InitSpec, correct_init, measured_normal, second_moment_std, symmetric_std
from nnlint.rulekit import fmt, reinit_fix
from nnlint.rules._output_hold import describe_holds, final_layers_fed, output_holds
from nnlint.trace import ops as opnames, vocab
from nnlint.trace.mainpath import ChainLink
from nnlint.trace.structure import Structure


@dataclass
class Drift:
    """One chain whose signal drifted too far: the path from its start to the worst layer."""

    path: list[ChainLink]
    culprit: ChainLink            # the first layer along the path that moves the signal the wrong way
    # the chain's layers after the worst one, as long as it runs on as one line: a re-init of the path
    # alone would leave them at the init that drifted, now fed a signal at the right scale
    tail: list[ChainLink] = dataclasses.field(default_factory=list)

    @property
    def layers(self) -> list[ChainLink]:
        """Every layer a re-init of the chain changes."""
        return self.path + self.tail

    @property
    def worst(self) -> ChainLink:
        return self.path[-1]


def drifting_chains(structure: Structure, bad: Callable[[ChainLink], bool],
                    shrinking: bool) -> list[Drift]:
    """Per chain (links sharing a start), the worst link for which `bad` holds (the smallest factor
    when `shrinking`, else the largest), with its path."""
    worst: dict[int, ChainLink] = {}
    for link in structure.chains:
        if not bad(link):
            continue
        key = link.start.serial
        if key not in worst or (link.factor < worst[key].factor if shrinking else link.factor > worst[key].factor):
            worst[key] = link
    out = []
    for link in sorted(worst.values(), key=lambda l: l.op.index):
        path = link.path()
        # The layer to name: the first whose weight is mis-scaled in the drift's direction (what a
        # re-init fixes), else the first whose step clearly moves the signal that way.
        culprit = _first_misscaled(structure, path, shrinking) \
            or next((l for l in path if _against(l.step, shrinking) >= 2), None) \
            or next((l for l in path if _against(l.step, shrinking) > 1), path[0])
        out.append(Drift(path, culprit, _onward(structure, link)))
    return out


def _onward(structure: Structure, link: ChainLink) -> list[ChainLink]:
    """The links after `link` while each has exactly one child in the chain."""
    children: dict[int, list[ChainLink]] = {}
    for other in structure.chains:
        if other.parent is not None:
            children.setdefault(other.parent.op.index, []).append(other)
    tail = []
    while len(children.get(link.op.index, ())) == 1:
        link = children[link.op.index][0]
        tail.append(link)
    return tail


def _against(step: float, shrinking: bool) -> float:
    """How far a step moves the signal in the drift's direction (> 1: that way)."""
    if shrinking:
        return 1 / step if step > 0 else float("inf")
    return step


def init_ratio(structure: Structure, link: ChainLink, shrinking: bool) -> Optional[float]:
    """How far the layer's weight std is from the gain-correct range, in the drift's direction (> 1:
    mis-scaled that way): what a re-init changes. Kaiming/Xavier with fan_in (forward-preserving) and
    with fan_out (backward-preserving, torchvision's choice) are both correct."""
    p = structure.trace.params.get(link.op.weight)
    if p is None or p.fan_in <= 0 or p.fan_out <= 0 or not p.std > 0:
        return None
    nonlin, slope = structure.graph.nonlinearity_after(link.op)
    forward = symmetric_std(p.fan_in, nonlin, slope)
    backward = symmetric_std(p.fan_out, nonlin, slope)
    return min(forward, backward) / p.std if shrinking else p.std / max(forward, backward)


def _first_misscaled(structure: Structure, path: list[ChainLink], shrinking: bool,
                     tolerance: float = 1.25) -> Optional[ChainLink]:
    """The first layer whose weight std is off from the gain-correct range, in the drift's direction."""
    for link in path:
        ratio = init_ratio(structure, link, shrinking)
        if ratio is not None and ratio > tolerance:
            return link
    return None


def module_of(structure: Structure, link: ChainLink) -> str:
    p = structure.trace.params.get(link.op.weight)
    return p.module if p is not None else link.op.module


def describe_path(structure: Structure, drift: Drift, limit: int = 8) -> str:
    """`features.0 0.57, features.3 0.52, ... classifier.4 0.013`: each layer's output std."""
    items = [f"{module_of(structure, l)} {fmt(l.out_std)}" for l in drift.path]
    if len(items) > limit:
        items = items[: limit // 2] + ["..."] + items[-(limit // 2):]
    return ", ".join(items)


def start_text(drift: Drift) -> str:
    start = drift.path[0].start
    std = fmt(start.std) if start.std is not None else "?"
    return f"std {std} after {start.label}" if start.op is not None else f"std {std} at the input"


def residual_note(drift: Drift) -> str:
    growth = 1.0
    for l in drift.path:
        growth *= l.residual_growth
    if abs(growth - 1.0) < 0.05:
        return ""
    return f" (the residual stream's own change, {fmt(growth)}x, is left out: NN403 judges it)"


# A chain re-init whose named inits would leave the next layer's input more than this far from the
# chain start's scale (either way, anywhere along the chain) takes stds measured on the batch instead.
# AlexNet's max-pools and train-mode dropouts, which Kaiming's gain leaves out, turn its Kaiming chain's
# 1.4 into 10.5 (7.5x: logits at std 5, a first loss of 8 against log(10) = 2.3; benchmarks/TRIAGE.md,
# N2). Zero padding alone takes 2.4x off five Kaiming convs on 8x8 maps, the textbook init the user
# expects to read: under 3x, the named init stays.
KEPT_SCALE = 3.0


@dataclass
class ChainRepair:
    """The re-init of a drifting chain, and how the message words it."""

    fix: Fix
    how: str          # "re-init the chain with ..., starting with nn.init....(...)"


def chain_fix(structure: Structure, drift: Drift, why: str) -> ChainRepair:
    """Re-init the culprit with its gain-correct initializer, and the rest of the chain the same way
    (`params.chain`), so a fixer can re-init all of them. Where the ops between the layers (pooling,
    dropout) would carry that init's signal away from the chain start's scale, every layer gets the std
    measured to hold it (`initmath.second_moment_std`) instead."""
    trace, graph = structure.trace, structure.graph
    specs: list[InitSpec] = []
    nonlins = []
    for link in drift.layers:
        nonlin, slope = graph.nonlinearity_after(link.op)
        nonlins.append((nonlin, slope))
        specs.append(correct_init(nonlin, slope))
    measured = _measured(structure, drift.layers, specs)
    if measured is not None:
        specs = measured.specs
    chain = []
    culprit_module = module_of(structure, drift.culprit)
    culprit_at = 0
    for i, (link, spec) in enumerate(zip(drift.layers, specs)):
        p = trace.params.get(link.op.weight)
        chain.append(LayerInit(module_of(structure, link), spec, p.attr if p is not None else "weight"))
        if link is drift.culprit:
            culprit_at = i
    finals = final_layers_fed(graph, drift.layers[-1].op)
    # every final layer reads the same signal (the chain's last output), so one growth serves them all
    holds = output_holds(trace, graph, finals, _growth(structure, drift, finals[0]), {c.target for c in chain}) \
        if finals else ()
    nonlin, slope = nonlins[culprit_at]
    fix = reinit_fix(trace, culprit_module, nonlin, slope, why=why)
    fix.params = dataclasses.replace(fix.params, spec=specs[culprit_at],
                                     chain=tuple(chain) + tuple(h.init for h in holds))
    if measured is not None:
        fix.description = f"re-initialize {culprit_module}.{fix.params.param}: {fix_call(fix)} ({measured.reason})"
    others = [c.target for c in chain if c.target != culprit_module]
    if others:
        fix.description += "; then the rest of the chain the same way: " + ", ".join(others)
    if holds:
        fix.description += f"; {describe_holds(holds)}"
    how = (f"re-init the chain with stds measured on the batch ({measured.reason}), starting with {fix_call(fix)}"
           if measured is not None else
           f"re-init the chain with the gain-correct initializer, starting with {fix_call(fix)}")
    if holds:
        how += f"; {describe_holds(holds)}"
    return ChainRepair(fix, how)


def _growth(structure: Structure, drift: Drift, final) -> float:
    """How much the chain's re-init raises the input of `final`, the layer after it: the re-init holds
    the signal near the chain start's scale (within KEPT_SCALE, or exactly with measured stds), where it
    reached that layer at its measured scale. 1 when either is unknown."""
    served = structure.main_input(final)
    start = structure.rms(drift.path[0].start.serial)
    reached = structure.rms(served) if served is not None else None
    return start / reached if start and reached else 1.0


@dataclass
class _Measured:
    specs: list[InitSpec]
    reason: str


def _measured(structure: Structure, path: list[ChainLink], named: list[InitSpec]) -> Optional[_Measured]:
    """The stds that keep the mean square of each next layer's input at the chain start's, measured on
    the batch: None when the named inits already keep it within KEPT_SCALE, or the chain cannot be
    measured (it crosses a residual add, or a layer's next input is unknown)."""
    trace, graph = structure.trace, structure.graph
    if any(abs(link.residual_growth - 1.0) > 1e-6 for link in path):
        return None
    gains: list[float] = []
    between: dict[str, None] = {}
    predicted, worst = 1.0, 1.0
    for i, (link, spec) in enumerate(zip(path, named)):
        p = trace.params.get(link.op.weight)
        nxt = path[i + 1].op if i + 1 < len(path) else graph.reaches_weight_layer(link.op)
        gain = _gain_after(structure, link, nxt)
        if p is None or p.fan_in <= 0 or gain is None:
            return None
        gains.append(gain)
        if nxt is not None:
            between.update(dict.fromkeys(_ops_between(structure, link.op, nxt)))
        # the mean square the named init passes on, relative to what this layer reads (1: held)
        predicted *= gain * p.fan_in * spec.std(p.fan_in, p.fan_out) ** 2
        scale = math.sqrt(predicted)
        if abs(math.log(scale)) > abs(math.log(worst)):
            worst = scale
    if 1 / KEPT_SCALE <= worst <= KEPT_SCALE:
        return None
    why = "std measured on the batch, so the next layer's input keeps the chain's scale through the ops between"
    specs = [measured_normal(second_moment_std(trace.params[l.op.weight].fan_in, g), why=why)
             for l, g in zip(path, gains)]
    family = named[0].family
    name = family if all(s.family == family for s in named) else "the gain-correct init"
    what = _and_list(list(between)) or "ops"
    return _Measured(specs, f"{name}'s gain leaves out the {what} between the layers: "
                            f"it would {'grow' if worst > 1 else 'shrink'} the signal {fmt(max(worst, 1 / worst))}x")


def _ops_between(structure: Structure, layer, nxt) -> list[str]:
    """The ops on the main path from `layer`'s output to `nxt`'s input, other than activations and
    reshapes, by their torch names (`max_pool2d`, `dropout`), in execution order."""
    names: list[str] = []
    serial = structure.main_input(nxt)
    for _ in range(64):
        prod = structure.graph.producer.get(serial) if serial is not None else None
        if prod is None or prod is layer:
            break
        if not vocab.is_activation(prod) and prod.kind not in opnames.PASSTHROUGH and prod.func not in opnames.PASSTHROUGH:
            names.append(prod.func)
        serial = structure.main_input(prod)
    return names[::-1]


def _and_list(items: list[str]) -> str:
    """`max_pool2d, adaptive_avg_pool2d and dropout`."""
    if len(items) < 2:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _gain_after(structure: Structure, link: ChainLink, nxt) -> Optional[float]:
    """What the layer and the ops after it do to the signal's mean square beyond `fan_in * std(W)^2`:
    the next weight layer's input over this layer's, per unit of `fan_in * std(W)^2`, measured on the
    batch. The ops between (1/2 for a ReLU alone; more after a max-pool or a dropout), and the layer's
    own losses to zero padding, which the fan formulas leave out. The bias's share of the output is
    taken out where it is small; where it dominates (a collapsed default-init chain), the layer is
    taken at its formula."""
    trace = structure.trace
    out, p = link.op.out, trace.params.get(link.op.weight)
    if nxt is None or out is None or out.nonfinite or p is None or not p.std > 0:
        return None
    layer_in, next_in = structure.main_input(link.op), structure.main_input(nxt)
    rms_in = structure.rms(layer_in) if layer_in is not None else None
    rms_next = structure.rms(next_in) if next_in is not None else None
    out_square = out.std * out.std + out.mean * out.mean
    if not rms_in or not rms_next or not out_square > 0:
        return None
    bias = trace.params.get(f"{p.module}.bias")
    bias_square = bias.std * bias.std + bias.mean * bias.mean if bias is not None else 0.0
    weight_square = out_square - bias_square
    formula = p.fan_in * p.std * p.std * rms_in * rms_in
    own = min(max(weight_square / formula, 0.25), 1.5) if weight_square > 0.5 * out_square else 1.0
    return own * rms_next * rms_next / out_square


def fix_call(fix: Fix) -> str:
    """The culprit's re-init as a torch call, for the message."""
    return fix.params.call(fix.target)
