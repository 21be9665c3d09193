"""The loss of the check's backward: the user's `loss_fn` when there is one, else a surrogate; and what
the user's loss function computes: the classification terms inside it, seen while it runs.

`loss_fn` may be `nn.CrossEntropyLoss()`, `F.cross_entropy`, or any function that calls them (a
language model's `F.cross_entropy(logits.view(-1, V), y.view(-1))`, a main loss plus an auxiliary
one). A TorchFunctionMode around the call sees each cross-entropy / NLL / binary cross-entropy call with
its arguments, and records per call: the number of classes, the loss value per element, and the
entropy of the batch's labels (the loss of the best prediction that ignores the input). The loss-at-init rule reads it.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

from nnlint.errors import ModelRaised

CLASSIFICATION_LOSSES = {
    "cross_entropy": "cross_entropy", "cross_entropy_loss": "cross_entropy",
    "nll_loss": "nll_loss", "nll_loss_nd": "nll_loss", "nll_loss2d": "nll_loss",
    "binary_cross_entropy_with_logits": "binary_cross_entropy_with_logits",
    "binary_cross_entropy": "binary_cross_entropy",
}


def loss_of_pass(output, out_tensors, target, loss_fn, trace):
    """The loss to run the backward pass from (None when nothing in the output can carry a gradient),
    recording on `trace` whether it is the user's and what its classification terms are."""
    import torch

    if loss_fn is None:
        return surrogate_loss(out_tensors)
    trace.loss_is_surrogate = False
    trace.target_info["loss_type"] = getattr(loss_fn, "__name__", type(loss_fn).__name__)
    if isinstance(output, torch.Tensor) and isinstance(target, torch.Tensor):
        if output.dim() == 2 and not target.is_floating_point() and target.dim() == 1:
            trace.target_info["num_classes"] = int(output.shape[1])
    try:
        loss, terms = call_loss(loss_fn, output, target)
    except Exception as exc:
        raise ModelRaised("the loss function", exc) from exc
    if terms:
        trace.target_info["classification_losses"] = terms
    return loss


def surrogate_loss(out_tensors):
    """A fixed random projection of every floating output. Its gradient does not depend on the
    output's value, so a zero-initialized final layer still passes gradients. The projection direction
    is rank one (a (rows,) vector times a (last dim,) vector): as good as a full random tensor for this
    purpose, and it costs one mat-vec instead of a randn the size of the logits (25M floats for GPT-2's
    vocabulary). Seeded by its own generators: the global RNG is not touched."""
    import torch

    losses = []
    for i, t in enumerate(out_tensors):
        if not t.requires_grad or t.numel() == 0:
            continue
        gen = torch.Generator(device=t.device)
        gen.manual_seed(1234 + i)
        flat = t.reshape(-1, t.shape[-1]) if t.dim() > 0 else t.reshape(1, 1)
        acc = torch.float64 if t.dtype == torch.float64 else torch.float32
        cols = torch.randn(flat.shape[1], generator=gen, device=t.device, dtype=acc)
        rows = torch.randn(flat.shape[0], generator=gen, device=t.device, dtype=acc)
        losses.append(((flat.to(acc) @ cols) @ rows / (t.numel() ** 0.5)).float())
    return sum(losses) if losses else None


def call_loss(loss_fn, output, target) -> tuple[Any, list[dict[str, Any]]]:
    """Run loss_fn(output, target) (or loss_fn(output)) and return (loss, classification terms)."""
    with classification_terms() as terms:
        loss = loss_fn(output, target) if target is not None else loss_fn(output)
    return loss, terms


