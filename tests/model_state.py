"""What a check must leave exactly as it found: a model's state, modes, grads and hooks.

A helper module (not a test file) for the tests that assert "nnlint only observed". It sits in tests/,
which pytest puts on sys.path in its default rootdir/prepend import mode (tests/ is not a package), so
both `pytest` and `python -m pytest` import it as `model_state`.
"""
from __future__ import annotations

import torch


def snapshot(model):
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grads": {n: (None if p.grad is None else p.grad.detach().clone()) for n, p in model.named_parameters()},
        "grad_ids": {n: id(p.grad) for n, p in model.named_parameters()},
        "hooks": {n: (dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks))
                  for n, m in model.named_modules()},
    }


def assert_same(before, after):
    assert before["state"].keys() == after["state"].keys()
    for k in before["state"]:
        assert torch.equal(before["state"][k], after["state"][k]), f"{k} changed"
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["grad_ids"] == after["grad_ids"]
    for k, g in before["grads"].items():
        if g is None:
            assert after["grads"][k] is None, f"{k}.grad appeared"
        else:
            assert torch.equal(g, after["grads"][k]), f"{k}.grad changed"
    assert before["hooks"].keys() == after["hooks"].keys()
    for k in before["hooks"]:
        for b, a in zip(before["hooks"][k], after["hooks"][k]):
            assert b == a, f"hooks of {k!r} changed"
