"""The mutation benchmark: plant one known fault in a real corpus model, check it, and see whether
nnlint names it: the right code, on the right module.

    python benchmarks/mutations.py                          # the 30 default models, every operator
    python benchmarks/mutations.py --only 'timm/*' --operator zero-weight --operator sigmoid
    python benchmarks/mutations.py --all --json mutations.json   # the whole corpus (slow)

OPERATORS is the table of fault operators; it grows by adding a row. Each operator's `apply(model,
batch, anatomy)` mutates a fresh copy of the model (or its batch) and returns a Mutant: the model and
batch to check and what must be found (any of `codes`, on one of `modules`; an empty module set
means the whole model or its input). The anatomy (corpus/anatomy.py: leaf modules in execution order,
classified by a plain forward pass, not by nnlint) is how an operator picks its target. An operator
that cannot plant a real fault in a model raises NotApplicable with the reason (no dropout to leave
on; every weight layer followed by a normalization, so a scale is invisible to the forward pass, as
measured).

Outcomes per (model, operator): found (a finding that the unmutated model did not have, with an
expected code on an expected module), wrong-module (an expected code elsewhere), wrong-code (only
other new warnings/errors), missed (nothing new), n/a, crash. Recall = found / (applicable pairs).
Every miss is printed with what nnlint said instead; benchmarks/TRIAGE.md analyses why.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch                                                     # noqa: E402
import torch.nn.functional as F                                  # noqa: E402
from torch import nn                                             # noqa: E402

import corpus                                                    # noqa: E402
from corpus.anatomy import Leaf, gated, leaves, next_kinds       # noqa: E402
from corpus.runner import Finding, call, plain_step, run_check, tensors   # noqa: E402

# A planted scale is a real fault when it moves the std of what the model's head reads by more than
# this (either way): below it a normalization absorbed the change, and there is nothing to find.
MEASURABLE = 10.0

# The models the default run mutates: one or two per family and library, small enough that the ~17
# operators on each fit a 2-core machine (about 20 minutes in all); --all takes the whole corpus.
DEFAULT_MODELS = [
    "torchvision/resnet18", "torchvision/alexnet", "torchvision/mobilenet_v3_small", "torchvision/efficientnet_b0",
    "torchvision/densenet121", "torchvision/squeezenet1_1", "torchvision/shufflenet_v2_x0_5",
    "torchvision/regnet_y_400mf", "torchvision/lraspp_mobilenet_v3_large",
    "timm/resnet18", "timm/efficientnet_b0", "timm/convnext_atto", "timm/vit_tiny_patch16_224", "timm/mixer_s16_224",
    "timm/nf_regnet_b0", "timm/repvgg_a0", "timm/dla34", "timm/poolformer_s12",
    "hf/gpt2", "hf/llama", "hf/bert", "hf/t5", "hf/bart", "hf/mixtral", "hf/mamba", "hf/vit", "hf/wav2vec2",
    "hf/whisper", "hf/convnext", "hf/resnet",
]


class NotApplicable(Exception):
    """The operator cannot plant a real fault in this model (the message says why)."""


@dataclass
class Mutant:
    model: nn.Module
    batch: Any
    codes: frozenset[str]          # any of these counts as found
    modules: frozenset[str]        # on one of these modules (or inside one); empty: the model or its input
    how: str                       # what was done, for the report
    match_params: bool = False     # NN406: the finding's evidence lists a parameter of one of `modules`


@dataclass(frozen=True)
class Operator:
    name: str
    apply: Callable[[nn.Module, Any, list[Leaf]], Mutant]
    fault: str                     # the fault, in a user's words


# ----- helpers the operators share ------------------------------------------------------------------

def _module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def _hidden_weight_layer(anatomy: list[Leaf]) -> Leaf:
    """The first weight layer whose output meets an activation (directly or after a norm): a hidden
    layer, not a residual branch's last layer, a final layer or a gate. Gated units (SwiGLU) are
    skipped: zeroing a gate projection is not a fault (its units get distinct gradients through the
    parallel up projection), so there is nothing to find."""
    for i, leaf in enumerate(anatomy):
        if leaf.kind != "weight" or gated(anatomy, leaf):
            continue
        after = next_kinds(anatomy, i)
        if after[:1] == ["activation"] or after[:2] == ["norm", "activation"]:
            return leaf
    raise NotApplicable("no weight layer followed by an activation module (activations are functional)")


def _weight(module: nn.Module) -> torch.Tensor:
    w = getattr(module, "weight", None)
    if not isinstance(w, torch.Tensor):
        raise NotApplicable(f"{type(module).__name__} has no plain .weight (a parametrization?)")
    return w


def _first_float_output(model: nn.Module, batch) -> Optional[torch.Tensor]:
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        out = call(model, batch)
    return next((t for t in tensors(out) if t.is_floating_point() and t.numel() > 1), None)


def _input_of(model: nn.Module, batch, name: Optional[str], output: bool = False) -> Optional[torch.Tensor]:
    """The input (or output) of one module on a training-mode forward; the model's output if None."""
    if name is None:
        return _first_float_output(model, batch)
    seen: list[torch.Tensor] = []

    def keep(value) -> None:
        t = value[0] if isinstance(value, (tuple, list)) and value else value
        if not seen and isinstance(t, torch.Tensor):
            seen.append(t.detach())

    module = model.get_submodule(name)
    handle = (module.register_forward_hook(lambda m, a, o: keep(o)) if output
              else module.register_forward_pre_hook(lambda m, a: keep(a)))
    try:
        _first_float_output(model, batch)
    finally:
        handle.remove()
    return seen[0] if seen else None


