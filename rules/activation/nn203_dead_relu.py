from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from nnlint.initmath import ACTIVE_BIAS
from nnlint.registry import Chart, Faulty, Healthy, Rule
from nnlint.rulekit import describe_op, location_for, pct, reinit_fix, swap_fix
from nnlint.trace import ops as opnames
from nnlint.trace.graph import Graph
from nnlint.trace.records import OpRecord
from nnlint.trace.vocab import applies_weights


SWAPPABLE = ("relu", "gelu", "silu", "elu", "mish", "softplus")


DEAD_UNITS_CHART = Chart(
    "dead", "Dead units after each ReLU",
    "Fraction of units active on under 1% of the batch's positions.",
    x_label="ReLU-family call, execution order", y_label="dead fraction", empty="no ReLU-family activation ran",
    y_range=(0.0, 1.0), references=(("warning_fraction", "warning"), ("error_fraction", "error")))

class DeadRelu(Rule):
    """## What it does
    For every ReLU-family activation call (ReLU, LeakyReLU, ReLU6, GELU, SiLU, ELU ...), counts the
    units (channels of a conv map, features of a linear layer) that are active (> 0) on under 1% of the
    batch's positions.

    ## Why is this bad?
    A ReLU unit that never activates passes no gradient, so the weights that feed it never change: it
    is dead for good. A large share of dead units at init wastes the layer, and usually means a bias
    that is too negative, weights too large or badly centered inputs.

    An activation written out as a formula is judged by its gate: the tanh of `0.5 * x * (1 +
    tanh(...))` (GELU's tanh approximation, Hugging Face's `NewGELUActivation` in GPT-2) and the sigmoid
    of `x * sigmoid(x)` (SiLU). A unit whose gate input sits below the gate's flat edge (tanh -2.2,
    sigmoid -4.4) on nearly every position outputs about 0 and passes about no gradient, as a dead ReLU
    does (benchmarks/TRIAGE.md, X3).

    Measured per unit: a ReLU module called several times after different layers (torchvision's ResNet
    calls one `self.relu` three times per block) is judged at each call; one called after the same
    layer again and again (a refinement loop: RAFT's update block) is judged over all those calls, as
    a unit is dead only if it is silent at every one of them.

    Not reported when the layer feeding the activation is all-zero or constant (NN101/NN102), or when
    the pre-activation is exactly constant (a zero-initialized norm scale before it, timm's
    `zero_init_last`: the block starts as the identity by design): that is the cause, and its fix or
    its intent decides.

    Nor a softplus whose output feeds no weight layer as its signal: a positivity map, such as the
    step size of a state-space scan (Mamba-2's `dt = softplus(dt + dt_bias)`, `dt_bias` initialized to
    the inverse softplus of 0.001-0.1, so 62-88% of the heads sit below -2.94 at init by design) or a
    predicted variance; it scales other signals (`dt * A`, `dt * x`) instead of passing its own on.

    ## Options
    - `warning_fraction` (default 0.2): fraction of dead units for a warning.
    - `error_fraction` (default 0.5): fraction of dead units for an error.
    - `active_below` (default 0.01): a unit active on fewer than this fraction of positions is dead.
    - `min_positions` (default 16): fewer positions per unit than this (a tiny batch) and the layer is
      not judged: with 4 samples a healthy unit is silent 6% of the time by chance.

    ## Fix safety
    Safe: Kaiming re-init of the layer that feeds the activation, with a small positive bias (0.01) so
    that every unit starts active on about half of the inputs. Where that does not hold (the fixer
    judges the model as a whole after it: a layer a few units wide dies again), the next step, unsafe,
    replaces the activation with LeakyReLU(0.1) and re-initializes the layer for it.
    """

    code = "NN203"
    name = "dead-relu"
    severity = "warning"
    summary = "most units of a ReLU-family layer never activate on the batch"
    reads = frozenset({"forward"})
    cause = ()
    chart = DEAD_UNITS_CHART
    options = {"warning_fraction": 0.2, "error_fraction": 0.5, "active_below": 0.01, "min_positions": 16}
    fixable = "safe"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            nn.init.constant_(model[0].bias, -5.0)
            batch = torch.randn(64, 32)
            """, module='1'),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            nn.init.kaiming_normal_(model[0].weight, nonlinearity="relu")
            nn.init.zeros_(model[0].bias)
            batch = torch.randn(64, 32)
            """, note="""
            or `nn.LeakyReLU(0.01)`, whose units cannot die.
            """),
    )

    def check(self, trace):
        graph = Graph.of(trace)
        for calls in _calls_of_one_unit_set(graph, self._judged(trace, graph)).values():
            yield from self._judge(trace, graph, calls)

    def _judged(self, trace, graph: Graph):
        """The activation calls to judge, each with its units' active fractions and positions."""
        for op in graph.ops:
            if op.kind not in opnames.ALIVE_ABOVE and not _formula_gate(graph, op):
                continue
            active = op.stats.get("unit_active")
            out, z = op.out, op.stats.get("in")
            if not active or out is None or out.nonfinite:
                continue   # NaN compares false: a non-finite map is NN002's finding, not dead units
            if z is not None and z.std == 0 and _zeroed_upstream(trace, graph, op):
                continue   # a zero-initialized norm scale (or layer scale) before it sets it to 0 on purpose
            if op.kind == "softplus" and graph.feeds_weight_layer(op) is None:
                continue   # a positivity map (Mamba's step size), not a hidden layer: small values are its init
            unit_dim = op.args.get("unit_dim", len(out.shape) - 1)
            positions = out.numel // max(out.shape[unit_dim], 1) if out.shape else 0
            yield Call(op, active, positions, unit_dim)

    def _judge(self, trace, graph: Graph, calls: list["Call"]):
        op, unit_dim = calls[0].op, calls[0].unit_dim
        positions = sum(c.positions for c in calls)
        if positions < self.opts["min_positions"]:
            return
        # A unit's share of active positions over every call with these weights (a transformer's MLP
        # has thousands of units a call: one pass over each call's list, not one generator per unit)
        if len(calls) == 1:
            active = list(calls[0].active)
        else:
            weighted = [[a * c.positions for a in c.active] for c in calls]
            active = [sum(column) / positions for column in zip(*weighted)]
        dead = sum(1 for a in active if a < self.opts["active_below"])
        frac = dead / len(active)
        if frac <= self.opts["warning_fraction"]:
            return
        severity = "error" if frac > self.opts["error_fraction"] else "warning"
        unit = "channels" if unit_dim == 1 and len(op.out.shape) >= 3 else "units"
        feeding = graph.feeding_weight_op(op)
        if feeding is not None and _degenerate(trace, feeding.weight):
            return   # an all-zero or constant layer upstream (NN101/NN102) is the cause: report that
        gate = op.kind not in opnames.ALIVE_ABOVE      # the tanh/sigmoid of a written-out GELU or Swish
        activation = FORMULA_ACTIVATION[op.kind] if gate else op.kind
        fix = None
        if feeding is not None and feeding.weight is not None:
            fix = reinit_fix(trace, feeding.module, activation, graph.activation_slope(op),
                             why=f"and a small positive bias, {ACTIVE_BIAS:g}, so that every unit starts active", bias=ACTIVE_BIAS)
        # Where a re-init cannot keep the units alive (a layer a few units wide), a LeakyReLU's units
        # cannot die: the ladder's next step, for the activations the swap knows.
        escalation = [swap_fix(trace, graph, op, "leaky_relu")] if op.kind in SWAPPABLE else []
        if gate:
            never = (f"sit where the {op.kind} gate is shut (its input < {opnames.GATE_OPEN_ABOVE[op.kind]:g}: "
                     f"the unit outputs about 0)")
            what = (f"the {opnames.ACTIVATION_MODULES[activation]} {unit} computed with {describe_op(trace, op)} "
                    f"(written out as x * {op.kind}(...))")
        else:
            flat = opnames.ALIVE_ABOVE[op.kind]
            never = "never activate" if flat == 0 else f"sit in the flat region (pre-activation < {flat:g}, derivative under 5% of its peak)"
            what = f"{describe_op(trace, op)} {unit}"
        over = f" over its {len(calls)} calls" if len(calls) > 1 else ""
        yield self.diagnostic(
            op.module,
            f"{pct(frac)} of {what} ({dead}/{len(active)}) {never} on this batch{over} "
            f"(out of it on under {pct(self.opts['active_below'])} of {positions} positions): they pass (almost) no gradient"
            + (f"; re-init {feeding.module} with {fix.params.call(feeding.module)} and a small positive bias "
               f"({ACTIVE_BIAS:g})" if fix is not None else ""),
            severity=severity,
            location=location_for(trace, op.module, op),
            evidence={"dead_fraction": frac, "dead_units": dead, "units": len(active), "positions": positions,
                      "call_index": op.call_index, "calls": len(calls),
                      "feeding_layer": feeding.module if feeding else None},
            fix=fix,
            escalation=escalation,
        )


