from __future__ import annotations

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import is_all_off_relu, is_intentional_zero_layer, ops_using, reinit_fix
from nnlint.trace.graph import Graph


class ZeroWeights(Rule):
    """## What it does
    Finds trainable weights (Linear, ConvNd, Embedding, attention projections: any parameter of two or
    more dimensions used as a layer's weight) that are entirely zero, in a hidden layer.

    ## Why is this bad?
    Every output unit of an all-zero layer computes the same value (its bias) whatever the input, and the
    gradient that reaches the layers before it is exactly zero. Before a ReLU with a zero (or negative)
    bias the units are dead for good: they pass no gradient, so neither this layer nor any before it
    ever learns. That is the textbook "initialize everything to zero" mistake, and it leaves a classifier
    predicting one class. Without a dead ReLU the next layer's differing weights break the tie within
    the first steps, but training starts without signal, and a stack of such layers trains slowly.

    Zero-init is intentional, and not reported, for the last layer of a residual branch (each block
    then starts as the identity: Fixup, SkipInit, `zero_init_residual`), for the model's final layer, and
    for gate or modulation projections whose output multiplies (adaLN-Zero).

    ## Options
    None.

    ## Fix safety
    Safe: re-initializes the weight with the gain-correct initializer for the nonlinearity that follows
    the layer; the architecture is unchanged.
    """

    code = "NN101"
    name = "zero-weights"
    severity = "error"
    summary = "a hidden layer's trainable weight is entirely zero: its units start identical, and dead before a ReLU"
    reads = frozenset({"forward"})
    cause = ("followed_by",)
    fixable = "safe"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
            nn.init.zeros_(model[2].weight)
            batch = torch.randn(64, 32)
            """, module='2'),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
            nn.init.kaiming_normal_(model[2].weight, nonlinearity="relu")
            batch = torch.randn(64, 32)
            """),
    )

    def check(self, trace):
        graph = Graph.of(trace)
        for name, p in trace.params.items():
            if not p.all_zero or not p.requires_grad or len(p.shape) < 2 or p.tied_to:
                continue
            uses = ops_using(graph, name)
            if not uses or all(is_intentional_zero_layer(graph, op) for op in uses):
                continue
            nonlin, slope = graph.nonlinearity_after(uses[0])
            yield self.diagnostic(
                p.module,
                f"{p.attr} is all zeros: " + _consequence(graph, uses[0], p.shape[0], nonlin),
                location=trace.location_of(p.module),
                evidence={"param": name, "shape": list(p.shape), "std": 0.0, "followed_by": nonlin},
                fix=reinit_fix(trace, p.module, nonlin, slope),
            )


def _consequence(graph: Graph, use, units: int, nonlin: str) -> str:
    """What the zeros do, said as it is on this model. Before a ReLU whose units are then all off, the
    layer is dead for good. Otherwise the units only start identical: the next layer's rows differ, so
    their gradients differ and the first steps break the tie, but until then the layers before get no
    gradient (and a whole stack of such layers trains slowly, if at all)."""
    has_inputs_before = graph.first(use, lambda o: o.weight is not None, up=True) is not None
    before = "; no gradient reaches the layers before it" if has_inputs_before else ""
    dead = graph.first(use, is_all_off_relu, through=lambda o: o.weight is None, limit=8)
    if dead is not None:
        return (f"every one of its {units} units outputs its bias, and the {nonlin} after it is off for all of "
                f"them: dead, they pass no gradient, so it never learns{before}")
    return f"its {units} units start identical (each outputs its bias){before} until it moves"

