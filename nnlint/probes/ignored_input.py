"""NN702's probe: which inputs, or slices of a feature tensor, have no influence on any output?

Float inputs: the gradient of a fixed random projection of every output with respect to the input
(the clean pass of nnlint.probes.passes), summed over the samples and every other dim per feature
(the input's channel dim: channels of an image, features of a table or a sequence): an input whose
gradient is exactly zero everywhere is ignored, and a run of zero-gradient features is a slice the
model never reads ("features 16-31": a two-tower model that hands both towers the same half).
Features that are zero in every sample of the batch are left out: nothing says they are data. A zero
gradient is confirmed in the forward (sample 0's values there swapped for another sample's must leave
every output bit-identical): a `.detach()`, `torch.no_grad()` or an `argmax` cuts the gradient of an
input the model does read.
An image its stem conv reads whole (every channel, nnlint.probes.first_layer) needs no gradient on the
small probe batch: it cannot be read in part, and is tested as an integer input is; what that swap
finds is measured again with the gradient on the whole batch.
Integer and bool inputs (token ids, masks) have no gradient: sample 0's values are swapped for
another sample's (so they stay valid) and an input whose change leaves every output bit-identical is
ignored (a mask the forward never reads). Whatever the small probe batch finds is measured again on
the whole batch at its own size: two samples may leave every unit of a dying ReLU layer off, and the
input's influence with them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from nnlint.probes import compare
from nnlint.probes.base import Probe, ProbeContext, probe
from nnlint.probes.passes import Dependence, Input, Variant


@dataclass
class IgnoredInput:
    path: str                          # "batch[1]", "batch['attention_mask']"
    whole: bool                        # the whole tensor has no influence
    features: list[tuple[int, int]] = field(default_factory=list)   # else: inclusive runs of ignored features
    feature_dim: Optional[int] = None
    num_features: int = 0
    how: str = ""                      # "gradient" | "swapped"


@dataclass
class IgnoredInputs:
    tested: bool
    reason: str = ""
    ignored: list[IgnoredInput] = field(default_factory=list)
    untested: list[str] = field(default_factory=list)     # inputs that are the same in every sample
    outputs_constant: bool = False      # no input has any influence: the output is input-independent


@probe
class IgnoredInputProbe(Probe):
    name = "ignored_input"
    summary = "gradients of the outputs with respect to each float input; swapped integer inputs"

    def run(self, ctx: ProbeContext) -> IgnoredInputs:
        d = Dependence.of(ctx)
        if d is None:
            return IgnoredInputs(False, "the probes did not run (see the notes)")
        found = _ignored(d, ctx)
        if found:
            d = d.whole_batch()
            found = _ignored(d, ctx)
        inputs = [i for i in d.layout.inputs if i.batched]
        untested = [i.path for i in inputs if not i.is_float and i.donor is None]
        whole = {f.path for f in found if f.whole}
        return IgnoredInputs(True, ignored=found, untested=untested,
                             outputs_constant=bool(inputs) and all(i.path in whole for i in inputs if i.path not in untested))


def _ignored(d: Dependence, ctx: ProbeContext) -> list[IgnoredInput]:
    out: list[IgnoredInput] = []
    clean = d.clean()
    records = {r.path: r for r in ctx.trace.inputs}
    for spec in d.layout.inputs:
        if not spec.batched:
            continue
        if spec.is_float and spec.index in clean.grads:
            found = _by_gradient(spec, clean.grads[spec.index], ctx, records.get(spec.path))
            if found is not None and not _unchanged(d, spec, found):
                found = None   # the gradient is cut (detach, no_grad, argmax), but the values still flow
        else:   # an integer input, or a float one its first layers read whole (no gradient taken)
            found = _by_swap(d, spec)
        if found is not None:
            out.append(found)
    return out


def _by_swap(d: Dependence, spec: Input) -> Optional[IgnoredInput]:
    variant = next((v for v in d.layout.variants if v.inputs == (spec.index,)), None)
    if variant is None:
        return None
    d = d.where_varied(variant)
    changed = d.changed(variant)
    if not changed.varied or compare.anywhere(d.clean().outputs, changed.outputs) != 0.0:
        return None
    return IgnoredInput(spec.path, whole=True, how="swapped")


def _unchanged(d: Dependence, spec: Input, found: IgnoredInput) -> bool:
    """The forward confirms the gradient: sample 0's values swapped where the gradient is zero (all of
    the input, or those features) leave every output bit-identical."""
    if spec.donor is None:
        return True   # nothing to swap with: the gradient has the last word
    features = None if found.whole else (found.feature_dim, tuple(found.features))
    variant = Variant(f"{spec.path} {features or ''}", (spec.index,), features)
    d = d.where_varied(variant)
    changed = d.changed(variant)
    return not changed.varied or compare.anywhere(d.clean().outputs, changed.outputs) == 0.0


def _by_gradient(spec: Input, grad, ctx: ProbeContext, record) -> Optional[IgnoredInput]:
    import torch

    if grad is None:
        return None
    full = _tensor(ctx.batch, spec.index)
    if full is None or not bool(full.ne(0).any()):
        return None                                   # an all-zero input: nothing to ignore
    if grad.dim() < 2:
        return IgnoredInput(spec.path, whole=True, how="gradient") if not bool(grad.ne(0).any()) else None
    dim = record.channel_dim if record is not None and record.channel_dim is not None else 1
    dim = dim if dim < grad.dim() else grad.dim() - 1
    others = [d for d in range(grad.dim()) if d != dim]
    influence = grad.abs().sum(dim=others)
    present = full.ne(0).sum(dim=[d for d in range(full.dim()) if d != dim]) > 0
    if influence.shape != present.shape:
        present = torch.ones_like(influence, dtype=torch.bool)
    zero = (influence == 0) & present
    if not bool(zero.any()):
        return None
    if bool(zero[present].all()):
        return IgnoredInput(spec.path, whole=True, feature_dim=dim, num_features=int(influence.numel()), how="gradient")
    return IgnoredInput(spec.path, whole=False, features=_runs(zero.tolist()), feature_dim=dim,
                        num_features=int(influence.numel()), how="gradient")


def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    """Inclusive (first, last) index pairs of the runs of True."""
    runs, start = [], None
    for i, flag in enumerate(flags + [False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i - 1))
            start = None
    return runs


def _tensor(batch, index: int):
    from nnlint.trace.batch import iter_tensors

    return next((t for i, t in enumerate(iter_tensors(batch)) if i == index), None)
