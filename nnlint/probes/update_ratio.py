"""The first update, measured: one real `step()` of the user's optimizer, on a copy of its state, on the
gradients of the check's own backward; then, per weight (2-D and larger parameters), the update/weight
ratio ||dW|| / ||W||.

The copy's parameters are clones of the model's (the model is never written), its state is a deep copy
of the user's (momentum buffers, Adam moments: a resumed optimizer steps as it would), and it is stepped
through its class's own `step` (nnlint.probes.copies): whatever the optimizer does, momentum, Adam's
per-parameter normalization, bias correction, weight decay coupled or decoupled, a custom rule, is in
the measured update. For an embedding the ratio counts the rows that received a gradient: the rows
the batch did not use do not dilute the update of the rest.

With nnlint's surrogate loss the gradient's scale is not the user's; the update of an optimizer that
normalizes it away (Adam's first step is lr * sign(g)) is still the real one, the update of SGD is not.
So, with the surrogate only, the step is also taken on 4x the gradient: `scale_response` is how much the
update grew (1: normalized, 4: proportional to the gradient), and rules judge only normalized updates.
"""
from __future__ import annotations

import math

from typing import Any, Optional

from nnlint.initmath import is_weight_matrix, starts_near_zero
from nnlint.probes.base import Probe, ProbeContext, probe
from nnlint.probes.copies import shadow_optimizer, step_of
from nnlint.trace.inventory import unwrap_optimizer
from nnlint.trace.wrappers import whole

SCALE = 4.0
SAMPLED = 16     # weights measured per step (see sampled_weights)
BUDGET = 0.1     # ... holding at most this fraction of the model's parameter values


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
        embeddings = frozenset(n for n, m in ctx.trace.modules.items() if "Embedding" in m.type)
        sampled = sampled_weights(optimizer, ctx.gradients, named, SAMPLED, ctx.trace.params)
        updates = _updates(optimizer, ctx.gradients, named, 1.0, embeddings, only=sampled)
        out: dict[str, Any] = {"optimizer": type(optimizer).__name__, "loss_is_surrogate": ctx.trace.loss_is_surrogate,
                               "lrs": [_lr(g) for g in optimizer.param_groups], "params": [], "scale_response": None}
        if not updates:
            return out
        params_numel = {n: p.numel() for n, p in ctx.model.named_parameters()}
        if ctx.trace.loss_is_surrogate:
            # how the update follows the gradient's scale is the optimizer's, not a layer's: one small weight says it
            ids = {v: k for k, v in named.items()}
            smallest = min(updates, key=lambda n: params_numel[n])
            scaled = _updates(optimizer, ctx.gradients, named, SCALE, embeddings, only={ids[smallest]})
            den = float(updates[smallest][0])
            out["scale_response"] = float(scaled[smallest][0]) / den if den > 0 else None
        params = dict(ctx.model.named_parameters())
        with torch.no_grad():
            values = torch.stack([torch.stack([u[0].double(), u[1].double(), u[2].double()]) for u in updates.values()]).tolist()   # one sync
        for (name, (_, _, _, total)), (update, weight, rows) in zip(updates.items(), values):
            p = params[name]
            record = ctx.trace.params.get(name)
            if record is not None and (record.grad_all_zero or record.grad_nonfinite):
                continue   # no gradient reached it, or a non-finite one: NN406's and NN405's findings, not the lr's
            out["params"].append({"name": name, "module": name.rpartition(".")[0], "update": update, "weight": weight,
                                  # a non-finite gradient makes no update to judge (NN405's finding)
                                  "ratio": update / weight if weight > 0 and math.isfinite(update) else None, "rows": int(rows), "of_rows": total,
                                  "group": group_of.get(id(p)), "lr": out["lrs"][group_of[id(p)]] if id(p) in group_of else None})
        return out


def _lr(group) -> Optional[float]:
    try:
        return float(group.get("lr"))
    except (TypeError, ValueError):
        return None


def has_scale_to_keep(shape: tuple[int, ...], record=None) -> bool:
    """A weight whose update/weight ratio says how fast training rewrites its scale: a weight matrix
    (initmath.is_weight_matrix: not a per-channel gain stored as (C, 1, 1), such as ConvNeXt's
    `layer_scale` at 1e-6), and not one that starts at about zero on purpose (initmath.starts_near_zero:
    ViT's cls_token at std 1e-6, BEiT's head at 1e-3 of its init). Those have no scale yet: their first
    Adam step is lr per value, 50-1000x their norm, by design."""
    if not is_weight_matrix(tuple(shape)):
        return False
    return record is None or not starts_near_zero(record.std, record.fan_in)


