"""What a model is made of, as a user reading it would say: its leaf modules in execution order,
each classified as a weight layer, an activation, a normalization or a dropout.

Read with forward hooks on one forward pass (no nnlint), so the mutation operators pick their
targets independently of the rules they test. Classification is by type (torch.nn classes,
subclasses included: timm's StdConv2d is a Conv2d) and, for library classes, by name (Hugging
Face's Conv1D is a weight layer, its NewGELUActivation an activation, LlamaRMSNorm a norm).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

ACTIVATION_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.ELU,
                    nn.SELU, nn.CELU, nn.PReLU, nn.Softplus)
ACTIVATION_NAME = re.compile(r"(GELU|Gelu|ReLU|Relu|SiLU|Silu|Swish|Mish|Activation)")
NORM_NAME = re.compile(r"Norm(?![a-z])")
WEIGHT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def kind_of(module: nn.Module) -> str:
    """ "weight" | "activation" | "norm" | "dropout" | "other" for a leaf module."""
    name = type(module).__name__
    if isinstance(module, WEIGHT_TYPES) or name == "Conv1D":   # Hugging Face's transposed Linear (GPT-2)
        return "weight"
    if isinstance(module, ACTIVATION_TYPES) or (ACTIVATION_NAME.search(name) and not list(module.parameters())):
        return "activation"
    if NORM_NAME.search(name):
        return "norm"
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return "dropout"
    return "other"


@dataclass(frozen=True)
class Leaf:
    name: str
    kind: str
    type: str
    order: int            # first call, in execution order
    input_id: int = 0     # id() of its first input tensor: weight layers that share it run in parallel
    split_half: bool = False   # its input is one half of a tensor split in two (a fused GLU's gate)


def gated(anatomy: list["Leaf"], leaf: "Leaf") -> bool:
    """A weight layer in a gated unit (SwiGLU's gate_proj/up_proj, GLU): another weight layer reads the
    very same input tensor. Its activation gates a product, so it is not a hidden nonlinearity."""
    return leaf.kind == "weight" and any(o.kind == "weight" and o.name != leaf.name and o.input_id == leaf.input_id
                                         for o in anatomy)


def leaves(model: nn.Module, batch, call) -> list[Leaf]:
    """The leaf modules that ran, in order of their first call (training mode, no grad; the
    model's mode and RNG state are put back)."""
    order: dict[str, int] = {}
    first_input: dict[str, int] = {}
    halves: set[str] = set()
    alive: list[torch.Tensor] = []        # inputs kept alive for the pass, so no two share an id()

    def seen(name: str, args) -> None:    # returns None: a hook's return value replaces the output
        order.setdefault(name, len(order))
        if name not in first_input:
            x = args[0] if args and isinstance(args[0], torch.Tensor) else None
            first_input[name] = 0 if x is None else id(x)
            if x is not None and x._base is not None and x.dim() and x._base.dim() == x.dim() \
                    and x._base.shape[-1] == 2 * x.shape[-1]:
                halves.add(name)
            if x is not None:
                alive.append(x)

    handles = [module.register_forward_hook(lambda m, a, o, n=name: seen(n, a))
               for name, module in model.named_modules() if next(module.children(), None) is None and name]
    observed_forward(model, batch, call, handles)
    modules = dict(model.named_modules())
    return [Leaf(n, kind_of(modules[n]), type(modules[n]).__name__, i, first_input[n], n in halves)
            for n, i in sorted(order.items(), key=lambda kv: kv[1])]


def observed_forward(model: nn.Module, batch, call, handles: list) -> None:
    """One training-mode forward without grad for the given hooks to watch; then the hooks are removed
    and the model's modes and the RNG are as they were."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            model.train()
            call(model, batch)
    finally:
        for h in handles:
            h.remove()
        for m, flag in modes:
            m.training = flag


def next_kinds(seq: list[Leaf], index: int, limit: int = 3) -> list[str]:
    """The kinds of the leaves that run after seq[index], up to the next weight layer."""
    out = []
    for leaf in seq[index + 1:index + 1 + limit]:
        out.append(leaf.kind)
        if leaf.kind == "weight":
            break
    return out