def _std_change(a: Optional[torch.Tensor], b: Optional[torch.Tensor]) -> float:
    """The ratio of two tensors' stds, >= 1 either way."""
    if a is None or b is None:
        return 1.0
    sa, sb = a.float().std().item(), b.float().std().item()
    if not (math.isfinite(sa) and math.isfinite(sb)):
        return math.inf
    if sa == 0 or sb == 0:
        return math.inf if sa != sb else 1.0
    return max(sa / sb, sb / sa)


def _require_measurable(before: nn.Module, after: nn.Module, batch, anatomy: list[Leaf], what: str,
                        chain_end: Optional[str] = None) -> None:
    """A real fault moves the signal where it was planted (the end of the scaled chain) by more than
    MEASURABLE, and what the model's head reads at all (1.5x): scaled layers inside residual branches
    or before a normalization change the first and not the second, which is healthy by RULES.md (a
    branch scaled down is intentional). Measured at the head's input, not at the logits, whose std
    the head's own bias can dominate."""
    head = next((leaf.name for leaf in reversed(anatomy) if leaf.kind == "weight"), None)
    at_head = _std_change(_input_of(before, batch, head), _input_of(after, batch, head))
    at_end = _std_change(_input_of(before, batch, chain_end, output=True), _input_of(after, batch, chain_end, output=True)) \
        if chain_end else at_head
    if at_end <= MEASURABLE or at_head <= 1.5:
        raise NotApplicable(f"{what} moves the signal {at_end:.3g}x where planted and {at_head:.3g}x at the head's "
                            "input (absorbed by a normalization, or inside residual branches)")


def _float_inputs(batch) -> list[torch.Tensor]:
    return [t for t in tensors(batch) if t.is_floating_point()]


def _map_float_inputs(batch, fn):
    if isinstance(batch, torch.Tensor):
        return fn(batch) if batch.is_floating_point() else batch
    if isinstance(batch, dict):
        return {k: _map_float_inputs(v, fn) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_map_float_inputs(v, fn) for v in batch)
    return batch


# ----- the operators ------------------------------------------------------------------------------

