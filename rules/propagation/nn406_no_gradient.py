from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import is_all_off_activation
from nnlint.rules.propagation._gradients import short_location
from nnlint.rules.structure.nn705_unused_module import unused_modules
from nnlint.trace import ops as opnames
from nnlint.trace import vocab
from nnlint.trace.graph import WALK_LIMIT, Graph
from nnlint.trace.records import OpRecord, ParamRecord, Trace
from nnlint.trace.structure import Structure

MULTIPLYING = ("linear", "conv", "matmul", "mul", "bilinear") + tuple(opnames.NORM_OPS)
MEAN_REMOVING = {"batch_norm", "layer_norm", "group_norm", "instance_norm"}   # not rms_norm: it keeps the mean


class NoGradient(Rule):
    """## What it does
    After the backward pass, finds trainable parameters (`requires_grad=True`) that received no
    gradient at all (`.grad` is None), or an exactly-zero one, and names the module they belong to: one
    diagnostic per module, listing its parameters; a module all of whose parameters are cut off (a
    detached backbone) is reported once, not per layer.

    - **None**: the loss does not depend on the parameter. Either the module is never called in
      `forward` (then NN705 unused-module reports the module, and this rule says nothing more about
      it; a parameter its module never reads is reported here, warning), or it runs but its result is
      cut from the loss (error): by `.detach()` (the
      message gives the file:line of the `detach` call, as recorded by the tracer), `.data`, `.item()`,
      a `torch.no_grad()` block, or an output the loss ignores. A parameter its module does not read on
      this batch although the module runs (a mask token, read only when a mask is passed: DINOv2's
      `embeddings.mask_token`) is an info.
    - **Exactly zero**: the gradient flows but is zero everywhere (warning): a dead path, e.g. every
      unit of the ReLU after it is inactive (NN203).
    - **Not selected**: exactly zero, and every path from the parameter to the loss goes through an
      index by a tensor (`logits[mask]`, `gather`) with no inactive ReLU on the way (info): a matched or
      sampled loss picked none of its outputs on this batch. torchvision SSD300/SSDlite's heads of the
      coarsest maps on a 2-box batch (benchmarks/TRIAGE.md, Q); another batch selects them.

    Zero gradients are expected, and not reported, when an exactly-zero factor from elsewhere multiplies
    what the parameter feeds: the last layer of a residual branch or its last norm weight set to zero
    (torchvision's `zero_init_residual`, Fixup, SkipInit, ReZero), a zero-init output layer, a weight
    computed from a zero gain (timm's NF-Nets: `ScaledStdConv2d` with `gain_init=0`), a random mask that
    came out all zero on this batch (stochastic depth that dropped a branch for every sample of a small
    batch). The layers before it get an exactly-zero gradient at the first step and a real one once
    that factor moves or the mask draws again: healthy. Nor is a bias whose every path reaches a
    mean-removing norm through affine ops only: its gradient is zero analytically (the bias is wasted,
    which is the bias-before-norm finding).

    Frozen parameters (`requires_grad=False`) and tied duplicates are not checked.

    ## Why is this bad?
    A parameter without a gradient never changes: the optimizer steps over it, weight decay alone
    shrinks it. A detached backbone silently trains only the head; an unused layer costs memory and
    may mean the forward does not do what its author thinks.

    ## Options
    None.

    ## Fix safety
    No automatic fix: only the author knows whether the cut is a bug or a freeze.
    """

    code = "NN406"
    name = "no-gradient"
    severity = "error"
    summary = "a trainable parameter gets no gradient (None) or an exactly-zero one: it never trains"
    reads = frozenset({"gradients"})

    examples = (
        Faulty("""
            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.backbone = nn.Sequential(nn.Linear(32, 64), nn.ReLU())
                    self.head = nn.Linear(64, 10)

                def forward(self, x):
                    features = self.backbone(x).detach()     # the backbone never trains
                    return self.head(features)


            model = Net()
            batch = torch.randn(64, 32)
            """, module='backbone'),
        Healthy("""
            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.backbone = nn.Sequential(nn.Linear(32, 64), nn.ReLU())
                    self.head = nn.Linear(64, 10)

                def forward(self, x):
                    return self.head(self.backbone(x))


            model = Net()
            batch = torch.randn(64, 32)
            """, note="""
            or, if freezing is intended, `self.backbone.requires_grad_(False)` (and leave it out of the optimizer).
            """),
    )

    def check(self, trace):
        if not trace.backward_ran:
            return
        graph = Graph.of(trace)
        uses = _first_uses(graph)
        blockers = _zero_multipliers(trace, graph)
        called = {c.module for c in trace.calls if c.phase == "train"}
        uncalled = tuple(f"{m}." for m in unused_modules(trace))   # NN705's: the cause is said there
        findings: dict[str, Finding] = {}
        for p in trace.params.values():
            if not p.requires_grad or p.tied_to or p.grad_nonfinite:
                continue
            use = uses.get(p.name)
            if p.grad_norm is None:
                if use is None and p.name.startswith(uncalled):
                    continue
                if use is not None or _opaque(trace, p):
                    kind = "cut"
                else:
                    kind = "unread" if p.module in called else "unused"
                findings[p.name] = Finding(p, kind, use)
            elif p.grad_all_zero:
                if use is not None and (_explained_by_zero_init(graph, use, blockers, p.name)
                                        or _removed_by_a_norm(graph, use, p)):
                    continue
                unselected = use is not None and _dead_cause_op(graph, [use]) is None and _only_through_selection(graph, use)
                findings[p.name] = Finding(p, "unselected" if unselected else "zero", use)
        for module, group in _group_by_module(trace, findings):
            yield self._report(trace, graph, module, group)

    def _report(self, trace: Trace, graph: Graph, module: str, group: list["Finding"]):
        names = [f.param.name for f in group]
        listed = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        kinds = {f.kind for f in group}
        plural = len(names) > 1
        what = f"{len(names)} parameter{'s' if plural else ''} ({listed})"
        get = "get" if plural else "gets"
        evidence = {"params": names, "kinds": sorted(kinds)}
        if "cut" in kinds:
            cut = _detach_after(graph, [f.use for f in group if f.use is not None])
            if cut is not None:
                where = f" at {short_location(cut.location)}" if cut.location else ""
                how = f"the graph is cut by `.{cut.func}()`{where}"
                evidence["cut_at"] = str(cut.location) if cut.location else None
            else:
                how = ("its output does not reach the loss (a torch.no_grad() block, .data, .item(), or an "
                       "output the loss ignores)")
            message = (f"{what} {get} no gradient: {_label(module)} runs in forward, but {how}; reconnect it, or "
                       "call requires_grad_(False) on it if it is frozen on purpose")
            severity = "error"
        elif kinds == {"unused"}:
            # a module never called is NN705's; here the module runs but never reads these parameters
            message = (f"{what} {get} no gradient: no op in forward reads {'them' if plural else 'it'}; use "
                       f"{'them' if plural else 'it'} or delete {'them' if plural else 'it'} (or requires_grad_(False) "
                       "if kept on purpose)")
            severity = "warning"
        elif kinds == {"unselected"}:
            message = (f"{what} {get} an exactly-zero gradient: every path from {_label(module)} to the loss goes "
                       "through an index or gather that picked none of its outputs on this batch (a matched or "
                       "sampled loss: anchor matching, hard-negative mining). Expected when that layer's outputs "
                       "are seldom chosen; another batch, or more targets per sample, selects them")
            severity = "info"
        elif kinds == {"unread"}:
            message = (f"{what} {get} no gradient: {_label(module)} runs in forward but does not read "
                       f"{'them' if plural else 'it'} on this batch; expected if {'they are' if plural else 'it is'} "
                       "read only for some inputs (a mask token read when a mask is passed), else use or delete "
                       f"{'them' if plural else 'it'}")
            severity = "info"
        else:
            cause = _dead_cause(graph, [f.use for f in group if f.use is not None])
            message = (f"{what} {get} an exactly-zero gradient: {cause}; {'they' if plural else 'it'} will not train until that changes. "
                       "Re-initialize the layers on that path, or call requires_grad_(False) if this is on purpose")
            severity = "warning"
        return self.diagnostic(module, message, severity=severity, location=trace.location_of(module), evidence=evidence)


