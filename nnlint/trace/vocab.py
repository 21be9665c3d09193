"""The graph vocabulary: what an op is, named once. Every rule, the structure and the report ask these.

Pure predicates over one OpRecord (no torch, no graph): whether it is a weight layer, applies weights at
all, normalizes, passes its input through unchanged, is an activation.
"""
from __future__ import annotations

import re

from nnlint.trace import ops as opnames
from nnlint.trace.records import OpRecord

# A module whose type names a normalization: BatchNorm2d, LayerNorm, LlamaRMSNorm, T5LayerNorm,
# GroupNormAct. Hand-written norms run as pow/mean/rsqrt/mul ops inside such a module. "Normal..."
# and "Normalize" do not count: the name must not continue with a lower-case letter.
_NORM_TYPE = re.compile(r"Norm(?![a-z])")

# Ops that combine a tensor with learned weights the tracer sees as one call, whatever it reads them
# from: recurrent cells, fused attention, regions it could not see into (TorchScript, C++).
FUSED = frozenset({"rnn", "attention", "opaque"})


def is_norm_type(type_name: str) -> bool:
    return bool(_NORM_TYPE.search(type_name or ""))


def is_weight_layer(op: OpRecord) -> bool:
    """A Linear/Conv (or a matmul with a parameter): a layer whose init sets the signal's scale."""
    return op.weight is not None and op.kind in ("linear", "conv", "matmul", "bilinear")


def applies_weights(op: OpRecord) -> bool:
    """A weight layer, a linear/conv whose weight is computed rather than a parameter, or a fused op
    whose weights the tracer sees only as one call."""
    return is_weight_layer(op) or op.kind in ("linear", "conv") or op.kind in FUSED


def multiplies(op: OpRecord) -> bool:
    """An op that mixes its input with other values through a product: any weight op, a matmul of two
    activations (attention scores), a fused op. What makes `x + f(x)` a residual branch, not a bias."""
    return op.kind in opnames.WEIGHT_OPS or op.kind in FUSED


def is_passthrough(op: OpRecord) -> bool:
    """A view, a copy or a cast: the values go through unchanged."""
    return op.kind in opnames.PASSTHROUGH or op.func in opnames.PASSTHROUGH


def is_norm(op: OpRecord) -> bool:
    """A normalization op, or an op of a hand-written norm module (ConvNeXt's channels-first LayerNorm,
    an RMSNorm: their mean/sub/rsqrt/mul ops run inside a module whose type names a Norm). A view or a
    no-op `.to(float32)` inside a norm module normalizes nothing."""
    if op.kind in opnames.NORM_OPS:
        return True
    return not is_passthrough(op) and not is_weight_layer(op) and is_norm_type(op.module_type)


# The normalizations whose statistics are taken per sample, never across the batch.
_PER_SAMPLE_NORM_OPS = opnames.NORM_OPS - {"batch_norm"}


def is_per_sample_norm(op: OpRecord) -> bool:
    """A LayerNorm, GroupNorm, RMSNorm or InstanceNorm, or an op of a hand-written one (HF ConvNeXt's
    channels-first LayerNorm, T5LayerNorm): what it divides by comes from the sample itself."""
    if op.kind in opnames.NORM_OPS:
        return op.kind in _PER_SAMPLE_NORM_OPS
    return is_norm(op) and "BatchNorm" not in (op.module_type or "")


def normalizes(op: OpRecord) -> bool:
    """A normalization, or a softmax (it re-scales its input to probabilities)."""
    return is_norm(op) or op.kind in ("softmax", "log_softmax")


def is_activation(op: OpRecord) -> bool:
    return op.kind in opnames.ACTIVATIONS


def value_outputs(op: OpRecord) -> list[int]:
    """The outputs that carry the input's values: not the indices of a topk/sort/max, not a comparison's
    mask or an argmax (what is computed from those selects, it does not pass the values on)."""
    if op.kind in opnames.INDEX_ONLY or op.func in opnames.INDEX_ONLY:
        return []
    if (op.kind in opnames.INDEX_AFTER_FIRST or op.func in opnames.INDEX_AFTER_FIRST) and len(op.outputs) > 1:
        return op.outputs[:1]
    return op.outputs
