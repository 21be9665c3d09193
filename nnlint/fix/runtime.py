"""The runtime fixer: applies fixes to the model in memory, one small applier per Fix.kind.

An applier gets the Fix and a RuntimeContext, changes the model (a module swap, a mode, buffers) and
returns an `Applied` with what it did and the parameter inits it asks for. Inits are collected from all
the fixes of a round and applied once per parameter (specs.resolve), so that two rules naming one
layer cannot undo each other. An applier that cannot act raises CannotFix with the reason; a kind with
no applier is "not fixable automatically". New kinds plug in with `@runtime_applier("kind")`.

Re-inits draw from a generator seeded by the parameter's name: the global RNG is left alone, and
applying the same fix twice gives bit-identical weights (running the fixer again changes nothing).
"""
from __future__ import annotations

import inspect
import os
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from nnlint.diagnostics import Fix
from nnlint.fix import callsite
from nnlint.fix.specs import PARAM_INITS, ParamInit, already_satisfied, join_detail, resolve


class CannotFix(Exception):
    """The fix cannot be applied to this model; the message says why and what to do instead."""


@dataclass
class Applied:
    detail: str
    inits: list[ParamInit] = field(default_factory=list)


@dataclass
class RuntimeContext:
    model: Any
    batch: Any = None
    snapshot: Any = None      # a rollback.ModelSnapshot: parameters are saved there before their re-init

    def module(self, name: str):
        try:
            return self.model.get_submodule(name) if name else self.model
        except AttributeError:
            raise CannotFix(f"the model has no submodule {name!r}") from None

    def tensor(self, name: str):
        """A parameter or buffer by qualified name, or None when the module has none by that name
        (a layer built with bias=False)."""
        module, _, attr = name.rpartition(".")
        owner = self.module(module)
        value = getattr(owner, attr, None)
        import torch

        return value if isinstance(value, torch.Tensor) else None

    def std_of(self, name: str) -> Optional[float]:
        t = self.tensor(name)
        return None if t is None or t.numel() < 2 else float(t.detach().float().std())


RUNTIME_APPLIERS: dict[str, Callable[[Fix, RuntimeContext], Applied]] = {}


def runtime_applier(kind: str):
    def register(fn):
        RUNTIME_APPLIERS[kind] = fn
        return fn

    return register


# ---------------------------------------------------------------------------------------------
# Parameter inits


def _param_init_applier(kind: str):
    def apply(fix: Fix, ctx: RuntimeContext) -> Applied:
        return Applied("", PARAM_INITS[kind](fix, ctx.std_of))   # the inits that win are listed by apply_round

    return apply


for _kind in ("reinit", "zero_init", "bias_fill", "scale_final_layer"):
    runtime_applier(_kind)(_param_init_applier(_kind))


def apply_inits(ctx: RuntimeContext, inits: dict[str, ParamInit]) -> tuple[set[str], set[str]]:
    """Run each init on its tensor. Returns the parameters that do not exist (a layer without bias) and
    those already as the init would make them (left alone)."""
    import torch

    missing, kept = set(), set()
    for name, init in inits.items():
        tensor = ctx.tensor(name)
        if tensor is None:
            missing.add(name)
            continue
        if already_satisfied(ctx.module(init.module), init):
            kept.add(name)
            continue
        if ctx.snapshot is not None:
            ctx.snapshot.save_tensor(name, tensor)
        fn = getattr(torch.nn.init, init.spec.initializer)
        kwargs = init.spec.runtime_kwargs()
        if "generator" in inspect.signature(fn).parameters:
            kwargs["generator"] = torch.Generator(device=tensor.device).manual_seed(zlib.crc32(name.encode()))
        with torch.no_grad():
            fn(tensor, **kwargs)
    return missing, kept


# ---------------------------------------------------------------------------------------------
# Activations, dropout, modes, inputs


ACTIVATION_CLASSES = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "ReLU", "leaky_relu": "LeakyReLU", "gelu": "GELU"}


