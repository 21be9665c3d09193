"""Source appliers for the model's input: normalization (NN301/NN302) and whitening (NN303).

The transform goes first thing in the root's `forward` (`x = (x - self.input_mean) / self.input_std`,
with the statistics as buffers registered at the end of its `__init__`) when the root class is in this
file; otherwise the buffers and a forward pre-hook are added after the model is built. Measured on the
sample batch: the comment says so, and that the training set's statistics are better.
"""
from __future__ import annotations

import os

import libcst as cst

from nnlint.diagnostics import Diagnostic, Fix
from nnlint.fix.edits import START, Insertion
from nnlint.fix.placement import CannotPlace
from nnlint.fix.sites import init_code_keys
from nnlint.fix.source import SourceContext, source_applier


@source_applier("normalize_input")
def normalize_input(fix: Fix, d: Diagnostic, ctx: SourceContext) -> str:
    from nnlint.fix.inputs import broadcast_shape, overall, robust_stds

    p = fix.params
    path, argument = _input_argument(fix, d, ctx)
    if argument is None:
        return f"{path} is normalized by the edit for {ctx.normalized_inputs[path]}"
    mean, std = list(p.get("mean") or []), robust_stds(list(p.get("std") or []))
    if not mean or len(mean) != len(std):
        raise CannotPlace(f"no per-channel statistics for {path}")
    rec = next((r for r in ctx.trace.inputs if r.path == path), None) if ctx.trace is not None else None
    ndim = len(rec.summary.shape) if rec is not None else 2
    torch = ctx.spell("torch")
    if len(mean) > 16:
        # many features (a flattened image, a table): the whole input's mean and std read better, and
        # are what the message suggests
        m, s = overall(mean, std)
        mean_code, std_code = f"{torch}.tensor({_float(m)})", f"{torch}.tensor({_float(s)})"
        what = "mean/std"
    else:
        shape = broadcast_shape(ndim, p.get("channel_dim"))
        view = "" if shape == [-1] else f".view({', '.join(str(x) for x in shape)})"
        mean_code = f"{torch}.tensor({_vector([_float(x) for x in mean])}){view}"
        std_code = f"{torch}.tensor({_vector([_float(x) for x in std])}){view}"
        what = f"per-{'channel' if p.get('channel_dim') == 1 and ndim >= 3 else 'feature'} mean/std"
    return _transform_input(ctx, path, argument, [("mean", mean_code), ("std", std_code)], "({x} - {b}_mean) / {b}_std",
                            f"normalize {path} with the {what} measured on the sample batch (nnlint {d.code})")


@source_applier("whiten_input")
def whiten_input(fix: Fix, d: Diagnostic, ctx: SourceContext) -> str:
    from nnlint.fix.inputs import input_tensor, zca

    path, argument = _input_argument(fix, d, ctx)
    if argument is None:
        return f"{path} is whitened by the edit for {ctx.normalized_inputs[path]}"
    x = input_tensor(ctx.batch, argument)
    if x is None or x.dim() != 2 or not x.is_floating_point():
        raise CannotPlace(f"{path} is not a (samples, features) float tensor")
    if x.shape[1] > 32:
        raise CannotPlace(f"{path} has {x.shape[1]} features: a {x.shape[1]}x{x.shape[1]} whitening matrix does not "
                          "belong in source; whiten in the data pipeline")
    mean, w = zca(x, float(fix.params.get("eps", 1e-5)))
    torch = ctx.spell("torch")
    rows = ",\n".join("    [" + ", ".join(_float(v) for v in row) + "]" for row in w.tolist())
    scale = float(x.detach().double().std())
    means = [_float(v, scale) for v in mean.tolist()]
    mean_code = f"{torch}.zeros({len(means)})" if all(v == "0.0" for v in means) else f"{torch}.tensor({_vector(means)})"
    return _transform_input(ctx, path, argument, [("mean", mean_code), ("whitening", f"{torch}.tensor([\n{rows},\n])")],
                            "({x} - {b}_mean) @ {b}_whitening",
                            f"whiten {path} (ZCA measured on the sample batch; better: on the training set) (nnlint {d.code})")