def sampled_weights(optimizer, gradients: dict[str, Any], named: dict[int, str], limit: int,
                    records: Optional[dict] = None) -> set[int]:
    """The weights with a scale to keep (`has_scale_to_keep`, by their ParamRecord in `records`) and a
    gradient whose update is measured: at most `limit`, evenly spread through the model's order, holding at most BUDGET of
    the model's parameter values (the largest dropped first; at least two kept). The ratio is a property
    of the learning rate and the optimizer more than of one layer, and every other parameter's step is
    skipped: the probe stays a small fraction of a training step (a 38M-value tied embedding alone costs
    GPT-2's check 0.3x a step to update)."""
    order = {n: i for i, n in enumerate(named.values())}
    params = {id(p): p for g in optimizer.param_groups for p in g["params"]}.values()
    total = sum(p.numel() for p in params) or 1
    records = records or {}
    weights = sorted((p for p in params if named.get(id(p)) in gradients and p.is_floating_point()
                      and has_scale_to_keep(tuple(p.shape), records.get(named[id(p)]))),
                     key=lambda p: order[named[id(p)]])
    if len(weights) > limit:
        weights = [weights[i] for i in sorted({round(i * (len(weights) - 1) / (limit - 1)) for i in range(limit)})]
    while len(weights) > 2 and sum(p.numel() for p in weights) > BUDGET * total:
        largest = max(weights, key=lambda p: p.numel())
        weights = [p for p in weights if p is not largest]
    return {id(p) for p in weights}


def _updates(optimizer, gradients: dict[str, Any], named: dict[int, str], scale: float,
             embeddings: frozenset[str] = frozenset(), only: Optional[set[int]] = None) -> dict[str, tuple]:
    """Step a copy of the optimizer once over stand-ins of its parameters; the sampled weights' stand-ins
    are clones holding the check's gradients (times `scale`), every other one an uninitialized tensor of
    its shape with no gradient and no state, which the step skips. Per sampled weight: (||dW||, ||W||,
    rows counted, rows in all) as 0-d tensors still on the device; for an embedding, over the rows that
    had a gradient (the rows the batch did not use do not dilute the update of the rest)."""
    import torch

    sampled = only if only is not None else sampled_weights(optimizer, gradients, named, SAMPLED)
    stand_ins: dict[int, Any] = {}
    state_memo: dict[int, Any] = {}
    with torch.no_grad():
        for g in optimizer.param_groups:
            for p in g["params"]:
                if id(p) in stand_ins:
                    continue
                if id(p) not in sampled:
                    stand_ins[id(p)] = torch.empty_like(p).requires_grad_(p.requires_grad)
                    if p in optimizer.state:
                        state_memo[id(optimizer.state[p])] = {}
                    continue
                q = p.detach().clone().requires_grad_(p.requires_grad)
                grad = gradients[named[id(p)]]
                q.grad = grad * scale if scale != 1.0 else grad.clone()   # an optimizer may edit it in place
                stand_ins[id(p)] = q
    if not sampled:
        return {}
    shadow = shadow_optimizer(optimizer, {**stand_ins, **state_memo})
    with torch.enable_grad():   # some optimizers build graphs in step (differentiable=True), most don't care
        step_of(shadow)()
    out: dict[str, tuple] = {}
    params = {id(p): p for g in optimizer.param_groups for p in g["params"]}
    with torch.no_grad():
        for pid in sampled:
            p, q, name = params[pid], stand_ins[pid], named[pid]
            acc = torch.float64 if p.dtype == torch.float64 else torch.float32
            delta, before = (q.detach() - p).reshape(p.shape[0], -1), p.detach().reshape(p.shape[0], -1)
            rows = torch.ones((), dtype=torch.long, device=p.device) * p.shape[0]
            if name.rpartition(".")[0] in embeddings:
                # (a sharded embedding, FSDP2's or tensor parallel, whole: rows are picked by a mask)
                delta, before = whole(delta), whole(before)
                used = whole(gradients[name]).reshape(p.shape[0], -1).abs().amax(dim=1) > 0
                delta, before, rows = delta[used], before[used], used.sum()
            # A sharded weight's norms are the whole weight's (a collective, in the same order on every rank).
            out[name] = (whole(torch.linalg.vector_norm(delta, dtype=acc)),
                         whole(torch.linalg.vector_norm(before, dtype=acc)), rows, p.shape[0])
    return out
