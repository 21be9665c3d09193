"""What the user built, under what torch's parallel wrappers put around it: one place for both.

- DistributedDataParallel and DataParallel hold the user's model in `.module`: its submodules are
  named `module.fc1`, and findings must say `fc1`. The check runs on the module inside (the wrapper's
  gradient all-reduce is the distributed check's own business: nnlint.distributed).
- FSDP2's `fully_shard(module)` keeps the module but changes its class to a subclass made on the fly,
  `FSDPLinear(FSDPModule, Linear)`: the names stay the user's, the class is the one under it.
- A parameter sharded by FSDP2 or tensor parallelism is a DTensor: `whole(t)` is its full value.
"""
from __future__ import annotations

import sys

_WRAPPERS = ("DistributedDataParallel", "DataParallel")


def user_model(model):
    """The module inside a DistributedDataParallel / DataParallel wrapper (nested ones too)."""
    while type(model).__name__ in _WRAPPERS and hasattr(model, "module"):
        model = model.module
    return model


def user_class(module) -> type:
    """The module's class as the user wrote it: under FSDP2's generated `FSDP<Class>`, `<Class>`."""
    cls = type(module)
    if cls.__name__.startswith("FSDP") and cls.__module__.startswith("torch.distributed."):
        return next((c for c in cls.__mro__[1:] if not c.__module__.startswith("torch.distributed.")), cls)
    return cls


def is_dtensor(t) -> bool:
    """A DTensor (a sharded or replicated tensor on a device mesh). Where nothing has imported
    torch.distributed.tensor, no tensor can be one: nothing is imported for a model without them."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(t, module.DTensor)


def whole(t):
    """The full value of a DTensor (gathered from every rank of its mesh: a collective, so every rank
    must ask for the same tensors in the same order), or the tensor itself."""
    return t.full_tensor() if is_dtensor(t) else t
