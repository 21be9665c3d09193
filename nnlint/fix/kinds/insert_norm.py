"""Put a normalization after each weight layer of a deep chain that has none, so the signal's scale is
reset at every layer whatever the init: `nn.Linear(64, 64)` becomes `nn.Sequential(nn.Linear(64, 64),
nn.LayerNorm(64))` once the model is built (a Linear gets a LayerNorm, a ConvNd a BatchNormNd over its output
channels). The module's name now holds the pair (`fc1.0` is the layer, `fc1.1` its norm), so a checkpoint
of the old model does not load into it, and an optimizer built before the fix misses the norms'
parameters: unsafe."""
from __future__ import annotations

from dataclasses import dataclass

from nnlint.fix.kind import Applied, CannotFix, CannotPlace, FixKind, register


@dataclass(frozen=True)
class NormAfter:
    target: str                           # the weight layer's module
    norm: str                             # "LayerNorm" | "BatchNorm1d" | "BatchNorm2d" | "BatchNorm3d"
    features: int                         # its output features or channels


@dataclass(frozen=True)
class InsertNormParams:
    layers: tuple[NormAfter, ...]


def norm_for(module_type: str, attrs: dict) -> tuple[str, int] | None:
    """The norm that suits a weight layer of this type (its record's attributes), or None."""
    if module_type == "Linear" and attrs.get("out_features"):
        return "LayerNorm", int(attrs["out_features"])
    if module_type in ("Conv1d", "Conv2d", "Conv3d") and attrs.get("out_channels"):
        return f"BatchNorm{module_type[-2:]}", int(attrs["out_channels"])
    return None


@register
class InsertNorm(FixKind):
    name = "insert_norm"
    Params = InsertNormParams
    safe = False
    order = 2          # after the re-inits of the same round: they name the layers by their old paths
    last_resort = True

    def modules(self, fix):
        return {layer.target for layer in fix.params.layers}

    def apply(self, fix, ctx):
        import torch.nn as nn

        done = []
        for layer in fix.params.layers:
            module = ctx.module(layer.target)
            if isinstance(module, nn.Sequential):
                continue   # already wrapped (a fixer run twice changes nothing)
            weight = getattr(module, "weight", None)
            if weight is None or not layer.target:
                raise CannotFix(f"{layer.target or 'the model'} is not a weight layer that a norm can follow")
            norm = getattr(nn, layer.norm)(layer.features).to(device=weight.device, dtype=weight.dtype)
            ctx.replace_module(layer.target, nn.Sequential(module, norm))
            done.append(f"{layer.target} -> nn.Sequential({type(module).__name__}, {layer.norm}({layer.features}))")
        return Applied("; ".join(done) or "every layer already has its norm")

    def edit(self, fix, diagnostic, ctx):
        """After the model is built (and its inits have run: they name the layers by their old paths),
        each layer is replaced by the pair: `model.layers[0] = nn.Sequential(model.layers[0],
        nn.LayerNorm(64))`, one loop for a whole ModuleList. Not at the construction call: code that
        reads `layer.weight` after it (an init loop) would break."""
        import torch.nn as torch_nn

        from nnlint.fix.placement import accessor, relative

        scope = ctx.placer.root_scope()
        nn = ctx.spell("torch.nn")
        base_module = ctx.placer.modules.get(scope.module_path, ctx.model)

        def expr(target: str) -> str:
            code = scope.base + accessor(base_module, relative(scope.module_path, target))
            if "get_submodule" in code:
                raise CannotPlace(f"{target} cannot be assigned by name here; put the norm after it by hand")
            return code

        layers = list(fix.params.layers)
        statements = []
        by_parent: dict[str, list[NormAfter]] = {}
        for layer in layers:
            parent, _, index = layer.target.rpartition(".")
            by_parent.setdefault(parent if index.isdigit() else "\0", []).append(layer)
        for parent, group in by_parent.items():
            container = ctx.placer.modules.get(parent) if parent != "\0" else None
            alike = len({(g.norm, g.features) for g in group}) == 1
            if isinstance(container, torch_nn.ModuleList) and alike and len(group) == len(container) > 1:
                iterated = expr(parent)
                norm = f"{nn}.{group[0].norm}({group[0].features})"
                statements.append(f"for i, layer in enumerate({iterated}):\n"
                                  f"    {iterated}[i] = {nn}.Sequential(layer, {norm})\n")
                continue
            for g in group:
                code = expr(g.target)
                statements.append(f"{code} = {nn}.Sequential({code}, {nn}.{g.norm}({g.features}))")
        comment = f"a normalization after each layer of the chain (nnlint {diagnostic.code})"
        for statement in statements:
            if not any(text == statement for text, _ in scope.extra):
                scope.extra.append((statement, comment))
        return f"{len(layers)} layer(s) followed by a norm after the model is built: " + ", ".join(
            f"{g.target} ({g.norm})" for g in layers[:4]) + (" ..." if len(layers) > 4 else "")