def zero_weight(model, batch, anatomy):
    target = _hidden_weight_layer(anatomy)
    with torch.no_grad():
        _weight(_module(model, target.name)).zero_()
    return Mutant(model, batch, frozenset({"NN101"}), frozenset({target.name}), f"zeroed {target.name}.weight")


def constant_fill(model, batch, anatomy):
    target = _hidden_weight_layer(anatomy)
    w = _weight(_module(model, target.name))
    with torch.no_grad():
        w.fill_(float(w.std()))            # the init's own scale, every unit identical
    return Mutant(model, batch, frozenset({"NN102"}), frozenset({target.name}),
                  f"filled {target.name}.weight with its std")


def _scale_family(factor: float, codes: set[str]):
    def apply(model, batch, anatomy):
        family = _unnormalized_family(anatomy)
        original = copy.deepcopy(model)
        with torch.no_grad():
            for leaf in family:
                _weight(_module(model, leaf.name)).mul_(factor)
        what = f"scaling the {len(family)} {family[0].type} layers not followed by a norm by {factor:g}"
        _require_measurable(original, model, batch, anatomy, what, chain_end=family[-1].name)
        return Mutant(model, batch, frozenset(codes), frozenset(l.name for l in family), what)
    return apply


def _unnormalized_family(anatomy: list[Leaf]) -> list[Leaf]:
    """The weight layers of the most common type whose output reaches the next weight layer without a
    norm: scaling them changes the signal (before a norm it would only change the gradient's scale).
    The model's last weight layer is left out: small logits at init are good practice (RULES.md), so
    scaling it down plants no fault, and scaling it up would be NN304's."""
    weights = [i for i, leaf in enumerate(anatomy) if leaf.kind == "weight"]
    last = weights[-1] if weights else -1
    by_type: dict[str, list[Leaf]] = defaultdict(list)
    for i, leaf in enumerate(anatomy):
        if leaf.kind == "weight" and i != last and "norm" not in next_kinds(anatomy, i):
            by_type[leaf.type].append(leaf)
    if not by_type:
        raise NotApplicable("every weight layer is followed by a normalization")
    family = max(by_type.values(), key=len)
    if len(family) < 2:
        raise NotApplicable("fewer than two un-normalized weight layers of one type")
    return family


class Exp(nn.Module):
    def forward(self, x):
        return torch.exp(x)


def _swap_activations(make: Callable[[], nn.Module], codes: set[str], label: str):
    def apply(model, batch, anatomy):
        acts = [leaf for i, leaf in enumerate(anatomy) if leaf.kind == "activation" and not _gate_activation(anatomy, i)]
        if not acts:
            raise NotApplicable("no activation modules outside gated units (functional activations, or "
                                "SwiGLU/GLU, where sigmoid or tanh makes another gated unit, not a fault)")
        for leaf in acts:
            parent, _, attr = leaf.name.rpartition(".")
            setattr(_module(model, parent) if parent else model, attr, make())
        return Mutant(model, batch, frozenset(codes), frozenset(l.name for l in acts),
                      f"replaced {len(acts)} activation modules by {label}")
    return apply


def _gate_activation(anatomy: list[Leaf], index: int) -> bool:
    """The activation right after a gated weight layer (SwiGLU's act_fn after gate_proj), or one that
    reads half of a projection split in two (fused experts: `gate, up = linear(x, w).chunk(2)`,
    Mixtral's in transformers 5, whose 3-D expert weights are no weight-layer modules)."""
    before = anatomy[index - 1] if index > 0 else None
    return anatomy[index].split_half or (before is not None and gated(anatomy, before))


