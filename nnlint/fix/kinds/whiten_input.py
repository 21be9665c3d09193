"""Whiten a (samples, features) input with a ZCA computed on the batch, so that its features are
decorrelated: in memory, buffers and a forward pre-hook; in source, the same as plain torch for up to
32 features (a larger matrix belongs in the data pipeline)."""
from __future__ import annotations

from dataclasses import dataclass

from nnlint.fix.kind import Applied, CannotPlace, FixKind, register

MAX_SOURCE_FEATURES = 32


@dataclass(frozen=True)
class WhitenInputParams:
    input: str
    eps: float = 1e-5


@register
class WhitenInput(FixKind):
    name = "whiten_input"
    Params = WhitenInputParams
    safe = False
    order = 0          # before the normalization of the same input, which the whitening subsumes

    def apply(self, fix, ctx):
        from nnlint.fix.inputs import install_input_whitening

        return Applied(install_input_whitening(ctx.model, ctx.batch, fix.params.input, float(fix.params.eps)))

    def edit(self, fix, diagnostic, ctx):
        from nnlint.fix.input_edits import float_literal, input_argument, transform_input, vector
        from nnlint.fix.inputs import input_tensor, zca

        path, argument = input_argument(fix.params.input, diagnostic.code, ctx)
        if argument is None:
            return f"{path} is whitened by the edit for {ctx.normalized_inputs[path]}"
        x = input_tensor(ctx.batch, argument)
        if x is None or x.dim() != 2 or not x.is_floating_point():
            raise CannotPlace(f"{path} is not a (samples, features) float tensor")
        if x.shape[1] > MAX_SOURCE_FEATURES:
            raise CannotPlace(f"{path} has {x.shape[1]} features: a {x.shape[1]}x{x.shape[1]} whitening matrix does not "
                              "belong in source; whiten in the data pipeline")
        mean, w = zca(x, float(fix.params.eps))
        torch = ctx.spell("torch")
        rows = ",\n".join("    [" + ", ".join(float_literal(v) for v in row) + "]" for row in w.tolist())
        scale = float(x.detach().double().std())
        means = [float_literal(v, scale) for v in mean.tolist()]
        mean_code = f"{torch}.zeros({len(means)})" if all(v == "0.0" for v in means) else f"{torch}.tensor({vector(means)})"
        return transform_input(ctx, path, argument, [("mean", mean_code), ("whitening", f"{torch}.tensor([\n{rows},\n])")],
                               "({x} - {b}_mean) @ {b}_whitening",
                               f"whiten {path} (ZCA measured on the sample batch; better: on the training set) (nnlint {diagnostic.code})")
