"""The batch and the model's outputs as structures of tensors: one walker for all of them.

A batch may be a tensor, a tuple or list, a dict (or any Mapping: a Hugging Face BatchEncoding), a
namedtuple, a dataclass, or any container registered with `torch.utils._pytree`, nested; an output may
be the same or a Hugging Face `ModelOutput`. `children` is the one definition of "the tensors inside":
pytree's own flattening for the containers it knows, and Mappings and dataclasses, which it does not,
by hand. Everything else here (the tensors, their paths, a copy with some tensors replaced) is built on
it, so the tracer, the inventory and the fixer never disagree about what a batch holds.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Callable, Iterator, Optional

MAX_DEPTH = 32   # deeper than any real batch; stops a self-referencing structure
_LEAVES = (str, bytes, int, float, bool, complex, type(None))
_LEAF_TYPES = frozenset(_LEAVES)    # exact types: a set lookup before any isinstance
_torch: Any = None


def _is_tensor(obj) -> bool:
    # The tracer asks this for every argument of every torch call: keep it a global lookup.
    global _torch
    if _torch is None:
        import torch

        _torch = torch
    return isinstance(obj, _torch.Tensor)


def children(obj: Any) -> Optional[tuple[list[tuple[str, Any]], Callable[[list], Any]]]:
    """One level of a container: its (path step, child) pairs, and a function that rebuilds the
    container from new children; None for a leaf (a tensor, a scalar, a string, an unknown object)."""
    kind = type(obj)
    if kind in _LEAF_TYPES or _is_tensor(obj) or isinstance(obj, _LEAVES) or isinstance(obj, _torch.Size):
        return None
    if kind is list or kind is tuple:   # the common case, before the ABC and dataclass checks
        return [(f"[{i}]", v) for i, v in enumerate(obj)], lambda values, t=kind: t(values)
    from torch.utils import _pytree as pytree

    if isinstance(obj, Mapping):
        keys = list(obj.keys())

        def rebuild_mapping(values, obj=obj, keys=keys):
            try:
                return type(obj)(zip(keys, values))
            except Exception:   # a Mapping whose constructor takes something else
                return dict(zip(keys, values))

        return [(f"[{k!r}]", obj[k]) for k in keys], rebuild_mapping
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = [f for f in dataclasses.fields(obj)]
        settable = [f.name for f in fields if f.init]

        def rebuild_dataclass(values, obj=obj):
            changed = {f.name: v for f, v in zip(fields, values) if f.name in settable}
            return dataclasses.replace(obj, **changed)

        return [(f".{f.name}", getattr(obj, f.name, None)) for f in fields], rebuild_dataclass
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):   # a namedtuple
        return [(f"[{i}]", v) for i, v in enumerate(obj)], lambda values, t=type(obj): t(*values)
    if isinstance(obj, (list, tuple)):
        return [(f"[{i}]", v) for i, v in enumerate(obj)], lambda values, t=type(obj): t(values)
    if type(obj) in pytree.SUPPORTED_NODES:
        leaves, spec = pytree.tree_flatten(obj, is_leaf=lambda x: x is not obj)   # one level only
        return [(f"[{i}]", v) for i, v in enumerate(leaves)], lambda values, s=spec: pytree.tree_unflatten(values, s)
    return None


def named_tensors(obj: Any, path: str = "batch") -> Iterator[tuple[str, Any]]:
    """(path, tensor) for every tensor inside `obj`: `batch`, `batch[0]`, `batch['pixel_values']`."""
    yield from _walk(obj, path, 0, set())


def _walk(obj, path, depth, seen):
    if _is_tensor(obj):
        yield path, obj
        return
    if depth >= MAX_DEPTH or id(obj) in seen:
        return
    node = children(obj)
    if node is None:
        return
    seen = seen | {id(obj)}
    for step, child in node[0]:
        yield from _walk(child, path + step, depth + 1, seen)


def iter_tensors(obj: Any) -> Iterator[Any]:
    """Every tensor inside `obj`, in order. (The tracer asks this of every module call's inputs and
    outputs: no path strings are built, and a lone tensor or a flat tuple of them is answered at once.)"""
    if _is_tensor(obj):
        yield obj
        return
    kind = type(obj)
    if kind in _LEAF_TYPES:
        return
    if kind is tuple or kind is list or kind is dict:
        values = obj.values() if kind is dict else obj
        if all(type(v) in _LEAF_TYPES or _is_tensor(v) for v in values):
            yield from (v for v in values if _is_tensor(v))
            return
    yield from (t for _, t in named_tensors(obj))


def map_tensors(fn: Callable[[Any], Any], obj: Any, depth: int = 0) -> Any:
    """A copy of the structure with each tensor replaced by fn(tensor); everything else kept as is."""
    if _is_tensor(obj):
        return fn(obj)
    node = children(obj) if depth < MAX_DEPTH else None
    if node is None:
        return obj
    pairs, rebuild = node
    return rebuild([map_tensors(fn, child, depth + 1) for _, child in pairs])


def call_model(model, batch, **keywords):
    """A Tensor is called as model(batch), a tuple/list as model(*batch), a dict as model(**batch), or
    as model(batch) where forward takes the dict as its one argument (`def forward(self, data)` reading
    `data["x"]`, as graph and detection code often does) and cannot take its keys as keywords.
    `keywords` are passed besides (a probe's, nnlint.probes.passes)."""
    if isinstance(batch, Mapping):
        if _takes_the_dict_whole(model, batch):
            return model(batch, **keywords)
        return model(**batch, **keywords)
    if isinstance(batch, (tuple, list)):
        return model(*batch, **keywords)
    return model(batch, **keywords)


def _takes_the_dict_whole(model, batch: Mapping) -> bool:
    import inspect

    try:
        signature = inspect.signature(model.forward if hasattr(model, "forward") else model)
    except (TypeError, ValueError):
        return False
    try:
        signature.bind(**{str(k): None for k in batch})
        return False
    except TypeError:
        pass
    try:
        signature.bind(batch)
        return True
    except TypeError:
        return False


def describe_batch(batch: Any, depth: int = 0) -> str:
    """`64x784`, `(8x3x32x32, 8)`, `{input_ids: 2x16, attention_mask: 2x16}` for the report's header."""
    if _is_tensor(batch):
        return "x".join(str(s) for s in batch.shape) or "scalar"
    if depth > 2:
        return "..."
    if isinstance(batch, Mapping):
        return "{" + ", ".join(f"{k}: {describe_batch(v, depth + 1)}" for k, v in batch.items()) + "}"
    if isinstance(batch, (list, tuple)):
        return "(" + ", ".join(describe_batch(v, depth + 1) for v in batch) + ")"
    return type(batch).__name__


def slice_batch(batch: Any, n: int):
    """The first n samples of every tensor that has the batch's leading size; None if that is unclear."""
    tensors = list(iter_tensors(batch))
    if not tensors or tensors[0].dim() == 0:
        return None
    size = tensors[0].shape[0]
    if size <= n:
        return batch
    return map_tensors(lambda t: t[:n] if t.dim() > 0 and t.shape[0] == size else t, batch)


def materialize_batch(batch):
    """A generator, iterator or DataLoader given as the batch: its first element is the batch."""
    from nnlint.errors import NNLintError

    if _is_tensor(batch) or isinstance(batch, (Mapping, list, tuple)) or batch is None:
        return batch
    if hasattr(batch, "__next__"):
        try:
            return next(batch)
        except StopIteration:
            raise NNLintError("the batch iterator is empty: give nnlint one batch (a tensor, tuple or dict)") from None
    if hasattr(batch, "__iter__") and not isinstance(batch, (str, bytes)):
        return materialize_batch(iter(batch))
    return batch


def validate_batch(batch) -> None:
    from nnlint.errors import NNLintError

    if batch is None:
        raise NNLintError("no batch was given: pass one sample batch, e.g. torch.randn(16, 3, 32, 32)")
    tensors = list(iter_tensors(batch))
    if tensors and all(t.dim() > 0 and t.shape[0] == 0 for t in tensors):
        raise NNLintError(f"the batch is empty ({describe_batch(batch)}): give at least a few samples (16-64 "
                          "is typical), so that the statistics mean something")
