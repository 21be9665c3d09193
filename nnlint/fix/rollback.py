"""Undo for the runtime fixer: what one round of fixes can change, saved first and restored in place.

A fix whose finding the re-check still reports is failed, and the model must not keep it: the source
fixer drops a failed fix from the file, so the in-memory fixer drops it from the model, and a user who
reads `result.failed` knows the model is as it was for that finding.

The appliers change a model in three ways, and the snapshot covers each without knowing which applier
ran: they set attributes on modules (a swapped child in `_modules`, new BatchNorm buffers, a
`track_running_stats` flag, a rewritten `forward`, a forward pre-hook), they add to a rewritten
forward's list of call-site rewrites, and they re-initialize parameters in place. Module attributes
and their dicts are restored *in place* (the same dict objects, refilled), because PyTorch's hook
handles hold references to those dicts. Parameter data is cloned only for the parameters the round
re-initializes, so the extra memory is those layers, not the model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class _ModuleState:
    module: Any
    attrs: dict[str, Any]                      # module.__dict__, shallow
    dicts: dict[str, dict]                     # its dict-valued attributes' contents (_modules, hooks ...)
    rewrites: list | None                      # a RewrittenForward's rewrites, if it has one


@dataclass
class ModelSnapshot:
    modules: list[_ModuleState] = field(default_factory=list)
    tensors: dict[str, tuple[Any, Any]] = field(default_factory=dict)   # name -> (tensor, its saved data)

    @classmethod
    def take(cls, model) -> "ModelSnapshot":
        from nnlint.fix.callsite import RewrittenForward

        states = []
        for module in model.modules():
            attrs = dict(module.__dict__)
            dicts = {k: dict(v) for k, v in attrs.items() if isinstance(v, dict)}
            forward = attrs.get("forward")
            rewrites = list(forward.rewrites) if isinstance(forward, RewrittenForward) else None
            states.append(_ModuleState(module, attrs, dicts, rewrites))
        return cls(states)

    def save_tensor(self, name: str, tensor) -> None:
        """Keep a copy of a parameter's data before it is re-initialized in place (once per name)."""
        if name not in self.tensors:
            self.tensors[name] = (tensor, tensor.detach().clone())

    def restore(self) -> None:
        import torch

        for state in self.modules:
            live = state.module.__dict__
            for key in [k for k in live if k not in state.attrs]:
                del live[key]
            live.update(state.attrs)
            for key, contents in state.dicts.items():
                target = live[key]
                target.clear()
                target.update(contents)
            if state.rewrites is not None:
                live["forward"].rewrites[:] = state.rewrites
        with torch.no_grad():
            for tensor, saved in self.tensors.values():
                tensor.copy_(saved)
