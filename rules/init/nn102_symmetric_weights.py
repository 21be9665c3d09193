from __future__ import annotations

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import fmt, layers_weighted_by, reinit_fix
from nnlint.trace.graph import Graph


class SymmetricWeights(Rule):
    """## What it does
    Finds hidden layers whose output units all have identical weights: a constant fill
    (`nn.init.constant_(w, 0.05)`, `torch.ones`), or rows copied from one another.

    ## Why is this bad?
    Identical units compute identical outputs and, as long as the layers around them are symmetric too,
    receive identical gradients: the symmetry is never broken and the layer behaves like one unit.
    Random initialization exists to break it.

    ## Options
    None.

    ## Fix safety
    Safe: re-initializes with the gain-correct random initializer; the architecture is unchanged.
    """

    code = "NN102"
    name = "symmetric-weights"
    severity = "error"
    summary = "every output unit of a layer has identical weights: symmetry is never broken"
    reads = frozenset({"forward"})
    cause = ()
    fixable = "safe"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            nn.init.constant_(model[0].weight, 0.05)
            batch = torch.randn(64, 32)
            """, module='0'),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            nn.init.kaiming_normal_(model[0].weight, nonlinearity="relu")
            batch = torch.randn(64, 32)
            """),
    )

    def check(self, trace):
        graph = Graph.of(trace)
        for name, p in trace.params.items():
            if not p.rows_identical or p.all_zero or not p.requires_grad or len(p.shape) < 2 or p.tied_to:
                continue
            uses = layers_weighted_by(graph, name)
            if not uses or all(graph.reaches_weight_layer(op) is None for op in uses):
                continue
            nonlin, slope = graph.nonlinearity_after(uses[0])
            detail = f"constant {fmt(p.mean)}" if p.std == 0 else "copied rows"
            yield self.diagnostic(
                p.module,
                f"all {p.shape[0]} output units have identical weights ({detail}): "
                "they compute the same thing and the symmetry is never broken",
                location=trace.location_of(p.module),
                evidence={"param": name, "shape": list(p.shape), "mean": p.mean, "std": p.std},
                fix=reinit_fix(trace, p.module, nonlin, slope),
            )
