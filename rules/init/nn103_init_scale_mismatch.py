from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

from nnlint.initmath import bounded_output_std, correct_init, symmetric_std
from nnlint.pyexpr import module_expr
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rules._output_hold import OutputHold, describe_holds, final_layers_fed, output_holds
from nnlint.rulekit import fmt, measured_gain, reinit_fix
from nnlint.trace import ops as opnames
from nnlint.trace.graph import Graph
from nnlint.trace.records import OpRecord, Trace
from nnlint.trace.structure import Structure
from nnlint.trace.vocab import applies_weights, is_passthrough, is_weight_layer, normalizes


class InitScaleMismatch(Rule):
    """## What it does
    Compares each Linear/Conv layer's weight std with the gain-correct std for the nonlinearity that
    follows it (`torch.nn.init.calculate_gain`): Kaiming `gain/sqrt(fan_in)` for ReLU, LeakyReLU, GELU,
    SiLU; Xavier `gain*sqrt(2/(fan_in+fan_out))` for tanh, sigmoid and no nonlinearity. Kaiming's
    `mode="fan_out"` (torchvision's choice) is as correct as `fan_in`, so a std anywhere between the
    fan-in and fan-out values is in range. A layer is reported when its std is more than 2x outside that
    range AND the mis-scale shows in the measured signal:

    - no normalization layer re-scales the layer's output before the next weight layer (Conv→BatchNorm,
      a Linear→LayerNorm, a depthwise conv right before a LayerNorm, a hand-written norm module such
      as an RMSNorm are all exempt), and
    - the layer's measured gain (output std, bias removed, over input RMS) is more than 2x off the
      gain a correct layer gives on this very input.

    ## Why is this bad?
    Each layer multiplies the signal's scale by `std * sqrt(fan_in) / gain`. Off by 2.4x per layer (what
    PyTorch's default `kaiming_uniform_(a=sqrt(5))` gives before a ReLU) the activations and the
    gradients shrink geometrically with depth; too large, they explode, saturate tanh/sigmoid and make the
    logits over-confident.

    Not reported (intentional or harmless):
    - a layer followed by a normalization before the next weight layer (the norm re-scales it);
    - a layer inside a residual branch whose weights are too *small*: scaling a branch down makes the
      block start near the identity (GPT-2's 0.02 and 1/sqrt(2N) projections, Fixup, SkipInit, layer
      scale, pre-LN transformers); too *large* is still reported there;
    - the model's final layer (it reaches no other weight layer) when it is too small: small logits at
      init are good practice. It is judged against identity only when it makes the output blow up (too
      large against the fan-in value, since a 10-class head's fan-out std 1/sqrt(10) would hide it,
      and the measured gain confirms it);
    - embeddings (std 1 in PyTorch, 0.02 in GPT/BERT: a lookup, not a projection), frozen and tied
      weights, recurrent cells.
    - a too-small layer whose shrink does not compound: one layer scaled down by a constant only scales
      what follows (with a positively homogeneous or near-linear activation, exactly as if the next layer
      were scaled), and a collapse in one layer is NN401's. Too-small layers are reported where two or
      more of them sit in one un-normalized chain and together shrink the signal by more than
      `min_compound_shrink` (5x). Evidence: single too-small layers in healthy library models, at their
      own init: torchvision MobileNetV3-small's `classifier.0` (`Linear(576, 1024)`, std 0.01 before
      Hardswish) 4.4x, Hugging Face BERT's pooler (std 0.02 before tanh) 3x at d=768 and 7.4x in
      bert-tiny (d=128); the smallest faulty case, a default-init MLP with two hidden ReLU layers,
      compounds 2.45x * 2.45x = 6x (deep default-init ReLU MLPs and AlexNet are true
      positives).
      What a layer passes on is its output *after* the activation: for ReLU-family and linear layers
      that is the gain drift itself, but a bounded tanh/sigmoid saturates part of a correct layer's
      larger signal away, so a too-small layer before it loses less (`Mismatch.fix_growth`, the
      ratio of tanh's output stds at the two pre-activation stds, Gaussian). PyTorch's default init
      before tanh: gain 0.58 where Xavier-tanh gives 1.67, a 2.9x gain drift but about 1.8x after the
      tanh; two such layers shrink the signal 3.2x (quiet), five by far more than 5x (reported).
      Evidence (benchmarks/fix_training.py, 150 SGD steps, best of 3 rates, 3 seeds): the default-init
      3x16 tanh MLP (two hidden layers) trains to 90.1% on digits and 58.6% on xor as built, 86.2% and
      35.8% after the Xavier-tanh re-init this rule used to ask for (6.9x by the gain drifts), so the
      re-init was a loss; the 11x16 one goes from 20.6% to 77.9% on digits with it (10981x: reported).

    Dropout in front of a layer multiplies its input's second moment by 1/(1-p) in training mode, so
    the critical std is `sqrt(1-p)` times the usual one (Pretorius et al. 2018): with that correction
    torchvision VGG's `classifier.3` (`Linear(4096, 4096)`, std 0.01 after `Dropout(0.5)`) is 1.6x off
    and stays quiet, as it must: VGG at its own init is healthy (NN401's evidence).

    ## Options
    - `max_ratio` (default 2.0): the weight std may be this far outside the gain-correct range.
    - `min_gain_drift` (default 2.0): the measured gain must be this far off the correct gain, in the
      same direction.
    - `min_compound_shrink` (default 5.0): too-small layers in one un-normalized chain must together
      shrink the signal by more than this.

    ## Fix safety
    Safe: re-initializes the weight with the named initializer and zeroes the bias; the architecture is
    unchanged. Where the too-small layers in line before the model's final layer raise its input more
    than 3x once re-initialized and that layer's output spread is the author's choice (a prior bias, as
    in RetinaNet v1's head: std-0.01 convs, then class logits at std 0.01 around -4.6; or a regression
    or binary loss reading it), the fix of the last of them also scales the final layer's weight down
    by as much, so the model's output starts where it was: Kaiming on RetinaNet's head convs alone
    takes the first loss from 1.8 to 28.9 (rules/_output_hold.py; benchmarks/TRIAGE.md, S).

    ## References
    - He et al. 2015, Delving Deep into Rectifiers (Kaiming init).
    - Glorot & Bengio 2010, Understanding the difficulty of training deep feedforward neural networks.
    - Pretorius et al. 2018, Critical initialisation for deep signal propagation in noisy rectifier
      neural networks.
    """

    code = "NN103"
    name = "init-scale-mismatch"
    severity = "warning"
    summary = "a layer's weight std is more than 2x off the gain-correct std, and the signal shows it"
    reads = frozenset({"forward"})
    cause = ("nonlinearity", "direction", "initializer")
    options = {"max_ratio": 2.0, "min_gain_drift": 2.0, "min_compound_shrink": 5.0}
    fixable = "safe"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(128, 64), nn.Tanh(), nn.Linear(64, 10))
            nn.init.normal_(model[0].weight, std=0.5)
            batch = torch.randn(64, 128)
            """, module='0'),
        Healthy("""
            model = nn.Sequential(nn.Linear(128, 64), nn.Tanh(), nn.Linear(64, 10))
            nn.init.xavier_normal_(model[0].weight, gain=nn.init.calculate_gain("tanh"))
            batch = torch.randn(64, 128)
            """),
    )

    def check(self, trace):
        graph = Graph.of(trace)
        structure = Structure.of(trace)
        # Layers whose too-small scale does not carry on: inside a residual branch, or a shortcut beside a
        # normalized branch (which sets the block output's scale)
        scale_set_elsewhere = structure.branch_op_indices | structure.shortcut_ops_beside_norms
        embedding_params = {o.weight for o in graph.ops if o.kind == "embedding" and o.weight}
        candidates: list[Mismatch] = []
        chains = _Chains()
        seen: set[str] = set()
        successors: dict[int, list[int]] = {}
        for op in graph.ops:
            if not is_weight_layer(op) or op.kind not in ("linear", "conv") or op.weight in seen:
                continue
            seen.add(op.weight)
            successors[op.index] = [w.index for w in _direct_successors(graph, op)]
            p = trace.params.get(op.weight)
            if p is None or not p.requires_grad or p.tied_to or p.all_zero or op.weight in embedding_params \
                    or len(p.shape) < 2 or "transpose" in op.func:
                continue   # all-zero is NN101's; a transposed conv's fans are not its weight's shape
            downstream = _downstream(graph, op)
            chains.link(op.index, successors[op.index])
            final = not downstream.weights
            m = _measure(trace, graph, op, p.std, p.fan_in, p.fan_out, final)
            if m is None or m.ratio_outside <= self.opts["max_ratio"] or m.gain_drift <= self.opts["min_gain_drift"]:
                continue
            if downstream.normalized_everywhere:
                continue
            if m.too_small and (final or op.index in scale_set_elsewhere):
                continue
            if final and not downstream.reaches_output:
                continue
            candidates.append(m)
        reported = self._compounding(candidates, chains)
        holds = _output_holds(trace, graph, reported, successors)
        for m in reported:
            yield self._report(trace, m, holds.get(m.op.index, ()))

    def _compounding(self, candidates: list["Mismatch"], chains: "_Chains") -> list["Mismatch"]:
        """Too-large layers stand alone; too-small ones only where two or more in one un-normalized
        chain compound the shrink past `min_compound_shrink`: the product of their signal drifts, what
        each passes on after its activation (`Mismatch.fix_growth`)."""
        shrink: dict[int, float] = {}
        count: dict[int, int] = {}
        for m in candidates:
            if m.too_small:
                r = chains.root(m.op.index)
                shrink[r] = shrink.get(r, 1.0) * m.fix_growth
                count[r] = count.get(r, 0) + 1
        out = []
        for m in candidates:
            if m.too_small:
                r = chains.root(m.op.index)
                m.chain_shrink = shrink[r]
                if count[r] < 2 or m.chain_shrink <= self.opts["min_compound_shrink"]:
                    continue
            out.append(m)
        return out

    def _report(self, trace: Trace, m: "Mismatch", holds: tuple[OutputHold, ...] = ()):
        direction = "too small" if m.too_small else "too large"
        initializer = correct_init(m.nonlinearity, m.slope).family
        slope = f" slope {fmt(m.slope)}" if m.slope is not None else ""
        dropout = (f"; after dropout p={m.dropout_p:g} the critical std is {fmt(m.critical)}" if m.dropout_p else "")
        chain = (f"; with the other too-small layers before the next normalization the signal shrinks "
                 f"{fmt(m.chain_shrink)}x" if m.too_small and m.chain_shrink > m.fix_growth * 1.01 else "")
        fix = reinit_fix(trace, m.op.module, m.nonlinearity, m.slope, why=f"weight std {fmt(m.std)} is {direction}")
        held = ""
        if holds:
            fix.params = dataclasses.replace(fix.params, chain=tuple(h.init for h in holds))
            fix.description += f"; {describe_holds(holds)}"
            held = "".join(f"; {h.describe()}: {h.init.spec.render(module_expr(h.init.target, h.init.param))}"
                           for h in holds)
        return self.diagnostic(
            m.op.module,
            f"weight std {fmt(m.std)}, expected {fmt(m.expected)} for {m.nonlinearity}{slope} ({initializer}{dropout}): "
            f"{fmt(m.ratio)}x {direction} (measured, it scales the signal's std by {fmt(m.gain)} where a "
            f"gain-correct layer gives {fmt(m.correct_gain)}{chain}); re-init with {fix.params.call(m.op.module)}{held}",
            location=trace.location_of(m.op.module),
            evidence={"param": m.op.weight, "std": m.std, "expected_std": m.expected, "critical_std": m.critical,
                      "ratio": m.ratio, "direction": "small" if m.too_small else "large",
                      "nonlinearity": m.nonlinearity, "slope": m.slope,
                      "initializer": initializer, "measured_gain": m.gain, "correct_gain": m.correct_gain,
                      "dropout_p": m.dropout_p, "chain_shrink": m.chain_shrink if m.too_small else None,
                      "held_outputs": [h.init.target for h in holds]},
            fix=fix,
        )


@dataclass
class Mismatch:
    op: OpRecord
    std: float
    expected: float          # what the gain-correct init draws (initmath): what the message quotes and the fix draws
    critical: float          # the expected std corrected for the dropout in front (= expected without one)
    ratio: float             # std vs critical, >= 1, in the direction of `too_small`
    ratio_outside: float     # how far outside the accepted fan_in..fan_out range (<= 1 inside)
    too_small: bool
    nonlinearity: str
    slope: Optional[float]
    gain: float              # measured: output std (bias removed) / input RMS
    correct_gain: float      # what a gain-correct layer gives on this input
    gain_drift: float        # gain vs correct_gain, >= 1 in the direction of `too_small` (< 1: opposite)
    rms_in: float = 1.0      # measured RMS of the layer's input
    dropout_p: float = 0.0
    chain_shrink: float = 1.0

    @property
    def fix_growth(self) -> float:
        """How much its re-init multiplies the signal (std) this layer passes on after its activation:
        for a too-small layer (> 1), how much less it passes on than a gain-correct layer would on the
        same input; < 1 for a too-large one. The ratio of the gains, where the activation's output
        scales with its input (ReLU-family exactly, linear, the near-linear rest); for a bounded one
        (tanh, sigmoid) the ratio of its output stds at the two pre-activation stds (Gaussian,
        initmath): a correct tanh layer saturates part of its larger signal away, so a too-small one
        loses less than its gain says."""
        correct = bounded_output_std(self.nonlinearity, self.correct_gain * self.rms_in)
        actual = bounded_output_std(self.nonlinearity, self.gain * self.rms_in)
        if correct is None or actual is None:
            return self.correct_gain / self.gain if self.gain > 0 else math.inf
        return correct / actual if actual > 0 else math.inf


def _measure(trace: Trace, graph: Graph, op: OpRecord, std: float, fan_in: int, fan_out: int,
             final: bool) -> Optional[Mismatch]:
    """Weight std vs the gain-correct range, and the layer's measured gain vs a correct layer's.

    A hidden layer may be scaled for the forward pass (fan_in) or the backward pass (fan_out); the
    final layer is judged on its output, so only the forward values count for it (a 10-class head's
    fan_out std, 1/sqrt(10), would let its logits grow unseen)."""
    nonlin, slope = graph.nonlinearity_after(op)
    keep = 1.0 - _dropout_before(graph, op)
    expected = correct_init(nonlin, slope).std(fan_in, fan_out)
    critical = expected * math.sqrt(keep)
    # The forward-preserving std (fan_in) and the backward-preserving one (fan_out) are both correct.
    forward = symmetric_std(fan_in, nonlin, slope) * math.sqrt(keep)
    backward = symmetric_std(fan_out, nonlin, slope) * math.sqrt(keep)
    accepted = (forward, critical) if final else (forward, backward, critical)
    lo, hi = min(accepted), max(accepted)
    if not (std > 0 and math.isfinite(std)):
        return None
    too_small = std < lo
    ratio_outside = lo / std if too_small else std / hi
    ratio = critical / std if too_small else std / critical
    measured = measured_gain(trace, op)
    if measured is None:
        return None
    gain, rms_in = measured
    correct_gain = forward * math.sqrt(fan_in)
    if gain == 0:
        drift = math.inf if too_small else 0.0
    else:
        drift = correct_gain / gain if too_small else gain / max(correct_gain, 1e-30)
    return Mismatch(op=op, std=std, expected=expected, critical=critical, ratio=ratio, ratio_outside=ratio_outside, too_small=too_small,
                    nonlinearity=nonlin, slope=slope, gain=gain, correct_gain=correct_gain, gain_drift=drift,
                    rms_in=rms_in, dropout_p=round(1.0 - keep, 4))


def _dropout_before(graph: Graph, op: OpRecord) -> float:
    """The p of an active dropout on the layer's input path (since the previous layer), else 0."""
    drop = graph.first(op, lambda o: o.kind == "dropout", up=True,
                       through=lambda o: is_passthrough(o) or o.kind in opnames.ACTIVATIONS or o.kind == "pool")
    if drop is None:
        return 0.0
    p = drop.args.get("p", 0.0)
    return p if drop.args.get("training", True) and 0 < p < 1 else 0.0