@dataclass
class Finding:
    param: ParamRecord
    kind: str                     # "unused" | "unread" | "cut" | "zero" | "unselected"
    use: Optional[OpRecord]       # the first training-pass op that reads the parameter


def _first_uses(graph: Graph) -> dict[str, OpRecord]:
    uses: dict[str, OpRecord] = {}
    for op in graph.ops:
        for s in op.inputs:
            name = graph.param_serials.get(s)
            if name is not None:
                uses.setdefault(name, op)
    return uses


def _opaque(trace: Trace, p: ParamRecord) -> bool:
    """A parameter of a region the tracer could not see into (TorchScript, C++): its use is unknown."""
    return any(p.module == r.module or p.module.startswith(r.module + ".") for r in trace.incomplete)


def _zero_multipliers(trace: Trace, graph: Graph) -> list[tuple[OpRecord, set[int]]]:
    """Ops that multiply by an exactly-zero factor, with the serials of their zero inputs: a zero weight,
    a zero norm scale or layer scale, a weight computed from a zero gain (NF-Nets' ScaledStdConv with
    timm's gain_init=0), a random mask that came out all zero (stochastic depth that dropped a branch
    for every sample of a small batch)."""
    structure = Structure.of(trace)
    out = []
    for op in graph.ops:
        if op.kind not in MULTIPLYING:
            continue
        zeros = set()
        for s in op.inputs:
            name = graph.param_serials.get(s)
            p = trace.params.get(name) if name else None
            if p is not None:
                if p.all_zero and p.attr != "bias":
                    zeros.add(s)
                continue
            x = structure.summary(s)
            if x is not None and not x.nonfinite and x.std == 0 and x.mean == 0 and x.numel > 0:
                zeros.add(s)
        if zeros:
            out.append((op, zeros))
    return out