@contextmanager
def classification_terms() -> Iterator[list[dict[str, Any]]]:
    """The classification terms of every loss computed inside the block, as a list filled while it runs."""
    from torch.overrides import TorchFunctionMode

    terms: list[dict[str, Any]] = []

    class _Probe(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            result = func(*args, **kwargs)
            kind = CLASSIFICATION_LOSSES.get(getattr(func, "__name__", ""))
            if kind is not None:
                try:
                    term = _describe(kind, result, args, kwargs)
                except Exception:   # an unusual call: the loss still counts, the loss-at-init rule just skips it
                    term = None
                if term is not None:
                    terms.append(term)
            return result

    with _Probe():
        yield terms


def _arg(args, kwargs, i: int, name: str, default=None):
    return args[i] if len(args) > i else kwargs.get(name, default)


def _describe(kind: str, result, args, kwargs) -> Optional[dict[str, Any]]:
    import torch

    inp, target = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "target")
    if not isinstance(inp, torch.Tensor) or not isinstance(target, torch.Tensor) or inp.numel() == 0:
        return None
    with torch.no_grad():
        if kind in ("binary_cross_entropy_with_logits", "binary_cross_entropy"):
            # F.binary_cross_entropy[_with_logits](input, target, weight, size_average, reduce, reduction)
            reduction, ignore = _arg(args, kwargs, 5, "reduction", "mean"), None
            num_classes, prior_entropy = 2, _binary_entropy(target.float())
        else:
            # F.cross_entropy / F.nll_loss(input, target, weight, size_average, ignore_index, reduce, reduction)
            reduction, ignore = _arg(args, kwargs, 6, "reduction", "mean"), int(_arg(args, kwargs, 4, "ignore_index", -100))
            num_classes = int(inp.shape[1] if inp.dim() >= 2 else inp.shape[0])
            smoothing = float(kwargs.get("label_smoothing", 0.0) or 0.0) if kind == "cross_entropy" else 0.0
            prior_entropy = _label_entropy(target, num_classes, ignore, smoothing, class_dim=1 if inp.dim() >= 2 else 0)
        value = _per_element(result.detach().float(), reduction, target, ignore)
    return {"op": kind, "num_classes": num_classes, "value": value, "prior_entropy": prior_entropy,
            "reduction": reduction, "input_shape": list(inp.shape)}


def _per_element(result, reduction, target, ignore_index: Optional[int]) -> Optional[float]:
    """The loss per target element, whatever the reduction ('sum' divides by the labels counted)."""
    if result.numel() == 0:
        return None
    if reduction == "none":
        return float(result.mean())
    if reduction == "sum":
        if ignore_index is None or target.is_floating_point():
            count = target.numel() if ignore_index is None else target.numel() // max(target.shape[1] if target.dim() > 1 else 1, 1)
        else:
            count = int((target != ignore_index).sum())
        return float(result) / max(count, 1)
    return float(result)


def _label_entropy(target, num_classes: int, ignore_index: int, smoothing: float, class_dim: int) -> Optional[float]:
    """Entropy of the batch's mean label distribution: the loss of predicting the label frequencies."""
    import torch

    if target.is_floating_point():   # class probabilities, classes on the input's class dim
        if target.dim() == 0:
            return None
        dim = class_dim if target.dim() > class_dim else 0
        mean = target.float().movedim(dim, -1).reshape(-1, target.shape[dim]).mean(0)
    else:
        labels = target.reshape(-1)
        labels = labels[(labels != ignore_index) & (labels >= 0) & (labels < num_classes)]
        if labels.numel() == 0:
            return None
        mean = torch.bincount(labels, minlength=num_classes).float() / labels.numel()
    if smoothing:
        mean = (1 - smoothing) * mean + smoothing / num_classes
    mean = mean[mean > 0]
    return float(-(mean * mean.log()).sum())


def _binary_entropy(target) -> Optional[float]:
    """Mean over label columns of the binary entropy of each column's positive rate."""
    if target.numel() == 0:
        return None
    rate = target.reshape(-1, target.shape[-1]).mean(0) if target.dim() >= 2 else target.reshape(-1).mean().reshape(1)
    rate = rate.clamp(1e-7, 1 - 1e-7)
    return float((-(rate * rate.log() + (1 - rate) * (1 - rate).log())).mean())
