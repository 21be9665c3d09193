"""Was the model left exactly as it was found? A snapshot before a check, compared after it.

What is compared (DESIGN.md's promise: the check is an observation, never a side effect): every
parameter and buffer bit for bit (NaN-safe: the bytes, not ==) and by object identity, the set of
their names, `requires_grad`, existing `.grad`, each module's `training` flag and hooks, the global
module hooks, the CPU RNG state, grad mode and the default dtype.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().contiguous().reshape(-1).view(torch.uint8)


def _hook_counts(module: torch.nn.Module) -> tuple[int, ...]:
    return tuple(len(getattr(module, attr, {}) or {}) for attr in (
        "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
        "_state_dict_hooks", "_load_state_dict_pre_hooks"))


def _global_hooks() -> tuple[int, ...]:
    from torch.nn.modules import module as m

    return tuple(len(getattr(m, name, {})) for name in (
        "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
        "_global_backward_pre_hooks"))


@dataclass
class Snapshot:
    params: dict[str, tuple[int, Any, bool]]          # name -> (id, bits, requires_grad)
    grads: dict[str, tuple[int, Any]]                  # name -> (id or 0 for None, bits or None)
    buffers: dict[str, tuple[int, Any]]                # name -> (id or 0 for None, bits)
    modules: dict[str, tuple[bool, tuple[int, ...]]]   # name -> (training, hook counts)
    global_hooks: tuple[int, ...]
    rng: torch.Tensor
    grad_enabled: bool
    default_dtype: torch.dtype

    @classmethod
    def take(cls, model: torch.nn.Module) -> "Snapshot":
        params, grads = {}, {}
        for name, p in model.named_parameters(remove_duplicate=False):
            params[name] = (id(p), _bits(p), p.requires_grad)
            grads[name] = (0, None) if p.grad is None else (id(p.grad), _bits(p.grad))
        buffers = {name: (0, None) if b is None else (id(b), _bits(b))
                   for name, b in model.named_buffers(remove_duplicate=False)}
        modules = {name: (m.training, _hook_counts(m)) for name, m in model.named_modules(remove_duplicate=False)}
        return cls(params, grads, buffers, modules, _global_hooks(), torch.get_rng_state(),
                   torch.is_grad_enabled(), torch.get_default_dtype())

    def differences(self, model: torch.nn.Module, limit: int = 8) -> list[str]:
        """What changed since the snapshot, one line per kind of change (the first names of each)."""
        after = Snapshot.take(model)
        found: dict[str, list[str]] = {}

        def note(kind: str, name: str) -> None:
            found.setdefault(kind, []).append(name)

        _compare_names("parameter", self.params, after.params, note)
        _compare_names("buffer", self.buffers, after.buffers, note)
        _compare_names("module", self.modules, after.modules, note)
        for name, (pid, bits, rg) in self.params.items():
            a = after.params.get(name)
            if a is None:
                continue
            if a[0] != pid:
                note("parameter replaced", name)
            if not torch.equal(bits, a[1]):
                note("parameter values", name)
            if a[2] != rg:
                note("requires_grad", name)
        for name, (gid, bits) in self.grads.items():
            a = after.grads.get(name)
            if a is not None and (a[0] != gid or (bits is not None and not torch.equal(bits, a[1]))):
                note(".grad", name)
        for name, (bid, bits) in self.buffers.items():
            a = after.buffers.get(name)
            if a is not None and (a[0] != bid or (bits is not None and (a[1] is None or not torch.equal(bits, a[1])))):
                note("buffer values", name)
        for name, (training, hooks) in self.modules.items():
            a = after.modules.get(name)
            if a is not None and a[0] != training:
                note("training flag", name or "<root>")
            if a is not None and a[1] != hooks:
                note("module hooks", name or "<root>")
        if after.global_hooks != self.global_hooks:
            note("global module hooks", str(after.global_hooks))
        if not torch.equal(after.rng, self.rng):
            note("RNG state", "cpu")
        if after.grad_enabled != self.grad_enabled:
            note("grad mode", str(after.grad_enabled))
        if after.default_dtype != self.default_dtype:
            note("default dtype", str(after.default_dtype))
        return [f"{kind}: {', '.join(names[:limit])}" + (f" (+{len(names) - limit})" if len(names) > limit else "")
                for kind, names in found.items()]


def _compare_names(kind: str, before: dict, after: dict, note) -> None:
    for name in before.keys() - after.keys():
        note(f"{kind} removed", name)
    for name in after.keys() - before.keys():
        note(f"{kind} added", name)