def _explained_by_zero_init(graph: Graph, use: OpRecord, blockers: list[tuple[OpRecord, set[int]]], param: str) -> bool:
    """True when a zero factor downstream of the parameter's use multiplies what the parameter feeds:
    the zero comes from elsewhere (a zero parameter, gain or random mask), not from the parameter's own
    path being all zero (a dead ReLU's zeros are NN203's and stay reported). Its own op does not count:
    a zero weight's layer still passes a gradient to the weight."""
    if not blockers:
        return False
    downstream = graph.descendant_serials(use)
    for b, zeros in blockers:
        if b.index > use.index and any(s in downstream for s in b.inputs if s not in graph.param_serials) \
                and any(z not in downstream for z in zeros):
            return True
    # Upstream too: a layer fed (through a ReLU that is then all off) by a zero layer sees an all-zero
    # input, so its weight's gradient is zero. NN101 reports that zero layer, whose fix clears this.
    inputs = {s for s in use.inputs if s not in graph.param_serials}
    for b, zeros in blockers:
        if b.index < use.index and b is not use and any(z in graph.param_serials for z in zeros) \
                and inputs & graph.descendant_serials(b):
            return True
    return False


# Ops through which a per-channel constant stays a per-channel constant (up to scale): a bias added
# before them reaches a mean-removing norm unchanged in kind, and the norm takes it out. `cat` keeps
# each channel's values when it joins channels (HGNetV2 concatenates its layers' outputs before the
# aggregation conv + BN); along any other dim the constant would cover only part of the positions.
_AFFINE = {"add", "sub", "mul", "div", "linear", "conv", "matmul", "pool", "mean"}


def _keeps_channel_constants(o: OpRecord) -> bool:
    if o.kind in _AFFINE or vocab.is_passthrough(o):
        return True
    dim, shape = o.args.get("dim"), o.out.shape if o.out is not None else ()
    return o.kind == "cat" and dim is not None and len(shape) >= 3 and dim % len(shape) == 1


def _removed_by_a_norm(graph: Graph, use: OpRecord, p: ParamRecord) -> bool:
    """A bias (a 1-D shift) whose every path meets a mean-removing norm through affine ops only: its
    gradient is zero analytically, and a float sum that comes out exactly 0.0 is that, not a cut path
    (timm's HGNetV2 LearnableAffineBlock before a conv and BatchNorm). The bias is wasted, which the
    bias-before-norm rule says."""
    if len(p.shape) != 1:
        return False
    ends = [o for o in graph.walk(use, through=_keeps_channel_constants) if not _keeps_channel_constants(o)]
    return bool(ends) and all(o.kind in MEAN_REMOVING for o in ends)


