"""The optimizer the corpus hands to the check, as a user's training script would build it.

Without one, the optimizer rules (NN506, NN801-NN804) have nothing to read. The default is the
libraries' usual recipe: AdamW, weight decay on the matrices and kernels only (timm's
`param_groups_weight_decay`, Hugging Face Trainer's "no decay for bias and LayerNorm.weight": both
are "ndim <= 1 gets no decay"), frozen parameters left out. Built fresh for each check; the snapshot
of its state (`state_of`) is compared before and after, as the model's is.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

LR = 1e-3
WEIGHT_DECAY = 0.05


def adamw(model: torch.nn.Module) -> torch.optim.Optimizer:
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=LR)


OPTIMIZERS: dict[str, Optional[Callable[[torch.nn.Module], torch.optim.Optimizer]]] = {
    "adamw": adamw,
    "none": None,
}
DEFAULT = "adamw"


def state_of(optimizer: Optional[torch.optim.Optimizer]) -> list:
    """What a check must not change: each group's hyperparameters and parameter ids, and every state
    tensor's bytes."""
    if optimizer is None:
        return []
    groups = [({k: v for k, v in g.items() if k != "params"}, [id(p) for p in g["params"]])
              for g in optimizer.param_groups]
    state = sorted(((id(p), k, v.detach().clone().reshape(-1).view(torch.uint8).tolist()
                     if isinstance(v, torch.Tensor) else v) for p, s in optimizer.state.items() for k, v in s.items()),
                   key=lambda t: (t[0], t[1]))
    return [repr(groups), state]
