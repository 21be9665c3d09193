"""Input normalization, in memory: `(x - mean) / std` with the per-channel statistics measured on the
batch, registered as buffers on the model (they follow `.to(device)` and the state_dict) and applied by
a forward pre-hook to the argument the input path names ("batch", "batch[1]", "batch['pixels']")."""
from __future__ import annotations

import re
from typing import Any, Optional, Union

from nnlint.fix.kind import CannotFix

_PATH = re.compile(r"^batch(?:\[(\d+)\]|\[(['\"])(.+)\2\])?$")


def argument_of(path: str) -> Union[int, str]:
    """Which forward argument an input path is: 0 for "batch", i for "batch[i]", "k" for "batch['k']"."""
    m = _PATH.match(path)
    if m is None:
        raise CannotFix(f"input {path} is nested inside the batch; normalize it in the data pipeline")
    if m.group(1) is not None:
        return int(m.group(1))
    if m.group(3) is not None:
        return m.group(3)
    return 0


def broadcast_shape(ndim: int, channel_dim: Optional[int]) -> list[int]:
    """[1, -1, 1, 1] for NCHW channels; [-1] when the channels are the last dim (plain broadcasting)."""
    if channel_dim is None or channel_dim >= ndim - 1:
        return [-1]
    return [1] * channel_dim + [-1] + [1] * (ndim - channel_dim - 1)


def robust_stds(std: list[float], floor: float = 0.1) -> list[float]:
    """The per-channel stds to divide by: a channel that is (almost) constant on the batch is divided by
    a tenth of the typical channel's std, not by its own: a pixel that is zero in all but one image of
    the batch would otherwise be scaled up 50x and blow up on the next batch (and a constant one, std
    0, would divide by zero)."""
    live = sorted(s for s in std if s > 0)
    if not live:
        return [1.0 for _ in std]
    typical = live[len(live) // 2]
    return [max(s, floor * typical) for s in std]


def overall(mean: list[float], std: list[float]) -> tuple[float, float]:
    """The whole input's mean and std from its per-channel ones (equal-sized channels)."""
    n = max(len(mean), 1)
    m = sum(mean) / n
    second = sum(s * s + mu * mu for mu, s in zip(mean, std)) / n
    return m, max(second - m * m, 0.0) ** 0.5


class InputNormalizer:
    """A forward pre-hook: normalizes one argument with the model's buffers, `(x - <prefix>_mean) /
    <prefix>_std`, or whitens it, `(x - <prefix>_mean) @ <prefix>_whitening`. A class, not a closure,
    so the model still pickles and deep-copies."""

    def __init__(self, argument: Union[int, str], prefix: str, whiten: bool = False):
        self.argument = argument
        self.prefix = prefix
        self.whiten = whiten

    def transform(self, module, x):
        mean = getattr(module, f"{self.prefix}_mean")
        if self.whiten:
            return (x - mean) @ getattr(module, f"{self.prefix}_whitening")
        return (x - mean) / getattr(module, f"{self.prefix}_std")

    def __call__(self, module, args, kwargs):
        if isinstance(self.argument, int) and self.argument < len(args):
            args = list(args)
            args[self.argument] = self.transform(module, args[self.argument])
            return tuple(args), kwargs
        if isinstance(self.argument, str) and self.argument in kwargs:
            return args, {**kwargs, self.argument: self.transform(module, kwargs[self.argument])}
        return args, kwargs


def _already(model, argument) -> bool:
    return any(isinstance(h, InputNormalizer) and h.argument == argument for h in model._forward_pre_hooks.values())


def prefix_for(argument: Union[int, str]) -> str:
    return "input" if argument == 0 else f"input_{argument}"


def zca(x, eps: float):
    """ZCA whitening of a (samples, features) tensor: (mean, W) with cov((x - mean) @ W) = I."""
    import torch

    x = x.detach().double()
    mean = x.mean(0)
    cov = torch.cov((x - mean).T)
    values, vectors = torch.linalg.eigh(cov)
    w = vectors @ torch.diag((values.clamp(min=0) + eps).rsqrt()) @ vectors.T
    return mean, w


def input_tensor(batch: Any, argument: Union[int, str]):
    import torch

    if isinstance(batch, torch.Tensor):
        return batch if argument == 0 else None
    try:
        value = batch[argument]
    except (KeyError, IndexError, TypeError):
        return None
    return value if isinstance(value, torch.Tensor) else None


def install_input_whitening(model, batch: Any, path: str, eps: float) -> str:
    argument = argument_of(path)
    x = input_tensor(batch, argument)
    if x is None or x.dim() != 2 or not x.is_floating_point():
        raise CannotFix(f"{path} is not a (samples, features) float tensor")
    if _already(model, argument):
        return f"{path} is already normalized by the model"
    mean, w = zca(x, eps)
    prefix = prefix_for(argument)
    like = next((p for p in model.parameters() if p.is_floating_point()), x)
    model.register_buffer(f"{prefix}_mean", mean.to(like.device, like.dtype))
    model.register_buffer(f"{prefix}_whitening", w.to(like.device, like.dtype))
    model.register_forward_pre_hook(InputNormalizer(argument, prefix, whiten=True), with_kwargs=True)
    return (f"the model now whitens {path}: (x - {prefix}_mean) @ {prefix}_whitening, ZCA computed on the batch "
            f"({x.shape[1]} features, eps {eps:g})")


def install_input_normalization(model, batch: Any, path: str, channel_dim: Optional[int],
                                mean: list[float], std: list[float]) -> str:
    import torch

    argument = argument_of(path)
    if not mean or len(mean) != len(std):
        raise CannotFix(f"no per-channel statistics for {path}")
    ndim = _ndim(batch, argument)
    prefix = prefix_for(argument)
    if _already(model, argument):
        return f"{path} is already normalized by the model"
    like = next((p for p in model.parameters() if p.is_floating_point()), None)
    kw = {"device": like.device, "dtype": like.dtype} if like is not None else {}
    shape = broadcast_shape(ndim, channel_dim)
    safe_std = robust_stds(std)
    model.register_buffer(f"{prefix}_mean", torch.tensor(mean, **kw).view(*shape))
    model.register_buffer(f"{prefix}_std", torch.tensor(safe_std, **kw).view(*shape))
    model.register_forward_pre_hook(InputNormalizer(argument, prefix), with_kwargs=True)
    return (f"the model now normalizes {path}: (x - {prefix}_mean) / {prefix}_std with the {len(mean)} per-channel "
            f"statistics measured on the batch (buffers {prefix}_mean/{prefix}_std, a forward pre-hook)")


def _ndim(batch: Any, argument: Union[int, str]) -> int:
    x = input_tensor(batch, argument)
    return x.dim() if x is not None else 2
