"""The recorder's tensor -> serial map: by identity, never keeping a tensor alive, never confusing a
freed tensor's successor (which may get its id) with it."""
import gc
import weakref

import pytest

torch = pytest.importorskip("torch")

from nnlint.trace.tensormap import TensorMap  # noqa: E402


def test_a_tensor_is_found_by_identity_not_by_value():
    m = TensorMap()
    a, b = torch.zeros(3), torch.zeros(3)
    m[a] = 1
    assert m.get(a) == 1 and a in m
    assert m.get(b) is None and b not in m and m.get(b, "none") == "none"
    assert m.get(a.view(3)) is None          # a view is another tensor


def test_the_map_keeps_no_tensor_alive_and_a_reused_id_misses():
    m = TensorMap()
    a = torch.zeros(3)
    ref, old = weakref.ref(a), id(a)
    m[a] = 7
    del a
    gc.collect()
    assert ref() is None
    for _ in range(200):                     # CPython hands a freed object's address out again soon
        b = torch.zeros(3)
        if id(b) == old:
            break
    assert m.get(b) is None and b not in m
    m[b] = 8
    assert m.get(b) == 8
