from __future__ import annotations

from typing import Optional

from nnlint.diagnostics import Fix
from nnlint.fix.kinds.zero_init import ZeroInit, ZeroInitParams
from nnlint.initmath import ACTIVE_BIAS
from nnlint.registry import Chart, Faulty, Healthy, Rule
from nnlint.rulekit import fmt
from nnlint.trace import ops as opnames
from nnlint.trace.records import OpRecord
from nnlint.trace.structure import StreamStep, Structure
from nnlint.pyexpr import module_expr


RESIDUAL_CHART = Chart(
    "residual", "Residual stream variance",
    "Variance of the stream after each residual block, log scale. Roughly constant or linear growth is healthy; "
    "doubling per block is the un-normalized growth.",
    x_label="residual add, execution order", y_label="variance (log)", empty="no residual connection found",
    log_y=True, nested=True)

class ResidualVarianceGrowth(Rule):
    """## What it does
    Finds the residual blocks `x + f(x)` (identity skips, and projection shortcuts `P(x) + f(x)` like
    torchvision's downsample blocks; written as `x = x + self.block(x)`, `out += identity`,
    `torch.add` or Hugging Face style) and the stream that runs through consecutive blocks. A block
    is un-normalized when its branch `f` holds no normalization layer (BatchNorm, LayerNorm, GroupNorm,
    RMSNorm, or any module whose type name says `Norm`, such as a hand-written RMSNorm) and measurably
    keeps the signal's scale: branch gain `Var(f(x)) / Var(x) >= min_branch_gain`, read from the add's
    operands. A run of at least `min_blocks` such blocks in a row, along which the stream's variance
    grows at least `min_growth` times, is reported on every such block of the run (on the branch's
    last weight layer, the one to zero-init), with the per-block factors and the run's total growth.

    A projection block `P(x) + f(x)` whose shortcut has no normalization does not reset the stream:
    the run and its growth go on through it, but it is not reported itself. With a normalized
    shortcut (torchvision's conv + BatchNorm downsample) the stream restarts there, and so does the run;
    a normalization on the stream between blocks (post-LN: `LayerNorm(x + f(x))`) ends the run too.

    Branches with a normalization (BatchNorm at the end, pre-LN/RMSNorm at the start) add a roughly
    constant variance instead, so the stream grows linearly: healthy. When such branches end in a norm
    whose weight is not zero, one `info` suggests zero-initializing those weights.

    ## Why is this bad?
    An un-normalized branch that keeps the scale of its input adds a variance comparable to the
    stream's own, so each block multiplies the stream's variance by about `1 + gain`: with Kaiming
    init about 2x per block, and 2^depth over the network. The late blocks see huge activations, the
    branches' relative contribution shrinks, and the gradients through the stream explode.

    Threshold evidence (library models at their own init): total growth alone cannot decide. Hugging Face GPT-2
    (pre-LN) grows the stream 93x over 12 blocks and Llama (RMSNorm) 138x over 8, both healthy: each
    pre-norm branch adds a constant. torchvision ResNet-50 (BatchNorm) grows additively (per-block
    factors 1.47, 1.35, 1.26 ...), with zero_init_residual it stays flat, BERT (post-LN) stays at 1.0,
    ConvNeXt (layer scale 1e-6, branch gain ~1e-12) stays flat: all quiet here because each branch is
    normalized or scaled down. The same ResNet-50 with BatchNorm replaced by Identity grows about 2x per
    block, 30,000x in all, and timm's resnet18 without norms multiplies by 6.6, 2.7, 1.7, 1.8, 1.9 at its
    identity-skip blocks: their branches have gains near 1 or more (1.1 to 3.7 in a quarter-width copy
    of the no-norm ResNet-50), far above 0.5, and are reported. Its downsampling blocks do not reset the
    un-normalized stream (0.27 -> 0.29, 4.72 -> 5.76), so resnet18's five identity blocks, one or two per
    stage, make one run, not five runs of one. A single block doubling the
    variance is harmless, hence `min_blocks` 2 and `min_growth` 3 (two Kaiming blocks give about 4x;
    two blocks at the minimum gain 0.5 give 2.25x).

    ## Options
    - `min_branch_gain` (default 0.5): a branch whose `Var(f(x)) / Var(x)` is below this is scaled
      down enough not to compound.
    - `min_blocks` (default 2): a run needs this many un-normalized blocks in a row.
    - `min_growth` (default 3.0): the run's total variance growth must reach this.
    - `suggest_zero_init` (default true): the `info` about normalized branches whose last norm weight
      could be zero-initialized.

    ## Fix safety
    Safe: zero-initializes the weight of the branch's last weight layer (for the info: the branch's
    last norm weight, like torchvision's `zero_init_residual=True`); the architecture is unchanged.
    Where a ReLU (or ReLU6) follows that layer inside the branch (torchvision RAFT's norm-free context
    encoder: `relu(conv3(...))` before the add), a zero layer outputs relu(bias), dead for good in
    every channel whose bias is not positive (NN101 said so on the re-check, and on RAFT-small the
    fix was undone); there the fix also sets the layer's bias to 0.01, so every unit starts open and
    the block starts as the identity plus a constant 0.01. Without a bias there is no automatic fix.

    ## References
    - Zhang, Dauphin & Ma 2019, Fixup Initialization: Residual Learning Without Normalization.
    - De & Smith 2020, Batch Normalization Biases Residual Blocks Towards the Identity Function.
    - Goyal et al. 2017, Accurate, Large Minibatch SGD (zero-init of the last BN gamma).
    """

    code = "NN403"
    name = "residual-variance-growth"
    severity = "warning"
    summary = "un-normalized residual branches multiply the stream's variance block after block"
    reads = frozenset({"forward"})
    cause = ("run_growth",)
    chart = RESIDUAL_CHART
    options = {"min_branch_gain": 0.5, "min_blocks": 2, "min_growth": 3.0, "suggest_zero_init": True}
    fixable = "safe"

    examples = (
        Faulty("""
            class Block(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc1, self.fc2 = nn.Linear(64, 64), nn.Linear(64, 64)
                    for fc in (self.fc1, self.fc2):
                        nn.init.kaiming_normal_(fc.weight, nonlinearity="relu")

                def forward(self, x):
                    return x + self.fc2(F.relu(self.fc1(x)))   # no normalization in the branch


            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.blocks = nn.ModuleList(Block() for _ in range(4))
                    self.head = nn.Linear(64, 10)

                def forward(self, x):
                    for block in self.blocks:
                        x = block(x)
                    return self.head(x)


            model = Net()
            batch = torch.randn(64, 64)
            """, module='blocks.0.fc2'),
        Healthy("""
            class Block(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc1, self.fc2 = nn.Linear(64, 64), nn.Linear(64, 64)
                    nn.init.kaiming_normal_(self.fc1.weight, nonlinearity="relu")
                    nn.init.zeros_(self.fc2.weight)            # each block starts as the identity (Fixup, SkipInit)

                def forward(self, x):
                    return x + self.fc2(F.relu(self.fc1(x)))


            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.blocks = nn.ModuleList(Block() for _ in range(4))
                    self.head = nn.Linear(64, 10)

                def forward(self, x):
                    for block in self.blocks:
                        x = block(x)
                    return self.head(x)


            model = Net()
            batch = torch.randn(64, 64)
            """, note="""
            or scale the branch down (layer scale `gamma * f(x)` with gamma 1e-6; GPT-2's 1/sqrt(2N) output
            projections), or normalize it (`BatchNorm` after each conv, or a pre-norm `LayerNorm` first).
            """),
    )

    def check(self, trace):
        structure = Structure.of(trace)
        reported = {s.block.add.index for s in structure.stream if self._unnormalized(structure, s)}
        # An un-normalized projection shortcut P(x) + f(x) does not reset the stream: the run, and its
        # growth, go on through it. It is not reported itself (x + f(x) is the form that doubles).
        carried = {s.block.add.index for s in structure.stream
                   if s.block.projection and not structure.skip_norms(s.block)}
        for run in _runs(structure.stream, reported, carried):
            growth = run[-1].var_out / run[0].var_in
            members = [s for s in run if s.block.add.index in reported]
            if len(members) < self.opts["min_blocks"] or growth < self.opts["min_growth"]:
                continue
            for step in members:
                d = self._growth_diagnostic(structure, run, members, step, growth)
                if d is not None:
                    yield d
        if self.opts["suggest_zero_init"]:
            yield from self._zero_init_suggestion(structure)

    def _unnormalized(self, structure: Structure, step: StreamStep) -> bool:
        """An identity block x + f(x) whose branch has no norm and keeps the scale of x."""
        b = step.block
        return not b.projection and step.var_in > 0 and not structure.branch_norms(b) \
            and step.gain >= self.opts["min_branch_gain"]

    def _growth_diagnostic(self, structure: Structure, run: list[StreamStep], members: list[StreamStep],
                           step: StreamStep, growth: float):
        trace = structure.trace
        last = structure.last_weight_layer(step.block)
        target = _param_target(structure, last)
        if target is None:
            return None
        module, attr = target
        shut = _shut_at_zero(structure, last)
        factors = [run[0].var_out / run[0].var_in] + [s.factor for s in run[1:]]
        names = [structure.block_name(s.block) for s in run]
        block = structure.block_name(step.block)
        shown = _listed([fmt(f) + (" (downsampling)" if s.block.projection else "") for f, s in zip(factors, run)], 10)
        between = len(run) - len(members)
        count = f"{len(members)} such blocks" + (f", {len(run)} with the downsampling blocks between them" if between else "")
        weight = module_expr(module, attr)
        if shut is None:
            advice = f"zero-init the branch's last layer, nn.init.zeros_({weight}), so each block starts as the identity"
            fix = _zero_init_fix(module, attr, f"so block {block} starts as the identity")
        elif f"{module}.bias" in trace.params:
            # relu(0) passes no gradient: the zeroed layer's bias keeps every unit open
            bias = module_expr(module, "bias")
            advice = (f"zero-init the branch's last layer with a small positive bias, nn.init.zeros_({weight}) and "
                      f"nn.init.constant_({bias}, {ACTIVE_BIAS:g}) (the {shut} after it stays open: relu(0) would "
                      "pass no gradient), so each block starts as the identity")
            fix = _zero_init_fix(module, attr, f"and its bias to {ACTIVE_BIAS:g} so that the {shut} after it stays "
                                               f"open, so block {block} starts as the identity", bias=ACTIVE_BIAS)
        else:
            advice = (f"the {shut} after the branch's last layer would leave a zero-initialized layer without a bias "
                      f"dead, so no automatic fix: end the branch in a normalization, or scale {weight} down")
            fix = None
        return self.diagnostic(
            module,
            f"residual block {block}: its branch has no normalization and keeps the signal's scale (gain "
            f"Var(f(x))/Var(x) = {fmt(step.gain)}), so its add multiplies the stream's variance by "
            f"{fmt(step.var_out / step.var_in)}; along the run {names[0]} .. {names[-1]} ({count}) the variance grows "
            f"{fmt(growth)}x (per block {shown}); {advice}",
            location=trace.location_of(module),
            evidence={"block": block, "branch_gain": step.gain, "add_factor": step.var_out / step.var_in,
                      "var_in": step.var_in, "var_out": step.var_out, "run_blocks": names,
                      "run_factors": factors, "run_growth": growth,
                      "reported_blocks": [structure.block_name(s.block) for s in members]},
            fix=fix,
        )

    def _zero_init_suggestion(self, structure: Structure):
        """One info for the normalized branches that end in a norm whose weight is not zero yet."""
        ending: list[tuple[StreamStep, str, str]] = []
        for step in structure.stream:
            norm = structure.last_norm(step.block)
            target = _norm_weight(structure, norm)
            if target is None:
                continue
            p = structure.trace.params.get(f"{target[0]}.{target[1]}")
            if p is not None and not p.all_zero and p.requires_grad:
                ending.append((step, *target))
        if not ending:
            return
        step, module, attr = ending[0]
        names = [structure.block_name(s.block) for s, _, _ in ending]
        factors = _listed([fmt(s.factor) for s, _, _ in ending], 8)
        targets = [f"{m}.{a}" for _, m, a in ending]
        fix = _zero_init_fix(module, attr, f"and the last norm weight of every other residual branch "
                                           f"({_listed(targets, 4)}), like torchvision's zero_init_residual=True",
                             targets=tuple(targets))
        yield self.diagnostic(
            module,
            f"{len(ending)} residual branch(es) ({names[0]}{' .. ' + names[-1] if len(names) > 1 else ''}) end in a "
            f"normalization whose weight is 1: the stream's variance grows additively (per block {factors}), which "
            f"is healthy; zero-initializing each branch's last norm weight (nn.init.zeros_({module_expr(module, attr)}), "
            f"torchvision's zero_init_residual=True) makes every block start as the identity",
            severity="info",
            location=structure.trace.location_of(module),
            evidence={"blocks": names, "targets": targets, "factors": [s.factor for s, _, _ in ending]},
            fix=fix,
        )


def _zero_init_fix(module: str, attr: str, why: str, targets: tuple[str, ...] = (),
                   bias: Optional[float] = None) -> Fix:
    return ZeroInit.make(module, f"zero-initialize {module}.{attr}: nn.init.zeros_({module_expr(module, attr)}), {why}",
                         ZeroInitParams(targets or (f"{module}.{attr}",), bias=bias))


def _shut_at_zero(structure: Structure, last: OpRecord) -> Optional[str]:
    """The activation between the branch's last weight layer and its add that passes no gradient where
    its input is 0 (ReLU, ReLU6): a zeroed layer before it needs a positive bias. None when there is
    none (the layer feeds the add, or a GELU/SiLU, open at 0)."""
    f = structure.graph.follower(last)
    if f.kind == "activation" and opnames.OPEN_ABOVE.get(f.activation, float("-inf")) >= 0.0:
        return f.activation
    return None


def _listed(items: list[str], limit: int) -> str:
    return ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")


def _runs(stream: list[StreamStep], reported: set[int], carried: set[int]) -> list[list[StreamStep]]:
    """Maximal runs along the stream (a block continues the run of the block whose output is its
    input), made of `reported` blocks and the `carried` ones between them: a run starts and ends on a
    reported block. Where a stream forks, the later branch starts a run of its own."""
    runs = []
    taken: set[int] = set()
    for step in stream:
        index = step.block.add.index
        if index not in reported or index in taken:
            continue
        run = [step]
        taken.add(index)
        while True:
            nxt = next((s for s in run[-1].successors
                        if s.block.add.index in reported | carried and s.block.add.index not in taken), None)
            if nxt is None:
                break
            run.append(nxt)
            taken.add(nxt.block.add.index)
        while run[-1].block.add.index not in reported:
            run.pop()
        runs.append(run)
    return runs


def _param_target(structure: Structure, op: Optional[OpRecord]) -> Optional[tuple[str, str]]:
    """(module, attribute) of the weight a weight op uses."""
    if op is None or op.weight is None:
        return None
    p = structure.trace.params.get(op.weight)
    return (p.module, p.attr) if p is not None else None


def _norm_weight(structure: Structure, norm: Optional[OpRecord]) -> Optional[tuple[str, str]]:
    """(module, "weight") of a norm op's affine weight, when it has one."""
    if norm is None:
        return None
    for s in norm.inputs:
        name = structure.graph.param_serials.get(s)
        p = structure.trace.params.get(name) if name else None
        if p is not None and len(p.shape) == 1 and p.attr == "weight":
            return p.module, p.attr
    rec = structure.trace.modules.get(norm.module)
    if rec is not None and f"{norm.module}.weight" in rec.params:
        return norm.module, "weight"
    return None
