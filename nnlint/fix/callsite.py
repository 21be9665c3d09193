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

What a rewrite does at its site is a plain module-level function of its fix kind (nnlint.fix.kinds),
`action(func, args, kwargs, rewrite, module) -> result`: a function reference keeps the rewrite
picklable.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from nnlint.trace.source import user_location


@dataclass(frozen=True)
class Rewrite:
    file: str
    line: int
    funcs: tuple[str, ...]        # the torch function names called at the site ("sigmoid", "dropout")
    action: Callable              # action(func, args, kwargs, rewrite, module): what runs instead
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


def install(module, rewrite: Rewrite, replacing: Optional[Rewrite] = None) -> None:
    """Add a rewrite to the module's forward (one RewrittenForward per module; a rewrite added twice is
    kept once, so running the fixer again changes nothing). `replacing`: an earlier rewrite of the same
    site that this one supersedes (a swap to ReLU escalated to LeakyReLU)."""
    current = module.__dict__.get("forward")
    if isinstance(current, RewrittenForward):
        if replacing is not None and replacing in current.rewrites:
            current.rewrites[current.rewrites.index(replacing)] = rewrite
        elif rewrite not in current.rewrites:
            current.rewrites.append(rewrite)
        return
    module.forward = RewrittenForward(module, [rewrite])


def rewrites_at(module, file: str, line: int) -> list[Rewrite]:
    """The rewrites installed at one call site of the module's forward."""
    current = module.__dict__.get("forward")
    if not isinstance(current, RewrittenForward):
        return []
    return [r for r in current.rewrites if r.line == line and _same_file(file, r.file)]


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
                        return r.action(func, args, kwargs, r, self.module)
        return func(*args, **kwargs)
