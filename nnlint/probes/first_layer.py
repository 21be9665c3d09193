"""Whether a float input goes straight into weight layers that read every one of its features.

An image into a stem conv, a table into a first Linear: each output unit of such a layer sums over
every input channel (a conv without groups) or feature, so a channel whose weight column is not all
zero reaches every unit the layer's output reaches. Such an input cannot have a slice the model never
reads; the only question left is whether it is read at all, which swapping sample 0's values answers
in the forward (nnlint.probes.ignored_input). The dependence probes then skip the input gradient for
it: on a ViT-B/16 that cannot be cropped, the gradient's backward cost 0.5 s of a 5.6 s step.
"""
from __future__ import annotations

from typing import Optional

from nnlint.trace.graph import Graph
from nnlint.trace.records import InputRecord
from nnlint.trace.vocab import is_weight_layer


def reads_every_feature(trace, model, record: Optional[InputRecord]) -> bool:
    """Every training-step use of the input is the activation of a conv (channels in dim 1, no groups) or
    a Linear (features last) whose weight spans all of its features, each with a non-zero column."""
    if record is None or not record.is_float or record.channel_dim is None:
        return False
    shape = tuple(record.summary.shape)
    uses = [op for op in Graph.of(trace).consumers.get(record.serial, ()) if op.phase == "train"]
    return bool(uses) and all(_spans(op, model, shape, record.channel_dim, record.serial) for op in uses)


def _spans(op, model, shape: tuple, channel_dim: int, serial: int) -> bool:
    if not is_weight_layer(op) or op.kind not in ("conv", "linear") or not op.inputs or op.inputs[0] != serial:
        return False
    try:
        weight = model.get_parameter(op.weight)
    except (AttributeError, TypeError):
        return False
    features = shape[channel_dim] if channel_dim < len(shape) else None
    if op.kind == "conv":
        fits = channel_dim == 1 and weight.dim() >= 3 and weight.shape[1] == features
    else:
        fits = channel_dim == len(shape) - 1 and weight.dim() == 2 and weight.shape[1] == features
    if not fits:
        return False
    others = [d for d in range(weight.dim()) if d != 1]
    return bool(weight.detach().abs().sum(dim=others).ne(0).all())