def new_activation(to: str, params: dict[str, Any]):
    import torch.nn as nn

    if to == "leaky_relu":
        return nn.LeakyReLU(float(params.get("negative_slope", params.get("a", 0.01))))
    cls = getattr(nn, ACTIVATION_CLASSES.get(to, ""), None)
    if cls is None:
        raise CannotFix(f"unknown replacement activation {to!r}")
    return cls()


def replace_module(model, name: str, new) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


@runtime_applier("swap_activation")
def swap_activation(fix: Fix, ctx: RuntimeContext) -> Applied:
    p = fix.params
    src, to = p.get("from", "sigmoid"), p.get("to", "relu")
    inits = PARAM_INITS["swap_activation"](fix, ctx.std_of)
    module = ctx.module(fix.target)
    if not p.get("functional") and type(module).__name__ == ACTIVATION_CLASSES.get(src):
        if not fix.target:
            raise CannotFix("the model itself is the activation; wrap it instead")
        replace_module(ctx.model, fix.target, new_activation(to, p))
        return Applied(f"replaced {fix.target} ({type(module).__name__}) with {ACTIVATION_CLASSES.get(to, to)}", inits)
    site = _site(fix)
    callsite.install(module, callsite.Rewrite(site[0], site[1], (src,), "activation", {"to": to, **_slope(p)}))
    return Applied(f"{src}() called at {os.path.basename(site[0])}:{site[1]} now runs {to}() (in memory)", inits)


def _slope(params: dict[str, Any]) -> dict[str, Any]:
    return {"negative_slope": float(params["negative_slope"])} if "negative_slope" in params else {}


def _site(fix: Fix) -> tuple[str, int]:
    file, line = fix.params.get("file"), fix.params.get("line")
    if not file or not line:
        raise CannotFix("the call site is unknown (no file:line for it): edit the call by hand")
    return str(file), int(line)


@runtime_applier("functional_dropout_training")
def functional_dropout_training(fix: Fix, ctx: RuntimeContext) -> Applied:
    site = _site(fix)
    func = fix.params.get("func") or "dropout"
    callsite.install(ctx.module(fix.target), callsite.Rewrite(site[0], site[1], (func,), "dropout_training", {}))
    return Applied(f"{func}() at {os.path.basename(site[0])}:{site[1]} now follows the module's training flag")


@runtime_applier("dropout2d")
def dropout2d(fix: Fix, ctx: RuntimeContext) -> Applied:
    import torch.nn as nn

    replacement = fix.params.get("replacement") or "Dropout2d"
    module = ctx.module(fix.target)
    if not fix.params.get("functional") and isinstance(module, nn.Dropout):
        cls = getattr(nn, replacement, None)
        if cls is None:
            raise CannotFix(f"torch.nn has no {replacement}")
        replace_module(ctx.model, fix.target, cls(p=module.p, inplace=module.inplace))
        return Applied(f"replaced {fix.target} (Dropout) with {replacement}(p={module.p})")
    site = _site(fix)
    func = fix.params.get("func") or "dropout"
    callsite.install(module, callsite.Rewrite(site[0], site[1], (func,), "dropout_nd", {"to": replacement.lower()}))
    return Applied(f"{func}() at {os.path.basename(site[0])}:{site[1]} now runs {replacement.lower()}()")


@runtime_applier("set_eval")
def set_eval(fix: Fix, ctx: RuntimeContext) -> Applied:
    return _whole_model_mode(ctx)


@runtime_applier("set_train")
def set_train(fix: Fix, ctx: RuntimeContext) -> Applied:
    return _whole_model_mode(ctx)


def _whole_model_mode(ctx: RuntimeContext) -> Applied:
    """Every submodule in the root's mode: model.eval() or model.train() on the whole model."""
    training = ctx.model.training
    ctx.model.train(training)
    return Applied(f"called model.{'train' if training else 'eval'}() on the whole model")


