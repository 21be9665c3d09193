"""The fix-training benchmark in miniature (benchmarks/fix_training.py): a few of its generated broken
models, fixed with `nnlint.fix(unsafe=True)` on their first training batch, must then learn the
synthetic XOR-like task (4 classes; a linear model, or a model whose hidden units do not work, sits at
chance, 25%) in 100 steps: from chance to well above it. And the healthy twin is left alone by the fix.

The models are the benchmark's own model files (benchmarks/fixbench/models.py), written to a temporary
folder; the fault is plain torch in the file. One fixed seed, one learning rate (SGD momentum, 0.03, the
best one for the healthy twins).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.fixbench import arms  # noqa: E402
from benchmarks.fixbench.models import Spec, write  # noqa: E402
from benchmarks.fixbench.mutations import BY_NAME  # noqa: E402
from benchmarks.fixbench.tasks import Objective, Split, generated_inputs, xor  # noqa: E402
from benchmarks.fixbench.train import Protocol, fingerprint, train_grid, train_once  # noqa: E402

STEPS, LR = 100, 0.03
CHANCE = 0.25


@pytest.fixture(scope="module")
def data():
    # one thread: these models are tiny, and on a busy machine torch's thread pool spins at every op
    # (measured: 100 steps of a 3x64 MLP take 4 s with two threads under load, 0.05 s with one)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield xor()
    torch.set_num_threads(threads)


def model_file(folder: Path, data, family: str, depth: int, width: int, fault: str):
    spec = Spec(family, depth, width, BY_NAME[fault])
    split = Split.of(data, generated_inputs(data, spec.flat, spec.mutation.raw), Objective(data.classes))
    x, y = split.first_batch()
    return write(folder, spec, "xor", data.classes, (x, y)), split, (x, y)


def accuracy(model, split) -> float:
    return train_once(model, split, LR, seed=0, p=Protocol(steps=STEPS, seeds=1)).accuracy


CASES = [   # the fault, and the rule whose fix has to be among those kept
    pytest.param("mlp", 3, 16, "dead", "NN203", id="3x16 MLP, ReLUs dead (biases -4)"),
    pytest.param("mlp", 3, 64, "huge", "NN402", id="3x64 MLP, weights N(0, 1)"),
    pytest.param("mlp", 3, 64, "sigmoid", "NN201", id="3x64 MLP, sigmoid hidden, default init"),
    # exp overflows; a re-init alone makes the sample batch finite but leaves exp in place (it trains to
    # NaN at every learning rate): the activation swap (NN204, unsafe) is the repair that holds
    pytest.param("mlp", 3, 64, "exp", "NN204", id="3x64 MLP, torch.exp hidden"),
]


@pytest.mark.parametrize("family, depth, width, fault, rule", CASES)
def test_the_unsafe_fix_takes_a_broken_model_from_chance_to_learning(tmp_path, data, family, depth, width, fault, rule):
    path, split, (x, y) = model_file(tmp_path, data, family, depth, width, fault)
    before = accuracy(arms.load(path).model, split)
    fixed = arms.fixed_in_memory(path, x, y, F.cross_entropy, unsafe=True)
    assert fixed.model is not None, fixed.error
    assert rule in {a.split()[0] for a in fixed.applied}, fixed.log
    after = accuracy(fixed.model, split)
    assert before < CHANCE + 0.05, f"the planted fault should keep the model at chance, it learned to {before:.1%}"
    assert after > CHANCE + 0.30 and after > before + 0.25, \
        f"after {', '.join(fixed.applied) or 'no fix'}: {before:.1%} -> {after:.1%} in {STEPS} steps"


def test_the_healthy_twin_is_left_exactly_as_it_was(tmp_path, data):
    path, split, (x, y) = model_file(tmp_path, data, "mlp", 3, 16, "healthy")
    as_built = arms.load(path).model
    fixed = arms.fixed_in_memory(path, x, y, F.cross_entropy, unsafe=True)
    assert fixed.applied == [], fixed.log
    assert fingerprint(fixed.model) == fingerprint(as_built)
    assert accuracy(as_built, split) > CHANCE + 0.30   # and it is a model that learns the task


def test_the_learning_rate_chosen_on_the_mean_runs_every_seed_at_every_rate(tmp_path, data):
    path, split, _ = model_file(tmp_path, data, "mlp", 3, 16, "healthy")
    grid = train_grid(arms.load(path).model, split, Protocol(steps=20, lrs=(0.01, 0.1), seeds=2, on_mean=True))
    assert [len(a.runs) for a in grid.at] == [2, 2]                      # no rate judged on one data order
    assert grid.best.accuracy == max(a.accuracy for a in grid.at)
