"""What one loss call saw: which torch loss it is, its arguments read by name, the statistics of its input
and target that the objective rules read, and whether the call would raise.

The call is measured before it runs, so that a call that would fail is not made: a class index out of
range is an IndexError on CPU but a device-side assert on CUDA, which leaves the process unusable, and
`binary_cross_entropy` on values outside [0, 1] raises. The check then reports what is wrong with the
objective instead of "could not run" (nnlint.trace.lossprobe).

Every statistic is a few reductions on the loss's own device, read back once per call; the per-row ones
(row logsumexp, calibration) are taken on an evenly spaced sample of rows, at most ROW_ELEMENTS values
(a language model's logits have 50,000 classes per row).
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Optional

from nnlint.trace.records import LossCall, LossInput, LossTarget

CLASS, BINARY, REGRESSION = "class", "binary", "regression"
LOGITS, LOG_PROBABILITIES, PROBABILITIES, VALUES = "logits", "log_probabilities", "probabilities", "values"

ROW_ELEMENTS = 1 << 20          # values the per-row statistics read at most
MAX_COUNTED_CLASSES = 1024      # class counts are kept for heads up to this size (priors of a vocabulary mean nothing)


@dataclass(frozen=True)
class LossSpec:
    family: str                 # CLASS | BINARY | REGRESSION
    expects: str                # what the input must be


# The torch.nn.functional losses, by the name the function mode sees; the torch.nn loss modules call them.
LOSSES = {
    "cross_entropy": LossSpec(CLASS, LOGITS),
    "nll_loss": LossSpec(CLASS, LOG_PROBABILITIES),
    "binary_cross_entropy": LossSpec(BINARY, PROBABILITIES),
    "binary_cross_entropy_with_logits": LossSpec(BINARY, LOGITS),
    "multilabel_soft_margin_loss": LossSpec(BINARY, LOGITS),
    "mse_loss": LossSpec(REGRESSION, VALUES),
    "l1_loss": LossSpec(REGRESSION, VALUES),
    "smooth_l1_loss": LossSpec(REGRESSION, VALUES),
    "huber_loss": LossSpec(REGRESSION, VALUES),
}
# Losses whose torch implementation raises when the target's shape differs from the input's.
SAME_SHAPE = {"binary_cross_entropy", "binary_cross_entropy_with_logits"}


def measure(name: str, func: Callable, args: tuple, kwargs: dict) -> Optional[LossCall]:
    """The LossCall of `func(*args, **kwargs)` (not called here), or None when its arguments are not the
    tensors a loss takes. `raised` is set, with `predicted`, when the call would raise."""
    import torch

    spec = LOSSES[name]
    bound = _bind(func, args, kwargs)
    inp, target = bound.get("input"), bound.get("target")
    if not isinstance(inp, torch.Tensor) or not isinstance(target, torch.Tensor) or inp.numel() == 0 \
            or not inp.is_floating_point():
        return None
    options = _options(name, bound)
    options["grad_enabled"] = torch.is_grad_enabled()
    with torch.no_grad():
        x, t = inp.detach(), target.detach()
        class_dim = (1 if x.dim() >= 2 else 0) if spec.family == CLASS else None
        classes = int(x.shape[class_dim]) if class_dim is not None else None
        described = _describe_target(t, x, spec.family, class_dim, classes, options)
        frequencies = _frequencies(t, x, spec.family, class_dim, classes, options)
        call = LossCall(loss=name, family=spec.family, expects=spec.expects,
                        input=_describe_input(x, spec, class_dim, frequencies), target=described,
                        num_classes=classes if spec.family == CLASS else None, options=options,
                        prior_entropy=_entropy(frequencies, spec.family, options))
    call.raised = would_raise(call)
    call.predicted = call.raised is not None
    return call


def record_value(call: LossCall, result: Any) -> None:
    """The loss per target element, whatever the reduction ('sum' divides by the labels counted)."""
    import torch

    if not isinstance(result, torch.Tensor) or result.numel() == 0:
        return
    with torch.no_grad():
        value = result.detach().float()
        reduction = call.options.get("reduction", "mean")
        if reduction == "none":
            call.value = float(value.mean())
        elif reduction == "sum":
            call.value = float(value) / max(_counted(call), 1)
        else:
            call.value = float(value)


def would_raise(call: LossCall) -> Optional[str]:
    """Why torch would refuse this call (on CPU an exception, on CUDA possibly a device-side assert), in
    the words of the message that reports it; None when the call is fine to make."""
    t, x = call.target, call.input
    if t is None:
        return None
    if call.family == CLASS:
        index_shape = _without(x.shape, 1 if len(x.shape) >= 2 else 0)
        if not t.is_float:
            if t.shape == x.shape and len(x.shape) >= 2:
                return (f"an integer target of the output's shape {shape_text(t.shape)} (one-hot?) where {call.loss} wants "
                        f"class indices of shape {shape_text(index_shape)}")
            if t.shape != index_shape:
                return f"a target of shape {shape_text(t.shape)} where {call.loss} wants class indices of shape {shape_text(index_shape)}"
            if t.out_of_range:
                return f"target {t.first_out_of_range} is out of range for {call.num_classes} classes"
            return None
        if call.loss == "cross_entropy" and t.shape == x.shape:
            return None   # class probabilities (soft targets)
        if t.shape == index_shape:
            return f"a float target where {call.loss} wants integer class indices (int64)"
        return (f"a float target of shape {shape_text(t.shape)}, neither class indices of shape {shape_text(index_shape)} "
                f"nor class probabilities of shape {shape_text(x.shape)}")
    if call.loss in SAME_SHAPE:
        if not t.is_float:
            return f"an integer target ({t.dtype}) where {call.loss} wants a float one"
        if t.shape != x.shape:
            return f"a target of shape {shape_text(t.shape)} for an input of shape {shape_text(x.shape)}"
    if call.loss == "binary_cross_entropy" and (x.nonfinite or x.min < 0 or x.max > 1):
        return f"input values in [{x.min:.3g}, {x.max:.3g}], outside [0, 1] where binary_cross_entropy wants probabilities"
    if broadcast_shape(x.shape, t.shape) is None:
        return f"an input of shape {shape_text(x.shape)} and a target of shape {shape_text(t.shape)} that do not broadcast"
    return None


def broadcast_shape(a: tuple[int, ...], b: tuple[int, ...]) -> Optional[tuple[int, ...]]:
    """The shape two shapes broadcast to (torch's rule), or None when they do not."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and 1 not in (x, y):
            return None
        out.append(max(x, y) if 0 not in (x, y) else 0)
    return tuple(reversed(out))


# ---------------------------------------------------------------------------------------------
# Arguments


@lru_cache(maxsize=64)
def _signature(func: Callable) -> Optional[inspect.Signature]:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def _bind(func: Callable, args: tuple, kwargs: dict) -> dict[str, Any]:
    sig = _signature(func)
    if sig is None:
        return {"input": args[0] if args else kwargs.get("input"), "target": args[1] if len(args) > 1 else kwargs.get("target")}
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:
        return {}
    bound.apply_defaults()
    return dict(bound.arguments)


def _options(name: str, bound: dict[str, Any]) -> dict[str, Any]:
    """reduction (the legacy size_average/reduce read as torch reads them), ignore_index, label_smoothing."""
    reduction = bound.get("reduction", "mean")
    size_average, reduce = bound.get("size_average"), bound.get("reduce")
    if size_average is not None or reduce is not None:
        if reduce is False:
            reduction = "none"
        elif size_average is False:
            reduction = "sum"
        else:
            reduction = "mean"
    out: dict[str, Any] = {"reduction": reduction}
    if "ignore_index" in bound:
        out["ignore_index"] = int(bound["ignore_index"])
    if float(bound.get("label_smoothing", 0.0) or 0.0):
        out["label_smoothing"] = float(bound["label_smoothing"])
    if bound.get("weight") is not None or bound.get("pos_weight") is not None:
        out["weighted"] = True
    return out


# ---------------------------------------------------------------------------------------------
# Statistics


def _rows(x, class_dim: int):
    """(rows, classes) view of a class-loss input, and an evenly spaced sample of its rows."""
    import torch

    rows = x.movedim(class_dim, -1).reshape(-1, x.shape[class_dim]).float()
    keep = max(1, min(rows.shape[0], ROW_ELEMENTS // max(rows.shape[1], 1)))
    if keep < rows.shape[0]:
        rows_sample = rows[torch.linspace(0, rows.shape[0] - 1, keep, device=rows.device).long()]
    else:
        rows_sample = rows
    return rows, rows_sample


def _describe_input(x, spec: LossSpec, class_dim: Optional[int], frequencies) -> LossInput:
    import torch

    xf = x.float()
    values = _moments(xf)
    extra: dict[str, Any] = {}
    if spec.family == CLASS and class_dim is not None:
        rows, sample = _rows(x, class_dim)
        sums = rows.sum(-1)
        values += [sums.amin(), sums.amax(), torch.logsumexp(sample, -1).mean()]
        p = torch.softmax(sample, -1)
        values.append((p - 1.0 / rows.shape[1]).abs().mean())
        if frequencies is not None:
            values.append((p - frequencies.to(p.device)).abs().mean())
    elif spec.family == BINARY:
        p = torch.sigmoid(xf) if spec.expects == LOGITS else xf
        values.append((p - 0.5).abs().mean())
        if frequencies is not None and frequencies.numel() == (p.shape[-1] if p.dim() >= 2 else 1):
            values.append((p - frequencies.to(p.device)).abs().mean())
    got = torch.stack([v.reshape(()).float() for v in values]).tolist()
    lo, hi, mean, std, nonfinite = _summary(got[:4], x.numel())
    if spec.family == CLASS and class_dim is not None:
        extra = {"row_sum": (got[4], got[5]), "row_logsumexp": got[6], "calibration": got[7]}
        if len(got) > 8:
            extra["prior_calibration"] = got[8]
    elif spec.family == BINARY:
        extra = {"calibration": got[4]}
        if len(got) > 5:
            extra["prior_calibration"] = got[5]
    return LossInput(tuple(x.shape), str(x.dtype).replace("torch.", ""), lo, hi, mean, std, nonfinite, **extra)


def _moments(xf) -> list:
    """min, max, sum and L2 norm: the cheap reductions (a 512 x 50,257 logit tensor: 16, 16, 15 and 7 ms
    on 2 CPU threads, where var_mean takes 230 ms and isfinite 160 ms). Mean, std and whether anything
    is non-finite follow from them (_summary)."""
    import torch

    return [xf.amin(), xf.amax(), xf.sum(), torch.linalg.vector_norm(xf)]


def _summary(got: list[float], n: int) -> tuple[float, float, float, float, bool]:
    lo, hi, total, norm = got
    nonfinite = not all(math.isfinite(v) for v in got)
    mean = total / max(n, 1)
    var = max(norm * norm / max(n, 1) - mean * mean, 0.0) * n / max(n - 1, 1)
    return lo, hi, mean, math.sqrt(var) if math.isfinite(var) else float("nan"), nonfinite


def _describe_target(t, x, family: str, class_dim: Optional[int], classes: Optional[int], options: dict) -> LossTarget:
    import torch

    tf = t.float()
    is_float = t.is_floating_point()
    values = _moments(tf) if tf.numel() else [torch.zeros((), device=tf.device)] * 4
    lo, hi, mean, sd, _ = _summary(torch.stack([v.reshape(()).float() for v in values]).tolist(), tf.numel())
    out = LossTarget(tuple(t.shape), str(t.dtype).replace("torch.", ""), is_float, lo, hi, mean, sd)
    if is_float:
        out.integral = bool((tf == tf.round()).all()) if tf.numel() else False
    if family != CLASS or classes is None or tf.numel() == 0:
        return out
    if not is_float and t.dtype != torch.bool:
        labels = t.reshape(-1)
        ignore = options.get("ignore_index")
        valid = labels != ignore if ignore is not None else torch.ones_like(labels, dtype=torch.bool)
        out.ignored = int((~valid).sum())
        if tuple(t.shape) == tuple(x.shape) and class_dim is not None:
            out.one_hot = bool(((t == 0) | (t == 1)).all() and (t.sum(class_dim) == 1).all())
            return out
        labels = labels[valid]
        bad = (labels < 0) | (labels >= classes)
        out.out_of_range = int(bad.sum())
        if out.out_of_range:
            out.first_out_of_range = int(labels[bad][0])
        if classes <= MAX_COUNTED_CLASSES:
            out.class_counts = torch.bincount(labels[~bad], minlength=classes).tolist()
    elif is_float and tuple(t.shape) == tuple(x.shape) and class_dim is not None:
        sums = tf.sum(class_dim)
        out.row_sum = (float(sums.amin()), float(sums.amax()))
    return out


def _frequencies(t, x, family: str, class_dim: Optional[int], classes: Optional[int], options: dict):
    """The batch's label frequencies: per class for the class losses (integer labels, or the mean of
    soft targets), per label column's positive rate for the binary ones; None where there are none."""
    import torch

    if t.numel() == 0:
        return None
    if family == CLASS and classes is not None:
        if t.is_floating_point():
            if tuple(t.shape) != tuple(x.shape) or class_dim is None:
                return None
            mean = t.float().movedim(class_dim, -1).reshape(-1, classes).mean(0)
        else:
            labels = t.reshape(-1)
            ignore = options.get("ignore_index")
            labels = labels[(labels >= 0) & (labels < classes) & ((labels != ignore) if ignore is not None else True)]
            if labels.numel() == 0 or tuple(t.shape) == tuple(x.shape):
                return None
            mean = torch.bincount(labels, minlength=classes).float() / labels.numel()
        smoothing = options.get("label_smoothing", 0.0)
        return (1 - smoothing) * mean + smoothing / classes if smoothing else mean
    if family == BINARY and t.is_floating_point():
        return t.float().reshape(-1, t.shape[-1]).mean(0) if t.dim() >= 2 else t.float().reshape(-1).mean().reshape(1)
    return None


def _entropy(frequencies, family: str, options: dict) -> Optional[float]:
    """The loss of the best prediction that ignores the input: the entropy of the label frequencies
    (binary: the mean over label columns of each column's binary entropy)."""
    if frequencies is None:
        return None
    if family == BINARY:
        rate = frequencies.clamp(1e-7, 1 - 1e-7)
        return float((-(rate * rate.log() + (1 - rate) * (1 - rate).log())).mean())
    f = frequencies[frequencies > 0]
    return float(-(f * f.log()).sum())


def _counted(call: LossCall) -> int:
    """How many terms a reduction="sum" loss added up: the labels not ignored, for the class losses."""
    t = call.target
    if t is None:
        return 1
    if call.family == CLASS and not t.is_float:
        return max(math.prod(t.shape) - t.ignored, 1)
    if call.family == CLASS:
        return max(math.prod(t.shape) // max(call.num_classes or 1, 1), 1)
    return max(math.prod(t.shape), 1)


def _without(shape: tuple[int, ...], dim: int) -> tuple[int, ...]:
    return tuple(s for i, s in enumerate(shape) if i != dim)


def shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
