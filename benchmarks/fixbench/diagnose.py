"""Where a fix loses, and why: measured, not guessed.

For a case with a loss (a fixed arm clearly worse than before, or --unsafe clearly under the naive fix):
- the losing arm's fixes and the findings its re-check still reports;
- dead units after it: for every weight layer but the first, the fraction of its input features
  (channels) that are exactly zero on at least 99% of the first batch's positions - the units the
  activation before it left dead - beside the same for the naive fix;
- alternatives tried by hand on the same grid and seeds: LeakyReLU(0.1) with its Kaiming init instead of
  ReLU; the naive fix plus a normalization after every hidden weight layer; the naive fix plus
  standardized inputs (raw-input faults); the losing arm at learning rates below the grid when its best
  one is the grid's smallest. None of this touches the engine: it says what the engine should try.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn as nn

from benchmarks.fixbench import arms as A
from benchmarks.fixbench.models import VARIANTS, write
from benchmarks.fixbench.train import clearly_worse, train_grid

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def dead_inputs(model, x: torch.Tensor) -> list[float]:
    """Per weight layer after the first, in call order: the fraction of its input features (channels of
    a conv map) that are zero on at least 99% of the batch's positions."""
    model = copy.deepcopy(model)
    fractions = []

    def hook(module, args):
        inp = args[0] if args else None
        if not isinstance(inp, torch.Tensor) or inp.dim() < 2:
            return
        active = (inp != 0).float()
        per_unit = active.transpose(0, 1).reshape(inp.shape[1], -1).mean(1) if inp.dim() > 2 else active.mean(0)
        fractions.append(float((per_unit < 0.01).float().mean()))

    hooks = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]
    model.train()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return fractions[1:]


def describe_dead(fractions: list[float]) -> str:
    if not fractions:
        return "no hidden weight layers"
    bad = sum(f > 0.5 for f in fractions)
    return f"{bad}/{len(fractions)} layers with over half their inputs dead (" + \
        " ".join(f"{round(100 * f)}" for f in fractions) + " %)"


def losses(r: CaseResult, seeds: int) -> list[str]:
    """What went wrong in this case: a fixed arm clearly worse than before, unsafe clearly under naive."""
    out = []
    before = r.arms.get("before")
    if before is None or before.grid is None:
        return out
    for name in ("fix", "unsafe", "source"):
        arm = r.arms.get(name)
        if arm and arm.grid and clearly_worse(arm.grid.best, before.grid.best, seeds):
            out.append(f"{name} < before")
    unsafe, naive = r.arms.get("unsafe"), r.arms.get("naive")
    if unsafe and naive and unsafe.grid and naive.grid and clearly_worse(unsafe.grid.best, naive.grid.best, seeds):
        out.append("unsafe < naive")
    return out


def diagnose_case(result, arms: list, case, path: Path, split, p, folder: Path) -> None:
    lost = losses(result, p.seeds)
    if not lost:
        return
    x, y = split.first_batch()
    by_name = {a.name: a for a in arms}
    result.diagnosis.append("lost: " + "; ".join(lost))
    losing = sorted({item.split(" <")[0] for item in lost})
    for name in losing + ["naive"]:
        arm = by_name.get(name)
        if arm is None or arm.model is None:
            continue
        line = f"{name}: dead after it: {describe_dead(dead_inputs(arm.model, x))}"
        if name != "naive":
            line += f"; left: {arm.left}"
        result.diagnosis.append(line)
    # the alternatives, by hand
    tries = {}
    if case.spec is not None:
        spec = case.spec
        names = ["leaky", "norm"] + (["input"] if spec.mutation.raw else [])
        for v in names:
            variant_path = write(folder, spec, case.task, split.objective.classes, (x, y), VARIANTS[v])
            tries[v] = A.load(variant_path).model
    else:
        arm = A.naive_arm(A.load(path).model, x, activation="leaky_relu")
        if arm.model is not None:
            tries["leaky"] = arm.model
    for v, model in tries.items():
        result.alternatives[v] = train_grid(model, split, p)
    for name in losing:
        arm, r = by_name.get(name), result.arms.get(name)
        if arm is None or arm.model is None or r is None or r.grid is None:
            continue
        if r.grid.best.lr == min(p.lrs):
            low = (min(p.lrs) / 3, min(p.lrs) / 10)
            result.alternatives[f"{name} at lower lr"] = train_grid(arm.model, split, p, lrs=low)
