"""Measure, with plain torch, what makes each zoo case and fixture healthy or faulty: the residual
stream's variance per block, the branch gain of residual blocks, the std through depth, the share of
tanh/sigmoid inputs in the flat region, dead ReLU units, the input's channel statistics.

    python -m tests.zoo.measure          (or: python tests/zoo/measure.py)

prints the table. The helpers are what tests/test_zoo_sanity.py asserts with; none of this uses
nnlint, so the zoo is checked independently of the rules it is meant to test.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

if __name__ == "__main__" and not __package__:          # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    __package__ = "tests.zoo"

import torch
from torch import nn

from . import FAULTY, HEALTHY, convnets, mlp, resnet, transformer, vgg
from .case import features, images

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
TANH_FLAT = 2.2            # |z| beyond which tanh' < 5% of its peak (nnlint.trace.ops.FLAT_REGION, NN202)
SIGMOID_FLAT = 4.4
DEAD_ACTIVITY = 0.01       # a unit active on under 1% of its positions is dead (NN203)


# ----- running a model ----------------------------------------------------------------------------

def call(model: nn.Module, batch: Any) -> Any:
    """The calling convention nnlint uses: Tensor -> model(x), tuple/list -> model(*b), dict -> model(**b)."""
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def float_tensors(out: Any) -> list[torch.Tensor]:
    """Every floating-point tensor in an output: a Tensor, a tuple/list, a dict or a dataclass."""
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    if isinstance(out, Mapping):
        return [t for v in out.values() for t in float_tensors(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in float_tensors(v)]
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        return [t for f in dataclasses.fields(out) for t in float_tensors(getattr(out, f.name))]
    return []


def train_step(model: nn.Module, batch: Any, loss_fn: Optional[Callable] = None, target: Any = None) -> torch.Tensor:
    """One training-mode forward + backward; without a loss, a fixed surrogate over every output."""
    model.zero_grad(set_to_none=True)
    out = call(model, batch)
    if loss_fn is not None:
        loss = loss_fn(out, target)
    else:
        loss = sum(t.float().pow(2).mean() for t in float_tensors(out))
    loss.backward()
    return loss.detach()


def capture(model: nn.Module, batch: Any, names: list[str], *, inputs: bool = False) -> dict[str, list[torch.Tensor]]:
    """The output (or first input) of each named module on every call, cloned (in-place ReLUs and
    `out += identity` overwrite them otherwise), from one forward without grad, in whatever mode
    the model is in (training, as nnlint's first pass), with dropout drawn from a fixed seed."""
    modules = dict(model.named_modules())
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    handles = []
    for name in names:
        if inputs:
            hook = lambda m, args, name=name: seen[name].append(args[0].detach().clone())  # noqa: E731
            handles.append(modules[name].register_forward_pre_hook(hook))
        else:
            hook = lambda m, args, out, name=name: seen[name].append(out.detach().clone())  # noqa: E731
            handles.append(modules[name].register_forward_hook(hook))
    try:
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(0)
            call(model, batch)
    finally:
        for h in handles:
            h.remove()
    return seen


# ----- statistics -----------------------------------------------------------------------------------

def var(t: torch.Tensor) -> float:
    return t.float().var().item()


def block_variances(model: nn.Module, batch: Any, blocks: list[str]) -> list[tuple[float, float]]:
    """(variance of the stream entering, variance leaving) each block, on its first call."""
    ins = capture(model, batch, blocks, inputs=True)
    outs = capture(model, batch, blocks)
    return [(var(ins[b][0]), var(outs[b][0])) for b in blocks]


def branch_gains(model: nn.Module, batch: Any, blocks: list[str], branch_end: str) -> list[float]:
    """Var(f(x)) / Var(x) of each residual block `x + f(x)`, where f ends at the submodule named
    `branch_end` inside the block (ResNet: its last norm, or the Identity standing in for it)."""
    ins = capture(model, batch, blocks, inputs=True)
    ends = capture(model, batch, [f"{b}.{branch_end}" for b in blocks])
    return [var(ends[f"{b}.{branch_end}"][0]) / var(ins[b][0]) for b in blocks]


def flat_fraction(z: torch.Tensor, threshold: float) -> float:
    """Share of pre-activations in the flat region of tanh (2.2) or sigmoid (4.4)."""
    return (z.abs() > threshold).float().mean().item()


def dead_fraction(a: torch.Tensor) -> float:
    """Share of units active (> 0) on under 1% of their positions: channels of an NCHW map (dim 1),
    else the last dimension's features."""
    units = a.transpose(1, -1) if a.dim() == 4 else a
    active = (units > 0).float().reshape(-1, units.shape[-1]).mean(0)
    return (active < DEAD_ACTIVITY).float().mean().item()


def relu_dead_fractions(model: nn.Module, batch: Any) -> dict[str, float]:
    """Worst dead fraction over the calls of each ReLU-family module (torchvision's blocks call one
    shared `self.relu` several times)."""
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.ReLU, nn.ReLU6, nn.LeakyReLU))]
    return {n: max(dead_fraction(a) for a in acts) for n, acts in capture(model, batch, names).items() if acts}


