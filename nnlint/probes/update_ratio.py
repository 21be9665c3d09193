"""The first update, measured: one real `step()` of the user's optimizer, on a copy of its state, on the
gradients of the check's own backward; then, per weight (2-D and larger parameters), the update/weight
ratio ||dW|| / ||W||.

The copy's parameters are clones of the model's (the model is never written), its state is a deep copy
of the user's (momentum buffers, Adam moments: a resumed optimizer steps as it would), and it is stepped
through its class's own `step` (nnlint.probes.copies): whatever the optimizer does, momentum, Adam's
per-parameter normalization, bias correction, weight decay coupled or decoupled, a custom rule, is in
the measured update. The ratio counts the rows (output units, embedding rows) that received a gradient:
an embedding's untouched rows, or a dead unit's, do not dilute the update of the rest.

With nnlint's surrogate loss the gradient's scale is not the user's; the update of an optimizer that
normalizes it away (Adam's first step is lr * sign(g)) is still the real one, the update of SGD is not.
So, with the surrogate only, the step is also taken on 4x the gradient: `scale_response` is how much the
update grew (1: normalized, 4: proportional to the gradient), and rules judge only normalized updates.
"""
from __future__ import annotations

from typing import Any, Optional

from nnlint.probes.base import Probe, ProbeContext, probe
from nnlint.probes.copies import shadow_optimizer, step_of
from nnlint.trace.inventory import unwrap_optimizer

SCALE = 4.0


@probe
class UpdateRatio(Probe):
    name = "update_ratio"
    summary = "one optimizer step on a copy of its state: the update/weight ratio per layer"
    needs_gradients = True

    def run(self, ctx: ProbeContext) -> Optional[dict[str, Any]]:
        import torch

        if ctx.optimizer is None or not ctx.gradients:
            return None
        optimizer = unwrap_optimizer(ctx.optimizer)
        if not hasattr(optimizer, "param_groups") or not hasattr(type(optimizer), "step"):
            return None
        named = {id(p): n for n, p in ctx.model.named_parameters()}
        group_of = {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
        updates = _updates(optimizer, ctx.gradients, named, 1.0)
        out: dict[str, Any] = {"optimizer": type(optimizer).__name__, "loss_is_surrogate": ctx.trace.loss_is_surrogate,
                               "lrs": [_lr(g) for g in optimizer.param_groups], "params": [], "scale_response": None}
        if not updates:
            return out
        if ctx.trace.loss_is_surrogate:
            scaled = _updates(optimizer, ctx.gradients, named, SCALE)
            num = float(torch.stack([scaled[n][0].double() for n in updates if n in scaled]).norm()) if scaled else 0.0
            den = float(torch.stack([u[0].double() for u in updates.values()]).norm())
            out["scale_response"] = num / den if den > 0 else None
        params = dict(ctx.model.named_parameters())
        with torch.no_grad():
            values = torch.stack([torch.stack([u[0].double(), u[1].double(), u[2].double()]) for u in updates.values()]).tolist()   # one sync
        for (name, (_, _, _, total)), (update, weight, rows) in zip(updates.items(), values):
            p = params[name]
            out["params"].append({"name": name, "module": name.rpartition(".")[0], "update": update, "weight": weight,
                                  "ratio": update / weight if weight > 0 else None, "rows": int(rows), "of_rows": total,
                                  "group": group_of.get(id(p)), "lr": out["lrs"][group_of[id(p)]] if id(p) in group_of else None})
        return out


def _lr(group) -> Optional[float]:
    try:
        return float(group.get("lr"))
    except (TypeError, ValueError):
        return None


def _updates(optimizer, gradients: dict[str, Any], named: dict[int, str], scale: float) -> dict[str, tuple]:
    """Step a copy of the optimizer once over clones of its parameters holding the check's gradients
    (times `scale`); per weight the model holds: (||dW|| over the rows that had a gradient, ||W|| over the
    same rows, rows counted, rows in all), the norms as 0-d tensors still on the device."""
    import torch

    stand_ins: dict[int, Any] = {}
    originals: dict[str, Any] = {}
    with torch.no_grad():
        for g in optimizer.param_groups:
            for p in g["params"]:
                if id(p) in stand_ins:
                    continue
                q = p.detach().clone().requires_grad_(p.requires_grad)
                name = named.get(id(p))
                grad = gradients.get(name) if name is not None else None
                q.grad = None if grad is None else (grad * scale if scale != 1.0 else grad.clone())
                stand_ins[id(p)] = q
                if name is not None and p.dim() >= 2 and grad is not None and p.is_floating_point():
                    originals[name] = p
    if not originals:
        return {}
    shadow = shadow_optimizer(optimizer, stand_ins)
    with torch.enable_grad():   # some optimizers build graphs in step (differentiable=True), most don't care
        step_of(shadow)()
    out: dict[str, tuple] = {}
    with torch.no_grad():
        for name, p in originals.items():
            q = stand_ins[id(p)]
            grad = gradients[name].reshape(p.shape[0], -1)
            rows = grad.abs().amax(dim=1) > 0
            acc = torch.float64 if p.dtype == torch.float64 else torch.float32
            delta = (q.detach() - p).reshape(p.shape[0], -1)[rows].to(acc)
            before = p.detach().reshape(p.shape[0], -1)[rows].to(acc)
            out[name] = (torch.linalg.vector_norm(delta), torch.linalg.vector_norm(before), rows.sum(), p.shape[0])
    return out
