"""Set an output layer's bias to the class log-priors measured on the batch's labels (Karpathy's "init
well"): `log f` per class for a softmax head, `log(r / (1 - r))` for a sigmoid head whose positive rate
is r. The loss at init then starts at the labels' entropy instead of log(num_classes), and the first
steps are not spent learning the class frequencies. In memory the bias is copied in place; in source the
same values are written after the model is built:

    with torch.no_grad():
        model[2].bias.copy_(torch.tensor([-0.1625, -2.996, -2.996, -2.996]))

Safe: the architecture is unchanged, only the bias's starting value.
"""
from __future__ import annotations

from dataclasses import dataclass

from nnlint.fix.kind import Applied, CannotFix, CannotPlace, FixKind, register


@dataclass(frozen=True)
class BiasToPriorsParams:
    values: tuple[float, ...]             # the bias, one value per output
    why: str = "the class log-priors measured on the batch"


def _literal(values: tuple[float, ...]) -> str:
    return "[" + ", ".join(repr(float(f"{v:.4g}")) for v in values) + "]"


@register
class BiasToPriors(FixKind):
    name = "bias_to_priors"
    Params = BiasToPriorsParams
    safe = True

    def apply(self, fix, ctx):
        import torch

        p: BiasToPriorsParams = fix.params
        name = f"{fix.target}.bias" if fix.target else "bias"
        bias = ctx.tensor(name)
        if bias is None:
            raise CannotFix(f"{fix.target or 'the model'} has no bias: build it with bias=True to start at the priors")
        if bias.numel() != len(p.values):
            raise CannotFix(f"{name} has {bias.numel()} values, the priors {len(p.values)}")
        if ctx.snapshot is not None:
            ctx.snapshot.save_tensor(name, bias)
        with torch.no_grad():
            bias.copy_(torch.tensor([float(f"{v:.4g}") for v in p.values], dtype=bias.dtype,
                                    device=bias.device).view_as(bias))
        return Applied(f"set {name} to {p.why}: {_literal(p.values)}")

    def edit(self, fix, diagnostic, ctx):
        from nnlint.fix.placement import accessor

        p: BiasToPriorsParams = fix.params
        module = ctx.modules.get(fix.target)
        if module is None or getattr(module, "bias", None) is None:
            raise CannotPlace(f"{fix.target or 'the model'} has no bias to set")
        scope = ctx.placer.root_scope()
        torch = ctx.spell("torch")
        target = f"{scope.base}{accessor(ctx.model, fix.target)}.bias"
        statement = f"with {torch}.no_grad():\n    {target}.copy_({torch}.tensor({_literal(p.values)}))\n"
        if not any(text == statement for text, _ in scope.extra):
            scope.extra.append((statement, f"{p.why} (nnlint {diagnostic.code})"))
        return f"set {target} to {p.why} after the model is built"