def weight_layer_stds(model: nn.Module, batch: Any) -> list[tuple[str, float]]:
    """The output std of every Conv/Linear in execution order (the signal through depth)."""
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    outs = capture(model, batch, names)
    return [(n, outs[n][0].float().std().item()) for n in names if outs[n]]


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (NCHW: dim 1) or per-feature mean and std of a model input."""
    dims = [d for d in range(x.dim()) if d != 1] if x.dim() >= 3 else [0]
    x = x.float()
    return x.mean(dim=dims), x.std(dim=dims)


def off_center_fraction(x: torch.Tensor, mean_to_std: float = 0.5) -> float:
    """Share of channels/features whose |mean| > 0.5 std (NN301's test)."""
    mean, std = channel_stats(x)
    return ((mean.abs() > mean_to_std * std) & (mean.abs() > 1e-6)).float().mean().item()


def median_std(x: torch.Tensor) -> float:
    _, std = channel_stats(x)
    live = std[std > 1e-12]
    return live.median().item()


# ----- fixtures ---------------------------------------------------------------------------------------

@dataclass
class Fixture:
    path: Path
    module: Any
    model: nn.Module
    batch: Any
    loss_fn: Optional[Callable] = None
    target: Any = None


_serial = itertools.count()


def load_fixture(path: Path) -> Fixture:
    """Import a fixture file the way nnlint's loader does (torch seeded 0, its folder on sys.path, a
    unique module name) and build its model and batch by the file's convention."""
    path = Path(path)
    torch.manual_seed(0)
    spec = importlib.util.spec_from_file_location(f"_zoo_fixture_{path.stem}_{next(_serial)}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
        if hasattr(module, "build_model"):
            model, batch = module.build_model(), module.sample_batch()
        else:
            model, batch = module.model, module.batch
    finally:
        sys.path.remove(str(path.parent))
    loss_fn, target = getattr(module, "loss_fn", None), getattr(module, "target", None)
    if loss_fn is not None and target is None and isinstance(batch, (tuple, list)) and len(batch) == 2:
        batch, target = batch
    return Fixture(path, module, model, batch, loss_fn, target)


def fixture_input(f: Fixture) -> torch.Tensor:
    """The (first) tensor the model takes."""
    if isinstance(f.batch, torch.Tensor):
        return f.batch
    return next(iter(f.batch.values() if isinstance(f.batch, Mapping) else f.batch))


# ----- the table ----------------------------------------------------------------------------------------

def _fmt(values, digits: int = 3) -> str:
    return ", ".join(f"{v:.{digits}g}" for v in values)


def _row(case: str, what: str, numbers: str) -> None:
    print(f"{case:<36} {what:<36} {numbers}")


def _stream_section() -> None:
    print("\n== residual stream: variance leaving each block; per-block factor = out / in ==")
    for factory in (resnet.resnet18_bn, resnet.resnet50_bn, resnet.resnet50_zero_init_residual,
                    resnet.resnet50_no_norm, resnet.resnet18_no_norm):
        c = factory()
        names, ident = resnet.blocks(c.model), resnet.identity_blocks(c.model)
        bv = dict(zip(names, block_variances(c.model, c.batch, names)))
        _row(c.name, "variance after each block", _fmt(o for _, o in bv.values()))
        _row("", "factor, identity blocks", _fmt(bv[n][1] / bv[n][0] for n in ident))
        _row("", "factor, downsample blocks", _fmt(o / i for n, (i, o) in bv.items() if n not in ident))
        gains = branch_gains(c.model, c.batch, ident, resnet.branch_end(c.model))
        _row("", "branch gain Var(f)/Var(x), identity", _fmt(gains))
    for factory, kind in ((transformer.gpt2, transformer.GPT2Block), (transformer.llama, transformer.LlamaDecoderLayer),
                          (transformer.bert, transformer.BertLayer), (convnets.convnext, convnets.ConvNeXtBlock)):
        c = factory()
        names = [n for n, m in c.model.named_modules() if isinstance(m, kind)]
        bv = block_variances(c.model, c.batch, names)
        _row(c.name, "variance entering, then after each", _fmt([bv[0][0]] + [o for _, o in bv]))
        _row("", "per-block factor", _fmt(o / i for i, o in bv))
    for factory in (convnets.mobilenet_v3, convnets.efficientnet):
        c = factory()
        names = convnets.residual_blocks(c.model)
        _row(c.name, "factor, residual blocks", _fmt(o / i for i, o in block_variances(c.model, c.batch, names)))


def _depth_section() -> None:
    print("\n== signal through depth: std of each weight layer's output ==")
    for factory in (vgg.vgg11, vgg.vgg11_small_init, mlp.mlp_kaiming):
        c = factory()
        _row(c.name, "std per weight layer", _fmt(s for _, s in weight_layer_stds(c.model, c.batch)))


def _activation_section() -> None:
    print("\n== activations: share of tanh inputs with |z| > 2.2; dead ReLU units (worst module) ==")
    c = mlp.deep_tanh_unit_weights()
    tanhs = mlp.activations(c.model, nn.Tanh)
    inputs = capture(c.model, c.batch, tanhs, inputs=True)
    _row(c.name, "flat fraction per tanh", _fmt(flat_fraction(z[0], TANH_FLAT) for z in inputs.values()))
    for factory in HEALTHY + FAULTY:
        c = factory()
        dead = relu_dead_fractions(c.model, c.batch)
        if dead:
            worst = max(dead, key=dead.get)
            _row(c.name, "dead ReLU units, worst module", f"{dead[worst]:.3g} ({worst})")
    c = convnets.mobilenet_v3()
    squeeze = convnets.se_squeeze_activations(c.model)
    noise = features(*images().shape, seed=0)
    _row(c.name, "SE squeeze ReLU dead: photos | noise",
         f"{max(relu_dead_fractions_of(c.model, c.batch, squeeze)):.3g} | "
         f"{max(relu_dead_fractions_of(c.model, noise, squeeze)):.3g}")


def relu_dead_fractions_of(model: nn.Module, batch: Any, names: list[str]) -> list[float]:
    return [dead_fraction(a) for acts in capture(model, batch, names).values() for a in acts]


def _fixture_section() -> None:
    print("\n== fixtures: input statistics, dead ReLU units, flat tanh/sigmoid inputs ==")
    for path in sorted(FIXTURES.glob("*.py")):
        f = load_fixture(path)
        x = fixture_input(f)
        facts = []
        if x.is_floating_point():
            facts.append(f"input mean {x.float().mean().item():.3g} std {x.float().std().item():.3g} "
                         f"off-center {off_center_fraction(x):.2f} median-std {median_std(x):.3g}")
        dead = relu_dead_fractions(f.model, f.batch)
        if dead:
            worst = max(dead, key=dead.get)
            facts.append(f"dead {worst} {dead[worst]:.2f}")
        modules = dict(f.model.named_modules())
        acts = [n for n, m in modules.items() if isinstance(m, (nn.Tanh, nn.Sigmoid))]
        for name, zs in capture(f.model, f.batch, acts, inputs=True).items():
            threshold = TANH_FLAT if isinstance(modules[name], nn.Tanh) else SIGMOID_FLAT
            facts.append(f"flat {name} {flat_fraction(zs[0], threshold):.2f}")
        _row(path.stem, "", "; ".join(facts))


def _timing_section() -> None:
    print("\n== cost: one forward + backward, best of 3 ==")
    for factory in HEALTHY + FAULTY:
        c = factory()
        times = []
        for _ in range(4):
            start = time.perf_counter()
            train_step(c.model, c.batch, c.loss_fn, c.target)
            times.append(time.perf_counter() - start)
        _row(c.name, "seconds", f"{min(times[1:]):.3f}")


def main() -> None:
    _stream_section()
    _depth_section()
    _activation_section()
    _fixture_section()
    _timing_section()


if __name__ == "__main__":
    main()
