from __future__ import annotations

from nnlint.registry import Chart, Faulty, Healthy, Rule
from nnlint.rulekit import fmt, insert_norm_fix
from nnlint.trace.structure import Structure

from nnlint.rules.propagation._chains import (chain_fix, describe_path, drifting_chains, module_of,
                                              residual_note, start_text)


ACTIVATIONS_CHART = Chart(
    "activations", "Activations after each weight layer",
    "Standard deviation (and |mean|, dashed) of every linear/conv output, log scale. A steady fall or rise "
    "through depth is a vanishing or exploding signal.",
    x_label="weight layer, execution order", y_label="activation (log)", empty="no linear or convolution layer ran",
    log_y=True, primary="std", secondary="|mean|")

class VanishingActivations(Rule):
    """## What it does
    Follows the signal along the main path, the values each next layer sees: after a residual add,
    the stream, not the branch. Weight layers (Linear, Conv) form a chain from one normalization
    (or the input) to the next; the rule measures the std of each layer's output relative to the
    std where the chain starts, and reports a chain along which it shrinks more than `max_shrink`
    (10x), or a single layer whose output std is under `min_layer_ratio` (1e-3) of its input's.

    Not part of any chain (their scale does not reach the next layer, or shrinking it is
    intentional):
    - layers inside a residual branch `x + f(x)`: a branch's small output is how GPT-2's
      1/sqrt(2N) projections, Fixup, SkipInit and layer scale make a block start near the identity;
    - a layer whose output meets a normalization before the next weight layer (Conv -> BatchNorm);
    - the model's last layer (small logits at init are good practice);
    - all-zero and constant layers (NN101 and NN102 report those);
    - the growth or shrink of the residual stream itself (NN403's), and global pooling, which on a
      random batch shrinks the std by up to sqrt(H*W) whatever the init.

    ## Why is this bad?
    Activations that collapse toward 0 carry no information forward, and the local gradients of
    every layer scale with its input: the early layers barely learn. Each layer multiplies the
    signal's std by about `std(W) * sqrt(fan_in) / gain`: PyTorch's default
    `kaiming_uniform_(a=sqrt(5))` gives `std(W) = 1/sqrt(3 fan_in)`, 2.4x too small before a ReLU,
    so a deep default-init ReLU MLP shrinks about 2.4x per layer.

    Threshold evidence (library models at their own init, std of each weight layer's output on a standardized
    batch): torchvision VGG-11 with its Kaiming fan_out init stays between 0.2 and 0.43 of the input's
    std through all 11 layers (at most 5x: quiet), while AlexNet at PyTorch's default init falls
    1.0, 0.57, 0.52, 0.32, 0.11, 0.047, 0.034, 0.022, 0.013 (77x) and a 4-hidden-layer default-init
    MLP 2.4^4 = 33x: both reported. 10x sits between the healthy 5x and the faulty 33x.

    ## Options
    - `max_shrink` (default 10.0): the chain's std may shrink at most this much from its start.
    - `min_layer_ratio` (default 1e-3): a single layer whose output std is under this fraction of its
      input's is reported on its own.

    ## Fix safety
    Safe: re-initializes the first layer that shrinks the signal with its gain-correct initializer
    (Kaiming before ReLU-family activations, Xavier otherwise) and a zero bias; `fix.params.chain`
    lists the same re-init for every layer of the chain, through to its end. Where what runs between
    the layers would carry that init more than 3x from the chain start's scale (max-pools and
    train-mode dropouts, which Kaiming's gain leaves out: torchvision's AlexNet, re-initialized with
    Kaiming, grows 7.5x and starts at a loss of 8 for 10 classes; benchmarks/TRIAGE.md, N2), every
    layer gets the std measured on the batch to hold it instead, `nn.init.normal_(w, std=...)`. The
    architecture is unchanged. Where the chain feeds the model's final layer and that layer's output
    spread is the author's choice (a prior bias, as in RetinaNet v1's class logits at -4.6, or a
    regression or binary loss reading it), the fix also scales that layer's weight down by the chain's
    shrink, so the model's output starts where it was (rules/_output_hold.py; benchmarks/TRIAGE.md, S).
    Where the re-init does not hold (the fixer re-checks the model as a whole), the next step, unsafe, puts a
    normalization after each layer of the chain (a LayerNorm after a Linear, a BatchNorm after a conv).

    ## References
    - He et al. 2015, Delving Deep into Rectifiers (Kaiming init).
    - Glorot & Bengio 2010, Understanding the difficulty of training deep feedforward neural networks.
    """

    code = "NN401"
    name = "vanishing-activations"
    severity = "warning"
    summary = "the main-path signal's std shrinks more than 10x over a chain of un-normalized layers"
    reads = frozenset({"forward"})
    chart = ACTIVATIONS_CHART
    options = {"max_shrink": 10.0, "min_layer_ratio": 1e-3}
    fixable = "safe"

    examples = (
        Faulty("""
            layers = []
            for _ in range(6):
                layers += [nn.Linear(64, 64), nn.ReLU()]     # PyTorch's default init: 2.4x too small per layer
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
        max_shrink, min_layer = self.opts["max_shrink"], self.opts["min_layer_ratio"]

        def bad(link):
            # One layer scaled down only scales what follows (a single too-small layer before a norm is
            # ALBERT's embedding projection at its own init): a chain needs two layers to compound, but a
            # layer that alone collapses the signal 1000x is reported whatever follows.
            return (link.factor < 1.0 / max_shrink and link.parent is not None) or link.own_ratio < min_layer

        for drift in drifting_chains(structure, bad, shrinking=True):
            worst, culprit = drift.worst, drift.culprit
            module = module_of(structure, culprit)
            repair = chain_fix(structure, drift, why="the signal's std collapses along the chain")
            norms = insert_norm_fix(trace, [module_of(structure, l) for l in drift.path], why="the signal's std collapses along the chain")
            collapsed = [l for l in drift.path if l.own_ratio < min_layer]
            layer_note = (f"; {module_of(structure, collapsed[0])} alone scales it by {fmt(collapsed[0].own_ratio)}"
                          if collapsed else "")
            yield self.diagnostic(
                module,
                f"activation std shrinks {fmt(1 / worst.factor)}x along the main path: from {start_text(drift)} "
                f"to {fmt(worst.out_std)} at {module_of(structure, worst)}, over {len(drift.path)} layer(s) with no "
                f"normalization in between ({describe_path(structure, drift)}){residual_note(drift)}{layer_note}: "
                f"the signal and the local gradients collapse toward 0; {repair.how}",
                location=trace.location_of(module),
                evidence={"factor": worst.factor, "shrink": 1 / worst.factor if worst.factor > 0 else float("inf"),
                          "start": drift.path[0].start.label, "start_std": drift.path[0].start.std,
                          "layers": [module_of(structure, l) for l in drift.path],
                          "stds": [l.out_std for l in drift.path], "steps": [l.step for l in drift.path],
                          "min_layer_ratio": min(l.own_ratio for l in drift.path)},
                fix=repair.fix,
                escalation=[norms],
            )
