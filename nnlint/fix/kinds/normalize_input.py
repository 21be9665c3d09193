"""Normalize an input with the per-channel (or per-feature) mean and std measured on the batch: in
memory, buffers on the model and a forward pre-hook; in source, the same as plain torch (see
input_edits)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nnlint.fix.kind import Applied, CannotPlace, FixKind, register


@dataclass(frozen=True)
class NormalizeInputParams:
    input: str                            # the input's path in the batch: "batch", "batch[0]", "batch['x']"
    channel_dim: Optional[int]
    mean: tuple[float, ...]
    std: tuple[float, ...]


@register
class NormalizeInput(FixKind):
    name = "normalize_input"
    Params = NormalizeInputParams
    safe = False

    def apply(self, fix, ctx):
        from nnlint.fix.inputs import install_input_normalization

        p: NormalizeInputParams = fix.params
        return Applied(install_input_normalization(ctx.model, ctx.batch, p.input, p.channel_dim, list(p.mean),
                                                   list(p.std)))

    def edit(self, fix, diagnostic, ctx):
        from nnlint.fix.input_edits import float_literal, input_argument, transform_input, vector
        from nnlint.fix.inputs import broadcast_shape, overall, robust_stds

        p: NormalizeInputParams = fix.params
        path, argument = input_argument(p.input, diagnostic.code, ctx)
        if argument is None:
            return f"{path} is normalized by the edit for {ctx.normalized_inputs[path]}"
        mean, std = list(p.mean), robust_stds(list(p.std))
        if not mean or len(mean) != len(std):
            raise CannotPlace(f"no per-channel statistics for {path}")
        rec = next((r for r in ctx.trace.inputs if r.path == path), None) if ctx.trace is not None else None
        ndim = len(rec.summary.shape) if rec is not None else 2
        torch = ctx.spell("torch")
        if len(mean) > 16:
            # many features (a flattened image, a table): the whole input's mean and std read better, and
            # are what the message suggests
            m, s = overall(mean, std)
            mean_code, std_code = f"{torch}.tensor({float_literal(m)})", f"{torch}.tensor({float_literal(s)})"
            what = "mean/std"
        else:
            shape = broadcast_shape(ndim, p.channel_dim)
            view = "" if shape == [-1] else f".view({', '.join(str(x) for x in shape)})"
            mean_code = f"{torch}.tensor({vector([float_literal(x) for x in mean])}){view}"
            std_code = f"{torch}.tensor({vector([float_literal(x) for x in std])}){view}"
            what = f"per-{'channel' if p.channel_dim == 1 and ndim >= 3 else 'feature'} mean/std"
        return transform_input(ctx, path, argument, [("mean", mean_code), ("std", std_code)], "({x} - {b}_mean) / {b}_std",
                               f"normalize {path} with the {what} measured on the sample batch (nnlint {diagnostic.code})")
