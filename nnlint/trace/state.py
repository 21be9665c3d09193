"""Leave the model exactly as it was found: the check is an observation, never a side effect.

What a forward+backward can change, and how each is put back:
- buffers (BatchNorm running stats, num_batches_tracked): copied before, copied back in place after;
- every module's `training` flag: recorded and re-set one by one (not with .train(), which a module
  may override);
- `.grad`: each parameter's grad object is set aside before the backward and put back after, so an
  existing gradient is neither accumulated into nor replaced;
- `requires_grad`: recorded and re-set;
- the RNG of the CPU and of every initialized CUDA device (dropout consumes it).
- plain attributes of every module (bools, numbers, strings, None): a flag a forward flips, as Hugging
  Face's RWKV flips `layers_are_rescaled` when it rescales its weights for inference;
- tensors a forward keeps on a module (an attribute that is a tensor, or a list, tuple or dict of them;
  not a parameter or buffer) where the forward set the attribute: put back to what it was, or removed
  where the forward added it (a list the forward appends to is the same object, and stays). Kept, they
  would hold the check's autograd graph: torchvision's RAFT stores its correlation pyramid as
  `self.corr_pyramid`, and `copy.deepcopy(model)` after a check raised "Only Tensors created explicitly
  by the user support the deepcopy protocol".
Parameters are not copied by the traced step (a 1B model would double its memory); instead their
version counters are compared, and an in-place write by the model's own forward is reported. The
probes, which run the model's eval forward again, run under `ParameterWrites`: a parameter is copied
just before the first in-place write to it, so a model whose own eval forward writes its weights (RWKV
divides them by 2**(block // rescale_every)) is put back bit for bit, and one that writes nothing (all
others) costs no copy (a copy of every parameter before each probe was 0.19 s of GPT-2's 0.9 s of
probes, and a model's size in peak memory).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from nnlint.trace.ops import func_name

_PLAIN = (bool, int, float, str, type(None))


@dataclass
class ModelState:
    training: list[tuple[Any, bool]]
    buffers: list[tuple[Any, Any]]
    requires_grad: list[tuple[Any, bool]]
    grads: list[tuple[Any, Any]] = field(default_factory=list)
    param_versions: list[tuple[str, Any, int]] = field(default_factory=list)
    cpu_rng: Any = None
    cuda_rng: Any = None
    # (module, a copy of its __dict__): plain values and the tensors a forward set are put back to these
    attributes: list[tuple[Any, dict]] = field(default_factory=list)

    @classmethod
    def capture(cls, model) -> "ModelState":
        import torch

        params = list(model.named_parameters(remove_duplicate=True))
        modules = list(model.modules())
        state = cls(
            training=[(m, m.training) for m in modules],
            buffers=[(b, b.detach().clone()) for b in model.buffers() if b is not None],
            requires_grad=[(p, p.requires_grad) for _, p in params],
            param_versions=[(n, p, p._version) for n, p in params],
            cpu_rng=torch.get_rng_state(),
            attributes=[(m, dict(vars(m))) for m in modules],
        )
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state.cuda_rng = torch.cuda.get_rng_state_all()
        return state

    def detach_grads(self) -> None:
        """Set every existing .grad aside so that our backward writes fresh ones."""
        self.grads = [(p, p.grad) for p, _ in self.requires_grad]
        for p, _ in self.requires_grad:
            p.grad = None

    def changed_buffers(self, model) -> list[str]:
        """The buffers the pass wrote to (BatchNorm's running statistics, any running state), by name."""
        import torch

        saved = {id(b): copy for b, copy in self.buffers}
        return [name for name, b in model.named_buffers()
                if id(b) in saved and (b.shape != saved[id(b)].shape or not torch.equal(b, saved[id(b)]))]

    def mutated_parameters(self) -> list[str]:
        return [n for n, p, v in self.param_versions if p._version != v]

    def take_parameter_versions(self) -> None:
        """The parameters' versions now are the ones to compare with next (after nnlint wrote them back)."""
        self.param_versions = [(n, p, p._version) for n, p, _ in self.param_versions]

    def restore(self) -> None:
        import torch

        with torch.no_grad():
            for buf, saved in self.buffers:
                if buf.shape == saved.shape:
                    buf.copy_(saved)
        for module, flag in self.training:
            module.training = flag
        for module, kept in self.attributes:
            _restore_attributes(module, kept)
        for p, flag in self.requires_grad:
            if p.requires_grad != flag:
                p.requires_grad_(flag)
        for p, grad in self.grads:
            p.grad = grad
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)


_MISSING = object()


def _restore_attributes(module, kept: dict) -> None:
    """Put back the plain values and tensors among a module's attributes as `kept` has them, and remove
    the tensor-holding attributes the forward added. Other objects the forward replaced are left (a
    module's own machinery, `_parameters` and the hook dicts, is the same object and is skipped at once
    by identity: this runs for every module after every pass)."""
    now = vars(module)
    for k, v in kept.items():
        current = now.get(k, _MISSING)
        if current is v:
            continue
        if isinstance(v, _PLAIN):
            if not isinstance(current, _PLAIN) or current != v:
                setattr(module, k, v)
        elif _holds_tensors(v) or _holds_tensors(current):
            setattr(module, k, v)
    if len(now) != len(kept) or now.keys() != kept.keys():
        for k in [k for k in now if k not in kept]:
            if k not in _module_machinery() and _holds_tensors(now[k]):
                delattr(module, k)


@functools.lru_cache(maxsize=None)
def _module_machinery() -> frozenset:
    """The attributes every nn.Module has (`training`, `_parameters`, `_buffers`, the hook dicts)."""
    import torch

    return frozenset(vars(torch.nn.Module()))


def _holds_tensors(value, depth: int = 2) -> bool:
    """A tensor, or a list, tuple or dict with one among its first items (two levels down): what a
    forward caches on a module."""
    import torch

    if isinstance(value, torch.Tensor):
        return True
    if depth == 0:
        return False
    if isinstance(value, (list, tuple)):
        return any(_holds_tensors(v, depth - 1) for v in value[:8])
    if isinstance(value, dict):
        return any(_holds_tensors(v, depth - 1) for v in list(value.values())[:8])
    return False


class ParameterWrites:
    """For a `with` block: every parameter of the model that a torch call writes in place (an in-place
    method, `x[...] = `, `out=`) is copied just before its first write, and `restore()` puts the
    copies back. A TorchFunctionMode sees each call; the write is matched by storage, so a write
    through `p.data` or a view of `p` counts too."""

    def __init__(self, model):
        self._params: dict[int, list[tuple[str, Any]]] = {}
        for name, p in model.named_parameters(remove_duplicate=True):
            ptr = _storage(p)
            if ptr is not None:
                self._params.setdefault(ptr, []).append((name, p))
        self.copies: dict[int, tuple[str, Any, Any]] = {}   # id(param) -> (name, param, copy)
        self._mode = None

    def __enter__(self) -> "ParameterWrites":
        from torch.overrides import TorchFunctionMode

        watcher = self

        class _Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                if _writes_in_place(func, kwargs):
                    watcher._copy_before_write(args, kwargs)
                return func(*args, **kwargs)

        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        self._mode.__exit__(*exc)
        return False

    def _copy_before_write(self, args, kwargs) -> None:
        import torch

        out = kwargs.get("out")
        targets = [args[0]] if args and isinstance(args[0], torch.Tensor) else []
        targets += [t for t in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(t, torch.Tensor)]
        for t in targets:
            for name, p in self._params.get(_storage(t), ()):
                if id(p) not in self.copies:
                    self.copies[id(p)] = (name, p, p.detach().clone())

    def restore(self) -> list[str]:
        """Put the written parameters back; returns their names."""
        import torch

        with torch.no_grad():
            for _, p, copy in self.copies.values():
                p.copy_(copy)
        names = [name for name, _, _ in self.copies.values()]
        self.copies.clear()
        return names


# In-place methods whose trailing underscore writes no values.
_NOT_WRITES = {"requires_grad_", "share_memory_", "retain_grad", "_fix_weakref", "_coalesced_", "rename_"}


def _writes_in_place(func, kwargs) -> bool:
    name = func_name(func)
    if kwargs.get("out") is not None:
        return True
    if name.startswith("__"):
        return name == "__setitem__" or (name.startswith("__i") and name not in ("__index__", "__int__", "__init__", "__iter__", "__invert__"))
    return name.endswith("_") and name not in _NOT_WRITES


def _storage(t):
    """The address of a tensor's storage (None for one that has none: sparse, meta, a wrapper)."""
    try:
        ptr = t.untyped_storage().data_ptr()
    except Exception:
        return None
    return ptr or None   # 0: no memory (meta, empty): nothing to write


def rng_snapshot() -> list:
    """Comparable RNG states of the CPU and every initialized CUDA device."""
    import torch

    states = [torch.get_rng_state()]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states += torch.cuda.get_rng_state_all()
    return states


def rng_changed(before: list, after: list) -> bool:
    import torch

    return len(before) != len(after) or any(not torch.equal(a, b) for a, b in zip(before, after))


def seed_all(seed: int) -> None:
    """torch.manual_seed(seed) without its fixed cost where CUDA is not in use: torch queues a lazy CUDA
    seeding with a formatted stack trace then (measured: 10 ms a call, most of a small model's probes)."""
    import torch

    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)