def negative_bias(model, batch, anatomy):
    """A bias of -10 right before a ReLU-family activation: the weight layer's own bias, or the
    norm's shift where a norm sits between them."""
    for i, leaf in enumerate(anatomy):
        after = next_kinds(anatomy, i, limit=1)
        if leaf.kind in ("weight", "norm") and after == ["activation"]:
            bias = getattr(_module(model, leaf.name), "bias", None)
            if isinstance(bias, torch.Tensor):
                act = anatomy[i + 1]
                with torch.no_grad():
                    bias.fill_(-10.0)
                return Mutant(model, batch, frozenset({"NN203"}), frozenset({act.name}),
                              f"{leaf.name}.bias = -10 before {act.name}")
    raise NotApplicable("no layer with a bias directly before an activation module")


def _blocks(model: nn.Module, anatomy: list[Leaf]) -> list[str]:
    """Repeated blocks (children of a Sequential/ModuleList holding weight layers), in execution order."""
    first = {leaf.name: leaf.order for leaf in anatomy}
    out = []
    for name, module in model.named_modules():
        parent, _, attr = name.rpartition(".")
        if not attr.isdigit() or not any(True for _ in module.children()):
            continue
        orders = [o for n, o in first.items() if n.startswith(name + ".")]
        weights = [n for n, k in ((l.name, l.kind) for l in anatomy) if k == "weight" and n.startswith(name + ".")]
        if orders and weights:
            out.append((min(orders), name))
    # Outermost first: drop blocks nested inside an earlier-listed block.
    names = [n for _, n in sorted(out)]
    return [n for n in names if not any(n != m and n.startswith(m + ".") for m in names)]


def _block_at_third(model, anatomy) -> str:
    blocks = _blocks(model, anatomy)
    if len(blocks) < 2:
        raise NotApplicable("fewer than two repeated blocks")
    return blocks[len(blocks) // 3]


def _detach_output(out):
    if isinstance(out, torch.Tensor):
        return out.detach()
    if isinstance(out, tuple) and not hasattr(out, "_fields"):
        return tuple(_detach_output(o) for o in out)
    return out


def detach_block(model, batch, anatomy):
    name = _block_at_third(model, anatomy)
    _module(model, name).register_forward_hook(lambda m, a, o: _detach_output(o))
    return Mutant(model, batch, frozenset({"NN406"}), frozenset({name}), f"{name}'s output detached",
                  match_params=True)


def _first_leaf(model, anatomy, kind: str, where: Callable[[nn.Module], bool] = lambda m: True) -> Leaf:
    for leaf in anatomy:
        if leaf.kind == kind and where(_module(model, leaf.name)):
            return leaf
    raise NotApplicable(f"no {kind} module" + ("" if kind != "dropout" else " with p > 0"))


def dropout_left_training(model, batch, anatomy):
    leaf = _first_leaf(model, anatomy, "dropout", lambda m: getattr(m, "p", 0) > 0)
    model.eval()
    _module(model, leaf.name).train()
    return Mutant(model, batch, frozenset({"NN502", "NN501"}), frozenset({leaf.name}),
                  f"model.eval(), then {leaf.name}.train()")


def _is_batchnorm(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm)


def norm_left_training(model, batch, anatomy):
    leaf = _first_leaf(model, anatomy, "norm", _is_batchnorm)
    model.eval()
    _module(model, leaf.name).train()
    return Mutant(model, batch, frozenset({"NN502"}), frozenset({leaf.name}), f"model.eval(), then {leaf.name}.train()")


def frozen_norm_unfrozen(model, batch, anatomy):
    """A BatchNorm put in eval mode to freeze it for fine-tuning, but its parameters left trainable."""
    leaf = _first_leaf(model, anatomy, "norm", _is_batchnorm)
    model.train()
    _module(model, leaf.name).eval()
    return Mutant(model, batch, frozenset({"NN502"}), frozenset({leaf.name}),
                  f"model.train(), {leaf.name}.eval() with requires_grad left True")


def functional_dropout(model, batch, anatomy):
    """`F.dropout(x, 0.1)` without training=self.training at the end of a block's forward."""
    name = _block_at_third(model, anatomy)
    block = _module(model, name)
    forward = block.forward

    def with_dropout(*args, **kwargs):
        out = forward(*args, **kwargs)
        if isinstance(out, torch.Tensor):
            return F.dropout(out, 0.1)
        if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor) and not hasattr(out, "_fields"):
            return (F.dropout(out[0], 0.1),) + out[1:]
        raise NotApplicable(f"{name} returns {type(out).__name__}")

    block.forward = with_dropout
    model.eval()
    _first_float_output(model, batch)      # raises NotApplicable now rather than inside the check
    return Mutant(model, batch, frozenset({"NN501"}), frozenset({name}), f"F.dropout(p=0.1) after {name}, model.eval()")