@runtime_applier("keep_running_stats")
def keep_running_stats(fix: Fix, ctx: RuntimeContext) -> Applied:
    import torch

    bn = ctx.module(fix.target)
    if not hasattr(bn, "track_running_stats") or getattr(bn, "num_features", None) is None:
        raise CannotFix(f"{fix.target} is not a BatchNorm layer")
    if not bn.track_running_stats:
        like = bn.weight if getattr(bn, "weight", None) is not None else torch.empty(0)
        kw = {"device": like.device, "dtype": like.dtype if like.is_floating_point() else torch.float32}
        bn.running_mean = torch.zeros(bn.num_features, **kw)
        bn.running_var = torch.ones(bn.num_features, **kw)
        bn.num_batches_tracked = torch.tensor(0, dtype=torch.long, device=kw["device"])
        bn.track_running_stats = True
    return Applied(f"{fix.target} now keeps running statistics (track_running_stats=True)")


@runtime_applier("normalize_input")
def normalize_input(fix: Fix, ctx: RuntimeContext) -> Applied:
    from nnlint.fix.inputs import install_input_normalization

    p = fix.params
    detail = install_input_normalization(ctx.model, ctx.batch, p.get("input", "batch"), p.get("channel_dim"),
                                         p.get("mean") or [], p.get("std") or [])
    return Applied(detail)


@runtime_applier("whiten_input")
def whiten_input(fix: Fix, ctx: RuntimeContext) -> Applied:
    from nnlint.fix.inputs import install_input_whitening

    return Applied(install_input_whitening(ctx.model, ctx.batch, fix.params.get("input", "batch"),
                                           float(fix.params.get("eps", 1e-5))))


def _dropout_modules():
    import torch.nn as nn

    return (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


@runtime_applier("move_dropout")
def move_dropout(fix: Fix, ctx: RuntimeContext) -> Applied:
    """Dropout feeding a BatchNorm: removed (nn.Identity in its place, so no index or name moves);
    BatchNorm already regularizes. Moving it after the last BatchNorm is a design choice left to the user."""
    import torch.nn as nn

    module = ctx.module(fix.target)
    if isinstance(module, _dropout_modules()) and fix.target:
        replace_module(ctx.model, fix.target, nn.Identity())
        return Applied(f"removed {fix.target} ({type(module).__name__}(p={module.p})) in front of BatchNorm "
                       f"{fix.params.get('batchnorm')} (nn.Identity in its place)")
    site = _site(fix)
    func = fix.params.get("func") or "dropout"
    callsite.install(module, callsite.Rewrite(site[0], site[1], (func,), "identity", {}))
    return Applied(f"{func}() at {os.path.basename(site[0])}:{site[1]} now passes its input through")


# ---------------------------------------------------------------------------------------------


def apply_round(fixes: list[Fix], ctx: RuntimeContext) -> list[tuple[bool, str]]:
    """Apply the fixes of one round: each applier first, then the parameter inits they asked for, one
    per parameter (specs.resolve). Returns (applied?, what was done or why not) per fix."""
    results: list[tuple[bool, str]] = []
    inits: list[ParamInit] = []
    params_of: dict[int, list[str]] = {}
    first: dict[tuple, int] = {}
    for i, fix in enumerate(fixes):
        signature = _signature(fix)
        if signature in first:   # the same fix carried by two diagnostics (NN202 and NN103 on one layer)
            j = first[signature]
            results.append(results[j])
            params_of[i] = params_of.get(j, [])
            continue
        first[signature] = i
        try:
            applied = RUNTIME_APPLIERS[fix.kind](fix, ctx)
        except CannotFix as exc:
            results.append((False, str(exc)))
            continue
        results.append((True, applied.detail))
        inits += applied.inits
        params_of[i] = [init.param for init in applied.inits]
    chosen = resolve(inits)
    missing, kept = apply_inits(ctx, chosen)
    for i, params in params_of.items():
        ok, detail = results[i]
        if not ok:
            continue
        lacking = [p for p in params if p in missing and not p.endswith(".bias")]   # bias=False is fine
        if lacking:
            results[i] = (False, f"the model has no parameter {', '.join(lacking)}")
        else:
            done = [chosen[p] for p in dict.fromkeys(params) if p not in missing and p not in kept]
            results[i] = (True, join_detail(detail, done, [p for p in dict.fromkeys(params) if p in kept]))
    return results


def _signature(fix: Fix) -> tuple:
    return (fix.kind, fix.target, repr(sorted((k, repr(v)) for k, v in fix.params.items())))
