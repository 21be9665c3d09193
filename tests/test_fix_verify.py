"""The outcome probe of the fixer (`nnlint.fix(..., verify_steps=N)`, `nnlint fix --verify-steps N`):
copies of the original and of the fixed setup trained N steps on the batch from one random state, the
curves side by side, a fix that does not help said so, and the user's objects left as found."""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

import nnlint
from nnlint.cli import main
from nnlint.errors import NNLintError
from nnlint.fix.verify import Setup, verify
from nnlint.loader import load_target

from model_state import assert_same, snapshot

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def load(name: str):
    return load_target(str(FIXTURES / name))


def mlp(activation=nn.ReLU, depth=3, width=32, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Linear(16, width), activation()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), activation()]
    return nn.Sequential(*layers, nn.Linear(width, 4))


X = torch.randn(32, 16, generator=torch.Generator().manual_seed(1))
Y = torch.randint(0, 4, (32,), generator=torch.Generator().manual_seed(2))


def test_an_overflowing_model_is_shown_to_train_once_fixed():
    loaded = load("propagation_exp_hidden.py")
    result = nnlint.fix(loaded.model, loaded.batch, unsafe=True, verify_steps=20)
    v = result.verification
    assert v.verdict == "better"
    assert v.original.nonfinite_at == 1 and v.fixed.ok and len(v.fixed.losses) == 20
    assert v.fixed.losses[-1] < v.fixed.losses[0]
    text = result.summary()
    assert "original        nan" in text and "the original goes non-finite at step 1" in text
    assert "random labels" in v.objective and "Adam(lr=1e-3)" in v.optimizer


def test_the_users_loss_optimizer_model_and_random_state_are_left_as_found():
    model = mlp(nn.Tanh)
    with torch.no_grad():
        model[2].weight.mul_(6.0)          # a tanh layer drawn far too large: NN202/NN103
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    F.cross_entropy(model(X), Y).backward()
    optimizer.step()                       # momentum buffers exist: the copy must carry them untouched
    optimizer.zero_grad()
    state = copy.deepcopy(optimizer.state_dict())
    result = nnlint.fix(model, X, target=Y, loss_fn=F.cross_entropy, optimizer=optimizer, verify_steps=15)
    after_fix = snapshot(model)
    rng = torch.get_rng_state()
    assert result.changed and result.verification is not None
    v = result.verification
    assert v.objective == "your loss cross_entropy" and v.optimizer.startswith("a copy of your SGD(lr=0.05)")
    assert len(v.original.losses) == len(v.fixed.losses) == 15
    # a second verification of the same two setups: the same curves, and nothing of the user's moved
    again = verify(Setup(mlp(nn.Tanh), X, Y, F.cross_entropy), Setup(model, X, Y, F.cross_entropy, optimizer), 15)
    assert_same(after_fix, snapshot(model))
    assert torch.equal(rng, torch.get_rng_state())
    assert again.fixed.losses == v.fixed.losses
    for key, value in optimizer.state_dict()["state"].items():
        assert torch.equal(value["momentum_buffer"], state["state"][key]["momentum_buffer"])
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


def test_a_fix_that_trains_worse_is_reported_not_hidden():
    # the comparison itself: a healthy ReLU MLP as "original", the same with exp as "fixed"
    class Exp(nn.Module):
        def forward(self, x):
            return torch.exp(x)

    v = verify(Setup(mlp(nn.ReLU), X, Y, F.cross_entropy), Setup(mlp(Exp, depth=6), X, Y, F.cross_entropy), 10)
    assert v.verdict == "worse"
    assert "the fixed model trains WORSE" in "\n".join(v.lines())


def test_the_same_model_on_both_sides_trains_no_better():
    v = verify(Setup(mlp(nn.ReLU), X, Y, F.cross_entropy), Setup(mlp(nn.ReLU), X, Y, F.cross_entropy), 10)
    assert v.original.losses == v.fixed.losses
    assert v.verdict == "no better" and "NO BETTER" in "\n".join(v.lines())


def test_parameters_a_fix_inserts_join_the_optimizer_copy():
    loaded = load("propagation_scaled_chain.py")
    model = loaded.model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    result = nnlint.fix(model, loaded.batch, unsafe=True, optimizer=optimizer, verify_steps=10)
    # the re-init does not hold on this chain: a norm per layer is the step that does (its parameters are new)
    assert any(o.fix.kind == "insert_norm" for o in result.applied), result.summary()
    v = result.verification
    assert "parameter(s) the fixes added" in v.optimizer and v.fixed.ok
    assert len(optimizer.param_groups) == 1          # the user's optimizer did not get them


def test_a_learning_rate_the_fixed_model_does_not_suit_is_named():
    loaded = load("optimizer_lr_tiny.py")
    model = loaded.model
    with torch.no_grad():
        model[0].weight.zero_()                          # a fault to fix: NN101
    result = nnlint.fix(model, loaded.batch, verify_steps=5, **loaded.check_arguments())
    v = result.verification
    assert v is not None and v.lr_advice, result.summary()
    assert "lr=" in v.lr_advice[0] and "learning rate" in v.lr_advice[0]


def test_nothing_fixed_means_nothing_trained():
    result = nnlint.fix(mlp(nn.ReLU), X, target=Y, loss_fn=F.cross_entropy, verify_steps=5)
    assert not result.changed and result.verification is None


@pytest.mark.parametrize("bad", [0, -3, 2.5, "50", True])
def test_a_bad_step_count_is_a_clear_error(bad):
    with pytest.raises(NNLintError, match="verify_steps must be a whole number"):
        nnlint.fix(mlp(nn.ReLU), X, verify_steps=bad)


def test_the_command_line_shows_both_curves_and_writes_nothing(tmp_path):
    path = tmp_path / "model.py"
    shutil.copy(FIXTURES / "propagation_exp_hidden.py", path)
    original = path.read_text()
    result = CliRunner().invoke(main, ["fix", str(path), "--unsafe-fixes", "--verify-steps", "10"])
    assert path.read_text() == original
    assert "trained a copy of the original and of the fixed model 10 steps" in result.output
    assert "the fixed model trains" in result.output and "original goes non-finite" in result.output
    bad = CliRunner().invoke(main, ["fix", str(path), "--verify-steps", "0"])
    assert bad.exit_code == 2 and "--verify-steps" in bad.output


def test_a_fix_that_makes_the_loss_fall_is_better_even_before_it_falls_far():
    # the double softmax: the original barely moves (2.30 -> 2.24 in 20 steps), the fixed head starts a
    # little higher and falls a fifth of its loss; the final losses alone are 16% apart
    loaded = load("objective_double_softmax.py")
    result = nnlint.fix(loaded.model, loaded.batch, unsafe=True, verify_steps=20, **loaded.check_arguments())
    v = result.verification
    assert v.verdict == "better", "\n".join(v.lines())
    fell = lambda c: (c.losses[0] - c.losses[-1]) / c.losses[0]
    assert fell(v.fixed) > fell(v.original) + 0.1