def remove_norms(model, batch, anatomy):
    norms = [leaf for leaf in anatomy if leaf.kind == "norm"]
    if not norms:
        raise NotApplicable("no normalization modules")
    # Always a fault, measured or not: RULES.md's calibration (ResNet-50 with BatchNorm replaced by
    # Identity grows the stream 30,000x) is the case NN403 exists for.
    for leaf in norms:
        parent, _, attr = leaf.name.rpartition(".")
        setattr(_module(model, parent) if parent else model, attr, nn.Identity())
    what = f"replacing the {len(norms)} norm modules by Identity"
    return Mutant(model, batch, frozenset({"NN403", "NN401", "NN402", "NN103", "NN404", "NN405", "NN002"}),
                  frozenset(), what)


# Below this relative change of what the head reads (eval mode), the model is invariant to the change.
INVARIANT = 1e-3


def _inputs_mutation(fn, codes: set[str], what: str):
    def apply(model, batch, anatomy):
        if not _float_inputs(batch):
            raise NotApplicable("no floating-point input (token ids)")
        mutated = _map_float_inputs(batch, fn)
        change = _relative_change_at_head(model, batch, mutated, anatomy)
        # against another input of the same statistics (negated): an eval-mode signal that collapsed at
        # init (EfficientNet's head reads nearly a constant) is no invariance to the input's scale
        other = _relative_change_at_head(model, batch, _map_float_inputs(batch, lambda x: -x), anatomy)
        if change < INVARIANT * other:
            raise NotApplicable(f"{what} changes what the head reads by {change:.1e} of its norm after model.eval() "
                                f"(a negated input: {other:.1e}): a per-sample normalization after the first layer "
                                "makes the model invariant to it")
        return Mutant(model, mutated, frozenset(codes), frozenset(), what)
    return apply


def _relative_change_at_head(model: nn.Module, batch, mutated, anatomy: list[Leaf]) -> float:
    """||h' - h|| / ||h|| for the head's input h, in eval mode (running statistics, as at inference: a
    BatchNorm at init does not absorb an input's scale, a GroupNorm per channel, as in Wav2Vec2's feature
    encoder, does)."""
    head = next((leaf.name for leaf in reversed(anatomy) if leaf.kind == "weight"), None)
    probe = copy.deepcopy(model).eval()
    a, b = _input_of(probe, batch, head), _input_of(probe, mutated, head)
    if a is None or b is None or a.shape != b.shape:
        return math.inf
    a, b = a.double(), b.double()
    norm = a.norm().item()
    return (b - a).norm().item() / norm if norm > 0 else math.inf


def no_running_stats(model, batch, anatomy):
    bns = [n for n, m in model.named_modules() if _is_batchnorm(m)]
    if not bns:
        raise NotApplicable("no BatchNorm")
    for name in bns:
        bn = _module(model, name)
        bn.track_running_stats = False
        bn.running_mean = bn.running_var = bn.num_batches_tracked = None
    return Mutant(model, batch, frozenset({"NN503"}), frozenset({bns[0]}),
                  f"track_running_stats=False on {len(bns)} BatchNorm layers")