def _vector(values: list[str], per_line: int = 8) -> str:
    """`[1.0, 2.0]`, or one wrapped line per `per_line` values when there are more."""
    if len(values) <= per_line:
        return f"[{', '.join(values)}]"
    lines = [", ".join(values[i:i + per_line]) for i in range(0, len(values), per_line)]
    return "[\n" + "".join(f"    {line},\n" for line in lines) + "]"


def _float(v: float, scale: float = 1.0) -> str:
    """A float literal with 4 significant digits (`127.0`, never `127`: an all-integer list would make an
    int64 buffer); float noise around zero (a mean of 1e-9 on standardized data) as 0.0."""
    return "0.0" if abs(v) < 1e-6 * max(scale, 1e-12) else repr(float(f"{v:.4g}"))


def _input_argument(fix: Fix, d: Diagnostic, ctx: SourceContext):
    """(input path, forward argument); the argument is None when another edit already transforms it."""
    from nnlint.fix.inputs import argument_of
    from nnlint.fix.runtime import CannotFix

    path = fix.params.get("input", "batch")
    if path in ctx.normalized_inputs:
        return path, None
    try:
        argument = argument_of(path)
    except CannotFix as exc:
        raise CannotPlace(str(exc)) from None
    ctx.normalized_inputs[path] = d.code
    return path, argument


def _transform_input(ctx: SourceContext, path: str, argument, buffers: list[tuple[str, str]], formula: str,
                     comment: str) -> str:
    """Buffers `<prefix>_<name>` on the root and `x = formula` applied to the input: first thing in the
    root's forward when its class is in this file, else in a forward pre-hook after the model is built."""
    from nnlint.fix.inputs import prefix_for

    q = ctx.source.quote
    prefix = prefix_for(argument)
    names = "/".join(f"{prefix}_{name}" for name, _ in buffers)
    forward_param = _forward_parameter(ctx, argument)
    if forward_param is not None:
        init_fn, forward_fn, name = forward_param
        ctx.edits.insertions.append(Insertion(init_fn, "end", [
            f"self.register_buffer({q}{prefix}_{b}{q}, {code})" for b, code in buffers],
            comment.replace(f" {path} ", f" {name} (the input) ", 1)))
        ctx.edits.insertions.append(Insertion(forward_fn, START, [
            f"{name} = " + formula.format(x=name, b=f"self.{prefix}")]))
        return f"the model transforms {path} first thing in forward, with buffers {names}"
    scope = ctx.placer.root_scope()
    base = scope.base
    if isinstance(argument, int):
        new = formula.format(x=f"args[{argument}]", b=f"module.{prefix}")
        before = f"*args[:{argument}], " if argument else ""
        hook = f"{base}.register_forward_pre_hook(lambda module, args: ({before}{new}, *args[{argument + 1}:]))"
    else:
        new = formula.format(x=f"kwargs[{q}{argument}{q}]", b=f"module.{prefix}")
        hook = (f"{base}.register_forward_pre_hook(lambda module, args, kwargs: (args, {{**kwargs, {q}{argument}{q}: "
                f"{new}}}), with_kwargs=True)")
    scope.extra += [(f"{base}.register_buffer({q}{prefix}_{b}{q}, {code})", comment) for b, code in buffers]
    scope.extra.append((hook, comment))
    return f"the model transforms {path} in a forward pre-hook, with buffers {names}"


def _forward_parameter(ctx: SourceContext, argument):
    """(root __init__, root forward, parameter name) when the root class is defined in this file."""
    root = ctx.model
    keys = init_code_keys(root)
    forward = getattr(type(root).forward, "__code__", None)
    if not keys or forward is None or os.path.abspath(keys[0][0]) != os.path.abspath(ctx.path) \
            or os.path.abspath(forward.co_filename) != os.path.abspath(ctx.path):
        return None
    init_fn = ctx.source.function(keys[0][1], "__init__")
    forward_fn = ctx.source.function(forward.co_firstlineno, "forward")
    if init_fn is None or forward_fn is None:
        return None
    params = [p.name.value for p in forward_fn.params.params][1:]
    if forward_fn.params.star_arg not in (cst.MaybeSentinel.DEFAULT, None) and isinstance(argument, int) and argument >= len(params):
        return None
    if isinstance(argument, int):
        return (init_fn, forward_fn, params[argument]) if argument < len(params) else None
    names = params + [p.name.value for p in forward_fn.params.kwonly_params]
    return (init_fn, forward_fn, argument) if argument in names else None
