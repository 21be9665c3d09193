from __future__ import annotations

import math

from nnlint.pyexpr import module_expr
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rules.optimizer._fixes import rebuild_fix
from nnlint.rules.optimizer._groups import attrs, by_module, optimizer_location


class ForeignOptimizerTensors(Rule):
    """## What it does
    Reads the optimizer's parameter groups against the model's parameters and reports:
    - tensors in a group that are no parameter of the model (error), with their group and shape;
    - a parameter of the model in two or more groups (error), naming the groups;
    - frozen parameters (`requires_grad=False`) in a group (info).

    ## Why is this bad?
    A tensor that is no parameter of the model is what an optimizer built for another model (or
    before a layer was replaced) still holds: the real layer is not being trained, and the old one
    costs memory in the optimizer state. A parameter in two groups is stepped twice per `step()`, with
    two learning rates and two momentum buffers; `add_param_group` refuses it ("some parameters appear in
    more than one parameter group"), so it comes from appending to `optimizer.param_groups` by hand.
    Frozen parameters in the optimizer are harmless to the update (no gradient, no step) but usually
    mean the freezing and the optimizer disagree about what trains, and optimizers with decoupled
    weight decay or state still carry them.

    ## Options
    None.

    ## Fix safety
    The errors' fix (safe) rebuilds the optimizer in the model file's `optimizer(model)` from
    `model.parameters()` (frozen parameters then carry no state; filter them with
    `[p for p in model.parameters() if p.requires_grad]` where the optimizer needs that).
    """

    code = "NN802"
    name = "foreign-optimizer-tensors"
    severity = "error"
    summary = "the optimizer holds tensors that are not model parameters, one parameter twice, or frozen ones"
    reads = frozenset({"optimizer"})
    cause = ("finding",)
    fixable = "safe"
    about = "model"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            batch = torch.randn(16, 32)


            def optimizer(model):
                opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
                opt.param_groups.append({**opt.defaults, "params": [model[2].weight], "lr": 0.01})   # stepped twice
                return opt
            """, module='2', fixed=False),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            batch = torch.randn(16, 32)


            def optimizer(model):
                head = [model[2].weight]
                rest = [p for p in model.parameters() if p is not model[2].weight]
                return torch.optim.SGD([{"params": rest}, {"params": head, "lr": 0.01}], lr=0.05, momentum=0.9)
            """),
    )

    def check(self, trace):
        opt = trace.optimizer
        if opt is None or not opt.groups:
            return
        location = optimizer_location(trace)
        yield from self._foreign(trace, opt, location)
        yield from self._duplicates(trace, opt, location)
        yield from self._frozen(trace, opt, location)

    def _foreign(self, trace, opt, location):
        for i, g in enumerate(opt.groups):
            foreign = g.get("foreign") or []
            if not foreign:
                continue
            shapes = ", ".join("x".join(map(str, f["shape"])) or "scalar" for f in foreign[:6])
            numel = sum(math.prod(f["shape"]) for f in foreign)
            yield self.diagnostic(
                "",
                f"parameter group {i} of {opt.type} holds {len(foreign)} tensor(s) that are no parameter of the "
                f"model ({shapes}{', ...' if len(foreign) > 6 else ''}; {numel:,} values): an optimizer built for "
                "another model, or before a layer was replaced; build it from the final model's model.parameters()",
                location=location,
                evidence={"group": i, "foreign": len(foreign), "shapes": [f["shape"] for f in foreign[:6]],
                          "optimizer": opt.type, "finding": "foreign"},
                fix=rebuild_fix(trace, f"build {opt.type} from model.parameters()"),
            )

    def _duplicates(self, trace, opt, location):
        twice = {n: gs for n, gs in opt.groups_of().items() if len(gs) > 1}
        for module, names in by_module(trace, twice).items():
            groups = sorted({g for n in names for g in twice[n]})
            lrs = sorted({opt.groups[g].get("lr") for g in groups if opt.groups[g].get("lr") is not None})
            rec = trace.modules.get(module)
            yield self.diagnostic(
                module,
                f"{module_expr(module)}'s {attrs(names)} are in parameter groups {', '.join(map(str, groups))} of "
                f"{opt.type} (lr {', '.join(f'{x:g}' for x in lrs)}): each step() updates them once per group, "
                "with separate state; add_param_group refuses this, so a group was appended to "
                "optimizer.param_groups by hand: give each parameter one group",
                location=location or (rec.location if rec is not None else None),
                evidence={"params": names, "groups": groups, "optimizer": opt.type, "finding": "duplicate"},
                fix=rebuild_fix(trace, f"build {opt.type} with each parameter in one group"),
            )

    def _frozen(self, trace, opt, location):
        frozen = [n for n in opt.groups_of() if n in trace.params and not trace.params[n].requires_grad]
        for module, names in by_module(trace, frozen).items():
            yield self.diagnostic(
                module,
                f"{module_expr(module)}'s {attrs(names)} are frozen (requires_grad=False) but in the optimizer "
                f"({opt.type}): they never step, yet the optimizer and the freezing disagree about what trains; "
                "pass only [p for p in model.parameters() if p.requires_grad]",
                severity="info", location=location,
                evidence={"params": names, "optimizer": opt.type, "finding": "frozen"},
            )