def _detach_after(graph: Graph, uses: list[OpRecord]) -> Optional[OpRecord]:
    """The first `detach` op downstream of any of these uses: where the graph is cut."""
    reach: set[int] = set()
    for u in uses:
        reach |= graph.descendant_serials(u, limit=20000)
    for op in graph.ops:
        if op.func in ("detach", "detach_") and any(s in reach for s in op.inputs):
            return op
    return None


def _dead_cause_op(graph: Graph, uses: list[OpRecord]) -> Optional[tuple[OpRecord, bool]]:
    """An all-inactive ReLU next to the parameters, the usual source of exactly-zero gradients, and
    whether it is downstream (no gradient comes back through it) rather than feeding them (a weight's
    gradient is dL/dy times its input, and the input is all zeros)."""
    for up in (False, True):
        for use in uses:
            dead = graph.first(use, is_all_off_activation, up=up)
            if dead is not None:
                return dead, not up
    return None


def _dead_cause(graph: Graph, uses: list[OpRecord]) -> str:
    found = _dead_cause_op(graph, uses)
    if found is None:
        return "the gradient that reaches them is zero everywhere (a dead path: an inactive ReLU, a multiplication by zero, a constant output)"
    dead, downstream = found
    if downstream:
        return f"every unit of {_op_name(dead)} is inactive on this batch, so no gradient passes it back (see NN203)"
    return f"the layer's input is all zeros, as every unit of {_op_name(dead)} is inactive on this batch (see NN203)"


# Ops that pick some elements of a tensor by an index tensor: a loss that matches or samples outputs
# (SSD's anchor matcher and hard-negative mining) reads its logits through them.
_SELECTIONS = {"__getitem__", "index_select", "gather", "masked_select", "take", "take_along_dim"}


def _is_selection(graph: Graph, op: OpRecord) -> bool:
    """An index by a tensor (`x[mask]`, `x[idx]`, gather): a second tensor operand is the index. A
    slice or an int index (`x[:, 0]`) has none."""
    return op.func in _SELECTIONS and len(graph.tensor_inputs(op)) >= 2


def _only_through_selection(graph: Graph, use: OpRecord) -> bool:
    """Every path from the parameter's use to the model's outputs meets a selection by a tensor index:
    a zero gradient is then what a loss that selected none of these outputs gives, not a dead path.
    (torchvision SSD300/SSDlite's coarsest heads on a 2-box batch, benchmarks/TRIAGE.md Q.)"""
    if graph.is_model_output(use):
        return False
    met, seen = False, 0
    for o in graph.walk(use, through=lambda o: not _is_selection(graph, o)):
        seen += 1
        if _is_selection(graph, o):
            met = True
        elif graph.is_model_output(o):
            return False
    return met and seen < WALK_LIMIT     # a walk cut at its limit proves nothing



def _op_name(op: OpRecord) -> str:
    return op.module or f"{op.func}()"


def _group_by_module(trace: Trace, findings: dict[str, Finding]):
    """(module, findings) pairs: the highest module all of whose trainable parameters are affected, else
    each module with its own affected parameters. Never the whole model as one group."""
    trainable = [p for p in trace.params.values() if p.requires_grad and not p.tied_to and not p.grad_nonfinite]
    under: dict[str, list] = {}   # module -> the trainable parameters inside it, in order
    for p in trainable:
        parts = p.name.split(".")
        for depth in range(1, len(parts)):
            under.setdefault(".".join(parts[:depth]), []).append(p)
    done: set[str] = set()
    for module in trace.modules:
        if module == "":
            continue
        inside = under.get(module, [])
        if not inside or all(p.name in done for p in inside):
            continue
        if all(p.name in findings for p in inside) and _same_kind(findings, inside):
            done.update(p.name for p in inside)
            yield module, [findings[p.name] for p in inside]
    rest: dict[str, list[Finding]] = {}
    for name, f in findings.items():
        if name not in done:
            rest.setdefault(f.param.module, []).append(f)
    for module, group in rest.items():
        yield module, group


def _same_kind(findings: dict[str, Finding], params: list[ParamRecord]) -> bool:
    return len({findings[p.name].kind for p in params}) == 1


def _label(module: str) -> str:
    return module if module else "the model"
