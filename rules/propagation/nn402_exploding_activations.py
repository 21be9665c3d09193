from __future__ import annotations

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import describe_op, fmt, insert_norm_fix, location_for, reinit_fix, swap_ladder
from nnlint.trace.structure import Structure
from nnlint.trace.vocab import is_weight_layer

from nnlint.rules.propagation._chains import (chain_fix, describe_path, drifting_chains, fix_call, module_of,
                                              residual_note, start_text)


# Activations whose output is bounded: a layer too large before them saturates them (NN202).
BOUNDED = {"tanh", "sigmoid", "hardtanh", "hardsigmoid", "softsign", "softmax", "log_softmax"}
UNBOUNDED_ACTIVATIONS = {"exp"}   # used as a hidden activation, it overflows through depth whatever the init


class ExplodingActivations(Rule):
    """## What it does
    The mirror of NN401 (vanishing-activations): along the main path (after a residual add, the
    stream, not the branch), over a chain of weight layers with no normalization in between, reports
    a chain along which the activation std grows more than `max_growth` (10x) from where the chain
    starts. Also reports, as an error, the op where activations first become non-finite (an `exp`
    activation, or a chain that overflowed) although its input was finite.

    The chains are NN401's: layers inside residual branches, layers re-scaled by a normalization before
    the next weight layer, the model's last layer and the residual stream's own growth (NN403's) are
    left out. So is a layer that feeds tanh or sigmoid: there a too-large layer saturates the
    activation (NN202) and the next layer still sees values in [-1, 1]; and a layer whose next weight
    layer feeds one: a squeeze-and-excitation reduce layer (torchvision EfficientNet-B6's
    `features.3.0.block.2.fc1`, Conv2d(240, 10) at Kaiming fan_out, gains 10.4x on the pooled vector's
    RMS, benchmarks/TRIAGE.md Z2), whose expand layer's sigmoid gates the features in [0, 1]. Non-finite activations are
    reported only when the model's output is non-finite as well (a mask filled with
    `torch.finfo(float32).min` is finite, and an inf that a mask absorbs never reaches the loss).

    ## Why is this bad?
    Each layer multiplies the signal's std by about `std(W) * sqrt(fan_in) / gain`; a few layers
    initialized too large blow the activations up geometrically: tanh and sigmoid saturate, the
    logits are over-confident, the gradients explode, and in float16 the values overflow to inf.

    Threshold evidence (library models at their own init): torchvision VGG-11 with its Kaiming fan_out init keeps
    every weight layer's output std within 0.2-0.43 of the input's; a healthy chain changes the std by
    a small constant factor, while one with weights 2x too large grows 2^depth (8 layers: 256x). 10x
    leaves a healthy chain's constant factor well inside.

    ## Options
    - `max_growth` (default 10.0): the chain's std may grow at most this much from its start.

    ## Fix safety
    Safe: re-initializes the first layer that grows the signal with its gain-correct initializer and
    a zero bias; `fix.params.chain` lists the same re-init for every layer of the chain (with stds
    measured on the batch where pooling or dropout between the layers would carry the named init
    more than 3x off, as NN401's fix does); where that does not hold, the next step (unsafe) puts a normalization after each layer of the chain. For
    non-finite activations the fix re-initializes the weight layer feeding the op, when there is one;
    for `exp` as a hidden activation, whose overflow a re-init only moves one layer down, the next step
    (unsafe) replaces it with a ReLU and a Kaiming re-init.

    ## References
    - He et al. 2015, Delving Deep into Rectifiers (Kaiming init).
    - Glorot & Bengio 2010, Understanding the difficulty of training deep feedforward neural networks.
    """

    code = "NN402"
    name = "exploding-activations"
    severity = "warning"
    summary = "the main-path signal's std grows more than 10x over a chain of un-normalized layers, or goes non-finite"
    reads = frozenset({"forward"})
    options = {"max_growth": 10.0}
    fixable = "safe"

    examples = (
        Faulty("""
            layers = []
            for _ in range(6):
                layers += [nn.Linear(64, 64), nn.ReLU()]
                nn.init.normal_(layers[-2].weight, std=0.4)  # Kaiming is 0.18: 2.3x too large per layer
            model = nn.Sequential(*layers, nn.Linear(64, 10))
            batch = torch.randn(64, 64)
            """, module='0'),
        Healthy("""
            layers = []
            for _ in range(6):
                layers += [nn.Linear(64, 64), nn.ReLU()]
                nn.init.kaiming_normal_(layers[-2].weight, nonlinearity="relu")
            model = nn.Sequential(*layers, nn.Linear(64, 10))
            batch = torch.randn(64, 64)
            """, note="""
            or put a normalization (BatchNorm/LayerNorm) between the layers.
            """),
    )

    def check(self, trace):
        structure = Structure.of(trace)
        max_growth = self.opts["max_growth"]
        graph = structure.graph

        def bounded_next(op) -> bool:
            # The next weight layer feeds tanh/sigmoid: an SE block's reduce layer, whose expand layer
            # feeds the sigmoid gate. Its growth ends one layer later in [0, 1]; nothing explodes.
            nxt = graph.reaches_weight_layer(op)
            return nxt is not None and graph.nonlinearity_after(nxt)[0] in BOUNDED

        def bad(link):
            # Into tanh/sigmoid a too-large layer saturates (NN202) instead of exploding: the
            # activations the next layer sees stay bounded.
            return link.factor > max_growth and graph.nonlinearity_after(link.op)[0] not in BOUNDED \
                and not bounded_next(link.op)

        for drift in drifting_chains(structure, bad, shrinking=False):
            worst = drift.worst
            module = module_of(structure, drift.culprit)
            repair = chain_fix(structure, drift, why="the signal's std explodes along the chain")
            norms = insert_norm_fix(trace, [module_of(structure, l) for l in drift.path],
                                    why="the signal's std explodes along the chain")
            yield self.diagnostic(
                module,
                f"activation std grows {fmt(worst.factor)}x along the main path: from {start_text(drift)} to "
                f"{fmt(worst.out_std)} at {module_of(structure, worst)}, over {len(drift.path)} layer(s) with no "
                f"normalization in between ({describe_path(structure, drift)}){residual_note(drift)}: activations "
                f"and gradients explode; {repair.how}",
                location=trace.location_of(module),
                evidence={"factor": worst.factor, "start": drift.path[0].start.label,
                          "start_std": drift.path[0].start.std,
                          "layers": [module_of(structure, l) for l in drift.path],
                          "stds": [l.out_std for l in drift.path], "steps": [l.step for l in drift.path]},
                fix=repair.fix,
                escalation=[norms],
            )
        yield from self._non_finite(structure)

    def _non_finite(self, structure: Structure):
        """The ops where non-finite values that reach the model's output start (Structure.nonfinite_sources)."""
        trace, graph = structure.trace, structure.graph
        for op in structure.nonfinite_sources():
            ins = [structure.summary(s) for s in structure.tensor_inputs(op)]
            first = ins[0]
            feeding = op if is_weight_layer(op) else graph.feeding_weight_op(op)
            fix = None
            if feeding is not None and feeding.weight is not None:
                p = trace.params.get(feeding.weight)
                nonlin, slope = graph.nonlinearity_after(feeding)
                fix = reinit_fix(trace, p.module if p is not None else feeding.module, nonlin, slope,
                                 why="the activations it feeds overflow")
            # exp as a hidden activation overflows whatever the init (a re-init moves the overflow one
            # layer down): the ladder's next step, unsafe, replaces it with a ReLU.
            escalation = swap_ladder(trace, graph, op) if op.kind in UNBOUNDED_ACTIVATIONS and \
                graph.feeds_weight_layer(op) is not None else []
            yield self.diagnostic(
                op.module,
                f"{describe_op(trace, op)} produces non-finite values (inf/NaN) from a finite input "
                f"(std {fmt(first.std)}, mean {fmt(first.mean)}): everything downstream, and the loss, is NaN"
                + (f"; re-init {fix.target} with {fix_call(fix)} or bound the input (e.g. clamp before exp)"
                   if fix is not None else "; bound the input (e.g. clamp before exp) or normalize it")
                + ("; as a hidden activation exp overflows through depth whatever the init: use nn.ReLU"
                   if escalation else ""),
                severity="error",
                location=location_for(trace, op.module, op),
                evidence={"op": op.func, "input_std": first.std, "input_mean": first.mean, "call_index": op.call_index,
                          "feeding_layer": feeding.module if feeding is not None else None},
                fix=fix,
                escalation=escalation,
            )