OPERATORS = [
    Operator("zero-weight", zero_weight, "a hidden layer's weight zeroed"),
    Operator("constant-fill", constant_fill, "a hidden layer's weight filled with one constant"),
    Operator("scale-0.1", _scale_family(0.1, {"NN401", "NN103", "NN404"}), "a family of layers scaled by 0.1"),
    Operator("scale-4", _scale_family(4.0, {"NN402", "NN103", "NN202", "NN002", "NN405"}), "a family scaled by 4"),
    Operator("sigmoid", _swap_activations(nn.Sigmoid, {"NN201", "NN202", "NN404"}, "nn.Sigmoid"),
             "every activation replaced by sigmoid"),
    Operator("tanh", _swap_activations(nn.Tanh, {"NN201", "NN202"}, "nn.Tanh"), "every activation replaced by tanh"),
    Operator("exp", _swap_activations(Exp, {"NN204", "NN402", "NN002", "NN405"}, "exp"),
             "every activation replaced by exp"),
    Operator("negative-bias", negative_bias, "a bias of -10 before a ReLU"),
    Operator("detach-block", detach_block, "a block's output detached"),
    Operator("dropout-left-training", dropout_left_training, "one dropout left in training mode under model.eval()"),
    Operator("norm-left-training", norm_left_training, "one BatchNorm left in training mode under model.eval()"),
    Operator("functional-dropout", functional_dropout, "F.dropout without training= in a block"),
    Operator("remove-norms", remove_norms, "every normalization layer removed"),
    Operator("inputs-x255", _inputs_mutation(lambda x: x * 255, {"NN302"}, "float inputs x255"),
             "inputs not scaled (x255)"),
    Operator("inputs-uncentered", _inputs_mutation(lambda x: x + 2.0, {"NN301"}, "float inputs +2 (mean 2, std 1)"),
             "inputs not centered"),
    Operator("frozen-norm-unfrozen", frozen_norm_unfrozen, "a BatchNorm frozen with .eval() but its parameters trainable"),
    Operator("no-running-stats", no_running_stats, "BatchNorm without running statistics"),
]


# ----- running and scoring --------------------------------------------------------------------------

@dataclass
class Outcome:
    model: str
    family: str
    library: str
    operator: str
    status: str                    # found | wrong-module | wrong-code | missed | n/a | crash
    how: str = ""
    expected: str = ""
    new: list[str] = field(default_factory=list)   # new warnings/errors ("NN203 warning features.1")
    seconds: float = 0.0


def _key(f: Finding) -> tuple[str, str]:
    return (f.code, f.module)


def _on_module(f: Finding, m: Mutant) -> bool:
    if not m.modules:
        return True
    if m.match_params:
        params = f.evidence.get("params", []) if isinstance(f.evidence, dict) else []
        return any(any(str(p).startswith(mod + ".") for mod in m.modules) for p in params) or \
            any(f.module == mod or f.module.startswith(mod + ".") for mod in m.modules)
    return any(f.module == mod or f.module.startswith(mod + ".") for mod in m.modules)


def score(baseline: set[tuple[str, str]], findings: list[Finding], m: Mutant) -> tuple[str, list[Finding]]:
    """Only findings the unmutated model did not have count. Any severity counts for the expected
    code (NN201 is info by design); other new findings are listed if they are warnings or errors."""
    new = [f for f in findings if _key(f) not in baseline]
    right_code = [f for f in new if f.code in m.codes]
    if any(_on_module(f, m) for f in right_code):
        return "found", new
    if right_code:
        return "wrong-module", new
    if any(f.severity in ("error", "warning") for f in new):
        return "wrong-code", new
    return "missed", new


def _fails_plainly(mutant: Mutant) -> Optional[str]:
    """Why the mutant fails a plain training step (an operator that broke the model, e.g. a sigmoid
    swapped in before an in-place dropout), or None when it runs: then a crash is nnlint's."""
    try:
        model = copy.deepcopy(mutant.model)
        model.train()
        plain_step(model, mutant.batch)
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
    return None


