"""`nnlint.check` is an observation: the model must come back exactly as it was found."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nnlint
from model_state import assert_same, snapshot


class BNDropoutNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.3)
        self.frozen = nn.Linear(8, 8)
        self.head = nn.Linear(8, 4)
        for p in self.frozen.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        h = F.relu(self.bn(self.conv(x)))
        h = h.mean(dim=(2, 3))
        h = self.drop(self.frozen(h))
        return self.head(h)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_parameters_buffers_flags_grads_and_hooks_are_untouched(mode):
    torch.manual_seed(0)
    model = BNDropoutNet()
    getattr(model, mode)()
    # An existing gradient (as after a previous step) must be neither accumulated into nor replaced.
    model.head.weight.grad = torch.full_like(model.head.weight, 0.5)
    calls = []
    model.conv.register_forward_hook(lambda m, i, o: calls.append("user hook"))
    before = snapshot(model)
    bn_mean = model.bn.running_mean.clone()
    batches_tracked = model.bn.num_batches_tracked.clone()

    nnlint.check(model, torch.randn(16, 3, 8, 8) * 3 + 1)

    assert_same(before, snapshot(model))
    assert torch.equal(model.bn.running_mean, bn_mean)          # BatchNorm running stats
    assert torch.equal(model.bn.num_batches_tracked, batches_tracked)
    assert calls, "the user's own hook still ran during the check (it is part of the model)"


def test_mixed_training_flags_are_restored_one_by_one():
    model = BNDropoutNet().eval()
    model.drop.train()            # a deliberately odd state; check must not "normalize" it
    before = snapshot(model)
    nnlint.check(model, torch.randn(8, 3, 8, 8))
    assert_same(before, snapshot(model))


def test_rng_state_is_restored():
    model = BNDropoutNet()
    batch = torch.randn(8, 3, 8, 8)
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    nnlint.check(model, batch)   # dropout consumes the RNG inside
    assert torch.equal(torch.rand(5), expected)


def test_global_hooks_and_function_mode_are_removed():
    from torch.nn.modules import module as module_mod

    pre = dict(module_mod._global_forward_pre_hooks)
    post = dict(module_mod._global_forward_hooks)
    nnlint.check(BNDropoutNet(), torch.randn(8, 3, 8, 8))
    assert dict(module_mod._global_forward_pre_hooks) == pre
    assert dict(module_mod._global_forward_hooks) == post
    assert not torch.overrides._get_current_function_mode_stack()


def test_state_is_restored_when_the_model_raises():
    class Broken(BNDropoutNet):
        def forward(self, x):
            super().forward(x)
            raise ValueError("boom")

    model = Broken().eval()
    before = snapshot(model)
    with pytest.raises(nnlint.NNLintError, match="boom"):
        nnlint.check(model, torch.randn(8, 3, 8, 8))
    assert_same(before, snapshot(model))
    from torch.nn.modules import module as module_mod
    assert not module_mod._global_forward_hooks


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rng_state_is_restored():  # pragma: no cover - runs where a GPU is present
    model = BNDropoutNet().cuda()
    torch.cuda.manual_seed(7)
    expected = torch.rand(5, device="cuda")
    torch.cuda.manual_seed(7)
    nnlint.check(model, torch.randn(8, 3, 8, 8, device="cuda"))
    assert torch.equal(torch.rand(5, device="cuda"), expected)


class CachingNet(nn.Module):
    """A forward that keeps tensors on the module, as torchvision's RAFT keeps `self.corr_pyramid`: a
    list it adds, and an attribute it replaces."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.scale = torch.ones(4)              # a plain tensor attribute, neither parameter nor buffer

    def forward(self, x):
        y = self.fc(x)
        self.pyramid = [y, y.pow(2)]
        self.scale = y.detach().std(0)
        return y * self.scale


def test_tensors_a_forward_keeps_on_the_model_are_put_back_and_it_can_be_deep_copied():
    import copy

    torch.manual_seed(0)
    model = CachingNet()
    model(torch.randn(4, 8))
    with pytest.raises(RuntimeError, match="deepcopy"):   # what a plain training forward leaves
        copy.deepcopy(model)

    model = CachingNet()
    scale = model.scale
    nnlint.check(model, torch.randn(16, 8))
    assert not hasattr(model, "pyramid") and model.scale is scale
    copy.deepcopy(model)


class CacheFillingNet(nn.Module):
    """A forward that fills a cache slot declared as a plain value (`self.cache = None`, a number) with
    a tensor, and deletes a flag it was given: both as they were after the check."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.cache = None
        self.temperature = 2.0
        self.first_call = True

    def forward(self, x):
        y = self.fc(x)
        self.cache = y
        self.temperature = y.detach().mean(0)   # a number replaced by a 4-value tensor
        if hasattr(self, "first_call"):
            del self.first_call
        return y / 2.0


def test_a_plain_slot_a_forward_fills_with_tensors_is_put_back():
    import copy

    model = CacheFillingNet()
    nnlint.check(model, torch.randn(16, 8))
    assert model.cache is None and model.temperature == 2.0 and model.first_call is True
    copy.deepcopy(model)
