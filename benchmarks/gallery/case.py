"""What a gallery case is: one training setup (model, batch, target, loss, optimizer, loop), the bug
planted in it, where the bug comes from, and what nnlint should say about it.

Plain torch only, so a unit test can build any case without the peers installed:

    from benchmarks.gallery import case_by_name
    setup = case_by_name("double_softmax_ce").build()
    nnlint.check(setup.model, setup.batch, target=setup.target, loss_fn=setup.loss_fn)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

CATEGORIES = ("loss", "dataflow", "structure", "gradients", "init", "data", "mode", "optimizer", "loop")


@dataclass
class Setup:
    """Everything a training step needs. `batch` follows nnlint's (and torchtest2's) convention: a
    tensor is called as `model(batch)`, a tuple as `model(*batch)`, a dict as `model(**batch)`.
    `train_step(setup, optimizer, step)` replaces the standard step for loop bugs (the bug lives in
    the loop body, not in the model)."""

    model: nn.Module
    batch: Any
    target: Any = None
    loss_fn: Optional[Callable] = None
    optimizer: Optional[torch.optim.Optimizer] = None
    train_step: Optional[Callable[["Setup", torch.optim.Optimizer, int], None]] = None

    def forward(self):
        return call(self.model, self.batch)

    def loss(self, outputs) -> torch.Tensor:
        """The user's loss; without one, a fixed random projection of every float output (as
        torchtest2 does: `output.sum()` would be constant under a softmax)."""
        if self.loss_fn is None:
            return surrogate_loss(outputs)
        return self.loss_fn(outputs) if self.target is None else self.loss_fn(outputs, self.target)


@dataclass(frozen=True)
class Expect:
    """What nnlint should report. `code` "" : the catalog (docs/rules.md) has no code for this bug yet (the row says
    so). `module`: the qualified module name the finding must name (a finding on a module inside it
    counts: `features` is matched by `features.0`; "" is the input or the whole model and matches
    only itself), a tuple of acceptable names, or None when the finding is about the whole setup
    (a learning rate, a loop) and any module it names is right."""

    code: str
    module: Union[None, str, tuple[str, ...]]

    def names(self, module: str) -> bool:
        if self.module is None:
            return True
        wanted = (self.module,) if isinstance(self.module, str) else self.module
        return any(module == w or (w and module.startswith(w + ".")) for w in wanted)


@dataclass(frozen=True)
class Case:
    """One row of the benchmark.

    expect: None for a healthy case. twin: the healthy case this one differs from by the bug
    alone; a peer is credited with a find only for checks that flag the bug and not the twin.
    loop: the bug needs a real 2-step training loop (seen by `nnlint.guard`); otherwise one batch.
    options: what the user declares about the setup, passed to each tool that can take it
    ("num_classes" for neural_net_checklist, "frozen" prefixes for torchtest2, "causal").
    out_of_scope: why no nnlint code applies (the program crashes loudly, a performance hint).
    """

    name: str
    category: str
    source: str
    build: Callable[[], Setup]
    expect: Optional[Expect] = None
    twin: Optional[str] = None
    loop: bool = False
    options: dict = field(default_factory=dict)
    out_of_scope: str = ""
    note: str = ""

    @property
    def healthy(self) -> bool:
        return self.expect is None and not self.out_of_scope


# ---------------------------------------------------------------------------------------------
# Shared pieces: one definition each, used by every category module.


def call(model: nn.Module, batch: Any):
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def surrogate_loss(outputs, seed: int = 0) -> torch.Tensor:
    leaves = [t for t in torch.utils._pytree.tree_leaves(outputs)
              if isinstance(t, torch.Tensor) and t.is_floating_point() and t.requires_grad]
    g = torch.Generator().manual_seed(seed)
    return sum((t * torch.randn(t.shape, generator=g).to(t)).sum() for t in leaves)


def standard_step(setup: Setup, optimizer: torch.optim.Optimizer, step: int) -> None:
    """The training step every README writes: zero_grad, forward, loss, backward, step."""
    optimizer.zero_grad(set_to_none=True)
    setup.loss(setup.forward()).backward()
    optimizer.step()


def run_loop(setup: Setup, optimizer: torch.optim.Optimizer, steps: int = 2) -> None:
    step = setup.train_step or standard_step
    for i in range(steps):
        step(setup, optimizer, i)


def default_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer a loop uses when the example gives none (torchtest2's default)."""
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)


def seeded(fn: Callable[[], Setup]) -> Callable[[], Setup]:
    """Every build draws from seed 0 and leaves the global RNG as it found it, so building a case
    twice (neural_net_checklist's factories do) gives the same model and data."""
    def build() -> Setup:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return fn()
    build.__name__ = fn.__name__
    build.__doc__ = fn.__doc__
    return build


def x_features(n: int = 16, d: int = 32) -> torch.Tensor:
    """torchtest2's README batch: standard-normal features."""
    return torch.randn(n, d)


def y_classes(n: int = 16, classes: int = 10) -> torch.Tensor:
    return torch.randint(0, classes, (n,))


def mlp(d_in: int = 32, hidden: int = 64, d_out: int = 10, *tail: nn.Module) -> nn.Sequential:
    """torchtest2's README classifier, `nn.Sequential(Linear(32, 64), ReLU(), Linear(64, 10))`,
    with optional modules appended after the head (a softmax, a sigmoid)."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out), *tail)


def classifier_setup(model: Optional[nn.Module] = None, *, loss_fn: Callable = F.cross_entropy,
                     optimizer: Optional[Callable[[nn.Module], torch.optim.Optimizer]] = None,
                     n: int = 16, with_optimizer: bool = True) -> Setup:
    """The README setup: x (16, 32), y in [0, 10), cross-entropy, Adam(lr=1e-3) over the model."""
    model = model if model is not None else mlp()
    make_opt = optimizer or (lambda m: torch.optim.Adam(m.parameters(), lr=1e-3))
    return Setup(model, x_features(n), y_classes(n), loss_fn, make_opt(model) if with_optimizer else None)


CLASSIFY = {"num_classes": 10}   # what a user tells neural_net_checklist about a 10-class task
