"""A check leaves Python's garbage collector as it found it."""
import gc

import pytest

torch = pytest.importorskip("torch")

import nnlint  # noqa: E402


def small():
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def test_the_objects_frozen_for_the_check_are_unfrozen_after_it():
    assert gc.get_freeze_count() == 0
    seen = []
    model = small()
    model.register_forward_hook(lambda m, a, o: seen.append(gc.get_freeze_count()))
    nnlint.check(model, torch.randn(8, 4), select=["NN101"])
    assert seen and seen[0] > 0            # frozen while the model ran
    assert gc.get_freeze_count() == 0 and gc.isenabled()


def test_a_process_that_froze_objects_itself_keeps_them_frozen():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        nnlint.check(small(), torch.randn(8, 4), select=["NN101"])
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()


def test_a_process_that_disabled_the_collector_keeps_it_disabled():
    gc.disable()
    try:
        nnlint.check(small(), torch.randn(8, 4), select=["NN101"])
        assert not gc.isenabled() and gc.get_freeze_count() == 0
    finally:
        gc.enable()