# What a written-out activation formula x * f(x) is, by its gate: GELU's tanh approximation, Swish/SiLU.
FORMULA_ACTIVATION = {"tanh": "gelu", "sigmoid": "silu"}


def _formula_gate(graph: Graph, op) -> bool:
    """A tanh/sigmoid that gates its own input (`0.5 * x * (1 + tanh(...))`, `x * sigmoid(x)`): the
    written-out activation's units die where the gate is shut, as a ReLU's do below 0."""
    return op.kind in opnames.GATE_OPEN_ABOVE and graph.is_formula_gate(op)


@dataclass
class Call:
    """One activation call to judge: its units' active fractions over its positions."""

    op: OpRecord
    active: list[float]
    positions: int
    unit_dim: int


def _calls_of_one_unit_set(graph: Graph, judged) -> dict[tuple, list[Call]]:
    """The calls grouped by the units they measure: one activation module fed by the same weight layer
    (a refinement loop runs both once per iteration: RAFT's motion encoder reads an all-zero flow on the
    first of them, so its units are judged over every call, benchmarks/TRIAGE.md, R). One `self.relu`
    after different layers (torchvision's ResNet) measures different units: separate groups."""
    judged = list(judged)
    runs = Counter(c.op.module for c in judged)
    groups: dict[tuple, list[Call]] = {}
    for c in judged:
        key: tuple = (c.op.index,)
        if c.op.module and runs[c.op.module] > 1:   # the walk up only where a module runs more than once
            feeding = graph.feeding_weight_op(c.op)
            if feeding is not None and feeding.weight is not None:
                key = (c.op.module, c.op.kind, feeding.weight, len(c.active))
        groups.setdefault(key, []).append(c)
    return groups


def _zeroed_upstream(trace, graph: Graph, op) -> bool:
    """A multiplication by an all-zero parameter (a zero norm weight, a zero layer scale) between the
    activation and the weight layer before it."""
    def zeroing(o) -> bool:
        names = (trace.param_serials.get(s) for s in o.inputs)
        return any(n is not None and trace.params[n].all_zero and trace.params[n].attr != "bias" for n in names)

    return graph.first(op, zeroing, up=True, through=lambda o: not applies_weights(o)) is not None


def _degenerate(trace, param) -> bool:
    rec = trace.params.get(param) if param else None
    return rec is not None and (rec.all_zero or rec.rows_identical)
