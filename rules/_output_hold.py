"""Holding the model's output at init where a re-init upstream would raise it: what NN103's and the
chain re-init (NN401) fixes add for the final layer they leave alone.

A re-init that makes a too-small chain gain-correct raises what the chain's last layer hands on by the
chain's shrink. Where the next layer is the model's final layer, that layer was sized for the small
signal: torchvision's RetinaNet v1 draws its four head convs and its `cls_logits` at std 0.01, with the
focal-loss prior in the bias. Kaiming on the convs alone hands `cls_logits` an input ~80x larger; its
logits' spread goes from 0.02 to 1.5 around the prior, and the first loss from 1.8 to 28.9, still no
better than as built 100 Adam steps later (benchmarks/TRIAGE.md, S). So the fix also scales the final
layer's weight down, to hold its output's spread (bias left out) where it was, where that spread is the
author's choice: where the bias sets the output at an offset far from its spread (a prior: RetinaNet's
logits at -4.6 with a spread of 0.02, every anchor at p = 0.01 by design; the focal loss's negatives grow
as exp(4.5 spread^2)), or where the loss reads it as values or per-element logits (a regression, a
binary loss, in the user's loss function or the model's own forward: the output's scale is the
targets'). Softmax logits, and an output no loss nnlint sees reads, are left to rise: logits that end
up over-confident are NN304's to find in the re-check and to scale down (a default-init MLP's hidden
layers re-initialized take its logits from 0.13 to 0.74, which is fine as it comes). A head that collapsed with the rest of the model (every layer at std 1e-3) is
not held at its collapse (COLLAPSED), which would starve the layers before it of gradient. The bias,
where a prior lives, is left as it is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from nnlint.fix.specs import LayerInit
from nnlint.initmath import measured_normal
from nnlint.rulekit import fmt, measured_gain
from nnlint.rules.objective._loss import head, loss_calls
from nnlint.trace.graph import Graph
from nnlint.trace.objective import CLASS, LOSSES
from nnlint.trace.records import OpRecord, Trace
from nnlint.trace.vocab import applies_weights, normalizes

# A held output is not held below this spread: a head collapsed with the rest of the model (every layer
# at std 1e-3) is not the author's scale, and holding it there would starve the layers before it.
COLLAPSED = 1e-3
# A re-init may raise the final layer's output this far past the held level before the fix holds it:
# within it, the first steps of training absorb the change.
HOLD_ABOVE = 3.0


@dataclass(frozen=True)
class OutputHold:
    """Scale the final layer `init.target` to keep the model's output where it was."""

    init: LayerInit
    growth: float            # how much the re-init raises the final layer's input
    before: float            # the final layer's output spread as built (bias left out)
    held: float              # the spread it is held at

    def describe(self) -> str:
        where = "where it was" if self.held == self.before else f"at {fmt(self.held)}, not at its collapse"
        return (f"then scale the final layer {self.init.target}.{self.init.param} down to std "
                f"{fmt(self.init.spec.std(1, 1))}, to hold its output's spread (bias aside) {where}: the re-init "
                f"raises that layer's input {fmt(self.growth)}x, which would take that spread from "
                f"{fmt(self.before)} to {fmt(self.before * self.growth)}")


def final_layers_fed(graph: Graph, op: OpRecord) -> tuple[OpRecord, ...]:
    """The model's final weight layers that `op`'s output feeds as their only signal (through
    activations, views, pooling and dropout; no norm, nothing else mixed in), one op per weight; () where
    any weight layer it feeds that way is not final. A detector's box head feeds two: the class scores
    and the box deltas (torchvision's Faster R-CNN `fc7` -> `cls_score`, `bbox_pred`)."""
    def single(o: OpRecord) -> bool:
        return len(graph.tensor_inputs(o)) == 1 and not normalizes(o) and not applies_weights(o)

    fed = {}
    for o in graph.walk(op, through=single):
        if applies_weights(o):
            if o.weight is None:
                return ()
            fed.setdefault(o.weight, o)     # a head shared across levels (RetinaNet's FPN): its first call
    finals = tuple(fed.values())
    if any(graph.reaches_weight_layer(f) is not None or not graph.reaches_output(f) for f in finals):
        return ()
    return finals


def output_holds(trace: Trace, graph: Graph, finals: tuple[OpRecord, ...], growth: float,
                 changed: set[str]) -> tuple[OutputHold, ...]:
    """The rescales of the final layers `finals` (final_layers_fed) whose input a re-init raises
    `growth`-fold: each judged on its own (a detector's box deltas held, its softmax class scores left to
    rise)."""
    return tuple(h for f in finals if (h := output_hold(trace, graph, f, growth, changed)) is not None)


def describe_holds(holds: tuple[OutputHold, ...]) -> str:
    return "; ".join(h.describe() for h in holds)


def output_hold(trace: Trace, graph: Graph, final: OpRecord, growth: float, changed: set[str]) -> Optional[OutputHold]:
    """The rescale of `final` (final_layers_fed) when a re-init raises its input `growth`-fold, or None:
    the fix re-initializes it anyway (a module in `changed`), its spread is not the author's choice, or
    its output stays within HOLD_ABOVE of the held level."""
    if not growth > HOLD_ABOVE or not math.isfinite(growth):
        return None
    p = trace.params.get(final.weight)
    if p is None or p.module in changed or not p.requires_grad or p.tied_to or not p.std > 0:
        return None
    measured = measured_gain(trace, final)
    if measured is None:
        return None
    gain, rms_in = measured
    before = gain * rms_in
    held = max(before, COLLAPSED)
    if not before * growth > HOLD_ABOVE * held or not _scale_is_chosen(trace, graph, final, before):
        return None
    std = p.std * held / (before * growth)
    spec = measured_normal(std, why=f"scaled to keep the output where it was: the re-init before it raises its input {fmt(growth)}x")
    return OutputHold(LayerInit(p.module, spec, p.attr), growth, before, held)


def _scale_is_chosen(trace: Trace, graph: Graph, final: OpRecord, before: float) -> bool:
    """The final layer's output spread is one the model's author chose: it sits at a prior, or a loss
    other than a softmax classification reads it (the module docstring says why)."""
    families = {call.family for call in loss_calls(trace)
                if (fed := head(trace, call)) is not None and fed.weight == final.weight}
    # and the losses a model computes in its own forward (a detector's loss dict: RetinaNet's l1_loss on
    # its box deltas, which no Objective records)
    families |= {LOSSES[o.func].family for o in graph.walk(final) if o.func in LOSSES}
    return _at_prior(final, before) or bool(families - {CLASS})


def _at_prior(final: OpRecord, spread: float) -> bool:
    """The final layer's output sits at an offset its bias sets, far from its spread: a prior (the
    focal-loss -4.6 of RetinaNet's class logits, spread 0.02)."""
    out = final.out
    return out is not None and not out.nonfinite and abs(out.mean) > max(1.0, HOLD_ABOVE * spread)
