"""A map from tensors (by identity) to values that does not keep the tensors alive."""
from __future__ import annotations

import weakref
from typing import Any, Optional


class TensorMap:
    """`torch.utils.weak.WeakTensorKeyDictionary`'s job for the recorder's hot path: every torch call
    looks up the serial of each of its tensors, and that class wraps each key in a Python object with
    its own `__hash__` and `__eq__` (a fifth of the recorder's own time on a 100-layer MLP). Here a key
    is the tensor's `id` and the entry keeps a weak reference to check that the tensor is still the one
    it names: an id that a freed tensor's successor reuses misses and is written over. Entries of
    freed tensors stay until the map goes (one per tensor a trace saw: thousands)."""

    __slots__ = ("_entries",)

    def __init__(self):
        self._entries: dict[int, tuple[weakref.ref, Any]] = {}

    def get(self, t, default: Optional[Any] = None) -> Any:
        entry = self._entries.get(id(t))
        if entry is not None and entry[0]() is t:
            return entry[1]
        return default

    def __setitem__(self, t, value) -> None:
        self._entries[id(t)] = (weakref.ref(t), value)

    def __contains__(self, t) -> bool:
        entry = self._entries.get(id(t))
        return entry is not None and entry[0]() is t
