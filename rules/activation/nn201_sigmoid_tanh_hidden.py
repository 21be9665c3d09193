from __future__ import annotations

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import call_site, describe_op, location_for, swap_ladder
from nnlint.trace import ops as opnames
from nnlint.trace.graph import Graph

from nnlint.rules.activation._saturation import bounded_on_purpose, reported_fraction


class SigmoidTanhHidden(Rule):
    """## What it does
    Finds sigmoid or tanh used as a hidden-layer nonlinearity: its output feeds another weight layer
    (Linear, Conv, RNN) directly, rather than gating a product or being the model's output.

    ## Why is this bad?
    Their derivative is at most 1 (tanh) or 0.25 (sigmoid) and falls towards 0 away from the origin,
    so gradients shrink layer by layer; sigmoid's output is also not zero-centered. ReLU-family
    activations train deep networks faster and more reliably.

    Not reported: sigmoid/tanh as a gate (`x * torch.sigmoid(g)`, SE blocks, GLU, LSTM/GRU gates), as the
    state or candidate a sigmoid gate multiplies (a hand-written GRU: RAFT's ConvGRU, whose hidden state
    starts as `tanh(context)`, benchmarks/TRIAGE.md T), inside
    an activation formula that multiplies its input (GPT-2's tanh GELU, hand-written Swish or Mish), and
    at the output. Info on its own; raised to warning when NN202 finds the same activation saturated.

    ## Options
    None.

    ## Fix safety
    Unsafe: swapping the activation changes the architecture (and what a trained checkpoint means). The
    fix swaps in ReLU with a Kaiming re-init of the layers that feed it, or LeakyReLU(0.1) where a
    layer that feeds it is under 16 units wide (a narrow ReLU layer has most of its units dead at
    init); where a ReLU still leaves units dead (the fixer judges the model as a whole after the
    swap), it escalates to LeakyReLU(0.1) with the matching Kaiming init.
    """

    code = "NN201"
    name = "sigmoid-tanh-hidden"
    severity = "info"
    summary = "sigmoid/tanh used as a hidden-layer nonlinearity (not a gate or output)"
    reads = frozenset({"forward"})
    cause = ("activation", "saturated")
    fixable = "unsafe"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.Sigmoid(), nn.Linear(64, 10))
            batch = torch.randn(64, 32)
            """, module='1'),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            nn.init.kaiming_normal_(model[0].weight, nonlinearity="relu")
            batch = torch.randn(64, 32)
            """),
    )

    def check(self, trace):
        graph = Graph.of(trace)
        saturated = _saturated_sites(trace)
        reported: set[tuple[str, int]] = set()
        for op in graph.ops:
            if op.kind not in opnames.SATURATING:
                continue
            consumer = graph.feeds_weight_layer(op)
            if consumer is None or bounded_on_purpose(graph, op):
                continue
            key = (op.module, op.location.line if op.location else -1) if call_site(trace, op).functional else (op.module, -1)
            if key in reported:
                continue
            reported.add(key)
            sat = (op.module, op.index) in saturated
            ladder = swap_ladder(trace, graph, op)
            yield self.diagnostic(
                op.module,
                f"{describe_op(trace, op)} is a hidden-layer nonlinearity (it feeds {consumer.module or consumer.func}): "
                "gradients shrink through it; use nn.ReLU (or GELU) with Kaiming init"
                + (" (it is also saturated, see NN202)" if sat else ""),
                severity="warning" if sat else None,
                location=location_for(trace, op.module, op),
                evidence={"activation": op.kind, "feeds": consumer.module, "saturated": sat},
                fix=ladder[0],
                escalation=ladder[1:],
            )


def _saturated_sites(trace) -> set[tuple[str, int]]:
    """The activations NN202 reports as saturated (its default thresholds)."""
    graph = Graph.of(trace)
    return {(op.module, op.index) for op in trace.ops_in("train")
            if op.kind in opnames.SATURATING and reported_fraction(trace, graph, op) is not None}