@dataclass
class Downstream:
    weights: list[OpRecord]       # weight layers the output reaches with no normalization in between
    reaches_output: bool
    normalized_everywhere: bool   # every path meets a norm before any weight layer (and some path does)


def _downstream(graph: Graph, op: OpRecord) -> Downstream:
    """Follow the layer's output to the next weight layers, stopping at normalizations.

    A linear/conv that is itself directly followed by a norm counts as normalized (conv→conv→BN,
    ConvNeXt's downsample→dwconv→LayerNorm): the scale of its input does not survive the norm.
    """
    found = Downstream([], graph.is_model_output(op), False)
    norms = 0

    def onward(o: OpRecord) -> bool:
        return not normalizes(o) and not applies_weights(o)

    for nxt in graph.walk(op, through=onward):
        found.reaches_output = found.reaches_output or graph.is_model_output(nxt)
        if normalizes(nxt):
            norms += 1
        elif applies_weights(nxt):
            if nxt.kind in ("linear", "conv") and graph.followed_by_norm(nxt):
                norms += 1
            else:
                found.weights.append(nxt)
    found.normalized_everywhere = norms > 0 and not found.weights
    return found


def _direct_successors(graph: Graph, op: OpRecord) -> list[OpRecord]:
    """The weight layers this layer's output reaches through one-input ops (activations, views, dropout,
    pooling, bias adds): the layers whose shrink compounds with its own. A gate or a residual add mixes
    in another signal, whose scale the next layer sees as well (MaxViT's SE gates and shortcuts: a
    product of drifts along them measures nothing)."""
    def single(o: OpRecord) -> bool:
        return len(graph.tensor_inputs(o)) == 1 and not normalizes(o) and not applies_weights(o)

    return [o for o in graph.walk(op, through=single) if applies_weights(o)]


