from __future__ import annotations

from nnlint.registry import Rule
from nnlint.rulekit import is_intentional_zero_layer, nonlinearity_after, ops_using, reinit_fix
from nnlint.trace.graph import Graph


class ZeroWeights(Rule):
    """## What it does
    Finds trainable weights (Linear, ConvNd, Embedding, attention projections: any parameter of two or
    more dimensions used as a layer's weight) that are entirely zero, in a hidden layer.

    ## Why is this bad?
    Every output unit of an all-zero layer computes the same value (its bias) and receives the same
    gradient, so the units stay identical for the whole of training: the layer has the capacity of a
    single unit. Before a ReLU the units are also dead. The gradient that reaches the layers before it is
    exactly zero.

    Zero-init is intentional, and not reported, for the last layer of a residual branch (each block
    then starts as the identity: Fixup, SkipInit, `zero_init_residual`), for the model's final layer, and
    for gate or modulation projections whose output multiplies (adaLN-Zero).

    ## Example
    ```python
    self.fc2 = nn.Linear(256, 256)
    nn.init.zeros_(self.fc2.weight)
    ```

    ## Use instead
    ```python
    nn.init.kaiming_normal_(self.fc2.weight, nonlinearity="relu")   # before a ReLU
    nn.init.xavier_normal_(self.fc2.weight)                          # before tanh/sigmoid/nothing
    ```

    ## Options
    None.

    ## Fix safety
    Safe: re-initializes the weight with the gain-correct initializer for the nonlinearity that follows
    the layer; the architecture is unchanged.
    """

    code = "NN101"
    name = "zero-weights"
    severity = "error"
    summary = "a hidden layer's trainable weight is entirely zero: its units stay identical"
    fixable = "safe"

    def check(self, trace):
        graph = Graph.of(trace)
        for name, p in trace.params.items():
            if not p.all_zero or not p.requires_grad or len(p.shape) < 2 or p.tied_to:
                continue
            uses = ops_using(graph, name)
            if not uses or all(is_intentional_zero_layer(graph, op) for op in uses):
                continue
            nonlin, slope = nonlinearity_after(graph, uses[0])
            units = p.shape[0]
            yield self.diagnostic(
                p.module,
                f"{p.attr} is all zeros: the {units} units stay identical and never learn "
                f"(the layers before it get zero gradient)",
                location=trace.location_of(p.module),
                evidence={"param": name, "shape": list(p.shape), "std": 0.0, "followed_by": nonlin},
                fix=reinit_fix(trace, p.module, nonlin, slope),
            )