def run_model(case: corpus.Case, operators: list[Operator]) -> list[Outcome]:
    model, batch = case.build()
    baseline_result = run_check(model, batch, "train")
    if baseline_result.crash:
        return [Outcome(case.name, case.family, case.library, op.name, "crash", how="baseline: " + baseline_result.crash)
                for op in operators]
    baseline = {_key(f) for f in baseline_result.findings}
    anatomy = leaves(model, batch, call)
    out = []
    for op in operators:
        started = time.perf_counter()
        outcome = Outcome(case.name, case.family, case.library, op.name, "n/a")
        try:
            mutant = op.apply(copy.deepcopy(model), batch, anatomy)
        except NotApplicable as exc:
            outcome.how = str(exc)
            out.append(outcome)
            continue
        outcome.how, outcome.expected = mutant.how, "/".join(sorted(mutant.codes))
        result = run_check(mutant.model, mutant.batch, "mutant")
        broken = _fails_plainly(mutant) if result.crash else None
        if broken:
            outcome.status, outcome.how = "n/a", f"{mutant.how}: the mutant does not run without nnlint either ({broken})"
        elif result.crash:
            outcome.status, outcome.new = "crash", [result.crash]
        else:
            outcome.status, new = score(baseline, result.findings, mutant)
            outcome.new = [f"{f.code} {f.severity} {f.module or '<input>'}" for f in new]
        outcome.seconds = time.perf_counter() - started
        out.append(outcome)
    return out


def recall_table(outcomes: list[Outcome], by: str) -> str:
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        groups[getattr(o, by)].append(o)
    statuses = ["found", "wrong-module", "wrong-code", "missed", "crash", "n/a"]
    lines = [f"{by:24s} {'recall':>7s} " + " ".join(f"{s:>12s}" for s in statuses)]
    for name in sorted(groups) + ["ALL"]:
        rows = outcomes if name == "ALL" else groups[name]
        counts = {s: sum(1 for o in rows if o.status == s) for s in statuses}
        applicable = len(rows) - counts["n/a"]
        recall = f"{100 * counts['found'] / applicable:6.1f}%" if applicable else "     -"
        lines.append(f"{name:24s} {recall:>7s} " + " ".join(f"{counts[s]:12d}" for s in statuses))
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", help="case name or glob (repeatable)")
    p.add_argument("--family", action="append")
    p.add_argument("--library", action="append", choices=sorted(corpus.LIBRARY_MODULES))
    p.add_argument("--all", action="store_true", help="the whole corpus instead of the default models")
    p.add_argument("--operator", action="append", choices=[o.name for o in OPERATORS])
    p.add_argument("--json", help="write every outcome here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    cases = corpus.all_cases()
    if not (args.all or args.only or args.family or args.library):
        cases = [c for c in cases if c.name in DEFAULT_MODELS]
    cases = corpus.select(cases, args.only, args.family, args.library)
    operators = [o for o in OPERATORS if not args.operator or o.name in args.operator]
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    for i, case in enumerate(cases, 1):
        mine = run_model(case, operators)
        outcomes.extend(mine)
        cells = " ".join(f"{o.operator}:{'+' if o.status == 'found' else '.' if o.status == 'n/a' else 'X'}" for o in mine)
        print(f"[{i:3d}/{len(cases)}] {case.name:40s} {cells}", flush=True)
    print(f"\n{len(outcomes)} (model, operator) pairs in {time.perf_counter() - started:.0f}s\n")
    print(recall_table(outcomes, "operator") + "\n\n" + recall_table(outcomes, "family") + "\n\n"
          + recall_table(outcomes, "library"))
    print("\nEvery miss (status, model, operator: what was planted; expected; what nnlint said instead):")
    for o in outcomes:
        if o.status not in ("found", "n/a"):
            print(f"  {o.status:12s} {o.model:36s} {o.operator:22s} {o.how}; expected {o.expected}; "
                  f"new: {', '.join(o.new[:6]) or 'nothing'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(o) for o in outcomes], f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
