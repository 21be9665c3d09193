"""Source edits that transform the model's input (normalization, whitening), shared by those fix kinds.

The transform goes first thing in the root's `forward` (`x = (x - self.input_mean) / self.input_std`,
with the statistics as buffers registered at the end of its `__init__`) when the root class is in this
file; otherwise the buffers and a forward pre-hook are added after the model is built. Measured on the
sample batch: the comment says so, and that the training set's statistics are better.
"""
from __future__ import annotations

import os

import libcst as cst

from nnlint.fix.edits import START, Insertion
from nnlint.fix.inputs import argument_of, prefix_for
from nnlint.fix.kind import CannotFix, CannotPlace
from nnlint.fix.sites import init_code_keys


def vector(values: list[str], per_line: int = 8) -> str:
    """`[1.0, 2.0]`, or one wrapped line per `per_line` values when there are more."""
    if len(values) <= per_line:
        return f"[{', '.join(values)}]"
    lines = [", ".join(values[i:i + per_line]) for i in range(0, len(values), per_line)]
    return "[\n" + "".join(f"    {line},\n" for line in lines) + "]"


def float_literal(v: float, scale: float = 1.0) -> str:
    """A float literal with 4 significant digits (`127.0`, never `127`: an all-integer list would make an
    int64 buffer); float noise around zero (a mean of 1e-9 on standardized data) as 0.0."""
    return "0.0" if abs(v) < 1e-6 * max(scale, 1e-12) else repr(float(f"{v:.4g}"))


def input_argument(path: str, code: str, ctx):
    """(input path, forward argument); the argument is None when another edit already transforms it."""
    if path in ctx.normalized_inputs:
        return path, None
    try:
        argument = argument_of(path)
    except CannotFix as exc:
        raise CannotPlace(str(exc)) from None
    ctx.normalized_inputs[path] = code
    return path, argument


def transform_input(ctx, path: str, argument, buffers: list[tuple[str, str]], formula: str,
                     comment: str) -> str:
    """Buffers `<prefix>_<name>` on the root and `x = formula` applied to the input: first thing in the
    root's forward when its class is in this file, else in a forward pre-hook after the model is built."""
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


def _forward_parameter(ctx, argument):
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
