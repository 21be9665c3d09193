from __future__ import annotations

from nnlint.pyexpr import module_expr
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import is_all_off_activation, is_intentional_zero_layer, layers_weighted_by, ops_using, reinit_fix
from nnlint.trace.graph import Graph


class ZeroWeights(Rule):
    """## What it does
    Finds trainable weights (Linear, ConvNd, Embedding, attention projections: any parameter of two or
    more dimensions used as a layer's weight) that are entirely zero, in a hidden layer; and, as a
    warning, hidden layers where some output units (filters, rows) are all zero while the others are
    not: at least `min_rows` and `min_fraction` of them (pruning gone wrong, a mask applied to the
    wrong dimension). An embedding's zero rows (its `padding_idx`, unused tokens) are not units and
    are not reported.

    ## Why is this bad?
    Every output unit of an all-zero layer computes the same value (its bias) whatever the input, and the
    gradient that reaches the layers before it is exactly zero. Before a ReLU with a zero (or negative)
    bias the units are dead for good: they pass no gradient, so neither this layer nor any before it
    ever learns. That is the textbook "initialize everything to zero" mistake, and it leaves a classifier
    predicting one class. Without a dead ReLU the next layer's differing weights break the tie within
    the first steps, but training starts without signal, and a stack of such layers trains slowly.

    Zero-init is intentional, and not reported, for the last layer of a residual branch (each block
    then starts as the identity: Fixup, SkipInit, `zero_init_residual`), also where a norm or an
    activation whose every unit is open on the batch lies between it and the add (a ReLU-ended branch
    zeroed with a positive bias, NN403's fix; with a negative or zero bias its units are dead, and it is
    reported), for the model's final layer, and for gate or modulation projections whose output
    multiplies (adaLN-Zero).

    ## Options
    - `min_rows` (2), `min_fraction` (0.1): how many output units of a layer must be zero, in number
      and as a fraction, for a partly zero layer to be reported (one zero row is a padding row or a
      coincidence; torch-audit demo_cv's pruned conv has 13 of 16).

    ## Fix safety
    Safe: re-initializes the weight with the gain-correct initializer for the nonlinearity that follows
    the layer; the architecture is unchanged. A partly zero layer gets no automatic fix: its other
    units may be trained values (a pruned checkpoint) that a re-init would erase; the message names
    the rows.
    """

    code = "NN101"
    name = "zero-weights"
    severity = "error"
    summary = "a hidden layer's trainable weight is entirely zero (its units start identical, dead before a ReLU), or some of its units are"
    options = {"min_rows": 2, "min_fraction": 0.1}
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
        Faulty("""
            model = nn.Sequential(nn.Conv2d(3, 16, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
            with torch.no_grad():
                model[0].weight[3:] = 0.0   # 13 of 16 filters pruned by mistake
            batch = torch.randn(16, 3, 32, 32)
            """, module='0', fixed=False),
        Healthy("""
            model = nn.Sequential(nn.Conv2d(3, 16, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
            batch = torch.randn(16, 3, 32, 32)
            """),
    )

    def check(self, trace):
        graph = Graph.of(trace)
        for name, p in trace.params.items():
            if not p.requires_grad or len(p.shape) < 2 or p.tied_to:
                continue
            partly = not p.all_zero and p.zero_rows >= max(self.opts["min_rows"], self.opts["min_fraction"] * p.shape[0])
            if not (p.all_zero or partly):
                continue
            uses = layers_weighted_by(graph, name) if p.all_zero else ops_using(graph, name)
            if not uses or all(is_intentional_zero_layer(graph, op) for op in uses):
                continue
            if partly:
                if not any(op.kind == "embedding" for op in uses):
                    yield self._partly_zero(trace, graph, p, uses[0])
                continue
            nonlin, slope = graph.nonlinearity_after(uses[0])
            yield self.diagnostic(
                p.module,
                f"{p.attr} is all zeros: " + _consequence(graph, uses[0], p.shape[0], nonlin),
                location=trace.location_of(p.module),
                evidence={"param": name, "shape": list(p.shape), "std": 0.0, "followed_by": nonlin},
                fix=reinit_fix(trace, p.module, nonlin, slope),
            )

    def _partly_zero(self, trace, graph: Graph, p, use):
        nonlin, _ = graph.nonlinearity_after(use)
        units = "filters" if len(p.shape) > 2 else "output units"
        constant = "its bias" if f"{p.module}.bias" in trace.params else "0"
        into = f", a constant into the {nonlin} after it" if nonlin not in (None, "", "linear", "identity") else ""
        return self.diagnostic(
            p.module,
            f"{p.zero_rows}/{p.shape[0]} {units} of {module_expr(p.module, p.attr)} are all zeros (pruned, or "
            f"zeroed by mistake): each outputs {constant} whatever the input{into}, and no gradient reaches the "
            "layers before through them; re-initialize the layer (e.g. "
            f"nn.init.kaiming_normal_ on {module_expr(p.module, p.attr)}) or remove those units",
            severity="warning", location=trace.location_of(p.module),
            evidence={"param": p.name, "shape": list(p.shape), "zero_rows": p.zero_rows, "followed_by": nonlin})


def _consequence(graph: Graph, use, units: int, nonlin: str) -> str:
    """What the zeros do, said as it is on this model. Before a ReLU whose units are then all off, the
    layer is dead for good. Otherwise the units only start identical: the next layer's rows differ, so
    their gradients differ and the first steps break the tie, but until then the layers before get no
    gradient (and a whole stack of such layers trains slowly, if at all)."""
    has_inputs_before = graph.first(use, lambda o: o.weight is not None, up=True) is not None
    before = "; no gradient reaches the layers before it" if has_inputs_before else ""
    dead = graph.first(use, is_all_off_activation, through=lambda o: o.weight is None, limit=8)
    if dead is not None:
        return (f"every one of its {units} units outputs its bias, and the {nonlin} after it is off for all of "
                f"them: dead, they pass no gradient, so it never learns{before}")
    return f"its {units} units start identical (each outputs its bias){before} until it moves"

