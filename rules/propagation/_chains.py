"""What NN401 and NN402 share: picking the worst link of each main-path chain, naming the layer where
the signal starts to go wrong, and the re-init fix for the chain."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import dataclasses

from nnlint.diagnostics import Fix
from nnlint.fix.specs import LayerInit
from nnlint.initmath import correct_init, symmetric_std
from nnlint.rulekit import fmt, reinit_fix
from nnlint.trace.mainpath import ChainLink
from nnlint.trace.structure import Structure


@dataclass
class Drift:
    """One chain whose signal drifted too far: the path from its start to the worst layer."""

    path: list[ChainLink]
    culprit: ChainLink            # the first layer along the path that moves the signal the wrong way

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
        out.append(Drift(path, culprit))
    return out


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


def chain_fix(structure: Structure, drift: Drift, why: str) -> Fix:
    """Re-init the culprit with its gain-correct initializer, and the rest of the chain the same way
    (`params.chain`), so a fixer can re-init all of them."""
    trace, graph = structure.trace, structure.graph
    chain = []
    culprit_module = module_of(structure, drift.culprit)
    culprit_nonlin: tuple[str, Optional[float]] = ("linear", None)
    for link in drift.path:
        module = module_of(structure, link)
        nonlin, slope = graph.nonlinearity_after(link.op)
        p = trace.params.get(link.op.weight)
        chain.append(LayerInit(module, correct_init(nonlin, slope), p.attr if p is not None else "weight"))
        if link is drift.culprit:
            culprit_nonlin = (nonlin, slope)
    fix = reinit_fix(trace, culprit_module, culprit_nonlin[0], culprit_nonlin[1], why=why)
    fix.params = dataclasses.replace(fix.params, chain=tuple(chain))
    others = [c.target for c in chain if c.target != culprit_module]
    if others:
        fix.description += "; then the rest of the chain the same way: " + ", ".join(others)
    return fix


def fix_call(fix: Fix) -> str:
    """The culprit's re-init as a torch call, for the message."""
    return fix.params.call(fix.target)
