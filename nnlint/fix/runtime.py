"""The runtime fixer: applies fixes to the model in memory, each by its kind's runtime half.

A kind's `apply(fix, ctx)` gets the Fix and a RuntimeContext, changes the model (a module swap, a mode,
buffers) and returns an `Applied` with what it did and the parameter inits it asks for. Inits are
collected from all the fixes of a round and applied once per parameter (specs.resolve), so that two
rules naming one layer cannot undo each other. A kind that cannot act raises CannotFix with the reason.

Re-inits draw from a generator seeded by the parameter's name: the global RNG is left alone, and
applying the same fix twice gives bit-identical weights (running the fixer again changes nothing).
"""
from __future__ import annotations

import inspect
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

from nnlint.diagnostics import Fix
from nnlint.fix.kind import CallSite, CannotFix, all_kinds
from nnlint.fix.specs import ParamInit, already_satisfied, join_detail, resolve


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

    def replace_module(self, name: str, new) -> None:
        parent_name, _, attr = name.rpartition(".")
        setattr(self.module(parent_name), attr, new)

    def install_rewrite(self, module, site: CallSite, funcs: tuple[str, ...], action: Callable,
                        params: dict[str, Any]) -> tuple[str, int]:
        """Make the torch call at `site` in `module`'s forward run `action` instead (callsite.Rewrite).
        Where an earlier rewrite with the same action already turned the site's call into one of `funcs`
        (torch.exp that now runs relu, escalated to leaky_relu), the new rewrite takes its place and
        matches the call the source really makes."""
        from nnlint.fix import callsite

        if not site.file or not site.line:
            raise CannotFix("the call site is unknown (no file:line for it): edit the call by hand")
        prior = next((r for r in callsite.rewrites_at(module, str(site.file), int(site.line))
                      if r.action is action and r.params.get("to") in funcs), None)
        rewrite = callsite.Rewrite(str(site.file), int(site.line), prior.funcs if prior else funcs, action, params)
        callsite.install(module, rewrite, replacing=prior)
        return str(site.file), int(site.line)


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



def apply_round(fixes: list[Fix], ctx: RuntimeContext) -> list[tuple[bool, str]]:
    """Apply the fixes of one round: each applier first, then the parameter inits they asked for, one
    per parameter (specs.resolve). Returns (applied?, what was done or why not) per fix."""
    results: list[tuple[bool, str]] = []
    inits: list[ParamInit] = []
    params_of: dict[int, list[str]] = {}
    first: dict[tuple, int] = {}
    kinds = all_kinds()
    for i, fix in enumerate(fixes):
        signature = _signature(fix)
        if signature in first:   # the same fix carried by two diagnostics (NN202 and NN103 on one layer)
            j = first[signature]
            results.append(results[j])
            params_of[i] = params_of.get(j, [])
            continue
        first[signature] = i
        try:
            applied = kinds[fix.kind].apply(fix, ctx)
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
    return (fix.kind, fix.target, repr(fix.params))
