"""What a zoo case is, and the seeded batches the cases are fed."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn


@dataclass
class ZooCase:
    """One model and the batch it is checked on.

    `expect` maps a rule code to the modules it must fire on: a diagnostic counts for a listed module
    when its module is that name or one inside it (`layer1.1` is matched by a finding on
    `layer1.1.conv2`); "" is the input or the whole model. Healthy cases expect nothing: no warning
    and no error (an `info` is allowed). `consequences` lists codes that may also fire on a faulty
    case because the planted fault causes them (a no-norm ResNet's stream also explodes, NN402), so
    a test neither requires nor forbids them.
    """

    name: str
    model: nn.Module
    batch: Any
    expect: dict[str, list[str]] = field(default_factory=dict)
    optimizer: Optional[torch.optim.Optimizer] = None
    loss_fn: Optional[Callable] = None
    target: Any = None
    consequences: dict[str, list[str]] = field(default_factory=dict)
    note: str = ""


def images(n: int = 8, size: int = 64, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """A standardized image batch (per-channel mean 0, std 1) that varies from image to image like
    photos do: a per-image colour cast (variance 0.64) on top of pixel detail (variance 0.36). On
    i.i.d. noise every image has the same channel averages, which makes pooled-feature layers (SE
    gates, heads) see an unrealistically constant input."""
    g = torch.Generator().manual_seed(seed)
    return 0.8 * torch.randn(n, channels, 1, 1, generator=g) + 0.6 * torch.randn(n, channels, size, size, generator=g)


def token_ids(n: int = 8, seq: int = 16, vocab: int = 512, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, seq), generator=g)


def features(*shape: int, seed: int = 0) -> torch.Tensor:
    """Standardized features (mean 0, std 1)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def labels(n: int, classes: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))


@contextmanager
def seeded(seed: int = 0) -> Iterator[None]:
    """Build under a fixed seed, leaving the caller's RNG state as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield
