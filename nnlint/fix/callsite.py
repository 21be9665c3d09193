"""Rewriting one functional call site of a module's forward, in memory: `torch.sigmoid(x)` at
net.py:31 runs `torch.relu(x)`, `F.dropout(x, 0.5)` at net.py:40 gets `training=self.training`.

Why not torch.fx: symbolic tracing bakes Python control flow and `self.training` into the graph as
constants at trace time (a forward with `if self.training:` would silently lose its eval branch), and it
fails outright on most Hugging Face models. Instead the module's forward runs inside a small
TorchFunctionMode that swaps only the calls made from the recorded file:line; every other call,
including those of the children, passes through untouched. The module keeps its class, its identity,
its methods and its state_dict; the rewrite is data (`Rewrite`), so the module still deep-copies and
pickles. It costs a Python dispatch per torch call inside that module's forward: the source fix
(`nnlint fix FILE`) is the lasting one.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from nnlint.trace.source import user_location


@dataclass(frozen=True)
class Rewrite:
    file: str
    line: int
    funcs: tuple[str, ...]        # the torch function names called at the site ("sigmoid", "dropout")
    action: str                   # "activation" | "dropout_training" | "dropout_nd" | "identity"
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def matches(self, name: str, file: str, line: int) -> bool:
        return name in self.funcs and line == self.line and _same_file(file, self.file)


def _same_file(a: str, b: str) -> bool:
    import os

    return a == b or os.path.abspath(a) == os.path.abspath(b)


class RewrittenForward:
    """Installed as `module.forward`: the class's forward, run under the site-rewriting mode."""

    def __init__(self, module, rewrites: list[Rewrite]):
        self.module = module
        self.rewrites = list(rewrites)

    def __call__(self, *args, **kwargs):
        with _SiteMode(self.rewrites, self.module):
            return type(self.module).forward(self.module, *args, **kwargs)


def install(module, rewrite: Rewrite) -> None:
    """Add a rewrite to the module's forward (one RewrittenForward per module; a rewrite added twice is
    kept once, so running the fixer again changes nothing)."""
    current = module.__dict__.get("forward")
    if isinstance(current, RewrittenForward):
        if rewrite not in current.rewrites:
            current.rewrites.append(rewrite)
        return
    module.forward = RewrittenForward(module, [rewrite])


def _site_mode_base():
    from torch.overrides import TorchFunctionMode

    return TorchFunctionMode


class _SiteMode(_site_mode_base()):  # type: ignore[misc]
    def __init__(self, rewrites: list[Rewrite], module):
        super().__init__()
        self.rewrites = rewrites
        self.module = module
        self.names = {n for r in rewrites for n in r.funcs}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in self.names:
            loc = user_location(sys._getframe(1))
            if loc is not None:
                for r in self.rewrites:
                    if r.matches(name, loc.file, loc.line):
                        return _ACTIONS[r.action](func, args, kwargs, r, self.module)
        return func(*args, **kwargs)


def _activation(func, args, kwargs, rewrite: Rewrite, module):
    import torch
    import torch.nn.functional as F

    x = args[0] if args else kwargs.get("input")
    to = rewrite.params.get("to", "relu")
    if to == "leaky_relu":
        return F.leaky_relu(x, rewrite.params.get("negative_slope", 0.01))
    return getattr(torch, to)(x)


def _dropout_training(func, args, kwargs, rewrite: Rewrite, module):
    # F.dropout(input, p=0.5, training=True, inplace=False); torch.dropout(input, p, train)
    args = list(args)
    if len(args) >= 3:
        args[2] = module.training
    else:
        key = "train" if getattr(func, "__module__", "") == "torch" or "train" in kwargs else "training"
        kwargs = {**kwargs, key: module.training}
    return func(*args, **kwargs)


def _dropout_nd(func, args, kwargs, rewrite: Rewrite, module):
    import torch.nn.functional as F

    replacement = getattr(F, rewrite.params.get("to", "dropout2d"))
    args = list(args)
    p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
    training = args[2] if len(args) > 2 else kwargs.get("training", kwargs.get("train", True))
    return replacement(args[0] if args else kwargs["input"], p=p, training=training)


def _identity(func, args, kwargs, rewrite: Rewrite, module):
    return args[0] if args else kwargs["input"]


_ACTIONS = {"activation": _activation, "dropout_training": _dropout_training, "dropout_nd": _dropout_nd,
            "identity": _identity}