class _Chains:
    """Union-find over weight layers linked by un-normalized paths: the chains a shrink compounds along."""

    def __init__(self):
        self.parent: dict[int, int] = {}

    def root(self, i: int) -> int:
        self.parent.setdefault(i, i)
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def link(self, i: int, others: list[int]) -> None:
        for j in others:
            self.parent[self.root(j)] = self.root(i)


def _output_holds(trace: Trace, graph: Graph, reported: list[Mismatch],
                  successors: dict[int, list[int]]) -> dict[int, tuple[OutputHold, ...]]:
    """Per reported layer that feeds the model's final layer: that layer's rescale, when the re-inits
    of the reported layers in line before it (each the only input of the next) raise its input past
    what the output hold allows (rules/_output_hold.py)."""
    by_index = {m.op.index: m for m in reported}
    feeders: dict[int, list[int]] = {}
    for i, nxt in successors.items():
        for j in nxt:
            feeders.setdefault(j, []).append(i)
    changed = {m.op.module for m in reported}
    holds = {}
    for m in reported:
        finals = final_layers_fed(graph, m.op)
        if not finals:
            continue
        growth, at = m.fix_growth, m.op.index
        while len(feeders.get(at, ())) == 1 and feeders[at][0] in by_index and len(successors[feeders[at][0]]) == 1:
            at = feeders[at][0]
            growth *= by_index[at].fix_growth
        held = output_holds(trace, graph, finals, growth, changed)
        if held:
            holds[m.op.index] = held
    return holds
